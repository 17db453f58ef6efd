//! The API's contract over HTTP on loopback, against the real kernel and a lab.

mod common;

use std::time::Duration;

use common::{Env, TOKEN};
use netray_lab::Family;
use serde_json::{json, Value};

#[test]
fn every_endpoint_answers_as_documented() {
    let env = Env::new("dapi");
    let c = env.client();
    let iface = env.iface().to_string();
    let peer = env.lab.peer_v4().to_string();

    // Health and the OpenAPI document (served == checked in).
    let h = c.get("/healthz");
    assert_eq!(h.status, 200);
    assert_eq!(h.json()["status"], "ok");
    let served = c.get("/openapi.json").json();
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(served, file, "served /openapi.json differs from docs/openapi.json");
    assert!(served["paths"]["/v1/rules"]["post"].is_object());

    // Rules: empty at first, with a revision.
    let r = c.get("/v1/rules");
    assert_eq!(r.status, 200);
    let rev0 = r.revision();
    assert_eq!(r.json()["rules"], json!([]));

    // Auth: required and refused.
    let body = format!(r#"{{"cidr": "{peer}", "proto": "icmp"}}"#);
    let e = c.request("POST", "/v1/rules", None, None, Some(&body)).error(401);
    assert!(e.contains("bearer token"), "{e}");
    assert!(c.request("POST", "/v1/rules", None, None, Some(&body)).json()["hint"].is_string());
    c.request("POST", "/v1/rules", Some("wrong-token-xxxxxxxxx"), None, Some(&body)).error(401);
    c.request("DELETE", "/v1/rules/1", None, None, None).error(401);
    c.request("POST", "/v1/interfaces", None, None, Some("{}")).error(401);

    // Malformed, invalid and oversized bodies.
    let e = c.post("/v1/rules", "{\"cidr\": ").error(400);
    assert!(e.contains("malformed JSON"), "{e}");
    c.post("/v1/rules", "").error(400);
    let e = c.post("/v1/rules", r#"{"cidr": "10.0.0.1/8"}"#).error(422);
    assert!(e.contains("did you mean 10.0.0.0/8"), "{e}");
    let e = c.post("/v1/rules", r#"{"cidr": "10.0.0.0/8", "proto": "icmp", "port": 53}"#).error(422);
    assert!(e.contains("port"), "{e}");
    c.post("/v1/rules", r#"{"cidr": "10.0.0.0/8", "colour": "red"}"#).error(422);
    c.post("/v1/rules", r#"{"proto": "udp"}"#).error(422);
    c.post("/v1/rules", r#"{"cidr": "10.0.0.0/8", "port": 70000}"#).error(422);
    c.post("/v1/rules", "[]").error(422);
    let big = format!(r#"{{"cidr": "10.0.0.0/8", "pad": "{}"}}"#, "x".repeat(70 * 1024));
    let e = c.post("/v1/rules", &big).error(413);
    assert!(e.contains("larger than 65536"), "{e}");
    assert_eq!(c.get("/v1/rules").revision(), rev0, "refused requests change nothing");

    // Add: 201, revision + 1, ETag.
    let r = c.post("/v1/rules", &body);
    assert_eq!(r.status, 201, "{}", r.text);
    let rev1 = r.revision();
    assert_eq!(rev1, rev0 + 1);
    let added = &r.json()["added"][0];
    let id = added["id"].as_u64().unwrap();
    assert_eq!(added["cidr"], format!("{peer}/32"));
    assert_eq!(added["proto"], "icmp");
    assert_eq!(added["dir"], "in");
    // The same rule again: 409.
    let e = c.post("/v1/rules", &body).error(409);
    assert!(e.contains("already exists"), "{e}");

    // If-Match: a stale revision is refused with 412 and the current ETag.
    let stale = format!("\"{rev0}\"");
    let r = c.request("POST", "/v1/rules", Some(TOKEN), Some(&stale), Some(r#"{"cidr": "192.0.2.0/24"}"#));
    let e = r.error(412);
    assert!(e.contains("revision conflict"), "{e}");
    assert_eq!(r.etag.as_deref(), Some(format!("\"{rev1}\"").as_str()));
    c.request("DELETE", &format!("/v1/rules/{id}"), Some(TOKEN), Some(&stale), None).error(412);
    c.request("POST", "/v1/rules", Some(TOKEN), Some("yesterday"), Some(r#"{"cidr": "192.0.2.0/24"}"#)).error(400);
    let cur = format!("\"{rev1}\"");
    let r = c.request("POST", "/v1/rules", Some(TOKEN), Some(&cur), Some(r#"[{"cidr": "192.0.2.0/24"}, {"cidr": "2001:db8::/32", "dir": "both"}]"#));
    assert_eq!(r.status, 201, "{}", r.text);
    let rev2 = r.revision();
    assert_eq!(rev2, rev1 + 1);
    assert_eq!(r.json()["added"].as_array().unwrap().len(), 2);

    // One rule; bad and unknown ids.
    let r = c.get(&format!("/v1/rules/{id}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["rule"]["id"], id);
    c.get("/v1/rules/abc").error(400);
    c.get("/v1/rules/0").error(400);
    c.get("/v1/rules/9999").error(404);

    // Interfaces: unknown ones and bad modes are refused clearly.
    let e = c.post("/v1/interfaces", r#"{"name": "nrnope0"}"#).error(422);
    assert!(e.contains("no interface named 'nrnope0'"), "{e}");
    let e = c.post("/v1/interfaces", &format!(r#"{{"name": "{iface}", "mode": "fast"}}"#)).error(422);
    assert!(e.contains("unknown XDP mode"), "{e}");
    c.post("/v1/interfaces", r#"{"name": "../../etc"}"#).error(422);
    c.post("/v1/interfaces", r#"{"nam": "x"}"#).error(422);
    c.get("/v1/interfaces/nrnope0").error(404);
    c.delete("/v1/interfaces/nrnope0").error(404);

    // Attach: 201 then 200 (already attached); the rule now drops pings.
    assert_eq!(env.lab.ping(Family::V4, 2).unwrap(), 2);
    let r = c.post("/v1/interfaces", &format!(r#"{{"name": "{iface}", "mode": "auto"}}"#));
    assert_eq!(r.status, 201, "{}", r.text);
    let rev3 = r.revision();
    assert_eq!(rev3, rev2 + 1);
    assert_eq!(r.json()["interface"]["firewall"], true);
    let r = c.post("/v1/interfaces", &format!(r#"{{"name": "{iface}"}}"#));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(env.lab.ping(Family::V4, 3).unwrap(), 0, "the posted rule drops pings from the peer");
    let list = c.get("/v1/interfaces").json();
    let mine = list["interfaces"].as_array().unwrap().iter().find(|i| i["name"] == iface.as_str()).unwrap().clone();
    assert_eq!(mine["desired"], true);
    assert_eq!(mine["attached"], true);
    let one = c.get(&format!("/v1/interfaces/{iface}"));
    assert_eq!(one.status, 200);
    assert!(one.json()["interface"]["status"]["prog_id"].as_u64().unwrap() > 0);

    // Stats: per interface and per rule.
    let s = c.get("/v1/stats");
    assert_eq!(s.status, 200);
    let s = s.json();
    let rule = s["rules"].as_array().unwrap().iter().find(|r| r["id"] == id).unwrap();
    assert!(rule["packets"].as_u64().unwrap() >= 3, "{s}");
    let st = s["interfaces"].as_array().unwrap().iter().find(|i| i["interface"] == iface.as_str()).unwrap();
    assert!(st["stats"]["dropped"].as_u64().unwrap() >= 3, "{s}");
    assert_eq!(s["events"]["dropped_total"], 0);
    assert!(s["api"]["requests"].as_u64().unwrap() > 10);
    assert_eq!(s["table"]["rules"], 3);

    // The CLI's view (the firewall API, what `netray deny list` prints) agrees.
    let fw = env.pins.firewall().list().unwrap();
    let api_ids: Vec<u64> = c.get("/v1/rules").json()["rules"].as_array().unwrap().iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(fw.iter().map(|r| r.id as u64).collect::<Vec<_>>(), api_ids);

    // Flows: served from netray-flows when built in, else a clear 501.
    let f = c.get("/v1/flows");
    if cfg!(feature = "flows") {
        assert_eq!(f.status, 200, "{}", f.text);
        assert!(f.json()["interfaces"].is_array());
        let f = c.get(&format!("/v1/flows?interface={iface}&sort=packets&limit=5")).json();
        let flows = f["interfaces"][0]["flows"].as_array().unwrap_or_else(|| panic!("{f}")).clone();
        assert!(!flows.is_empty() && flows.len() <= 5, "{f}");
        assert!(flows.iter().any(|fl| fl["src"] == peer.as_str() && fl["dropped"].as_u64().unwrap() >= 3), "{f}");
        c.get("/v1/flows?sort=sideways").error(400);
        c.get("/v1/flows?limit=0").error(400);
        c.get("/v1/flows?interface=nrnope0").error(404);
    } else {
        let e = f.error(501);
        assert!(e.contains("flow accounting"), "{e}");
    }
    c.get("/v1/flows?bogus=1").error(400);

    // Metrics.
    let m = c.get("/metrics");
    assert_eq!(m.status, 200);
    assert_eq!(m.content_type, "text/plain", "the 0.0.4 text format by default");
    assert!(m.text.contains(&format!("netray_interface_up{{interface=\"{iface}\"}} 1")), "{}", m.text);
    assert!(m.text.contains(&format!("netray_firewall_rule_packets_total{{rule_id=\"{id}\"")), "{}", m.text);
    assert!(m.text.contains("netray_daemon_revision"), "{}", m.text);
    assert!(!m.text.contains("# EOF"));

    // Event streams: parameters are checked before anything starts.
    c.get_auth("/v1/events/packets").error(400);
    c.get_auth("/v1/events/packets?interface=nrnope0").error(404);
    let e = c.get_auth(&format!("/v1/events/packets?interface={iface}&filter=tcp%20port")).error(400);
    assert!(e.contains("syntax error"), "libpcap's message: {e}");
    c.get_auth(&format!("/v1/events/packets?interface={iface}&colour=red")).error(400);
    c.get_auth("/v1/events/exec?pid=abc").error(400);

    // Unknown routes and methods: JSON errors too.
    c.get("/v1/nowhere").error(404);
    c.request("PUT", "/v1/rules", Some(TOKEN), None, Some("{}")).error(405);
    c.request("PUT", "/v1/rules", None, None, Some("{}")).error(401);

    // Delete a rule: 200, then 404; the pings pass again.
    let r = c.delete(&format!("/v1/rules/{id}"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.revision(), rev3 + 1);
    assert_eq!(r.json()["deleted"]["id"], id);
    c.delete(&format!("/v1/rules/{id}")).error(404);
    assert_eq!(env.lab.ping(Family::V4, 2).unwrap(), 2);

    // Detach: a stale If-Match is refused; then 200, revision + 1, and the
    // interface is no longer desired.
    let e = c.request("DELETE", &format!("/v1/interfaces/{iface}"), Some(TOKEN), Some(&cur), None).error(412);
    assert!(e.contains("revision conflict"), "{e}");
    let r = c.delete(&format!("/v1/interfaces/{iface}"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.revision(), rev3 + 2);
    c.get(&format!("/v1/interfaces/{iface}")).error(404);
    c.delete(&format!("/v1/interfaces/{iface}")).error(404);

    // The state file has what the daemon wants, written behind the answers.
    let path = env.state.path().join("state.json");
    let st: Value = common::wait_for(Duration::from_secs(5), || {
        let st: Value = serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
        (st["revision"] == rev3 + 2).then_some(st)
    })
    .expect("the state file reaches the last revision");
    assert_eq!(st["revision"], rev3 + 2);
    assert_eq!(st["rules"].as_array().unwrap().len(), 2);
    assert_eq!(st["interfaces"], json!({}));
}

#[test]
fn bad_requests_get_json_4xx_and_never_break_the_daemon() {
    let env = Env::new("dbad");
    let c = env.client();
    let long = "x".repeat(5000);
    let cases: Vec<(&str, String, Option<String>)> = vec![
        ("GET", "/v1/rules/%FF%FE".into(), None),
        ("GET", "/v1/rules/-1".into(), None),
        ("GET", "/v1/rules/99999999999999999999".into(), None),
        ("GET", format!("/v1/interfaces/{long}"), None),
        ("GET", "/v1/interfaces/%00".into(), None),
        ("DELETE", "/v1/interfaces/..".into(), None),
        ("DELETE", format!("/v1/interfaces/{long}"), None),
        ("DELETE", "/v1/rules/1".into(), None),
        ("GET", "/v1/events/packets?interface=".into(), None),
        ("GET", "/v1/events/packets?interface=%FF".into(), None),
        ("GET", "/v1/events/exec?failed=maybe".into(), None),
        ("GET", "/v1/flows?limit=-3".into(), None),
        ("POST", "/v1/rules".into(), Some("null".into())),
        ("POST", "/v1/rules".into(), Some("\u{0}\u{1}".into())),
        ("POST", "/v1/rules".into(), Some("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]".into())),
        ("POST", "/v1/rules".into(), Some(r#"{"cidr": 10}"#.into())),
        ("POST", "/v1/rules".into(), Some(r#"{"cidr": "::/0", "proto": "nope"}"#.into())),
        ("POST", "/v1/rules".into(), Some(r#"{"cidr": "1.2.3.4", "dir": "sideways"}"#.into())),
        ("POST", "/v1/rules".into(), Some(format!(r#"{{"cidr": "{long}"}}"#))),
        ("POST", "/v1/interfaces".into(), Some(r#"{"name": ""}"#.into())),
        ("POST", "/v1/interfaces".into(), Some(format!(r#"{{"name": "{long}"}}"#))),
        ("POST", "/v1/interfaces".into(), Some(r#"{"name": "lo", "mode": 3}"#.into())),
        ("POST", "/healthz".into(), Some("{}".into())),
    ];
    for (m, path, body) in &cases {
        let r = c.request(m, path, Some(TOKEN), None, body.as_deref());
        assert!((400..500).contains(&r.status), "{m} {path} {body:?}: {} {}", r.status, r.text);
        r.error(r.status);
    }
    assert_eq!(c.get("/healthz").status, 200);
    assert_eq!(c.get("/v1/rules").json()["rules"], json!([]));
}

#[test]
fn config_rules_and_interfaces_are_applied_at_start() {
    let lab_if;
    let env = {
        let mut cfg = netray_daemon::config::Config::default();
        cfg.rules.push(netray_daemon::config::RuleSpec { cidr: "203.0.113.0/24".into(), proto: None, port: None, dir: None, ttl: None, audit: false, action: None });
        let mut env = Env::with_config("dcfg", cfg.clone());
        lab_if = env.iface().to_string();
        env.stop();
        cfg.interfaces.push(netray_daemon::config::InterfaceSpec { name: lab_if.clone(), mode: "generic".into() });
        env.start(cfg);
        env
    };
    let c = env.client();
    let rules = c.get("/v1/rules").json();
    assert_eq!(rules["rules"].as_array().unwrap().len(), 1, "{rules}");
    assert_eq!(rules["rules"][0]["cidr"], "203.0.113.0/24");
    let i = c.get(&format!("/v1/interfaces/{lab_if}")).json();
    assert_eq!(i["interface"]["firewall"], true, "{i}");
    assert_eq!(i["interface"]["status"]["mode"], "generic", "{i}");
}

/// POST /v1/rules takes `ttl` and `audit`: the rule lists its action and
/// time left, a TTL that is not a positive duration is refused naming the
/// field (nothing changed), and an expired rule leaves the listing.
#[test]
fn rules_take_a_ttl_and_audit() {
    let env = Env::new("dttl");
    let c = env.client();
    let rev0 = c.get("/v1/rules").revision();
    for (ttl, problem) in [("0", "at once"), ("-3s", "in the past"), ("soon", "not a duration")] {
        let e = c.post("/v1/rules", &format!(r#"{{"cidr": "192.0.2.0/24", "ttl": "{ttl}"}}"#)).error(422);
        assert!(e.contains("field 'ttl'") && e.contains(problem), "{ttl}: {e}");
    }
    let e = c.post("/v1/rules", r#"{"cidr": "192.0.2.0/24", "audit": "yes"}"#).error(422);
    assert!(e.contains("field 'audit'"), "{e}");
    assert_eq!(c.get("/v1/rules").revision(), rev0, "refused requests change nothing");

    let r = c.post("/v1/rules", r#"[{"cidr": "192.0.2.0/24", "audit": true, "ttl": "1h"}, {"cidr": "198.51.100.0/24", "ttl": "1s"}]"#);
    assert_eq!(r.status, 201, "{}", r.text);
    let added = r.json()["added"].clone();
    assert_eq!((added[0]["action"].as_str(), added[1]["action"].as_str()), (Some("audit"), Some("deny")), "{added}");
    let left = added[0]["expires_in_ms"].as_u64().unwrap();
    assert!(left > 3_590_000 && left <= 3_600_000, "{added}");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let rules = c.get("/v1/rules").json()["rules"].clone();
    assert_eq!(rules.as_array().unwrap().len(), 1, "the expired rule is gone: {rules}");
    assert_eq!(rules[0]["cidr"], "192.0.2.0/24");
    assert_eq!(rules[0]["action"], "audit");
}
