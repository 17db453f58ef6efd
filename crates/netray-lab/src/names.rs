//! How labs are named, and how a lab records its owner. Lab `x` is namespace
//! `nrlab-x`, host end `nr-x` (root namespace) and peer end `nrp-x` (inside the
//! namespace). The host end's interface alias records who owns the lab
//! (`netray-lab:pid=N`, or `netray-lab:persistent` after `Lab::persist`) so that
//! labs of crashed processes can be found and pruned without any state file
//! that could itself go stale.

use std::sync::atomic::{AtomicU32, Ordering};

use rand::Rng;

use crate::error::{LabError, Result};

pub(crate) const NETNS_PREFIX: &str = "nrlab-";
pub(crate) const HOST_PREFIX: &str = "nr-";
pub(crate) const PEER_PREFIX: &str = "nrp-";
pub(crate) const ALIAS_PREFIX: &str = "netray-lab:";
pub(crate) const ALIAS_PERSISTENT: &str = "netray-lab:persistent";
/// Longest lab name: `nrp-` + name must fit IFNAMSIZ-1 = 15 bytes.
pub const MAX_NAME_LEN: usize = 15 - PEER_PREFIX.len();
/// A short name that is unique among parallel tests and processes:
/// up to 3 characters of `prefix`, then pid, a per-process counter and
/// randomness in base 36 (11 characters at most, see [`MAX_NAME_LEN`]).
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let mut name: String = prefix
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(3)
        .collect::<String>()
        .to_ascii_lowercase();
    if name.is_empty() {
        name.push('t');
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let r: u32 = rand::rng().random();
    base36(&mut name, std::process::id(), 4);
    base36(&mut name, n, 2);
    base36(&mut name, r, 2);
    name
}

/// Appends the low `width` base-36 digits of `v`.
fn base36(out: &mut String, mut v: u32, width: usize) {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut buf = vec![b'0'; width];
    for slot in buf.iter_mut().rev() {
        *slot = DIGITS[(v % 36) as usize];
        v /= 36;
    }
    out.push_str(std::str::from_utf8(&buf).unwrap_or_default());
}

pub(crate) fn netns_name(name: &str) -> String {
    format!("{NETNS_PREFIX}{name}")
}
pub(crate) fn host_name(name: &str) -> String {
    format!("{HOST_PREFIX}{name}")
}
pub(crate) fn peer_name(name: &str) -> String {
    format!("{PEER_PREFIX}{name}")
}

/// Lab names become parts of interface and file names, and `ip` arguments.
pub(crate) fn validate_name(name: &str) -> Result<()> {
    let invalid = |reason: &str| {
        Err(LabError::InvalidName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return invalid(&format!(
            "it is longer than {MAX_NAME_LEN} characters (interface names are limited to 15, and `{PEER_PREFIX}` is prepended)"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return invalid("it must start with a letter or digit");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return invalid("only letters, digits, '-' and '_' are allowed");
    }
    Ok(())
}

pub(crate) fn owner_pid(alias: Option<&str>) -> Option<u32> {
    alias?
        .strip_prefix(ALIAS_PREFIX)?
        .strip_prefix("pid=")?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("netray").is_ok());
        assert!(validate_name("a-b_c9").is_ok());
        for bad in ["", "-x", "a b", "a/b", "toolongname12", "x;rm"] {
            assert!(
                matches!(validate_name(bad), Err(LabError::InvalidName { .. })),
                "{bad:?}"
            );
        }
        let a = unique_name("firewall");
        let b = unique_name("firewall");
        assert_ne!(a, b);
        assert!(a.starts_with("fir") && a.len() == MAX_NAME_LEN, "{a}");
        assert!(validate_name(&unique_name("")).is_ok());
        assert!(validate_name(&unique_name("-_ü")).is_ok());
    }

    #[test]
    fn owner_alias() {
        assert_eq!(owner_pid(Some("netray-lab:pid=42")), Some(42));
        assert_eq!(owner_pid(Some(ALIAS_PERSISTENT)), None);
        assert_eq!(owner_pid(Some("something else")), None);
    }
}
