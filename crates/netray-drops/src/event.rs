//! One dropped packet, from either source, as every output (text line, JSON,
//! pcapng comment, counters) sees it.

use std::{fmt, net::IpAddr, time::SystemTime};

use netray_capture::{line, CaptureIf, Packet, Point};
use netray_core::{
    clock::{self, Fraction},
    Hook,
};
use netray_monitor::PacketEvent;
use netray_ebpf::decided::Decided;
use serde::{Serialize, Serializer};

/// Who dropped the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Who {
    /// The kernel (kfree_skb with a drop reason).
    Kernel,
    /// netray's firewall at `hook`: a rule, the drop policy or a limit.
    Netray { hook: Hook, by: Decided },
}

impl Who {
    /// "kernel", "netray xdp", "netray tc-ingress": the `who` label of the
    /// counters (the rule goes into the reason, so labels stay few).
    pub fn label(&self) -> String {
        match self {
            Who::Kernel => "kernel".into(),
            Who::Netray { hook, .. } => format!("netray {}", hook.name()),
        }
    }
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Who::Kernel => f.write_str("kernel"),
            Who::Netray { hook, by } => write!(f, "netray {} {by}", hook.name()),
        }
    }
}

impl Serialize for Who {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One dropped packet.
#[derive(Debug, Clone, Serialize)]
pub struct DropEvent {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Wall-clock time, RFC 3339 with nanoseconds.
    pub ts: String,
    pub ts_ns: u64,
    pub ifname: String,
    pub ifindex: u32,
    /// "kernel", or "netray xdp rule 7".
    pub who: Who,
    /// The kernel's reason name ("NO_SOCKET"); for netray's drops "rule N".
    pub reason: String,
    /// The kernel's reason code (kernel drops that carry one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<u32>,
    /// Where the kernel freed it, "function+0xoffset" (kernel drops).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The function of `location` alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<u32>,
    /// The packet in `netray dump`'s words ("IP 198.18.0.2.40000 > 198.18.0.1.9: UDP, length 18").
    pub summary: String,
    pub proto: Option<String>,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// Bytes of the packet.
    pub len: u32,
    /// Bytes of it kept (kernel drops: in `data`, written by -w).
    pub cap_len: u32,
    /// The packet's first bytes as an Ethernet frame (kernel drops).
    #[serde(skip)]
    pub data: Vec<u8>,
    #[serde(skip)]
    pub time: Option<SystemTime>,
}

impl DropEvent {
    /// A kernel drop: its frame decoded as `netray dump` decodes it.
    #[allow(clippy::too_many_arguments)]
    pub fn kernel(
        time: SystemTime,
        ifname: String,
        ifindex: u32,
        reason: String,
        reason_code: Option<u32>,
        location: String,
        function: Option<String>,
        wire_len: u32,
        data: Vec<u8>,
    ) -> DropEvent {
        let iface = CaptureIf { ifindex, ifname: ifname.clone(), hook: None, point: Point::Entry, snaplen: u32::MAX };
        let pkt = Packet { iface: &iface, ts: time, wire_len, data: &data, verdict: None, audit_rule: None };
        let j = line::to_json(&pkt);
        let s = |k: &str| j.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let port = |k: &str| j.get(k).and_then(|v| v.as_u64()).map(|p| p as u16);
        DropEvent {
            kind: "drop",
            ts: clock::rfc3339(time),
            ts_ns: clock::unix_nanos(time),
            ifname,
            ifindex,
            who: Who::Kernel,
            reason,
            reason_code,
            location: Some(location),
            function,
            rule: None,
            summary: s("summary").unwrap_or_default(),
            proto: s("proto"),
            src: s("src").and_then(|a| a.parse().ok()),
            dst: s("dst").and_then(|a| a.parse().ok()),
            sport: port("sport"),
            dport: port("dport"),
            len: wire_len,
            cap_len: data.len() as u32,
            data,
            time: Some(time),
        }
    }

    /// One of netray's own drops, from the dispatcher's event.
    pub fn netray(ev: &PacketEvent) -> DropEvent {
        let hook = match ev.hook {
            "tc-ingress" => Hook::TcIngress,
            "tc-egress" => Hook::TcEgress,
            _ => Hook::Xdp,
        };
        let reason = match ev.decided {
            Decided::Policy { .. } => "policy in drop".to_string(),
            by => by.to_string(),
        };
        DropEvent {
            kind: "drop",
            ts: ev.ts.clone(),
            ts_ns: ev.ts_ns,
            ifname: ev.ifname.clone(),
            ifindex: ev.ifindex,
            who: Who::Netray { hook, by: ev.decided },
            reason,
            reason_code: None,
            location: None,
            function: None,
            rule: ev.rule,
            summary: summary_of(ev),
            proto: Some(ev.proto.clone()),
            src: ev.src,
            dst: ev.dst,
            sport: ev.sport,
            dport: ev.dport,
            len: ev.len,
            cap_len: 0,
            data: Vec::new(),
            time: Some(clock::from_unix_nanos(ev.ts_ns)),
        }
    }

    /// "kernel NO_SOCKET at __udp4_lib_rcv+0x5a1", "netray xdp rule 7" or
    /// "netray xdp policy": the pcapng comment.
    pub fn cause(&self) -> String {
        match (&self.who, &self.location) {
            (Who::Kernel, Some(at)) => format!("kernel {} at {at}", self.reason),
            (who, _) => who.to_string(),
        }
    }
}

/// tcpdump's words for what the dispatcher parsed (it keeps no bytes).
fn summary_of(ev: &PacketEvent) -> String {
    let net = match ev.src {
        Some(IpAddr::V6(_)) => "IP6",
        Some(_) => "IP",
        None => return format!("{}, frame {} bytes", ev.proto, ev.len),
    };
    let ep = |a: Option<IpAddr>, p: Option<u16>| match (a, p) {
        (Some(a), Some(p)) => format!("{a}.{p}"),
        (Some(a), None) => a.to_string(),
        _ => "?".into(),
    };
    // The dispatcher's event has the frame's length, not the payload's that
    // tcpdump's "length" is: said as what it is.
    format!("{net} {} > {}: {}, frame {} bytes", ep(ev.src, ev.sport), ep(ev.dst, ev.dport), ev.proto.to_uppercase(), ev.len)
}

/// One line: time, interface, who, reason and function, the packet.
impl fmt::Display for DropEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = clock::time_of_day(clock::from_unix_nanos(self.ts_ns), Fraction::Micros);
        write!(f, "{time} {} {}", self.ifname, self.who)?;
        if self.who == Who::Kernel {
            write!(f, " {}", self.reason)?;
            if let Some(at) = &self.location {
                write!(f, " {at}")?;
            }
        }
        write!(f, ": {}", self.summary)
    }
}

#[cfg(test)]
mod tests {
    use netray_core::clock::MonotonicClock;
    use netray_ebpf::abi::{nr_fw_decided_bit as B, nr_packet_event, nr_verdict};

    use super::*;

    /// netray's drop event names what dropped the packet: a rule, a limit or the policy.
    #[test]
    fn a_netray_drop_names_the_rule_the_limit_or_the_policy() {
        let clock = MonotonicClock::new();
        let drop = nr_verdict::NR_VERDICT_DROP.0 as u8;
        for (rule_id, verdict, who, reason) in [
            (7, drop, "netray xdp rule 7", "rule 7"),
            (3 | 1 << B::NR_FW_LIMITED_BIT.0, nr_verdict::NR_VERDICT_LIMIT.0 as u8, "netray xdp limit 3", "limit 3"),
            (1 << B::NR_FW_POLICY_BIT.0, drop, "netray xdp policy", "policy in drop"),
        ] {
            let raw = nr_packet_event { rule_id, verdict, hook: 1, pkt_len: 60, ..Default::default() };
            let d = DropEvent::netray(&PacketEvent::decode(&raw, "veth0", &clock));
            assert_eq!((d.who.to_string(), d.reason.as_str()), (who.to_string(), reason), "{rule_id:#x}");
        }
    }
}
