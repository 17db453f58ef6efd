//! What one IPFIX data record says about a flow: the flow's key, the counts
//! since its previous record, the times of the first and last packet they
//! cover, and netray's verdict on those packets.

use std::{net::IpAddr, sync::Arc};

use netray_flows::Direction;

/// forwardingStatus (IANA element 89, RFC 7270 section 4.12): the status in
/// the top two bits, a reason code in the lower six.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarding {
    /// 0b01_000000: forwarded, reason unknown (netray passed the packets).
    Forwarded,
    /// 0b10_000001: dropped, "ACL deny" (a netray deny rule dropped them).
    /// The rule's ID has no IANA element; docs/ipfix.md says how to find it.
    Dropped,
}

impl Forwarding {
    pub const FORWARDED: u8 = 0x40;
    pub const DROPPED_ACL_DENY: u8 = 0x81;

    pub fn code(self) -> u8 {
        match self {
            Forwarding::Forwarded => Self::FORWARDED,
            Forwarding::Dropped => Self::DROPPED_ACL_DENY,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// 0 for protocols without ports; for ICMP/ICMPv6 the destination port
    /// holds type << 8 | code (the NetFlow convention).
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    /// ICMP/ICMPv6 type << 8 | code (0 for other protocols).
    pub icmp_type_code: u16,
    pub direction: Direction,
    pub ifindex: u32,
    pub ifname: Arc<str>,
    /// Counts since the flow's previous record.
    pub packets: u64,
    pub bytes: u64,
    /// Unix time in ms of the first and last packet counted here.
    pub start_ms: u64,
    pub end_ms: u64,
    pub forwarding: Forwarding,
}

impl Record {
    pub fn is_v6(&self) -> bool {
        self.src.is_ipv6()
    }
}
