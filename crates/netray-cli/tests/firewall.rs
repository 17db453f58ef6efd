//! End to end in the lab: the firewall drops what its rules say, live, and
//! keeps doing so after netray is killed.

mod common;

use std::{
    process::Stdio,
    time::Duration,
};

use common::{
    expected::{transcript, Normalise},
    Env,
};
use netray_lab::Family;

const UDP_ECHO: u16 = 7;

#[test]
fn deny_add_and_del_stop_and_restore_ping_and_udp() {
    let env = Env::new("fw");
    let peer = env.lab.peer_v4().to_string();
    env.ok(&["firewall", "attach", "-i", env.iface()]);
    assert_eq!(env.lab.ping(Family::V4, 3).unwrap(), 3);
    assert_eq!(env.udp_answered(Family::V4, 5), 5);

    let out = env.ok(&["deny", "add", &peer]);
    assert_eq!(out, format!("added rule 1: deny {peer}/32\n"));
    assert_eq!(env.lab.ping(Family::V4, 3).unwrap(), 0, "ping must fail once the peer is denied");
    assert_eq!(env.udp_answered(Family::V4, 5), 0, "UDP must fail once the peer is denied");
    assert_eq!(env.lab.ping(Family::V6, 2).unwrap(), 2, "an IPv4 rule leaves IPv6 alone");

    let list = env.json(&["deny", "list", "--json"]);
    let rule = &list[0];
    assert_eq!(rule["cidr"], format!("{peer}/32"));
    assert_eq!(rule["net"], rule["cidr"], "the old name stays readable for one release: {list}");
    assert!(rule["packets"].as_u64().unwrap() >= 8, "{list}");

    env.ok(&["deny", "del", &peer]);
    assert_eq!(env.lab.ping(Family::V4, 3).unwrap(), 3);
    assert_eq!(env.udp_answered(Family::V4, 5), 5);
    assert_eq!(env.json(&["deny", "list", "--json"]), serde_json::json!([]));
}

#[test]
fn port_rule_drops_only_that_port_and_ipv6_rules_work() {
    let env = Env::new("port");
    env.ok(&["firewall", "attach", "-i", env.iface()]);
    let peer4 = env.lab.peer_v4().to_string();
    env.ok(&["deny", "add", &peer4, "--proto", "udp", "--port", &UDP_ECHO.to_string()]);
    assert_eq!(env.udp_answered(Family::V4, 5), 0, "UDP to port 7 is denied");
    assert_eq!(env.lab.ping(Family::V4, 3).unwrap(), 3, "ICMP from the same peer still passes");
    assert_eq!(env.udp_answered(Family::V6, 5), 5);

    // An IPv6 prefix rule (the lab's /64) for ICMPv6 only.
    let net6 = format!("{}/64", ipv6_prefix64(env.lab.peer_v6()));
    env.ok(&["deny", "add", &net6, "--proto", "icmpv6"]);
    assert_eq!(env.lab.ping(Family::V6, 3).unwrap(), 0, "ICMPv6 from the /64 is denied");
    assert_eq!(env.udp_answered(Family::V6, 5), 5, "UDP over IPv6 still passes");
    let list = env.json(&["deny", "list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[1]["proto"], "icmpv6");
    assert!(list[1]["packets"].as_u64().unwrap() >= 3);
}

fn ipv6_prefix64(a: std::net::Ipv6Addr) -> std::net::Ipv6Addr {
    let mut o = a.octets();
    o[8..].fill(0);
    o.into()
}

#[test]
fn firewall_keeps_enforcing_after_sigkill_and_state_survives() {
    let env = Env::new("kill");
    let peer = env.lab.peer_v4().to_string();
    env.ok(&["firewall", "attach", "-i", env.iface()]);
    env.ok(&["deny", "add", &peer]);
    // A long-running netray (a monitor) is killed hard in the middle of its work.
    let mut child = env
        .cmd(&["monitor", "-i", env.iface(), "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(env.lab.ping(Family::V4, 2).unwrap(), 0);
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();

    assert_eq!(env.lab.ping(Family::V4, 3).unwrap(), 0, "still enforcing after SIGKILL");
    let list = env.json(&["deny", "list", "--json"]);
    assert_eq!(list[0]["cidr"], format!("{peer}/32"));
    assert!(list[0]["packets"].as_u64().unwrap() >= 5, "counters kept: {list}");
    let status = env.json(&["firewall", "status", "--json"]);
    let iface = &status["interfaces"][0];
    assert_eq!(iface["interface"], env.iface());
    assert_eq!(iface["features"], serde_json::json!(["firewall"]), "the dead monitor no longer counts");
    // A new monitor takes over from the dead one.
    let out = env.ok(&["monitor", "-i", env.iface(), "--json", "--duration", "0.3"]);
    // Whatever packets came first (none are sent here), then the closing stats line.
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "stats", "{out}");
    env.ok(&["firewall", "detach", "-i", env.iface()]);
    assert_eq!(env.lab.ping(Family::V4, 2).unwrap(), 2, "detach stops enforcing");
    let status = env.json(&["firewall", "status", "--json"]);
    assert_eq!(status["interfaces"], serde_json::json!([]));
}

#[test]
fn monitor_and_firewall_start_and_stop_independently_without_loss() {
    let env = Env::new("indep");
    // Monitor first: it attaches the dispatcher itself.
    let mon = env.cmd(&["monitor", "-i", env.iface(), "--json"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    env.wait_for_feature("monitor");
    env.ok(&["firewall", "attach", "-i", env.iface()]);
    let st = env.json(&["firewall", "status", "--json"]);
    assert_eq!(st["interfaces"][0]["features"], serde_json::json!(["firewall", "monitor"]));

    // Toggle features while traffic flows: nothing may be lost.
    let sender = std::thread::scope(|s| {
        let t = s.spawn(|| env.udp_answered(Family::Both, 200));
        env.ok(&["firewall", "detach", "-i", env.iface()]);
        env.ok(&["firewall", "attach", "-i", env.iface()]);
        t.join().unwrap()
    });
    assert_eq!(sender, 200, "toggling the firewall must not drop traffic");

    // Stopping the monitor leaves the firewall attached.
    unsafe { libc::kill(mon.id() as i32, libc::SIGINT) };
    let out = mon.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "stats");
    assert!(last["received"].as_u64().unwrap() >= 200, "{last}");
    assert_eq!(last["received"], last["packets_seen"], "every packet seen became an event: {last}");
    assert_eq!(last["lost"], 0);
    let st = env.json(&["firewall", "status", "--json"]);
    assert_eq!(st["interfaces"][0]["features"], serde_json::json!(["firewall"]));
    env.ok(&["deny", "add", &env.lab.peer_v4().to_string()]);
    assert_eq!(env.lab.ping(Family::V4, 2).unwrap(), 0);
}

/// Each mistake gets one line that names it and the way out (exit status 1),
/// or clap's usage error (exit status 2); never a panic.
#[test]
fn bad_input_gets_one_clear_error_line() {
    let env = Env::new("bad");
    let iface = env.iface().to_string();
    let bad = std::env::temp_dir().join(format!("netray-bad-rules-{}.txt", std::process::id()));
    let bad_file = bad.to_str().unwrap().to_string();
    let mut all = String::new();
    let mut run = |args: &[&str]| all.push_str(&transcript(args, &env.cmd(args).output().unwrap()));
    run(&["firewall", "attach", "-i", "no-such-if0"]);
    run(&["deny", "add", "10.0.0.1/8"]);
    run(&["deny", "add", "not-an-address"]);
    run(&["deny", "add", "10.0.0.0/8", "--proto", "icmp", "--port", "80"]);
    run(&["deny", "add", "10.0.0.0/8", "--proto", "icmpv6"]);
    run(&["deny", "add", "2001:db8::/32", "--proto", "icmp"]);
    run(&["limit", "add", "10.0.0.0/8", "--rate", "10/s", "--proto", "icmpv6"]);
    run(&["deny", "add", "10.0.0.0/8"]);
    run(&["deny", "add", "10.0.0.0/8"]);
    run(&["deny", "add", "10.1.0.0/16", "10.1.0.0/16"]);
    run(&["deny", "del", "10.9.0.0/16"]);
    run(&["deny", "add", "10.2.0.0/16", "--ttl", "0"]);
    run(&["deny", "add", "10.2.0.0/16", "--ttl", "-3s"]);
    run(&["deny", "add", "10.2.0.0/16", "--ttl", "soon"]);
    run(&["deny", "add", "10.2.0.0/16", "--audit", "--ttl", "3"]);
    // Nothing changed: the one rule added above, as it was.
    run(&["deny", "list"]);
    std::fs::write(&bad, "192.0.2.0/24\n# fine\n198.51.100.0/24 udp\n").unwrap();
    run(&["deny", "add", "--file", &bad_file]);
    std::fs::write(&bad, "192.0.2.0/24\n198.51.100.0/33\n").unwrap();
    run(&["deny", "add", "--file", &bad_file]);
    std::fs::remove_file(&bad).unwrap();
    run(&["deny", "add", "--file", "/nonexistent/rules.txt"]);
    run(&["deny", "del", "--id", "42"]);
    run(&["firewall", "detach", "-i", &iface]);
    run(&["firewall", "attach", "-i", &iface, "--max-rules", "2000000"]);
    run(&["firewall", "attach", "-i", &iface, "--mode", "turbo"]);
    // Not root: drop privileges for one call.
    let out = common::netray_as_nobody(&["deny", "list"]);
    all.push_str(&transcript(&["deny", "list", "(as uid 65534)"], &out));
    Normalise::default()
        .literal(&env.pin.to_string_lossy(), "<PIN DIR>")
        .literal(&bad_file, "<RULES FILE>")
        .literal(&iface, "<IFACE>")
        .check("firewall-errors", &all);
}

/// Rule tables compiled by a netray with another table layout are refused,
/// with the way out, instead of being misread by this one's programs.
#[test]
fn tables_of_another_format_are_refused_until_reset() {
    use netray_core::maps;
    use netray_ebpf::abi::nr_fw_state;

    let env = Env::new("fmt");
    env.ok(&["firewall", "attach", "-i", env.iface()]);
    env.ok(&["deny", "add", "192.0.2.0/24"]);
    let state_map = maps::open_pinned(&env.pin.join("fw/fw_state")).unwrap();
    let mut state: nr_fw_state = maps::get(&state_map, 0).unwrap().unwrap();
    let format = state.table_format;
    state.table_format = format - 1;
    maps::put(&state_map, 0, &state).unwrap();
    let mut all = String::new();
    let iface = env.iface().to_string();
    for args in [&["deny", "list"][..], &["firewall", "attach", "-i", &iface]] {
        all.push_str(&transcript(args, &env.cmd(args).output().unwrap()));
    }
    env.ok(&["firewall", "detach", "--all"]);
    env.ok(&["firewall", "attach", "-i", env.iface()]);
    assert_eq!(env.json(&["deny", "list", "--json"]), serde_json::json!([]));

    // fw_state as a netray before the format field pinned it: 36-byte values.
    let path = env.pin.join("fw/fw_state");
    std::fs::remove_file(&path).unwrap();
    let fd = old_size_state_map(36);
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: fd is a map fd we own; the path is a valid C string.
    assert_eq!(unsafe { libbpf_sys::bpf_obj_pin(fd, c_path.as_ptr()) }, 0, "pinning the old-size fw_state");
    // SAFETY: closing our own fd; the pin keeps the map.
    unsafe { libc::close(fd) };
    for args in [&["deny", "list"][..], &["deny", "add", "192.0.2.0/24"], &["firewall", "attach", "-i", &iface]] {
        all.push_str(&transcript(args, &env.cmd(args).output().unwrap()));
    }
    // What an older netray's finished capture left behind goes too.
    std::fs::create_dir_all(env.pin.join("capture/999")).unwrap();
    env.ok(&["firewall", "detach", "--all"]);
    assert!(!env.pin.exists(), "detach --all removes all netray state, empty capture directories included");
    Normalise::default()
        .literal(&env.pin.to_string_lossy(), "<PIN DIR>")
        .literal(&iface, "<IFACE>")
        .pattern(&format!(r"format {} and this netray reads format {format}\b", format - 1), "format <OLD> and this netray reads format <CURRENT>")
        .literal(&format!("not {}:", std::mem::size_of::<nr_fw_state>()), "not <SIZE OF struct nr_fw_state>:")
        .check("firewall-old-tables", &all);
}

/// A one-element mmapable array map with `value_size`-byte values, like the
/// global-variable maps netray pins; returns its fd.
fn old_size_state_map(value_size: u32) -> i32 {
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        map_flags: libbpf_sys::BPF_F_MMAPABLE,
        ..Default::default()
    };
    // SAFETY: valid name and opts; the kernel checks the rest.
    let fd = unsafe {
        libbpf_sys::bpf_map_create(libbpf_sys::BPF_MAP_TYPE_ARRAY, c"fw_state".as_ptr(), 4, value_size, 1, &opts)
    };
    assert!(fd >= 0, "creating a map: {}", std::io::Error::last_os_error());
    fd
}

/// A blocklist read from a file (comments, blank lines, Spamhaus DROP style
/// "; SBL" notes) in one compile, deleted again the same way; stdin too.
#[test]
fn rules_from_a_file_or_stdin() {
    let env = Env::new("file");
    let path = std::env::temp_dir().join(format!("netray-rules-{}.txt", std::process::id()));
    let mut text = String::from("; Spamhaus-style header\n\n");
    for i in 0..3000u32 {
        text.push_str(&format!("10.{}.{}.0/24 ; SBL{i}\n", i / 256, i % 256));
    }
    text.push_str("2001:db8::/32  # and IPv6\n");
    std::fs::write(&path, &text).unwrap();
    let out = env.ok(&["deny", "add", "--proto", "udp", "--file", path.to_str().unwrap()]);
    assert_eq!(out.trim(), "added 3001 rules (ids 1-3001)");
    let list: serde_json::Value = serde_json::from_str(&env.ok(&["deny", "list", "--json"])).unwrap();
    let rules = list.as_array().unwrap();
    assert_eq!(rules.len(), 3001);
    assert!(rules.iter().all(|r| r["proto"] == "udp"), "--proto applies to every line");
    let out = env.ok(&["deny", "del", "--proto", "udp", "--file", path.to_str().unwrap()]);
    assert_eq!(out.trim(), "deleted 3001 rules (ids 1-3001)");
    assert_eq!(env.ok(&["deny", "list"]).trim(), "no rules");
    std::fs::remove_file(&path).unwrap();

    let mut child = env
        .cmd(&["deny", "add", "--file", "-", "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"192.0.2.0/24\n198.51.100.7\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"added":[1,2]}"#);
}

/// `firewall detach --json`, for one interface and for all: one object saying what was done.
#[test]
fn detach_says_what_it_did_as_json() {
    let env = Env::new("fdj");
    env.ok(&["firewall", "attach", "-i", env.iface()]);
    let one = env.json(&["firewall", "detach", "-i", env.iface(), "--json"]);
    assert_eq!(one, serde_json::json!({ "interface": env.iface(), "firewall": "off", "program_removed": true }));
    env.ok(&["firewall", "attach", "-i", env.iface()]);
    let all = env.json(&["firewall", "detach", "--all", "--json"]);
    assert_eq!(all, serde_json::json!({ "all": true, "detached": [env.iface()], "state_removed": true }));
    assert!(!env.pin.exists(), "detach --all removes all netray state");
}

/// `deny list`, `limit list` and `firewall status` only read: with a pin
/// directory that does not exist they report nothing attached and leave it
/// so (they used to create it, empty).
#[test]
fn read_only_commands_never_create_the_pin_dir() {
    let pin = format!("/sys/fs/bpf/netray-e2e-readonly-{}", std::process::id());
    let cases: [(&[&str], &str); 6] = [
        (&["deny", "list"], "no rules"),
        (&["deny", "list", "--json"], "[]"),
        (&["limit", "list"], "no limits"),
        (&["limit", "list", "--json"], "[]"),
        (&["firewall", "status"], "netray is not attached to any interface"),
        (&["firewall", "status", "--json"], "\"interfaces\":[]"),
    ];
    for (args, says) in cases {
        let out = common::netray(&[&["--pin-dir", &pin], args].concat());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains(says), "{args:?} says '{says}': {stdout}");
        assert!(!std::path::Path::new(&pin).exists(), "{args:?} created {pin}");
    }
}
