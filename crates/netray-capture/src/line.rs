//! One line per packet, the way `tcpdump -nn -i any` prints it, and the same decoding as JSON.
//!
//! The decoded part ("IP 198.18.0.1.40000 > 198.18.0.2.9: UDP, length 18") follows tcpdump's
//! wording for the common protocols so that users can read it with the habits they have;
//! rarer cases keep tcpdump's address/protocol part and say less after it. Lengths after the
//! colon come from the headers (what was on the wire), not from what was captured, as in
//! tcpdump. The decoder reads only what is there: short or lying headers end the line with a
//! tcpdump-style "[|proto]" marker instead of failing.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::SystemTime;

use etherparse::{
    ArpOperation, ArpPacketSlice, EtherType, Ethernet2HeaderSlice, Icmpv4Slice, Icmpv4Type, Icmpv6Slice, Icmpv6Type,
    IpNumber, Ipv4HeaderSlice, Ipv6FragmentHeaderSlice, Ipv6HeaderSlice, Ipv6RawExtHeaderSlice, SingleVlanSlice,
    TcpOptionElement, TcpSlice, UdpHeaderSlice,
};
use chrono::{DateTime, Local};
use netray_core::clock::{self, Fraction};
use serde_json::{json, Value};

use crate::checksum;
use crate::hexdump::PayloadDump;
use crate::packet::{Direction, Packet};

/// The text line as netray prints it by default: local time with nanoseconds, interface,
/// hook-point, direction, the decoded packet, and at exit points the verdict in brackets.
pub fn format_line(pkt: &Packet) -> String {
    LineFormatter::new(LineStyle::default()).format(pkt)
}

/// How the text line is shaped: tcpdump's `-t`, `-e`, `-q`, `-v` and `-x`/`-X`/`-A` flags.
#[derive(Debug, Clone, Copy, Default)]
pub struct LineStyle {
    pub time: TimeStamp,
    /// `-e`: the link-level header (MAC addresses, ethertype, frame length) first.
    pub link_header: bool,
    /// `-q`: less protocol detail (TCP as "tcp LENGTH").
    pub quiet: bool,
    /// `-v`: the IP header's fields (tos, ttl, id, offset, flags, proto, length).
    pub verbose: u8,
    /// `-x`, `-X`, `-A` (doubled: from the link header on).
    pub payload: PayloadDump,
    /// `-K`: no IPv4 header checksum check under `-v`.
    pub skip_checksums: bool,
}

/// The time at the start of a line, tcpdump's `-t` count with nanosecond precision
/// (as `tcpdump --time-stamp-precision=nano`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TimeStamp {
    /// "04:31:23.123456789", local time.
    #[default]
    TimeOfDay,
    /// `-t`: none.
    Omitted,
    /// `-tt`: "1765081883.123456789", seconds since the epoch.
    Unix,
    /// `-ttt`: " 00:00:00.000012345", since the previous line.
    SincePrevious,
    /// `-tttt`: "2026-12-07 04:31:23.123456789", local date and time.
    Date,
    /// `-ttttt`: " 00:00:01.000000000", since the first line.
    SinceFirst,
}

impl TimeStamp {
    /// From how many times `-t` was given; None beyond five (tcpdump knows no more).
    pub fn from_t_count(n: u8) -> Option<TimeStamp> {
        Some(match n {
            0 => TimeStamp::TimeOfDay,
            1 => TimeStamp::Omitted,
            2 => TimeStamp::Unix,
            3 => TimeStamp::SincePrevious,
            4 => TimeStamp::Date,
            5 => TimeStamp::SinceFirst,
            _ => return None,
        })
    }
}

/// Formats lines in a style; keeps the first and previous packet's time for `-ttt`/`-ttttt`.
#[derive(Debug, Clone)]
pub struct LineFormatter {
    style: LineStyle,
    first: Option<SystemTime>,
    previous: Option<SystemTime>,
}

impl LineFormatter {
    pub fn new(style: LineStyle) -> LineFormatter {
        LineFormatter { style, first: None, previous: None }
    }

    /// The packet's line (several lines with `-v` or a payload dump), without the final newline.
    pub fn format(&mut self, pkt: &Packet) -> String {
        let style = self.style;
        let mut line = self.timestamp(pkt.ts);
        if style.time != TimeStamp::Omitted {
            line.push(' ');
        }
        line.push_str(&pkt.iface.ifname);
        if let Some(hook) = pkt.iface.hook {
            let _ = write!(line, " {}-{}", hook.name(), pkt.iface.point.name());
        }
        match pkt.iface.direction() {
            Some(Direction::In) => line.push_str(" In "),
            Some(Direction::Out) => line.push_str(" Out"),
            None => {}
        }
        line.push(' ');
        let d = decode(pkt.data, pkt.wire_len, style);
        if style.link_header {
            line.push_str(&d.link);
            line.push_str(d.summary.get(d.net_word..).unwrap_or_default());
        } else {
            line.push_str(&d.summary);
        }
        if let Some(verdict) = pkt.verdict_name() {
            let _ = write!(line, " [{verdict}]");
        }
        if let Some(audit) = pkt.audit_label() {
            let _ = write!(line, " {audit}");
        }
        line.push_str(&style.payload.render(pkt.data, d.link_len));
        line
    }

    fn timestamp(&mut self, ts: SystemTime) -> String {
        let first = *self.first.get_or_insert(ts);
        let previous = self.previous.replace(ts).unwrap_or(ts);
        match self.style.time {
            TimeStamp::TimeOfDay => clock::time_of_day(ts, Fraction::Nanos),
            TimeStamp::Omitted => String::new(),
            TimeStamp::Unix => {
                let ns = clock::unix_nanos(ts);
                format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
            }
            TimeStamp::SincePrevious => delta(previous, ts),
            TimeStamp::Date => DateTime::<Local>::from(ts).format("%Y-%m-%d %H:%M:%S%.9f").to_string(),
            TimeStamp::SinceFirst => delta(first, ts),
        }
    }
}

/// tcpdump's relative times: a sign (' ' or '-'), then HH:MM:SS.nnnnnnnnn.
fn delta(from: SystemTime, to: SystemTime) -> String {
    let (sign, d) = match to.duration_since(from) {
        Ok(d) => (' ', d),
        Err(e) => ('-', e.duration()),
    };
    let s = d.as_secs();
    format!("{sign}{:02}:{:02}:{:02}.{:09}", s / 3600, s / 60 % 60, s % 60, d.subsec_nanos())
}

/// The packet as one JSON object for `--json`; fields that could not be decoded are absent.
pub fn to_json(pkt: &Packet) -> Value {
    let d = decode(pkt.data, pkt.wire_len, LineStyle::default());
    let mut v = json!({
        "ts": clock::rfc3339(pkt.ts),
        "ts_ns": clock::unix_nanos(pkt.ts),
        "ifname": pkt.iface.ifname,
        "ifindex": pkt.iface.ifindex,
        "hook": pkt.iface.hook,
        "point": pkt.iface.point,
        "verdict": pkt.verdict_name(),
        "wire_len": pkt.wire_len,
        "cap_len": pkt.data.len(),
        "summary": d.summary,
    });
    let fields = [
        // present only when an audit rule matched, as "AUDIT rule N" is on the line
        ("audit_rule", pkt.audit_rule.map(|id| json!(id))),
        ("src", d.src.map(|a| json!(a.to_string()))),
        ("dst", d.dst.map(|a| json!(a.to_string()))),
        ("sport", d.sport.map(|p| json!(p))),
        ("dport", d.dport.map(|p| json!(p))),
        ("proto", d.proto.map(|p| json!(p))),
    ];
    if let Some(obj) = v.as_object_mut() {
        for (key, value) in fields {
            if let Some(value) = value {
                obj.insert(key.to_owned(), value);
            }
        }
    }
    v
}

/// What the decoder learnt about a frame.
#[derive(Debug, Default)]
struct Decoded {
    summary: String,
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    sport: Option<u16>,
    dport: Option<u16>,
    proto: Option<Cow<'static, str>>,
    /// `-e`'s part: "SRC > DST, ethertype IPv4 (0x0800), length N: ".
    link: String,
    /// Bytes of link-level header (Ethernet and VLAN tags): where `-x` starts.
    link_len: usize,
    /// Length of the VLAN tags and network word opening `summary` ("vlan 10, p 0, IP "), which
    /// `-e` replaces with `link`.
    net_word: usize,
    quiet: bool,
    verbose: u8,
    skip_checksums: bool,
    /// Part of a fragmented datagram: its transport checksum cannot be checked.
    fragmented: bool,
}

/// Decodes what was captured of a frame that was `wire_len` bytes long.
fn decode(frame: &[u8], wire_len: u32, style: LineStyle) -> Decoded {
    let mut d = Decoded {
        quiet: style.quiet,
        verbose: style.verbose,
        skip_checksums: style.skip_checksums,
        ..Decoded::default()
    };
    let Ok(eth) = Ethernet2HeaderSlice::from_slice(frame) else {
        d.summary.push_str("[|ether]");
        return d;
    };
    let mut ether_type = eth.ether_type();
    let (src_mac, dst_mac) = (mac(&eth.source()), mac(&eth.destination()));
    let _ = write!(d.link, "{src_mac} > {dst_mac}, {}, length {wire_len}: ", ether_type_label(ether_type, style.quiet));
    let mut rest = &frame[eth.slice().len()..];
    while matches!(ether_type, EtherType::VLAN_TAGGED_FRAME | EtherType::PROVIDER_BRIDGING) {
        let Ok(vlan) = SingleVlanSlice::from_slice(rest) else {
            d.summary.push_str("[|vlan]");
            return d;
        };
        let (id, priority) = (vlan.vlan_identifier().value(), vlan.priority_code_point().value());
        let _ = write!(d.summary, "vlan {id}, p {priority}, ");
        ether_type = vlan.ether_type();
        // -e names each tag's inner ethertype, as tcpdump -e does.
        let _ = write!(d.link, "vlan {id}, p {priority}, {}, ", ether_type_label(ether_type, style.quiet));
        rest = vlan.payload_slice();
    }
    d.link_len = frame.len() - rest.len();
    let tags_len = d.summary.len();
    match ether_type {
        EtherType::IPV4 => ipv4(&mut d, rest),
        EtherType::IPV6 => ipv6(&mut d, rest),
        EtherType::ARP => arp(&mut d, rest),
        // Like tcpdump for ethertypes it cannot decode: the link header, the type, the length.
        other => {
            let _ = write!(
                d.summary,
                "{} > {}, ethertype 0x{:04x}, length {wire_len}",
                mac(&eth.source()),
                mac(&eth.destination()),
                other.0
            );
            // Under -e the link part says all there is, as in tcpdump.
            d.net_word = d.summary.len();
            return d;
        }
    }
    // Under -e the VLAN tags and the network word give way to the link part, which names the ethertypes.
    let after_tags = d.summary.get(tags_len..).unwrap_or_default();
    let word = ["IP6 ", "IP ", "ARP, "].into_iter().find(|w| after_tags.starts_with(w));
    d.net_word = tags_len + word.map_or(0, str::len);
    d
}

/// An ethertype in tcpdump's `-e` header: "ethertype IPv4 (0x0800)", with -q "IPv4" (and
/// "Unknown Ethertype (0x88b5)" for types tcpdump has no name for).
fn ether_type_label(t: EtherType, quiet: bool) -> String {
    let name = match t {
        EtherType::IPV4 => "IPv4",
        EtherType::IPV6 => "IPv6",
        EtherType::ARP => "ARP",
        EtherType::VLAN_TAGGED_FRAME => "802.1Q",
        EtherType::PROVIDER_BRIDGING => "802.1Q-QinQ",
        _ if quiet => return format!("Unknown Ethertype (0x{:04x})", t.0),
        _ => "Unknown",
    };
    if quiet {
        name.to_owned()
    } else {
        format!("ethertype {name} (0x{:04x})", t.0)
    }
}

fn ipv4(d: &mut Decoded, data: &[u8]) {
    let Ok(ip) = Ipv4HeaderSlice::from_slice(data) else {
        d.summary.push_str("[|ip]");
        return;
    };
    let hlen = ip.slice().len();
    let (src, dst) = (ip.source_addr(), ip.destination_addr());
    d.src = Some(src.into());
    d.dst = Some(dst.into());
    // The payload the header claims, cut to what was captured.
    let claimed = usize::from(ip.total_len()).saturating_sub(hlen);
    let payload = data.get(hlen..).unwrap_or_default();
    let payload = &payload[..claimed.min(payload.len())];
    let proto = ip.protocol();
    d.summary.push_str("IP ");
    if d.verbose > 0 {
        ipv4_fields(&mut d.summary, &ip, !d.skip_checksums);
    }
    d.fragmented = ip.more_fragments();
    if ip.fragments_offset().value() != 0 {
        // Not the first fragment: the transport header is in another packet, so (like
        // tcpdump) only the protocol number is known.
        let _ = write!(d.summary, "{src} > {dst}: ip-proto-{}", proto.0);
        d.proto = Some(proto_word(proto));
        return;
    }
    transport(d, proto, payload, claimed, false);
}

fn ipv6(d: &mut Decoded, data: &[u8]) {
    let Ok(ip) = Ipv6HeaderSlice::from_slice(data) else {
        d.summary.push_str("[|ip6]");
        return;
    };
    d.src = Some(ip.source_addr().into());
    d.dst = Some(ip.destination_addr().into());
    let claimed = usize::from(ip.payload_length());
    let payload = &data[ip.slice().len()..];
    let mut payload = &payload[..claimed.min(payload.len())];
    let mut remaining = claimed;
    let mut next = ip.next_header();
    let mut ext = String::new();
    d.summary.push_str("IP6 ");
    if d.verbose > 0 {
        ipv6_fields(&mut d.summary, &ip);
    }
    loop {
        let consumed = match next {
            IpNumber::IPV6_FRAGMENTATION_HEADER => {
                let Ok(frag) = Ipv6FragmentHeaderSlice::from_slice(payload) else {
                    return truncated6(d, ip.source_addr(), ip.destination_addr(), &ext, "frag");
                };
                // Offset in 8-byte units: the top 13 bits of bytes 2-3 (RFC 8200). Read
                // here because etherparse 0.19's fragment_offset() decodes the IPv4 layout.
                let field = frag.slice().get(2..4).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
                let offset = u32::from(field >> 3) * 8;
                let _ = write!(ext, "frag ({offset}|{})", remaining.saturating_sub(frag.slice().len()));
                next = frag.next_header();
                if offset != 0 {
                    // The transport header is in the first fragment.
                    let (src, dst) = (ip.source_addr(), ip.destination_addr());
                    let _ = write!(d.summary, "{src} > {dst}: {ext}");
                    d.proto = Some(proto_word(next));
                    return;
                }
                ext.push(' ');
                frag.slice().len()
            }
            IpNumber::IPV6_HEADER_HOP_BY_HOP | IpNumber::IPV6_ROUTE_HEADER | IpNumber::IPV6_DESTINATION_OPTIONS => {
                let name = match next {
                    IpNumber::IPV6_HEADER_HOP_BY_HOP => "HBH",
                    IpNumber::IPV6_ROUTE_HEADER => "srcrt",
                    _ => "DSTOPT",
                };
                let Ok(hdr) = Ipv6RawExtHeaderSlice::from_slice(payload) else {
                    return truncated6(d, ip.source_addr(), ip.destination_addr(), &ext, name);
                };
                let _ = write!(ext, "{name} ");
                next = hdr.next_header();
                hdr.slice().len()
            }
            _ => break,
        };
        payload = &payload[consumed..];
        remaining = remaining.saturating_sub(consumed);
    }
    // tcpdump names the extension headers after the addresses and before the transport.
    let mut inner = Decoded {
        src: d.src,
        dst: d.dst,
        quiet: d.quiet,
        verbose: d.verbose,
        skip_checksums: d.skip_checksums,
        fragmented: ext.contains("frag"),
        ..Decoded::default()
    };
    transport(&mut inner, next, payload, remaining, true);
    let (addrs, after) = split_addrs(&inner.summary);
    let _ = write!(d.summary, "{addrs}{ext}{after}");
    d.sport = inner.sport;
    d.dport = inner.dport;
    d.proto = inner.proto;
}

/// `-v`'s IPv4 header fields as tcpdump prints them, then its line break and indent:
/// "(tos 0x0, ttl 64, id 1, offset 0, flags [DF], proto UDP (17), length 46)\n    ".
fn ipv4_fields(out: &mut String, ip: &Ipv4HeaderSlice, check_sum: bool) {
    let ecn = match ip.ecn().value() {
        1 => ",ECT(1)",
        2 => ",ECT(0)",
        3 => ",CE",
        _ => "",
    };
    let _ = write!(out, "(tos 0x{:x}{ecn}", (ip.dcp().value() << 2) | ip.ecn().value());
    if ip.ttl() >= 1 {
        let _ = write!(out, ", ttl {}", ip.ttl());
    }
    let flags: Vec<&str> = [(ip.more_fragments(), "+"), (ip.dont_fragment(), "DF"), (ip.slice()[6] & 0x80 != 0, "rsvd")]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
    let flags = if flags.is_empty() { "none".to_owned() } else { flags.join(", ") };
    let proto = ip.protocol();
    let _ = write!(
        out,
        ", id {}, offset {}, flags [{flags}], proto {} ({}), length {}",
        ip.identification(),
        u32::from(ip.fragments_offset().value()) * 8,
        proto_name(proto),
        proto.0,
        ip.total_len()
    );
    let computed = ip.to_header().calc_header_checksum();
    if check_sum && computed != ip.header_checksum() {
        let _ = write!(out, ", bad cksum {:x} (->{computed:x})!", ip.header_checksum());
    }
    out.push_str(")\n    ");
}

/// `-v`'s IPv6 header fields: "(flowlabel 0x12345, hlim 64, next-header UDP (17) payload length: 26) ".
fn ipv6_fields(out: &mut String, ip: &Ipv6HeaderSlice) {
    out.push('(');
    if ip.traffic_class() != 0 {
        let _ = write!(out, "class 0x{:02x}, ", ip.traffic_class());
    }
    if ip.flow_label().value() != 0 {
        let _ = write!(out, "flowlabel 0x{:05x}, ", ip.flow_label().value());
    }
    let next = ip.next_header();
    let _ = write!(
        out,
        "hlim {}, next-header {} ({}) payload length: {}) ",
        ip.hop_limit(),
        proto_name(next),
        next.0,
        ip.payload_length()
    );
}

/// tcpdump's upper-case protocol names of its `-v` IP header ("unknown" for the rest).
fn proto_name(p: IpNumber) -> &'static str {
    match p {
        IpNumber::ICMP => "ICMP",
        IpNumber::IGMP => "IGMP",
        IpNumber::TCP => "TCP",
        IpNumber::UDP => "UDP",
        IpNumber::IPV6 => "IPv6",
        IpNumber::GRE => "GRE",
        IpNumber::ENCAPSULATING_SECURITY_PAYLOAD => "ESP",
        IpNumber::AUTHENTICATION_HEADER => "AH",
        IpNumber::IPV6_ICMP => "ICMPv6",
        IpNumber::SCTP => "SCTP",
        _ => "unknown",
    }
}

/// An IPv6 extension header cut short by the capture.
fn truncated6(d: &mut Decoded, src: Ipv6Addr, dst: Ipv6Addr, ext: &str, what: &str) {
    let _ = write!(d.summary, "{src} > {dst}: {ext}[|{what}]");
}

impl Decoded {
    /// -v without -K, on an unfragmented datagram: TCP and UDP checksums are checked.
    fn checks_transport(&self) -> bool {
        self.verbose > 0 && !self.skip_checksums && !self.fragmented
    }
}

/// Splits "a.1 > b.2: UDP, length 3" after "a.1 > b.2: ".
fn split_addrs(s: &str) -> (&str, &str) {
    match s.find(": ") {
        Some(i) => s.split_at(i + 2),
        None => (s, ""),
    }
}

/// Decodes the transport header and writes "SRC > DST: ..." (addresses taken from `d`).
/// `len` is the transport length the IP header claims; `payload` is what was captured of it.
fn transport(d: &mut Decoded, proto: IpNumber, payload: &[u8], len: usize, v6: bool) {
    let (src, dst) = match (d.src, d.dst) {
        (Some(s), Some(t)) => (s, t),
        _ => return,
    };
    let word = proto_word(proto);
    d.proto = Some(word.clone());
    match proto {
        IpNumber::TCP => match TcpSlice::from_slice(payload) {
            Ok(tcp) => {
                d.sport = Some(tcp.source_port());
                d.dport = Some(tcp.destination_port());
                let _ = write!(d.summary, "{src}.{} > {dst}.{}: ", tcp.source_port(), tcp.destination_port());
                if d.quiet {
                    let _ = write!(d.summary, "tcp {}", len.saturating_sub(tcp.header_slice().len()));
                } else {
                    // -v: ", cksum 0x1234 (correct)" after the flags, over a whole captured segment.
                    let cksum = (d.checks_transport() && payload.len() == len).then(|| {
                        let should = checksum::with_pseudo_header(src, dst, 6, payload, 16);
                        match tcp.checksum() {
                            sum if sum == should => format!(", cksum 0x{sum:04x} (correct)"),
                            sum => format!(", cksum 0x{sum:04x} (incorrect -> 0x{should:04x})"),
                        }
                    });
                    tcp_details(&mut d.summary, &tcp, len, cksum.as_deref().unwrap_or_default(), d.verbose > 1);
                }
            }
            Err(_) => tcp_udp_truncated(d, payload, "tcp"),
        },
        IpNumber::UDP => match UdpHeaderSlice::from_slice(payload) {
            Ok(udp) => {
                d.sport = Some(udp.source_port());
                d.dport = Some(udp.destination_port());
                let _ = write!(d.summary, "{src}.{} > {dst}.{}: ", udp.source_port(), udp.destination_port());
                // tcpdump checks UDP over IPv6 from -v, over IPv4 from -vv (where 0 means none).
                let datagram = payload.get(..usize::from(udp.length()));
                if d.checks_transport() && (v6 || d.verbose > 1) {
                    match (udp.checksum(), datagram) {
                        (0, _) if !v6 => d.summary.push_str("[no cksum] "),
                        (sum, Some(datagram)) => {
                            // A UDP sum of 0 is sent as 0xffff: 0 means "none".
                            let should = match checksum::with_pseudo_header(src, dst, 17, datagram, 6) {
                                0 => 0xffff,
                                should => should,
                            };
                            if sum == should {
                                d.summary.push_str("[udp sum ok] ");
                            } else {
                                let _ = write!(d.summary, "[bad udp cksum 0x{sum:04x} -> 0x{should:04x}!] ");
                            }
                        }
                        _ => {}
                    }
                }
                let _ = write!(d.summary, "UDP, length {}", usize::from(udp.length()).saturating_sub(8));
            }
            Err(_) => tcp_udp_truncated(d, payload, "udp"),
        },
        IpNumber::ICMP if !v6 => {
            let _ = write!(d.summary, "{src} > {dst}: ");
            match Icmpv4Slice::from_slice(payload) {
                Ok(icmp) => {
                    icmpv4(&mut d.summary, &icmp, len);
                    // -v: only a wrong checksum is mentioned (tcpdump does so whatever -K says).
                    if d.verbose > 0 && !d.fragmented && payload.len() == len {
                        let should = checksum::plain(payload, 2);
                        if icmp.checksum() != should {
                            let _ = write!(d.summary, " (wrong icmp cksum {:x} (->{should:x})!)", icmp.checksum());
                        }
                    }
                }
                Err(_) => d.summary.push_str("[|icmp]"),
            }
        }
        IpNumber::IPV6_ICMP if v6 => {
            let _ = write!(d.summary, "{src} > {dst}: ");
            match Icmpv6Slice::from_slice(payload) {
                Ok(icmp) => {
                    if d.verbose > 0 {
                        icmpv6_checksum(&mut d.summary, &icmp, src, dst);
                    }
                    icmpv6(&mut d.summary, &icmp, len, d.verbose == 0);
                }
                Err(_) => d.summary.push_str("[|icmp6]"),
            }
        }
        _ => {
            let _ = write!(d.summary, "{src} > {dst}: {word} {len}");
        }
    }
}

/// A TCP/UDP header cut short: ports are printed when they were captured, like tcpdump.
fn tcp_udp_truncated(d: &mut Decoded, payload: &[u8], what: &str) {
    let (Some(src), Some(dst)) = (d.src, d.dst) else { return };
    match (payload.get(0..2), payload.get(2..4)) {
        (Some(s), Some(t)) => {
            let (sport, dport) = (u16::from_be_bytes([s[0], s[1]]), u16::from_be_bytes([t[0], t[1]]));
            d.sport = Some(sport);
            d.dport = Some(dport);
            let _ = write!(d.summary, "{src}.{sport} > {dst}.{dport}: [|{what}]");
        }
        _ => {
            let _ = write!(d.summary, "{src} > {dst}: [|{what}]");
        }
    }
}

/// "Flags [S.], seq 1, ack 2, win 3, options [mss 1460], length 0", absolute sequence
/// numbers (as `tcpdump -S`: netray keeps no per-connection state).
/// `cksum`: -v's checksum verdict; `seq_always`: -vv prints the sequence number of every segment.
fn tcp_details(out: &mut String, tcp: &TcpSlice, len: usize, cksum: &str, seq_always: bool) {
    let flags: String = [
        (tcp.fin(), 'F'),
        (tcp.syn(), 'S'),
        (tcp.rst(), 'R'),
        (tcp.psh(), 'P'),
        (tcp.ack(), '.'),
        (tcp.urg(), 'U'),
        (tcp.ece(), 'E'),
        (tcp.cwr(), 'W'),
    ]
    .iter()
    .filter(|(set, _)| *set)
    .map(|&(_, c)| c)
    .collect();
    let flags = if flags.is_empty() { "none".to_owned() } else { flags };
    let data_len = len.saturating_sub(tcp.header_slice().len());
    let seq = tcp.sequence_number();
    let _ = write!(out, "Flags [{flags}]{cksum}");
    if data_len > 0 {
        let _ = write!(out, ", seq {seq}:{}", seq.wrapping_add(data_len as u32));
    } else if tcp.syn() || tcp.fin() || tcp.rst() || seq_always {
        let _ = write!(out, ", seq {seq}");
    }
    if tcp.ack() {
        let _ = write!(out, ", ack {}", tcp.acknowledgment_number());
    }
    let _ = write!(out, ", win {}", tcp.window_size());
    if tcp.urg() {
        let _ = write!(out, ", urg {}", tcp.urgent_pointer());
    }
    if !tcp.options().is_empty() {
        let opts: Vec<String> = tcp
            .options_iterator()
            .map(|o| match o {
                Ok(TcpOptionElement::Noop) => "nop".to_owned(),
                Ok(TcpOptionElement::MaximumSegmentSize(m)) => format!("mss {m}"),
                Ok(TcpOptionElement::WindowScale(w)) => format!("wscale {w}"),
                Ok(TcpOptionElement::SelectiveAcknowledgementPermitted) => "sackOK".to_owned(),
                Ok(TcpOptionElement::SelectiveAcknowledgement(first, more)) => {
                    let blocks: Vec<String> = std::iter::once(first)
                        .chain(more.into_iter().flatten())
                        .map(|(l, r)| format!("{{{l}:{r}}}"))
                        .collect();
                    format!("sack {} {}", blocks.len(), blocks.join(""))
                }
                Ok(TcpOptionElement::Timestamp(val, ecr)) => format!("TS val {val} ecr {ecr}"),
                Err(_) => "[bad opt]".to_owned(),
            })
            .collect();
        let _ = write!(out, ", options [{}]", opts.join(","));
    }
    let _ = write!(out, ", length {data_len}");
}

fn icmpv4(out: &mut String, icmp: &Icmpv4Slice, len: usize) {
    out.push_str("ICMP ");
    match icmp.icmp_type() {
        Icmpv4Type::EchoRequest(e) => {
            let _ = write!(out, "echo request, id {}, seq {}", e.id, e.seq);
        }
        Icmpv4Type::EchoReply(e) => {
            let _ = write!(out, "echo reply, id {}, seq {}", e.id, e.seq);
        }
        Icmpv4Type::DestinationUnreachable(_) => {
            out.push_str(&unreachable_v4(icmp));
        }
        Icmpv4Type::TimeExceeded(_) => out.push_str("time exceeded in-transit"),
        _ => {
            let _ = write!(out, "type-#{}", icmp.type_u8());
        }
    }
    let _ = write!(out, ", length {len}");
}

/// "10.0.0.2 udp port 9 unreachable" from the quoted datagram, as tcpdump says it;
/// without a readable quote just the code.
fn unreachable_v4(icmp: &Icmpv4Slice) -> String {
    let quoted = Ipv4HeaderSlice::from_slice(icmp.payload()).ok();
    let code = icmp.code_u8();
    match (code, quoted) {
        (3, Some(q)) => {
            let l4 = icmp.payload().get(q.slice().len()..).unwrap_or_default();
            let proto = proto_word(q.protocol());
            match l4.get(2..4) {
                Some(p) if matches!(q.protocol(), IpNumber::TCP | IpNumber::UDP) => {
                    format!("{} {proto} port {} unreachable", q.destination_addr(), u16::from_be_bytes([p[0], p[1]]))
                }
                _ => format!("{} {proto} port unreachable", q.destination_addr()),
            }
        }
        (1, Some(q)) => format!("host {} unreachable", q.destination_addr()),
        (0, Some(q)) => format!("net {} unreachable", q.destination_addr()),
        (2, Some(q)) => format!("{} protocol {} unreachable", q.destination_addr(), q.protocol().0),
        _ => format!("unreachable code {code}"),
    }
}

/// `-v`'s ICMPv6 checksum verdict, which tcpdump prints whatever -K says.
fn icmpv6_checksum(out: &mut String, icmp: &Icmpv6Slice, src: IpAddr, dst: IpAddr) {
    let (IpAddr::V6(src), IpAddr::V6(dst)) = (src, dst) else { return };
    let Ok(computed) = icmp.icmp_type().calc_checksum(src.octets(), dst.octets(), icmp.payload()) else { return };
    if computed == icmp.checksum() {
        out.push_str("[icmp6 sum ok] ");
    } else {
        let _ = write!(out, "[bad icmp6 cksum 0x{:04x} -> 0x{computed:04x}!] ", icmp.checksum());
    }
}

/// `with_length`: tcpdump leaves the length out under -v.
fn icmpv6(out: &mut String, icmp: &Icmpv6Slice, len: usize, with_length: bool) {
    out.push_str("ICMP6, ");
    match icmp.icmp_type() {
        Icmpv6Type::EchoRequest(e) => {
            let _ = write!(out, "echo request, id {}, seq {}", e.id, e.seq);
        }
        Icmpv6Type::EchoReply(e) => {
            let _ = write!(out, "echo reply, id {}, seq {}", e.id, e.seq);
        }
        Icmpv6Type::DestinationUnreachable(_) => {
            let _ = write!(out, "destination unreachable, code {}", icmp.code_u8());
        }
        Icmpv6Type::PacketTooBig { mtu } => {
            let _ = write!(out, "packet too big, mtu {mtu}");
        }
        Icmpv6Type::TimeExceeded(_) => out.push_str("time exceeded in-transit"),
        Icmpv6Type::NeighborSolicitation => match icmp.payload().get(..16).and_then(|b| <[u8; 16]>::try_from(b).ok()) {
            Some(t) => {
                let _ = write!(out, "neighbor solicitation, who has {}", Ipv6Addr::from(t));
            }
            None => out.push_str("neighbor solicitation"),
        },
        Icmpv6Type::NeighborAdvertisement(_) => {
            match icmp.payload().get(..16).and_then(|b| <[u8; 16]>::try_from(b).ok()) {
                Some(t) => {
                    let _ = write!(out, "neighbor advertisement, tgt is {}", Ipv6Addr::from(t));
                }
                None => out.push_str("neighbor advertisement"),
            }
        }
        Icmpv6Type::RouterSolicitation => out.push_str("router solicitation"),
        Icmpv6Type::RouterAdvertisement(_) => out.push_str("router advertisement"),
        _ => {
            let _ = write!(out, "type-#{}", icmp.type_u8());
        }
    }
    if with_length {
        let _ = write!(out, ", length {len}");
    }
}

fn arp(d: &mut Decoded, data: &[u8]) {
    let len = data.len();
    let parsed = ArpPacketSlice::from_slice(data).ok().map(|a| a.to_packet());
    let Some(eth_ip) = parsed.as_ref().and_then(|p| p.try_eth_ipv4().ok()) else {
        d.summary.push_str("ARP, [|arp]");
        return;
    };
    let (sender, target) = (Ipv4Addr::from(eth_ip.sender_ipv4), Ipv4Addr::from(eth_ip.target_ipv4));
    d.proto = Some(Cow::Borrowed("arp"));
    match eth_ip.operation {
        ArpOperation::REQUEST => {
            d.src = Some(sender.into());
            d.dst = Some(target.into());
            let _ = write!(d.summary, "ARP, Request who-has {target} tell {sender}, length {len}");
        }
        ArpOperation::REPLY => {
            d.src = Some(sender.into());
            d.dst = Some(target.into());
            let _ = write!(d.summary, "ARP, Reply {sender} is-at {}, length {len}", mac(&eth_ip.sender_mac));
        }
        op => {
            let _ = write!(d.summary, "ARP, op {}, length {len}", op.0);
        }
    }
}

fn mac(addr: &[u8; 6]) -> String {
    addr.map(|b| format!("{b:02x}")).join(":")
}

/// tcpdump's lower-case protocol names for the ones netray users meet, "ip-proto-N" otherwise.
fn proto_word(p: IpNumber) -> Cow<'static, str> {
    let name = match p {
        IpNumber::TCP => "tcp",
        IpNumber::UDP => "udp",
        IpNumber::ICMP => "icmp",
        IpNumber::IPV6_ICMP => "icmp6",
        IpNumber::GRE => "gre",
        IpNumber::ENCAPSULATING_SECURITY_PAYLOAD => "esp",
        IpNumber::AUTHENTICATION_HEADER => "ah",
        IpNumber::SCTP => "sctp",
        _ => return Cow::Owned(format!("ip-proto-{}", p.0)),
    };
    Cow::Borrowed(name)
}
