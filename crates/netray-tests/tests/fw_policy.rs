//! Allow rules and the default-drop policy (firewall.h, policy.h) through
//! BPF_PROG_TEST_RUN on every ingress path a verdict is taken: the XDP
//! dispatcher's short path (firewall alone) and general path (with the
//! monitor), and TC ingress; and TC egress noting the replies.
//!
//! Each path: under `policy in drop` a packet no rule decides is dropped,
//! ARP and IPv6 neighbour discovery pass, a reply to what the host sent
//! passes (TCP, UDP, ICMP and ICMPv6 echo) and a look-alike that is no reply
//! does not, an allow rule passes its prefix and counts its hits, a deny rule
//! inside it wins, an audit rule leaves the packet to the policy; under
//! `pass` an unmatched packet passes. Verdicts, monitor events, the
//! interface's counters and the reply table's counters are checked exactly.
//! With rate limits as well, the order of the decisions is checked: rules,
//! then the policy, then the limits on what would pass.

mod common;

use common::{
    verdict_paths::{Harness, Path},
    *,
};
use netray_core::{map_names as M, maps, Hook};
use netray_ebpf::{
    abi::{nr_reply_stats, nr_verdict, sum_counters},
    decided::Decided,
};
use netray_firewall::{Action, Limit, LimitArgs, Limits, Rule, RuleOptions};
use netray_tests::{require_root, TC_ACT_UNSPEC};

/// This host, and the peers it talks to.
const HOST: [u8; 4] = [10, 0, 0, 1];
const SERVER: [u8; 4] = [192, 0, 2, 80];
const ALLOWED: [u8; 4] = [198, 51, 100, 7];
const DENIED_INSIDE: [u8; 4] = [198, 51, 100, 9];
const AUDITED: [u8; 4] = [203, 0, 113, 5];
const HOST6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const SERVER6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x50];

/// A frame the host sends: through TC egress where the path has it (it
/// notes the reply), else written into the reply table as TC egress would
/// (the XDP harness has no TC program).
fn send(h: &Harness, frame: &[u8], reply_key: netray_ebpf::abi::nr_reply_key) {
    match h {
        Harness::Tc(t) => assert_eq!(t.run(Hook::TcEgress, frame).verdict, TC_ACT_UNSPEC),
        Harness::Xdp(x) => {
            let mut replies = netray_firewall::policy::Replies::open(&x.tmp.pin).unwrap().expect("the reply table");
            assert!(replies.note(&reply_key));
        }
    }
}

/// The receiving hook's counters.
fn stats(h: &Harness) -> netray_ebpf::abi::nr_if_stats {
    match h {
        Harness::Xdp(x) => x.stats(),
        Harness::Tc(t) => t.stats(Hook::TcIngress),
    }
}

fn reply_stats(h: &Harness) -> nr_reply_stats {
    let m = maps::open_pinned(&h.pin().fw_dir().join(M::FW_REPLY_STATS)).unwrap();
    sum_counters(&maps::get_percpu(&m, 0).unwrap())
}

/// The key of the reply to a packet from `src`:`sport` to `dst`:`dport` (ICMP echo: ports = the id).
fn reply_key(family: u8, proto: u8, src: &[u8], dst: &[u8], sport: u16, dport: u16) -> netray_ebpf::abi::nr_reply_key {
    let mut k = netray_ebpf::abi::nr_reply_key { family, proto, sport: dport, dport: sport, ..Default::default() };
    k.src[..dst.len()].copy_from_slice(dst);
    k.dst[..src.len()].copy_from_slice(src);
    k
}

fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    v4(src, dst, udp(sport, dport, &[7; 12])).bytes()
}

fn check_path(path: Path) {
    let h = Harness::with_policy("fwpol", path, true);
    let fw = h.firewall();
    let (drop_code, pass_code) = (nr_verdict::NR_VERDICT_DROP, nr_verdict::NR_VERDICT_PASS);
    let ev = |v: nr_verdict, by: Decided| (path != Path::XdpShort).then_some((v, by));
    let policy = Decided::Policy { audit: None };
    let ids = fw
        .add_with(&[
            (Rule::parse("198.51.100.0/24", None, None, None).unwrap(), RuleOptions { action: Action::Allow, ttl: None }),
            (Rule::parse("198.51.100.9", None, None, None).unwrap(), RuleOptions::default()),
            (Rule::parse("203.0.113.0/24", None, None, None).unwrap(), RuleOptions { action: Action::Audit, ttl: None }),
        ])
        .unwrap();
    let (allow, deny, audit) = (ids[0], ids[1], ids[2]);
    assert_eq!(
        fw.list().unwrap().iter().map(|r| (r.id, r.action, r.rule.allow)).collect::<Vec<_>>(),
        vec![(allow, Action::Allow, true), (deny, Action::Deny, false), (audit, Action::Audit, false)]
    );

    // No rule: the policy drops.
    assert_eq!(h.outcome(path, &udp4(SERVER, HOST, 53, 5353)), (true, ev(drop_code, policy)), "{path:?}: unmatched");
    // ARP and neighbour discovery always pass; an ICMPv6 echo request does not.
    assert_eq!(h.outcome(path, &non_ip(0x0806, &[0; 28]).bytes()), (false, ev(pass_code, Decided::Nothing)), "{path:?}: ARP");
    for nd in [133u8, 134, 135, 136, 137] {
        let f = v6(SERVER6, HOST6, vec![], icmp6(nd, 0)).bytes();
        assert_eq!(h.outcome(path, &f), (false, ev(pass_code, Decided::Nothing)), "{path:?}: ICMPv6 type {nd}");
    }
    let echo6 = v6(SERVER6, HOST6, vec![], icmp6(128, 0)).bytes();
    assert_eq!(h.outcome(path, &echo6), (true, ev(drop_code, policy)), "{path:?}: ICMPv6 echo request");

    // Replies to what the host sent pass; the same peer on another port does not.
    send(&h, &udp4(HOST, SERVER, 5353, 53), reply_key(4, 17, &HOST, &SERVER, 5353, 53));
    assert_eq!(h.outcome(path, &udp4(SERVER, HOST, 53, 5353)), (false, ev(pass_code, Decided::Nothing)), "{path:?}: UDP reply");
    assert_eq!(h.outcome(path, &udp4(SERVER, HOST, 53, 5354)), (true, ev(drop_code, policy)), "{path:?}: other port");
    assert_eq!(h.outcome(path, &udp4(SERVER, HOST, 54, 5353)), (true, ev(drop_code, policy)), "{path:?}: other source port");
    send(&h, &v4(HOST, SERVER, tcp(40000, 22)).bytes(), reply_key(4, 6, &HOST, &SERVER, 40000, 22));
    assert_eq!(h.outcome(path, &v4(SERVER, HOST, tcp(22, 40000)).bytes()), (false, ev(pass_code, Decided::Nothing)), "{path:?}: TCP reply");
    assert_eq!(h.outcome(path, &v4(SERVER, HOST, tcp(22, 40001)).bytes()), (true, ev(drop_code, policy)), "{path:?}: TCP other");
    // ICMP echo: the reply (type 0) with the request's id passes, a request from the peer does not.
    send(&h, &v4(HOST, SERVER, icmp(8, 0)).bytes(), reply_key(4, 1, &HOST, &SERVER, 1, 1));
    assert_eq!(h.outcome(path, &v4(SERVER, HOST, icmp(0, 0)).bytes()), (false, ev(pass_code, Decided::Nothing)), "{path:?}: echo reply");
    assert_eq!(h.outcome(path, &v4(SERVER, HOST, icmp(8, 0)).bytes()), (true, ev(drop_code, policy)), "{path:?}: echo request");
    send(&h, &v6(HOST6, SERVER6, vec![], icmp6(128, 0)).bytes(), reply_key(6, 58, &HOST6, &SERVER6, 1, 1));
    let reply6 = v6(SERVER6, HOST6, vec![], icmp6(129, 0)).bytes();
    assert_eq!(h.outcome(path, &reply6), (false, ev(pass_code, Decided::Nothing)), "{path:?}: ICMPv6 echo reply");

    // Rules: allow passes its prefix (counted), the deny rule inside it wins,
    // an audit rule's match is left to the policy (dropped, the hit counted).
    assert_eq!(h.outcome(path, &udp4(ALLOWED, HOST, 1, 2)), (false, ev(pass_code, Decided::Allow(allow))), "{path:?}: allowed");
    assert_eq!(h.outcome(path, &udp4(DENIED_INSIDE, HOST, 1, 2)), (true, ev(drop_code, Decided::Deny(deny))), "{path:?}: deny inside");
    assert_eq!(h.outcome(path, &udp4(AUDITED, HOST, 1, 2)), (true, ev(drop_code, Decided::Policy { audit: Some(audit) })), "{path:?}: audit, policy drops");
    let len = udp4(ALLOWED, HOST, 1, 2).len() as u64;
    let hits: Vec<(u32, u64, u64)> = fw.list().unwrap().iter().map(|r| (r.id, r.packets, r.bytes)).collect();
    assert_eq!(hits, vec![(allow, 1, len), (deny, 1, len), (audit, 1, len)], "{path:?}: hits");

    let s = stats(&h);
    assert_eq!((s.dropped, s.audited), (8, 0), "{path:?}: dropped: 6 by the policy, 1 deny, 1 audit left to the policy");
    let r = reply_stats(&h);
    // Short-path drops count per CPU in fw_pending; the status adds them up.
    let st = netray_firewall::policy::reply_status(&h.pin()).unwrap().expect("the reply table");
    assert_eq!((st.replies_passed, r.neighbour, st.policy_dropped), (4, 6, 7), "{path:?}: reply table counters");
    if path == Path::TcIngress {
        assert_eq!((r.inserts, r.insert_failed), (4, 0), "{path:?}: TC egress noted each reply once");
        send(&h, &udp4(HOST, SERVER, 5353, 53), reply_key(4, 17, &HOST, &SERVER, 5353, 53));
        assert_eq!(reply_stats(&h).inserts, 4, "a known reply is refreshed, not inserted again");
    }
}

/// Under `policy in pass` an unmatched packet passes; allow and audit rules do what they say.
fn check_pass(path: Path) {
    let h = Harness::with_policy("fwpol", path, false);
    let fw = h.firewall();
    let ev = |v: nr_verdict, by: Decided| (path != Path::XdpShort).then_some((v, by));
    let ids = fw
        .add_with(&[
            (Rule::parse("198.51.100.0/24", None, None, None).unwrap(), RuleOptions { action: Action::Allow, ttl: None }),
            (Rule::parse("203.0.113.0/24", None, None, None).unwrap(), RuleOptions { action: Action::Audit, ttl: None }),
        ])
        .unwrap();
    assert_eq!(h.outcome(path, &udp4(SERVER, HOST, 53, 5353)), (false, ev(nr_verdict::NR_VERDICT_PASS, Decided::Nothing)));
    assert_eq!(h.outcome(path, &udp4(ALLOWED, HOST, 1, 2)), (false, ev(nr_verdict::NR_VERDICT_PASS, Decided::Allow(ids[0]))));
    assert_eq!(h.outcome(path, &udp4(AUDITED, HOST, 1, 2)), (false, ev(nr_verdict::NR_VERDICT_AUDIT, Decided::Audit(ids[1]))));
    let s = stats(&h);
    assert_eq!((s.seen, s.dropped, s.audited), (3, 0, 1), "{path:?}: the audit counter");
}

/// Rules, then the policy, then the rate limits: a packet the policy drops
/// takes no limit's token; a reply and an allowed packet pass the policy and
/// are then limited; a deny rule inside a limited prefix decides first.
fn check_policy_then_limits(path: Path) {
    let h = Harness::with_policy("fwpol", path, true);
    let fw = h.firewall();
    let limits = Limits::open(h.pin());
    let ev = |v: nr_verdict, by: Decided| (path != Path::XdpShort).then_some((v, by));
    let (drop, limited) = (nr_verdict::NR_VERDICT_DROP, nr_verdict::NR_VERDICT_LIMIT);
    let ids = fw
        .add_with(&[
            (Rule::parse("198.51.100.0/24", None, None, None).unwrap(), RuleOptions { action: Action::Allow, ttl: None }),
            (Rule::parse("198.51.100.9", None, None, None).unwrap(), RuleOptions::default()),
        ])
        .unwrap();
    let limit = |cidr: &str, burst: u32| {
        let a = LimitArgs { cidr, rate: "1/h", burst: Some(burst), ..Default::default() };
        limits.add(&Limit::parse(&a).unwrap()).unwrap()
    };
    let (server_limit, allowed_limit) = (limit("192.0.2.0/24", 1), limit("198.51.100.0/24", 2));
    let counts = |id: u32| {
        let s = limits.list().unwrap().into_iter().find(|s| s.id == id).expect("the limit is listed");
        (s.passed, s.dropped)
    };

    // No rule, no reply: the policy drops, before any limit sees the packet.
    for _ in 0..3 {
        assert_eq!(h.outcome(path, &udp4(SERVER, HOST, 53, 5353)), (true, ev(drop, Decided::Policy { audit: None })), "{path:?}: policy drop");
    }
    assert_eq!(counts(server_limit), (0, 0), "{path:?}: policy drops take no token");
    // A reply passes the policy, then its source's limit (burst 1) applies.
    send(&h, &udp4(HOST, SERVER, 5353, 53), reply_key(4, 17, &HOST, &SERVER, 5353, 53));
    let reply = udp4(SERVER, HOST, 53, 5353);
    assert_eq!(h.outcome(path, &reply), (false, ev(nr_verdict::NR_VERDICT_PASS, Decided::Nothing)), "{path:?}: reply in the burst");
    assert_eq!(h.outcome(path, &reply), (true, ev(limited, Decided::Limit(server_limit))), "{path:?}: reply over the limit");
    assert_eq!(counts(server_limit), (1, 1), "{path:?}: the reply's limit");
    // An allow rule lets its prefix past the policy; its limit (burst 2) applies.
    let allowed = udp4(ALLOWED, HOST, 1, 2);
    assert_eq!(h.outcome(path, &allowed), (false, ev(nr_verdict::NR_VERDICT_PASS, Decided::Allow(ids[0]))), "{path:?}: allowed 1");
    assert_eq!(h.outcome(path, &allowed), (false, ev(nr_verdict::NR_VERDICT_PASS, Decided::Allow(ids[0]))), "{path:?}: allowed 2");
    assert_eq!(h.outcome(path, &allowed), (true, ev(limited, Decided::Limit(allowed_limit))), "{path:?}: allowed, over the limit");
    // A deny rule inside the limited prefix decides first.
    assert_eq!(h.outcome(path, &udp4(DENIED_INSIDE, HOST, 1, 2)), (true, ev(drop, Decided::Deny(ids[1]))), "{path:?}: deny inside");
    assert_eq!(counts(allowed_limit), (2, 1), "{path:?}: the allowed prefix's limit");
    let s = stats(&h);
    assert_eq!((s.seen, s.dropped), (9, 6), "{path:?}: 3 by the policy, 2 by limits, 1 by the deny rule");
}

/// Five replies whose keys share a set of the reply table (4 ways): noting
/// the fifth at TC egress takes the way of the reply sent longest ago (the
/// first), counted as evicted; the four others still pass.
#[test]
fn a_full_reply_set_evicts_the_reply_sent_longest_ago_and_counts_it() {
    require_root();
    let path = Path::TcIngress;
    let h = Harness::with_policy("fwrepl", path, true);
    let state: netray_ebpf::abi::nr_fw_state =
        maps::get(&maps::open_pinned(&h.pin().fw_dir().join(M::FW_STATE)).unwrap(), 0).unwrap().unwrap();
    let set_of = |k: &netray_ebpf::abi::nr_reply_key| {
        (netray_firewall::policy::reply_hash(k, state.reply_seed) >> 32) as u32 & state.reply_mask
    };
    // Ports whose replies fall into one set: the first set to collect five.
    let mut by_set: std::collections::HashMap<u32, Vec<(u16, u16)>> = Default::default();
    let ports = (1024..u16::MAX)
        .flat_map(|sport| [53u16, 123, 443].map(|dport| (sport, dport)))
        .find_map(|(sport, dport)| {
            let v = by_set.entry(set_of(&reply_key(4, 17, &HOST, &SERVER, sport, dport))).or_default();
            v.push((sport, dport));
            (v.len() == 5).then(|| v.clone())
        })
        .expect("five replies in one set");
    for &(sport, dport) in &ports {
        send(&h, &udp4(HOST, SERVER, sport, dport), reply_key(4, 17, &HOST, &SERVER, sport, dport));
    }
    let st = netray_firewall::policy::reply_status(&h.pin()).unwrap().expect("the reply table");
    assert_eq!((st.entries, st.evicted, st.insert_failed), (4, 1, 0), "one set's four ways hold the last four");
    assert_eq!(st.capacity, (state.reply_mask + 1) * 4);
    assert_eq!(reply_stats(&h).inserts, 5);
    let passes: Vec<bool> =
        ports.iter().map(|&(sport, dport)| !h.outcome(path, &udp4(SERVER, HOST, dport, sport)).0).collect();
    assert_eq!(passes, [false, true, true, true, true], "the first reply noted was evicted, the others pass");
}

#[test]
fn policy_drop_on_the_xdp_short_path() {
    require_root();
    check_path(Path::XdpShort);
}

#[test]
fn policy_drop_on_the_xdp_general_path() {
    require_root();
    check_path(Path::XdpGeneral);
}

#[test]
fn policy_drop_at_tc_ingress_with_replies_noted_at_tc_egress() {
    require_root();
    check_path(Path::TcIngress);
}

#[test]
fn policy_pass_with_allow_and_audit_rules_on_every_path() {
    require_root();
    for path in [Path::XdpShort, Path::XdpGeneral, Path::TcIngress] {
        check_pass(path);
    }
}

#[test]
fn policy_before_limits_on_every_path() {
    require_root();
    for path in [Path::XdpShort, Path::XdpGeneral, Path::TcIngress] {
        check_policy_then_limits(path);
    }
}
