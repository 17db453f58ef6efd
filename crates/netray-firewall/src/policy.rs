//! `netray firewall policy in drop|pass`: what happens to received packets
//! no rule decides, per interface, and the reply table (fw_replies, see
//! bpf/include/policy.h) that keeps the host's own sessions alive under a
//! drop policy.
//!
//! Turning drop on first makes TC egress note the replies to what the host
//! sends, and seeds the table with the host's connected TCP and UDP sockets
//! (/proc/net/{tcp,udp}{,6}): a session that is quiet at that moment (an SSH
//! login waiting for a keystroke) would otherwise have its next packet
//! dropped before the host ever sent anything to note.

use std::{
    fmt,
    net::IpAddr,
    str::FromStr,
    sync::atomic::{AtomicU64, Ordering},
};

use libbpf_rs::MapCore;
use netray_core::{
    map_names as M,
    maps::{self, MmapArray},
    Dispatcher, Error, Feature, Hook, Interface, PinDir, Result,
};
use netray_ebpf::abi::{
    bytes_of, nr_direct_cpus, nr_fw_pending, nr_fw_state, nr_reply_key, nr_reply_seen_layout, nr_reply_set,
    nr_reply_stats, sum_counters,
};

const DIRECT_CPUS: usize = nr_direct_cpus::NR_DIRECT_CPUS.0 as usize;
use serde::Serialize;

/// What the ingress hooks do with a packet no rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    #[default]
    Pass,
    /// Drop it, except ARP, IPv6 neighbour/router discovery and replies to
    /// what this host sent.
    Drop,
}

impl FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Policy, String> {
        match s {
            "pass" | "accept" => Ok(Policy::Pass),
            "drop" => Ok(Policy::Drop),
            _ => Err(format!("unknown policy '{s}': use drop (only allowed traffic and replies pass) or pass")),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Policy::Pass => "pass",
            Policy::Drop => "drop",
        })
    }
}

impl Policy {
    /// An interface's "in" policy, from its feature bits.
    pub fn of(d: &Dispatcher) -> Result<Policy> {
        Ok(if d.config()?.features & Feature::PolicyDrop.bit() != 0 { Policy::Drop } else { Policy::Pass })
    }
}

/// The reply table's fill and counters (summed over CPUs).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ReplyTableStatus {
    pub entries: u64,
    pub capacity: u32,
    /// Replies a new one took the place of (the table is full where its set is).
    pub evicted: u64,
    /// Sent packets whose reply could not be noted.
    pub insert_failed: u64,
    /// Received packets passed as replies under a drop policy.
    pub replies_passed: u64,
    /// ARP and IPv6 neighbour/router discovery passed under a drop policy.
    pub neighbour_passed: u64,
    /// Received packets the drop policy dropped.
    pub policy_dropped: u64,
}

/// The reply table's status; None before any dispatcher created it.
pub fn reply_status(pin: &PinDir) -> Result<Option<ReplyTableStatus>> {
    let dir = pin.fw_dir();
    let (table, stats) = (dir.join(M::FW_REPLIES), dir.join(M::FW_REPLY_STATS));
    if !table.exists() || !stats.exists() {
        return Ok(None);
    }
    let table = maps::open_pinned(&table)?;
    let s: nr_reply_stats = sum_counters(&maps::get_percpu(&maps::open_pinned(&stats)?, 0)?);
    let sets = MmapArray::<nr_reply_set>::new(&table)?;
    let entries = (0..sets.len()).map(|i| sets.read(i).way.iter().filter(|w| w.tag != 0).count() as u64).sum();
    // The short path counts in each CPU's fw_pending row.
    let pending = dir.join(M::FW_PENDING);
    let (short_dropped, short_replies) = if pending.exists() {
        let rows: MmapArray<nr_fw_pending> = MmapArray::of_global(&maps::open_pinned(&pending)?, DIRECT_CPUS)?;
        rows.slice().iter().fold((0, 0), |(d, r), p| (d + p.policy_dropped, r + p.policy_replies))
    } else {
        (0, 0)
    };
    Ok(Some(ReplyTableStatus {
        entries,
        capacity: table.max_entries() * crate::tables::REPLY_WAYS,
        evicted: s.evicted,
        insert_failed: s.insert_failed,
        replies_passed: s.replies + short_replies,
        neighbour_passed: s.neighbour,
        policy_dropped: s.dropped + short_dropped,
    }))
}

/// Sets an interface's "in" policy (call with the pin lock held). Returns
/// how many of the host's connections were seeded into the reply table.
pub fn set(pin: &PinDir, ifname: &str, policy: Policy) -> Result<usize> {
    let iface = Interface::resolve(ifname)?;
    let d = Dispatcher::open(pin, &iface)?.ok_or_else(|| Error::PolicyNotAttached(iface.name.clone()))?;
    let cfg = d.config()?;
    if cfg.features & Feature::Firewall.bit() == 0 {
        return Err(Error::PolicyNotAttached(iface.name.clone()));
    }
    let drop = policy == Policy::Drop;
    let mut seeded = 0;
    if drop {
        // Replies first, so nothing the host sends from now on is missed.
        d.set_hook_feature(Hook::TcEgress, Feature::Replies, true)?;
        d.sync_tc(pin)?;
        seeded = seed_connections(pin)?;
    }
    let mut cfg = d.config()?;
    Dispatcher::set_hook_bits(&mut cfg, Hook::Xdp, Feature::PolicyDrop.bit(), drop);
    // TC ingress enforces "in" rules only where the firewall runs there.
    let tc_in = cfg.tc_ingress_features & Feature::Firewall.bit() != 0;
    Dispatcher::set_hook_bits(&mut cfg, Hook::TcIngress, Feature::PolicyDrop.bit(), drop && tc_in);
    if !drop {
        Dispatcher::set_hook_bits(&mut cfg, Hook::TcEgress, Feature::Replies.bit(), false);
    }
    d.set_config(&cfg)?;
    if !drop {
        d.sync_tc(pin)?;
    }
    Ok(seeded)
}

/// Clears an interface's policy bits (the firewall leaving it).
pub fn clear(d: &Dispatcher) -> Result<()> {
    let mut cfg = d.config()?;
    for hook in [Hook::Xdp, Hook::TcIngress] {
        Dispatcher::set_hook_bits(&mut cfg, hook, Feature::PolicyDrop.bit(), false);
    }
    Dispatcher::set_hook_bits(&mut cfg, Hook::TcEgress, Feature::Replies.bit(), false);
    d.set_config(&cfg)
}

const SEEN_SHIFT: u32 = nr_reply_seen_layout::NR_REPLY_SEEN_SHIFT.0;
const SEEN_WORDS: usize = nr_reply_seen_layout::NR_REPLY_SEEN_WORDS.0 as usize;

/// The fw_reply_seen bit of a reply key: nr_reply_bit (policy.h), bit for bit.
pub fn reply_bit(k: &nr_reply_key) -> u32 {
    let word = |i: usize| u32::from_ne_bytes([k.src[i], k.src[i + 1], k.src[i + 2], k.src[i + 3]]);
    let addr = word(0) ^ word(4) ^ word(8) ^ word(12);
    let ports = (u32::from(k.sport) << 16 | u32::from(k.dport)).wrapping_mul(0x85eb_ca6b);
    let h = addr.wrapping_mul(0x9e37_79b1) ^ ports ^ u32::from(k.proto);
    h.wrapping_mul(0xc2b2_ae35) >> (32 - SEEN_SHIFT)
}

const REPLY_WAYS: usize = crate::tables::REPLY_WAYS as usize;

/// nr_reply_hash (policy.h), bit for bit: the key's five 8-byte words, each
/// mixed by a multiply, from the table's seed.
pub fn reply_hash(k: &nr_reply_key, seed: u64) -> u64 {
    let bytes = bytes_of(k);
    bytes.chunks_exact(8).fold(seed, |h, w| {
        let w = u64::from_ne_bytes(w.try_into().expect("8 bytes"));
        (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    })
}

/// The reply table as userspace writes it: an entry and its fw_reply_seen
/// bit, as TC egress notes a reply (nr_policy_note_sent).
pub struct Replies {
    sets: MmapArray<nr_reply_set>,
    seen: MmapArray<u64>,
    mask: u32,
    seed: u64,
}

impl Replies {
    /// The pinned table; None before a dispatcher created it.
    pub fn open(pin: &PinDir) -> Result<Option<Replies>> {
        let dir = pin.fw_dir();
        let (table, seen, state) = (dir.join(M::FW_REPLIES), dir.join(M::FW_REPLY_SEEN), dir.join(M::FW_STATE));
        if !table.exists() || !seen.exists() || !state.exists() {
            return Ok(None);
        }
        let state: nr_fw_state = maps::get(&maps::open_pinned(&state)?, 0)?.unwrap_or_default();
        crate::tables::check_table_format(&state, pin)?;
        let seen = MmapArray::of_global(&maps::open_pinned(&seen)?, SEEN_WORDS)?;
        let sets = MmapArray::new(&maps::open_pinned(&table)?)?;
        Ok(Some(Replies { sets, seen, mask: state.reply_mask, seed: state.reply_seed }))
    }

    /// Notes a reply to pass, as sent now; false if another writer took its
    /// way at the same moment. A full set gives up the way whose packet
    /// was sent longest ago, as the kernel's notes do (not counted in
    /// fw_reply_stats, whose per-CPU rows only the kernel may add to; the
    /// seeding that calls this adds a few entries once, to a large table).
    pub fn note(&mut self, k: &nr_reply_key) -> bool {
        let bit = reply_bit(k) as usize;
        let word = &mut self.seen.slice_mut()[(bit >> 6) % SEEN_WORDS];
        // SAFETY: the word is a live, aligned u64 of the shared mapping; the
        // kernel sets bits of it with atomic ors too.
        unsafe { AtomicU64::from_ptr(word) }.fetch_or(1 << (bit & 63), Ordering::Relaxed);
        let hash = reply_hash(k, self.seed);
        let tag = hash | 1;
        let now = coarse_now_ns();
        let index = ((hash >> 32) as u32 & self.mask) as usize % self.sets.len().max(1);
        let set = &mut self.sets.slice_mut()[index];
        let same = |w: &netray_ebpf::abi::nr_reply_way| {
            // SAFETY: volatile reads of a live mapping the kernel writes concurrently.
            unsafe { std::ptr::read_volatile(&w.tag) == tag && bytes_of(&std::ptr::read_volatile(&w.key)) == bytes_of(k) }
        };
        if let Some(w) = set.way.iter_mut().find(|w| same(w)) {
            // SAFETY: an aligned 8-byte store to the live mapping.
            unsafe { std::ptr::write_volatile(&mut w.last_sent_ns, now) };
            return true;
        }
        // An empty way, else the one sent on longest ago.
        let victim = (0..REPLY_WAYS)
            .min_by_key(|&i| {
                // SAFETY: as above.
                let w = &set.way[i];
                unsafe { if std::ptr::read_volatile(&w.tag) == 0 { 0 } else { std::ptr::read_volatile(&w.last_sent_ns) } }
            })
            .unwrap_or(0);
        let w = &mut set.way[victim];
        // SAFETY: the tag is a live, aligned u64 of the shared mapping, which
        // the kernel claims with compare-and-swap too.
        let claim = unsafe { AtomicU64::from_ptr(&mut w.tag) };
        let old = claim.load(Ordering::Acquire);
        if claim.compare_exchange(old, tag, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return false;
        }
        // SAFETY: plain stores into the way this writer just claimed.
        unsafe {
            std::ptr::write_volatile(&mut w.key, *k);
            std::ptr::write_volatile(&mut w.last_sent_ns, now);
        }
        true
    }
}

/// bpf_ktime_get_coarse_ns(): CLOCK_MONOTONIC_COARSE.
fn coarse_now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Notes the reply of every connected TCP/UDP socket of this network
/// namespace in fw_replies. Returns how many.
fn seed_connections(pin: &PinDir) -> Result<usize> {
    let Some(mut table) = Replies::open(pin)? else { return Ok(0) };
    let mut n = 0;
    for (file, proto) in [("tcp", 6u8), ("tcp6", 6), ("udp", 17), ("udp6", 17)] {
        // A kernel without IPv6 has no tcp6/udp6: nothing to seed from them.
        let Ok(text) = std::fs::read_to_string(format!("/proc/net/{file}")) else { continue };
        for conn in connections(&text) {
            if note_reply(&mut table, proto, conn) {
                n += 1;
            }
        }
    }
    Ok(n)
}

/// One connected socket: (local address, local port, remote address, remote port).
type Conn = (IpAddr, u16, IpAddr, u16);

/// The connected sockets of a /proc/net/{tcp,udp}{,6} table: those with a
/// remote port (listening and unconnected sockets have 0). Parsed by hand:
/// the format is fixed since Linux 2.6, and the procfs crate would bring a
/// dependency tree for these few lines.
pub fn connections(text: &str) -> Vec<Conn> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut f = line.split_whitespace().skip(1);
            let (local, remote) = (proc_addr(f.next()?)?, proc_addr(f.next()?)?);
            let state = f.next()?;
            // TCP LISTEN (0A) and closed sockets have no peer to hear from.
            (remote.1 != 0 && state != "0A" && state != "07").then_some((local.0, local.1, remote.0, remote.1))
        })
        .collect()
}

/// `0100007F:0016` (IPv4) or 32 hex digits (IPv6, four host-order words).
fn proc_addr(s: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..addr.len() / 8)
        .map(|i| u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let ip = match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes.as_slice()).ok()?),
        16 => IpAddr::from(<[u8; 16]>::try_from(bytes.as_slice()).ok()?),
        _ => return None,
    };
    Some((ip, port))
}

/// Notes the reply a connection's peer sends: from remote to local.
fn note_reply(table: &mut Replies, proto: u8, (local, lport, remote, rport): Conn) -> bool {
    let mut k = nr_reply_key { proto, sport: rport, dport: lport, ..Default::default() };
    match (remote, local) {
        (IpAddr::V4(r), IpAddr::V4(l)) => {
            k.family = 4;
            k.src[..4].copy_from_slice(&r.octets());
            k.dst[..4].copy_from_slice(&l.octets());
        }
        (IpAddr::V6(r), IpAddr::V6(l)) => {
            // A v4-mapped socket's packets are IPv4 on the wire.
            if let (Some(r4), Some(l4)) = (r.to_ipv4_mapped(), l.to_ipv4_mapped()) {
                return note_reply(table, proto, (IpAddr::V4(l4), lport, IpAddr::V4(r4), rport));
            }
            k.family = 6;
            k.src.copy_from_slice(&r.octets());
            k.dst.copy_from_slice(&l.octets());
        }
        _ => return false,
    }
    table.note(&k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tables_give_the_connected_sockets() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n\
   1: 0F02000A:0016 0202000A:C350 01 00000000:00000000 02:000A7B1E 00000000     0        0 2 4 0 20 4 30 10 -1\n";
        assert_eq!(
            connections(tcp),
            vec![("10.0.2.15".parse().unwrap(), 22, "10.0.2.2".parse().unwrap(), 50000)],
            "the listener is skipped, the SSH session kept"
        );
        let tcp6 = "  sl  local_address remote_address st\n\
   0: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:D431 01 0\n";
        let c = connections(tcp6);
        assert_eq!(c[0].0, "::ffff:127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!((c[0].1, c[0].3), (8080, 54321));
        assert!("dropp".parse::<Policy>().unwrap_err().contains("use drop"));
    }
}
