//! Decoding the kernel's nr_packet_event records and printing them.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use netray_core::{
    clock::{self, Fraction, MonotonicClock},
    names::proto_name,
};
use netray_ebpf::{
    abi::{nr_hook, nr_packet_event, nr_packet_flags as F, nr_verdict},
    decided::Decided,
};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Drop,
    /// An audit rule matched: the packet passed, counted as the rule's hit.
    Audit,
    /// A rate limit (`netray limit`) dropped it; `rule` is the limit's id.
    Limit,
}

impl Verdict {
    /// The verdict of an event's code (enum nr_verdict).
    pub fn from_code(code: u8) -> Verdict {
        match nr_verdict(u32::from(code)) {
            nr_verdict::NR_VERDICT_DROP => Verdict::Drop,
            nr_verdict::NR_VERDICT_AUDIT => Verdict::Audit,
            nr_verdict::NR_VERDICT_LIMIT => Verdict::Limit,
            _ => Verdict::Pass,
        }
    }
}

/// One packet as the kernel saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PacketEvent {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Wall-clock time, RFC 3339 with nanoseconds.
    pub ts: String,
    pub ts_ns: u64,
    pub ifname: String,
    pub ifindex: u32,
    pub hook: &'static str,
    /// "ingress" (received) or "egress" (sent).
    pub direction: &'static str,
    /// At the socket hook: host, broadcast, multicast, other-host or outgoing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pkt_type: Option<&'static str>,
    pub ethertype: u16,
    pub vlan: Vec<u16>,
    pub proto: String,
    pub proto_num: Option<u8>,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub len: u32,
    pub verdict: Verdict,
    /// The id of the rule that decided, or of the limit that dropped it.
    pub rule: Option<u32>,
    /// What decided, as a user reads it: `rule 7`, `audit rule 2`,
    /// `allow rule 4`, `policy`, `limit 3`; None when nothing did.
    pub decided_by: Option<String>,
    /// The same, for code.
    #[serde(skip)]
    pub decided: Decided,
    pub flags: Vec<&'static str>,
}

impl PacketEvent {
    pub fn decode(raw: &nr_packet_event, ifname: &str, clock: &MonotonicClock) -> PacketEvent {
        let time = clock.to_system(raw.ts_ns);
        let ts_ns = clock::unix_nanos(time);
        let decided = Decided::from_raw(raw.rule_id);
        let (src, dst) = match raw.family {
            4 => (
                Some(IpAddr::V4(Ipv4Addr::new(raw.src[0], raw.src[1], raw.src[2], raw.src[3]))),
                Some(IpAddr::V4(Ipv4Addr::new(raw.dst[0], raw.dst[1], raw.dst[2], raw.dst[3]))),
            ),
            6 => (Some(IpAddr::V6(Ipv6Addr::from(raw.src))), Some(IpAddr::V6(Ipv6Addr::from(raw.dst)))),
            _ => (None, None),
        };
        let has = |f: F| raw.flags as u32 & f.0 != 0;
        let ports = has(F::NR_PKT_HAS_PORTS);
        let icmp = has(F::NR_PKT_HAS_ICMP);
        let mut vlan = Vec::new();
        if raw.vlan_depth >= 1 {
            vlan.push(raw.vlan_outer);
        }
        if raw.vlan_depth >= 2 {
            vlan.push(raw.vlan_inner);
        }
        let flags = [
            (F::NR_PKT_TRUNCATED, "truncated"),
            (F::NR_PKT_FRAGMENT, "fragment"),
            (F::NR_PKT_LATER_FRAGMENT, "later-fragment"),
            (F::NR_PKT_IP_OPTIONS, "ip-options"),
            (F::NR_PKT_IPV6_EXT, "ipv6-ext"),
        ]
        .into_iter()
        .filter(|(f, _)| has(*f))
        .map(|(_, n)| n)
        .collect();
        PacketEvent {
            kind: "packet",
            ts: clock::rfc3339(time),
            ts_ns,
            ifname: ifname.to_string(),
            ifindex: raw.ifindex,
            hook: hook_name(raw.hook),
            direction: if raw.direction == 1 { "egress" } else { "ingress" },
            pkt_type: (u32::from(raw.hook) == nr_hook::NR_HOOK_SOCKET.0).then(|| pkt_type_name(raw.pkt_type)),
            ethertype: raw.ethertype,
            vlan,
            proto: if raw.family == 0 { ethertype_name(raw.ethertype) } else { proto_name(raw.l4_proto) },
            proto_num: (raw.family != 0).then_some(raw.l4_proto),
            src,
            dst,
            sport: ports.then_some(raw.sport),
            dport: ports.then_some(raw.dport),
            icmp_type: icmp.then_some(raw.icmp_type),
            icmp_code: icmp.then_some(raw.icmp_code),
            len: raw.pkt_len,
            verdict: Verdict::from_code(raw.verdict),
            rule: decided.rule().or(decided.limit()),
            decided_by: decided.describe(),
            decided,
            flags,
        }
    }
}

/// tcpdump-like one-line summary.
impl fmt::Display for PacketEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = clock::time_of_day(clock::from_unix_nanos(self.ts_ns), Fraction::Micros);
        let hook = match (self.hook, self.pkt_type) {
            ("xdp", _) => self.hook.to_string(),
            (h, Some(t)) => format!("{h}/{t}"),
            (h, None) => format!("{h}/{}", if self.direction == "egress" { "out" } else { "in" }),
        };
        write!(f, "{time} {} {:<4} {:<6}", self.ifname, hook, self.proto)?;
        let ep = |a: &Option<IpAddr>, p: Option<u16>| match (a, p) {
            (Some(IpAddr::V6(a)), Some(p)) => format!("[{a}]:{p}"),
            (Some(a), Some(p)) => format!("{a}:{p}"),
            (Some(a), None) => a.to_string(),
            (None, _) => String::new(),
        };
        if self.src.is_some() {
            write!(f, " {} -> {}", ep(&self.src, self.sport), ep(&self.dst, self.dport))?;
        }
        if let (Some(t), Some(c)) = (self.icmp_type, self.icmp_code) {
            write!(f, " type {t} code {c}")?;
        }
        if !self.vlan.is_empty() {
            let ids: Vec<String> = self.vlan.iter().map(u16::to_string).collect();
            write!(f, " vlan {}", ids.join("."))?;
        }
        write!(f, " len {}", self.len)?;
        for flag in &self.flags {
            write!(f, " [{flag}]")?;
        }
        match (self.verdict, self.rule, &self.decided_by) {
            (Verdict::Drop | Verdict::Limit, _, Some(by)) => write!(f, " DROP ({by})"),
            (Verdict::Drop | Verdict::Limit, _, None) => write!(f, " DROP"),
            (Verdict::Audit, Some(r), _) => write!(f, " pass AUDIT (rule {r})"),
            (Verdict::Audit, None, _) => write!(f, " pass AUDIT"),
            (Verdict::Pass, ..) => write!(f, " pass"),
        }
    }
}

fn hook_name(h: u8) -> &'static str {
    match nr_hook(h as _) {
        nr_hook::NR_HOOK_XDP => "xdp",
        nr_hook::NR_HOOK_TC_INGRESS => "tc-ingress",
        nr_hook::NR_HOOK_TC_EGRESS => "tc-egress",
        nr_hook::NR_HOOK_SOCKET => "socket",
        _ => "?",
    }
}

fn pkt_type_name(t: u8) -> &'static str {
    use netray_ebpf::abi::nr_pkt_type as T;
    match nr_pkt_type_of(t) {
        T::NR_PKT_HOST => "host",
        T::NR_PKT_BROADCAST => "broadcast",
        T::NR_PKT_MULTICAST => "multicast",
        T::NR_PKT_OTHERHOST => "other-host",
        T::NR_PKT_OUTGOING => "outgoing",
        _ => "other",
    }
}

fn nr_pkt_type_of(t: u8) -> netray_ebpf::abi::nr_pkt_type {
    netray_ebpf::abi::nr_pkt_type(t as _)
}

fn ethertype_name(t: u16) -> String {
    match t {
        0x0806 => "arp".into(),
        0x8035 => "rarp".into(),
        0x88cc => "lldp".into(),
        0x8847 | 0x8848 => "mpls".into(),
        0x88e5 => "macsec".into(),
        0x8100 | 0x88a8 => "vlan".into(),
        0x0800 => "ipv4".into(),
        0x86dd => "ipv6".into(),
        t => format!("ethertype-0x{t:04x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The time column a line of `e` starts with.
    fn time(e: &PacketEvent) -> String {
        clock::time_of_day(clock::from_unix_nanos(e.ts_ns), Fraction::Micros)
    }

    #[test]
    fn decodes_and_prints() {
        let mut raw = nr_packet_event { family: 4, l4_proto: 17, sport: 1000, dport: 53, pkt_len: 60, hook: 1, ..Default::default() };
        raw.flags = F::NR_PKT_HAS_PORTS.0 as u8;
        raw.src[..4].copy_from_slice(&[198, 18, 0, 2]);
        raw.dst[..4].copy_from_slice(&[198, 18, 0, 1]);
        raw.verdict = 1;
        raw.rule_id = 3;
        let e = PacketEvent::decode(&raw, "veth0", &MonotonicClock::new());
        assert_eq!(e.src, Some("198.18.0.2".parse().unwrap()));
        assert_eq!((e.sport, e.dport, e.verdict, e.rule), (Some(1000), Some(53), Verdict::Drop, Some(3)));
        let line = e.to_string();
        assert_eq!(line, format!("{} veth0 xdp  udp    198.18.0.2:1000 -> 198.18.0.1:53 len 60 DROP (rule 3)", time(&e)));
        raw.verdict = nr_verdict::NR_VERDICT_AUDIT.0 as u8;
        raw.rule_id = 3 | 1 << netray_ebpf::abi::nr_fw_decided_bit::NR_FW_PASSES_BIT.0;
        let audit = PacketEvent::decode(&raw, "veth0", &MonotonicClock::new());
        assert_eq!((audit.verdict, audit.rule), (Verdict::Audit, Some(3)));
        assert!(audit.to_string().ends_with(" len 60 pass AUDIT (rule 3)"), "{audit}");
        assert_eq!(serde_json::to_value(audit.verdict).unwrap(), "audit");
        let arp = PacketEvent::decode(&nr_packet_event { ethertype: 0x0806, pkt_len: 42, hook: 1, ..Default::default() }, "v", &MonotonicClock::new());
        assert_eq!(arp.proto, "arp");
        assert_eq!(arp.to_string(), format!("{} v xdp  arp    len 42 pass", time(&arp)));
        assert_eq!((arp.direction, arp.pkt_type), ("ingress", None));
    }

    #[test]
    fn tc_and_socket_events_say_direction_and_packet_type() {
        let mut raw = nr_packet_event { family: 4, l4_proto: 1, pkt_len: 98, hook: 3, direction: 1, ..Default::default() };
        raw.flags = F::NR_PKT_HAS_ICMP.0 as u8;
        let e = PacketEvent::decode(&raw, "v", &MonotonicClock::new());
        assert_eq!((e.hook, e.direction, e.pkt_type), ("tc-egress", "egress", None));
        assert_eq!(e.to_string(), format!("{} v tc-egress/out icmp   0.0.0.0 -> 0.0.0.0 type 0 code 0 len 98 pass", time(&e)));
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["direction"], "egress");
        assert!(json.get("pkt_type").is_none());

        raw.hook = 4;
        raw.pkt_type = 4;
        let e = PacketEvent::decode(&raw, "v", &MonotonicClock::new());
        assert_eq!((e.hook, e.direction, e.pkt_type), ("socket", "egress", Some("outgoing")));
        assert_eq!(e.to_string(), format!("{} v socket/outgoing icmp   0.0.0.0 -> 0.0.0.0 type 0 code 0 len 98 pass", time(&e)));
        raw.pkt_type = 0;
        raw.direction = 0;
        let e = PacketEvent::decode(&raw, "v", &MonotonicClock::new());
        assert_eq!(serde_json::to_value(&e).unwrap()["pkt_type"], "host");
        for (t, name) in [(1, "broadcast"), (2, "multicast"), (3, "other-host"), (9, "other")] {
            raw.pkt_type = t;
            assert_eq!(PacketEvent::decode(&raw, "v", &MonotonicClock::new()).pkt_type, Some(name));
        }
    }
}
