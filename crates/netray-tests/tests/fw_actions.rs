//! Audit and expiring rules (firewall.h: nr_fw_apply) through
//! BPF_PROG_TEST_RUN on every path a firewall verdict is taken: the XDP
//! dispatcher's short path (firewall alone) and general path (with the
//! monitor), TC ingress ("in" rules) and TC egress ("out" rules).
//!
//! Each path gets a deny rule, an audit rule, a rule that expires, and a
//! frame no rule matches; the verdict, the monitor event's verdict and rule
//! id, the rule's hit counters and the interface's drop counters are checked
//! exactly, before and after the expiry.

mod common;

use std::{thread::sleep, time::Duration};

use common::{verdict_paths::{Harness, Path}, *};
use netray_ebpf::{abi::nr_verdict, decided::Decided};
use netray_firewall::{Action, Firewall, Rule, RuleOptions};
use netray_tests::require_root;

const DENIED: [u8; 4] = [192, 0, 2, 7];
const AUDITED: [u8; 4] = [198, 51, 100, 7];
const EXPIRING: [u8; 4] = [203, 0, 113, 7];
const UNMATCHED: [u8; 4] = [10, 9, 9, 9];
const TTL: Duration = Duration::from_secs(2);

/// A frame from and to `addr` (the source decides "in" rules, the
/// destination "out" ones), long enough for the XDP short path.
fn frame(addr: [u8; 4]) -> Vec<u8> {
    v4(addr, addr, udp(5353, 53, &[7; 12])).bytes()
}

/// (packets, bytes) per rule id.
fn hits(fw: &Firewall) -> Vec<(u32, Action, u64, u64)> {
    fw.list().unwrap().iter().map(|r| (r.id, r.action, r.packets, r.bytes)).collect()
}

fn check_path(path: Path) {
    let h = Harness::new("fwact", path);
    let fw = h.firewall();
    let dir = if path == Path::TcEgress { "out" } else { "in" };
    let rule = |a: [u8; 4]| Rule::parse(&std::net::Ipv4Addr::from(a).to_string(), None, None, Some(dir)).unwrap();
    let ids = fw
        .add_with(&[
            (rule(DENIED), RuleOptions::default()),
            (rule(AUDITED), RuleOptions { action: Action::Audit, ttl: None }),
            (rule(EXPIRING), RuleOptions { action: Action::Deny, ttl: Some(TTL) }),
        ])
        .unwrap();
    let (deny, audit, expiring) = (ids[0], ids[1], ids[2]);
    let added = std::time::Instant::now();
    let len = frame(DENIED).len() as u64;
    let (drop_code, audit_code, pass_code) =
        (nr_verdict::NR_VERDICT_DROP, nr_verdict::NR_VERDICT_AUDIT, nr_verdict::NR_VERDICT_PASS);
    let event = |v: nr_verdict, by: Decided| (path != Path::XdpShort).then_some((v, by));
    let decide = |h: &Harness, path: Path, addr: [u8; 4]| h.outcome(path, &frame(addr));

    assert_eq!(decide(&h, path, DENIED), (true, event(drop_code, Decided::Deny(deny))), "{path:?}: deny rule");
    assert_eq!(decide(&h, path, AUDITED), (false, event(audit_code, Decided::Audit(audit))), "{path:?}: audit rule passes");
    assert_eq!(decide(&h, path, AUDITED), (false, event(audit_code, Decided::Audit(audit))), "{path:?}: audit rule, again");
    assert_eq!(decide(&h, path, EXPIRING), (true, event(drop_code, Decided::Deny(expiring))), "{path:?}: before its expiry");
    assert_eq!(decide(&h, path, UNMATCHED), (false, event(pass_code, Decided::Nothing)), "{path:?}: no rule");
    assert!(added.elapsed() < TTL, "{path:?}: the checks before the expiry took longer than the TTL");
    assert_eq!(
        hits(&fw),
        vec![(deny, Action::Deny, 1, len), (audit, Action::Audit, 2, 2 * len), (expiring, Action::Deny, 1, len)],
        "{path:?}: audit hits are counted like drops"
    );
    assert_eq!(h.dropped(path), (2, 2 * len), "{path:?}: audited packets are not dropped");

    sleep(TTL.saturating_sub(added.elapsed()) + Duration::from_millis(50));
    assert_eq!(decide(&h, path, EXPIRING), (false, event(pass_code, Decided::Nothing)), "{path:?}: expired, it matches nothing");
    assert_eq!(decide(&h, path, DENIED), (true, event(drop_code, Decided::Deny(deny))), "{path:?}: deny rule after the expiry");
    assert_eq!(h.dropped(path), (3, 3 * len), "{path:?}: the expired rule dropped nothing more");
    // Listing removes the expired rule; the others keep their hits.
    assert_eq!(
        hits(&fw),
        vec![(deny, Action::Deny, 2, 2 * len), (audit, Action::Audit, 2, 2 * len)],
        "{path:?}: after the expiry"
    );
    assert_eq!(fw.status().unwrap().table.rules, 2, "{path:?}: the tables were recompiled without it");

    // An audit rule's id, reused by a deny rule, denies.
    fw.delete_ids(&[audit]).unwrap();
    assert_eq!(fw.add(&[rule(AUDITED)]).unwrap(), vec![audit]);
    assert_eq!(decide(&h, path, AUDITED), (true, event(drop_code, Decided::Deny(audit))), "{path:?}: id reused by a deny rule");
}

#[test]
fn audit_and_expiry_on_the_xdp_short_path() {
    require_root();
    check_path(Path::XdpShort);
}

#[test]
fn audit_and_expiry_on_the_xdp_general_path() {
    require_root();
    check_path(Path::XdpGeneral);
}

#[test]
fn audit_and_expiry_at_tc_ingress() {
    require_root();
    check_path(Path::TcIngress);
}

#[test]
fn audit_and_expiry_at_tc_egress() {
    require_root();
    check_path(Path::TcEgress);
}
