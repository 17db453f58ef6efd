//! End to end in the lab, with the real binary: the TC egress firewall ("out"
//! rules), the monitor at tc-ingress/tc-egress and at a packet socket, tcx
//! and legacy clsact attachment next to another tool's tc filter, and XDP
//! attach modes.

mod common;

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use common::{
    expected::{transcript, Normalise},
    Env,
};
use netray_lab::Family;
use serde_json::Value;

/// An echo request or reply of the lab's ping: Ethernet, IPv4, ICMP and the
/// 64-byte payload of TrafficSpec's default.
const ICMP_LEN: u64 = 14 + 20 + 8 + 64;

fn status(env: &Env) -> Value {
    env.json(&["firewall", "status", "--json"])
}

/// The TC program of `hook` in `firewall status --json`, if attached.
fn tc_entry(env: &Env, hook: &str) -> Option<Value> {
    let st = status(env);
    st["interfaces"][0]["tc"].as_array()?.iter().find(|t| t["hook"] == hook).cloned()
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(15) {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// iproute2's `tc` output: not netray's, and it lists whatever else is on the
/// interface, so the tests look for the entries they care about in it.
fn tc(args: &[&str]) -> String {
    let out = Command::new("tc").args(args).output().expect("tc (iproute2) is needed for this test");
    assert!(out.status.success(), "tc {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `netray monitor --json` until killed; returns its packet events.
fn monitor_events(child: Child) -> Vec<Value> {
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "monitor failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "packet")
        .collect()
}

#[test]
fn out_rule_drops_replies_at_tc_egress_and_leaves_ingress_alone() {
    let env = Env::new("tcout");
    let peer = env.lab.peer_v4().to_string();
    let out = env.ok(&["firewall", "attach", "-i", env.iface()]);
    let backend = common::tc_backend();
    let ifindex = env.lab.host_ifindex();
    assert_eq!(out, format!("firewall attached to {} (ifindex {ifindex}, native XDP, TC egress via {backend})\n", env.iface()));
    let eg = tc_entry(&env, "tc-egress").expect("the TC egress program is attached with the firewall");
    assert_eq!(eg["backend"], backend);
    assert_eq!(eg["features"], serde_json::json!(["firewall"]));
    assert!(eg["prog_id"].as_u64().unwrap() > 0);
    assert_eq!(env.lab.ping(Family::V4, 3).unwrap(), 3);

    env.ok(&["deny", "add", &peer, "--dir", "out"]);
    assert_eq!(env.lab.ping(Family::V4, 3).unwrap(), 0, "replies to the peer must not leave the host");
    assert_eq!(env.lab.ping(Family::V6, 2).unwrap(), 2, "an IPv4 out rule leaves IPv6 alone");
    let st = status(&env);
    let xdp = &st["interfaces"][0]["stats"];
    assert_eq!(xdp["dropped"], 0, "the requests came in: ingress untouched: {st}");
    assert!(xdp["seen"].as_u64().unwrap() >= 5, "{st}");
    let eg = &st["interfaces"][0]["tc"][0]["stats"];
    assert_eq!(eg["dropped"], 3, "the three echo replies, dropped at egress: {st}");
    let list = env.json(&["deny", "list", "--json"]);
    assert_eq!(list[0]["dir"], "out");
    assert_eq!(list[0]["packets"], 3, "{list}");

    // An "out" rule for someone else, and an "in" rule for someone else: no effect on the peer.
    env.ok(&["deny", "del", &peer, "--dir", "out"]);
    env.ok(&["deny", "add", "192.0.2.0/24", "--dir", "out"]);
    env.ok(&["deny", "add", "203.0.113.0/24"]);
    assert_eq!(env.lab.ping(Family::V4, 3).unwrap(), 3);
    assert_eq!(env.udp_answered(Family::V4, 5), 5);

    env.ok(&["firewall", "detach", "-i", env.iface()]);
    assert_eq!(status(&env)["interfaces"], serde_json::json!([]));
    let if_dir = env.pin.join("if").join(env.lab.host_ifindex().to_string());
    assert!(!if_dir.exists(), "{} left behind", if_dir.display());
}

#[test]
fn monitor_at_tc_ingress_and_egress_reports_hook_and_direction() {
    let env = Env::new("tcmon");
    let mon = env
        .cmd(&["monitor", "-i", env.iface(), "--hook", "tc-ingress,tc-egress", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the TC monitor", || {
        ["tc-ingress", "tc-egress"].iter().all(|h| {
            tc_entry(&env, h).is_some_and(|t| t["features"].as_array().unwrap().iter().any(|f| f == "monitor"))
        })
    });
    assert_eq!(env.lab.ping(Family::V4, 3).unwrap(), 3);
    let events = monitor_events(mon);
    let (host, peer) = (env.lab.host_v4().to_string(), env.lab.peer_v4().to_string());
    let ifindex = env.lab.host_ifindex();
    let out: Vec<&Value> = events.iter().filter(|e| e["hook"] == "tc-egress" && e["proto"] == "icmp").collect();
    let inc: Vec<&Value> = events.iter().filter(|e| e["hook"] == "tc-ingress" && e["proto"] == "icmp").collect();
    assert_eq!(out.len(), 3, "three echo replies at tc-egress: {events:?}");
    assert_eq!(inc.len(), 3, "three echo requests at tc-ingress: {events:?}");
    for e in &out {
        assert_eq!(e["direction"], "egress");
        assert_eq!((e["src"].as_str().unwrap(), e["dst"].as_str().unwrap()), (host.as_str(), peer.as_str()));
        assert_eq!((e["icmp_type"].as_u64(), e["icmp_code"].as_u64()), (Some(0), Some(0)), "echo reply");
        assert_eq!(e["ifindex"], ifindex);
        assert_eq!(e["ifname"], env.iface());
        assert_eq!(e["len"], ICMP_LEN);
        assert_eq!(e["verdict"], "pass");
        assert!(e.get("pkt_type").is_none(), "pkt_type is for the socket hook: {e}");
    }
    for e in &inc {
        assert_eq!(e["direction"], "ingress");
        assert_eq!((e["src"].as_str().unwrap(), e["dst"].as_str().unwrap()), (peer.as_str(), host.as_str()));
        assert_eq!(e["icmp_type"], 8);
    }
    assert!(events.iter().all(|e| e["hook"] != "xdp"), "only the hooks asked for");
    // The monitor was the only user: everything is gone.
    assert_eq!(status(&env)["interfaces"], serde_json::json!([]));
}

#[test]
fn socket_hook_sees_both_directions_with_the_packet_type() {
    let env = Env::new("tcsock");
    let mon = env
        .cmd(&["monitor", "-i", env.iface(), "--hook", "socket", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the socket monitor", || status(&env)["interfaces"][0]["monitor_pid"].is_u64());
    assert_eq!(env.lab.ping(Family::V4, 3).unwrap(), 3);
    let events = monitor_events(mon);
    let (host, peer) = (env.lab.host_v4().to_string(), env.lab.peer_v4().to_string());
    let icmp: Vec<&Value> = events.iter().filter(|e| e["proto"] == "icmp").collect();
    let requests: Vec<&&Value> = icmp.iter().filter(|e| e["icmp_type"] == 8).collect();
    let replies: Vec<&&Value> = icmp.iter().filter(|e| e["icmp_type"] == 0).collect();
    assert_eq!((requests.len(), replies.len()), (3, 3), "{events:?}");
    for e in requests {
        assert_eq!(e["hook"], "socket");
        assert_eq!(e["pkt_type"], "host", "{e}");
        assert_eq!(e["direction"], "ingress");
        assert_eq!(e["src"], peer.as_str());
        assert_eq!(e["len"], ICMP_LEN);
    }
    for e in replies {
        assert_eq!(e["pkt_type"], "outgoing", "{e}");
        assert_eq!(e["direction"], "egress");
        assert_eq!((e["src"].as_str().unwrap(), e["dst"].as_str().unwrap()), (host.as_str(), peer.as_str()));
    }
    assert_eq!(status(&env)["interfaces"], serde_json::json!([]));
}

static OBJ: AtomicU32 = AtomicU32::new(0);

/// Another tool's tc classifier, compiled now with clang-19: drops UDP
/// datagrams sent from port 7 (the lab's UDP echo replies).
fn foreign_classifier() -> PathBuf {
    let dir = std::env::temp_dir();
    let n = OBJ.fetch_add(1, Ordering::Relaxed);
    let src = dir.join(format!("netray-foreign-{}-{n}.c", std::process::id()));
    let obj = src.with_extension("o");
    std::fs::write(
        &src,
        r#"#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
__attribute__((section("classifier"), used))
int drop_udp_from_7(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end)
		return TC_ACT_OK;
	if (eth->h_proto == __builtin_bswap16(ETH_P_IP) && ip->ihl == 5 && ip->protocol == 17 &&
	    udp->source == __builtin_bswap16(7))
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}
char _license[] __attribute__((section("license"), used)) = "GPL";
"#,
    )
    .unwrap();
    let arch = if cfg!(target_arch = "aarch64") { "aarch64" } else { "x86_64" };
    let out = Command::new("clang-19")
        .args(["-O2", "-g", "-target", "bpf", &format!("-I/usr/include/{arch}-linux-gnu"), "-c"])
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .output()
        .expect("clang-19 is needed to build the foreign classifier");
    assert!(out.status.success(), "clang-19: {}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_file(&src);
    obj
}

/// The foreign filter, its effect (no UDP echo answers) and ICMP unaffected.
fn assert_foreign_filter_works(env: &Env, when: &str) {
    let filters = tc(&["filter", "show", "dev", env.iface(), "egress"]);
    assert!(filters.contains("drop_udp_from_7"), "{when}: the foreign filter is gone: {filters}");
    assert_eq!(env.udp_answered(Family::V4, 5), 0, "{when}: the foreign filter no longer drops");
    assert_eq!(env.lab.ping(Family::V4, 2).unwrap(), 2, "{when}: ping");
}

fn foreign_filter_survives(legacy: bool) {
    let env = Env::new(if legacy { "tcfl" } else { "tcfx" });
    let obj = foreign_classifier();
    tc(&["qdisc", "add", "dev", env.iface(), "clsact"]);
    tc(&["filter", "add", "dev", env.iface(), "egress", "bpf", "da", "obj", obj.to_str().unwrap(), "sec", "classifier"]);
    let _ = std::fs::remove_file(&obj);
    assert_foreign_filter_works(&env, "before netray");

    let mut attach = env.cmd(&["firewall", "attach", "-i", env.iface()]);
    if legacy {
        attach.env("NETRAY_TC_LEGACY", "1");
    }
    let out = attach.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let backend = if legacy { "clsact" } else { "tcx" };
    assert_eq!(tc_entry(&env, "tc-egress").unwrap()["backend"], backend);
    if legacy {
        let filters = tc(&["filter", "show", "dev", env.iface(), "egress"]);
        assert!(filters.contains("netray_tc_egres"), "netray's own filter: {filters}");
    }
    assert_foreign_filter_works(&env, "with netray attached");
    // netray's out rule and the foreign filter both apply.
    env.ok(&["deny", "add", &env.lab.peer_v4().to_string(), "--dir", "out"]);
    assert_eq!(env.lab.ping(Family::V4, 2).unwrap(), 0, "the out rule drops replies");
    env.ok(&["deny", "del", &env.lab.peer_v4().to_string(), "--dir", "out"]);

    env.ok(&["firewall", "detach", "-i", env.iface()]);
    assert_foreign_filter_works(&env, "after netray detached");
    let filters = tc(&["filter", "show", "dev", env.iface(), "egress"]);
    assert!(!filters.contains("netray_tc"), "netray's filter must be gone: {filters}");
    assert!(tc(&["qdisc", "show", "dev", env.iface()]).contains("clsact"), "the clsact qdisc netray did not create stays");
}

#[test]
fn foreign_tc_filter_survives_tcx_attach_and_detach() {
    foreign_filter_survives(false);
}

#[test]
fn foreign_tc_filter_survives_legacy_clsact_attach_and_detach() {
    foreign_filter_survives(true);
}

#[test]
fn legacy_clsact_that_netray_created_is_removed_on_detach() {
    let env = Env::new("tcown");
    assert!(!tc(&["qdisc", "show", "dev", env.iface()]).contains("clsact"));
    let out = env.cmd(&["firewall", "attach", "-i", env.iface()]).env("NETRAY_TC_LEGACY", "1").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("firewall attached to {} (ifindex {}, native XDP, TC egress via clsact)\n", env.iface(), env.lab.host_ifindex())
    );
    assert!(String::from_utf8_lossy(&out.stderr).is_empty(), "no libbpf noise: {}", String::from_utf8_lossy(&out.stderr));
    assert!(tc(&["qdisc", "show", "dev", env.iface()]).contains("clsact"));
    env.ok(&["deny", "add", &env.lab.peer_v4().to_string(), "--dir", "out"]);
    assert_eq!(env.lab.ping(Family::V4, 2).unwrap(), 0);
    env.ok(&["firewall", "detach", "-i", env.iface()]);
    assert_eq!(env.lab.ping(Family::V4, 2).unwrap(), 2);
    assert!(!tc(&["qdisc", "show", "dev", env.iface()]).contains("clsact"), "netray's own clsact goes with it");
}

#[test]
fn native_xdp_refused_with_the_kernels_reason_and_auto_falls_back() {
    let env = Env::new("xdpmode");
    // veth refuses native XDP without frags support when the peer's MTU is
    // larger than a page can hold.
    env.lab.set_mtu(9000).unwrap();
    let iface = env.iface().to_string();
    let mut all = String::new();
    let args = ["firewall", "attach", "-i", &iface, "--mode", "native"];
    all.push_str(&transcript(&args, &env.cmd(&args).output().unwrap()));
    assert_eq!(status(&env)["interfaces"], serde_json::json!([]), "nothing left after a refusal");
    let args = ["firewall", "attach", "-i", &iface, "--mode", "auto"];
    all.push_str(&transcript(&args, &env.cmd(&args).output().unwrap()));
    // The kernel's reason is part of the message (veth: "Peer MTU is too large to set XDP").
    Normalise::default()
        .literal(&iface, "<IFACE>")
        .literal(&env.lab.host_ifindex().to_string(), "<IFINDEX>")
        .literal(&format!("TC egress via {}", common::tc_backend()), "TC egress via <TC BACKEND>")
        .check("firewall-native-refused", &all);
    assert_eq!(status(&env)["interfaces"][0]["mode"], "generic");
    env.ok(&["deny", "add", &env.lab.peer_v4().to_string()]);
    assert_eq!(env.lab.ping(Family::V4, 2).unwrap(), 0, "generic XDP enforces");
    env.ok(&["firewall", "detach", "--all"]);

    // Back to a normal MTU: native works and status says so.
    env.lab.set_mtu(1500).unwrap();
    let r = env.json(&["firewall", "attach", "-i", env.iface(), "--mode", "native", "--json"]);
    assert_eq!(r["mode"], "native");
    assert_eq!(status(&env)["interfaces"][0]["mode"], "native");
    let st = env.ok(&["firewall", "status"]);
    let row = st.lines().nth(1).unwrap_or_default();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[..4], [env.iface(), &env.lab.host_ifindex().to_string(), "native", &format!("tc-egress:{}", common::tc_backend())], "{st}");
}
