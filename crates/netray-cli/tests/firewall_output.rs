//! What users read of the firewall, whole: attach, deny add/list, monitor
//! lines and firewall status for an exact, known traffic (the lab's links are
//! quiet: the only packets on them are the ones the test sends).

mod common;

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
};

use common::{expected::Normalise, Env};
use netray_lab::Family;

#[test]
fn firewall_deny_monitor_and_status_read_as_reviewed() {
    let env = Env::new("fwout");
    let iface = env.iface().to_string();
    let peer6 = format!("{}/128", env.lab.peer_v6());
    let mut all = String::new();
    let run = |all: &mut String, args: &[&str]| {
        let out = env.ok(args);
        all.push_str(&format!("$ netray {}\n{out}\n", args.join(" ")));
    };
    run(&mut all, &["firewall", "attach", "-i", &iface]);
    run(&mut all, &["deny", "add", &env.lab.peer_v4().to_string()]);
    run(&mut all, &["deny", "add", &peer6, "--proto", "icmpv6"]);
    run(&mut all, &["deny", "add", "203.0.113.0/24", "2001:db8::/32", "--proto", "tcp", "--port", "443", "--dir", "out"]);

    // The monitor says on stderr when it is watching: then one ping each way.
    let mut monitor = env.cmd(&["monitor", "-i", &iface, "-c", "2"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(monitor.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert_eq!(env.lab.ping(Family::V4, 1).unwrap(), 0, "denied");
    assert_eq!(env.lab.ping(Family::V6, 1).unwrap(), 0, "denied");
    let out = monitor.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(out.status.success(), "{first}{rest}");
    all.push_str(&format!(
        "$ netray monitor -i {iface} -c 2\n--- stdout\n{}--- stderr\n{first}{rest}\n",
        String::from_utf8_lossy(&out.stdout)
    ));

    run(&mut all, &["deny", "list"]);
    run(&mut all, &["deny", "list", "--json"]);
    run(&mut all, &["firewall", "status"]);

    let st = env.json(&["firewall", "status", "--json"]);
    let ifindex = st["interfaces"][0]["ifindex"].as_u64().unwrap();
    let prog = st["interfaces"][0]["prog_id"].as_u64().unwrap();
    Normalise::default()
        .literal(&iface, "<IFACE>")
        .literal(&env.lab.peer_v4().to_string(), "<PEER V4>")
        .literal(&env.lab.host_v4().to_string(), "<HOST V4>")
        .literal(&env.lab.peer_v6().to_string(), "<PEER V6>")
        .literal(&env.lab.host_v6().to_string(), "<HOST V6>")
        .pattern(&format!(r"\b{ifindex}\b"), "<IFINDEX>")
        .pattern(&format!(r"\b{prog}\b"), "<PROG>")
        .literal(&format!(":{}", common::tc_backend()), ":<TC BACKEND>")
        .fold_padding()
        .check("firewall", &all);
}
