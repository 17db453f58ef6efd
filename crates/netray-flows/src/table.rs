//! The kernel's flow table of one interface (`if_flows`, an LRU per-CPU hash,
//! and its per-CPU counters `if_flow_stats`), read from userspace.
//!
//! Values are per CPU: a flow's packets and bytes are the sums over CPUs, its
//! first sighting the earliest non-zero `first_seen_ns` (only the CPU that
//! created the entry sets it), its last sighting and last verdict those of the
//! CPU that saw it last.
//!
//! In front of the table, each CPU has a small cache of flows
//! (`if_flow_cache`, see bpf/include/flows.h): packets of a flow that holds
//! its CPU's slot are counted there ("pending") and added to the table when
//! another flow takes the slot. Reading adds the pending counts to the
//! table's: the table is read first, then the caches, so a flush between the
//! two reads can leave a packet out of one snapshot but never counts it twice.
//!
//! Evictions: the LRU map drops entries silently when it is full, so the
//! kernel counts every entry it creates (`inserts`, per CPU). Userspace never
//! deletes entries while the feature runs, so every created entry that is no
//! longer present was evicted: `evictions = inserts - entries`. [`FlowTable::clear`]
//! (done only while no session runs, with the feature off) empties the table
//! and zeroes the counters together, which keeps the equation true.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use libbpf_rs::{MapCore, MapHandle};
use netray_core::{map_names as M, maps, Dispatcher, Error, Result};
use netray_ebpf::abi::{from_bytes, nr_flow_key, nr_flow_slot, nr_flow_stats, nr_flow_value};
use serde::Serialize;

/// Which way a packet went through the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

/// What identifies a flow: interface, direction, protocol, addresses, ports.
/// For ICMP/ICMPv6, `sport` is 0 and `dport` is `type << 8 | code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub ifindex: u32,
    pub direction: Direction,
    /// IPPROTO_* number.
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

impl FlowKey {
    pub fn from_abi(k: &nr_flow_key) -> FlowKey {
        let addr = |b: &[u8; 16]| match k.family {
            4 => IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])),
            _ => IpAddr::V6(Ipv6Addr::from(*b)),
        };
        FlowKey {
            ifindex: k.ifindex,
            direction: if k.direction == 1 { Direction::Egress } else { Direction::Ingress },
            proto: k.proto,
            src: addr(&k.src),
            dst: addr(&k.dst),
            sport: k.sport,
            dport: k.dport,
        }
    }

    pub fn is_icmp(&self) -> bool {
        matches!(self.proto, 1 | 58)
    }

    /// Ports, for the protocols that have them (the kernel fills them for
    /// TCP, UDP, UDP-Lite and SCTP; 0 when the header was missing).
    pub fn ports(&self) -> Option<(u16, u16)> {
        matches!(self.proto, 6 | 17 | 132 | 136).then_some((self.sport, self.dport))
    }

    /// ICMP type and code.
    pub fn icmp(&self) -> Option<(u8, u8)> {
        self.is_icmp().then_some(((self.dport >> 8) as u8, self.dport as u8))
    }
}

pub use netray_core::names::proto_name;

/// TCP flags by name, in the order a connection shows them: "SYN,ACK,PSH,FIN".
pub fn tcp_flag_names(bits: u8) -> String {
    const NAMES: [(u8, &str); 8] =
        [(0x02, "SYN"), (0x10, "ACK"), (0x08, "PSH"), (0x01, "FIN"), (0x04, "RST"), (0x20, "URG"), (0x40, "ECE"), (0x80, "CWR")];
    NAMES.iter().filter(|(bit, _)| bits & bit != 0).map(|(_, name)| *name).collect::<Vec<_>>().join(",")
}

/// A flow's counters, summed over CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub key: FlowKey,
    pub packets: u64,
    pub bytes: u64,
    /// Packets (and their bytes) the firewall dropped.
    pub dropped: u64,
    pub bytes_dropped: u64,
    /// CLOCK_MONOTONIC_COARSE nanoseconds (a few ms resolution).
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    /// Verdict of the last packet: true when the firewall dropped it.
    pub last_dropped: bool,
    /// What dropped the last packet, if it was dropped: the kernel's decided
    /// rule, read with `netray_ebpf::decided::Decided::from_raw`.
    pub last_rule: Option<u32>,
    /// TCP: the flags of all its packets ORed (FIN 0x01 ... CWR 0x80).
    pub tcp_flags: u8,
}

impl Flow {
    /// Sums one flow's per-CPU values.
    pub fn from_abi(key: &nr_flow_key, per_cpu: &[nr_flow_value]) -> Flow {
        let mut f = Flow {
            key: FlowKey::from_abi(key),
            packets: 0,
            bytes: 0,
            dropped: 0,
            bytes_dropped: 0,
            first_seen_ns: 0,
            last_seen_ns: 0,
            last_dropped: false,
            last_rule: None,
            tcp_flags: 0,
        };
        let mut last: Option<&nr_flow_value> = None;
        for v in per_cpu {
            f.packets += v.packets;
            f.bytes += v.bytes;
            f.dropped += v.dropped;
            f.bytes_dropped += v.bytes_dropped;
            f.tcp_flags |= v.tcp_flags;
            if v.first_seen_ns != 0 && (f.first_seen_ns == 0 || v.first_seen_ns < f.first_seen_ns) {
                f.first_seen_ns = v.first_seen_ns;
            }
            if v.packets != 0 && last.is_none_or(|l| v.last_seen_ns >= l.last_seen_ns) {
                last = Some(v);
            }
        }
        if let Some(l) = last {
            f.last_seen_ns = l.last_seen_ns;
            f.last_dropped = l.last_verdict == 1;
            f.last_rule = (l.last_rule != 0).then_some(l.last_rule);
        }
        if f.first_seen_ns == 0 {
            // The creating CPU's share is gone (cannot happen while the entry
            // exists, but never report a first sighting after the last).
            f.first_seen_ns = f.last_seen_ns;
        }
        f
    }
}

impl Flow {
    /// Adds a CPU's pending counts (from its flow cache), whose last packet
    /// was seen at `last_ns`.
    fn add_pending(&mut self, slot: &nr_flow_slot, last_ns: u64) {
        self.packets += slot.packets;
        self.bytes += slot.bytes;
        self.dropped += slot.dropped;
        self.bytes_dropped += slot.bytes_dropped;
        self.tcp_flags |= slot.tcp_flags;
        if last_ns >= self.last_seen_ns {
            self.last_seen_ns = last_ns;
            self.last_dropped = slot.last_verdict == 1;
            self.last_rule = (slot.last_rule != 0).then_some(slot.last_rule);
        }
        if self.first_seen_ns == 0 || self.first_seen_ns > self.last_seen_ns {
            self.first_seen_ns = self.last_seen_ns.min(last_ns);
        }
    }
}

/// The flow table's own counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TableCounters {
    /// Flows the table holds at most.
    pub capacity: u32,
    /// Flows in the table now.
    pub entries: u64,
    /// Entries the kernel created.
    pub inserts: u64,
    /// Entries the LRU evicted to make room: inserts - entries.
    pub evictions: u64,
    /// Packets of new flows the kernel could not store (so in no flow).
    pub insert_failed: u64,
}

/// An interface's flow table, opened from its pins (or from map handles).
#[derive(Debug)]
pub struct FlowTable {
    flows: MapHandle,
    stats: MapHandle,
    cache: MapHandle,
}

impl FlowTable {
    /// The flow table of an attached dispatcher.
    pub fn open(d: &Dispatcher) -> Result<FlowTable> {
        FlowTable::from_maps(
            maps::open_pinned(&d.map_path(M::IF_FLOWS))?,
            maps::open_pinned(&d.map_path(M::IF_FLOW_STATS))?,
            maps::open_pinned(&d.map_path(M::IF_FLOW_CACHE))?,
        )
    }

    /// From the maps themselves: `if_flows`, `if_flow_stats` and
    /// `if_flow_cache` (e.g. of a dispatcher loaded for tests).
    pub fn from_maps(flows: MapHandle, stats: MapHandle, cache: MapHandle) -> Result<FlowTable> {
        if flows.key_size() as usize != size_of::<nr_flow_key>()
            || flows.value_size() as usize != size_of::<nr_flow_value>()
            || cache.value_size() as usize != size_of::<nr_flow_slot>()
            || stats.value_size() as usize != size_of::<nr_flow_stats>()
        {
            return Err(Error::NotAFlowTable {
                map: maps::map_name(&flows),
                key: flows.key_size(),
                value: flows.value_size(),
            });
        }
        Ok(FlowTable { flows, stats, cache })
    }

    pub fn capacity(&self) -> u32 {
        self.flows.max_entries()
    }

    /// Every flow: the table's entries plus the counts pending in the CPUs'
    /// flow caches. A flow evicted from the table while counts were pending
    /// for it is listed with those counts (it is created again when they are
    /// flushed).
    pub fn flows(&self) -> Result<Vec<Flow>> {
        Ok(self.read()?.0)
    }

    /// Every flow (as `flows`) and the table's counters.
    pub fn read(&self) -> Result<(Vec<Flow>, TableCounters)> {
        let ncpu = libbpf_rs::num_possible_cpus().map_err(Error::bpf("counting CPUs"))?;
        // The table first, then the caches: see the module's documentation.
        let mut flows: Vec<Flow> = lookup_all::<nr_flow_key, nr_flow_value>(&self.flows, ncpu)?
            .into_iter()
            .map(|(k, per_cpu)| Flow::from_abi(&k, &per_cpu))
            .collect();
        let entries = flows.len();
        let slots = lookup_all::<u32, nr_flow_slot>(&self.cache, ncpu)?;
        let refs: Vec<nr_flow_stats> = maps::get_percpu(&self.stats, 0)?;
        let (tick, now) = (tick_ns(), netray_core::clock::monotonic_ns());
        let mut index: HashMap<FlowKey, usize> = flows.iter().enumerate().map(|(i, f)| (f.key, i)).collect();
        for (_, per_cpu) in slots {
            for (cpu, slot) in per_cpu.iter().enumerate() {
                if slot.used == 0 || slot.packets == 0 {
                    continue;
                }
                // The slot's jiffies in CLOCK_MONOTONIC_COARSE ns, through the
                // CPU's reference pair (both clocks advance once per tick).
                let r = refs.get(cpu).copied().unwrap_or_default();
                let last_ns = if r.ref_ns == 0 {
                    now
                } else {
                    let d = slot.last_seen_jiffies as i128 - r.ref_jiffies as i128;
                    (r.ref_ns as i128 + d * tick as i128).clamp(0, now as i128) as u64
                };
                let key = FlowKey::from_abi(&slot.key);
                let i = *index.entry(key).or_insert_with(|| {
                    flows.push(Flow::from_abi(&slot.key, &[]));
                    flows.len() - 1
                });
                flows[i].add_pending(slot, last_ns);
            }
        }
        let counters = self.counters_from(&refs, entries);
        Ok((flows, counters))
    }

    fn counters_from(&self, per_cpu: &[nr_flow_stats], entries: usize) -> TableCounters {
        let inserts = per_cpu.iter().map(|c| c.inserts).sum::<u64>();
        let entries = entries as u64;
        TableCounters {
            capacity: self.capacity(),
            entries,
            inserts,
            evictions: inserts.saturating_sub(entries),
            insert_failed: per_cpu.iter().map(|c| c.insert_failed).sum(),
        }
    }

    /// Empties the table and zeroes its counters. Only while the kernel does
    /// not account flows on the interface (the feature is off), or the
    /// eviction count would be off.
    pub fn clear(&self) -> Result<()> {
        let keys: Vec<Vec<u8>> = self.flows.keys().collect();
        for k in keys {
            match self.flows.delete(&k) {
                Err(e) if e.kind() != libbpf_rs::ErrorKind::NotFound => {
                    return Err(Error::bpf("clearing the flow table")(e));
                }
                _ => {}
            }
        }
        for i in 0..self.cache.max_entries() {
            maps::zero_percpu::<nr_flow_slot>(&self.cache, i)?;
        }
        maps::zero_percpu::<nr_flow_stats>(&self.stats, 0)
    }
}

/// Every entry of a per-CPU map (hash or array), with its per-CPU values,
/// read in batches (a few syscalls per thousand entries).
fn lookup_all<K: plain::Plain + Default, V: plain::Plain + Default>(
    map: &MapHandle,
    ncpu: usize,
) -> Result<Vec<(K, Vec<V>)>> {
    let stride = size_of::<V>().next_multiple_of(8);
    let mut out = Vec::new();
    maps::lookup_all_raw(map, stride * ncpu, |key, values| {
        let key: K = from_bytes(key).unwrap_or_default();
        out.push((key, values.chunks(stride).filter_map(from_bytes).collect()));
    })?;
    Ok(out)
}

/// The kernel's tick (jiffy) in ns: the resolution of CLOCK_MONOTONIC_COARSE.
fn tick_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec to fill.
    unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64).max(1)
}
