//! Who needs the token (auth.rs, docs/daemon.md): changes and event streams
//! always; plain reads only when the daemon listens beyond loopback; /healthz
//! and /metrics never. A refused request leaves nothing attached.

mod common;

use common::Env;
use netray_daemon::config::Config;

/// Whether any XDP program is attached to `ifname` (what `ip link` shows).
fn xdp_attached(ifname: &str) -> bool {
    let out = std::process::Command::new("ip").args(["-d", "link", "show", "dev", ifname]).output().expect("ip link");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ip link show {ifname}: {text}");
    text.contains("prog/xdp")
}

#[test]
fn streams_and_changes_need_the_token_and_leave_nothing_behind_when_refused() {
    let env = Env::new("dauth");
    let (c, iface) = (env.client(), env.iface().to_string());
    let attach = format!(r#"{{"name": "{iface}"}}"#);
    let refused = [
        c.request("GET", &format!("/v1/events/packets?interface={iface}"), None, None, None),
        c.request("GET", &format!("/v1/events/packets?interface={iface}&filter=icmp"), None, None, None),
        c.request("GET", "/v1/events/exec", None, None, None),
        c.request("GET", "/v1/events/exec", Some("not-the-token-0123456789"), None, None),
        c.request("POST", "/v1/interfaces", None, None, Some(&attach)),
        c.request("POST", "/v1/rules", None, None, Some(r#"{"cidr": "192.0.2.0/24"}"#)),
        c.request("DELETE", &format!("/v1/interfaces/{iface}"), None, None, None),
    ];
    for r in &refused {
        let e = r.error(401);
        assert!(e.contains("token"), "{e}");
    }
    assert!(refused[0].error(401).contains("event streams"), "the message says why");
    assert!(!xdp_attached(&iface), "a refused request attached a program to {iface}");
    assert!(netray_core::Dispatcher::list(&env.pins.pin()).unwrap().is_empty());
    assert_eq!(c.get("/v1/rules").json()["rules"], serde_json::json!([]), "a refused POST added nothing");

    // On loopback, plain reads, health and metrics are open.
    for path in ["/v1/rules", "/v1/stats", "/v1/interfaces", "/openapi.json", "/healthz", "/metrics"] {
        assert_eq!(c.get(path).status, 200, "{path}");
    }
    // With the token, the same stream opens.
    let mut s = c.sse(&format!("/v1/events/packets?interface={iface}"));
    assert_eq!(s.next().expect("ready").0, "ready");
    assert!(xdp_attached(&iface));
}

#[test]
fn beyond_loopback_every_read_but_health_and_metrics_needs_the_token() {
    let mut env = Env::new("dauth2");
    env.stop();
    // The lab's host-side address: a non-loopback address of this machine.
    let listen = std::net::SocketAddr::new(env.lab.host_v4().into(), 0);
    env.start_on(Config::default(), listen);
    let c = env.client();
    for path in ["/v1/rules", "/v1/rules/1", "/v1/stats", "/v1/interfaces", "/v1/flows", "/openapi.json", "/v1/nowhere"] {
        let e = c.get(path).error(401);
        assert!(e.contains("beyond loopback"), "{path}: {e}");
        assert_ne!(c.get_auth(path).status, 401, "{path} with the token");
    }
    assert_eq!(c.get("/healthz").status, 200);
    assert_eq!(c.get("/metrics").status, 200);
    assert_eq!(c.get_auth("/v1/rules").status, 200);
}

/// Beyond loopback a short or placeholder token is refused before anything
/// binds or loads, with the fix in the one error line; the same token on
/// loopback starts. 192.0.2.1 (TEST-NET-1) is never bound: the check comes
/// first, and were it missing the bind would fail on this host.
#[test]
fn a_weak_token_beyond_loopback_is_refused_at_start_naming_the_fix() {
    use std::os::unix::fs::OpenOptionsExt;
    let state = tempfile::tempdir().expect("tempdir");
    for (token, why) in [("short-but-sixteen-chars", "at least 32"), ("change-me-0123456789abcdef0123456789abcdef", "placeholder")] {
        let token_file = state.path().join("token");
        let _ = std::fs::remove_file(&token_file);
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&token_file).unwrap();
        std::io::Write::write_all(&mut f, format!("{token}\n").as_bytes()).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_netray-daemon-test-bin"))
            .arg("--pin-dir")
            .arg(state.path().join("pins"))
            .args(["--listen", "192.0.2.1:0", "--state-dir"])
            .arg(state.path())
            .arg("--token-file")
            .arg(&token_file)
            .output()
            .expect("run the daemon");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{token}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one error line: {stderr}");
        assert!(stderr.contains(why) && stderr.contains("openssl rand -hex 32") && stderr.contains("beyond loopback"), "{stderr}");
        assert!(out.stdout.is_empty(), "nothing listened: {}", String::from_utf8_lossy(&out.stdout));
    }
}
