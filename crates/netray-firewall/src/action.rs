//! What a matched rule does (deny, or audit: count and let pass) and for how
//! long (`--ttl`): parsed from what the user writes, and turned into the
//! kernel's record (struct nr_fw_rule_action). Expiry is on the boot clock
//! the kernel reads (bpf_ktime_get_boot_ns = CLOCK_BOOTTIME), which keeps
//! counting through a suspend.

use std::{fmt, str::FromStr, time::Duration};

use netray_ebpf::abi::{nr_fw_action, nr_fw_rule_action};
use serde::Serialize;

use crate::rule::RuleError;

/// What a rule does to the packets it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Drop them.
    #[default]
    Deny,
    /// Count them as the rule's hits and let them pass.
    Audit,
    /// Let them pass: an allow rule (`netray allow`), which also exempts
    /// them from a drop policy.
    Allow,
}

impl Action {
    /// The kernel's code (enum nr_fw_action).
    pub fn code(self) -> u8 {
        match self {
            Action::Deny => nr_fw_action::NR_ACTION_DENY.0 as u8,
            Action::Audit => nr_fw_action::NR_ACTION_AUDIT.0 as u8,
            Action::Allow => nr_fw_action::NR_ACTION_ALLOW.0 as u8,
        }
    }
}

impl Action {
    /// The action of a kernel code; an unknown one reads as deny (what the kernel does with it).
    pub fn from_code(code: u32) -> Action {
        [Action::Audit, Action::Allow].into_iter().find(|a| u32::from(a.code()) == code).unwrap_or(Action::Deny)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Deny => "deny",
            Action::Audit => "audit",
            Action::Allow => "allow",
        })
    }
}

/// A rule's action and lifetime, as given when it is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RuleOptions {
    pub action: Action,
    /// From when the rule is added; None: until deleted.
    pub ttl: Option<Duration>,
}

impl RuleOptions {
    /// The kernel's record of these options for a rule added at boot-clock
    /// time `now_ns`.
    pub fn to_abi(&self, now_ns: u64) -> nr_fw_rule_action {
        let expires_ns = self.ttl.map_or(0, |t| now_ns.saturating_add(t.as_nanos().min(u128::from(u64::MAX)) as u64));
        nr_fw_rule_action { expires_ns, action: u32::from(self.action.code()), _pad: 0 }
    }
}

/// A time to live as the user writes it (humantime: `30s`, `10m`, `1h30m`,
/// `2days`): positive, and never in the past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl(pub Duration);

impl FromStr for Ttl {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Ttl, RuleError> {
        let given = s.trim();
        if given.starts_with('-') {
            return Err(RuleError::TtlInPast(s.to_string()));
        }
        match humantime::parse_duration(given) {
            Ok(d) if d.is_zero() => Err(RuleError::TtlZero(s.to_string())),
            Ok(d) => Ok(Ttl(d)),
            Err(_) => Err(RuleError::BadTtl(s.to_string())),
        }
    }
}

/// CLOCK_BOOTTIME now, in nanoseconds: the clock of nr_fw_rule_action.expires_ns.
pub fn boot_clock_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_BOOTTIME exists on every Linux netray runs on");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Whether a kernel record has expired at boot-clock time `now_ns` (as the
/// kernel decides it: from its expiry instant on).
pub fn expired(a: &nr_fw_rule_action, now_ns: u64) -> bool {
    a.expires_ns != 0 && now_ns >= a.expires_ns
}

/// Time left as people read it, to the second (`2m 5s`), at least `1s`.
pub fn time_left(ns: u64) -> String {
    humantime::format_duration(Duration::from_secs(ns.div_ceil(1_000_000_000).max(1))).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_parse_and_bad_ones_name_the_fix() {
        assert_eq!("3s".parse::<Ttl>().unwrap(), Ttl(Duration::from_secs(3)));
        assert_eq!("1h30m".parse::<Ttl>().unwrap(), Ttl(Duration::from_secs(5400)));
        assert_eq!("500ms".parse::<Ttl>().unwrap(), Ttl(Duration::from_millis(500)));
        for (given, want) in [
            ("0", "--ttl '0' would expire the rule at once: give a positive duration such as 30s, 10m or 2h"),
            ("0s", "--ttl '0s' would expire the rule at once: give a positive duration such as 30s, 10m or 2h"),
            ("-3s", "--ttl '-3s' is in the past: a TTL counts from now; give a positive duration such as 30s, 10m or 2h"),
            ("soon", "--ttl 'soon' is not a duration: write it as a number and a unit, such as 30s, 10m, 2h or 1h30m"),
            ("3", "--ttl '3' is not a duration: write it as a number and a unit, such as 30s, 10m, 2h or 1h30m"),
        ] {
            assert_eq!(given.parse::<Ttl>().unwrap_err().to_string(), want, "{given}");
        }
    }

    #[test]
    fn expiry_is_from_now_on_the_boot_clock() {
        let opts = RuleOptions { action: Action::Audit, ttl: Some(Duration::from_secs(3)) };
        let a = opts.to_abi(1_000);
        assert_eq!((a.expires_ns, a.action), (3_000_001_000, nr_fw_action::NR_ACTION_AUDIT.0));
        assert!(!expired(&a, 3_000_000_999));
        assert!(expired(&a, 3_000_001_000));
        let forever = RuleOptions::default().to_abi(1_000);
        assert_eq!((forever.expires_ns, forever.action), (0, nr_fw_action::NR_ACTION_DENY.0));
        assert!(!expired(&forever, u64::MAX));
        assert!(boot_clock_ns() > 0);
        assert_eq!(time_left(1), "1s");
        assert_eq!(time_left(125_000_000_000), "2m 5s");
    }
}
