//! End to end in the lab: `firewall policy in drop` drops what no rule
//! allows (a ping from the lab), yet ARP and IPv6 neighbour discovery keep
//! working with every neighbour table flushed, and a TCP connection the host
//! opens to a listener in the lab completes and carries data both ways (its
//! replies are found in the reply table TC egress fills), over IPv4 and
//! IPv6; `allow add` of the lab's prefix makes the ping work. A policy on an
//! interface the firewall is not attached to is one error line, and changes
//! nothing.

mod common;

use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    process::{Command, Stdio},
    time::Duration,
};

use common::Env;
use netray_lab::Family;

/// Generous: the matrix runs this under emulated kernels, 10-30x slower.
const WAIT: Duration = Duration::from_secs(20);

/// Runs `ip [-n NETNS] ARGS...`, insisting it works.
fn ip(netns: Option<&str>, args: &[&str]) {
    let mut c = Command::new("ip");
    if let Some(ns) = netns {
        c.args(["-n", ns]);
    }
    let out = c.args(args).output().expect("running ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The lab's links run without ARP/ND on static neighbour entries; turn ARP
/// on, delete those entries and flush the neighbour tables on both sides, so
/// that every neighbour is resolved afresh through the policy.
fn neighbours_from_scratch(env: &Env) {
    let lab = &env.lab;
    let (host_v4, host_v6, peer_v4, peer_v6) =
        (lab.host_v4().to_string(), lab.host_v6().to_string(), lab.peer_v4().to_string(), lab.peer_v6().to_string());
    for (ns, dev, other_v4, other_v6) in
        [(None, lab.host_if(), &peer_v4, &peer_v6), (Some(lab.netns()), lab.peer_if(), &host_v4, &host_v6)]
    {
        ip(ns, &["neigh", "del", other_v4, "dev", dev]);
        ip(ns, &["neigh", "del", other_v6, "dev", dev]);
        ip(ns, &["link", "set", "dev", dev, "arp", "on"]);
        ip(ns, &["neigh", "flush", "dev", dev]);
        ip(ns, &["-6", "neigh", "flush", "dev", dev]);
    }
}

/// The host's neighbour entry for `addr` (`ip neigh show`): learned, not static.
fn learned(env: &Env, addr: &str) -> String {
    let out = Command::new("ip").args(["neigh", "show", addr, "dev", env.iface()]).output().expect("running ip");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The host connects to a listener in the lab at `peer`, sends a request and
/// reads the answer: the whole exchange crosses the drop policy.
fn tcp_exchange(env: &Env, peer: IpAddr) {
    let listener = env.lab.in_netns(move || TcpListener::bind(SocketAddr::new(peer, 0))).unwrap().unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut req = [0u8; 5];
        s.read_exact(&mut req).unwrap();
        assert_eq!(&req, b"hello");
        s.write_all(b"world, from the lab").unwrap();
    });
    let mut c = TcpStream::connect_timeout(&addr, WAIT).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    c.set_read_timeout(Some(WAIT)).unwrap();
    c.write_all(b"hello").unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap_or_else(|e| panic!("reading from {addr}: {e}"));
    assert_eq!(answer, "world, from the lab", "{addr}");
    server.join().unwrap();
}

#[test]
fn policy_drop_keeps_neighbours_and_the_hosts_connections_and_allow_opens_it() {
    let env = Env::new("policy");
    let iface = env.iface().to_string();

    // Not attached yet: one error line, and nothing attached by it.
    let err = env.fails(&["firewall", "policy", "-i", &iface, "in", "drop"]);
    assert_eq!(
        err.trim_end(),
        format!(
            "netray: error: the firewall is not attached to {iface}, so it has no policy there; nothing changed — \
             attach it first with `netray firewall attach -i {iface}`"
        )
    );
    assert_eq!(env.json(&["firewall", "status", "--json"])["interfaces"], serde_json::json!([]));
    let out = env.cmd(&["firewall", "policy", "-i", &iface, "in", "dropp"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("unknown policy 'dropp': use drop"), "{err}");

    env.ok(&["firewall", "attach", "-i", &iface]);
    assert_eq!(env.lab.ping(Family::V4, 2).unwrap(), 2, "the default policy passes");
    let out = env.ok(&["firewall", "policy", "-i", &iface, "in", "drop"]);
    assert!(out.starts_with(&format!("policy in drop on {iface}: only allowed traffic, ARP/ND and replies pass (")), "{out}");
    let st = env.json(&["firewall", "status", "--json"]);
    assert_eq!(st["policies"], serde_json::json!([{ "interface": iface, "in": "drop" }]), "{st}");

    assert_eq!(env.lab.ping(Family::V4, 3).unwrap(), 0, "a ping from the lab is dropped");
    assert_eq!(env.lab.ping(Family::V6, 3).unwrap(), 0, "an IPv6 ping from the lab is dropped");

    // Neighbours resolved afresh on both sides, then a connection from the host.
    neighbours_from_scratch(&env);
    tcp_exchange(&env, env.lab.peer_v4().into());
    tcp_exchange(&env, env.lab.peer_v6().into());
    for addr in [env.lab.peer_v4().to_string(), env.lab.peer_v6().to_string()] {
        let entry = learned(&env, &addr);
        assert!(entry.contains("lladdr") && !entry.contains("PERMANENT"), "{addr} resolved through the policy: {entry}");
    }

    let st = env.json(&["firewall", "status", "--json"]);
    let r = &st["replies"];
    assert!(r["entries"].as_u64().unwrap() >= 2, "the two connections' replies are noted: {st}");
    assert!(r["replies_passed"].as_u64().unwrap() >= 4, "handshake and data replies passed: {st}");
    assert!(r["neighbour_passed"].as_u64().unwrap() >= 2, "ARP reply and neighbour advertisement passed: {st}");
    assert!(r["policy_dropped"].as_u64().unwrap() >= 6, "the pings were the policy's: {st}");
    assert_eq!(r["evicted"], 0, "{st}");
    let text = env.ok(&["firewall", "status"]);
    assert!(text.contains("POLICY IN") && text.contains(" drop "), "{text}");
    assert!(text.contains("replies: "), "{text}");

    // An allow rule for the lab's prefix lets the ping in, and counts it.
    let [a, b, c, _] = env.lab.peer_v4().octets();
    let prefix = format!("{a}.{b}.{c}.0/24");
    let out = env.ok(&["allow", "add", &prefix]);
    assert_eq!(out, format!("added rule 1: allow {prefix}\n"));
    assert_eq!(env.lab.ping(Family::V4, 3).unwrap(), 3, "allowed");
    let list = env.json(&["allow", "list", "--json"]);
    assert_eq!((list[0]["action"].as_str(), list[0]["packets"].as_u64()), (Some("allow"), Some(3)), "{list}");
    assert_eq!(env.json(&["deny", "list", "--json"]), serde_json::json!([]), "deny list shows deny rules only");
    // A narrower deny rule inside the allowed prefix wins.
    let peer = env.lab.peer_v4().to_string();
    env.ok(&["deny", "add", &peer]);
    assert_eq!(env.lab.ping(Family::V4, 2).unwrap(), 0, "the /32 deny rule is more specific");
    env.ok(&["deny", "del", &peer]);

    // Back to pass: IPv6 (no allow rule) works again.
    assert_eq!(env.ok(&["firewall", "policy", "-i", &iface, "in", "pass"]), format!("policy in pass on {iface}: what no rule decides passes\n"));
    assert_eq!(env.lab.ping(Family::V6, 2).unwrap(), 2);
}

/// What dropped a packet reads the same in `monitor --json` and `top --json`:
/// `rule N` for a deny rule, `limit N` for a rate limit, `policy` for the
/// drop policy, never the kernel's encoding (rule id with verdict bits).
#[test]
fn monitor_and_top_name_the_rule_the_limit_and_the_policy_that_dropped() {
    let env = Env::new("polwho");
    let (iface, peer) = (env.iface().to_string(), env.lab.peer_v4().to_string());
    env.ok(&["firewall", "attach", "-i", &iface]);
    env.ok(&["deny", "add", &peer, "--proto", "udp", "--port", "9001"]);
    // Allowed past the policy, then limited: one packet, then drops.
    env.ok(&["allow", "add", &peer, "--proto", "udp", "--port", "9002"]);
    env.ok(&["limit", "add", &format!("{peer}/32"), "--rate", "1/h", "--burst", "1", "--proto", "udp", "--port", "9002"]);
    env.ok(&["firewall", "policy", "-i", &iface, "in", "drop"]);

    // top keeps the flow table on while the traffic passes; the monitor records it.
    let mut top = env.cmd(&["top", "-i", &iface, "--json", "--interval", "1s"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let mut monitor = env.cmd(&["monitor", "-i", &iface, "--json"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    env.wait_for_feature("flows");
    env.wait_for_feature("monitor");
    for (port, n) in [(9001, 2), (9002, 3), (9003, 2)] {
        assert_eq!(env.lab.udp_send(Family::V4, port, 10, n).unwrap(), n);
    }
    std::thread::sleep(Duration::from_millis(300));
    let flows = env.json(&["top", "-i", &iface, "--once", "--json", "--interval", "0"]);
    for child in [&mut top, &mut monitor] {
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    }
    let _ = top.wait();
    let out = monitor.wait_with_output().unwrap();
    let events: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();

    let limit_id = env.json(&["limit", "list", "--json"])[0]["id"].as_u64().unwrap();
    let want = [(9001, "drop", Some(1), "rule 1"), (9002, "limit", Some(limit_id), &*format!("limit {limit_id}")), (9003, "drop", None, "policy")];
    for (port, verdict, id, by) in want {
        let seen: Vec<_> = events.iter().filter(|e| e["dport"] == port && e["verdict"] != "pass").collect();
        assert!(!seen.is_empty(), "no dropped event to port {port}: {events:?}");
        for e in seen {
            assert_eq!((e["verdict"].as_str(), e["rule"].as_u64(), e["decided_by"].as_str()), (Some(verdict), id, Some(by)), "{e}");
        }
        let f = flows["flows"]
            .as_array()
            .and_then(|a| a.iter().find(|f| f["dport"] == port && f["src"] == *peer))
            .unwrap_or_else(|| panic!("no flow to port {port}: {flows}"));
        assert_eq!((f["last_verdict"].as_str(), f["last_rule"].as_u64(), f["last_decided_by"].as_str()), (Some("drop"), id, Some(by)), "{f}");
    }
    let passed: Vec<_> = events.iter().filter(|e| e["dport"] == 9002 && e["verdict"] == "pass").collect();
    assert_eq!(passed.len(), 1, "the limit's burst of 1 passed: {events:?}");
    assert_eq!(passed[0]["decided_by"].as_str(), Some("allow rule 2"), "{}", passed[0]);
}
