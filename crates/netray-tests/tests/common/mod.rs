//! Shared by xdp_parse.rs and xdp_firewall.rs: a byte-exact frame
//! description (`Pkt`) that both builds the frame and predicts the event the
//! dispatcher must report for any prefix of it, a comparable view of the
//! event (`Ev`), and a second runner that can feed frames shorter than an
//! Ethernet header.
//!
//! The prediction (`Pkt::expect`) is written from the ABI contract
//! (netray_abi.h, parse.h): a field is reported exactly when the bytes it
//! comes from, and every header the parser must cross to reach it, are inside
//! the frame; NR_PKT_TRUNCATED is set when the frame ends inside a header the
//! parser needed. It works from the description, never from the built bytes,
//! so a wrong offset in the C parser shows up as a mismatch.
#![allow(dead_code)]

use std::mem::MaybeUninit;

use libbpf_rs::{
    skel::{OpenSkel, SkelBuilder},
    MapHandle, ProgramInput, RingBufferBuilder,
};
use netray_core::{
    map_pins::configure_maps,
    maps,
};
use netray_ebpf::{
    abi::{self, from_bytes, nr_hook, nr_packet_event, nr_packet_flags, nr_parse_limits, nr_verdict, xdp_md},
    xdp_dispatch::{XdpDispatchSkel, XdpDispatchSkelBuilder},
};
use netray_tests::{frames, XdpHarness, XDP_DROP, XDP_PASS};

// ---- event flags, from the ABI (never copied by hand) ----------------------

pub const TRUNC: u8 = nr_packet_flags::NR_PKT_TRUNCATED.0 as u8;
pub const FRAG: u8 = nr_packet_flags::NR_PKT_FRAGMENT.0 as u8;
pub const LATER: u8 = nr_packet_flags::NR_PKT_LATER_FRAGMENT.0 as u8;
pub const OPTS: u8 = nr_packet_flags::NR_PKT_IP_OPTIONS.0 as u8;
pub const EXT: u8 = nr_packet_flags::NR_PKT_IPV6_EXT.0 as u8;
pub const PORTS: u8 = nr_packet_flags::NR_PKT_HAS_PORTS.0 as u8;
pub const ICMP: u8 = nr_packet_flags::NR_PKT_HAS_ICMP.0 as u8;

pub const ETH_IP: u16 = 0x0800;
pub const ETH_IPV6: u16 = 0x86dd;
pub const ETH_ARP: u16 = 0x0806;
pub const ETH_LLDP: u16 = 0x88cc;
pub const TPID_8021Q: u16 = 0x8100;
pub const TPID_8021AD: u16 = 0x88a8;

pub const P_ICMP: u8 = 1;
pub const P_TCP: u8 = 6;
pub const P_UDP: u8 = 17;
pub const P_GRE: u8 = 47;
pub const P_ESP: u8 = 50;
pub const P_ICMPV6: u8 = 58;
pub const P_NONE6: u8 = 59;
pub const P_SCTP: u8 = 132;
pub const P_UDPLITE: u8 = 136;

pub const X_HOP: u8 = 0;
pub const X_ROUTING: u8 = 43;
pub const X_FRAG: u8 = 44;
pub const X_AH: u8 = 51;
pub const X_DEST: u8 = 60;

/// The parser's limit on IPv6 extension headers.
pub const MAX_EXT: usize = nr_parse_limits::NR_IPV6_MAX_EXT.0 as usize;
/// The parser's limit on header offsets.
pub const MAX_OFF: usize = nr_parse_limits::NR_PARSE_MAX_OFF.0 as usize;

/// ifindex BPF_PROG_TEST_RUN reports without a ctx: the loopback device's rxq.
pub const TEST_RUN_IFINDEX: u32 = 1;

pub fn flag_names(f: u8) -> String {
    let names = ["TRUNC", "FRAG", "LATER", "OPTS", "EXT", "PORTS", "ICMP", "0x80"];
    let v: Vec<&str> = (0..8).filter(|b| f & (1 << b) != 0).map(|b| names[b]).collect();
    if v.is_empty() { "-".into() } else { v.join("|") }
}

// ---- the event, comparable -----------------------------------------------

/// Every field of nr_packet_event that is a function of the frame and the
/// rule set (ts_ns, hook, ifindex, direction are checked by `check_fixed`).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Ev {
    pub pkt_len: u32,
    pub verdict: u8,
    pub rule_id: u32,
    pub ethertype: u16,
    pub vlan_depth: u8,
    pub vlan_outer: u16,
    pub vlan_inner: u16,
    pub family: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub l4_proto: u8,
    pub flags: u8,
    pub sport: u16,
    pub dport: u16,
    pub icmp_type: u8,
    pub icmp_code: u8,
}

impl std::fmt::Debug for Ev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addr = |a: &[u8; 16]| match self.family {
            4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(&a[..4]).unwrap()).to_string(),
            6 => std::net::Ipv6Addr::from(*a).to_string(),
            _ => format!("{a:02x?}"),
        };
        write!(
            f,
            "Ev{{len {} verdict {} rule {} eth {:#06x} vlan {}/{}/{} fam {} {} > {} l4 {} flags {} ports {}>{} icmp {}/{}}}",
            self.pkt_len,
            self.verdict,
            self.rule_id,
            self.ethertype,
            self.vlan_depth,
            self.vlan_outer,
            self.vlan_inner,
            self.family,
            addr(&self.src),
            addr(&self.dst),
            self.l4_proto,
            flag_names(self.flags),
            self.sport,
            self.dport,
            self.icmp_type,
            self.icmp_code
        )
    }
}

impl Ev {
    pub fn of(e: &nr_packet_event) -> Ev {
        Ev {
            pkt_len: e.pkt_len,
            verdict: e.verdict,
            rule_id: e.rule_id,
            ethertype: e.ethertype,
            vlan_depth: e.vlan_depth,
            vlan_outer: e.vlan_outer,
            vlan_inner: e.vlan_inner,
            family: e.family,
            src: e.src,
            dst: e.dst,
            l4_proto: e.l4_proto,
            flags: e.flags,
            sport: e.sport,
            dport: e.dport,
            icmp_type: e.icmp_type,
            icmp_code: e.icmp_code,
        }
    }

    /// This event as it looks when rule `id` dropped the packet.
    pub fn dropped_by(mut self, id: u32) -> Ev {
        self.verdict = nr_verdict::NR_VERDICT_DROP.0 as u8;
        self.rule_id = id;
        self
    }
}

/// The fields that do not depend on the frame.
pub fn check_fixed(e: &nr_packet_event, ctx: &str) {
    assert_ne!(e.ts_ns, 0, "{ctx}: ts_ns");
    assert_eq!(u32::from(e.hook), nr_hook::NR_HOOK_XDP.0, "{ctx}: hook");
    assert_eq!(e.direction, 0, "{ctx}: direction (ingress)");
    assert_eq!(e.ifindex, TEST_RUN_IFINDEX, "{ctx}: ifindex");
    assert_eq!(e.pkt_type, 0, "{ctx}: pkt_type (socket hook only)");
    assert_eq!(e._pad, [0; 2], "{ctx}: padding");
}

/// Runs `frame` through the harness; checks the event's fixed fields and that
/// the event's verdict agrees with the program's return value.
pub fn run(h: &XdpHarness, frame: &[u8], ctx: &str) -> (u32, Ev) {
    let r = h.run(frame);
    let e = r.event.unwrap_or_else(|| panic!("{ctx}: no monitor event"));
    check(r.verdict, &e, ctx)
}

fn check(verdict: u32, e: &nr_packet_event, ctx: &str) -> (u32, Ev) {
    check_fixed(e, ctx);
    match verdict {
        XDP_PASS => assert_eq!(u32::from(e.verdict), nr_verdict::NR_VERDICT_PASS.0, "{ctx}: event verdict"),
        XDP_DROP => assert_eq!(u32::from(e.verdict), nr_verdict::NR_VERDICT_DROP.0, "{ctx}: event verdict"),
        v => panic!("{ctx}: program returned {v}"),
    }
    (verdict, Ev::of(e))
}

/// Asserts verdict and the whole event.
#[track_caller]
pub fn assert_run(h: &XdpHarness, frame: &[u8], want: Ev, ctx: &str) {
    let (verdict, got) = run(h, frame, ctx);
    assert_eq!(got, want, "{ctx}: event");
    let want_verdict = if want.verdict == 0 { XDP_PASS } else { XDP_DROP };
    assert_eq!(verdict, want_verdict, "{ctx}: verdict");
}

// ---- a runner for frames shorter than an Ethernet header ------------------

/// BPF_PROG_TEST_RUN refuses data shorter than ETH_HLEN (14). Two ways
/// around it, depending on the kernel:
///  - recent kernels (this one, 6.18) count ETH_HLEN without metadata but
///    accept an xdp_md whose data_end is below data_size_in: only data_end
///    bytes go to the linear buffer, the rest to a fragment. The dispatcher is
///    loaded without frags support (cfg_frags = 0), so it sees, and counts,
///    exactly the linear bytes: an n-byte packet;
///  - older kernels require data_end == data_size_in but count ETH_HLEN with
///    the metadata: prefix the frame with up to 16 bytes of XDP metadata
///    (xdp_md.data = its length), which the program's data..data_end excludes.
///
/// The first that the kernel accepts is used.
///
/// The harness keeps its program private, so this is a second instance of the
/// dispatcher, loaded on the same pinned maps (config, stats, event ring,
/// firewall): its runs count with the harness's.
pub struct ShortRunner {
    skel: XdpDispatchSkel<'static>,
    events: MapHandle,
    /// 0: not known yet, 1: fragment method, 2: metadata method.
    method: std::cell::Cell<u8>,
}

impl ShortRunner {
    pub fn new(h: &XdpHarness) -> ShortRunner {
        let pin = &h.tmp.pin;
        let ifindex: u32 = {
            let dirs: Vec<_> = std::fs::read_dir(pin.ifaces_dir()).unwrap().map(|d| d.unwrap().file_name()).collect();
            assert_eq!(dirs.len(), 1, "the harness has one interface dir");
            dirs[0].to_str().unwrap().parse().unwrap()
        };
        let storage = Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = XdpDispatchSkelBuilder::default().open(storage).expect("opening the dispatcher");
        configure_maps(open.open_object_mut(), pin, Some(ifindex)).expect("configuring maps");
        let skel = open.load().expect("loading the dispatcher");
        let events = maps::open_pinned(&pin.if_dir(ifindex).join(netray_core::map_names::IF_EVENTS)).unwrap();
        ShortRunner { skel, events, method: std::cell::Cell::new(0) }
    }

    fn test_run(&self, frame: &[u8], method: u8) -> libbpf_rs::Result<u32> {
        let (data, xdp_md) = if method == 1 {
            let mut data = frame.to_vec();
            data.resize(frame.len().max(14), 0xee);
            (data, xdp_md { data_end: frame.len() as u32, ..Default::default() })
        } else {
            let meta = 14usize.saturating_sub(frame.len()).div_ceil(4) * 4;
            let mut data = vec![0xeeu8; meta];
            data.extend_from_slice(frame);
            let len = data.len() as u32;
            (data, xdp_md { data: meta as u32, data_end: len, ..Default::default() })
        };
        let mut ctx_in: Vec<u8> = abi::bytes_of(&xdp_md).to_vec();
        let input = ProgramInput { data_in: Some(&data), context_in: Some(&mut ctx_in), ..Default::default() };
        self.skel.progs.netray_xdp.test_run(input).map(|out| out.return_value)
    }

    /// Runs the program on exactly `frame` (any length, 0 included).
    pub fn run(&self, frame: &[u8], ctx: &str) -> (u32, Ev) {
        let verdict = match self.method.get() {
            0 => {
                let (m, r) = match self.test_run(frame, 1) {
                    Ok(v) => (1, Ok(v)),
                    Err(_) => (2, self.test_run(frame, 2)),
                };
                self.method.set(m);
                r
            }
            m => self.test_run(frame, m),
        }
        .unwrap_or_else(|e| panic!("{ctx}: BPF_PROG_TEST_RUN of a {}-byte frame: {e}", frame.len()));
        let mut events = Vec::new();
        {
            let mut b = RingBufferBuilder::new();
            b.add(&self.events, |d: &[u8]| {
                events.push(from_bytes::<nr_packet_event>(d).expect("short event"));
                0
            })
            .unwrap();
            b.build().unwrap().consume().unwrap();
        }
        assert_eq!(events.len(), 1, "{ctx}: events for one frame");
        check(verdict, &events[0], ctx)
    }
}

/// Runs frames of any length: through the harness from 14 bytes on, through
/// the ShortRunner below that.
pub struct AnyLen<'a> {
    pub h: &'a XdpHarness,
    short: ShortRunner,
}

impl<'a> AnyLen<'a> {
    pub fn new(h: &'a XdpHarness) -> AnyLen<'a> {
        AnyLen { h, short: ShortRunner::new(h) }
    }

    pub fn run(&self, frame: &[u8], ctx: &str) -> (u32, Ev) {
        if frame.len() < 14 { self.short.run(frame, ctx) } else { run(self.h, frame, ctx) }
    }

    pub fn short(&self) -> &ShortRunner {
        &self.short
    }
}

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
