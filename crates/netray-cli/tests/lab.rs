//! `netray lab ...` end to end (root required): what each subcommand prints,
//! and its errors.

mod common;

use std::process::Output;

use common::expected::{transcript, Normalise};

/// `lab up` persists the lab: remove it even if the test fails.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = netray_lab::remove(&self.0);
    }
}

fn lab(args: &[&str]) -> (Output, String) {
    let mut all = vec!["lab"];
    all.extend_from_slice(args);
    let out = common::netray(&all);
    let t = transcript(&all, &out);
    (out, t)
}

#[test]
fn up_status_traffic_down() {
    assert_eq!(unsafe { libc::geteuid() }, 0, "the lab needs root: run `make test` as root");
    let name = netray_lab::unique_name("cli");
    let _cleanup = Cleanup(name.clone());
    let mut all = String::new();

    let (out, t) = lab(&["up", &name]);
    assert!(out.status.success(), "{t}");
    all.push_str(&t);
    let st = netray_lab::list().unwrap().into_iter().find(|s| s.name == name).expect("the lab is listed");
    assert!(st.persistent, "`up` persisted it: it survives this process");
    let (out, t) = lab(&["up", &name]);
    assert_eq!(out.status.code(), Some(1));
    all.push_str(&t);

    // Other labs (other tests') come and go: keep the header and this lab's row.
    let (out, _) = lab(&["status"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mine: Vec<&str> = text.lines().enumerate().filter(|(i, l)| *i == 0 || l.starts_with(&format!("{name} "))).map(|(_, l)| l).collect();
    all.push_str(&format!("$ netray lab status   (its header and this lab's row)\n{}\n\n", mine.join("\n")));
    let (out, _) = lab(&["status", "--json"]);
    let labs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entry = labs.as_array().unwrap().iter().find(|l| l["name"] == name.as_str()).expect("this lab in the JSON");
    all.push_str(&format!("$ netray lab status --json   (this lab's entry)\n{}\n\n", serde_json::to_string_pretty(entry).unwrap()));

    for args in [
        &["traffic", &name, "--count", "6", "--pps", "200", "--udp-port", "0", "--tcp-port", "0"][..],
        &["traffic", &name, "--count", "2", "--json", "--duration", "1"],
        &["traffic", &name, "--duration=-1"],
        &["down", &name],
        &["down", &name],
        &["traffic", &name],
    ] {
        all.push_str(&lab(args).1);
    }
    assert!(!netray_lab::list().unwrap().iter().any(|s| s.name == name), "down removed it");

    Normalise::default()
        .literal(&format!("nrlab-{name}"), "<NETNS>")
        .literal(&format!("nrp-{name}"), "<PEER IF>")
        .literal(&format!("nr-{name}"), "<HOST IF>")
        .literal(&name, "<NAME>")
        .literal(&st.host_v4.unwrap().to_string(), "<HOST V4>")
        .literal(&st.peer_v4.unwrap().to_string(), "<PEER V4>")
        .literal(&st.host_v6.unwrap().to_string(), "<HOST V6>")
        .literal(&st.peer_v6.unwrap().to_string(), "<PEER V6>")
        .literal(st.host_mac.as_deref().unwrap(), "<HOST MAC>")
        .literal(st.peer_mac.as_deref().unwrap(), "<PEER MAC>")
        .pattern(r"ifindex \d+", "ifindex <IFINDEX>")
        .pattern(r#""host_ifindex": \d+"#, r#""host_ifindex": <IFINDEX>"#)
        // --udp-port 0 and --tcp-port 0: the responders' ports are the kernel's choice.
        .pattern(r"(<HOST V4>|\[<HOST V6>\]):\d+", "$1:<PORT>")
        .pattern(r"\(\d+\.\ds\)", "(<SECS>)")
        .pattern(r#""elapsed_secs": [0-9.]+"#, r#""elapsed_secs": <SECS>"#)
        .fold_padding()
        .check("lab", &all);
}

/// `lab down --json`: one object naming the lab removed; the lab is gone.
#[test]
fn down_says_what_it_removed_as_json() {
    let name = netray_lab::unique_name("cldj");
    let _cleanup = Cleanup(name.clone());
    let (out, t) = lab(&["up", &name]);
    assert!(out.status.success(), "{t}");
    let (out, t) = lab(&["down", &name, "--json"]);
    assert!(out.status.success(), "{t}");
    let said: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(said, serde_json::json!({ "name": name, "removed": true }));
    let (out, _) = lab(&["status", "--json"]);
    let labs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(labs.as_array().unwrap().iter().all(|l| l["name"] != name.as_str()), "{labs}");
}

/// `demo --json`: one object, every check passed, each step with its counts.
#[test]
fn demo_json_is_one_object_with_every_check() {
    let out = common::netray(&["demo", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().count(), 1, "one line of JSON: {stdout}");
    let demo: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(demo["passed"], true, "{demo}");
    assert!(demo["error"].is_null(), "{demo}");
    let checks = demo["checks"].as_array().unwrap();
    assert!(checks.len() >= 8 && checks.iter().all(|c| c["passed"] == true && c["check"].is_string()), "{demo}");
    let steps = demo["steps"].as_array().unwrap();
    assert!(steps.iter().all(|s| s["command"].as_str().is_some_and(|c| c.starts_with("netray "))), "{demo}");
    let capture = steps.iter().find_map(|s| s.get("capture")).expect("the dump step's counts");
    assert!(capture["entry"].as_u64() > Some(0) && capture["lost"] == 0, "{capture}");
    let traffic = steps.iter().find_map(|s| s.get("traffic")).expect("a round's traffic");
    assert_eq!(traffic.as_array().unwrap().len(), 6, "3 protocols x 2 families: {traffic}");
}
