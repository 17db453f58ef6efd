//! Flow accounting (flows.h) through BPF_PROG_TEST_RUN: exact packets and
//! bytes per flow for hand-built frames of every protocol, what is not a flow,
//! firewall verdicts recorded in the flow, and an LRU table far smaller than
//! the number of flows, whose evictions are counted exactly
//! (evictions = inserts - entries).

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use etherparse::PacketBuilder;
use netray_core::{dispatcher::FlowCapacity, Feature};
use netray_firewall::Rule;
use netray_flows::{Direction, Flow};
use netray_tests::{
    frames::{self, DST_MAC, SRC_MAC},
    require_root, XdpHarness, HARNESS_IFINDEX, XDP_DROP, XDP_PASS,
};

const A4: [u8; 4] = [10, 1, 2, 3];
const B4: [u8; 4] = [10, 9, 9, 9];
const A6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a];
const B6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0b];

fn tcp6(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(SRC_MAC, DST_MAC).ipv6(src, dst, 64).tcp(sport, dport, 1, 1024).ack(1);
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

fn tcp4_payload(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(SRC_MAC, DST_MAC).ipv4(src, dst, 64).tcp(sport, dport, 1, 1024).ack(1);
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

/// What identifies a flow in these tests: protocol, src, dst, sport, dport
/// (for ICMP: 0 and type << 8 | code).
type Key = (u8, IpAddr, IpAddr, u16, u16);

fn key_of(f: &Flow) -> Key {
    (f.key.proto, f.key.src, f.key.dst, f.key.sport, f.key.dport)
}

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

fn v6(a: [u8; 16]) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(a))
}

fn flows(h: &XdpHarness) -> BTreeMap<Key, Flow> {
    h.flow_table().flows().unwrap().into_iter().map(|f| (key_of(&f), f)).collect()
}

#[test]
fn every_protocol_gets_exact_packets_and_bytes_per_flow() {
    require_root();
    let h = XdpHarness::new("flows");
    h.set_features(&[Feature::Flows]);

    // (frame, times sent, the flow it belongs to)
    let sends: Vec<(Vec<u8>, u64, Key)> = vec![
        (frames::udp4(A4, B4, 1000, 53, &[1; 10]), 3, (17, v4(A4), v4(B4), 1000, 53)),
        // Same flow, other sizes: bytes are the sum of the real lengths.
        (frames::udp4(A4, B4, 1000, 53, &[2; 300]), 2, (17, v4(A4), v4(B4), 1000, 53)),
        // The reverse direction of that conversation is its own flow.
        (frames::udp4(B4, A4, 53, 1000, &[3; 50]), 4, (17, v4(B4), v4(A4), 53, 1000)),
        (frames::tcp4(A4, B4, 40000, 80), 5, (6, v4(A4), v4(B4), 40000, 80)),
        (tcp4_payload(A4, B4, 40000, 80, &[4; 1000]), 1, (6, v4(A4), v4(B4), 40000, 80)),
        (frames::icmp4(A4, B4), 6, (1, v4(A4), v4(B4), 0, 8 << 8)),
        (frames::udp6(A6, B6, 5353, 5353, &[5; 77]), 7, (17, v6(A6), v6(B6), 5353, 5353)),
        (tcp6(A6, B6, 443, 50000, &[6; 1400]), 8, (6, v6(A6), v6(B6), 443, 50000)),
        (frames::icmp6(A6, B6), 9, (58, v6(A6), v6(B6), 0, 128 << 8)),
        // A VLAN tag does not change the flow.
        (frames::with_vlan(&frames::udp4(A4, B4, 1000, 53, &[7; 20]), 0x8100, 42), 1, (17, v4(A4), v4(B4), 1000, 53)),
    ];
    let mut want: BTreeMap<Key, (u64, u64)> = BTreeMap::new();
    let (mut packets, mut bytes) = (0u64, 0u64);
    for (frame, n, key) in &sends {
        for _ in 0..*n {
            assert_eq!(h.run(frame).verdict, XDP_PASS);
        }
        let w = want.entry(*key).or_default();
        w.0 += n;
        w.1 += n * frame.len() as u64;
        packets += n;
        bytes += n * frame.len() as u64;
    }

    let got = flows(&h);
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "the flows");
    for (k, f) in &got {
        assert_eq!((f.packets, f.bytes), want[k], "packets and bytes of {k:?}");
        assert_eq!(f.key.ifindex, HARNESS_IFINDEX);
        assert_eq!(f.key.direction, Direction::Ingress);
        assert_eq!((f.dropped, f.bytes_dropped, f.last_dropped, f.last_rule), (0, 0, false, None));
        assert!(f.first_seen_ns > 0 && f.first_seen_ns <= f.last_seen_ns, "{f:?}");
    }
    let icmp = &got[&(1, v4(A4), v4(B4), 0, 8 << 8)];
    assert_eq!((icmp.key.icmp(), icmp.key.ports()), (Some((8, 0)), None));
    let icmp6 = &got[&(58, v6(A6), v6(B6), 0, 128 << 8)];
    assert_eq!(icmp6.key.icmp(), Some((128, 0)));
    assert_eq!(got[&(6, v6(A6), v6(B6), 443, 50000)].key.ports(), Some((443, 50000)));

    let (_, c) = h.flow_table().read().unwrap();
    assert_eq!((c.entries, c.inserts, c.evictions, c.insert_failed), (7, 7, 0, 0));
    let s = h.stats();
    assert_eq!((s.seen, s.bytes_seen), (packets, bytes), "every packet is in a flow");
    assert_eq!(got.values().map(|f| (f.packets, f.bytes)).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1)), (packets, bytes));
}

#[test]
fn non_ip_frames_are_not_flows_and_headerless_packets_have_no_ports() {
    require_root();
    let h = XdpHarness::new("flows-nonip");
    h.set_features(&[Feature::Flows]);

    // ARP, and a frame cut inside the IPv4 header: no addresses, so no flow.
    let mut arp = frames::udp4(A4, B4, 1, 2, &[0; 28]);
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    let cut_ip = frames::udp4(A4, B4, 1, 2, b"x")[..14 + 12].to_vec();
    for f in [&arp, &arp, &cut_ip] {
        assert_eq!(h.run(f).verdict, XDP_PASS);
    }
    assert!(flows(&h).is_empty(), "non-IP frames are not flows");
    let s = h.stats();
    assert_eq!((s.seen, s.non_ip), (3, 3));
    assert_eq!(h.flow_table().read().unwrap().1.inserts, 0);

    // A UDP packet cut before its ports: the flow of its addresses and
    // protocol, with ports 0 (documented in flows.h).
    let cut_udp = frames::udp4(A4, B4, 1234, 53, b"hello")[..14 + 20 + 2].to_vec();
    h.run(&cut_udp);
    h.run(&cut_udp);
    let got = flows(&h);
    assert_eq!(got.len(), 1);
    let f = &got[&(17, v4(A4), v4(B4), 0, 0)];
    assert_eq!((f.packets, f.bytes), (2, 2 * cut_udp.len() as u64));
}

#[test]
fn firewall_drops_are_recorded_in_the_flow() {
    require_root();
    let h = XdpHarness::new("flows-fw");
    h.set_features(&[Feature::Firewall, Feature::Flows]);
    let fw = h.firewall();
    let ids = fw.add(&[Rule::parse("10.1.2.3/32", Some("udp"), Some(53), None).unwrap()]).unwrap();
    let denied = frames::udp4(A4, B4, 1000, 53, &[0; 40]);
    let other = frames::udp4(A4, B4, 1000, 54, &[0; 40]);
    for _ in 0..3 {
        assert_eq!(h.run(&denied).verdict, XDP_DROP);
    }
    assert_eq!(h.run(&other).verdict, XDP_PASS);
    let len = denied.len() as u64;
    let got = flows(&h);
    let f = &got[&(17, v4(A4), v4(B4), 1000, 53)];
    assert_eq!((f.packets, f.bytes, f.dropped, f.bytes_dropped), (3, 3 * len, 3, 3 * len));
    assert_eq!((f.last_dropped, f.last_rule), (true, Some(ids[0])));
    let g = &got[&(17, v4(A4), v4(B4), 1000, 54)];
    assert_eq!((g.packets, g.dropped, g.last_dropped, g.last_rule), (1, 0, false, None));

    // The rule goes: the flow goes on, its last verdict is now "pass".
    fw.delete_ids(&ids).unwrap();
    assert_eq!(h.run(&denied).verdict, XDP_PASS);
    let f = flows(&h)[&(17, v4(A4), v4(B4), 1000, 53)];
    assert_eq!((f.packets, f.bytes, f.dropped, f.last_dropped, f.last_rule), (4, 4 * len, 3, false, None));
}

#[test]
fn flows_off_counts_nothing() {
    require_root();
    let h = XdpHarness::new("flows-off");
    h.set_features(&[Feature::Firewall, Feature::Monitor]);
    h.run(&frames::udp4(A4, B4, 1, 2, b"x"));
    assert!(flows(&h).is_empty());
    assert_eq!(h.flow_table().read().unwrap().1, netray_flows::TableCounters { capacity: 65536, ..Default::default() });
}

#[test]
fn a_small_table_evicts_and_counts_every_eviction() {
    require_root();
    const SIZE: u32 = 16;
    const FLOWS: u16 = 300;
    let h = XdpHarness::with_flow_capacity("flows-lru", FlowCapacity { max_flows: SIZE });
    h.set_features(&[Feature::Flows]);
    let frame = |i: u16| frames::udp4(A4, B4, 10_000 + i, 53, &[0; 16]);
    for i in 0..FLOWS {
        h.run(&frame(i));
    }
    let table = h.flow_table();
    let (present, c) = table.read().unwrap();
    assert_eq!(c.capacity, SIZE);
    assert!(c.entries >= 1 && c.entries <= SIZE as u64, "{c:?}");
    assert_eq!(c.entries, present.len() as u64);
    assert_eq!(c.insert_failed, 0, "{c:?}");
    assert_eq!(c.inserts, FLOWS as u64, "each flow was new once: {c:?}");
    assert_eq!(c.evictions, FLOWS as u64 - c.entries, "evictions = inserts - entries: {c:?}");
    assert!(present.iter().all(|f| f.packets == 1), "every flow present has its one packet");
    // The last flow created cannot have been evicted yet.
    assert!(present.iter().any(|f| f.key.sport == 10_000 + FLOWS - 1), "{present:?}");

    // Flows still present are counted in place: no insert, no eviction.
    let ports: Vec<u16> = present.iter().map(|f| f.key.sport).collect();
    for &p in &ports {
        h.run(&frame(p - 10_000));
    }
    let (again, c2) = table.read().unwrap();
    assert_eq!((c2.inserts, c2.evictions, c2.entries), (c.inserts, c.evictions, c.entries), "{c2:?}");
    assert!(again.iter().all(|f| f.packets == 2), "{again:?}");

    // Flows evicted earlier come back: those that still hold their slot in
    // the CPU's flow cache are counted there (pending, listed, not yet in the
    // table), the others are created again and evict others. Either way the
    // equation holds and no packet is lost.
    for i in 0..50 {
        h.run(&frame(i));
    }
    let (listed, c3) = table.read().unwrap();
    assert!(c3.inserts >= c.inserts && c3.inserts <= c.inserts + 50, "{c3:?}");
    assert_eq!(c3.evictions, c3.inserts - c3.entries);
    for i in 0..50 {
        let back = listed.iter().find(|f| f.key.sport == 10_000 + i);
        // A flow of 0..50 can have survived the first 300: the LRU evicts from the
        // free lists of the CPU that inserts, and the test thread may have moved
        // between CPUs. Such a flow is counted in place (1 + 1 + 1 packets) unless it
        // was evicted since and created again.
        let survived = ports.contains(&(10_000 + i));
        assert!(back.is_none_or(|f| f.packets == 1 || (survived && f.packets == 3)), "{back:?}, present after the first 300: {ports:?}");
    }
    assert!(c3.entries <= SIZE as u64);
    let s = h.stats();
    assert_eq!(s.seen, FLOWS as u64 + ports.len() as u64 + 50);
}

#[test]
fn many_interleaved_flows_stay_exact_through_the_flow_cache() {
    require_root();
    // More flows than the per-CPU cache has slots, interleaved: slots change
    // hands all the time, and pending counts are flushed to the table.
    let h = XdpHarness::new("flows-cache");
    h.set_features(&[Feature::Flows]);
    const FLOWS: u16 = 3000;
    let mut want: BTreeMap<u16, (u64, u64)> = BTreeMap::new();
    for round in 0..4u16 {
        for i in 0..FLOWS {
            // Flow i gets 1 + (i % 4 > round) packets per round, of varying size.
            let n = 1 + u16::from(i % 4 > round);
            for _ in 0..n {
                let f = frames::udp4(A4, B4, 20_000 + i, 443, &vec![0; usize::from(i % 7 + round)]);
                h.run(&f);
                let w = want.entry(20_000 + i).or_default();
                w.0 += 1;
                w.1 += f.len() as u64;
            }
        }
    }
    let (got, c) = h.flow_table().read().unwrap();
    assert_eq!(got.len(), FLOWS as usize);
    assert_eq!((c.entries, c.inserts, c.evictions, c.insert_failed), (FLOWS as u64, FLOWS as u64, 0, 0));
    for f in &got {
        assert_eq!((f.packets, f.bytes), want[&f.key.sport], "{f:?}");
        assert!(f.first_seen_ns > 0 && f.first_seen_ns <= f.last_seen_ns, "{f:?}");
    }
    let s = h.stats();
    assert_eq!(s.seen, want.values().map(|w| w.0).sum::<u64>());
}

#[test]
fn a_busy_flow_is_exact_across_periodic_flushes() {
    require_root();
    // Pending counts go to the table every 64 packets: 1000 packets, the last
    // 100 dropped, still add up exactly, with the last verdict.
    let h = XdpHarness::new("flows-busy");
    h.set_features(&[Feature::Firewall, Feature::Flows]);
    let f = frames::tcp4(A4, B4, 5555, 22);
    for _ in 0..900 {
        assert_eq!(h.run(&f).verdict, XDP_PASS);
    }
    let ids = h.firewall().add(&[Rule::parse("10.1.2.3/32", None, None, None).unwrap()]).unwrap();
    for _ in 0..100 {
        assert_eq!(h.run(&f).verdict, XDP_DROP);
    }
    let (got, c) = h.flow_table().read().unwrap();
    assert_eq!(got.len(), 1);
    let len = f.len() as u64;
    let g = &got[0];
    assert_eq!((g.packets, g.bytes, g.dropped, g.bytes_dropped), (1000, 1000 * len, 100, 100 * len));
    assert_eq!((g.last_dropped, g.last_rule), (true, Some(ids[0])));
    assert_eq!((c.entries, c.inserts), (1, 1));
}
