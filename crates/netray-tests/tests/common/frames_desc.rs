//! The frame description (`Pkt`) tests build frames from, and its
//! prediction of the event the dispatcher must report for any prefix of the
//! frame (`Pkt::expect`), written from the ABI contract (see mod.rs).

use super::*;

// ---- frame description ------------------------------------------------------

/// An L4 header (and payload) as bytes, with its IP protocol number.
#[derive(Clone, Debug)]
pub struct L4 {
    pub proto: u8,
    pub bytes: Vec<u8>,
}

pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> L4 {
    udp_like(P_UDP, sport, dport, payload)
}

/// UDP-Lite: an 8-byte header shaped like UDP's (checksum coverage instead
/// of length).
pub fn udplite(sport: u16, dport: u16, payload: &[u8]) -> L4 {
    udp_like(P_UDPLITE, sport, dport, payload)
}

fn udp_like(proto: u8, sport: u16, dport: u16, payload: &[u8]) -> L4 {
    let mut b = Vec::new();
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&dport.to_be_bytes());
    b.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    b.extend_from_slice(&[0, 0]); // checksum: not verified by the program
    b.extend_from_slice(payload);
    L4 { proto, bytes: b }
}

/// A 20-byte TCP SYN (no options, no payload).
pub fn tcp(sport: u16, dport: u16) -> L4 {
    let mut b = Vec::new();
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&dport.to_be_bytes());
    b.extend_from_slice(&0x1122_3344u32.to_be_bytes()); // seq
    b.extend_from_slice(&0u32.to_be_bytes()); // ack
    b.extend_from_slice(&[0x50, 0x02]); // data offset 5, SYN
    b.extend_from_slice(&1024u16.to_be_bytes()); // window
    b.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
    L4 { proto: P_TCP, bytes: b }
}

/// An SCTP common header (12 bytes) and an 8-byte chunk.
pub fn sctp(sport: u16, dport: u16) -> L4 {
    let mut b = Vec::new();
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&dport.to_be_bytes());
    b.extend_from_slice(&0xdead_beefu32.to_be_bytes()); // verification tag
    b.extend_from_slice(&[0, 0, 0, 0]); // checksum
    b.extend_from_slice(&[1, 0, 0, 8, 0, 0, 0, 0]); // a chunk
    L4 { proto: P_SCTP, bytes: b }
}

/// An ICMP (or ICMPv6, by `proto`) echo-shaped message: 8-byte header and 8
/// bytes of payload.
pub fn icmp_msg(proto: u8, typ: u8, code: u8) -> L4 {
    let mut b = vec![typ, code, 0, 0, 0, 1, 0, 1];
    b.extend_from_slice(&[0x5a; 8]);
    L4 { proto, bytes: b }
}

/// ICMP with `payload` bytes after the 8-byte header.
pub fn icmp_len(typ: u8, code: u8, payload: usize) -> L4 {
    let mut l4 = icmp_msg(P_ICMP, typ, code);
    l4.bytes.resize(8 + payload, 0x5a);
    l4
}

pub fn icmp(typ: u8, code: u8) -> L4 {
    icmp_msg(P_ICMP, typ, code)
}

pub fn icmp6(typ: u8, code: u8) -> L4 {
    icmp_msg(P_ICMPV6, typ, code)
}

/// Any other protocol: the parser reports the number and nothing else.
pub fn raw_l4(proto: u8, bytes: &[u8]) -> L4 {
    L4 { proto, bytes: bytes.to_vec() }
}

/// One IPv6 extension header; `bytes[0]` (next header) is filled in by the
/// builder. Its length is `bytes.len()`, kept consistent with its length field
/// by the constructors.
#[derive(Clone, Debug)]
pub struct Ext {
    pub kind: u8,
    pub bytes: Vec<u8>,
}

impl Ext {
    /// Hop-by-hop / destination options / routing: (hdrlen + 1) * 8 bytes,
    /// the rest filled with a PadN option.
    fn opts(kind: u8, hdrlen: u8) -> Ext {
        let len = (usize::from(hdrlen) + 1) * 8;
        let mut b = vec![0, hdrlen, 1, (len - 4) as u8];
        b.resize(len, 0);
        Ext { kind, bytes: b }
    }

    pub fn hop(hdrlen: u8) -> Ext {
        Ext::opts(X_HOP, hdrlen)
    }

    pub fn dest(hdrlen: u8) -> Ext {
        Ext::opts(X_DEST, hdrlen)
    }

    /// A segment routing header (type 4) with `segments` 16-byte segments.
    pub fn routing(segments: u8) -> Ext {
        let hdrlen = 2 * segments;
        let mut b = vec![0, hdrlen, 4, segments.saturating_sub(1), segments.saturating_sub(1), 0, 0, 0];
        for i in 0..segments {
            b.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, i + 1]);
        }
        Ext { kind: X_ROUTING, bytes: b }
    }

    /// A fragment header; `offset` in 8-byte units.
    pub fn frag(offset: u16, more: bool) -> Ext {
        let field = (offset << 3) | u16::from(more);
        let mut b = vec![0, 0];
        b.extend_from_slice(&field.to_be_bytes());
        b.extend_from_slice(&0x0bad_cafeu32.to_be_bytes());
        Ext { kind: X_FRAG, bytes: b }
    }

    /// An authentication header with `icv_words` 32-bit words of ICV:
    /// (payload_len + 2) * 4 = 12 + 4 * icv_words bytes.
    pub fn ah(icv_words: u8) -> Ext {
        let payload_len = 1 + icv_words;
        let mut b = vec![0, payload_len, 0, 0];
        b.extend_from_slice(&0x0000_1000u32.to_be_bytes()); // SPI
        b.extend_from_slice(&7u32.to_be_bytes()); // sequence
        b.resize((usize::from(payload_len) + 2) * 4, 0xcc);
        Ext { kind: X_AH, bytes: b }
    }

    fn frag_offset(&self) -> u16 {
        u16::from_be_bytes([self.bytes[2], self.bytes[3]]) >> 3
    }
}

#[derive(Clone, Debug)]
pub enum Net {
    /// Whatever follows the ethertype of a non-IP frame.
    Raw(Vec<u8>),
    V4(V4),
    V6(V6),
}

#[derive(Clone, Debug)]
pub struct V4 {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    /// The IHL field (header length in 32-bit words); 5 = no options.
    pub ihl: u8,
    /// Option bytes written after the 20-byte header. Normally ihl*4 - 20
    /// bytes; fewer when the test wants IHL to claim more than is there.
    pub options: Vec<u8>,
    /// The flags/fragment-offset field (0x2000 = MF, 0x4000 = DF).
    pub frag: u16,
    pub l4: L4,
}

#[derive(Clone, Debug)]
pub struct V6 {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub exts: Vec<Ext>,
    pub l4: L4,
}

/// A whole frame: Ethernet, VLAN tags (outermost first), the network layer.
#[derive(Clone, Debug)]
pub struct Pkt {
    /// (TPID, TCI) of each tag, outermost first.
    pub tags: Vec<(u16, u16)>,
    pub ethertype: u16,
    pub net: Net,
}

pub fn v4(src: [u8; 4], dst: [u8; 4], l4: L4) -> Pkt {
    Pkt {
        tags: vec![],
        ethertype: ETH_IP,
        net: Net::V4(V4 { src, dst, ihl: 5, options: vec![], frag: 0x4000, l4 }),
    }
}

pub fn v6(src: [u8; 16], dst: [u8; 16], exts: Vec<Ext>, l4: L4) -> Pkt {
    Pkt { tags: vec![], ethertype: ETH_IPV6, net: Net::V6(V6 { src, dst, exts, l4 }) }
}

pub fn non_ip(ethertype: u16, payload: &[u8]) -> Pkt {
    Pkt { tags: vec![], ethertype, net: Net::Raw(payload.to_vec()) }
}

pub const A4: [u8; 4] = [192, 0, 2, 10];
pub const B4: [u8; 4] = [198, 51, 100, 20];
pub const A6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0xaa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a];
pub const B6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0xbb, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x14];

pub fn addr16(a: &[u8]) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..a.len()].copy_from_slice(a);
    v
}

impl Pkt {
    /// Adds a VLAN tag inside the existing ones (the first call is the outer tag).
    pub fn tag(mut self, tpid: u16, tci: u16) -> Pkt {
        self.tags.push((tpid, tci));
        self
    }

    fn v4_mut(&mut self) -> &mut V4 {
        match &mut self.net {
            Net::V4(v) => v,
            _ => panic!("not IPv4"),
        }
    }

    /// IPv4 header of `ihl` words; writes ihl*4 - 20 option bytes.
    pub fn ihl(mut self, ihl: u8, options: &[u8]) -> Pkt {
        let v = self.v4_mut();
        v.ihl = ihl;
        v.options = options.to_vec();
        self
    }

    /// The IPv4 flags/fragment-offset field.
    pub fn frag_field(mut self, field: u16) -> Pkt {
        self.v4_mut().frag = field;
        self
    }

    /// IPv4 fragment: `offset` in 8-byte units, MF flag.
    pub fn frag(self, offset: u16, more: bool) -> Pkt {
        self.frag_field(offset | if more { 0x2000 } else { 0 })
    }

    /// Offset of the network header.
    pub fn l3_off(&self) -> usize {
        14 + 4 * self.tags.len()
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&frames::DST_MAC);
        f.extend_from_slice(&frames::SRC_MAC);
        for (tpid, tci) in &self.tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        f.extend_from_slice(&self.ethertype.to_be_bytes());
        match &self.net {
            Net::Raw(p) => f.extend_from_slice(p),
            Net::V4(v) => {
                let start = f.len();
                let hdr_len = 20 + v.options.len();
                let total = (hdr_len + v.l4.bytes.len()) as u16;
                f.push(0x40 | (v.ihl & 0x0f));
                f.push(0);
                f.extend_from_slice(&total.to_be_bytes());
                f.extend_from_slice(&0x1234u16.to_be_bytes()); // id
                f.extend_from_slice(&v.frag.to_be_bytes());
                f.push(64);
                f.push(v.l4.proto);
                f.extend_from_slice(&[0, 0]);
                f.extend_from_slice(&v.src);
                f.extend_from_slice(&v.dst);
                f.extend_from_slice(&v.options);
                let ck = ip_checksum(&f[start..start + hdr_len]);
                f[start + 10..start + 12].copy_from_slice(&ck.to_be_bytes());
                f.extend_from_slice(&v.l4.bytes);
            }
            Net::V6(v) => {
                let payload: usize = v.exts.iter().map(|e| e.bytes.len()).sum::<usize>() + v.l4.bytes.len();
                let first = v.exts.first().map_or(v.l4.proto, |e| e.kind);
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                f.extend_from_slice(&(payload as u16).to_be_bytes());
                f.push(first);
                f.push(64);
                f.extend_from_slice(&v.src);
                f.extend_from_slice(&v.dst);
                for (i, e) in v.exts.iter().enumerate() {
                    let next = v.exts.get(i + 1).map_or(v.l4.proto, |n| n.kind);
                    f.push(next);
                    f.extend_from_slice(&e.bytes[1..]);
                }
                f.extend_from_slice(&v.l4.bytes);
            }
        }
        f
    }

    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    /// The event the dispatcher must report for the first `n` bytes of this
    /// frame with no rule matching (see the module comment).
    pub fn expect(&self, n: usize) -> Ev {
        let mut e = Ev { pkt_len: n as u32, ..Ev::default() };
        if n < 14 {
            e.flags |= TRUNC;
            return e;
        }
        // VLAN: the parser walks at most two tags.
        let mut off = 14;
        for (i, (tpid, tci)) in self.tags.iter().enumerate() {
            if i == 2 {
                // A third tag is not walked: its TPID is the ethertype.
                e.ethertype = *tpid;
                return e;
            }
            if n < off + 4 {
                e.ethertype = *tpid;
                e.flags |= TRUNC;
                return e;
            }
            if i == 0 {
                e.vlan_outer = tci & 0x0fff;
            } else {
                e.vlan_inner = tci & 0x0fff;
            }
            e.vlan_depth = i as u8 + 1;
            off += 4;
        }
        e.ethertype = self.ethertype;
        // The ethertype decides how the rest is read, not the description.
        match (&self.net, self.ethertype) {
            (Net::V4(v), ETH_IP) => expect_v4(v, off, n, &mut e),
            (Net::V6(v), ETH_IPV6) => expect_v6(v, off, n, &mut e),
            (_, ETH_IP | ETH_IPV6) => panic!("no model for this network header under ethertype {:#x}", self.ethertype),
            _ => {}
        }
        e
    }

    /// The full frame's expected event.
    pub fn expect_full(&self) -> Ev {
        self.expect(self.len())
    }
}

fn expect_v4(v: &V4, off: usize, n: usize, e: &mut Ev) {
    if n < off + 20 {
        e.flags |= TRUNC;
        return;
    }
    e.family = 4;
    e.src[..4].copy_from_slice(&v.src);
    e.dst[..4].copy_from_slice(&v.dst);
    e.l4_proto = v.l4.proto;
    if v.ihl < 5 {
        // Malformed: addresses and protocol are reported, nothing more.
        e.flags |= TRUNC;
        return;
    }
    if v.ihl > 5 {
        e.flags |= OPTS;
    }
    if v.frag & 0x3fff != 0 {
        e.flags |= FRAG;
        if v.frag & 0x1fff != 0 {
            e.flags |= LATER;
            return;
        }
    }
    let hlen = usize::from(v.ihl) * 4;
    if n < off + hlen {
        e.flags |= TRUNC;
        return;
    }
    // The L4 header sits where IHL says, whatever bytes are really there.
    let l4_off = off + hlen;
    let frame_l4_off = off + 20 + v.options.len();
    let l4_bytes: Vec<u8> = if l4_off >= frame_l4_off {
        v.l4.bytes.iter().copied().skip(l4_off - frame_l4_off).collect()
    } else {
        let mut b = v.options[l4_off - off - 20..].to_vec();
        b.extend_from_slice(&v.l4.bytes);
        b
    };
    expect_l4(v.l4.proto, &l4_bytes, l4_off, n, e);
}

fn expect_v6(v: &V6, off: usize, n: usize, e: &mut Ev) {
    if n < off + 40 {
        e.flags |= TRUNC;
        return;
    }
    e.family = 6;
    e.src = v.src;
    e.dst = v.dst;
    let mut off = off + 40;
    for (i, x) in v.exts.iter().enumerate() {
        if i == MAX_EXT {
            // Past the parser's limit: the next header is reported as the
            // protocol, and the packet as truncated (its transport header
            // was never reached, so port rules cannot apply).
            e.l4_proto = x.kind;
            e.flags |= TRUNC;
            return;
        }
        e.flags |= EXT;
        if off >= MAX_OFF || n < off + 8 {
            e.l4_proto = x.kind;
            e.flags |= TRUNC;
            return;
        }
        if x.kind == X_FRAG {
            e.flags |= FRAG;
            if x.frag_offset() != 0 {
                e.flags |= LATER;
                e.l4_proto = v.exts.get(i + 1).map_or(v.l4.proto, |n| n.kind);
                return;
            }
        }
        off += x.bytes.len();
    }
    e.l4_proto = v.l4.proto;
    if off >= MAX_OFF {
        e.flags |= TRUNC;
        return;
    }
    expect_l4(v.l4.proto, &v.l4.bytes, off, n, e);
}

/// `bytes` start at frame offset `off`.
fn expect_l4(proto: u8, bytes: &[u8], off: usize, n: usize, e: &mut Ev) {
    let hdr = match proto {
        P_TCP => 20,
        P_UDP | P_UDPLITE => 8,
        P_SCTP => 12,
        P_ICMP | P_ICMPV6 => 4,
        _ => return,
    };
    if n < off + 4 {
        e.flags |= TRUNC;
        return;
    }
    if proto == P_ICMP || proto == P_ICMPV6 {
        e.icmp_type = bytes[0];
        e.icmp_code = bytes[1];
        e.flags |= ICMP;
        return;
    }
    e.sport = u16::from_be_bytes([bytes[0], bytes[1]]);
    e.dport = u16::from_be_bytes([bytes[2], bytes[3]]);
    e.flags |= PORTS;
    if n < off + hdr {
        e.flags |= TRUNC;
    }
}

pub fn ip_checksum(hdr: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in hdr.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An event written out field by field, for hand-checked expectations.
pub struct Want {
    pub ev: Ev,
}

impl Want {
    pub fn new(pkt_len: usize, ethertype: u16) -> Want {
        Want { ev: Ev { pkt_len: pkt_len as u32, ethertype, ..Ev::default() } }
    }
    pub fn vlan(mut self, depth: u8, outer: u16, inner: u16) -> Want {
        self.ev.vlan_depth = depth;
        self.ev.vlan_outer = outer;
        self.ev.vlan_inner = inner;
        self
    }
    pub fn v4(mut self, src: [u8; 4], dst: [u8; 4], proto: u8) -> Want {
        self.ev.family = 4;
        self.ev.src = addr16(&src);
        self.ev.dst = addr16(&dst);
        self.ev.l4_proto = proto;
        self
    }
    pub fn v6(mut self, src: [u8; 16], dst: [u8; 16], proto: u8) -> Want {
        self.ev.family = 6;
        self.ev.src = src;
        self.ev.dst = dst;
        self.ev.l4_proto = proto;
        self
    }
    pub fn ports(mut self, sport: u16, dport: u16) -> Want {
        self.ev.sport = sport;
        self.ev.dport = dport;
        self.ev.flags |= PORTS;
        self
    }
    pub fn icmp(mut self, typ: u8, code: u8) -> Want {
        self.ev.icmp_type = typ;
        self.ev.icmp_code = code;
        self.ev.flags |= ICMP;
        self
    }
    pub fn flags(mut self, f: u8) -> Want {
        self.ev.flags |= f;
        self
    }
    pub fn get(self) -> Ev {
        self.ev
    }
}

/// Frame shapes whose every header boundary the parse tests sweep, at XDP and
/// at the TC hooks: tags, options, fragments, extension chains, non-IP.
pub fn header_shapes() -> Vec<(&'static str, Pkt)> {
    vec![
        ("sctp4", v4(A4, B4, sctp(1, 2))),
        ("udplite4", v4(A4, B4, udplite(3, 4, b"x"))),
        ("tcp6", v6(A6, B6, vec![], tcp(5, 6))),
        ("icmp6", v6(A6, B6, vec![], icmp6(128, 0))),
        ("qinq tcp4 ihl 7", v4(A4, B4, tcp(7, 8)).ihl(7, &[1; 8]).tag(TPID_8021AD, 10).tag(TPID_8021Q, 20)),
        ("ihl 15 udp4", v4(A4, B4, udp(9, 10, b"")).ihl(15, &[1; 40])),
        ("first fragment udp4", v4(A4, B4, udp(11, 12, b"abcd")).frag(0, true)),
        ("later fragment udp4 ihl 8", v4(A4, B4, raw_l4(P_UDP, &[0, 53, 0, 53, 1, 2])).ihl(8, &[1; 12]).frag(100, true)),
        ("dot1q udp6", v6(A6, B6, vec![], udp(13, 14, b"")).tag(TPID_8021Q, 5)),
        ("three tags udp4", v4(A4, B4, udp(1, 1, b"")).tag(TPID_8021AD, 1).tag(TPID_8021Q, 2).tag(TPID_8021Q, 3)),
        (
            "ipv6 chain udp",
            v6(A6, B6, vec![Ext::hop(0), Ext::routing(2), Ext::frag(0, true), Ext::ah(3), Ext::dest(1)], udp(15, 16, b"z")),
        ),
        ("ipv6 later fragment", v6(A6, B6, vec![Ext::hop(0), Ext::frag(3, false)], raw_l4(P_TCP, &[0, 22, 0, 22]))),
        ("ipv6 9 ext", v6(A6, B6, vec![Ext::dest(0); 9], udp(17, 18, b""))),
        ("arp", non_ip(ETH_ARP, &[0; 28])),
    ]
}
