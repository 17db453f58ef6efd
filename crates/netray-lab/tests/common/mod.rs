//! Helpers for the lab tests: they look at the system with `ip` directly,
//! independently of the code under test.
#![allow(dead_code)]

use std::process::Command;

pub fn ip(netns: Option<&str>, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    let out = cmd.args(args).output().expect("run ip");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

pub fn ip_ok(netns: Option<&str>, args: &[&str]) -> String {
    let (ok, text) = ip(netns, args);
    assert!(ok, "ip {args:?} failed: {text}");
    text
}

pub fn netns_listed(ns: &str) -> bool {
    ip_ok(None, &["netns", "list"])
        .lines()
        .any(|l| l.split_whitespace().next() == Some(ns))
}

pub fn link_exists(netns: Option<&str>, ifname: &str) -> bool {
    ip(netns, &["link", "show", "dev", ifname]).0
}

/// Neither the namespace nor the host veth end is left.
pub fn assert_gone(netns: &str, host_if: &str) {
    assert!(!netns_listed(netns), "namespace {netns} left over");
    assert!(!link_exists(None, host_if), "link {host_if} left over");
    assert!(!std::path::Path::new("/run/netns").join(netns).exists());
}

pub fn assert_present(netns: &str, host_if: &str, peer_if: &str) {
    assert!(netns_listed(netns), "namespace {netns} missing");
    assert!(link_exists(None, host_if), "link {host_if} missing");
    assert!(
        link_exists(Some(netns), peer_if),
        "link {peer_if} missing in {netns}"
    );
    assert!(
        !link_exists(None, peer_if),
        "peer {peer_if} must not be in the root namespace"
    );
}
