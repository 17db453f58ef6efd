//! First proof that the harness works: verdicts and events for a plain frame.
use netray_firewall::Rule;
use netray_tests::{frames, require_root, XdpHarness, XDP_DROP, XDP_PASS};

#[test]
fn deny_rule_drops_and_event_says_so() {
    require_root();
    let h = XdpHarness::new("smoke");
    let f = frames::udp4([10, 1, 2, 3], [10, 9, 9, 9], 1234, 53, b"hello");
    let r = h.run(&f);
    assert_eq!(r.verdict, XDP_PASS);
    let ev = r.event.expect("monitor event");
    assert_eq!((ev.family, ev.l4_proto, ev.sport, ev.dport, ev.pkt_len as usize), (4, 17, 1234, 53, f.len()));

    let ids = h.firewall().add(&[Rule::parse("10.1.0.0/16", Some("udp"), Some(53), None).unwrap()]).unwrap();
    let r = h.run(&f);
    assert_eq!(r.verdict, XDP_DROP);
    assert_eq!(r.event.unwrap().rule_id, ids[0]);
    assert_eq!(h.firewall().list().unwrap()[0].packets, 1);
    assert_eq!(h.run(&frames::udp4([10, 1, 2, 3], [10, 9, 9, 9], 1234, 54, b"x")).verdict, XDP_PASS);
    let s = h.stats();
    assert_eq!((s.seen, s.dropped, s.events_sent), (3, 1, 3));
}
