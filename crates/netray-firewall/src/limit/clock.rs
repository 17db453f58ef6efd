//! Which clock a limit's bucket runs on (see netray_abi.h, "rate limits").
//!
//! The kernel's tick count (jiffies) costs the kernel nothing to read (the
//! verifier inlines `bpf_jiffies64`); the boot clock is a helper call, about
//! 40 ns a packet with return-thunk mitigations. The tick is exact enough for
//! a bucket whose tolerance covers one tick: the rate is kept, and a burst
//! is at most one tick's worth of packets larger. The tick's length is
//! CONFIG_HZ, read from the kernel's config; where that cannot be read, every
//! limit uses the boot clock.

use std::io::Read;
use std::sync::OnceLock;

use netray_ebpf::abi::nr_limit_layout;

/// The kernel's tick in ns (1 s / CONFIG_HZ), if its config says.
pub fn kernel_tick_ns() -> Option<u32> {
    static TICK: OnceLock<Option<u32>> = OnceLock::new();
    *TICK.get_or_init(|| {
        let hz = kernel_config().as_deref().and_then(config_hz)?;
        (hz > 0 && hz <= 10_000).then(|| 1_000_000_000 / hz)
    })
}

/// The tick_ns a limit with this tolerance (TAT units) gets: the kernel's
/// tick when the tolerance covers it, else 0 (the boot clock).
pub fn tick_ns_for(tolerance: u64) -> u32 {
    match kernel_tick_ns() {
        Some(tick) if tolerance >= u64::from(tick) << nr_limit_layout::NR_LIMIT_TICK_SHIFT.0 => tick,
        _ => 0,
    }
}

/// The running kernel's build config: /boot/config-<release>, else
/// /proc/config.gz (CONFIG_IKCONFIG_PROC), where libbpf looks too.
fn kernel_config() -> Option<String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    if let Ok(text) = std::fs::read_to_string(format!("/boot/config-{}", release.trim())) {
        return Some(text);
    }
    let gz = std::fs::read("/proc/config.gz").ok()?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut text).ok()?;
    Some(text)
}

fn config_hz(config: &str) -> Option<u32> {
    config.lines().find_map(|l| l.strip_prefix("CONFIG_HZ=")).and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_config_hz() {
        assert_eq!(config_hz("# CONFIG_HZ_100 is not set\nCONFIG_HZ_250=y\nCONFIG_HZ=250\n"), Some(250));
        assert_eq!(config_hz("CONFIG_HZ_1000=y\n"), None);
    }

    #[test]
    fn this_kernel_has_a_tick_and_a_wide_bucket_runs_on_it() {
        let tick = kernel_tick_ns().expect("this machine's kernel config (/boot or /proc/config.gz) gives CONFIG_HZ");
        assert!((100_000..=10_000_000).contains(&tick), "{tick}");
        let covers = u64::from(tick) << nr_limit_layout::NR_LIMIT_TICK_SHIFT.0;
        assert_eq!(tick_ns_for(covers), tick);
        assert_eq!(tick_ns_for(covers - 1), 0);
    }
}
