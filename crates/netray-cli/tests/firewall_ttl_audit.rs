//! End to end in the lab: a rule added with `--ttl` drops until it expires,
//! then passes, with no netray process running (the kernel enforces the
//! expiry); a rule added with `--audit` lets every packet through and counts
//! each one as its hit, and the monitor shows them as AUDIT with the rule id.

mod common;

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    time::{Duration, Instant},
};

use common::Env;
use netray_lab::Family;

#[test]
fn a_rule_with_a_ttl_drops_then_passes_after_it_expires_with_no_netray_running() {
    let env = Env::new("ttl");
    let peer = env.lab.peer_v4().to_string();
    env.ok(&["firewall", "attach", "-i", env.iface()]);
    // 12 s: the checks before the expiry (two dropped pings wait for their replies, and
    // each netray command runs 10-30x slower under the matrix's emulated kernels) must
    // end before it.
    const TTL: Duration = Duration::from_secs(12);
    let added = Instant::now();
    let out = env.ok(&["deny", "add", &peer, "--ttl", "12s"]);
    assert_eq!(out, format!("added rule 1: deny {peer}/32 (expires in 12s)\n"));
    assert_eq!(env.lab.ping(Family::V4, 2).unwrap(), 0, "dropped before the expiry");
    let list = env.json(&["deny", "list", "--json"]);
    let left = list[0]["expires_in_ms"].as_u64().unwrap_or_else(|| panic!("no time left: {list}"));
    // The rule expires `left` after the list command looked, which was before now: the
    // expiry is counted from inside `deny add`, which can start a second or two after
    // `added` under emulation.
    let expires_by = Instant::now() + Duration::from_millis(left);
    assert!(left > 0 && left <= 12_000, "time left {left} ms: {list}");
    assert_eq!((list[0]["action"].as_str(), list[0]["packets"].as_u64()), (Some("deny"), Some(2)), "{list}");
    let checked = added.elapsed();
    assert!(checked + Duration::from_millis(500) < TTL, "the checks before the expiry took {checked:?}, too long for the TTL");

    // Every netray command above has exited (this test starts no monitor or
    // daemon): from here only the kernel can let the packets through.
    std::thread::sleep(expires_by.saturating_duration_since(Instant::now()) + Duration::from_millis(100));
    assert_eq!(env.lab.ping(Family::V4, 3).unwrap(), 3, "passes once expired");
    assert_eq!(env.udp_answered(Family::V4, 5), 5, "UDP passes once expired");

    // The still-stored rule counted nothing after it expired; listing removes it.
    let st = env.json(&["firewall", "status", "--json"]);
    assert_eq!(st["table"]["rules"], 1, "still compiled until listed: {st}");
    assert_eq!(env.json(&["deny", "list", "--json"]), serde_json::json!([]));
    let st = env.json(&["firewall", "status", "--json"]);
    assert_eq!(st["table"]["rules"], 0, "recompiled without it: {st}");
    assert_eq!(st["interfaces"][0]["stats"]["dropped"], 2, "only the two pings before the expiry were dropped: {st}");
}

#[test]
fn an_audit_rule_passes_everything_and_counts_what_was_sent() {
    let env = Env::new("audit");
    let peer = env.lab.peer_v4().to_string();
    let iface = env.iface().to_string();
    env.ok(&["firewall", "attach", "-i", &iface]);
    let out = env.ok(&["deny", "add", &peer, "--audit"]);
    assert_eq!(out, format!("added rule 1: audit {peer}/32\n"));

    assert_eq!(env.lab.ping(Family::V4, 3).unwrap(), 3, "an audit rule drops nothing");
    assert_eq!(env.udp_answered(Family::V4, 5), 5, "an audit rule drops nothing");
    let list = env.json(&["deny", "list", "--json"]);
    assert_eq!(list[0]["action"], "audit", "{list}");
    assert_eq!(list[0]["packets"], 8, "hits = the 3 pings and 5 UDP requests sent: {list}");
    assert_eq!(list[0]["expires_in_ms"], serde_json::Value::Null, "{list}");

    // The monitor shows the audited packet as passed by rule 1.
    let mut monitor = env.cmd(&["monitor", "-i", &iface, "-c", "1"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(monitor.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert_eq!(env.lab.ping(Family::V4, 1).unwrap(), 1);
    let out = monitor.wait_with_output().unwrap();
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(line.contains(&format!("icmp   {peer} -> ")) && line.trim_end().ends_with("pass AUDIT (rule 1)"), "{first}{line}");

    let st = env.json(&["firewall", "status", "--json"]);
    assert_eq!(st["interfaces"][0]["stats"]["dropped"], 0, "{st}");
    let list = env.json(&["deny", "list", "--json"]);
    assert_eq!(list[0]["packets"], 9, "{list}");
}
