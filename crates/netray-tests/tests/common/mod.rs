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
    MapHandle, ProgramInput,
};
use netray_core::{
    map_pins::configure_maps,
    maps,
};
use netray_ebpf::{
    abi::{self, nr_hook, nr_packet_event, nr_packet_flags, nr_parse_limits, nr_verdict, xdp_md},
    xdp_dispatch::{XdpDispatchSkel, XdpDispatchSkelBuilder},
};
use netray_tests::{drain_events, frames, XdpHarness, XDP_DROP, XDP_PASS};

mod frames_desc;
#[allow(unused_imports)] // not every test target uses the frame descriptions
pub use frames_desc::*;
pub mod verdict_paths;

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
        let events = drain_events(&self.events);
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

