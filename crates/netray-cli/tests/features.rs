//! `netray features`: every capability netray uses is tried and reported, the
//! text and JSON forms agree, and the probes leave nothing behind.

mod common;

use std::process::Command;

use common::expected::Normalise;

const NAMES: [&str; 16] = [
    "btf", "xdp_native", "xdp_generic", "xdp_frags", "tcx", "clsact", "ringbuf", "live_frames",
    "bounded_loops", "raw_tracepoint", "tp_btf", "kprobe", "fentry", "fexit_xdp", "freplace", "syncookie",
];

fn netray(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_netray")).args(args).output().expect("running netray");
    assert!(out.status.success(), "netray {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "probes print nothing on stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_capability_is_tried_and_text_agrees_with_json() {
    assert_eq!(unsafe { libc::geteuid() }, 0, "needs root: run `make test` as root");
    let v: serde_json::Value = serde_json::from_str(&netray(&["features", "--json"])).expect("one JSON object");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(v["kernel"], release.trim());
    let features = v["features"].as_array().unwrap();
    let names: Vec<&str> = features.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, NAMES);
    for f in features {
        assert!(f["available"].is_boolean() && !f["detail"].as_str().unwrap().is_empty(), "{f}");
    }
    // What every kernel netray runs on has (the tests of the other commands depend on them).
    for name in ["btf", "xdp_generic", "ringbuf", "bounded_loops"] {
        assert!(features.iter().any(|f| f["name"] == name && f["available"] == true), "{name}: {v}");
    }
    assert!(features.iter().any(|f| (f["name"] == "tcx" || f["name"] == "clsact") && f["available"] == true));
    let commands = v["commands"].as_array().unwrap();
    assert!(commands.iter().any(|c| c["command"] == "dump beside a foreign XDP program"), "{v}");
    let fexit = features.iter().any(|f| f["name"] == "fexit_xdp" && f["available"] == true);
    let foreign = commands.iter().find(|c| c["command"] == "dump beside a foreign XDP program").unwrap();
    assert_eq!(foreign["way"].as_str().unwrap().contains("fexit refused"), !fexit, "{foreign}");

    let text = netray(&["features"]);
    assert!(text.starts_with(&format!("kernel {}", release.trim())), "{text}");
    for f in features {
        let ok = if f["available"] == true { "yes" } else { "NO" };
        let row = text.lines().find(|l| l.split_whitespace().next() == f["name"].as_str()).expect("a row per feature");
        assert_eq!(row.split_whitespace().nth(1), Some(ok), "{row}");
    }
}

#[test]
fn probes_leave_no_interface_behind() {
    netray(&["features"]);
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    // Other tests' interfaces come and go: look for the probe's only.
    assert!(!String::from_utf8_lossy(&links.stdout).contains("nrprobe"), "the probe veth lives in its own namespace");
}

/// The whole text, against the file for a kernel that lacks what this one
/// lacks (tests/expected/features-lacks-....txt): the table is the kernel's
/// answer, so each kind of kernel has its own reviewed text.
#[test]
fn text_reads_as_reviewed_for_this_kind_of_kernel() {
    let v: serde_json::Value = serde_json::from_str(&netray(&["features", "--json"])).unwrap();
    let lacks: Vec<&str> = v["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["available"] == false)
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    let name = if lacks.is_empty() { "nothing".to_string() } else { lacks.join("-") };
    Normalise::default()
        .literal(v["kernel"].as_str().unwrap(), "<KERNEL RELEASE>")
        .check(&format!("features-lacks-{name}"), &netray(&["features"]));
}
