//! The TC programs (tc-ingress, tc-egress) and the socket filter through
//! BPF_PROG_TEST_RUN, with the malformed-frame cases of xdp_parse.rs: every
//! frame, cut at every length the kernel accepts for an skb (from ETH_HLEN on;
//! untagged IPv4/IPv6 from the end of the IP header), must give exactly the event the ABI model (`Pkt::expect`) predicts —
//! the same as the XDP dispatcher's — and the per-hook counters must move by
//! exactly what the events say. Then the direction semantics of the firewall
//! at TC: "out" rules (destination) at egress, "in" rules (source) at ingress.

mod common;

use common::*;
use netray_core::Hook;
use netray_ebpf::abi::{nr_hook, nr_packet_event};
use netray_firewall::Rule;
use netray_tests::{frames, require_root, TcHarness, TC_ACT_SHOT, TC_ACT_UNSPEC};

const HOOKS: [Hook; 3] = [Hook::TcIngress, Hook::TcEgress, Hook::Socket];
const ETH_HLEN: usize = 14;

fn hook_code(h: Hook) -> u32 {
    match h {
        Hook::TcIngress => nr_hook::NR_HOOK_TC_INGRESS.0,
        Hook::TcEgress => nr_hook::NR_HOOK_TC_EGRESS.0,
        Hook::Socket => nr_hook::NR_HOOK_SOCKET.0,
        Hook::Xdp => nr_hook::NR_HOOK_XDP.0,
    }
}

/// The packet type eth_type_trans gives a frame received on the loopback
/// device (address 00:00:00:00:00:00), which is where the test run puts it.
fn expected_pkt_type(frame: &[u8]) -> u8 {
    let dst = &frame[..6];
    if dst[0] & 1 != 0 {
        if dst.iter().all(|&b| b == 0xff) { 1 } else { 2 }
    } else if dst.iter().all(|&b| b == 0) {
        0
    } else {
        3
    }
}

/// Runs one frame through one hook; checks the fields that do not depend on
/// the frame and the verdict; returns the event as the XDP model sees it
/// (at the socket hook the skb starts after the Ethernet header, so its
/// length is 14 less: that is checked, then put back for the comparison).
fn run(h: &TcHarness, hook: Hook, frame: &[u8], ctx: &str) -> (u32, Ev) {
    check(h.run(hook, frame), hook, frame, ctx)
}

fn check(r: netray_tests::RunResult, hook: Hook, frame: &[u8], ctx: &str) -> (u32, Ev) {
    let e: nr_packet_event = r.event.unwrap_or_else(|| panic!("{ctx}: no monitor event"));
    assert_ne!(e.ts_ns, 0, "{ctx}: ts_ns");
    assert_eq!(u32::from(e.hook), hook_code(hook), "{ctx}: hook");
    assert_eq!(e.ifindex, TEST_RUN_IFINDEX, "{ctx}: ifindex");
    assert_eq!(e._pad, [0; 2], "{ctx}: padding");
    let mut ev = Ev::of(&e);
    match hook {
        Hook::Socket => {
            assert_eq!(r.verdict, 0, "{ctx}: a socket filter never accepts");
            assert_eq!(e.verdict, 0, "{ctx}: event verdict");
            let t = expected_pkt_type(frame);
            assert_eq!(e.pkt_type, t, "{ctx}: pkt_type");
            assert_eq!(e.direction, u8::from(t == 4), "{ctx}: direction");
            assert_eq!(e.pkt_len as usize, frame.len() - ETH_HLEN, "{ctx}: socket pkt_len");
            ev.pkt_len = frame.len() as u32;
        }
        _ => {
            assert_eq!(e.pkt_type, 0, "{ctx}: pkt_type");
            assert_eq!(e.direction, u8::from(hook == Hook::TcEgress), "{ctx}: direction");
            let want = if e.verdict == 0 { TC_ACT_UNSPEC } else { TC_ACT_SHOT };
            assert_eq!(r.verdict, want, "{ctx}: verdict vs event verdict {}", e.verdict);
        }
    }
    (r.verdict, ev)
}

/// The shortest frame BPF_PROG_TEST_RUN turns into an skb: with an
/// untagged IPv4/IPv6 ethertype it wants the whole IP header.
fn kernel_min_len(frame: &[u8]) -> usize {
    match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 => ETH_HLEN + 20,
        0x86dd => ETH_HLEN + 40,
        _ => ETH_HLEN,
    }
}

/// Every length from ETH_HLEN to the whole frame, at every hook, against the
/// model; and the hook's counters.
fn sweep(h: &TcHarness, pkt: &Pkt, name: &str) {
    let frame = pkt.bytes();
    for hook in HOOKS {
        let before = h.stats(hook);
        let mut evs = Vec::new();
        for n in ETH_HLEN.min(frame.len())..=frame.len() {
            let ctx = format!("{} {name} cut at {n}/{}", hook.name(), frame.len());
            let r = match h.try_run(hook, &frame[..n]) {
                Ok(r) => r,
                // The kernel builds no skb claiming IPv4/IPv6 without the IP
                // header: those lengths cannot be tested here (XDP's are).
                Err(e) if n < kernel_min_len(&frame) => {
                    assert!(e.contains("Invalid argument"), "{ctx}: {e}");
                    continue;
                }
                Err(e) => panic!("{ctx}: {e}"),
            };
            let (_, got) = check(r, hook, &frame[..n], &ctx);
            assert_eq!(got, pkt.expect(n), "{ctx}");
            evs.push(got);
        }
        let after = h.stats(hook);
        let runs = evs.len() as u64;
        assert_eq!(after.seen - before.seen, runs, "{name} {}: seen", hook.name());
        assert_eq!(after.events_sent - before.events_sent, runs, "{name} {}: events_sent", hook.name());
        assert_eq!(after.dropped - before.dropped, 0, "{name} {}: dropped", hook.name());
        let truncated = evs.iter().filter(|e| e.flags & TRUNC != 0).count() as u64;
        assert_eq!(after.truncated - before.truncated, truncated, "{name} {}: truncated", hook.name());
        let non_ip = evs.iter().filter(|e| e.family == 0).count() as u64;
        assert_eq!(after.non_ip - before.non_ip, non_ip, "{name} {}: non_ip", hook.name());
    }
}

#[test]
fn every_shape_at_every_length_matches_the_model() {
    require_root();
    let h = TcHarness::new("tc-parse");
    let mut cases: Vec<(&str, Pkt)> = header_shapes();
    cases.extend([
        ("udp4", v4(A4, B4, udp(5353, 53, b"payload, long enough"))),
        ("tcp4", v4(A4, B4, tcp(40000, 443))),
        ("icmp4", v4(A4, B4, icmp_len(8, 0, 24))),
        ("udp6", v6(A6, B6, vec![], udp(546, 547, b"dhcp"))),
        ("ihl 15, 8 option bytes", v4(A4, B4, udp(1000, 53, b"")).ihl(15, &[1; 8])),
        ("later fragment, options cut", v4(A4, B4, raw_l4(P_UDP, &[0, 1, 0, 2])).ihl(15, &[1; 4]).frag_field(7)),
        ("tagged lldp", non_ip(ETH_LLDP, &[2, 7, 4, 2, 0, 0, 0, 0, 1]).tag(TPID_8021Q, 3)),
        ("802.3 length + LLC", non_ip(0x0026, &[0x42, 0x42, 0x03, 0, 0])),
        ("a byte after the Ethernet header", non_ip(ETH_ARP, &[0])),
    ]);
    for (name, pkt) in &cases {
        sweep(&h, pkt, name);
    }
    // IHL below 5: the addresses and protocol, nothing more, truncated.
    for ihl in 0..5u8 {
        let pkt = v4(A4, B4, udp(1000, 53, b"x")).ihl(ihl, &[]);
        let want = Want::new(14 + 20 + 9, ETH_IP).v4(A4, B4, P_UDP).flags(TRUNC).get();
        assert_eq!(pkt.expect_full(), want);
        for hook in HOOKS {
            assert_eq!(run(&h, hook, &pkt.bytes(), "ihl < 5").1, want, "{} ihl {ihl}", hook.name());
        }
    }
}

#[test]
fn ipv6_extension_offsets_past_4096_do_not_wrap() {
    require_root();
    let h = TcHarness::new("tc-ext-wrap");
    let dst = [0x20, 0x01, 0x0d, 0xb8, 0, 0xbb, 0, 0, 0x11, 0, 0, 0, 0, 0, 0, 0x14];
    let pkt = v6(A6, dst, vec![Ext::hop(255), Ext::dest(254), Ext::dest(0)], udp(1, 53, b""));
    let n = 3000;
    let want = Want::new(n, ETH_IPV6).v6(A6, dst, X_DEST).flags(EXT | TRUNC).get();
    assert_eq!(pkt.expect(n), want);
    for hook in HOOKS {
        assert_eq!(run(&h, hook, &pkt.bytes()[..n], "3000 bytes").1, want, "{}", hook.name());
    }
    let exts = [vec![Ext::hop(255)], vec![Ext::dest(0); 6], vec![Ext::dest(255), Ext::routing(0)]].concat();
    let pkt = v6(A6, B6, exts, udp(1, 53, b""));
    let n = 2200;
    let want = Want::new(n, ETH_IPV6).v6(A6, B6, X_ROUTING).flags(EXT | TRUNC).get();
    assert_eq!(pkt.expect(n), want);
    for hook in HOOKS {
        assert_eq!(run(&h, hook, &pkt.bytes()[..n], "2200 bytes").1, want, "{}", hook.name());
    }
}

#[test]
fn firewall_directions_at_tc() {
    require_root();
    let h = TcHarness::new("tc-fw");
    let fw = h.firewall();
    // A4 -> B4 frames. "out" B4: sent packets to B4 are dropped at egress.
    let out_b4 = Rule::parse(&format!("{}", std::net::Ipv4Addr::from(B4)), None, None, Some("out")).unwrap();
    let ids = fw.add(&[out_b4]).unwrap();
    let u4 = v4(A4, B4, udp(1, 2, b""));
    let f = u4.bytes();
    let (v, ev) = run(&h, Hook::TcEgress, &f, "egress, out rule on dst");
    assert_eq!((v, ev), (TC_ACT_SHOT, u4.expect_full().dropped_by(ids[0])));
    let (v, ev) = run(&h, Hook::TcIngress, &f, "ingress, out rule on dst");
    assert_eq!((v, ev), (TC_ACT_UNSPEC, u4.expect_full()), "an out rule never drops received packets");
    // The reverse frame (B4 -> A4) leaves untouched: out rules match the destination.
    let back = v4(B4, A4, udp(2, 1, b""));
    assert_eq!(run(&h, Hook::TcEgress, &back.bytes(), "egress, B4 as source").0, TC_ACT_UNSPEC);

    // "in" A4 (default direction): dropped at ingress only.
    let in_a4 = Rule::parse(&format!("{}", std::net::Ipv4Addr::from(A4)), None, None, None).unwrap();
    let in_ids = fw.add(&[in_a4]).unwrap();
    let (v, ev) = run(&h, Hook::TcIngress, &f, "ingress, in rule on src");
    assert_eq!((v, ev), (TC_ACT_SHOT, u4.expect_full().dropped_by(in_ids[0])));
    // Egress: the in rule does not apply, the out rule still does.
    assert_eq!(run(&h, Hook::TcEgress, &f, "egress again").1, u4.expect_full().dropped_by(ids[0]));

    // IPv6 out rule with a port.
    let out6 = Rule::parse("2001:db8:bb::/64", Some("udp"), Some(53), Some("out")).unwrap();
    let ids6 = fw.add(&[out6]).unwrap();
    let dns = v6(A6, B6, vec![], udp(4000, 53, b"q"));
    assert_eq!(run(&h, Hook::TcEgress, &dns.bytes(), "v6 dns out").1, dns.expect_full().dropped_by(ids6[0]));
    let other = v6(A6, B6, vec![], udp(4000, 54, b"q"));
    assert_eq!(run(&h, Hook::TcEgress, &other.bytes(), "v6 other port").0, TC_ACT_UNSPEC);

    // The socket filter reports, never filters.
    assert_eq!(run(&h, Hook::Socket, &f, "socket").1.verdict, 0);

    let s = h.stats(Hook::TcEgress);
    assert_eq!(s.dropped, 3);
    let hits: Vec<u64> = fw.list().unwrap().iter().map(|r| r.packets).collect();
    assert_eq!(hits, vec![2, 1, 1], "rule counters: out B4 twice, in A4 once, v6 once");

    // Features off: the programs only count, and pass.
    h.set_features(&[], &[], &[]);
    let r = h.run(Hook::TcEgress, &f);
    assert_eq!((r.verdict, r.event.is_none()), (TC_ACT_UNSPEC, true));
    let r = h.run(Hook::Socket, &f);
    assert_eq!((r.verdict, r.event.is_none()), (0, true));
    let _ = frames::SRC_MAC;
}
