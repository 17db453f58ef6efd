//! The traffic generator: exact sent/answered counts for every protocol and
//! family, also when answers are dropped.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use netray_lab::{unique_name, Family, Lab, LabError, Proto, TrafficSpec};

fn spec(count: u64) -> TrafficSpec {
    TrafficSpec {
        duration: None,
        count: Some(count),
        pps: 500,
        timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

#[test]
fn all_protocols_and_families_are_answered() {
    let lab = Lab::up(&unique_name("trf")).unwrap();
    let report = lab.traffic(&spec(60)).unwrap();
    assert_eq!(report.flows.len(), 6);
    for proto in [Proto::Icmp, Proto::Udp, Proto::Tcp] {
        for family in [Family::V4, Family::V6] {
            let f = report
                .flow(proto, family)
                .unwrap_or_else(|| panic!("{proto} {family} missing"));
            assert_eq!((f.sent, f.answered, f.errors), (10, 10, 0), "{f:?}");
            assert_eq!(f.bytes, 640, "{f:?}");
            assert_eq!(f.answered_bytes, 640, "{f:?}");
        }
    }
    assert_eq!(report.total_sent(), 60);
    assert_eq!(report.total_answered(), 60);
    assert_eq!(report.answered(Proto::Udp, Family::Both), 20);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["flows"][0]["proto"], "icmp");
    assert_eq!(json["flows"][0]["family"], "v4");
}

#[test]
fn duration_and_pps_bound_the_run() {
    let lab = Lab::up(&unique_name("dur")).unwrap();
    let s = TrafficSpec {
        duration: Some(Duration::from_millis(500)),
        pps: 100,
        protos: vec![Proto::Udp],
        family: Family::V4,
        ..Default::default()
    };
    let t = Instant::now();
    let r = lab.traffic(&s).unwrap();
    let sent = r.sent(Proto::Udp, Family::V4);
    assert!((45..=51).contains(&sent), "sent {sent} in 0.5 s at 100 pps");
    assert_eq!(r.answered(Proto::Udp, Family::V4), sent);
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "all answered: no need to wait for the timeout"
    );
    // count stops first when it is smaller.
    let r = lab
        .traffic(&TrafficSpec {
            count: Some(7),
            ..s
        })
        .unwrap();
    assert_eq!(r.total_sent(), 7);
}

/// Answers dropped inside the namespace (blackhole policy rules, standing in
/// for a firewall) are not counted; after removing the rules they are, exactly.
#[test]
fn dropped_answers_are_not_counted() {
    let lab = Lab::up(&unique_name("blk")).unwrap();
    let ns = Some(lab.netns());
    let peer = lab.peer_if();
    let s = TrafficSpec {
        timeout: Duration::from_millis(500),
        ..spec(60)
    };
    for fam in ["-4", "-6"] {
        // The local table's rule comes first (pref 0): move it behind ours.
        ip_ok(ns, &[fam, "rule", "add", "pref", "100", "lookup", "local"]);
        ip_ok(ns, &[fam, "rule", "del", "pref", "0"]);
        ip_ok(
            ns,
            &[
                fam,
                "rule",
                "add",
                "pref",
                "10",
                "iif",
                peer,
                "ipproto",
                "udp",
                "blackhole",
            ],
        );
    }
    let r = lab.traffic(&s).unwrap();
    assert_eq!(r.sent(Proto::Udp, Family::Both), 20);
    assert_eq!(r.answered(Proto::Udp, Family::Both), 0, "{r:?}");
    assert_eq!(r.answered(Proto::Icmp, Family::Both), 20, "{r:?}");
    assert_eq!(r.answered(Proto::Tcp, Family::Both), 20, "{r:?}");

    for fam in ["-4", "-6"] {
        ip_ok(
            ns,
            &[fam, "rule", "add", "pref", "11", "iif", peer, "blackhole"],
        );
    }
    let r = lab.traffic(&s).unwrap();
    assert_eq!(r.total_sent(), 60);
    assert_eq!(r.total_answered(), 0, "{r:?}");

    for fam in ["-4", "-6"] {
        ip_ok(ns, &[fam, "rule", "del", "pref", "10"]);
        ip_ok(ns, &[fam, "rule", "del", "pref", "11"]);
    }
    let r = lab.traffic(&s).unwrap();
    assert_eq!((r.total_sent(), r.total_answered()), (60, 60), "{r:?}");
}

#[test]
fn udp_send_sends_exactly_count() {
    let lab = Lab::up(&unique_name("uds")).unwrap();
    for (family, addr) in [
        (Family::V4, lab.host_v4().into()),
        (Family::V6, lab.host_v6().into()),
    ] {
        let rx = UdpSocket::bind(SocketAddr::new(addr, 0)).unwrap();
        let port = rx.local_addr().unwrap().port();
        assert_eq!(lab.udp_send(family, port, 100, 200).unwrap(), 200);
        rx.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 2048];
        let mut got = 0;
        while let Ok(n) = rx.recv(&mut buf) {
            assert_eq!(n, 100);
            got += 1;
        }
        assert_eq!(got, 200, "{family}");
    }
    assert_eq!(lab.udp_send(Family::Both, 9, 0, 3).unwrap(), 6);
    assert_eq!(lab.udp_send(Family::V4, 9, 10, 0).unwrap(), 0);
}

#[test]
fn ping_counts_answers() {
    let lab = Lab::up(&unique_name("png")).unwrap();
    assert_eq!(lab.ping(Family::V4, 3).unwrap(), 3);
    assert_eq!(lab.ping(Family::V6, 2).unwrap(), 2);
    assert_eq!(lab.ping(Family::Both, 4).unwrap(), 8);
    assert_eq!(lab.ping(Family::Both, 0).unwrap(), 0);
}

#[test]
fn jumbo_frames_after_set_mtu() {
    let lab = Lab::up(&unique_name("jmb")).unwrap();
    lab.set_mtu(9000).unwrap();
    let s = TrafficSpec {
        payload_len: 8900,
        ..spec(30)
    };
    let r = lab.traffic(&s).unwrap();
    assert_eq!((r.total_sent(), r.total_answered()), (30, 30), "{r:?}");
    assert_eq!(
        r.flow(Proto::Udp, Family::V6).unwrap().answered_bytes,
        5 * 8900
    );
}

#[test]
fn two_runs_in_one_lab_do_not_count_each_others_answers() {
    let lab = Lab::up(&unique_name("two")).unwrap();
    let a = TrafficSpec {
        protos: vec![Proto::Icmp, Proto::Udp],
        udp_port: 7,
        ..spec(40)
    };
    let b = TrafficSpec {
        udp_port: 8,
        tcp_port: 8,
        ..spec(30)
    };
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| lab.traffic(&a).unwrap());
        let hb = s.spawn(|| lab.traffic(&b).unwrap());
        (ha.join().unwrap(), hb.join().unwrap())
    });
    assert_eq!((ra.total_sent(), ra.total_answered()), (40, 40), "{ra:?}");
    assert_eq!((rb.total_sent(), rb.total_answered()), (30, 30), "{rb:?}");
}

#[test]
fn bad_specs_are_errors() {
    let lab = Lab::up(&unique_name("bad")).unwrap();
    let bad = [
        TrafficSpec { pps: 0, ..spec(1) },
        TrafficSpec {
            protos: vec![],
            ..spec(1)
        },
        TrafficSpec {
            duration: None,
            count: None,
            ..spec(1)
        },
        TrafficSpec {
            payload_len: 4,
            ..spec(1)
        },
        TrafficSpec {
            payload_len: 1 << 20,
            ..spec(1)
        },
    ];
    for s in bad {
        assert!(
            matches!(lab.traffic(&s), Err(LabError::InvalidSpec(_))),
            "{s:?}"
        );
    }
    // TCP alone carries no tag: any payload size is fine.
    let r = lab
        .traffic(&TrafficSpec {
            protos: vec![Proto::Tcp],
            payload_len: 0,
            ..spec(2)
        })
        .unwrap();
    assert_eq!(r.total_answered(), 2);
}
