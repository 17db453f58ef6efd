//! From the kernel's cumulative per-flow counters to IPFIX records: what is
//! new since a flow's last record (delta counts), when to export it (active
//! and idle timeouts), and what evictions from the kernel's table cost.
//!
//! - A flow with new packets is exported when its record has covered the
//!   active timeout (long-lived flows: one record per active timeout), or
//!   when no packet came for the idle timeout (finished flows). A flow that
//!   starts again after an idle export gets a new record later.
//! - The kernel's counters only grow while the entry lives (a read can
//!   miss packets in flight from a CPU's flow cache to the table: lower
//!   counts with the same creation time are such a read, and ignored). An entry that
//!   leaves the table was evicted (the flows feature never deletes): it is
//!   exported with the counts last read, and counted; if it had packets in
//!   the poll before, packets after that read may be lost, and it is counted
//!   as such. A flow whose counters went down was evicted and created again
//!   between two reads: the unread end of the old entry is lost, counted.
//!   Flows created and evicted between two reads are never seen: the
//!   table's eviction counter says how many (`evicted_unread`).
//! - Packets a rule dropped and packets that passed go in separate records
//!   (forwardingStatus dropped / forwarded), so a collector's per-flow sum
//!   is every packet seen.

use std::{collections::HashMap, sync::Arc, time::Duration};

use netray_core::clock::MonotonicClock;
use netray_flows::{Flow, FlowKey, Snapshot};

use crate::record::{Forwarding, Record};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub active: Duration,
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { active: Duration::from_secs(60), idle: Duration::from_secs(15) }
    }
}

/// What the meter saw of the kernel's table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MeterCounters {
    /// Flows that left the kernel's table (exported with what was read).
    pub evicted: u64,
    /// Of those, flows with packets in the last poll before they left: packets
    /// after that read may be lost.
    pub evicted_active: u64,
    /// Entries evicted and created again between two reads (unread counts lost).
    pub evicted_recreated: u64,
    /// Entries created and evicted between two reads: never read at all.
    pub evicted_unread: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    packets: u64,
    bytes: u64,
    dropped: u64,
    bytes_dropped: u64,
}

impl Counts {
    fn of(f: &Flow) -> Counts {
        Counts { packets: f.packets, bytes: f.bytes, dropped: f.dropped, bytes_dropped: f.bytes_dropped }
    }

    fn below(&self, o: &Counts) -> bool {
        self.packets < o.packets || self.bytes < o.bytes || self.dropped < o.dropped
    }
}

#[derive(Debug)]
struct Tracked {
    /// The cumulative counts up to the flow's last record.
    exported: Counts,
    /// The latest read.
    current: Counts,
    /// The entry's creation (a later one means it was evicted and created again).
    first_seen_ns: u64,
    /// Monotonic ns: start of the counts not yet exported (first packet).
    start_ns: u64,
    last_seen_ns: u64,
    /// The poll that saw `current` change last.
    changed_at_poll: u64,
}

/// Turns successive snapshots of one interface's flow table into records.
pub struct Meter {
    timeouts: Timeouts,
    clock: MonotonicClock,
    ifname: Arc<str>,
    flows: HashMap<FlowKey, Tracked>,
    poll: u64,
    prev_poll_ns: u64,
    seen_evictions: Option<u64>,
    counters: MeterCounters,
}

impl Meter {
    pub fn new(ifname: &str, timeouts: Timeouts) -> Meter {
        Meter {
            timeouts,
            clock: MonotonicClock::new(),
            ifname: ifname.into(),
            flows: HashMap::new(),
            poll: 0,
            prev_poll_ns: 0,
            seen_evictions: None,
            counters: MeterCounters::default(),
        }
    }

    pub fn counters(&self) -> MeterCounters {
        self.counters
    }

    /// Flows tracked (in the kernel's table at the last read).
    pub fn tracked(&self) -> usize {
        self.flows.len()
    }

    /// Reads a snapshot; appends the records due to `out`. With `flush`,
    /// every flow's unexported counts are due (shutdown).
    pub fn update(&mut self, snap: &Snapshot, flush: bool, out: &mut Vec<Record>) {
        self.poll += 1;
        let now = snap.taken_ns;
        let mut gone: HashMap<FlowKey, ()> = self.flows.keys().map(|k| (*k, ())).collect();
        for f in &snap.flows {
            gone.remove(&f.key);
            let c = Counts::of(f);
            let prev_poll_ns = self.prev_poll_ns;
            let poll = self.poll;
            let t = self.flows.entry(f.key).or_insert_with(|| Tracked {
                exported: Counts::default(),
                current: Counts::default(),
                first_seen_ns: f.first_seen_ns,
                start_ns: f.first_seen_ns,
                last_seen_ns: f.first_seen_ns,
                changed_at_poll: poll,
            });
            // Lower counts with the same first sighting: not a new entry but a
            // read that missed packets moving from a CPU's flow cache to the
            // table between its two reads (see netray_flows::table). Keep the
            // counts already read; the next read has them all.
            let c = if c.below(&t.current) && f.first_seen_ns <= t.first_seen_ns { t.current } else { c };
            if c.below(&t.current) {
                // Evicted and created again since the last read.
                self.counters.evicted_recreated += 1;
                let old = std::mem::take(&mut t.current);
                if old.packets > t.exported.packets {
                    out.extend(records(&self.ifname, &self.clock, &f.key, &t.exported, &old, t.start_ns, t.last_seen_ns));
                }
                t.exported = Counts::default();
                t.first_seen_ns = f.first_seen_ns;
                t.start_ns = f.first_seen_ns;
            }
            if c.packets != t.current.packets || c.bytes != t.current.bytes {
                if t.current.packets == t.exported.packets && t.exported.packets > 0 {
                    // New packets after the last record: they started after
                    // the previous read (its time is the best bound known).
                    t.start_ns = prev_poll_ns.max(t.last_seen_ns).min(f.last_seen_ns);
                }
                t.changed_at_poll = poll;
            }
            t.current = c;
            t.last_seen_ns = f.last_seen_ns.max(t.last_seen_ns);
            let pending = t.current.packets > t.exported.packets;
            let active_due = now.saturating_sub(t.start_ns) >= self.timeouts.active.as_nanos() as u64;
            let idle_due = now.saturating_sub(t.last_seen_ns) >= self.timeouts.idle.as_nanos() as u64;
            if pending && (flush || active_due || idle_due) {
                out.extend(records(&self.ifname, &self.clock, &f.key, &t.exported, &t.current, t.start_ns, t.last_seen_ns));
                t.exported = t.current;
                t.start_ns = t.last_seen_ns;
            }
        }
        // Flows no longer in the table: evicted. Export what was read.
        for (k, ()) in gone {
            let t = self.flows.remove(&k).expect("tracked");
            self.counters.evicted += 1;
            if t.changed_at_poll + 1 >= self.poll {
                self.counters.evicted_active += 1;
            }
            if t.current.packets > t.exported.packets {
                out.extend(records(&self.ifname, &self.clock, &k, &t.exported, &t.current, t.start_ns, t.last_seen_ns));
            }
        }
        // Evictions the kernel counted that this meter never saw.
        let evictions = snap.table.evictions;
        let first = *self.seen_evictions.get_or_insert(evictions);
        let seen = self.counters.evicted + self.counters.evicted_recreated;
        self.counters.evicted_unread = evictions.saturating_sub(first).saturating_sub(seen);
        self.prev_poll_ns = now;
    }
}

/// The records of the counts between `from` and `to`: one for the packets
/// that passed, one for those a rule dropped (each only when non-zero).
fn records(
    ifname: &Arc<str>,
    clock: &MonotonicClock,
    k: &FlowKey,
    from: &Counts,
    to: &Counts,
    start_ns: u64,
    end_ns: u64,
) -> Vec<Record> {
    let packets = to.packets - from.packets;
    let bytes = to.bytes.saturating_sub(from.bytes);
    let dropped = to.dropped.saturating_sub(from.dropped).min(packets);
    let bytes_dropped = to.bytes_dropped.saturating_sub(from.bytes_dropped).min(bytes);
    let ms = |ns: u64| {
        clock.to_system(ns).duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
    };
    let (start_ms, end_ms) = (ms(start_ns.min(end_ns)), ms(end_ns));
    let (sport, dport, icmp) = match (k.ports(), k.icmp()) {
        (Some((s, d)), _) => (s, d, 0),
        // ICMP type and code also in destinationTransportPort, as NetFlow
        // exporters do: collectors that aggregate by port (nfacctd, goflow2)
        // then tell echo from unreachable.
        (None, Some((t, c))) => (0, u16::from(t) << 8 | u16::from(c), u16::from(t) << 8 | u16::from(c)),
        _ => (0, 0, 0),
    };
    let rec = |packets, bytes, forwarding| Record {
        src: k.src,
        dst: k.dst,
        sport,
        dport,
        proto: k.proto,
        icmp_type_code: icmp,
        direction: k.direction,
        ifindex: k.ifindex,
        ifname: Arc::clone(ifname),
        packets,
        bytes,
        start_ms,
        end_ms,
        forwarding,
    };
    let mut out = Vec::with_capacity(2);
    if packets > dropped {
        out.push(rec(packets - dropped, bytes - bytes_dropped, Forwarding::Forwarded));
    }
    if dropped > 0 {
        out.push(rec(dropped, bytes_dropped, Forwarding::Dropped));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use netray_flows::{Direction, TableCounters};

    use super::*;

    const S: u64 = 1_000_000_000;

    fn key(dport: u16) -> FlowKey {
        FlowKey {
            ifindex: 3,
            direction: Direction::Ingress,
            proto: 17,
            src: Ipv4Addr::new(10, 0, 0, 1).into(),
            dst: Ipv4Addr::new(10, 0, 0, 2).into(),
            sport: 1000,
            dport,
        }
    }

    fn flow(dport: u16, packets: u64, dropped: u64, first: u64, last: u64) -> Flow {
        Flow {
            key: key(dport),
            packets,
            bytes: packets * 100,
            dropped,
            bytes_dropped: dropped * 100,
            first_seen_ns: first,
            last_seen_ns: last,
            last_dropped: dropped > 0,
            last_rule: None,
        }
    }

    fn snap(at: u64, flows: Vec<Flow>, evictions: u64) -> Snapshot {
        Snapshot {
            interface: "veth0".into(),
            ifindex: 3,
            taken_ns: at,
            totals: Default::default(),
            table: TableCounters { evictions, ..Default::default() },
            flows,
        }
    }

    fn t(active: u64, idle: u64) -> Timeouts {
        Timeouts { active: Duration::from_secs(active), idle: Duration::from_secs(idle) }
    }

    #[test]
    fn a_long_flow_is_exported_every_active_timeout_and_the_deltas_add_up() {
        let mut m = Meter::new("veth0", t(3, 10));
        let mut out = Vec::new();
        for sec in 1..=10u64 {
            m.update(&snap(100 * S + sec * S, vec![flow(1, sec * 10, 0, 100 * S, 100 * S + sec * S)], 0), false, &mut out);
        }
        m.update(&snap(111 * S, vec![flow(1, 100, 0, 100 * S, 110 * S)], 0), true, &mut out);
        assert!(out.len() >= 3, "{out:?}");
        assert_eq!(out.iter().map(|r| r.packets).sum::<u64>(), 100);
        assert_eq!(out.iter().map(|r| r.bytes).sum::<u64>(), 10_000);
        // Consecutive records: each starts where the previous ended.
        for w in out.windows(2) {
            assert_eq!(w[1].start_ms, w[0].end_ms);
        }
    }

    #[test]
    fn an_idle_flow_is_exported_once_and_again_when_it_resumes() {
        let mut m = Meter::new("veth0", t(60, 2));
        let mut out = Vec::new();
        m.update(&snap(10 * S, vec![flow(1, 5, 0, 9 * S, 9 * S)], 0), false, &mut out);
        assert!(out.is_empty());
        m.update(&snap(12 * S, vec![flow(1, 5, 0, 9 * S, 9 * S)], 0), false, &mut out);
        assert_eq!(out.len(), 1);
        m.update(&snap(13 * S, vec![flow(1, 5, 0, 9 * S, 9 * S)], 0), false, &mut out);
        assert_eq!(out.len(), 1, "nothing new, nothing exported");
        m.update(&snap(20 * S, vec![flow(1, 8, 0, 9 * S, 19 * S)], 0), false, &mut out);
        m.update(&snap(22 * S, vec![flow(1, 8, 0, 9 * S, 19 * S)], 0), false, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].packets, 3);
        assert!(out[1].start_ms >= out[0].end_ms);
    }

    #[test]
    fn a_read_that_missed_packets_in_flight_is_not_an_eviction() {
        let mut m = Meter::new("veth0", t(60, 1));
        let mut out = Vec::new();
        m.update(&snap(S, vec![flow(1, 5, 0, S, S)], 0), false, &mut out);
        // The same entry (same first sighting) read with 2 packets missing.
        m.update(&snap(2 * S, vec![flow(1, 3, 0, S, S)], 0), false, &mut out);
        m.update(&snap(3 * S, vec![flow(1, 5, 0, S, S)], 0), false, &mut out);
        m.update(&snap(4 * S, vec![flow(1, 5, 0, S, S)], 0), true, &mut out);
        assert_eq!(out.iter().map(|r| r.packets).sum::<u64>(), 5, "{out:?}");
        assert_eq!(m.counters().evicted_recreated, 0);
    }

    #[test]
    fn drops_and_passes_are_separate_records_and_evictions_are_counted() {
        let mut m = Meter::new("veth0", t(60, 15));
        let mut out = Vec::new();
        m.update(&snap(S, vec![flow(1, 5, 2, S, S), flow(2, 4, 0, S, S)], 0), false, &mut out);
        // Flow 2 leaves the table (evicted), flow 1 was recreated (its
        // counters went down), and the kernel counted 4 evictions.
        m.update(&snap(2 * S, vec![flow(1, 1, 0, 2 * S, 2 * S)], 4), false, &mut out);
        assert_eq!(m.counters().evicted, 1);
        assert_eq!(m.counters().evicted_active, 1);
        assert_eq!(m.counters().evicted_recreated, 1);
        m.update(&snap(3 * S, vec![flow(1, 1, 0, 2 * S, 2 * S)], 4), true, &mut out);
        let status = |f: Forwarding| out.iter().filter(|r| r.forwarding == f).map(|r| r.packets).sum::<u64>();
        assert_eq!(status(Forwarding::Dropped) + status(Forwarding::Forwarded), 3 + 2 + 4 + 1);
        assert_eq!(status(Forwarding::Dropped), 2);
        assert_eq!(status(Forwarding::Forwarded), 3 + 4 + 1);
    }
}
