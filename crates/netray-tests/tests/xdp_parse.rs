//! The dispatcher's parser (parse.h) through BPF_PROG_TEST_RUN: for
//! hand-built frames, the verdict and every field of the monitor event.
//!
//! Covers truncation at every length, IPv4 options and fragments, VLAN tags,
//! IPv6 extension headers and non-IP frames. Expectations are written out by
//! hand for the full frames and the header boundaries; the per-length sweeps
//! also compare against `Pkt::expect` (tests/common), a model of the ABI
//! contract that works from the frame's description rather than its bytes.
//!
//! One job, one file (over 600 lines): the parser's contract, field by field; the
//! frames and expectations are data more than code.

mod common;

use common::*;
use netray_firewall::Rule;
use netray_tests::{frames, require_root, XdpHarness, XDP_PASS};

// ---- helpers ---------------------------------------------------------------

/// Runs `pkt` cut at every length 0..=len and compares with the model; checks
/// the interface counters moved by exactly what the events say. Returns the
/// events, indexed by length.
fn sweep(any: &AnyLen, pkt: &Pkt, name: &str) -> Vec<Ev> {
    let h = any.h;
    let frame = pkt.bytes();
    let before = h.stats();
    let mut out = Vec::with_capacity(frame.len() + 1);
    for n in 0..=frame.len() {
        let ctx = format!("{name} cut at {n}/{}", frame.len());
        let (verdict, got) = any.run(&frame[..n], &ctx);
        assert_eq!(verdict, XDP_PASS, "{ctx}: verdict");
        assert_eq!(got, pkt.expect(n), "{ctx}");
        out.push(got);
    }
    let after = h.stats();
    let runs = out.len() as u64;
    assert_eq!(after.seen - before.seen, runs, "{name}: seen");
    assert_eq!(after.dropped - before.dropped, 0, "{name}: dropped");
    assert_eq!(after.events_sent - before.events_sent, runs, "{name}: events_sent");
    assert_eq!(after.events_lost - before.events_lost, 0, "{name}: events_lost");
    let bytes: u64 = out.iter().map(|e| u64::from(e.pkt_len)).sum();
    assert_eq!(after.bytes_seen - before.bytes_seen, bytes, "{name}: bytes_seen");
    let truncated = out.iter().filter(|e| e.flags & TRUNC != 0).count() as u64;
    assert_eq!(after.truncated - before.truncated, truncated, "{name}: truncated");
    let non_ip = out.iter().filter(|e| e.family == 0).count() as u64;
    assert_eq!(after.non_ip - before.non_ip, non_ip, "{name}: non_ip");
    out
}

/// Checks a sweep against hand-written stages: from each start length on
/// (until the next stage), the event is `want` with pkt_len = the length.
fn check_stages(events: &[Ev], stages: &[(usize, Ev)], name: &str) {
    assert_eq!(stages[0].0, 0);
    for (i, (from, want)) in stages.iter().enumerate() {
        let to = stages.get(i + 1).map_or(events.len(), |s| s.0);
        assert!(from < &to, "{name}: stages out of order");
        for (n, got) in events.iter().enumerate().take(to).skip(*from) {
            let want = Ev { pkt_len: n as u32, ..*want };
            assert_eq!(*got, want, "{name}: hand-written stage from {from}, cut at {n}");
        }
    }
}

fn w(ethertype: u16) -> Want {
    Want::new(0, ethertype)
}

// ---- whole frames ----------------------------------------------------------

#[test]
fn full_frames_every_field() {
    require_root();
    let h = XdpHarness::new("parse-full");
    let cases: Vec<(&str, Pkt, Ev)> = vec![
        ("udp4", v4(A4, B4, udp(5353, 53, b"hello")), Want::new(47, ETH_IP).v4(A4, B4, P_UDP).ports(5353, 53).get()),
        ("tcp4", v4(A4, B4, tcp(40000, 443)), Want::new(54, ETH_IP).v4(A4, B4, P_TCP).ports(40000, 443).get()),
        ("sctp4", v4(A4, B4, sctp(2905, 36412)), Want::new(54, ETH_IP).v4(A4, B4, P_SCTP).ports(2905, 36412).get()),
        ("udplite4", v4(A4, B4, udplite(1, 65535, b"")), Want::new(42, ETH_IP).v4(A4, B4, P_UDPLITE).ports(1, 65535).get()),
        ("icmp4 echo", v4(A4, B4, icmp(8, 0)), Want::new(50, ETH_IP).v4(A4, B4, P_ICMP).icmp(8, 0).get()),
        ("icmp4 unreachable", v4(A4, B4, icmp(3, 13)), Want::new(50, ETH_IP).v4(A4, B4, P_ICMP).icmp(3, 13).get()),
        ("gre4", v4(A4, B4, raw_l4(P_GRE, &[0, 0, 8, 0, 1, 2, 3, 4])), Want::new(42, ETH_IP).v4(A4, B4, P_GRE).get()),
        ("esp4", v4(A4, B4, raw_l4(P_ESP, &[0, 0, 1, 0, 0, 0, 0, 1])), Want::new(42, ETH_IP).v4(A4, B4, P_ESP).get()),
        ("udp6", v6(A6, B6, vec![], udp(546, 547, b"hello")), Want::new(67, ETH_IPV6).v6(A6, B6, P_UDP).ports(546, 547).get()),
        ("tcp6", v6(A6, B6, vec![], tcp(1, 22)), Want::new(74, ETH_IPV6).v6(A6, B6, P_TCP).ports(1, 22).get()),
        ("sctp6", v6(A6, B6, vec![], sctp(7, 8)), Want::new(74, ETH_IPV6).v6(A6, B6, P_SCTP).ports(7, 8).get()),
        ("icmp6 echo", v6(A6, B6, vec![], icmp6(128, 0)), Want::new(70, ETH_IPV6).v6(A6, B6, P_ICMPV6).icmp(128, 0).get()),
        ("icmp6 NS", v6(A6, B6, vec![], icmp6(135, 0)), Want::new(70, ETH_IPV6).v6(A6, B6, P_ICMPV6).icmp(135, 0).get()),
        // The parser reads ICMP type/code for protocol 1 whatever the family.
        ("icmp4 in ipv6", v6(A6, B6, vec![], icmp(8, 0)), Want::new(70, ETH_IPV6).v6(A6, B6, P_ICMP).icmp(8, 0).get()),
        ("no next header", v6(A6, B6, vec![], raw_l4(P_NONE6, &[])), Want::new(54, ETH_IPV6).v6(A6, B6, P_NONE6).get()),
        // A UDP header with nothing after it: not truncated.
        ("udp4 empty", v4(A4, B4, udp(9, 9, b"")), Want::new(42, ETH_IP).v4(A4, B4, P_UDP).ports(9, 9).get()),
        // ICMP: the parser needs the first 4 bytes only.
        ("icmp4 4 bytes", v4(A4, B4, raw_l4(P_ICMP, &[11, 1, 0, 0])), Want::new(38, ETH_IP).v4(A4, B4, P_ICMP).icmp(11, 1).get()),
    ];
    for (name, pkt, want) in &cases {
        assert_eq!(pkt.expect_full(), *want, "{name}: the model disagrees with the hand-written event");
        assert_run(&h, &pkt.bytes(), *want, name);
    }
    let s = h.stats();
    assert_eq!((s.seen, s.dropped, s.truncated, s.non_ip), (cases.len() as u64, 0, 0, 0));
}

#[test]
fn etherparse_frames_agree_with_raw_builder() {
    require_root();
    let h = XdpHarness::new("parse-etherparse");
    let cases = [
        ("udp4", frames::udp4(A4, B4, 1234, 53, b"hello"), v4(A4, B4, udp(1234, 53, b"hello"))),
        ("tcp4", frames::tcp4(A4, B4, 40000, 443), v4(A4, B4, tcp(40000, 443))),
        ("icmp4", frames::icmp4(A4, B4), v4(A4, B4, icmp(8, 0))),
        ("udp6", frames::udp6(A6, B6, 546, 547, b"x"), v6(A6, B6, vec![], udp(546, 547, b"x"))),
        ("icmp6", frames::icmp6(A6, B6), v6(A6, B6, vec![], icmp6(128, 0))),
    ];
    for (name, frame, pkt) in &cases {
        assert_eq!(frame.len(), pkt.len(), "{name}: same size");
        assert_run(&h, frame, pkt.expect_full(), name);
        let tagged = frames::with_vlan(frame, TPID_8021Q, 42);
        let want = Pkt { tags: vec![(TPID_8021Q, 42)], ..pkt.clone() }.expect_full();
        assert_eq!((want.vlan_depth, want.vlan_outer, want.pkt_len as usize), (1, 42, frame.len() + 4));
        assert_run(&h, &tagged, want, &format!("{name} tagged"));
    }
}

#[test]
fn pkt_len_is_the_frame_length() {
    require_root();
    let h = XdpHarness::new("parse-len");
    // Ethernet padding after the IP packet counts: pkt_len is the frame, not
    // the IP total length.
    let mut padded = v4(A4, B4, udp(1, 2, b"")).bytes();
    padded.resize(60, 0);
    assert_run(&h, &padded, Want::new(60, ETH_IP).v4(A4, B4, P_UDP).ports(1, 2).get(), "padded to 60");
    for size in [64usize, 576, 1500, 1514, 3000, 3520] {
        let pkt = v4(A4, B4, udp(7, 9, &vec![0xab; size - 42]));
        assert_eq!(pkt.len(), size);
        assert_run(&h, &pkt.bytes(), Want::new(size, ETH_IP).v4(A4, B4, P_UDP).ports(7, 9).get(), &format!("{size} bytes"));
    }
    let s = h.stats();
    assert_eq!(s.bytes_seen, 60 + 64 + 576 + 1500 + 1514 + 3000 + 3520);
}

#[test]
fn short_runner_matches_the_harness() {
    require_root();
    // The second program instance used for frames under 14 bytes must see
    // what the harness's sees: compare both at every length both can run,
    // dropped frames included.
    let h = XdpHarness::new("parse-short");
    let short = ShortRunner::new(&h);
    let id = h.firewall().add(&[Rule::parse("192.0.2.10/32", None, None, None).unwrap()]).unwrap()[0];
    let cases = [
        v4(A4, B4, udp(1, 2, b"long enough for the fast path")),
        v4(B4, A4, tcp(1, 2)).tag(TPID_8021AD, 1).tag(TPID_8021Q, 2),
        v6(A6, B6, vec![Ext::hop(0)], tcp(3, 4)),
        non_ip(ETH_ARP, &[0; 28]),
    ];
    for pkt in &cases {
        let f = pkt.bytes();
        for n in 14..=f.len() {
            let (v1, e1) = run(&h, &f[..n], "harness");
            let (v2, e2) = short.run(&f[..n], "short runner");
            assert_eq!((v1, e1), (v2, e2), "cut at {n}");
            let src_visible = e1.family == 4 && e1.src[..4] == A4;
            assert_eq!(e1, if src_visible { pkt.expect(n).dropped_by(id) } else { pkt.expect(n) }, "cut at {n}");
        }
    }
    for n in 0..14 {
        let (v, e) = short.run(&vec![0x08; n], "tiny");
        assert_eq!(v, XDP_PASS);
        assert_eq!(e, Want::new(n, 0).flags(TRUNC).get(), "{n} bytes: only TRUNCATED");
    }
}

// ---- truncation at every length --------------------------------------------

#[test]
fn truncated_udp4_every_length() {
    require_root();
    let h = XdpHarness::new("trunc-udp4");
    let any = AnyLen::new(&h);
    // Long enough (>= 54 bytes) for the dispatcher's fast path from 54 on.
    let pkt = v4(A4, B4, udp(5353, 53, b"payload, long enough"));
    let ev = sweep(&any, &pkt, "udp4");
    assert_eq!(ev.len(), 14 + 20 + 8 + 20 + 1);
    check_stages(
        &ev,
        &[
            (0, w(0).flags(TRUNC).get()),
            (14, w(ETH_IP).flags(TRUNC).get()),
            (34, w(ETH_IP).v4(A4, B4, P_UDP).flags(TRUNC).get()),
            (38, w(ETH_IP).v4(A4, B4, P_UDP).ports(5353, 53).flags(TRUNC).get()),
            (42, w(ETH_IP).v4(A4, B4, P_UDP).ports(5353, 53).get()),
        ],
        "udp4",
    );
}

#[test]
fn truncated_tcp4_every_length() {
    require_root();
    let h = XdpHarness::new("trunc-tcp4");
    let any = AnyLen::new(&h);
    let pkt = v4(A4, B4, tcp(40000, 443));
    let ev = sweep(&any, &pkt, "tcp4");
    check_stages(
        &ev,
        &[
            (0, w(0).flags(TRUNC).get()),
            (14, w(ETH_IP).flags(TRUNC).get()),
            (34, w(ETH_IP).v4(A4, B4, P_TCP).flags(TRUNC).get()),
            // Ports from 4 bytes on, but the 20-byte TCP header is still cut.
            (38, w(ETH_IP).v4(A4, B4, P_TCP).ports(40000, 443).flags(TRUNC).get()),
            (54, w(ETH_IP).v4(A4, B4, P_TCP).ports(40000, 443).get()),
        ],
        "tcp4",
    );
}

#[test]
fn truncated_icmp4_every_length() {
    require_root();
    let h = XdpHarness::new("trunc-icmp4");
    let any = AnyLen::new(&h);
    let pkt = v4(A4, B4, icmp_len(8, 0, 24));
    let ev = sweep(&any, &pkt, "icmp4");
    assert_eq!(ev.len(), 14 + 20 + 32 + 1);
    check_stages(
        &ev,
        &[
            (0, w(0).flags(TRUNC).get()),
            (14, w(ETH_IP).flags(TRUNC).get()),
            (34, w(ETH_IP).v4(A4, B4, P_ICMP).flags(TRUNC).get()),
            // type/code/checksum is all the parser needs from ICMP.
            (38, w(ETH_IP).v4(A4, B4, P_ICMP).icmp(8, 0).get()),
        ],
        "icmp4",
    );
}

#[test]
fn truncated_udp6_every_length() {
    require_root();
    let h = XdpHarness::new("trunc-udp6");
    let any = AnyLen::new(&h);
    let pkt = v6(A6, B6, vec![], udp(546, 547, b"dhcp"));
    let ev = sweep(&any, &pkt, "udp6");
    check_stages(
        &ev,
        &[
            (0, w(0).flags(TRUNC).get()),
            (14, w(ETH_IPV6).flags(TRUNC).get()),
            (54, w(ETH_IPV6).v6(A6, B6, P_UDP).flags(TRUNC).get()),
            (58, w(ETH_IPV6).v6(A6, B6, P_UDP).ports(546, 547).flags(TRUNC).get()),
            (62, w(ETH_IPV6).v6(A6, B6, P_UDP).ports(546, 547).get()),
        ],
        "udp6",
    );
}

#[test]
fn truncated_more_shapes_every_length() {
    require_root();
    // Model-checked sweeps of the other shapes: every header boundary of
    // tags, options, fragments and extension chains (and, for untagged IPv4
    // frames of 54 bytes and more, the dispatcher's fast path).
    let h = XdpHarness::new("trunc-more");
    let any = AnyLen::new(&h);
    for (name, pkt) in &header_shapes() {
        sweep(&any, pkt, name);
    }
}

// ---- IPv4 options ------------------------------------------------------------

/// `len` bytes of options: NOPs ending with EOL, which would read as ports
/// 0x0101/0x0101 if the parser ignored IHL.
fn nop_options(len: usize) -> Vec<u8> {
    let mut o = vec![1u8; len];
    if let Some(last) = o.last_mut() {
        *last = 0;
    }
    o
}

#[test]
fn ipv4_options_ihl_6_to_15() {
    require_root();
    let h = XdpHarness::new("parse-options");
    for ihl in 6..=15u8 {
        let opt_len = usize::from(ihl) * 4 - 20;
        let options = if ihl == 6 { vec![0x94, 0x04, 0, 0] } else { nop_options(opt_len) }; // router alert / NOPs
        for (l4, proto, l4_len) in [(udp(1111, 2222, b"data"), P_UDP, 12), (tcp(3333, 4444), P_TCP, 20)] {
            let (sport, dport) = (u16::from_be_bytes([l4.bytes[0], l4.bytes[1]]), u16::from_be_bytes([l4.bytes[2], l4.bytes[3]]));
            let pkt = v4(A4, B4, l4).ihl(ihl, &options);
            let len = 14 + 20 + opt_len + l4_len;
            let want = Want::new(len, ETH_IP).v4(A4, B4, proto).ports(sport, dport).flags(OPTS).get();
            assert_eq!(pkt.expect_full(), want);
            assert_run(&h, &pkt.bytes(), want, &format!("ihl {ihl} proto {proto}"));
            // Cut right after the options, and right after the ports.
            let hdr_end = 14 + usize::from(ihl) * 4;
            let f = pkt.bytes();
            assert_run(&h, &f[..hdr_end], Want::new(hdr_end, ETH_IP).v4(A4, B4, proto).flags(OPTS | TRUNC).get(), &format!("ihl {ihl}: no L4"));
            assert_run(
                &h,
                &f[..hdr_end - 1],
                Want::new(hdr_end - 1, ETH_IP).v4(A4, B4, proto).flags(OPTS | TRUNC).get(),
                &format!("ihl {ihl}: options cut"),
            );
            assert_run(
                &h,
                &f[..hdr_end + 4],
                Want::new(hdr_end + 4, ETH_IP).v4(A4, B4, proto).ports(sport, dport).flags(OPTS | TRUNC).get(),
                &format!("ihl {ihl}: ports only"),
            );
        }
    }
}

#[test]
fn ipv4_ihl_below_5_is_malformed() {
    require_root();
    let h = XdpHarness::new("parse-ihl-small");
    for ihl in 0..5u8 {
        // The 20 header bytes are there, then a UDP header: the parser must
        // keep the addresses (and protocol) but claim no ports.
        let pkt = v4(A4, B4, udp(1000, 53, b"x")).ihl(ihl, &[]);
        let want = Want::new(14 + 20 + 9, ETH_IP).v4(A4, B4, P_UDP).flags(TRUNC).get();
        assert_eq!(pkt.expect_full(), want);
        assert_run(&h, &pkt.bytes(), want, &format!("ihl {ihl}"));
    }
    assert_eq!(h.stats().truncated, 5);
}

#[test]
fn ipv4_ihl_beyond_the_frame() {
    require_root();
    let h = XdpHarness::new("parse-ihl-big");
    // IHL 15 claims 40 option bytes; only 8 are there, then a UDP header
    // that the parser must not take for the L4 header.
    let pkt = v4(A4, B4, udp(1000, 53, b"")).ihl(15, &[1; 8]);
    let want = Want::new(14 + 20 + 8 + 8, ETH_IP).v4(A4, B4, P_UDP).flags(OPTS | TRUNC).get();
    assert_eq!(pkt.expect_full(), want);
    assert_run(&h, &pkt.bytes(), want, "ihl 15, 8 option bytes");
    // IHL 6 on a frame that ends with the base header.
    let f = v4(A4, B4, udp(1, 2, b"")).ihl(6, &[0; 4]).bytes();
    assert_run(&h, &f[..34], Want::new(34, ETH_IP).v4(A4, B4, P_UDP).flags(OPTS | TRUNC).get(), "ihl 6, 20 bytes");
    // IHL 5 but 4 option-looking bytes follow: they are the L4 header.
    let pkt = v4(A4, B4, udp(7, 8, b"")).ihl(5, &[0x12, 0x34, 0x56, 0x78]);
    assert_run(&h, &pkt.bytes(), Want::new(46, ETH_IP).v4(A4, B4, P_UDP).ports(0x1234, 0x5678).get(), "ihl 5 + junk");
}

#[test]
fn ipv4_version_nibble_is_not_checked() {
    require_root();
    // The ethertype alone decides: an IPv4 header whose version field says 6
    // is still read as IPv4 (the kernel's IP stack would drop it).
    let h = XdpHarness::new("parse-version");
    let pkt = v4(A4, B4, udp(1, 53, b""));
    let mut f = pkt.bytes();
    f[14] = 0x65;
    frames::fix_ipv4_checksum(&mut f);
    assert_run(&h, &f, pkt.expect_full(), "version 6 under ethertype 0x0800");
}

// ---- IPv4 fragments ------------------------------------------------------------

#[test]
fn ipv4_fragments() {
    require_root();
    let h = XdpHarness::new("parse-frag4");
    // Bytes at the start of a later fragment that look like a UDP header.
    let fake = raw_l4(P_UDP, &[0x04, 0xd2, 0x00, 0x35, 0, 16, 0, 0]);
    let base = || v4(A4, B4, udp(1234, 53, b"first fragment"));
    let later = |field: u16| v4(A4, B4, fake.clone()).frag_field(field);
    let full = |n| Want::new(n, ETH_IP).v4(A4, B4, P_UDP);
    let cases: Vec<(&str, Pkt, Ev)> = vec![
        ("not a fragment (DF)", base().frag_field(0x4000), full(56).ports(1234, 53).get()),
        ("not a fragment (no flags)", base().frag_field(0), full(56).ports(1234, 53).get()),
        ("reserved bit only", base().frag_field(0x8000), full(56).ports(1234, 53).get()),
        ("first fragment (MF, offset 0)", base().frag(0, true), full(56).ports(1234, 53).flags(FRAG).get()),
        ("first fragment with DF|MF", base().frag_field(0x6000), full(56).ports(1234, 53).flags(FRAG).get()),
        ("middle fragment", later(0x2000 | 185), full(42).flags(FRAG | LATER).get()),
        ("last fragment (offset 1, no MF)", later(1), full(42).flags(FRAG | LATER).get()),
        ("largest offset", later(0x1fff), full(42).flags(FRAG | LATER).get()),
        ("later fragment with options", later(0x2000 | 3).ihl(8, &[1; 12]), full(54).flags(FRAG | LATER | OPTS).get()),
        // A later fragment needs nothing past the base header: not truncated
        // even when its options are cut.
        ("later fragment, options cut", later(7).ihl(15, &[1; 4]), full(46).flags(FRAG | LATER | OPTS).get()),
        ("first fragment tcp, ports only", v4(A4, B4, raw_l4(P_TCP, &[0, 80, 1, 187])).frag(0, true), {
            Want::new(38, ETH_IP).v4(A4, B4, P_TCP).ports(80, 443).flags(FRAG | TRUNC).get()
        }),
        ("later fragment icmp", v4(A4, B4, raw_l4(P_ICMP, &[8, 0, 0, 0])).frag(10, false), {
            Want::new(38, ETH_IP).v4(A4, B4, P_ICMP).flags(FRAG | LATER).get()
        }),
    ];
    for (name, pkt, want) in &cases {
        assert_eq!(pkt.expect_full(), *want, "{name}: model");
        assert_run(&h, &pkt.bytes(), *want, name);
    }
    // A later fragment cut right after the base header is complete.
    let f = later(0x2000 | 185).bytes();
    assert_run(&h, &f[..34], full(34).flags(FRAG | LATER).get(), "later fragment, 20 bytes");
}

// ---- VLAN ----------------------------------------------------------------------

#[test]
fn vlan_tags() {
    require_root();
    let h = XdpHarness::new("parse-vlan");
    let u4 = || v4(A4, B4, udp(1, 53, b""));
    let cases: Vec<(&str, Pkt, Ev)> = vec![
        (
            "802.1Q, PCP 5",
            u4().tag(TPID_8021Q, 0xa000 | 100),
            Want::new(46, ETH_IP).vlan(1, 100, 0).v4(A4, B4, P_UDP).ports(1, 53).get(),
        ),
        (
            "802.1Q, DEI and VID 4095",
            u4().tag(TPID_8021Q, 0x1fff),
            Want::new(46, ETH_IP).vlan(1, 4095, 0).v4(A4, B4, P_UDP).ports(1, 53).get(),
        ),
        (
            "priority tag (VID 0)",
            u4().tag(TPID_8021Q, 0x6000),
            Want::new(46, ETH_IP).vlan(1, 0, 0).v4(A4, B4, P_UDP).ports(1, 53).get(),
        ),
        (
            "802.1ad tcp6",
            v6(A6, B6, vec![], tcp(2, 22)).tag(TPID_8021AD, 4094),
            Want::new(78, ETH_IPV6).vlan(1, 4094, 0).v6(A6, B6, P_TCP).ports(2, 22).get(),
        ),
        (
            "QinQ 802.1ad + 802.1Q",
            u4().tag(TPID_8021AD, 10).tag(TPID_8021Q, 0xe000 | 20),
            Want::new(50, ETH_IP).vlan(2, 10, 20).v4(A4, B4, P_UDP).ports(1, 53).get(),
        ),
        (
            "double 802.1Q",
            v6(A6, B6, vec![Ext::hop(0)], icmp6(1, 4)).tag(TPID_8021Q, 300).tag(TPID_8021Q, 301),
            Want::new(86, ETH_IPV6).vlan(2, 300, 301).v6(A6, B6, P_ICMPV6).icmp(1, 4).flags(EXT).get(),
        ),
        (
            "802.1Q outer, 802.1ad inner",
            u4().tag(TPID_8021Q, 7).tag(TPID_8021AD, 8),
            Want::new(50, ETH_IP).vlan(2, 7, 8).v4(A4, B4, P_UDP).ports(1, 53).get(),
        ),
        (
            // Only two tags are walked: the third TPID is the ethertype.
            "three tags",
            u4().tag(TPID_8021AD, 1).tag(TPID_8021Q, 2).tag(TPID_8021Q, 3),
            Want::new(54, TPID_8021Q).vlan(2, 1, 2).get(),
        ),
        ("tagged ARP", non_ip(ETH_ARP, &[0; 28]).tag(TPID_8021Q, 99), Want::new(46, ETH_ARP).vlan(1, 99, 0).get()),
    ];
    for (name, pkt, want) in &cases {
        assert_eq!(pkt.expect_full(), *want, "{name}: model");
        assert_run(&h, &pkt.bytes(), *want, name);
    }
}

#[test]
fn vlan_truncated_inside_tags() {
    require_root();
    let h = XdpHarness::new("parse-vlan-trunc");
    let any = AnyLen::new(&h);
    let pkt = v4(A4, B4, udp(1, 53, b"")).tag(TPID_8021AD, 10).tag(TPID_8021Q, 20);
    let ev = sweep(&any, &pkt, "qinq udp4");
    let ip = |e: Want| e.vlan(2, 10, 20);
    check_stages(
        &ev,
        &[
            (0, w(0).flags(TRUNC).get()),
            // The outer TPID is visible, its TCI is not.
            (14, w(TPID_8021AD).flags(TRUNC).get()),
            (18, w(TPID_8021Q).vlan(1, 10, 0).flags(TRUNC).get()),
            (22, ip(w(ETH_IP)).flags(TRUNC).get()),
            (42, ip(w(ETH_IP)).v4(A4, B4, P_UDP).flags(TRUNC).get()),
            (46, ip(w(ETH_IP)).v4(A4, B4, P_UDP).ports(1, 53).flags(TRUNC).get()),
            (50, ip(w(ETH_IP)).v4(A4, B4, P_UDP).ports(1, 53).get()),
        ],
        "qinq udp4",
    );
    // Three tags: the third is never read, so cutting inside it is not
    // truncation.
    let pkt = v4(A4, B4, udp(1, 53, b"")).tag(TPID_8021AD, 1).tag(TPID_8021Q, 2).tag(TPID_8021Q, 3);
    let ev = sweep(&any, &pkt, "three tags");
    check_stages(
        &ev,
        &[
            (0, w(0).flags(TRUNC).get()),
            (14, w(TPID_8021AD).flags(TRUNC).get()),
            (18, w(TPID_8021Q).vlan(1, 1, 0).flags(TRUNC).get()),
            (22, w(TPID_8021Q).vlan(2, 1, 2).get()),
        ],
        "three tags",
    );
}

// ---- IPv6 extension headers -----------------------------------------------------------

#[test]
fn ipv6_extension_headers() {
    require_root();
    let h = XdpHarness::new("parse-ext");
    let full = |n: usize, proto| Want::new(n, ETH_IPV6).v6(A6, B6, proto).flags(EXT);
    let eight = || vec![Ext::hop(0), Ext::dest(0), Ext::routing(1), Ext::dest(2), Ext::frag(0, true), Ext::ah(0), Ext::dest(0), Ext::ah(3)];
    let eight_len: usize = eight().iter().map(|e| e.bytes.len()).sum();
    assert_eq!(eight_len, 8 + 8 + 24 + 24 + 8 + 12 + 8 + 24);
    let cases: Vec<(&str, Vec<Ext>, L4, Ev)> = vec![
        ("hop-by-hop", vec![Ext::hop(0)], udp(1, 53, b""), full(70, P_UDP).ports(1, 53).get()),
        ("hop-by-hop, 2048 bytes", vec![Ext::hop(255)], udp(1, 53, b""), full(2110, P_UDP).ports(1, 53).get()),
        ("routing (SRH, 2 segments)", vec![Ext::routing(2)], tcp(2, 80), full(114, P_TCP).ports(2, 80).get()),
        ("destination options", vec![Ext::dest(1)], udp(3, 4, b"ab"), full(80, P_UDP).ports(3, 4).get()),
        ("first fragment", vec![Ext::frag(0, true)], udp(5, 6, b""), full(70, P_UDP).ports(5, 6).flags(FRAG).get()),
        ("atomic fragment", vec![Ext::frag(0, false)], tcp(7, 8), full(82, P_TCP).ports(7, 8).flags(FRAG).get()),
        (
            "later fragment",
            vec![Ext::frag(100, true)],
            raw_l4(P_UDP, &[0, 1, 0, 53]),
            full(66, P_UDP).flags(FRAG | LATER).get(),
        ),
        (
            "later fragment before an extension header",
            vec![Ext::frag(1, false), Ext::dest(0)],
            udp(9, 9, b""),
            full(78, X_DEST).flags(FRAG | LATER).get(),
        ),
        ("AH, 24 bytes", vec![Ext::ah(3)], tcp(10, 11), full(98, P_TCP).ports(10, 11).get()),
        ("AH, 12 bytes", vec![Ext::ah(0)], udp(12, 13, b""), full(74, P_UDP).ports(12, 13).get()),
        ("AH then ESP", vec![Ext::ah(3)], raw_l4(P_ESP, &[0, 0, 0, 1, 0, 0, 0, 1]), full(86, P_ESP).get()),
        ("hop-by-hop then ICMPv6", vec![Ext::hop(0)], icmp6(143, 0), full(78, P_ICMPV6).icmp(143, 0).get()),
        ("dest then no next header", vec![Ext::dest(0)], raw_l4(P_NONE6, &[]), full(62, P_NONE6).get()),
        (
            "six chained",
            vec![Ext::hop(0), Ext::routing(1), Ext::dest(0), Ext::frag(0, true), Ext::ah(3), Ext::dest(1)],
            udp(14, 15, b""),
            full(54 + 8 + 24 + 8 + 8 + 24 + 16 + 8, P_UDP).ports(14, 15).flags(FRAG).get(),
        ),
        ("eight chained, udp", eight(), udp(16, 17, b""), full(54 + eight_len + 8, P_UDP).ports(16, 17).flags(FRAG).get()),
        ("eight chained, tcp", eight(), tcp(18, 19), full(54 + eight_len + 20, P_TCP).ports(18, 19).flags(FRAG).get()),
        (
            "eight chained, icmpv6",
            eight(),
            icmp6(129, 0),
            full(54 + eight_len + 16, P_ICMPV6).icmp(129, 0).flags(FRAG).get(),
        ),
        // Past NR_IPV6_MAX_EXT the walk stops: the ninth header's type is
        // reported as l4_proto, no ports, and the frame is flagged truncated
        // (its transport header was never reached).
        ("nine chained", vec![Ext::dest(0); 9], udp(20, 53, b""), full(54 + 72 + 8, X_DEST).flags(TRUNC).get()),
        (
            "eight, then a fragment header",
            [eight(), vec![Ext::frag(0, false)]].concat(),
            udp(21, 53, b""),
            full(54 + eight_len + 8 + 8, X_FRAG).flags(FRAG | TRUNC).get(),
        ),
    ];
    for (name, exts, l4, want) in cases {
        let pkt = v6(A6, B6, exts, l4);
        assert_eq!(pkt.expect_full(), want, "{name}: model");
        assert_run(&h, &pkt.bytes(), want, name);
    }
}

#[test]
fn ipv6_truncated_inside_extension_headers() {
    require_root();
    let h = XdpHarness::new("parse-ext-trunc");
    let any = AnyLen::new(&h);
    let pkt = v6(A6, B6, vec![Ext::hop(1), Ext::frag(0, true)], udp(546, 547, b""));
    let ev = sweep(&any, &pkt, "hop+frag+udp");
    let ip = |p| w(ETH_IPV6).v6(A6, B6, p);
    check_stages(
        &ev,
        &[
            (0, w(0).flags(TRUNC).get()),
            (14, w(ETH_IPV6).flags(TRUNC).get()),
            // Inside the hop-by-hop header's first 8 bytes: its type is the
            // protocol reached.
            (54, ip(X_HOP).flags(EXT | TRUNC).get()),
            // Its first 8 bytes are there but its 16 bytes are not: the next
            // header (fragment) is where the frame ends.
            (62, ip(X_FRAG).flags(EXT | TRUNC).get()),
            (78, ip(P_UDP).flags(EXT | FRAG | TRUNC).get()),
            (82, ip(P_UDP).ports(546, 547).flags(EXT | FRAG | TRUNC).get()),
            (86, ip(P_UDP).ports(546, 547).flags(EXT | FRAG).get()),
        ],
        "hop+frag+udp",
    );
    // Nine headers: past the limit the walk stops and says so (truncated),
    // whether or not the ninth is cut.
    let pkt = v6(A6, B6, vec![Ext::dest(0); 9], udp(1, 2, b""));
    let f = pkt.bytes();
    let n = 54 + 8 * 8 + 3;
    assert_run(&h, &f[..n], Want::new(n, ETH_IPV6).v6(A6, B6, X_DEST).flags(EXT | TRUNC).get(), "nine headers, ninth cut");
}

/// Extension headers whose lengths add up past NR_PARSE_MAX_OFF (4096) on a
/// frame that ends long before: the parser masks the offset (`off &= 4095`)
/// instead of stopping, so it wraps back into the IPv6 header and reads
/// whatever is there as the next header.
#[test]
fn ipv6_extension_offset_past_4096_does_not_wrap() {
    require_root();
    let h = XdpHarness::new("parse-ext-wrap");
    // dst bytes 8..: 0x11 0x00, read as "next header UDP, length 8" if the
    // parser wraps to frame offset 46.
    let dst = [0x20, 0x01, 0x0d, 0xb8, 0, 0xbb, 0, 0, 0x11, 0, 0, 0, 0, 0, 0, 0x14];
    // hop-by-hop 2048 bytes at 54, destination options 2040 bytes at 2102:
    // the third header would start at 4142, far past the end of the frame.
    let pkt = v6(A6, dst, vec![Ext::hop(255), Ext::dest(254), Ext::dest(0)], udp(1, 53, b""));
    let frame = pkt.bytes();
    let n = 3000;
    let want = Want::new(n, ETH_IPV6).v6(A6, dst, X_DEST).flags(EXT | TRUNC).get();
    assert_eq!(pkt.expect(n), want);
    assert_run(&h, &frame[..n], want, "ext headers ending at 4142 in a 3000-byte frame");

    // The eighth header (the parser's last) ends at 4198: what follows is
    // past any parsable frame, so the ninth header's type comes with TRUNCATED.
    let exts = [vec![Ext::hop(255)], vec![Ext::dest(0); 6], vec![Ext::dest(255), Ext::routing(0)]].concat();
    let pkt = v6(A6, B6, exts, udp(1, 53, b""));
    let n = 2200;
    let want = Want::new(n, ETH_IPV6).v6(A6, B6, X_ROUTING).flags(EXT | TRUNC).get();
    assert_eq!(pkt.expect(n), want);
    assert_run(&h, &pkt.bytes()[..n], want, "eighth header ending at 4198 in a 2200-byte frame");
}

// ---- non-IP ------------------------------------------------------------------------

#[test]
fn non_ip_frames_pass_with_catch_all_rules() {
    require_root();
    let h = XdpHarness::new("parse-nonip");
    let ids = h
        .firewall()
        .add(&[Rule::parse("0.0.0.0/0", None, None, None).unwrap(), Rule::parse("::/0", None, None, None).unwrap()])
        .unwrap();
    let arp = {
        let mut p = vec![0, 1, 8, 0, 6, 4, 0, 1];
        p.extend_from_slice(&frames::SRC_MAC);
        p.extend_from_slice(&A4);
        p.extend_from_slice(&[0; 6]);
        p.extend_from_slice(&B4);
        p
    };
    let lldp = [0x02, 0x07, 0x04, 2, 0, 0, 0, 0, 1, 0x04, 0x02, 0x07, 0x31, 0x06, 0x02, 0, 120, 0, 0];
    let cases: Vec<(&str, Pkt, Ev)> = vec![
        ("ARP", non_ip(ETH_ARP, &arp), Want::new(42, ETH_ARP).get()),
        ("LLDP", non_ip(ETH_LLDP, &lldp), Want::new(33, ETH_LLDP).get()),
        ("unknown ethertype", non_ip(0x88b5, b"local experimental"), Want::new(32, 0x88b5).get()),
        ("802.3 length + LLC", non_ip(0x0026, &[0x42, 0x42, 0x03, 0, 0]), Want::new(19, 0x0026).get()),
        // The IP addresses are right there, but the ethertype says ARP.
        ("IPv4 bytes under the ARP ethertype", Pkt { ethertype: ETH_ARP, ..v4(A4, B4, udp(1, 2, b"")) }, Want::new(42, ETH_ARP).get()),
        ("tagged LLDP", non_ip(ETH_LLDP, &lldp).tag(TPID_8021Q, 3), Want::new(37, ETH_LLDP).vlan(1, 3, 0).get()),
        ("ethernet header only", non_ip(ETH_ARP, &[]), Want::new(14, ETH_ARP).get()),
    ];
    for (name, pkt, want) in &cases {
        assert_eq!(pkt.expect_full(), *want, "{name}: model");
        assert_run(&h, &pkt.bytes(), *want, name);
    }
    // The catch-alls are live: IP frames are dropped.
    assert_run(&h, &v4(A4, B4, udp(1, 2, b"")).bytes(), v4(A4, B4, udp(1, 2, b"")).expect_full().dropped_by(ids[0]), "ipv4");
    let u6 = v6(A6, B6, vec![], udp(1, 2, b""));
    assert_run(&h, &u6.bytes(), u6.expect_full().dropped_by(ids[1]), "ipv6");

    let s = h.stats();
    let n = cases.len() as u64;
    assert_eq!((s.seen, s.non_ip, s.dropped, s.truncated), (n + 2, n, 2, 0));
    let hits: Vec<(u64, u64)> = h.firewall().list().unwrap().iter().map(|r| (r.packets, r.bytes)).collect();
    assert_eq!(hits, vec![(1, 42), (1, 62)]);
}
