//! The daemon in production: thousands of mixed requests under a low fd
//! limit, with nothing growing (fds, memory), and a health check that tells
//! the truth.

mod common;

use common::{Pins, Proc};
use netray_lab::Lab;

/// Mixed requests answered; the fd count and RSS are sampled on the way.
const REQUESTS: usize = 5_000;
/// The first requests warm up (allocator arenas, caches, first mappings).
const WARMUP: usize = 1_000;

#[test]
fn five_thousand_mixed_requests_under_256_fds_leave_fds_and_memory_flat() {
    let pins = Pins::new();
    let lab = Lab::up(&netray_lab::unique_name("dsoak")).unwrap();
    let state = common::state_dir_with_token();
    let d = Proc::start_with(&pins, state.path(), &["prlimit", "--nofile=256:256", "--"]);
    let c = &d.client;
    let iface = lab.host_if().to_string();
    assert_eq!(c.post("/v1/interfaces", &format!(r#"{{"name": "{iface}"}}"#)).status, 201);
    let r = c.post("/v1/rules", r#"[{"cidr": "192.0.2.0/24"}, {"cidr": "2001:db8::/32", "proto": "udp", "port": 53}]"#);
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json()["added"][0]["id"].as_u64().unwrap();

    let mut warm = (0, 0);
    let mut peak_fds = 0;
    for i in 0..REQUESTS {
        if i == WARMUP {
            warm = d.fds_and_rss();
        }
        let r = match i % 10 {
            0 if i % 100 == 0 => {
                // An event stream: connect, read its first event, go away.
                let mut s = c.sse(&format!("/v1/events/packets?interface={iface}"));
                assert_eq!(s.next().expect("ready").0, "ready", "request {i}");
                continue;
            }
            0 | 1 => c.get("/v1/rules"),
            2 => c.get(&format!("/v1/rules/{id}")),
            3 => c.get("/v1/stats"),
            4 => c.get("/v1/interfaces"),
            5 => c.get(&format!("/v1/interfaces/{iface}")),
            6 | 7 => c.get("/metrics"),
            8 => c.get("/v1/flows"),
            _ => {
                // A change: add a rule, then delete it.
                let r = c.post("/v1/rules", &format!(r#"{{"cidr": "198.51.100.{}/32"}}"#, i % 250));
                assert_eq!(r.status, 201, "request {i}: {}", r.text);
                let added = r.json()["added"][0]["id"].as_u64().unwrap();
                c.delete(&format!("/v1/rules/{added}"))
            }
        };
        assert!((200..300).contains(&r.status), "request {i}: {} {}", r.status, r.text);
        if i % 250 == 0 {
            let (fds, rss) = d.fds_and_rss();
            peak_fds = peak_fds.max(fds);
            if std::env::var_os("NETRAY_SOAK_TRACE").is_some() {
                println!("soak: {i} requests: {fds} fds, {rss} KiB");
            }
        }
    }
    let end = d.fds_and_rss();
    let health = c.get("/healthz");
    println!(
        "soak: {REQUESTS} requests; after {WARMUP}: {} fds, {} KiB RSS; at the end: {} fds, {} KiB RSS; peak fds {peak_fds} (limit 256)",
        warm.0, warm.1, end.0, end.1
    );
    assert!(end.0 <= warm.0 + 2, "file descriptors grew from {} to {}", warm.0, end.0);
    assert!(end.1 <= warm.1 + 4096, "resident memory grew from {} KiB to {} KiB", warm.1, end.1);
    assert_eq!(health.status, 200, "{}", health.text);
    assert_eq!(health.json()["checks"]["fds"]["limit"], 256);
}

#[test]
fn health_names_what_is_wrong_with_a_503() {
    let pins = Pins::new();
    let state = common::state_dir_with_token();
    // Healthy: every check passes and says what it saw.
    let d = Proc::start(&pins, state.path());
    let h = d.client.get("/healthz");
    assert_eq!(h.status, 200, "{}", h.text);
    let v = h.json();
    assert_eq!(v["status"], "ok");
    for check in ["pins", "fds", "event_sources", "state_file"] {
        assert_eq!(v["checks"][check]["ok"], true, "{check}: {v}");
    }
    drop(d);

    // Too close to the fd limit: 503, and the message says which limit.
    let d = Proc::start_with(&pins, state.path(), &["prlimit", "--nofile=72:72", "--"]);
    let h = d.client.get("/healthz");
    assert_eq!(h.status, 503, "{}", h.text);
    let v = h.json();
    assert_eq!(v["status"], "unhealthy");
    assert_eq!(v["checks"]["fds"]["ok"], false, "{v}");
    assert!(v["error"].as_str().unwrap().contains("file descriptors are open"), "{v}");
    drop(d);

    // The pins wiped under a running daemon: 503 naming the pin directory.
    let d = Proc::start(&pins, state.path());
    pins.firewall().reset().unwrap();
    let _ = std::fs::remove_dir_all(&pins.path);
    let h = d.client.get("/healthz");
    assert_eq!(h.status, 503, "{}", h.text);
    assert!(h.json()["error"].as_str().unwrap().contains(&pins.path.display().to_string()), "{}", h.text);
}
