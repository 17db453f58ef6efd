//! Lab subnets and their allocation.
//!
//! Every lab gets a slot `i` in `0..SLOTS`, and everything address-like is
//! derived from it: IPv4 `198.18.0.0/15` (RFC 2544, never routed) cut into
//! /30s (host `.1`, peer `.2`), IPv6 `fd6e:7261:0:i::/64` (ULA; host `::1`,
//! peer `::2`) and locally administered MACs `02:6e:72:ii:ii:01/02`.
//!
//! The host ends of all labs live in the root namespace, so two labs must not
//! share a slot. The root namespace's addresses are the ground truth for what
//! is taken; an exclusive `flock` on `/run/netray-lab/alloc.lock` makes
//! "scan, pick, assign the host addresses" atomic among threads and processes
//! (flock locks belong to the open file, so two threads conflict too).

use std::fs::{self, File, OpenOptions};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::OpenOptionsExt;

use nix::fcntl::{Flock, FlockArg};
use rand::Rng;

use crate::error::{LabError, Result};
use crate::ip;

/// Number of lab slots: 198.18.0.0/15 holds 2^17 addresses = 2^15 /30s.
pub(crate) const SLOTS: u32 = 1 << 15;
const V4_BASE: u32 = u32::from_be_bytes([198, 18, 0, 0]);
/// fd6e:7261:0::/48 — the slot goes into the fourth group.
const V6_BASE: u128 = 0xfd6e_7261_0000_u128 << 80;
pub const V4_PREFIX: u8 = 30;
pub const V6_PREFIX: u8 = 64;

pub(crate) const RUN_DIR: &str = "/run/netray-lab";

/// One lab's addresses, derived from its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Subnet {
    pub slot: u32,
}

impl Subnet {
    fn v4(self, host: u32) -> Ipv4Addr {
        Ipv4Addr::from(V4_BASE + self.slot * 4 + host)
    }
    fn v6(self, host: u128) -> Ipv6Addr {
        Ipv6Addr::from(V6_BASE | (u128::from(self.slot) << 64) | host)
    }
    fn mac(self, host: u8) -> [u8; 6] {
        let [_, _, hi, lo] = self.slot.to_be_bytes();
        [0x02, 0x6e, 0x72, hi, lo, host]
    }
    pub fn host_v4(self) -> Ipv4Addr {
        self.v4(1)
    }
    pub fn peer_v4(self) -> Ipv4Addr {
        self.v4(2)
    }
    pub fn host_v6(self) -> Ipv6Addr {
        self.v6(1)
    }
    pub fn peer_v6(self) -> Ipv6Addr {
        self.v6(2)
    }
    /// The subnet whose host end has `addr`, if that is a lab's host address.
    pub fn of_host_v4(addr: Ipv4Addr) -> Option<Subnet> {
        let offset = u32::from(addr).checked_sub(V4_BASE)?;
        (offset % 4 == 1 && offset / 4 < SLOTS).then_some(Subnet { slot: offset / 4 })
    }
    pub fn host_mac(self) -> [u8; 6] {
        self.mac(1)
    }
    pub fn peer_mac(self) -> [u8; 6] {
        self.mac(2)
    }
}

/// Held while a slot is picked and the host addresses are assigned.
pub(crate) struct AllocLock {
    _lock: Flock<File>,
}

/// Takes the allocation lock, blocking until other allocators are done.
pub(crate) fn lock() -> Result<AllocLock> {
    fs::create_dir_all(RUN_DIR)
        .map_err(|e| LabError::privileged(format!("creating {RUN_DIR}"), e))?;
    let path = format!("{RUN_DIR}/alloc.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o644)
        .open(&path)
        .map_err(|e| LabError::privileged(format!("opening {path}"), e))?;
    let lock = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| LabError::io(format!("locking {path}"), errno.into()))?;
    Ok(AllocLock { _lock: lock })
}

/// Picks a free slot. Must be called with the [`AllocLock`] held, and the
/// host addresses must be assigned before it is released. Starts at a random
/// slot so that a slot just freed is not reused at once (stale conntrack or
/// neighbour state from the previous lab cannot leak into the next).
pub(crate) fn allocate(_held: &AllocLock) -> Result<Subnet> {
    let used = used_slots()?;
    let start = rand::rng().random_range(0..SLOTS);
    (0..SLOTS)
        .map(|i| (start + i) % SLOTS)
        .find(|&slot| !used[slot as usize])
        .map(|slot| Subnet { slot })
        .ok_or(LabError::NoFreeSubnet)
}

/// Slots overlapped by any address configured in the root namespace, whoever
/// configured it.
fn used_slots() -> Result<Vec<bool>> {
    let mut used = vec![false; SLOTS as usize];
    for link in ip::json(None, &["addr", "show"])? {
        let Some(infos) = link.get("addr_info").and_then(|a| a.as_array()) else {
            continue;
        };
        for info in infos {
            let local = info
                .get("local")
                .and_then(|v| v.as_str())
                .and_then(|s| s.parse::<IpAddr>().ok());
            let prefix = info
                .get("prefixlen")
                .and_then(|v| v.as_u64())
                .unwrap_or(128) as u32;
            match local {
                Some(IpAddr::V4(a)) => mark_v4(&mut used, a, prefix),
                Some(IpAddr::V6(a)) => mark_v6(&mut used, a, prefix),
                None => {}
            }
        }
    }
    Ok(used)
}

fn mark_v4(used: &mut [bool], addr: Ipv4Addr, prefix: u32) {
    let prefix = prefix.min(32);
    let size = 1u64 << (32 - prefix);
    let start = u64::from(u32::from(addr)) & !(size - 1);
    mark_range(used, start, start + size, u64::from(V4_BASE), 2);
}

fn mark_v6(used: &mut [bool], addr: Ipv6Addr, prefix: u32) {
    let prefix = prefix.min(128);
    // Only the /48 we allocate from matters; compare in units of /64.
    let net64 = u128::from(addr) >> 64;
    let base64 = V6_BASE >> 64;
    if prefix <= 64 {
        let size = 1u128 << (64 - prefix);
        let start = net64 & !(size - 1);
        let (start, end) = (
            start.min(u64::MAX as u128),
            (start + size).min(u64::MAX as u128),
        );
        mark_range(used, start as u64, end as u64, base64 as u64, 0);
    } else {
        mark_range(used, net64 as u64, net64 as u64 + 1, base64 as u64, 0);
    }
}

/// Marks the slots overlapping `[start, end)`, where a slot is
/// `2^shift` units wide from `base`.
fn mark_range(used: &mut [bool], start: u64, end: u64, base: u64, shift: u32) {
    let limit = base + (u64::from(SLOTS) << shift);
    let (start, end) = (start.max(base), end.min(limit));
    if start >= end {
        return;
    }
    let first = (start - base) >> shift;
    let last = (end - 1 - base) >> shift;
    for slot in first..=last {
        used[slot as usize] = true;
    }
}

/// Formats a MAC address the usual way.
pub(crate) fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses "aa:bb:cc:dd:ee:ff".
pub(crate) fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_from_slot() {
        let s = Subnet { slot: 0 };
        assert_eq!(s.host_v4(), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(s.peer_v6(), "fd6e:7261::2".parse::<Ipv6Addr>().unwrap());
        let s = Subnet { slot: SLOTS - 1 };
        assert_eq!(s.peer_v4(), Ipv4Addr::new(198, 19, 255, 254));
        assert_eq!(
            s.host_v6(),
            "fd6e:7261:0:7fff::1".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(mac_string(s.peer_mac()), "02:6e:72:7f:ff:02");
        assert_eq!(parse_mac("02:6e:72:7f:ff:02"), Some(s.peer_mac()));
        assert_eq!(parse_mac("02:6e:72"), None);
    }

    #[test]
    fn marking() {
        let mut used = vec![false; SLOTS as usize];
        mark_v4(&mut used, Ipv4Addr::new(198, 18, 0, 6), 30);
        mark_v4(&mut used, Ipv4Addr::new(192, 0, 2, 2), 24);
        mark_v6(&mut used, "fd6e:7261:0:9::1".parse().unwrap(), 64);
        mark_v6(&mut used, "fd00::2".parse().unwrap(), 64);
        let marked: Vec<usize> = (0..used.len()).filter(|&i| used[i]).collect();
        assert_eq!(marked, vec![1, 9]);
        // A /24 inside the range takes 64 slots; a covering /8 takes all.
        mark_v4(&mut used, Ipv4Addr::new(198, 19, 1, 0), 24);
        assert_eq!(used.iter().filter(|u| **u).count(), 66);
        mark_v6(&mut used, "fd00::".parse().unwrap(), 8);
        assert!(used.iter().all(|u| *u));
    }
}
