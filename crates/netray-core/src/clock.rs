//! Time as netray reads and prints it: the kernel's CLOCK_MONOTONIC stamps
//! (bpf_ktime_get_ns) turned into wall-clock time, and that time as text.
//!
//! Every command and the daemon print times through here, so a packet seen by
//! `monitor`, `dump` and the daemon's event stream carries the same time in the
//! same words. Lines for people use local time of day (as tcpdump does);
//! JSON uses RFC 3339 in UTC, or Unix time as a number.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Local, SecondsFormat, Utc};

/// Offset between CLOCK_REALTIME and CLOCK_MONOTONIC, measured once: a later
/// change of the wall clock does not reorder events already seen.
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

/// How many digits follow the seconds in a time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fraction {
    /// HH:MM:SS.mmm
    Millis,
    /// HH:MM:SS.uuuuuu
    Micros,
    /// HH:MM:SS.nnnnnnnnn
    Nanos,
}

/// Local time of day, for lines people read: "18:10:25.220806".
pub fn time_of_day(t: SystemTime, fraction: Fraction) -> String {
    let format = match fraction {
        Fraction::Millis => "%H:%M:%S%.3f",
        Fraction::Micros => "%H:%M:%S%.6f",
        Fraction::Nanos => "%H:%M:%S%.9f",
    };
    DateTime::<Local>::from(t).format(format).to_string()
}

/// RFC 3339 in UTC with nanoseconds, for JSON: "2026-11-18T11:06:40.123456789Z".
pub fn rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Nanoseconds since the Unix epoch (0 before it).
pub fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Seconds since the Unix epoch, with the fraction (0 before it).
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The time `unix_nanos` gave.
pub fn from_unix_nanos(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_795_000_000_123_456_789; // 2026-11-18T11:06:40.123456789Z

    #[test]
    fn rfc3339_is_utc_with_nanoseconds() {
        assert_eq!(rfc3339(from_unix_nanos(T)), "2026-11-18T11:06:40.123456789Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn time_of_day_is_local_with_the_digits_asked_for() {
        let t = from_unix_nanos(T);
        // The hours depend on the machine's zone: compare with chrono's own view of it.
        let hms = DateTime::<Local>::from(t).format("%H:%M:%S").to_string();
        assert_eq!(time_of_day(t, Fraction::Millis), format!("{hms}.123"));
        assert_eq!(time_of_day(t, Fraction::Micros), format!("{hms}.123456"));
        assert_eq!(time_of_day(t, Fraction::Nanos), format!("{hms}.123456789"));
    }

    #[test]
    fn unix_numbers_round_trip() {
        assert_eq!(unix_nanos(from_unix_nanos(T)), T);
        assert_eq!(unix_seconds(from_unix_nanos(1_500_000_000)), 1.5);
        assert_eq!(unix_nanos(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }

    #[test]
    fn monotonic_stamps_become_wall_clock_time() {
        let clock = MonotonicClock::new();
        let now = SystemTime::now();
        let seen = clock.to_system(monotonic_ns());
        let gap = seen.duration_since(now).unwrap_or_else(|e| e.duration());
        assert!(gap < Duration::from_millis(100), "{gap:?} between the two clocks' now");
        // One second later on CLOCK_MONOTONIC is one second later on the wall.
        let a = clock.to_system(5_000_000_000);
        let b = clock.to_system(6_000_000_000);
        assert_eq!(b.duration_since(a).unwrap(), Duration::from_secs(1));
        // Stamps from before the epoch's offset clamp to the epoch instead of wrapping.
        let early = MonotonicClock { realtime_minus_mono_ns: -10 };
        assert_eq!(early.to_system(3), UNIX_EPOCH);
    }
}
