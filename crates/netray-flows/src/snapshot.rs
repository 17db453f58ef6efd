//! Snapshots of a flow table, rates between two of them, sorting and top-K.

use std::{collections::HashMap, fmt, str::FromStr};

use netray_core::dispatcher::IfStats;
use netray_ebpf::decided::Decided;
use serde::{Serialize, Serializer};

use crate::table::{proto_name, Direction, Flow, FlowKey, TableCounters};

/// Everything read from one interface at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub interface: String,
    pub ifindex: u32,
    /// CLOCK_MONOTONIC when it was taken.
    pub taken_ns: u64,
    /// The dispatcher's interface counters (every packet, flows or not).
    pub totals: IfStats,
    pub table: TableCounters,
    pub flows: Vec<Flow>,
}

impl Snapshot {
    /// Packets and bytes of the flows present in the table.
    pub fn flow_totals(&self) -> (u64, u64) {
        self.flows.iter().fold((0, 0), |(p, b), f| (p + f.packets, b + f.bytes))
    }
}

/// How flows are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortBy {
    /// Cumulative bytes.
    #[default]
    Bytes,
    /// Cumulative packets.
    Packets,
    /// Bit rate over the last interval (then packet rate, then bytes).
    Rate,
}

impl SortBy {
    pub fn name(self) -> &'static str {
        match self {
            SortBy::Bytes => "bytes",
            SortBy::Packets => "packets",
            SortBy::Rate => "rate",
        }
    }
}

impl FromStr for SortBy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bytes" | "b" => Ok(SortBy::Bytes),
            "packets" | "pkts" | "p" => Ok(SortBy::Packets),
            "rate" | "r" => Ok(SortBy::Rate),
            _ => Err(format!("unknown sort key '{s}': use bytes, packets or rate")),
        }
    }
}

impl fmt::Display for SortBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A flow with its rates over the interval since the previous snapshot
/// (None without a previous snapshot).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlowRate {
    pub flow: Flow,
    /// Packets per second.
    pub pps: Option<f64>,
    /// Bits per second.
    pub bps: Option<f64>,
}

/// Rates of the whole interface over the interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct InterfaceRates {
    pub interval_secs: f64,
    pub pps: f64,
    pub bps: f64,
    pub dropped_pps: f64,
}

/// Every flow of `cur` with its rates since `prev`. A flow absent from
/// `prev`, or created again since (evicted and back), counts from zero.
pub fn rates(prev: Option<&Snapshot>, cur: &Snapshot) -> Vec<FlowRate> {
    let Some(prev) = prev.filter(|p| cur.taken_ns > p.taken_ns) else {
        return cur.flows.iter().map(|&flow| FlowRate { flow, pps: None, bps: None }).collect();
    };
    let secs = (cur.taken_ns - prev.taken_ns) as f64 / 1e9;
    let before: HashMap<FlowKey, &Flow> = prev.flows.iter().map(|f| (f.key, f)).collect();
    cur.flows
        .iter()
        .map(|&flow| {
            let (p0, b0) = match before.get(&flow.key) {
                Some(old) if old.first_seen_ns == flow.first_seen_ns && old.packets <= flow.packets => {
                    (old.packets, old.bytes)
                }
                _ => (0, 0),
            };
            FlowRate {
                flow,
                pps: Some((flow.packets - p0) as f64 / secs),
                bps: Some((flow.bytes.saturating_sub(b0)) as f64 * 8.0 / secs),
            }
        })
        .collect()
}

/// The interface's rates since `prev` (None without one).
pub fn interface_rates(prev: Option<&Snapshot>, cur: &Snapshot) -> Option<InterfaceRates> {
    let prev = prev.filter(|p| cur.taken_ns > p.taken_ns)?;
    let secs = (cur.taken_ns - prev.taken_ns) as f64 / 1e9;
    let d = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
    Some(InterfaceRates {
        interval_secs: secs,
        pps: d(cur.totals.seen, prev.totals.seen),
        bps: d(cur.totals.bytes_seen, prev.totals.bytes_seen) * 8.0,
        dropped_pps: d(cur.totals.dropped, prev.totals.dropped),
    })
}

/// Sorts flows, largest first (ties broken by the key, so the order is stable
/// from one refresh to the next).
pub fn sort(flows: &mut [FlowRate], by: SortBy) {
    let key = |f: &FlowRate| match by {
        SortBy::Bytes => (f.flow.bytes as f64, f.flow.packets as f64),
        SortBy::Packets => (f.flow.packets as f64, f.flow.bytes as f64),
        SortBy::Rate => (f.bps.unwrap_or(0.0), f.pps.unwrap_or(0.0)),
    };
    flows.sort_by(|a, b| {
        key(b)
            .partial_cmp(&key(a))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| b.flow.bytes.cmp(&a.flow.bytes))
            .then_with(|| tiebreak(&a.flow.key).cmp(&tiebreak(&b.flow.key)))
    });
}

fn tiebreak(k: &FlowKey) -> (std::net::IpAddr, std::net::IpAddr, u8, u16, u16) {
    (k.src, k.dst, k.proto, k.sport, k.dport)
}

/// The `k` first flows in `by` order.
pub fn top_k(mut flows: Vec<FlowRate>, by: SortBy, k: usize) -> Vec<FlowRate> {
    sort(&mut flows, by);
    flows.truncate(k);
    flows
}

/// One flow as `netray top --json` prints it.
/// Its counters repeat [`Flow`]'s on purpose: the JSON is flat, with the
/// key spelt out and the verdict as a word, where `Flow` keeps the raw map key.
#[derive(Debug, Clone, Serialize)]
pub struct FlowJson {
    pub ifindex: u32,
    pub direction: Direction,
    pub family: u8,
    pub proto: String,
    pub proto_num: u8,
    pub src: std::net::IpAddr,
    pub dst: std::net::IpAddr,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    /// Cumulative since the flow entered the table: exact.
    pub packets: u64,
    pub bytes: u64,
    pub dropped: u64,
    pub bytes_dropped: u64,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub last_verdict: &'static str,
    /// The id of the rule or limit that dropped the last packet.
    pub last_rule: Option<u32>,
    /// TCP: every flag its packets carried, "SYN,ACK,PSH,FIN" (null for other protocols).
    pub tcp_flags: Option<String>,
    /// What dropped the last packet, as a user reads it: `rule 7`, `policy`,
    /// `limit 3`, `policy, audit rule 2`.
    pub last_decided_by: Option<String>,
    #[serde(serialize_with = "round2")]
    pub pps: Option<f64>,
    #[serde(serialize_with = "round2")]
    pub bps: Option<f64>,
}

pub(crate) fn round2<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(x) => s.serialize_f64((x * 100.0).round() / 100.0),
        None => s.serialize_none(),
    }
}

impl From<&FlowRate> for FlowJson {
    fn from(r: &FlowRate) -> FlowJson {
        let k = &r.flow.key;
        let ports = k.ports();
        let icmp = k.icmp();
        let decided = r.flow.last_rule.map(Decided::from_raw);
        FlowJson {
            ifindex: k.ifindex,
            direction: k.direction,
            family: if k.src.is_ipv4() { 4 } else { 6 },
            proto: proto_name(k.proto),
            proto_num: k.proto,
            src: k.src,
            dst: k.dst,
            sport: ports.map(|p| p.0),
            dport: ports.map(|p| p.1),
            icmp_type: icmp.map(|i| i.0),
            icmp_code: icmp.map(|i| i.1),
            packets: r.flow.packets,
            bytes: r.flow.bytes,
            dropped: r.flow.dropped,
            bytes_dropped: r.flow.bytes_dropped,
            first_seen_ns: r.flow.first_seen_ns,
            last_seen_ns: r.flow.last_seen_ns,
            last_verdict: if r.flow.last_dropped { "drop" } else { "pass" },
            last_rule: decided.and_then(|d| d.rule().or(d.limit())),
            last_decided_by: decided.and_then(Decided::describe),
            tcp_flags: (k.proto == 6).then(|| crate::table::tcp_flag_names(r.flow.tcp_flags)),
            pps: r.pps,
            bps: r.bps,
        }
    }
}

/// A snapshot as `netray top --json` prints it (one object per line).
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotJson {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub interface: String,
    pub ifindex: u32,
    pub sort: &'static str,
    /// The interface's counters (every packet the dispatcher saw).
    pub totals: IfStats,
    pub rates: Option<InterfaceRates>,
    /// The flow table: capacity, entries, inserts, evictions, insert_failed.
    pub table: TableCounters,
    /// Packets and bytes of all flows in the table (not only those listed).
    pub flow_packets: u64,
    pub flow_bytes: u64,
    pub flows: Vec<FlowJson>,
}

impl SnapshotJson {
    /// `limit` None lists every flow.
    pub fn new(prev: Option<&Snapshot>, cur: &Snapshot, by: SortBy, limit: Option<usize>) -> SnapshotJson {
        let flows = top_k(rates(prev, cur), by, limit.unwrap_or(usize::MAX));
        let (flow_packets, flow_bytes) = cur.flow_totals();
        SnapshotJson {
            kind: "flows",
            interface: cur.interface.clone(),
            ifindex: cur.ifindex,
            sort: by.name(),
            totals: cur.totals.clone(),
            rates: interface_rates(prev, cur),
            table: cur.table,
            flow_packets,
            flow_bytes,
            flows: flows.iter().map(FlowJson::from).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn flow(port: u16, packets: u64, bytes: u64, first: u64) -> Flow {
        Flow {
            key: FlowKey {
                ifindex: 1,
                direction: Direction::Ingress,
                proto: 17,
                src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                sport: port,
                dport: 53,
            },
            packets,
            bytes,
            dropped: 0,
            bytes_dropped: 0,
            first_seen_ns: first,
            last_seen_ns: first,
            last_dropped: false,
            last_rule: None,
            tcp_flags: 0,
        }
    }

    fn snap(t: u64, flows: Vec<Flow>) -> Snapshot {
        Snapshot {
            interface: "x".into(),
            ifindex: 1,
            taken_ns: t,
            totals: IfStats::default(),
            table: TableCounters::default(),
            flows,
        }
    }

    #[test]
    fn rates_count_deltas_and_restart_for_new_or_recreated_flows() {
        let a = snap(1_000_000_000, vec![flow(1, 10, 1000, 5), flow(2, 10, 1000, 5)]);
        // Flow 1 grew by 5 packets / 500 bytes; flow 2 was evicted and created
        // again (new first_seen); flow 3 is new.
        let b = snap(3_000_000_000, vec![flow(1, 15, 1500, 5), flow(2, 4, 400, 9), flow(3, 2, 100, 9)]);
        let r = rates(Some(&a), &b);
        assert_eq!(r[0].pps, Some(2.5));
        assert_eq!(r[0].bps, Some(2000.0));
        assert_eq!(r[1].pps, Some(2.0));
        assert_eq!(r[1].bps, Some(1600.0));
        assert_eq!(r[2].pps, Some(1.0));
        assert!(rates(None, &b).iter().all(|f| f.pps.is_none() && f.bps.is_none()));
    }

    #[test]
    fn sorting_and_top_k() {
        let a = snap(0, vec![flow(1, 10, 100, 1), flow(2, 10, 100, 1), flow(3, 10, 100, 1)]);
        let b = snap(1_000_000_000, vec![flow(1, 100, 150, 1), flow(2, 20, 5000, 1), flow(3, 11, 3000, 1)]);
        let r = rates(Some(&a), &b);
        let port = |v: &[FlowRate]| v.iter().map(|f| f.flow.key.sport).collect::<Vec<_>>();
        assert_eq!(port(&top_k(r.clone(), SortBy::Bytes, 3)), [2, 3, 1]);
        assert_eq!(port(&top_k(r.clone(), SortBy::Packets, 2)), [1, 2]);
        assert_eq!(port(&top_k(r.clone(), SortBy::Rate, 1)), [2]);
        assert_eq!("r".parse::<SortBy>(), Ok(SortBy::Rate));
        assert!("x".parse::<SortBy>().is_err());
    }
}
