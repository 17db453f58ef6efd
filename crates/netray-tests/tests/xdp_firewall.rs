//! The dispatcher's firewall (firewall.h, compiled tables from
//! netray-firewall) through BPF_PROG_TEST_RUN: verdicts, the rule id in the
//! monitor event, and the per-rule hit counters, for hand-built frames.
//!
//! Every check compares the whole event (see tests/common) and keeps a tally
//! of the drops it expects per rule, compared exactly with `firewall().list()`.
//!
//! One job, one file (over 600 lines): the firewall's kernel lookup, every test using
//! the `Fw` fixture and its drop tally below.

mod common;

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use common::*;
use netray_core::Feature;
use netray_firewall::Rule;
use netray_ebpf::abi::{nr_rule_counter, nr_rule_hits};
use netray_tests::{require_root, XdpHarness, XDP_DROP, XDP_PASS};

// ---- helpers ---------------------------------------------------------------

fn rule(cidr: &str, proto: Option<&str>, port: Option<u16>) -> Rule {
    Rule::parse(cidr, proto, port, None).unwrap()
}

fn ip4(s: &str) -> [u8; 4] {
    s.parse::<Ipv4Addr>().unwrap().octets()
}

fn ip6(s: &str) -> [u8; 16] {
    s.parse::<Ipv6Addr>().unwrap().octets()
}

/// A frame from `src` (IPv4 or IPv6 by its form) to a fixed destination.
fn from(src: &str, l4: L4) -> Pkt {
    match src.parse::<IpAddr>().unwrap() {
        IpAddr::V4(a) => v4(a.octets(), B4, l4),
        IpAddr::V6(a) => v6(a.octets(), B6, vec![], l4),
    }
}

/// A harness plus the hits each rule must have.
struct Fw {
    h: XdpHarness,
    hits: BTreeMap<u32, (u64, u64)>,
}

impl Fw {
    fn new(tag: &str) -> Fw {
        Fw { h: XdpHarness::new(tag), hits: BTreeMap::new() }
    }

    /// The firewall alone (the dispatcher's short path, which keeps a
    /// per-CPU slot), with this test's thread on CPU 0 (see run_on_cpu0).
    fn short_path_on_cpu0(tag: &str) -> Fw {
        run_on_cpu0();
        let fw = Fw::new(tag);
        fw.h.set_features(&[Feature::Firewall]);
        fw
    }

    fn add(&mut self, rules: &[Rule]) -> Vec<u32> {
        let ids = self.h.firewall().add(rules).unwrap();
        for id in &ids {
            self.hits.insert(*id, (0, 0));
        }
        ids
    }

    fn add1(&mut self, cidr: &str, proto: Option<&str>, port: Option<u16>) -> u32 {
        self.add(&[rule(cidr, proto, port)])[0]
    }

    fn delete(&mut self, rules: &[Rule]) -> Vec<u32> {
        let ids = self.h.firewall().delete(rules).unwrap();
        for id in &ids {
            self.hits.remove(id);
        }
        ids
    }

    /// Runs the first `n` bytes of `pkt` (all of it if None): dropped by
    /// `rule` (0 = passes), with the model's event.
    fn check_cut(&mut self, pkt: &Pkt, n: usize, rule: u32, ctx: &str) {
        let want = if rule == 0 { pkt.expect(n) } else { pkt.expect(n).dropped_by(rule) };
        let frame = pkt.bytes();
        assert_run(&self.h, &frame[..n], want, ctx);
        if rule != 0 {
            let e = self.hits.get_mut(&rule).unwrap_or_else(|| panic!("{ctx}: rule {rule} is not in the tally"));
            e.0 += 1;
            e.1 += n as u64;
        }
    }

    fn check(&mut self, pkt: &Pkt, rule: u32, ctx: &str) {
        self.check_cut(pkt, pkt.len(), rule, ctx);
    }

    /// The kernel's per-rule counters equal the tally, rule for rule.
    fn verify_hits(&self, ctx: &str) {
        let got: BTreeMap<u32, (u64, u64)> =
            self.h.firewall().list().unwrap().iter().map(|r| (r.id, (r.packets, r.bytes))).collect();
        assert_eq!(got, self.hits, "{ctx}: per-rule hits (packets, bytes)");
    }
}

/// udp, tcp and icmp (ICMPv6 for v6) frames from `src`, in turn.
fn mixed(src: &str, i: usize) -> Pkt {
    let v6 = src.contains(':');
    match i % 3 {
        0 => from(src, udp(1000 + i as u16, 53, b"q")),
        1 => from(src, tcp(2000 + i as u16, 443)),
        _ => from(src, if v6 { icmp6(128, 0) } else { icmp(8, 0) }),
    }
}

/// For each prefix: sources inside are dropped by its rule (every protocol),
/// sources outside pass; deleting the rule lets the next packet through.
fn prefix_table(fw: &mut Fw, table: &[(&str, &[&str], &[&str])]) {
    for (cidr, inside, outside) in table {
        let id = fw.add1(cidr, None, None);
        for (i, src) in inside.iter().enumerate() {
            fw.check(&mixed(src, i), id, &format!("{cidr}: {src} inside"));
        }
        for (i, src) in outside.iter().enumerate() {
            fw.check(&mixed(src, i), 0, &format!("{cidr}: {src} outside"));
        }
        fw.verify_hits(cidr);
        assert_eq!(fw.delete(&[rule(cidr, None, None)]), vec![id]);
        fw.check(&mixed(inside[0], 0), 0, &format!("{cidr}: deleted"));
        fw.verify_hits(cidr);
        assert!(fw.h.firewall().list().unwrap().is_empty());
    }
}

// ---- prefixes -----------------------------------------------------------------

#[test]
fn ipv4_prefix_lengths() {
    require_root();
    let mut fw = Fw::new("fw-v4-prefixes");
    prefix_table(
        &mut fw,
        &[
            ("0.0.0.0/0", &["0.0.0.0", "10.1.2.3", "255.255.255.255"], &[]),
            ("224.0.0.0/4", &["224.0.0.1", "239.255.255.255"], &["223.255.255.255", "240.0.0.0"]),
            ("10.0.0.0/8", &["10.0.0.0", "10.128.0.1", "10.255.255.255"], &["9.255.255.255", "11.0.0.0"]),
            ("100.64.0.0/10", &["100.64.0.0", "100.127.255.255"], &["100.63.255.255", "100.128.0.0"]),
            ("172.16.0.0/13", &["172.16.0.0", "172.20.1.1", "172.23.255.255"], &["172.15.255.255", "172.24.0.0"]),
            ("10.200.16.0/20", &["10.200.16.0", "10.200.31.255"], &["10.200.15.255", "10.200.32.0"]),
            ("192.0.2.0/24", &["192.0.2.0", "192.0.2.255"], &["192.0.1.255", "192.0.3.0", "193.0.2.1"]),
            ("198.51.100.6/31", &["198.51.100.6", "198.51.100.7"], &["198.51.100.5", "198.51.100.8"]),
            ("203.0.113.9/32", &["203.0.113.9"], &["203.0.113.8", "203.0.113.10", "203.0.112.9", "202.0.113.9"]),
        ],
    );
}

#[test]
fn ipv6_prefix_lengths() {
    require_root();
    let mut fw = Fw::new("fw-v6-prefixes");
    let ones = "ffff:ffff:ffff:ffff:ffff:ffff";
    prefix_table(
        &mut fw,
        &[
            ("::/0", &["::", "2001:db8::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"], &[]),
            ("2000::/8", &["2000::", &format!("20ff:ffff:{ones}")], &[&format!("1fff:ffff:{ones}"), "2100::"]),
            ("fe80::/10", &["fe80::1", &format!("febf:ffff:{ones}")], &[&format!("fe7f:ffff:{ones}"), "fec0::"]),
            ("2008::/13", &["2008::", &format!("200f:ffff:{ones}")], &[&format!("2007:ffff:{ones}"), "2010::"]),
            ("2001:db8:abcd::/48", &["2001:db8:abcd::", "2001:db8:abcd:ffff::1"], &["2001:db8:abcc:ffff::", "2001:db8:abce::"]),
            (
                "2001:db8:1:2::/64",
                &["2001:db8:1:2::", "2001:db8:1:2:ffff:ffff:ffff:ffff"],
                &["2001:db8:1:1:ffff:ffff:ffff:ffff", "2001:db8:1:3::"],
            ),
            ("2001:db8::a/127", &["2001:db8::a", "2001:db8::b"], &["2001:db8::9", "2001:db8::c"]),
            ("2001:db8::1/128", &["2001:db8::1"], &["2001:db8::", "2001:db8::2", "2001:db8::1:0:0:1", "3001:db8::1"]),
        ],
    );
}

#[test]
fn families_do_not_mix() {
    require_root();
    let mut fw = Fw::new("fw-families");
    let id4 = fw.add1("0.0.0.0/0", None, None);
    // IPv6 sources whose first bytes equal an IPv4 address, and the
    // IPv4-mapped form, are still IPv6.
    for src in ["::", "c000:20a::", "::ffff:192.0.2.10", "2001:db8::1"] {
        fw.check(&from(src, udp(1, 2, b"")), 0, &format!("{src} vs 0.0.0.0/0"));
    }
    fw.check(&from("192.0.2.10", udp(1, 2, b"")), id4, "ipv4 vs 0.0.0.0/0");
    fw.delete(&[rule("0.0.0.0/0", None, None)]);
    let id6 = fw.add1("::/0", None, None);
    fw.check(&from("192.0.2.10", udp(1, 2, b"")), 0, "ipv4 vs ::/0");
    fw.check(&from("0.0.0.0", icmp(8, 0)), 0, "0.0.0.0 vs ::/0");
    fw.check(&from("::", udp(1, 2, b"")), id6, ":: vs ::/0");
    fw.verify_hits("families");
}

#[test]
fn longest_match_and_ancestor_catch_all() {
    require_root();
    let mut fw = Fw::new("fw-lpm");
    let ids = fw.add(&[
        rule("10.0.0.0/8", Some("udp"), Some(53)),
        rule("10.1.0.0/16", None, None),
        rule("10.1.2.128/25", Some("tcp"), None),
        rule("10.2.0.0/16", Some("tcp"), Some(22)),
        rule("10.2.3.0/24", Some("icmp"), None),
        rule("10.2.3.4/32", Some("udp"), Some(5353)),
        rule("2001:db8::/32", Some("icmpv6"), None),
        rule("2001:db8:1::/48", None, Some(22)),
        rule("2001:db8:1:2::/64", None, None),
    ]);
    assert_eq!(ids, (1..=9).collect::<Vec<u32>>(), "ids are dense from 1");
    let cases: Vec<(&str, L4, u32)> = vec![
        ("10.9.9.9", udp(1, 53, b""), 1),
        ("10.9.9.9", udp(1, 54, b""), 0),
        ("10.9.9.9", tcp(1, 53), 0),
        ("10.9.9.9", icmp(8, 0), 0),
        // The /16 catch-all covers everything below it; inside the /25 its
        // tcp rule is more specific, and decides tcp (the most specific rule
        // decides: allow and deny rules share the table).
        ("10.1.2.3", tcp(1, 80), 2),
        ("10.1.2.200", tcp(1, 80), 3),
        ("10.1.2.200", udp(1, 53, b""), 2),
        ("10.1.255.255", icmp(0, 0), 2),
        // /8 udp 53, /16 tcp 22, /24 icmp and /32 udp 5353 all apply at the /32.
        ("10.2.3.4", udp(1, 53, b""), 1),
        ("10.2.3.4", tcp(1, 22), 4),
        ("10.2.3.4", icmp(8, 0), 5),
        ("10.2.3.4", udp(1, 5353, b""), 6),
        ("10.2.3.4", tcp(1, 23), 0),
        ("10.2.3.5", udp(1, 5353, b""), 0),
        ("10.2.3.5", icmp(3, 1), 5),
        ("10.2.4.4", icmp(8, 0), 0),
        ("10.2.4.4", tcp(1, 22), 4),
        ("10.2.4.4", udp(1, 53, b""), 1),
        ("11.0.0.1", udp(1, 53, b""), 0),
        ("2001:db8:5::1", icmp6(128, 0), 7),
        ("2001:db8:5::1", tcp(1, 22), 0),
        ("2001:db8:1::1", icmp6(128, 0), 7),
        ("2001:db8:1::1", tcp(1, 22), 8),
        ("2001:db8:1::1", udp(1, 22, b""), 8),
        ("2001:db8:1::1", sctp(1, 22), 8),
        ("2001:db8:1::1", tcp(1, 23), 0),
        ("2001:db8:1:2::99", tcp(1, 23), 9),
        ("2001:db8:1:2::99", tcp(1, 22), 9),
        ("2001:db9::1", icmp6(128, 0), 0),
    ];
    for (src, l4, want) in cases {
        let ctx = format!("{src} proto {} port {:?}", l4.proto, l4.bytes.get(2..4));
        fw.check(&from(src, l4), want, &ctx);
    }
    fw.verify_hits("lpm");
}

/// Many rules under one trie node: few runs make a range block, more make a
/// 256-entry chunk (NR_FW_RANGE_KEYS decides); both must give the same answers,
/// also after deletions re-shape the node.
#[test]
fn many_rules_in_one_node() {
    require_root();
    let mut fw = Fw::new("fw-nodes");
    let mut groups = Vec::new();
    // (second byte, rules, spacing of their third byte): 4 spaced /24s make 9
    // runs, 5 make 11, 12 adjacent ones 13, 60 spaced ones 121.
    for (second, count, gap) in [(1u8, 4usize, 4usize), (2, 5, 4), (3, 12, 1), (4, 60, 4)] {
        let cidrs: Vec<String> = (0..count).map(|i| format!("10.{second}.{}.0/24", i * gap)).collect();
        let ids = fw.add(&cidrs.iter().map(|c| rule(c, None, None)).collect::<Vec<_>>());
        groups.push((second, gap, cidrs, ids));
    }
    let sub = fw.add(&[rule("10.77.1.0/26", None, None), rule("10.77.1.128/26", None, None)]);
    let v6_dense = fw.add(&(1..=12).map(|i| rule(&format!("2001:db8::{i:x}/128"), None, None)).collect::<Vec<_>>());
    let v6_sparse = fw.add(&[1, 3, 5, 7].map(|i| rule(&format!("2001:db8:0:1::{i}/128"), None, None)));

    let check_groups = |fw: &mut Fw, groups: &[(u8, usize, Vec<String>, Vec<u32>)], round: &str| {
        for (second, gap, _, ids) in groups {
            for (i, id) in ids.iter().enumerate() {
                let third = i * gap;
                fw.check(&mixed(&format!("10.{second}.{third}.0"), i), *id, &format!("{round}: 10.{second}.{third}.0"));
                fw.check(&mixed(&format!("10.{second}.{third}.255"), i + 1), *id, &format!("{round}: 10.{second}.{third}.255"));
                if *gap > 1 {
                    fw.check(&mixed(&format!("10.{second}.{}.7", third + 1), i), 0, &format!("{round}: gap after {third}"));
                }
            }
            fw.check(&mixed(&format!("10.{second}.255.1"), 0), 0, &format!("{round}: 10.{second}.255.1"));
        }
    };
    check_groups(&mut fw, &groups, "all");
    for (last, want) in [(0, sub[0]), (63, sub[0]), (64, 0), (127, 0), (128, sub[1]), (191, sub[1]), (192, 0), (255, 0)] {
        fw.check(&mixed(&format!("10.77.1.{last}"), last), want, &format!("10.77.1.{last}"));
    }
    for i in 0..=13u32 {
        let want = if (1..=12).contains(&i) { v6_dense[i as usize - 1] } else { 0 };
        fw.check(&mixed(&format!("2001:db8::{i:x}"), i as usize), want, &format!("2001:db8::{i:x}"));
    }
    for i in 0..=8usize {
        let want = [1, 3, 5, 7].iter().position(|&k| k == i).map_or(0, |p| v6_sparse[p]);
        fw.check(&mixed(&format!("2001:db8:0:1::{i}"), i), want, &format!("2001:db8:0:1::{i}"));
    }
    fw.verify_hits("all rules");

    // Delete every other rule of each group: chunks turn into range blocks.
    for (_, _, cidrs, ids) in &mut groups {
        let gone: Vec<Rule> = cidrs.iter().step_by(2).map(|c| rule(c, None, None)).collect();
        fw.delete(&gone);
        let mut i = 0;
        ids.retain(|_| {
            i += 1;
            i % 2 == 0
        });
        let mut j = 0;
        cidrs.retain(|_| {
            j += 1;
            j % 2 == 0
        });
    }
    for (second, gap, cidrs, ids) in &groups {
        for (c, id) in cidrs.iter().zip(ids) {
            let base = c.trim_end_matches(".0/24");
            fw.check(&mixed(&format!("{base}.9"), 0), *id, &format!("after deletions: {c}"));
            let third: usize = base.rsplit('.').next().unwrap().parse().unwrap();
            fw.check(&mixed(&format!("10.{second}.{}.9", third - gap), 1), 0, &format!("after deletions: below {c}"));
        }
    }
    fw.verify_hits("after deletions");
}

/// Random IPv4 rule sets packed into a few /16s (wide range blocks, half and
/// quarter blocks, chunks and their children, nested prefixes): the kernel's verdict equals a plain
/// longest-prefix match at every run boundary and either side of it.
#[test]
fn random_rule_sets_agree_with_longest_prefix_match() {
    require_root();
    // xorshift: deterministic, no dependency.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..5u32 {
        let mut fw = Fw::new(&format!("fw-rand{round}"));
        // (network, length) of distinct prefixes, a few /12-/16 around them.
        let mut nets: Vec<(u32, u8)> = Vec::new();
        // Prefixes in a /16 are islands: up to 2 make a quarter block, 4 a
        // half one, 8 a whole one (unless they nest), 40 a chunk below.
        let per_16 = [1usize, 2, 4, 8, 40][round as usize];
        for sixteen in 0..4u32 {
            let base = 0x0a00_0000 | (sixteen * 7 + round) << 16;
            for _ in 0..per_16 {
                let len = 17 + (next() % 16) as u8;
                let net = (base | (next() as u32 & 0xffff)) & (u32::MAX << (32 - len));
                if !nets.contains(&(net, len)) {
                    nets.push((net, len));
                }
            }
        }
        nets.push((0x0a00_0000 | round << 16, 16));
        nets.push((0x0a00_0000, 12));
        let rules: Vec<Rule> = nets
            .iter()
            .map(|&(net, len)| rule(&format!("{}/{len}", Ipv4Addr::from(net)), None, None))
            .collect();
        let ids = fw.add(&rules);
        let lpm = |a: u32| {
            nets.iter()
                .zip(&ids)
                .filter(|((net, len), _)| a & (u32::MAX << (32 - len)) == *net)
                .max_by_key(|((_, len), _)| *len)
                .map_or(0, |(_, id)| *id)
        };
        let mut probes: Vec<u32> = Vec::new();
        for &(net, len) in &nets {
            let last = net | (u32::MAX >> len);
            probes.extend([net.wrapping_sub(1), net, net + 1, last - 1, last, last.wrapping_add(1)]);
        }
        probes.extend((0..64).map(|_| 0x0a00_0000 | (next() as u32 & 0x001f_ffff)));
        for (i, a) in probes.iter().enumerate() {
            let src = Ipv4Addr::from(*a).to_string();
            fw.check(&mixed(&src, i), lpm(*a), &format!("round {round}: {src}"));
        }
        fw.verify_hits(&format!("round {round}"));
        // The firewall alone, frames long enough for the short path, each sent
        // twice: the second search of a wide block scans it with branches.
        fw.h.set_features(&[Feature::Firewall]);
        for a in &probes {
            let pkt = from(&Ipv4Addr::from(*a).to_string(), udp(1, 2, &[0; 12]));
            let want = if lpm(*a) == 0 { XDP_PASS } else { XDP_DROP };
            for n in 0..2 {
                assert_eq!(fw.h.run(&pkt.bytes()).verdict, want, "round {round}: {} run {n}", Ipv4Addr::from(*a));
                if let Some(e) = fw.hits.get_mut(&lpm(*a)) {
                    e.0 += 1;
                    e.1 += pkt.len() as u64;
                }
            }
        }
        fw.verify_hits(&format!("round {round}, short path"));
    }
}

/// Every leaf position of whole, half and quarter island blocks (the packed
/// leaves span three words), catch-all and protocol/port leaves alike, on
/// both paths: 8, 4 and 2 hosts alone in their /16s.
#[test]
fn every_leaf_of_an_island_block_is_found() {
    require_root();
    let mut fw = Fw::new("fw-isles");
    // (host, Some(port) for a UDP port rule, its id)
    let mut hosts: Vec<(Ipv4Addr, Option<u16>, u32)> = Vec::new();
    for (sixteen, n) in [(1u8, 8u8), (2, 4), (3, 2)] {
        for i in 0..n {
            let host = Ipv4Addr::new(10, sixteen, i * 30, i + 1);
            let port = (i % 2 == 1).then_some(1000 + u16::from(i));
            let id = fw.add1(&format!("{host}/32"), port.map(|_| "udp"), port);
            hosts.push((host, port, id));
        }
    }
    let runs = |fw: &mut Fw, short: bool| {
        for &(host, port, id) in &hosts {
            let [a, b, c, d] = host.octets();
            let cases = [
                (host, port.unwrap_or(7), id),
                (host, port.map_or(7, |p| p + 1), if port.is_some() { 0 } else { id }),
                (Ipv4Addr::new(a, b, c, d - 1), port.unwrap_or(7), 0),
                (Ipv4Addr::new(a, b, c, d + 1), port.unwrap_or(7), 0),
            ];
            for (src, dport, want) in cases {
                let pkt = from(&src.to_string(), udp(1, dport, &[0; 12]));
                let ctx = format!("{src} to port {dport}, short path {short}");
                if short {
                    let verdict = if want == 0 { XDP_PASS } else { XDP_DROP };
                    assert_eq!(fw.h.run(&pkt.bytes()).verdict, verdict, "{ctx}");
                    if let Some(e) = fw.hits.get_mut(&want) {
                        e.0 += 1;
                        e.1 += pkt.len() as u64;
                    }
                } else {
                    fw.check(&pkt, want, &ctx);
                }
            }
        }
    };
    runs(&mut fw, false);
    fw.verify_hits("islands");
    fw.h.set_features(&[Feature::Firewall]);
    runs(&mut fw, true);
    fw.verify_hits("islands, short path");
}

// ---- protocols and ports ---------------------------------------------------------

#[test]
fn protocol_only_rules() {
    require_root();
    let mut fw = Fw::new("fw-proto");
    let icmp4 = fw.add1("192.0.2.0/24", Some("icmp"), None);
    let icmp6_id = fw.add1("2001:db8:aa::/48", Some("icmpv6"), None);
    let gre = fw.add1("198.51.100.0/24", Some("47"), None);
    let udp_any = fw.add1("203.0.113.0/24", Some("udp"), None);
    let s4 = "192.0.2.10";
    // icmp on an IPv4 prefix is protocol 1.
    fw.check(&from(s4, icmp(8, 0)), icmp4, "icmp echo");
    fw.check(&from(s4, icmp(3, 3)), icmp4, "icmp unreachable");
    fw.check(&from(s4, udp(1, 2, b"")), 0, "udp");
    fw.check(&from(s4, tcp(1, 2)), 0, "tcp");
    fw.check(&from(s4, raw_l4(P_ICMPV6, &[128, 0, 0, 0])), 0, "protocol 58 over IPv4");
    // icmp on an IPv6 prefix is ICMPv6 (58), not 1.
    let s6 = "2001:db8:aa::a";
    fw.check(&from(s6, icmp6(128, 0)), icmp6_id, "icmpv6 echo");
    fw.check(&from(s6, icmp6(135, 0)), icmp6_id, "icmpv6 NS");
    fw.check(&from(s6, icmp(8, 0)), 0, "protocol 1 over IPv6");
    fw.check(&from(s6, udp(1, 2, b"")), 0, "udp6");
    // A numeric protocol without ports.
    fw.check(&from("198.51.100.1", raw_l4(P_GRE, &[0, 0, 8, 0])), gre, "gre");
    fw.check(&from("198.51.100.1", raw_l4(P_ESP, &[0; 8])), 0, "esp");
    // udp without a port: every port.
    for port in [1, 53, 65535] {
        fw.check(&from("203.0.113.7", udp(port, port, b"")), udp_any, &format!("udp {port}"));
    }
    fw.check(&from("203.0.113.7", udplite(1, 53, b"")), 0, "udplite is not udp");
    fw.check(&from("203.0.113.7", tcp(1, 53)), 0, "tcp");
    fw.verify_hits("proto");
}

#[test]
fn port_rules_match_the_destination_port_only() {
    require_root();
    let mut fw = Fw::new("fw-port");
    let dns = fw.add1("192.0.2.10/32", Some("udp"), Some(53));
    let https = fw.add1("192.0.2.10/32", Some("tcp"), Some(443));
    let ssh6 = fw.add1("2001:db8:aa::/64", Some("tcp"), Some(22));
    let diameter = fw.add1("192.0.2.10/32", Some("sctp"), Some(3868));
    let s = "192.0.2.10";
    fw.check(&from(s, udp(40000, 53, b"q")), dns, "udp to 53");
    fw.check(&from(s, udp(53, 40000, b"q")), 0, "udp from 53");
    fw.check(&from(s, udp(53, 54, b"q")), 0, "udp to 54");
    fw.check(&from(s, udp(53, 52, b"q")), 0, "udp to 52");
    fw.check(&from(s, tcp(40000, 53)), 0, "tcp to 53");
    fw.check(&from(s, sctp(40000, 53)), 0, "sctp to 53");
    fw.check(&from(s, tcp(40000, 443)), https, "tcp to 443");
    fw.check(&from(s, udp(40000, 443, b"quic")), 0, "udp to 443");
    fw.check(&from(s, tcp(443, 80)), 0, "tcp from 443");
    fw.check(&from(s, sctp(1, 3868)), diameter, "sctp to 3868");
    fw.check(&from(s, tcp(1, 3868)), 0, "tcp to 3868");
    fw.check(&from("192.0.2.11", udp(1, 53, b"")), 0, "other source");
    fw.check(&from("2001:db8:aa::1", tcp(1, 22)), ssh6, "tcp6 to 22");
    fw.check(&from("2001:db8:aa::1", udp(1, 22, b"")), 0, "udp6 to 22");
    fw.check(&from("2001:db8:aa::1", tcp(22, 2222)), 0, "tcp6 from 22");
    fw.check(&from("2001:db8:aa:1::1", tcp(1, 22)), 0, "tcp6 outside the /64");
    fw.verify_hits("ports");
}

#[test]
fn port_without_protocol_matches_tcp_udp_and_sctp() {
    require_root();
    let mut fw = Fw::new("fw-bare-port");
    let id = fw.add1("192.0.2.0/24", None, Some(53));
    let id6 = fw.add1("2001:db8::/32", None, Some(443));
    let s = "192.0.2.99";
    fw.check(&from(s, tcp(1, 53)), id, "tcp 53");
    fw.check(&from(s, udp(1, 53, b"")), id, "udp 53");
    fw.check(&from(s, sctp(1, 53)), id, "sctp 53");
    fw.check(&from(s, udplite(1, 53, b"")), 0, "udplite 53 (not in tcp/udp/sctp)");
    fw.check(&from(s, udp(1, 54, b"")), 0, "udp 54");
    fw.check(&from(s, tcp(53, 1)), 0, "tcp from 53");
    fw.check(&from(s, icmp(8, 0)), 0, "icmp");
    fw.check(&from("2001:db8::5", tcp(1, 443)), id6, "tcp6 443");
    fw.check(&from("2001:db8::5", udp(1, 443, b"")), id6, "udp6 443");
    fw.check(&from("2001:db8::5", sctp(1, 443)), id6, "sctp6 443");
    fw.check(&from("2001:db8::5", icmp6(128, 0)), 0, "icmpv6");
    // UDP-Lite has ports, and a rule can name it by number.
    let lite = fw.add1("192.0.2.0/24", Some("136"), Some(53));
    fw.check(&from(s, udplite(1, 53, b"")), lite, "udplite 53 by number");
    fw.check(&from(s, udp(1, 53, b"")), id, "udp 53 still the bare-port rule");
    fw.verify_hits("bare port");
}

// ---- live changes and counters -----------------------------------------------------

#[test]
fn deletion_takes_effect_on_the_next_packet() {
    require_root();
    let mut fw = Fw::new("fw-delete");
    let p = from("192.0.2.10", udp(1, 53, b"x"));
    fw.check(&p, 0, "no rule");
    let id = fw.add1("192.0.2.0/24", None, None);
    assert_eq!(id, 1);
    fw.check(&p, id, "added");
    fw.check(&p, id, "still there");
    fw.verify_hits("added");
    fw.delete(&[rule("192.0.2.0/24", None, None)]);
    fw.check(&p, 0, "deleted");
    fw.verify_hits("deleted");
    // Re-added: the lowest free id again, counters from zero.
    let id = fw.add1("192.0.2.0/24", None, None);
    assert_eq!(id, 1);
    fw.check(&p, id, "re-added");
    fw.verify_hits("re-added");

    // Deleting a more specific rule hands its addresses back to the ancestor
    // at once.
    let tcp8 = fw.add1("10.0.0.0/8", Some("tcp"), None);
    let any24 = fw.add1("10.1.2.0/24", None, None);
    let (u, t) = (from("10.1.2.3", udp(1, 2, b"")), from("10.1.2.3", tcp(1, 2)));
    fw.check(&u, any24, "/24 catch-all, udp");
    fw.check(&t, any24, "/24 catch-all, tcp");
    fw.delete(&[rule("10.1.2.0/24", None, None)]);
    fw.check(&u, 0, "/24 gone, udp");
    fw.check(&t, tcp8, "/24 gone, tcp");
    // Deleting by id.
    assert_eq!(fw.h.firewall().delete_ids(&[tcp8]).unwrap(), vec![tcp8]);
    fw.hits.remove(&tcp8);
    fw.check(&t, 0, "deleted by id");
    fw.verify_hits("end");
}

#[test]
fn rule_counters_and_interface_stats_are_exact() {
    require_root();
    let mut fw = Fw::new("fw-counters");
    let ids = fw.add(&[
        rule("10.0.0.0/8", None, None),
        rule("192.0.2.0/24", Some("udp"), Some(53)),
        rule("2001:db8::/32", Some("icmpv6"), None),
    ]);
    assert_eq!(ids, vec![1, 2, 3]);
    let mut sent = (0u64, 0u64); // packets, bytes
    let mut dropped = (0u64, 0u64);
    for i in 0..30usize {
        let payload = vec![0x42; i * 37 % 200];
        let (pkt, rule) = match i % 6 {
            0 => (from("10.1.2.3", udp(1, 53, &payload)), 1),
            1 => (from("10.200.0.1", tcp(1, 80)), 1),
            2 => (from("192.0.2.5", udp(1, 53, &payload)), 2),
            3 => (from("192.0.2.5", udp(1, 54, &payload)), 0),
            4 => (from("2001:db8::7", icmp_msg(P_ICMPV6, 128, 0)), 3),
            _ => (from("2001:db9::7", udp(1, 53, &payload)), 0),
        };
        fw.check(&pkt, rule, &format!("packet {i}"));
        sent.0 += 1;
        sent.1 += pkt.len() as u64;
        if rule != 0 {
            dropped.0 += 1;
            dropped.1 += pkt.len() as u64;
        }
    }
    fw.verify_hits("after 30 packets");
    assert_eq!(fw.hits[&1].0, 10);
    assert_eq!(fw.hits[&2].0, 5);
    assert_eq!(fw.hits[&3].0, 5);
    let s = fw.h.stats();
    assert_eq!((s.seen, s.bytes_seen), sent);
    assert_eq!((s.dropped, s.bytes_dropped), dropped);
    assert_eq!((s.events_sent, s.events_lost, s.non_ip, s.truncated), (sent.0, 0, 0, 0));

    // A deleted rule's counters go with it; its id, reused, starts from 0.
    fw.delete(&[rule("192.0.2.0/24", Some("udp"), Some(53))]);
    assert_eq!(fw.add1("192.0.2.0/24", Some("udp"), Some(54)), 2);
    fw.verify_hits("id 2 reused");
    fw.check(&from("192.0.2.5", udp(1, 54, b"")), 2, "new rule 2");
    fw.check(&from("192.0.2.5", udp(1, 53, b"")), 0, "old rule 2 gone");
    fw.verify_hits("end");
}

#[test]
fn features_switch_firewall_and_monitor_independently() {
    require_root();
    let mut fw = Fw::new("fw-features");
    let id = fw.add1("192.0.2.0/24", None, None);
    let p = from("192.0.2.1", udp(1, 2, b""));
    // Monitor only: the rule is not consulted, the event says pass.
    fw.h.set_features(&[Feature::Monitor]);
    fw.check(&p, 0, "firewall off");
    fw.verify_hits("firewall off");
    // Firewall only: dropped and counted, no event.
    fw.h.set_features(&[Feature::Firewall]);
    let r = fw.h.run(&p.bytes());
    assert_eq!((r.verdict, r.event.is_none()), (XDP_DROP, true));
    fw.hits.get_mut(&id).unwrap().0 += 1;
    fw.hits.get_mut(&id).unwrap().1 += p.len() as u64;
    fw.verify_hits("monitor off");
    fw.h.set_features(&[Feature::Firewall, Feature::Monitor]);
    fw.check(&p, id, "both");
    fw.verify_hits("both");
    let s = fw.h.stats();
    assert_eq!((s.seen, s.dropped, s.events_sent), (3, 2, 2));
}

/// With the firewall alone on, the dispatcher takes a short path for common
/// IPv4 frames (TCP, UDP, ICMP; no tag, options or fragment). It must decide
/// exactly as the general path (taken here with the monitor on too): same
/// verdict, same rule counted with the same bytes, same interface counters;
/// and the frames it does not take must still be filtered.
#[test]
fn short_path_agrees_with_the_general_path() {
    require_root();
    let mut fw = Fw::new("fw-short");
    fw.add(&[
        rule("10.0.0.0/8", None, None),
        rule("10.1.0.0/16", Some("udp"), Some(53)),
        rule("10.1.2.0/24", Some("tcp"), None),
        rule("192.0.2.0/24", Some("tcp"), Some(443)),
        rule("192.0.2.128/25", Some("icmp"), None),
        rule("192.0.2.200/32", None, Some(53)),
        rule("198.51.100.7", None, None),
        rule("2001:db8::/32", None, None),
    ]);
    let sources = ["10.9.9.9", "10.1.7.7", "10.1.2.3", "192.0.2.1", "192.0.2.130", "192.0.2.200", "198.51.100.7", "198.51.100.8", "203.0.113.1"];
    let mut frames: Vec<(String, Vec<u8>, bool)> = Vec::new(); // (name, frame, common)
    for src in sources {
        for (name, l4) in [
            // At least 20 bytes of transport header and payload: the short
            // path takes only frames that long (shorter ones are below).
            ("udp/53", udp(5353, 53, &[7; 12])),
            ("udp/54", udp(53, 54, &[0; 30])),
            ("udp/53 short", udp(5353, 53, b"q")),
            ("tcp/443", tcp(1, 443)),
            ("tcp/80", tcp(443, 80)),
            ("icmp", icmp_len(8, 0, 16)),
            ("icmp short", icmp(8, 0)),
            ("sctp/53", sctp(1, 53)),
        ] {
            let p = from(src, l4);
            frames.push((format!("{src} {name}"), p.bytes(), !name.contains("short") && name != "sctp/53"));
            // Frames the short path must leave to the general one.
            frames.push((format!("{src} {name} vlan"), p.clone().tag(0x8100, 7).bytes(), false));
            frames.push((format!("{src} {name} options"), p.clone().ihl(6, &[1, 1, 1, 1]).bytes(), false));
            frames.push((format!("{src} {name} first fragment"), p.clone().frag_field(0x2000).bytes(), false));
            let whole = p.bytes();
            frames.push((format!("{src} {name} cut in l4"), whole[..whole.len().min(14 + 20 + 10)].to_vec(), false));
        }
    }
    frames.push(("v6 udp".into(), from("2001:db8::1", udp(1, 53, b"")).bytes(), false));
    let hits = |fw: &Fw| -> BTreeMap<u32, (u64, u64)> {
        fw.h.firewall().list().unwrap().iter().map(|r| (r.id, (r.packets, r.bytes))).collect()
    };
    let counters = |s: netray_ebpf::abi::nr_if_stats| (s.seen, s.bytes_seen, s.dropped, s.bytes_dropped, s.non_ip, s.truncated);
    let delta = |a: (u64, u64, u64, u64, u64, u64), b: (u64, u64, u64, u64, u64, u64)| {
        (b.0 - a.0, b.1 - a.1, b.2 - a.2, b.3 - a.3, b.4 - a.4, b.5 - a.5)
    };
    let mut short_drops = 0;
    for (ctx, frame, common) in &frames {
        let mut seen = Vec::new();
        for features in [&[Feature::Firewall][..], &[Feature::Firewall, Feature::Monitor][..]] {
            fw.h.set_features(features);
            let (h0, s0) = (hits(&fw), counters(fw.h.stats()));
            let r = fw.h.run(frame);
            let (h1, s1) = (hits(&fw), counters(fw.h.stats()));
            let counted: Vec<(u32, u64, u64)> = h1
                .iter()
                .filter(|(id, c)| h0[id] != **c)
                .map(|(id, c)| (*id, c.0 - h0[id].0, c.1 - h0[id].1))
                .collect();
            if let Some(e) = r.event {
                let want = if e.rule_id == 0 { vec![] } else { vec![(e.rule_id, 1, frame.len() as u64)] };
                assert_eq!(counted, want, "{ctx}: the rule counted is the one in the event");
            }
            seen.push((r.verdict, counted, delta(s0, s1)));
        }
        assert_eq!(seen[0], seen[1], "{ctx}: short path (firewall alone) vs general path (with monitor)");
        assert!(seen[0].0 == XDP_DROP || seen[0].0 == XDP_PASS, "{ctx}: verdict {}", seen[0].0);
        if *common && seen[0].0 == XDP_DROP {
            short_drops += 1;
        }
    }
    // Every rule kind was hit on the short path, not only misses.
    assert!(short_drops >= 16, "only {short_drops} common frames were dropped");
}

/// The short path adds a hit to its rule's counter when the same CPU decides
/// its next packet (struct nr_fw_pending); until then readers add it
/// themselves. A deleted rule's pending hit must never land on a new rule:
/// its id is not reused while the hit is pending.
/// Pending hits and packed counters are per CPU: runs every packet of the
/// calling test on CPU 0, so the packet meant to take a pending hit runs where
/// that hit waits. (Tests run on their own threads; this pins only this one.)
fn run_on_cpu0() {
    // SAFETY: a zeroed cpu_set_t is valid; the calls only read it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set), 0, "pinning to CPU 0");
    }
}

#[test]
fn pending_hits_are_counted_and_never_move_to_a_new_rule() {
    require_root();
    let mut fw = Fw::short_path_on_cpu0("fw-pending");
    let a = fw.add1("192.0.2.0/24", None, None);
    // Long enough for the short path (20 bytes of transport header and payload).
    let hit = from("192.0.2.1", udp(1, 2, &[1; 12]));
    let miss = from("198.51.100.1", udp(1, 2, &[2; 12]));
    assert_eq!(fw.h.run(&hit.bytes()).verdict, XDP_DROP);
    fw.hits.insert(a, (1, hit.len() as u64));
    fw.verify_hits("a hit still pending is listed");
    assert_eq!(fw.h.run(&miss.bytes()).verdict, XDP_PASS);
    fw.verify_hits("the pending hit was added by the next packet");
    assert_eq!(fw.h.run(&hit.bytes()).verdict, XDP_DROP);
    // Delete the rule while its hit is pending: the next rule gets another id.
    fw.delete(&[rule("192.0.2.0/24", None, None)]);
    let b = fw.add1("203.0.113.0/24", None, None);
    assert_ne!(b, a, "the id of a rule with a pending hit was reused");
    fw.verify_hits("new rule, nothing counted");
    // Once a packet has taken the pending hit, the id is free again, and the
    // rule that gets it starts from zero.
    assert_eq!(fw.h.run(&miss.bytes()).verdict, XDP_PASS);
    let c = fw.add1("192.0.2.0/24", Some("tcp"), None);
    assert_eq!(c, a);
    fw.verify_hits("reused id starts from zero");
    assert_eq!(fw.h.run(&from("192.0.2.9", tcp(1, 2)).bytes()).verdict, XDP_DROP);
    fw.hits.insert(c, (1, from("192.0.2.9", tcp(1, 2)).len() as u64));
    fw.verify_hits("end");
}

/// The short path remembers each CPU's last source and the leaf the walk
/// found for it (struct nr_fw_pending): the same source again is decided
/// without the walk, with its own protocol and port, and any rule change is
/// seen by the very next packet.
#[test]
fn a_remembered_source_follows_rule_changes_and_ports() {
    require_root();
    let mut fw = Fw::short_path_on_cpu0("fw-last-src");
    let udp53 = from("192.0.2.7", udp(1, 53, &[0; 12]));
    let udp54 = from("192.0.2.7", udp(1, 54, &[0; 12]));
    let tcp53 = from("192.0.2.7", tcp(1, 53));
    let other = from("192.0.2.8", udp(1, 53, &[0; 12]));
    let verdicts = |fw: &Fw| -> Vec<u32> {
        [&udp53, &udp53, &udp54, &udp54, &tcp53, &udp53, &other, &other, &udp53]
            .iter()
            .map(|p| fw.h.run(&p.bytes()).verdict)
            .collect()
    };
    let (d, p) = (XDP_DROP, XDP_PASS);
    assert_eq!(verdicts(&fw), [p, p, p, p, p, p, p, p, p], "no rules");
    let port = fw.add1("192.0.2.0/24", Some("udp"), Some(53));
    assert_eq!(verdicts(&fw), [d, d, p, p, p, d, d, d, d], "udp 53 from the /24");
    let host = fw.add1("192.0.2.7/32", None, None);
    assert_eq!(verdicts(&fw), [d, d, d, d, d, d, d, d, d], "and everything from .7");
    fw.delete(&[rule("192.0.2.7/32", None, None)]);
    assert_eq!(verdicts(&fw), [d, d, p, p, p, d, d, d, d], "the /32 deleted");
    fw.delete(&[rule("192.0.2.0/24", Some("udp"), Some(53))]);
    assert_eq!(verdicts(&fw), [p, p, p, p, p, p, p, p, p], "all deleted");
    assert_ne!(port, host);
}

/// A packed hit counter (struct nr_rule_counter) whose packets or bytes field
/// would pass half its range is spilled into the rule's wide counter: the
/// totals stay exact, and the packed word starts again from zero. A jumbo
/// frame is counted in the wide counter at once.
#[test]
fn packed_hit_counters_spill_into_wide_ones_exactly() {
    require_root();
    let mut fw = Fw::short_path_on_cpu0("fw-spill");
    let a = fw.add1("192.0.2.0/24", None, None);
    let small = from("192.0.2.1", udp(1, 2, &[1; 12]));
    let jumbo = from("192.0.2.1", udp(1, 2, &[1; 2100]));
    let miss = from("198.51.100.1", udp(1, 2, &[2; 12]));
    let dir = fw.h.tmp.pin.fw_dir();
    let open = |name: &str| netray_core::maps::open_pinned(&dir.join(name)).unwrap();
    let mut hits = netray_core::maps::MmapArray::<nr_rule_hits>::new(&open(netray_core::map_names::FW_RULE_HITS)).unwrap();
    let wide = netray_core::maps::MmapArray::<nr_rule_counter>::new(&open(netray_core::map_names::FW_RULE_STATS)).unwrap();
    // CPU 0's counter of rule a.
    let i = a as usize;
    const BYTE_BITS: u32 = 20;
    let send_one = |fw: &mut Fw, hit: &Pkt| {
        assert_eq!(fw.h.run(&hit.bytes()).verdict, XDP_DROP);
        // The next packet adds the pending hit.
        assert_eq!(fw.h.run(&miss.bytes()).verdict, XDP_PASS);
    };
    let len = small.len() as u32;
    // (packets, bytes) already in the packed word, the packet, and where it
    // is counted: in the packed word, by a spill, or in the wide counter.
    let cases = [
        ((1 << 11) - 2, 100, &small, "packed"),
        ((1 << 11) - 1, 100, &small, "spill"),
        (3, (1 << 19) - len - 1, &small, "packed"),
        (3, (1 << 19) - len, &small, "spill"),
        (5, 1000, &jumbo, "wide"),
    ];
    let (mut wide_p, mut wide_b) = (0u64, 0u64);
    for (packets, bytes, pkt, how) in cases {
        let ctx = format!("{packets} packets, {bytes} bytes, a {}-byte packet", pkt.len());
        hits.slice_mut()[i / 16].word[i % 16] = packets << BYTE_BITS | bytes;
        fw.hits.insert(a, (u64::from(packets) + wide_p, u64::from(bytes) + wide_b));
        fw.verify_hits(&format!("{ctx}: set"));
        send_one(&mut fw, pkt);
        let (p, b) = (packets + 1, bytes + pkt.len() as u32);
        let packed = match how {
            "packed" => p << BYTE_BITS | b,
            "spill" => {
                (wide_p, wide_b) = (wide_p + u64::from(p), wide_b + u64::from(b));
                0
            }
            _ => {
                (wide_p, wide_b) = (wide_p + 1, wide_b + pkt.len() as u64);
                packets << BYTE_BITS | bytes
            }
        };
        assert_eq!(hits.read(i / 16).word[i % 16], packed, "{ctx}: the packed word ({how})");
        let w = wide.read(i);
        assert_eq!((w.packets, w.bytes), (wide_p, wide_b), "{ctx}: the wide counter ({how})");
        fw.hits.insert(a, (wide_p + u64::from(packed >> BYTE_BITS), wide_b + u64::from(packed & ((1 << BYTE_BITS) - 1))));
        fw.verify_hits(&format!("{ctx}: counted"));
    }
}

// ---- what the parser can see ---------------------------------------------------------------

#[test]
fn truncated_frames_are_dropped_once_the_source_is_visible() {
    require_root();
    // (frame, rule, first length at which the rule can decide). A source
    // rule decides once the whole IP header is there; a port rule once the
    // first 4 L4 bytes are (even if the rest of the header is cut); a
    // protocol rule as soon as the IP header gives the protocol.
    let cases: Vec<(&str, Pkt, Rule, usize)> = vec![
        ("udp4, source", v4(A4, B4, udp(5353, 53, b"payload")), rule("192.0.2.10/32", None, None), 34),
        ("udp4, udp 53", v4(A4, B4, udp(5353, 53, b"payload")), rule("192.0.2.0/24", Some("udp"), Some(53)), 38),
        ("tcp4, source", v4(A4, B4, tcp(40000, 443)), rule("192.0.2.0/24", None, None), 34),
        ("tcp4, tcp 443", v4(A4, B4, tcp(40000, 443)), rule("192.0.2.10/32", Some("tcp"), Some(443)), 38),
        ("tcp4, port 443", v4(A4, B4, tcp(40000, 443)), rule("192.0.2.10/32", None, Some(443)), 38),
        ("icmp4, source", v4(A4, B4, icmp(8, 0)), rule("0.0.0.0/0", None, None), 34),
        ("icmp4, icmp", v4(A4, B4, icmp(8, 0)), rule("192.0.2.10/32", Some("icmp"), None), 34),
        ("udp6, source", v6(A6, B6, vec![], udp(546, 547, b"dhcp")), rule("2001:db8:aa::a/128", None, None), 54),
        ("udp6, udp 547", v6(A6, B6, vec![], udp(546, 547, b"dhcp")), rule("2001:db8::/32", Some("udp"), Some(547)), 58),
        ("udp6, udp", v6(A6, B6, vec![], udp(546, 547, b"dhcp")), rule("::/0", Some("udp"), None), 54),
        (
            "qinq udp4, source",
            v4(A4, B4, udp(1, 53, b"")).tag(TPID_8021AD, 10).tag(TPID_8021Q, 20),
            rule("192.0.2.10/32", None, None),
            42,
        ),
        (
            "ipv6 ext udp, udp 53",
            v6(A6, B6, vec![Ext::hop(1), Ext::frag(0, true)], udp(1, 53, b"")),
            rule("2001:db8:aa::a/128", Some("udp"), Some(53)),
            82,
        ),
    ];
    // One harness (and one short-frame runner) for all: each case adds its
    // rule, sweeps, and deletes it again.
    let mut fw = Fw::new("fw-trunc");
    let any = AnyLen::new(&fw.h);
    for (name, pkt, r, first) in cases {
        let id = fw.h.firewall().add(std::slice::from_ref(&r)).unwrap()[0];
        let before = fw.h.stats();
        let frame = pkt.bytes();
        let mut drops = Vec::new();
        for n in 0..=frame.len() {
            let ctx = format!("{name}: cut at {n}");
            let (verdict, got) = any.run(&frame[..n], &ctx);
            let want = if n >= first { pkt.expect(n).dropped_by(id) } else { pkt.expect(n) };
            assert_eq!(got, want, "{ctx}");
            assert_eq!(verdict, if n >= first { XDP_DROP } else { XDP_PASS }, "{ctx}: verdict");
            if verdict == XDP_DROP {
                drops.push(n as u64);
            }
        }
        fw.hits.insert(id, (drops.len() as u64, drops.iter().sum()));
        fw.verify_hits(name);
        assert_eq!(drops.first().copied(), Some(first as u64), "{name}: first drop");
        assert_eq!(drops.len(), frame.len() + 1 - first, "{name}: every length from the first drop on");
        let after = fw.h.stats();
        assert_eq!(after.seen - before.seen, frame.len() as u64 + 1, "{name}: seen");
        assert_eq!(after.dropped - before.dropped, drops.len() as u64, "{name}: dropped");
        assert_eq!(after.bytes_dropped - before.bytes_dropped, drops.iter().sum::<u64>(), "{name}: bytes_dropped");
        fw.h.firewall().delete(&[r]).unwrap();
        fw.hits.remove(&id);
    }
}

#[test]
fn fragments_and_rules() {
    require_root();
    let mut fw = Fw::new("fw-frag");
    let port = fw.add1("192.0.2.1/32", Some("udp"), Some(53));
    let proto = fw.add1("192.0.2.2/32", Some("udp"), None);
    let any = fw.add1("198.51.100.0/24", None, None);
    let bare = fw.add1("192.0.2.4/32", None, Some(53));
    // What a later fragment starts with: the middle of the datagram, which
    // here happens to look like a header to port 53.
    let looks_like_53 = || raw_l4(P_UDP, &[0x04, 0xd2, 0x00, 0x35, 0, 16, 0, 0]);
    let first = |src: &str| from(src, udp(1234, 53, b"first part")).frag(0, true);
    let later = |src: &str| from(src, looks_like_53()).frag(185, false);

    fw.check(&first("192.0.2.1"), port, "first fragment, port rule");
    fw.check(&later("192.0.2.1"), 0, "later fragment, port rule");
    fw.check(&first("192.0.2.2"), proto, "first fragment, proto rule");
    fw.check(&later("192.0.2.2"), proto, "later fragment, proto rule");
    fw.check(&from("192.0.2.2", raw_l4(P_TCP, &[0; 8])).frag(10, true), 0, "later tcp fragment, udp rule");
    fw.check(&first("198.51.100.3"), any, "first fragment, catch-all");
    fw.check(&later("198.51.100.3"), any, "later fragment, catch-all");
    fw.check(&first("192.0.2.4"), bare, "first fragment, bare port");
    fw.check(&later("192.0.2.4"), 0, "later fragment, bare port");

    // The same through the IPv6 fragment header.
    let port6 = fw.add1("2001:db8:1::1/128", Some("udp"), Some(53));
    let proto6 = fw.add1("2001:db8:1::2/128", Some("udp"), None);
    let any6 = fw.add1("2001:db8:2::/64", None, None);
    let first6 = |src: &str| v6(ip6(src), B6, vec![Ext::frag(0, true)], udp(1234, 53, b"first part"));
    let later6 = |src: &str| v6(ip6(src), B6, vec![Ext::frag(185, false)], looks_like_53());
    fw.check(&first6("2001:db8:1::1"), port6, "v6 first fragment, port rule");
    fw.check(&later6("2001:db8:1::1"), 0, "v6 later fragment, port rule");
    fw.check(&first6("2001:db8:1::2"), proto6, "v6 first fragment, proto rule");
    fw.check(&later6("2001:db8:1::2"), proto6, "v6 later fragment, proto rule");
    fw.check(&first6("2001:db8:2::9"), any6, "v6 first fragment, catch-all");
    fw.check(&later6("2001:db8:2::9"), any6, "v6 later fragment, catch-all");
    fw.verify_hits("fragments");
}

#[test]
fn vlan_tagged_traffic_is_filtered() {
    require_root();
    let mut fw = Fw::new("fw-vlan");
    let any4 = fw.add1("192.0.2.10/32", None, None);
    let dns6 = fw.add1("2001:db8:aa::/48", Some("udp"), Some(53));
    let u4 = || v4(A4, B4, udp(1, 2, b""));
    let d6 = |port| v6(A6, B6, vec![], udp(1, port, b""));
    fw.check(&u4().tag(TPID_8021Q, 100), any4, "802.1Q");
    fw.check(&u4().tag(TPID_8021AD, 200), any4, "802.1ad");
    fw.check(&u4().tag(TPID_8021AD, 10).tag(TPID_8021Q, 20), any4, "QinQ");
    fw.check(&u4().tag(TPID_8021AD, 1).tag(TPID_8021Q, 2).tag(TPID_8021Q, 3), 0, "three tags: not parsed");
    fw.check(&v4(B4, A4, udp(1, 2, b"")).tag(TPID_8021Q, 100), 0, "other source, tagged");
    fw.check(&d6(53).tag(TPID_8021Q, 7), dns6, "v6 802.1Q");
    fw.check(&d6(53).tag(TPID_8021AD, 10).tag(TPID_8021Q, 20), dns6, "v6 QinQ");
    fw.check(&d6(54).tag(TPID_8021AD, 10).tag(TPID_8021Q, 20), 0, "v6 QinQ, other port");
    fw.verify_hits("vlan");
}

#[test]
fn ipv6_extension_chains_and_rules() {
    require_root();
    let mut fw = Fw::new("fw-ext");
    let dns = fw.add1("2001:db8:aa::a/128", Some("udp"), Some(53));
    let any = fw.add1("2001:db8:bb::/48", None, None);
    let chain = |n: usize| vec![Ext::dest(0); n];
    fw.check(&v6(A6, B6, vec![Ext::hop(0)], udp(1, 53, b"")), dns, "hop-by-hop");
    fw.check(&v6(A6, B6, vec![Ext::hop(0), Ext::routing(2), Ext::ah(3)], udp(1, 53, b"")), dns, "three");
    fw.check(&v6(A6, B6, chain(8), udp(1, 53, b"")), dns, "eight: the parser's limit");
    // Nine: the walk stops, l4_proto is the ninth header's type: the port
    // rule does not see this UDP packet to port 53 (see the report).
    fw.check(&v6(A6, B6, chain(9), udp(1, 53, b"")), 0, "nine: past the limit");
    fw.check(&v6(A6, B6, vec![Ext::hop(0), Ext::frag(3, false)], raw_l4(P_UDP, &[0, 1, 0, 53])), 0, "later fragment");
    // A catch-all does not depend on the walk.
    fw.check(&v6(B6, A6, chain(9), udp(1, 53, b"")), any, "nine, catch-all");
    fw.check(&v6(B6, A6, vec![Ext::hop(0)], raw_l4(P_ESP, &[0; 8])), any, "esp, catch-all");
    fw.verify_hits("ext");
}

#[test]
fn malformed_ipv4_headers_and_rules() {
    require_root();
    // IHL < 5: addresses and protocol are reported, ports are not. So
    // source and protocol rules apply, port rules do not. The same for an
    // IHL that runs past the end of the frame.
    let mut fw = Fw::new("fw-ihl");
    let any = fw.add1("192.0.2.1/32", None, None);
    let proto = fw.add1("192.0.2.2/32", Some("udp"), None);
    let port = fw.add1("192.0.2.3/32", Some("udp"), Some(53));
    let pkt = |src: &str, ihl: u8, options: &[u8]| v4(ip4(src), B4, udp(1, 53, b"x")).ihl(ihl, options);
    for ihl in [0u8, 4] {
        fw.check(&pkt("192.0.2.1", ihl, &[]), any, &format!("ihl {ihl}, catch-all"));
        fw.check(&pkt("192.0.2.2", ihl, &[]), proto, &format!("ihl {ihl}, proto rule"));
        fw.check(&pkt("192.0.2.3", ihl, &[]), 0, &format!("ihl {ihl}, port rule"));
    }
    fw.check(&pkt("192.0.2.2", 15, &[1; 8]), proto, "ihl 15 cut, proto rule");
    fw.check(&pkt("192.0.2.3", 15, &[1; 8]), 0, "ihl 15 cut, port rule");
    fw.check(&pkt("192.0.2.3", 15, &[1; 40]), port, "ihl 15, port rule");
    fw.verify_hits("ihl");
}
