//! Lab lifecycle: creation, cleanup (also on panic), subnets, open/list.
//! Runs as root; tests run in parallel threads and (see `parallel_processes`)
//! processes.

mod common;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;

use common::*;
use netray_lab::{list, prune, remove, unique_name, Lab, LabError};

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn up_creates_everything_and_down_removes_it() {
    let lab = Lab::up(&unique_name("up")).unwrap();
    let (ns, host, peer) = (
        lab.netns().to_string(),
        lab.host_if().to_string(),
        lab.peer_if().to_string(),
    );
    assert_eq!(ns, format!("nrlab-{}", lab.name()));
    assert!(host.len() <= 15 && peer.len() <= 15);
    assert_present(&ns, &host, &peer);

    // Addresses: a /30 from 198.18.0.0/15 and a /64 from fd6e:7261::/32.
    let (h4, p4) = (u32::from(lab.host_v4()), u32::from(lab.peer_v4()));
    assert_eq!(h4 >> 17, u32::from(Ipv4Addr::new(198, 18, 0, 0)) >> 17);
    assert_eq!((h4 & 3, p4), (1, h4 + 1));
    assert_eq!(lab.host_v6().segments()[..2], [0xfd6e, 0x7261]);
    assert_eq!(u128::from(lab.peer_v6()), u128::from(lab.host_v6()) + 1);

    // What the kernel says matches the getters (iproute2's text: look for
    // them in it, it says much more).
    let host_info = ip_ok(None, &["addr", "show", "dev", &host]);
    assert!(
        host_info.contains(&format!("{}/30", lab.host_v4())),
        "{host_info}"
    );
    assert!(
        host_info.contains(&format!("{}/64", lab.host_v6())),
        "{host_info}"
    );
    assert!(host_info.contains(&mac_str(lab.host_mac())), "{host_info}");
    assert!(
        !host_info.contains("tentative"),
        "DAD must be off: {host_info}"
    );
    let peer_info = ip_ok(Some(&ns), &["addr", "show", "dev", &peer]);
    assert!(
        peer_info.contains(&format!("{}/30", lab.peer_v4())),
        "{peer_info}"
    );
    assert!(
        peer_info.contains(&format!("{}/64", lab.peer_v6())),
        "{peer_info}"
    );
    assert!(peer_info.contains(&mac_str(lab.peer_mac())), "{peer_info}");
    assert!(peer_info.contains("state UP"), "{peer_info}");
    let ifindex = std::fs::read_to_string(format!("/sys/class/net/{host}/ifindex")).unwrap();
    assert_eq!(ifindex.trim().parse::<u32>().unwrap(), lab.host_ifindex());

    lab.down().unwrap();
    assert_gone(&ns, &host);
}

#[test]
fn drop_removes_the_lab() {
    let (ns, host) = {
        let lab = Lab::up(&unique_name("drop")).unwrap();
        assert_present(lab.netns(), lab.host_if(), lab.peer_if());
        (lab.netns().to_string(), lab.host_if().to_string())
    };
    assert_gone(&ns, &host);
}

#[test]
fn panic_inside_a_test_still_removes_the_lab() {
    let name = unique_name("pan");
    let result = catch_unwind(AssertUnwindSafe(|| {
        let lab = Lab::up(&name).unwrap();
        assert_present(lab.netns(), lab.host_if(), lab.peer_if());
        panic!("test failure while the lab is up");
    }));
    assert!(result.is_err());
    assert_gone(&format!("nrlab-{name}"), &format!("nr-{name}"));
}

#[test]
fn panic_inside_in_netns_is_resumed_and_cleans_up() {
    let name = unique_name("pin");
    let result = catch_unwind(AssertUnwindSafe(|| {
        let lab = Lab::up(&name).unwrap();
        lab.in_netns(|| panic!("assertion inside the namespace"))
            .unwrap();
    }));
    let msg = result.unwrap_err();
    assert_eq!(
        msg.downcast_ref::<&str>(),
        Some(&"assertion inside the namespace")
    );
    assert_gone(&format!("nrlab-{name}"), &format!("nr-{name}"));
}

#[test]
fn parallel_labs_get_distinct_subnets() {
    let labs: Vec<Lab> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| Lab::up(&unique_name("par")).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let nets4: HashSet<u32> = labs.iter().map(|l| u32::from(l.host_v4()) & !3).collect();
    let nets6: HashSet<[u16; 4]> = labs
        .iter()
        .map(|l| l.host_v6().segments()[..4].try_into().unwrap())
        .collect();
    let macs: HashSet<[u8; 6]> = labs.iter().map(|l| l.host_mac()).collect();
    assert_eq!(nets4.len(), labs.len(), "IPv4 subnets collide");
    assert_eq!(nets6.len(), labs.len(), "IPv6 subnets collide");
    assert_eq!(macs.len(), labs.len());
    // All of them work at the same time.
    for lab in &labs {
        assert_eq!(
            lab.ping(netray_lab::Family::Both, 2).unwrap(),
            4,
            "lab {}",
            lab.name()
        );
    }
    let gone: Vec<(String, String)> = labs
        .iter()
        .map(|l| (l.netns().into(), l.host_if().into()))
        .collect();
    drop(labs);
    for (ns, host) in gone {
        assert_gone(&ns, &host);
    }
}

#[test]
fn up_twice_with_the_same_name_fails_and_keeps_the_first() {
    let lab = Lab::up(&unique_name("dup")).unwrap();
    match Lab::up(lab.name()) {
        Err(e @ LabError::Exists(_)) => assert_eq!(
            e.to_string(),
            format!(
                "lab '{0}' already exists — use it with `Lab::open`, or remove it first with `netray lab down {0}`",
                lab.name()
            )
        ),
        other => panic!("expected Exists, got {other:?}"),
    }
    assert_present(lab.netns(), lab.host_if(), lab.peer_if());
}

#[test]
fn open_of_a_missing_lab_errors() {
    let name = unique_name("mis");
    let err = Lab::open(&name).unwrap_err();
    assert!(
        matches!(err, LabError::NotFound(ref n) if *n == name),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("lab '{name}' does not exist — create it with `netray lab up {name}`")
    );
    assert!(matches!(remove(&name), Err(LabError::NotFound(_))));
}

#[test]
fn bad_names_are_errors_not_panics() {
    for bad in ["", "way-too-long-name", "a b", "../x", "-rf", "a;b"] {
        assert!(
            matches!(Lab::up(bad), Err(LabError::InvalidName { .. })),
            "{bad:?}"
        );
        assert!(
            matches!(Lab::open(bad), Err(LabError::InvalidName { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn open_attaches_without_taking_ownership() {
    let lab = Lab::up(&unique_name("opn")).unwrap();
    {
        let other = Lab::open(lab.name()).unwrap();
        assert_eq!(other.host_v4(), lab.host_v4());
        assert_eq!(other.peer_v6(), lab.peer_v6());
        assert_eq!(other.host_mac(), lab.host_mac());
        assert_eq!(other.peer_mac(), lab.peer_mac());
        assert_eq!(other.host_ifindex(), lab.host_ifindex());
        assert_eq!(other.ping(netray_lab::Family::V4, 1).unwrap(), 1);
    }
    // Dropping the opened handle left the lab alone.
    assert_present(lab.netns(), lab.host_if(), lab.peer_if());
}

#[test]
fn persist_keeps_the_lab_until_down() {
    let name = unique_name("per");
    Lab::up(&name).unwrap().persist();
    let status = list()
        .unwrap()
        .into_iter()
        .find(|s| s.name == name)
        .expect("listed");
    assert!(
        status.persistent && status.owner_pid.is_none() && !status.stale,
        "{status:?}"
    );
    assert_present(&status.netns, &status.host_if, &status.peer_if);
    Lab::open(&name).unwrap().down().unwrap();
    assert_gone(&status.netns, &status.host_if);
}

#[test]
fn list_reports_our_lab() {
    let lab = Lab::up(&unique_name("lst")).unwrap();
    let s = list()
        .unwrap()
        .into_iter()
        .find(|s| s.name == lab.name())
        .expect("listed");
    assert_eq!(s.host_v4, Some(lab.host_v4()));
    assert_eq!(s.peer_v4, Some(lab.peer_v4()));
    assert_eq!(s.host_v6, Some(lab.host_v6()));
    assert_eq!(s.peer_v6, Some(lab.peer_v6()));
    assert_eq!(s.host_ifindex, Some(lab.host_ifindex()));
    assert_eq!(s.owner_pid, Some(std::process::id()));
    assert_eq!(s.state.as_deref(), Some("UP"));
    assert!(!s.persistent && !s.stale && s.problem.is_none(), "{s:?}");
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["host_v4"], lab.host_v4().to_string());
}

#[test]
fn labs_of_dead_processes_are_pruned() {
    let lab = Lab::up(&unique_name("prn")).unwrap();
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    ip_ok(
        None,
        &[
            "link",
            "set",
            "dev",
            lab.host_if(),
            "alias",
            &format!("netray-lab:pid={dead}"),
        ],
    );
    let s = list()
        .unwrap()
        .into_iter()
        .find(|s| s.name == lab.name())
        .unwrap();
    assert!(s.stale, "{s:?}");
    let pruned = prune().unwrap();
    assert!(pruned.contains(&lab.name().to_string()), "{pruned:?}");
    assert_gone(lab.netns(), lab.host_if());
    // Its guard then finds nothing to delete, and says so only in a log.
    drop(lab);
}

#[test]
fn in_netns_runs_inside_the_namespace() {
    let lab = Lab::up(&unique_name("ins")).unwrap();
    let peer_addr = SocketAddr::from((lab.peer_v4(), 0));
    // The peer address exists only inside the namespace.
    assert!(UdpSocket::bind(peer_addr).is_err());
    let (bound, devs) = lab
        .in_netns(|| {
            let bound = UdpSocket::bind(peer_addr).is_ok();
            (
                bound,
                std::fs::read_to_string("/proc/thread-self/net/dev").unwrap(),
            )
        })
        .unwrap();
    assert!(bound);
    assert!(
        devs.contains(lab.peer_if()) && !devs.contains(lab.host_if()),
        "{devs}"
    );
    // The caller's thread is still in the root namespace.
    let here = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap();
    assert!(here.contains(lab.host_if()) && !here.contains(lab.peer_if()));
}

#[test]
fn set_mtu_sets_both_ends() {
    let lab = Lab::up(&unique_name("mtu")).unwrap();
    lab.set_mtu(9000).unwrap();
    assert_eq!(lab.mtu().unwrap(), 9000);
    assert!(ip_ok(Some(lab.netns()), &["link", "show", "dev", lab.peer_if()]).contains("mtu 9000"));
    assert!(lab.set_mtu(1_000_000).is_err());
}

/// Several processes creating labs at once: allocation is atomic across
/// processes too. Runs copies of this test binary with `child_lab_cycles`.
#[test]
fn parallel_processes() {
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "child_lab_cycles",
                    "--ignored",
                    "--test-threads",
                    "4",
                ])
                .env("NETRAY_LAB_CHILD", "1")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
#[ignore = "run by parallel_processes"]
fn child_lab_cycles() {
    if std::env::var_os("NETRAY_LAB_CHILD").is_none() {
        return;
    }
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                for _ in 0..3 {
                    let lab = Lab::up(&unique_name("chl")).unwrap();
                    assert_eq!(lab.ping(netray_lab::Family::Both, 1).unwrap(), 2);
                }
            });
        }
    });
}
