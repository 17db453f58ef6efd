//! Rate limits (limit.h) through BPF_PROG_TEST_RUN on every path a verdict
//! is taken: the XDP dispatcher's short path (firewall alone) and general
//! path (with the monitor), TC ingress; at TC egress limits never apply.
//!
//! Each path gets a whole-prefix limit, a per-source limit with a ban, a SYN
//! limit, an IPv6 limit and a deny rule inside a limited prefix; every
//! verdict, the monitor event's verdict and id, the limit's counters and the
//! interface's drop counters are checked exactly. Buckets refill at 1/h or
//! 1/s, so the emulated kernels' slowness cannot let an extra packet in.

use std::{thread::sleep, time::Duration};

mod common;

use common::verdict_paths::{Harness, Path};
use etherparse::PacketBuilder;
use netray_ebpf::{abi::nr_verdict, decided::Decided};
use netray_core::{dispatcher::FlowCapacity, Feature};
use netray_firewall::{FwCapacity, Limit, LimitArgs, LimitStatus, Limits, Rule};
use netray_tests::{
    frames::{icmp6, tcp4, udp4, udp6, DST_MAC, SRC_MAC},
    require_root, XdpHarness, XDP_DROP,
};

const HOST: [u8; 4] = [10, 0, 0, 1];
const V6_SRC: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
const V6_HOST: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const BAN: Duration = Duration::from_secs(2);

/// What one frame met: 'P' passed, 'D' dropped, with the event's verdict and what decided.
fn verdict(h: &Harness, path: Path, frame: &[u8]) -> (char, Option<(nr_verdict, Decided)>) {
    let (dropped, event) = h.outcome(path, frame);
    (if dropped { 'D' } else { 'P' }, event)
}

/// The verdicts of a run of frames, as a string ("PPPDD").
fn verdicts(h: &Harness, path: Path, frames: &[Vec<u8>]) -> String {
    frames.iter().map(|f| verdict(h, path, f).0).collect()
}

fn udp_from(src: [u8; 4]) -> Vec<u8> {
    udp4(src, HOST, 5353, 53, &[7; 12])
}

/// TCP with the given flags (SYN, SYN-ACK, ACK), 20 bytes of header.
fn tcp_from(src: [u8; 4], syn: bool, ack: bool) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(SRC_MAC, DST_MAC).ipv4(src, HOST, 64).tcp(40000, 80, 1, 1024);
    if syn {
        b = b.syn();
    }
    if ack {
        b = b.ack(1);
    }
    let mut v = Vec::new();
    b.write(&mut v, &[]).unwrap();
    v
}

fn limit(cidr: &str, rate: &str, f: impl FnOnce(&mut LimitArgs)) -> Limit {
    let mut a = LimitArgs { cidr, rate, ..Default::default() };
    f(&mut a);
    Limit::parse(&a).unwrap()
}

fn status(l: &Limits, id: u32) -> LimitStatus {
    l.list().unwrap().into_iter().find(|s| s.id == id).expect("the limit is listed")
}

fn check_path(path: Path) {
    let h = Harness::new("limit", path);
    let limits = Limits::open(h.pin());
    let fw = h.firewall();
    let applies = path != Path::TcEgress;
    let monitor = path != Path::XdpShort;
    let lim_code = nr_verdict::NR_VERDICT_LIMIT;
    let pass_code = nr_verdict::NR_VERDICT_PASS;

    // Nothing configured: the gate is closed and nothing is counted.
    assert_eq!(verdict(&h, path, &udp_from([192, 0, 2, 7])).0, 'P', "{path:?}: no limits");

    let whole = limits.add(&limit("192.0.2.0/24", "1/h", |a| a.burst = Some(3))).unwrap();
    let per = limits
        .add(&limit("198.51.100.0/24", "1/s", |a| {
            a.burst = Some(2);
            a.per_source = true;
            a.ban = Some("2s");
        }))
        .unwrap();
    let syn = limits.add(&limit("203.0.113.0/24", "1/h", |a| (a.burst, a.syn) = (Some(1), true))).unwrap();
    let v6 = limits.add(&limit("2001:db8::/32", "1/h", |a| (a.burst, a.proto) = (Some(1), Some("icmpv6")))).unwrap();
    let deny = fw.add(&[Rule::parse("192.0.2.99", None, None, Some("in")).unwrap()]).unwrap()[0];
    let len = udp_from([192, 0, 2, 7]).len() as u64;

    // Whole prefix: the burst of 3 from two sources together, then drops.
    let a = udp_from([192, 0, 2, 7]);
    let b = udp_from([192, 0, 2, 8]);
    let want = if applies { "PPPDD" } else { "PPPPP" };
    assert_eq!(verdicts(&h, path, &[a.clone(), b.clone(), a.clone(), b.clone(), a.clone()]), want, "{path:?}: whole prefix");
    if monitor {
        let ev = verdict(&h, path, &a).1;
        assert_eq!(ev, Some(if applies { (lim_code, Decided::Limit(whole)) } else { (pass_code, Decided::Nothing) }), "{path:?}: the event names the limit");
    } else {
        verdict(&h, path, &a);
    }
    // Same /16 (the bitmap lets it through to the scan), other prefix: passes.
    assert_eq!(verdict(&h, path, &udp_from([192, 0, 3, 1])).0, 'P', "{path:?}: same /16, no limit");
    assert_eq!(verdict(&h, path, &udp_from([10, 9, 9, 9])).0, 'P', "{path:?}: unlimited source");
    // A deny rule decides first: the limit never sees the packet.
    let denied = if path == Path::TcEgress { 'P' } else { 'D' };
    assert_eq!(verdict(&h, path, &udp_from([192, 0, 2, 99])).0, denied, "{path:?}: deny rule inside the prefix");
    let s = status(&limits, whole);
    if applies {
        assert_eq!((s.passed, s.dropped, s.passed_bytes, s.dropped_bytes), (3, 3, 3 * len, 3 * len), "{path:?}");
    } else {
        assert_eq!((s.passed, s.dropped), (0, 0), "{path:?}: limits do not apply at egress");
    }

    // Per source with a ban: each source has its own bucket of 2.
    let (x, y) = (udp_from([198, 51, 100, 1]), udp_from([198, 51, 100, 2]));
    // The ban starts during these runs: after `before`, by `after`.
    let before = std::time::Instant::now();
    let want = if applies { "PPDPPD" } else { "PPPPPP" };
    assert_eq!(verdicts(&h, path, &[x.clone(), x.clone(), x.clone(), y.clone(), y.clone(), x.clone()]), want, "{path:?}: per source");
    let after = std::time::Instant::now();
    let s = status(&limits, per);
    if applies {
        assert_eq!(
            (s.passed, s.dropped, s.bans, s.banned_drops, s.sources_tracked, s.sources_banned, s.sources_evicted),
            (4, 2, 1, 1, 2, 1, 0),
            "{path:?}: per-source counters"
        );
        assert!(before.elapsed() < BAN, "{path:?}: the checks during the ban took longer than the ban");
        sleep(BAN.saturating_sub(after.elapsed()) + Duration::from_millis(100));
        assert_eq!(verdicts(&h, path, &[x.clone()]), "P", "{path:?}: back after the ban");
        assert_eq!(status(&limits, per).sources_banned, 0, "{path:?}: no one banned now");
    }

    // SYN limit: SYNs only; a SYN-ACK and an ACK from the same prefix pass.
    let s1 = tcp4([203, 0, 113, 5], HOST, 40000, 80);
    let want = if applies { "PDPP" } else { "PPPP" };
    let frames = [s1.clone(), s1, tcp_from([203, 0, 113, 5], true, true), tcp_from([203, 0, 113, 5], false, true)];
    assert_eq!(verdicts(&h, path, &frames), want, "{path:?}: --syn");
    assert_eq!(status(&limits, syn).dropped, u64::from(applies), "{path:?}: SYN drops");

    // IPv6, ICMPv6 only.
    let ping = icmp6(V6_SRC, V6_HOST);
    let want = if applies { "PDP" } else { "PPP" };
    assert_eq!(verdicts(&h, path, &[ping.clone(), ping, udp6(V6_SRC, V6_HOST, 1, 53, &[0; 8])]), want, "{path:?}: IPv6");
    assert_eq!(status(&limits, v6).dropped, u64::from(applies), "{path:?}: IPv6 drops");

    // The interface counts limit drops as drops: 3 + 2 + 1 + 1, and the deny rule's.
    let expected = if applies { 3 + 2 + 1 + 1 + 1 } else { 0 };
    assert_eq!(h.dropped(path).0, expected, "{path:?}: the hook's drop counter");
    let deny_hits = fw.list().unwrap().iter().find(|r| r.id == deny).map(|r| r.packets);
    assert_eq!(deny_hits, Some(u64::from(applies)), "{path:?}: the deny rule's hit");

    // Deleting the limits opens the gate again.
    for id in [whole, per, syn, v6] {
        limits.delete_id(id).unwrap();
    }
    assert!(limits.list().unwrap().is_empty());
    assert_eq!(verdict(&h, path, &a).0, 'P', "{path:?}: no limits left");
}

#[test]
fn limit_verdicts_on_the_xdp_short_path() {
    require_root();
    check_path(Path::XdpShort);
}

#[test]
fn limit_verdicts_on_the_xdp_general_path() {
    require_root();
    check_path(Path::XdpGeneral);
}

#[test]
fn limit_verdicts_at_tc_ingress() {
    require_root();
    check_path(Path::TcIngress);
}

#[test]
fn limit_verdicts_at_tc_egress_do_not_apply() {
    require_root();
    check_path(Path::TcEgress);
}

/// The per-source buckets live in a set-associative table (netray_abi.h).
/// Sized for 4 sources it is one set of 4: a new source evicts the one whose
/// bucket was used least recently (its TAT furthest in the past), so a
/// banned source stays while any way holds an unbanned one, and every
/// eviction is counted; an evicted source comes back with a full bucket.
/// IPv6 sources that differ only in their last byte are told apart. Only
/// the order of the buckets' TATs decides (the boot clock: burst 1), so the
/// emulated kernels' slowness changes nothing.
#[test]
fn a_full_per_source_table_evicts_the_least_recently_used_and_counts_it() {
    require_root();
    let cap = FwCapacity { limit_sources: 4, ..FwCapacity::default() };
    let h = XdpHarness::with_capacities("limit-evict", &cap, FlowCapacity::default());
    h.set_features(&[Feature::Firewall]);
    let limits = Limits::open(h.tmp.pin.clone());
    let run = |frames: &[Vec<u8>]| -> String {
        frames.iter().map(|f| if h.run(f).verdict == XDP_DROP { 'D' } else { 'P' }).collect()
    };
    let id = limits
        .add(&limit("198.18.0.0/16", "1/s", |a| {
            a.burst = Some(1);
            a.per_source = true;
            a.ban = Some("10m");
        }))
        .unwrap();
    let src = |i: u8| udp_from([198, 18, 0, i]);
    // (passed, dropped, tracked, evicted, banned now)
    let counts = |id: u32| {
        let s = status(&limits, id);
        (s.passed, s.dropped, s.sources_tracked, s.sources_evicted, s.sources_banned)
    };

    // A (1) is banned; B, C, D (2-4) fill the set in that order.
    assert_eq!(run(&[src(1), src(1), src(2), src(3), src(4)]), "PDPPP");
    assert_eq!(counts(id), (4, 1, 4, 0, 1));
    // E: B, the least recently used, makes room, not the banned A.
    assert_eq!(run(&[src(5), src(1)]), "PD");
    assert_eq!(counts(id), (5, 2, 4, 1, 1));
    // B is back, with a full bucket, in C's way.
    assert_eq!(run(&[src(2)]), "P");
    assert_eq!(counts(id), (6, 2, 4, 2, 1));

    // IPv6: 2001:db8::7 and ::8 get a bucket of one each, in the ways of D
    // and E (used before B, and A is banned).
    let v6 = limits.add(&limit("2001:db8::/32", "1/s", |a| (a.burst, a.per_source) = (Some(1), true))).unwrap();
    let mut other = V6_SRC;
    other[15] = 8;
    let (p, q) = (udp6(V6_SRC, V6_HOST, 1, 53, &[0; 8]), udp6(other, V6_HOST, 1, 53, &[0; 8]));
    assert_eq!(run(&[p.clone(), q.clone(), p, q]), "PPDD");
    assert_eq!(counts(v6), (2, 2, 2, 0, 0));
    assert_eq!(counts(id), (6, 2, 2, 4, 1));
    // A is still there, and still banned.
    assert_eq!(run(&[src(1)]), "D");
    assert_eq!(counts(id), (6, 3, 2, 4, 1));
}
