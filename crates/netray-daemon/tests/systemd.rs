//! Under systemd (Type=notify, WatchdogSec): READY=1 once serving, and the
//! watchdog pinged only while /healthz's checks pass. systemd's side is a
//! datagram socket here, as it is for systemd itself (NOTIFY_SOCKET).

mod common;

use std::{os::unix::net::UnixDatagram, time::Duration};

use common::{Pins, Proc};

/// The notifications the daemon sends within `wait`.
fn notifications(sock: &UnixDatagram, wait: Duration) -> Vec<String> {
    sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let end = std::time::Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while std::time::Instant::now() < end {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).trim().to_string());
        }
    }
    got
}

#[test]
fn ready_then_watchdog_pings_only_while_healthy() {
    let pins = Pins::new();
    let state = common::state_dir_with_token();
    let path = state.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let env = [("NOTIFY_SOCKET", path.to_str().unwrap()), ("WATCHDOG_USEC", "200000")];

    let d = Proc::start_env(&pins, state.path(), &[], &env);
    let got = notifications(&sock, Duration::from_millis(800));
    assert_eq!(got.first().map(String::as_str), Some("READY=1"), "{got:?}");
    let pings = got.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(pings >= 3, "a healthy daemon pings every 100 ms: {got:?}");
    drop(d);
    // Its last pings may still wait in the socket: not the next daemon's.
    sock.set_nonblocking(true).unwrap();
    while sock.recv(&mut [0u8; 512]).is_ok() {}
    sock.set_nonblocking(false).unwrap();

    // Too close to its fd limit: ready, but no ping (systemd will restart it).
    let d = Proc::start_env(&pins, state.path(), &["prlimit", "--nofile=72:72", "--"], &env);
    let got = notifications(&sock, Duration::from_millis(800));
    assert_eq!(d.client.get("/healthz").status, 503);
    assert_eq!(got, vec!["READY=1".to_string()], "an unhealthy daemon must not ping the watchdog");
}
