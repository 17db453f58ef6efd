//! The compiler against a brute-force definition of the rules, and its
//! layouts block by block.

use std::net::IpAddr;

use rand::{rngs::StdRng, Rng, SeedableRng};

use super::walk::{block_pick, isles_pick};
use super::*;

fn rule(s: &str, proto: Option<&str>, port: Option<u16>) -> Rule {
    Rule::parse(s, proto, port, None).unwrap()
}

fn bytes(a: &str) -> Vec<u8> {
    match a.parse::<IpAddr>().unwrap() {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The obvious, slow definition (see compile): of the covering rules that
/// match the protocol and port, the longest prefix wins, then a port rule
/// over a protocol rule over a catch-all, then deny over allow, then the
/// lowest id.
fn brute(rules: &[(u32, Rule)], addr: &[u8], proto: u8, dport: Option<u16>) -> u32 {
    let ip: IpAddr = if addr.len() == 4 {
        IpAddr::from(<[u8; 4]>::try_from(addr).unwrap())
    } else {
        IpAddr::from(<[u8; 16]>::try_from(addr).unwrap())
    };
    rules
        .iter()
        .filter(|(_, r)| r.net.contains(&ip))
        .filter_map(|(id, r)| {
            let protos = r.proto_numbers();
            let spec = match (protos.is_empty(), r.port) {
                (true, _) => 0,
                (false, None) if protos.contains(&proto) => 1,
                (false, Some(p)) if protos.contains(&proto) && dport == Some(p) => 2,
                _ => return None,
            };
            Some(((r.net.prefix_len(), spec, !r.allow, std::cmp::Reverse(*id)), *id))
        })
        .max()
        .map_or(0, |(_, id)| id)
}

#[test]
fn longest_prefix_and_protocol_rules() {
    let rules = vec![
        (1, rule("10.0.0.0/8", Some("udp"), Some(53))),
        (2, rule("10.1.0.0/16", None, None)),
        (3, rule("10.1.2.128/25", Some("tcp"), None)),
        (4, rule("192.0.2.7", None, None)),
        (5, rule("2001:db8::/32", Some("icmpv6"), None)),
        (6, rule("2001:db8:1::/48", None, Some(22))),
    ];
    let c = compile(&rules, Capacity::UNLIMITED).unwrap();
    assert_eq!(c.decide(&bytes("10.9.9.9"), 17, Some(53)), 1);
    assert_eq!(c.decide(&bytes("10.9.9.9"), 17, Some(54)), 0);
    assert_eq!(c.decide(&bytes("10.9.9.9"), 6, Some(53)), 0);
    assert_eq!(c.decide(&bytes("10.1.2.3"), 6, Some(80)), 2);
    assert_eq!(
        c.decide(&bytes("10.1.2.200"), 6, Some(80)),
        3,
        "the most specific rule decides: the /25's tcp rule, not the /16's catch-all"
    );
    assert_eq!(
        c.decide(&bytes("10.1.2.200"), 17, Some(80)),
        2,
        "a catch-all on an ancestor still applies to the other protocols"
    );
    assert_eq!(c.decide(&bytes("192.0.2.7"), 1, None), 4);
    assert_eq!(c.decide(&bytes("192.0.2.8"), 1, None), 0);
    assert_eq!(c.decide(&bytes("2001:db8:5::1"), 58, None), 5);
    assert_eq!(
        c.decide(&bytes("2001:db8:1::1"), 58, None),
        5,
        "inherited from the /32"
    );
    assert_eq!(c.decide(&bytes("2001:db8:1::1"), 6, Some(22)), 6);
    assert_eq!(c.decide(&bytes("2001:db8:1::1"), 6, Some(23)), 0);
    assert_eq!(c.decide(&bytes("2001:db9::1"), 58, None), 0);
}

#[test]
fn allow_rules_the_most_specific_decides_and_deny_wins_a_tie() {
    let rules = vec![
        (1, rule("10.0.0.0/8", None, None)),
        (2, rule("10.1.0.0/16", None, None).allowing()),
        (3, rule("10.1.2.0/24", Some("tcp"), Some(22))),
        (4, rule("10.1.2.0/24", Some("tcp"), Some(22)).allowing()),
        (5, rule("10.1.3.0/24", Some("udp"), None).allowing()),
        (6, rule("10.1.3.0/24", Some("udp"), Some(53))),
        (7, rule("10.1.4.0/24", None, None).allowing()),
        (8, rule("10.1.4.0/24", None, None)),
    ];
    let c = compile(&rules, Capacity::UNLIMITED).unwrap();
    assert_eq!(c.decide(&bytes("10.9.9.9"), 17, Some(1)), 1, "the /8 denies");
    assert_eq!(c.decide(&bytes("10.1.9.9"), 17, Some(1)), 2, "the /16 inside it allows");
    assert_eq!(c.decide(&bytes("10.1.2.3"), 6, Some(22)), 3, "deny wins the tie with its twin allow rule");
    assert_eq!(c.decide(&bytes("10.1.2.3"), 6, Some(23)), 2, "other ports: the /16's allow rule");
    assert_eq!(c.decide(&bytes("10.1.3.3"), 17, Some(53)), 6, "a port rule beats a protocol rule");
    assert_eq!(c.decide(&bytes("10.1.3.3"), 17, Some(54)), 5);
    assert_eq!(c.decide(&bytes("10.1.3.3"), 6, Some(80)), 2, "other protocols: the catch-all behind the match");
    assert_eq!(c.decide(&bytes("10.1.4.4"), 1, None), 8, "catch-all twins: deny wins");
}

#[test]
fn default_routes_and_host_routes() {
    let rules = vec![
        (1, rule("0.0.0.0/0", Some("tcp"), Some(23))),
        (2, rule("::/0", None, None)),
        (3, rule("1.2.3.4", None, None)),
    ];
    let c = compile(&rules, Capacity::UNLIMITED).unwrap();
    assert_eq!(c.decide(&bytes("8.8.8.8"), 6, Some(23)), 1);
    assert_eq!(c.decide(&bytes("1.2.3.4"), 6, Some(23)), 3);
    assert_eq!(c.decide(&bytes("1.2.3.5"), 17, Some(23)), 0);
    assert_eq!(c.decide(&bytes("fe80::1"), 17, None), 2);
}

#[test]
fn matches_brute_force_on_random_rule_sets() {
    let mut rng = StdRng::seed_from_u64(7);
    for round in 0..20 {
        let mut rules = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while rules.len() < 200 {
            let v6 = rng.random_bool(0.3);
            // Addresses from a small space so prefixes nest and collide.
            let len = if v6 {
                rng.random_range(0..=128u8)
            } else {
                rng.random_range(0..=32u8)
            };
            let base = if v6 {
                let mut o = [0u8; 16];
                o[0] = 0x20;
                o[1] = rng.random_range(0..4);
                o[15] = rng.random_range(0..8);
                IpAddr::from(o)
            } else {
                IpAddr::from([
                    10,
                    rng.random_range(0..4),
                    rng.random_range(0..4),
                    rng.random_range(0..8),
                ])
            };
            let net = ipnet::IpNet::new(base, len).unwrap().trunc();
            let (proto, port) = match rng.random_range(0..4) {
                0 => (None, None),
                1 => (Some("udp"), Some(rng.random_range(1..4u16))),
                2 => (Some(if net.addr().is_ipv4() { "icmp" } else { "icmpv6" }), None),
                _ => (None, Some(rng.random_range(1..4u16))),
            };
            let mut r = Rule::parse(&net.to_string(), proto, port, None).unwrap();
            // Allow rules among them, some with the same match as a deny rule.
            if rng.random_bool(0.3) {
                r = r.allowing();
            }
            if seen.insert(r.clone()) {
                rules.push((rules.len() as u32 + 1, r));
            }
        }
        let c = compile(&rules, Capacity::UNLIMITED).unwrap();
        for _ in 0..2000 {
            let addr: Vec<u8> = if rng.random_bool(0.3) {
                let mut o = vec![0u8; 16];
                o[0] = 0x20;
                o[1] = rng.random_range(0..4);
                o[15] = rng.random_range(0..8);
                o
            } else {
                vec![
                    10,
                    rng.random_range(0..4),
                    rng.random_range(0..4),
                    rng.random_range(0..8),
                ]
            };
            let proto = [6u8, 17, 1, 58, 132][rng.random_range(0..5)];
            let dport =
                (proto == 6 || proto == 17 || proto == 132).then(|| rng.random_range(1..4u16));
            assert_eq!(
                c.decide(&addr, proto, dport),
                brute(&rules, &addr, proto, dport),
                "round {round}: addr {addr:?} proto {proto} dport {dport:?}"
            );
        }
    }
}

#[test]
fn directions_have_their_own_tries() {
    let r = |s: &str, dir: &str| Rule::parse(s, None, None, Some(dir)).unwrap();
    let rules = vec![
        (1, r("10.0.0.0/8", "in")),
        (2, r("10.1.0.0/16", "out")),
        (3, r("2001:db8::/32", "both")),
    ];
    let c = compile(&rules, Capacity::UNLIMITED).unwrap();
    assert_eq!(c.decide_dir(&bytes("10.1.2.3"), 6, Some(1), false), 1);
    assert_eq!(c.decide_dir(&bytes("10.1.2.3"), 6, Some(1), true), 2);
    assert_eq!(c.decide_dir(&bytes("10.2.2.3"), 6, Some(1), true), 0);
    assert_eq!(c.decide_dir(&bytes("2001:db8::1"), 17, Some(1), false), 3);
    assert_eq!(c.decide_dir(&bytes("2001:db8::1"), 17, Some(1), true), 3);
}

#[test]
fn capacity_is_enforced() {
    let rules: Vec<_> = (0..10u32)
        .map(|i| (i + 1, rule(&format!("10.{i}.0.1"), None, None)))
        .collect();
    let c = compile(&rules, Capacity::UNLIMITED).unwrap();
    // Each /32 alone in its /16: one wide quarter block (3 runs) each,
    // four to an element.
    assert_eq!((c.chunks.len(), c.ranges.len()), (ROOT_CHUNKS, 3));
    let cap = |chunks, ranges, matches| Capacity {
        chunks,
        ranges,
        matches,
    };
    assert!(matches!(
        compile(&rules, cap(10_000, 2, 100)),
        Err(CompileError::RangesFull { needed: 3, .. })
    ));
    assert!(matches!(
        compile(&rules, cap(10_000, 100, 5)),
        Err(CompileError::MatchesFull { .. })
    ));
    // 20 hosts in one /24 make 41 runs: a dense chunk under a byte-wide
    // range block (the /16 node has 3 runs, its subtree too many).
    let dense: Vec<_> = (0..20u32)
        .map(|i| (i + 1, rule(&format!("10.0.0.{}", i * 2 + 1), None, None)))
        .collect();
    let c = compile(&dense, Capacity::UNLIMITED).unwrap();
    assert_eq!((c.chunks.len(), c.ranges.len()), (ROOT_CHUNKS + 1, 1));
    assert!(matches!(
        compile(&dense, cap(ROOT_CHUNKS, 100, 100)),
        Err(CompileError::ChunksFull { .. })
    ));
    for i in 0..40u8 {
        assert_eq!(
            c.decide(&[10, 0, 0, i], 17, None) != 0,
            i % 2 == 1,
            "10.0.0.{i}"
        );
    }
}

#[test]
fn small_blocks_share_an_element_and_whole_blocks_take_their_own() {
    let mut u = RangeUnits::default();
    let size = |runs| BlockSize::for_runs(runs).unwrap();
    assert_eq!(u.place(size(3)), RANGE | QUARTER);
    assert_eq!(u.place(size(HALF_KEYS)), RANGE | HALF | 1);
    assert_eq!(u.place(size(2)), RANGE | QUARTER | ODD);
    assert_eq!(u.place(size(HALF_KEYS + 1)), RANGE | 2);
    assert_eq!(u.place(size(1)), RANGE | QUARTER | SECOND);
    assert_eq!(u.place(size(4)), RANGE | HALF | SECOND | 1);
    assert_eq!(u.place(size(3)), RANGE | QUARTER | SECOND | ODD);
    assert_eq!(u.place(size(3)), RANGE | QUARTER | 3);
    assert_eq!(BlockSize::for_runs(RANGE_KEYS + 1), None);
    assert_eq!(u.elements, 4);

    // Both halves of one element, four quarters of another and a whole
    // block, looked up.
    let mut halves = nr_fw_range::default();
    write_block(&mut halves, RANGE | HALF, [(0, 0), (100, 7), (200, 0)].into_iter());
    write_block(&mut halves, RANGE | HALF | SECOND, [(0, 9), (50, 8)].into_iter());
    for (k, lo, hi) in [(0, 0, 9), (99, 0, 8), (100, 7, 8), (199, 7, 8), (200, 0, 8), (65535, 0, 8)] {
        assert_eq!(block_pick(&halves, RANGE | HALF, k), lo, "first half, key {k}");
        assert_eq!(block_pick(&halves, RANGE | HALF | SECOND, k), hi, "second half, key {k}");
    }
    let mut quarters = nr_fw_range::default();
    let parts = [0, ODD, SECOND, SECOND | ODD];
    for (q, &part) in parts.iter().enumerate() {
        let q = q as u32;
        let runs: Vec<(u16, u32)> = [(0, q), (10 * q as u16 + 10, q + 10), (20 * q as u16 + 30, q + 20)]
            .into_iter()
            .take(q as usize % 3 + 1)
            .collect();
        write_block(&mut quarters, RANGE | QUARTER | part, runs.iter().copied());
    }
    for (q, &part) in parts.iter().enumerate() {
        let q = q as u32;
        let at = RANGE | QUARTER | part;
        let (k1, k2) = (10 * q as u16 + 10, 20 * q as u16 + 30);
        let runs = q % 3 + 1;
        assert_eq!(block_pick(&quarters, at, 0), q, "quarter {q}, key 0");
        assert_eq!(block_pick(&quarters, at, k1 - 1), q, "quarter {q}, before its second run");
        let second = if runs > 1 { q + 10 } else { q };
        assert_eq!(block_pick(&quarters, at, k1), second, "quarter {q}, its second run");
        let third = if runs > 2 { q + 20 } else { second };
        assert_eq!(block_pick(&quarters, at, k2), third, "quarter {q}, its third run");
        assert_eq!(block_pick(&quarters, at, 65535), third, "quarter {q}, key 65535");
    }
    let mut whole = nr_fw_range::default();
    let runs: Vec<(u16, u32)> = (0..RANGE_KEYS as u16).map(|i| (i * 10, u32::from(i) + 1)).collect();
    write_block(&mut whole, RANGE, runs.iter().copied());
    for &(k, e) in &runs {
        assert_eq!(block_pick(&whole, RANGE, k), e);
        assert_eq!(block_pick(&whole, RANGE, k + 9), e);
    }
}

#[test]
fn island_blocks_find_every_key() {
    // Background, islands touching each other and both ends of the key
    // space, an L4 leaf and the largest id, in every block size.
    let big = MAX_RULES;
    let cases: Vec<Vec<(u16, u32)>> = vec![
        vec![(0, 0)],
        vec![(0, 5)],
        vec![(0, 0), (256, 7), (512, 0)],
        vec![(0, 9), (65535, 4)],
        vec![(0, 3), (10, 0)],
        vec![(0, 0), (100, 1), (200, 2), (300, 0)],
        vec![(0, 2), (1, LEAF_L4 | 6), (2, 2), (40000, big), (40001, 2), (65535, 8)],
        (0..16u16).map(|i| (i * 4000, if i % 2 == 1 { u32::from(i) } else { 77 })).collect(),
        (0..9u16).map(|i| (i * 7000, u32::from(i) + 100)).collect(),
    ];
    for runs in cases {
        let isles = Isles::of(&runs);
        let Some(size) = BlockSize::for_islands(isles.islands.len()) else {
            assert!(isles.islands.len() > ISLES, "{runs:?}");
            continue;
        };
        let mut u = RangeUnits::default();
        // Place a block of each smaller size first, so this one lands in
        // a second half or a last quarter (offsets are exercised).
        let at = match size {
            BlockSize::Quarter => {
                for _ in 0..3 {
                    u.place(BlockSize::Quarter);
                }
                WIDE | u.place(size)
            }
            BlockSize::Half => {
                u.place(BlockSize::Half);
                WIDE | u.place(size)
            }
            BlockSize::Whole => WIDE | u.place(size),
        };
        let mut element = nr_fw_range::default();
        write_isles(&mut element, at, &isles);
        let want = |k: u16| runs[runs.partition_point(|&(s, _)| s <= k) - 1].1;
        let mut keys: Vec<u16> = vec![0, 1, 65534, 65535];
        for &(s, _) in &runs {
            keys.extend([s.saturating_sub(1), s, s.saturating_add(1)]);
        }
        for k in keys {
            assert_eq!(isles_pick(&element, at, k), want(k), "{runs:?} in {size:?}: key {k}");
        }
    }
}

#[test]
fn ids_beyond_a_packed_leaf_are_refused() {
    let rules = vec![(MAX_RULES + 1, rule("10.0.0.1", None, None))];
    assert_eq!(
        compile(&rules, Capacity::UNLIMITED).unwrap_err(),
        CompileError::IdTooLarge { id: MAX_RULES + 1 }
    );
}

#[test]
fn runs_fill_splits_and_merges() {
    let mut r = Runs::uniform(0);
    r.fill(10, 20, 5);
    assert_eq!(r.0, vec![(0, 0), (10, 5), (20, 0)]);
    r.fill(15, 256, 7);
    assert_eq!(r.0, vec![(0, 0), (10, 5), (15, 7)]);
    r.fill(0, 15, 7);
    assert_eq!(r.0, vec![(0, 7)]);
    r.fill(255, 256, 1);
    assert_eq!((r.get(254), r.get(255)), (7, 1));
}
