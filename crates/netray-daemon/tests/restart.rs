//! Durability: the daemon is killed with SIGKILL and started again. The
//! firewall keeps enforcing meanwhile, and the restart reconciles without
//! re-attaching (same program), without duplicating rules, with counters
//! kept; changes made by the CLI while it was down are picked up; and after
//! the pins are wiped (a reboot) the state file restores everything.

mod common;

use common::{Client, Pins, Proc};
use netray_daemon::persist::MAX_UNSAVED;
use netray_firewall::Rule;
use netray_lab::{Family, Lab};
use serde_json::Value;

fn rule_packets(rules: &Value, id: u64) -> u64 {
    rules["rules"].as_array().unwrap().iter().find(|r| r["id"] == id).unwrap()["packets"].as_u64().unwrap()
}

/// Waits until the state file holds the daemon's last revision.
fn wait_saved(c: &Client) {
    let saved = common::wait_for(std::time::Duration::from_secs(5), || {
        let h = c.get("/healthz").json();
        (h["checks"]["state_file"]["unsaved_revisions"] == 0).then_some(())
    });
    assert!(saved.is_some(), "the state file never caught up: {}", c.get("/healthz").text);
}

#[test]
fn kill9_and_restart_keep_enforcing_with_nothing_lost() {
    let pins = Pins::new();
    let lab = Lab::up(&netray_lab::unique_name("dkill")).unwrap();
    let state = common::state_dir_with_token();
    let iface = lab.host_if().to_string();
    let peer = lab.peer_v4().to_string();

    let d = Proc::start(&pins, state.path());
    let c = &d.client;
    assert_eq!(c.post("/v1/interfaces", &format!(r#"{{"name": "{iface}"}}"#)).status, 201);
    let r = c.post("/v1/rules", &format!(r#"[{{"cidr": "{peer}", "proto": "icmp"}}, {{"cidr": "198.51.100.0/24"}}]"#));
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json()["added"][0]["id"].as_u64().unwrap();
    assert_eq!(lab.ping(Family::V4, 3).unwrap(), 0);
    let before = c.get("/v1/rules");
    let rev = before.revision();
    let before = before.json();
    assert!(rule_packets(&before, id) >= 3);
    let status = c.get(&format!("/v1/interfaces/{iface}")).json()["interface"]["status"].clone();
    let prog = status["prog_id"].as_u64().unwrap();
    let tc_progs: Vec<Value> = status["tc"].as_array().unwrap().iter().map(|t| t["prog_id"].clone()).collect();

    d.kill9();
    // Still enforcing with the daemon dead; the CLI changes a rule meanwhile.
    assert_eq!(lab.ping(Family::V4, 3).unwrap(), 0, "the firewall must keep enforcing after kill -9");
    let fw = pins.firewall();
    fw.add(&[Rule::parse("192.0.2.0/24", None, None, None).unwrap()]).unwrap();

    let d = Proc::start(&pins, state.path());
    let c = &d.client;
    let after = c.get("/v1/rules");
    // Killed: up to MAX_UNSAVED revisions may be missing from the state
    // file, so they are skipped (no ETag handed out twice); the CLI's change
    // while the daemon was down is one more.
    assert_eq!(after.revision(), rev + MAX_UNSAVED + 1 + 1, "skipped revisions, then the CLI's change");
    let after = after.json();
    assert_eq!(after["rules"].as_array().unwrap().len(), 3, "{after}");
    assert!(rule_packets(&after, id) >= rule_packets(&before, id) + 3, "counters kept, downtime drops counted: {after}");
    let i = c.get(&format!("/v1/interfaces/{iface}")).json();
    assert_eq!(i["interface"]["status"]["prog_id"].as_u64().unwrap(), prog, "no re-attach: the same program: {i}");
    let tc_after: Vec<Value> = i["interface"]["status"]["tc"].as_array().unwrap().iter().map(|t| t["prog_id"].clone()).collect();
    assert_eq!(tc_after, tc_progs, "the same TC programs, none added: {i}");
    assert_eq!(i["interface"]["desired"], true);
    assert_eq!(lab.ping(Family::V4, 2).unwrap(), 0);
    // The API and the CLI agree.
    let api: Vec<u64> = after["rules"].as_array().unwrap().iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(fw.list().unwrap().iter().map(|r| r.id as u64).collect::<Vec<_>>(), api);

    // A reboot wipes the pins: the state file brings rules and interface back
    // (once written: the state file follows the answers within milliseconds).
    wait_saved(c);
    d.kill9();
    fw.reset().unwrap();
    assert_eq!(lab.ping(Family::V4, 2).unwrap(), 2);
    let d = Proc::start(&pins, state.path());
    let c = &d.client;
    let restored = c.get("/v1/rules").json();
    let mut cidrs: Vec<&str> = restored["rules"].as_array().unwrap().iter().map(|r| r["cidr"].as_str().unwrap()).collect();
    cidrs.sort();
    let peer32 = format!("{peer}/32");
    let mut want = vec!["192.0.2.0/24", "198.51.100.0/24", peer32.as_str()];
    want.sort();
    assert_eq!(cidrs, want, "{restored}");
    assert_eq!(lab.ping(Family::V4, 2).unwrap(), 0, "enforcing again after the restore");

    // SIGTERM: a clean exit, the firewall stays.
    let pid = d.child.id() as i32;
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let mut d = d;
    let t = std::time::Instant::now();
    let status = loop {
        if let Some(st) = d.child.try_wait().unwrap() {
            break st;
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(10), "the daemon did not stop on SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert_eq!(lab.ping(Family::V4, 2).unwrap(), 0, "still enforcing after a clean stop");
}
