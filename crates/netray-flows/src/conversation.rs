//! Conversations: the two directions of a connection as one row, the way
//! iftop and bandwhich show them.
//!
//! The kernel counts a flow per direction: received packets at XDP
//! (ingress: the source is the remote end), sent ones at TC egress (the
//! source is the local end). A conversation is keyed by the protocol and
//! the normalised 5-tuple (local address and port, remote address and port),
//! so an ingress flow and the egress flow going back pair up; a flow with no
//! partner is a conversation with one side. ICMP echo requests pair with
//! their replies (and the other request/reply types likewise).

use std::{collections::HashMap, net::IpAddr};

use serde::Serialize;

use crate::{
    snapshot::{round2, FlowRate, SortBy},
    table::{proto_name, Direction, FlowKey},
};

/// One connection: what was sent (`tx`, egress) and received (`rx`, ingress).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conversation {
    pub proto: u8,
    pub local: IpAddr,
    pub remote: IpAddr,
    /// Ports (local, remote) for the protocols that have them.
    pub ports: Option<(u16, u16)>,
    pub tx: Option<FlowRate>,
    pub rx: Option<FlowRate>,
}

/// What pairs two flows: the protocol, the ends seen from this host, and the
/// ports (for ICMP, the request type of a request/reply pair, and the code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PairKey {
    proto: u8,
    local: IpAddr,
    remote: IpAddr,
    local_port: u16,
    remote_port: u16,
}

impl PairKey {
    fn of(k: &FlowKey) -> PairKey {
        let (local, remote, lport, rport) = match k.direction {
            Direction::Egress => (k.src, k.dst, k.sport, k.dport),
            Direction::Ingress => (k.dst, k.src, k.dport, k.sport),
        };
        match k.icmp() {
            Some((t, code)) => {
                let (request, is_request) = icmp_request_type(k.proto, t);
                // Who asked: our request out and its reply in are one
                // conversation, the peer's request in and our reply out another.
                let asked_by_us = is_request.map(|req| req == (k.direction == Direction::Egress));
                PairKey {
                    proto: k.proto,
                    local,
                    remote,
                    local_port: u16::from(request) << 8 | u16::from(code),
                    remote_port: asked_by_us.map_or(2, u16::from),
                }
            }
            None => PairKey { proto: k.proto, local, remote, local_port: lport, remote_port: rport },
        }
    }
}

/// The request type of an ICMP request or reply (echo, timestamp,
/// information, address mask; ICMPv6 echo) and whether it is the request;
/// other types stand alone.
fn icmp_request_type(proto: u8, t: u8) -> (u8, Option<bool>) {
    match (proto, t) {
        (1, 8 | 13 | 15 | 17) | (58, 128) => (t, Some(true)),
        (1, 0) => (8, Some(false)),
        (1, 14 | 16 | 18) => (t - 1, Some(false)),
        (58, 129) => (128, Some(false)),
        _ => (t, None),
    }
}

impl Conversation {
    fn from_flow(r: FlowRate) -> Conversation {
        let k = &r.flow.key;
        let (local, remote, ports) = match k.direction {
            Direction::Egress => (k.src, k.dst, k.ports()),
            Direction::Ingress => (k.dst, k.src, k.ports().map(|(s, d)| (d, s))),
        };
        let mut c = Conversation { proto: k.proto, local, remote, ports, tx: None, rx: None };
        *c.side_mut(k.direction) = Some(r);
        c
    }

    fn side_mut(&mut self, d: Direction) -> &mut Option<FlowRate> {
        match d {
            Direction::Egress => &mut self.tx,
            Direction::Ingress => &mut self.rx,
        }
    }

    fn sides(&self) -> impl Iterator<Item = &FlowRate> {
        self.tx.iter().chain(self.rx.iter())
    }

    /// Which ways packets went: "in/out", "in" or "out".
    pub fn direction(&self) -> &'static str {
        match (self.tx.is_some(), self.rx.is_some()) {
            (true, true) => "in/out",
            (true, false) => "out",
            _ => "in",
        }
    }

    /// ICMP type and code: of the request when the conversation is a
    /// request and its reply, else of the side there is.
    pub fn icmp(&self) -> Option<(u8, u8)> {
        let icmp = |r: &Option<FlowRate>| r.and_then(|r| r.flow.key.icmp());
        let is_request = |i: &(u8, u8)| icmp_request_type(self.proto, i.0).1 == Some(true);
        icmp(&self.tx).filter(is_request).or(icmp(&self.rx).filter(is_request)).or(icmp(&self.tx)).or(icmp(&self.rx))
    }

    pub fn packets(&self) -> u64 {
        self.sides().map(|r| r.flow.packets).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.sides().map(|r| r.flow.bytes).sum()
    }

    pub fn dropped(&self) -> u64 {
        self.sides().map(|r| r.flow.dropped).sum()
    }

    /// Bits per second both ways (None before the first interval).
    pub fn bps(&self) -> Option<f64> {
        self.sides().map(|r| r.bps).sum()
    }

    pub fn pps(&self) -> Option<f64> {
        self.sides().map(|r| r.pps).sum()
    }

    /// The side that saw the last packet.
    pub fn latest(&self) -> &FlowRate {
        match (&self.tx, &self.rx) {
            (Some(t), Some(r)) => {
                if t.flow.last_seen_ns >= r.flow.last_seen_ns {
                    t
                } else {
                    r
                }
            }
            (Some(t), None) => t,
            (None, Some(r)) => r,
            (None, None) => unreachable!("a conversation has at least one side"),
        }
    }

    fn sort_key(&self, by: SortBy) -> (f64, f64) {
        match by {
            SortBy::Bytes => (self.bytes() as f64, self.packets() as f64),
            SortBy::Packets => (self.packets() as f64, self.bytes() as f64),
            SortBy::Rate => (self.bps().unwrap_or(0.0), self.pps().unwrap_or(0.0)),
        }
    }

    fn tiebreak(&self) -> (u8, IpAddr, IpAddr, Option<(u16, u16)>, u8) {
        (self.proto, self.local, self.remote, self.ports, self.icmp().map_or(0, |i| i.0))
    }
}

/// Pairs the flows into conversations, sorted by `by`, largest first: by
/// rate, idle conversations (no packet in the interval) go to the bottom,
/// ties by cumulative bytes, then by the key so rows do not jump around
/// between refreshes.
pub fn conversations(flows: &[FlowRate], by: SortBy) -> Vec<Conversation> {
    let mut out: Vec<Conversation> = Vec::new();
    let mut index: HashMap<PairKey, usize> = HashMap::new();
    // In a stable order, so which flows pair never depends on the map's order.
    let mut sorted: Vec<&FlowRate> = flows.iter().collect();
    sorted.sort_by_key(|r| {
        let k = &r.flow.key;
        (k.direction == Direction::Ingress, k.proto, k.src, k.dst, k.sport, k.dport)
    });
    for r in sorted {
        let key = PairKey::of(&r.flow.key);
        match index.get(&key) {
            Some(&i) if out[i].side_mut(r.flow.key.direction).is_none() => {
                *out[i].side_mut(r.flow.key.direction) = Some(*r);
            }
            // Two flows of one direction under one key (an ICMP request and
            // the reply to the other end's request): rows of their own.
            Some(_) => out.push(Conversation::from_flow(*r)),
            None => {
                index.insert(key, out.len());
                out.push(Conversation::from_flow(*r));
            }
        }
    }
    out.sort_by(|a, b| {
        b.sort_key(by)
            .partial_cmp(&a.sort_key(by))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| b.bytes().cmp(&a.bytes()))
            .then_with(|| a.tiebreak().cmp(&b.tiebreak()))
    });
    out
}

/// The conversations of one service port: the smaller of the two ports (a
/// server's well-known port is below the ephemeral range clients use), or
/// the protocol alone when it has no ports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PortGroup {
    pub proto: u8,
    pub port: Option<u16>,
    pub conversations: usize,
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    pub packets: u64,
    pub tx_bps: Option<f64>,
    pub rx_bps: Option<f64>,
}

impl PortGroup {
    pub fn bps(&self) -> Option<f64> {
        Some(self.tx_bps? + self.rx_bps?)
    }
}

/// Groups conversations by protocol and service port, sorted by `by`.
pub fn by_port(convs: &[Conversation], by: SortBy) -> Vec<PortGroup> {
    let mut groups: Vec<PortGroup> = Vec::new();
    let mut index: HashMap<(u8, Option<u16>), usize> = HashMap::new();
    let add = |a: Option<f64>, b: Option<f64>| Some(a? + b?);
    for c in convs {
        let port = c.ports.map(|(l, r)| l.min(r));
        let i = *index.entry((c.proto, port)).or_insert_with(|| {
            groups.push(PortGroup {
                proto: c.proto,
                port,
                conversations: 0,
                tx_bytes: 0,
                rx_bytes: 0,
                packets: 0,
                tx_bps: Some(0.0),
                rx_bps: Some(0.0),
            });
            groups.len() - 1
        });
        let g = &mut groups[i];
        g.conversations += 1;
        g.packets += c.packets();
        g.tx_bytes += c.tx.map_or(0, |r| r.flow.bytes);
        g.rx_bytes += c.rx.map_or(0, |r| r.flow.bytes);
        g.tx_bps = add(g.tx_bps, c.tx.map_or(Some(0.0), |r| r.bps));
        g.rx_bps = add(g.rx_bps, c.rx.map_or(Some(0.0), |r| r.bps));
    }
    let key = |g: &PortGroup| match by {
        SortBy::Bytes => (g.tx_bytes + g.rx_bytes) as f64,
        SortBy::Packets => g.packets as f64,
        SortBy::Rate => g.bps().unwrap_or(0.0),
    };
    groups.sort_by(|a, b| {
        key(b)
            .partial_cmp(&key(a))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| (b.tx_bytes + b.rx_bytes).cmp(&(a.tx_bytes + a.rx_bytes)))
            .then_with(|| (a.proto, a.port).cmp(&(b.proto, b.port)))
    });
    groups
}

/// One side of a conversation in JSON.
#[derive(Debug, Clone, Serialize)]
pub struct SideJson {
    pub packets: u64,
    pub bytes: u64,
    pub dropped: u64,
    #[serde(serialize_with = "round2")]
    pub pps: Option<f64>,
    #[serde(serialize_with = "round2")]
    pub bps: Option<f64>,
}

impl From<&FlowRate> for SideJson {
    fn from(r: &FlowRate) -> SideJson {
        SideJson { packets: r.flow.packets, bytes: r.flow.bytes, dropped: r.flow.dropped, pps: r.pps, bps: r.bps }
    }
}

/// A conversation as `netray top --json` lists it under `conversations`.
#[derive(Debug, Clone, Serialize)]
pub struct ConversationJson {
    pub proto: String,
    pub proto_num: u8,
    pub local: IpAddr,
    pub local_port: Option<u16>,
    pub remote: IpAddr,
    pub remote_port: Option<u16>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    /// "in/out", "in" (received only) or "out" (sent only).
    pub direction: &'static str,
    /// Sent (TC egress), absent when nothing was sent.
    pub tx: Option<SideJson>,
    /// Received (XDP), absent when nothing was received.
    pub rx: Option<SideJson>,
}

impl From<&Conversation> for ConversationJson {
    fn from(c: &Conversation) -> ConversationJson {
        ConversationJson {
            proto: proto_name(c.proto),
            proto_num: c.proto,
            local: c.local,
            local_port: c.ports.map(|p| p.0),
            remote: c.remote,
            remote_port: c.ports.map(|p| p.1),
            icmp_type: c.icmp().map(|i| i.0),
            icmp_code: c.icmp().map(|i| i.1),
            direction: c.direction(),
            tx: c.tx.as_ref().map(SideJson::from),
            rx: c.rx.as_ref().map(SideJson::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Flow;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const HOST: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    fn rate(direction: Direction, proto: u8, src: IpAddr, dst: IpAddr, sport: u16, dport: u16, bps: f64) -> FlowRate {
        let flow = Flow {
            key: FlowKey { ifindex: 1, direction, proto, src, dst, sport, dport },
            packets: 10,
            bytes: 1000 + bps as u64,
            dropped: 0,
            bytes_dropped: 0,
            first_seen_ns: 1,
            last_seen_ns: 2,
            last_dropped: false,
            last_rule: None,
            tcp_flags: 0,
        };
        FlowRate { flow, pps: Some(bps / 100.0), bps: Some(bps) }
    }

    #[test]
    fn the_two_directions_of_a_connection_pair_and_the_others_stay() {
        let flows = [
            rate(Direction::Ingress, 6, PEER, HOST, 40000, 22, 800.0),
            rate(Direction::Egress, 6, HOST, PEER, 22, 40000, 8000.0),
            // Same addresses, other ports: another conversation, received only.
            rate(Direction::Ingress, 17, PEER, HOST, 40001, 53, 0.0),
            // Sent only.
            rate(Direction::Egress, 17, HOST, PEER, 5353, 5353, 100.0),
        ];
        let c = conversations(&flows, SortBy::Rate);
        assert_eq!(c.len(), 3);
        assert_eq!((c[0].proto, c[0].ports, c[0].direction()), (6, Some((22, 40000)), "in/out"));
        assert_eq!((c[0].local, c[0].remote), (HOST, PEER));
        assert_eq!(c[0].tx.unwrap().bps, Some(8000.0));
        assert_eq!(c[0].rx.unwrap().bps, Some(800.0));
        assert_eq!(c[0].bps(), Some(8800.0));
        assert_eq!((c[1].ports, c[1].direction()), (Some((5353, 5353)), "out"));
        // Idle last, whatever its cumulative bytes.
        assert_eq!((c[2].ports, c[2].direction()), (Some((53, 40001)), "in"));
        // By cumulative bytes, the idle one is above the one sending 100 bit/s
        // (1000 bytes against 1100), below the busy pair.
        let b = conversations(&flows, SortBy::Bytes);
        assert_eq!(b.iter().map(|c| c.direction()).collect::<Vec<_>>(), ["in/out", "out", "in"]);
    }

    #[test]
    fn icmp_requests_pair_with_their_replies() {
        let h6: IpAddr = "fd00::1".parse::<Ipv6Addr>().unwrap().into();
        let p6: IpAddr = "fd00::2".parse::<Ipv6Addr>().unwrap().into();
        let flows = [
            rate(Direction::Egress, 58, h6, p6, 0, 128 << 8, 10.0),
            rate(Direction::Ingress, 58, p6, h6, 0, 129 << 8, 10.0),
            rate(Direction::Egress, 1, HOST, PEER, 0, 8 << 8, 10.0),
            rate(Direction::Ingress, 1, PEER, HOST, 0, 0, 10.0),
            // The peer pings us too: its request in and our reply out make a
            // second conversation, not a third side.
            rate(Direction::Ingress, 1, PEER, HOST, 0, 8 << 8, 1.0),
            rate(Direction::Egress, 1, HOST, PEER, 0, 0, 1.0),
        ];
        let c = conversations(&flows, SortBy::Rate);
        let summary: Vec<_> = c.iter().map(|c| (c.proto, c.direction(), c.icmp())).collect();
        // Each pair shows its request's type.
        assert_eq!(
            summary,
            [(1, "in/out", Some((8, 0))), (58, "in/out", Some((128, 0))), (1, "in/out", Some((8, 0)))]
        );
    }

    #[test]
    fn ports_group_by_the_service_port() {
        let flows = [
            rate(Direction::Ingress, 6, PEER, HOST, 40000, 443, 100.0),
            rate(Direction::Egress, 6, HOST, PEER, 443, 40000, 1000.0),
            rate(Direction::Ingress, 6, PEER, HOST, 40002, 443, 100.0),
            rate(Direction::Egress, 17, HOST, PEER, 40003, 53, 50.0),
        ];
        let g = by_port(&conversations(&flows, SortBy::Rate), SortBy::Rate);
        assert_eq!(g.len(), 2);
        assert_eq!((g[0].proto, g[0].port, g[0].conversations), (6, Some(443), 2));
        assert_eq!((g[0].tx_bps, g[0].rx_bps), (Some(1000.0), Some(200.0)));
        assert_eq!((g[1].proto, g[1].port, g[1].conversations), (17, Some(53), 1));
    }
}
