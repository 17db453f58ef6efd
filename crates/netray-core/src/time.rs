//! Converting the kernel's CLOCK_MONOTONIC timestamps (bpf_ktime_get_ns) to
//! wall-clock time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Offset between CLOCK_REALTIME and CLOCK_MONOTONIC, measured once.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    realtime_minus_mono_ns: i128,
}

impl MonotonicClock {
    pub fn new() -> Self {
        let mono = monotonic_ns() as i128;
        let real = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as i128;
        MonotonicClock { realtime_minus_mono_ns: real - mono }
    }

    /// Wall-clock time of a bpf_ktime_get_ns() value.
    pub fn to_system(&self, mono_ns: u64) -> SystemTime {
        let ns = (mono_ns as i128 + self.realtime_minus_mono_ns).max(0) as u128;
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

/// CLOCK_MONOTONIC now, in nanoseconds (the clock bpf_ktime_get_ns uses).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
