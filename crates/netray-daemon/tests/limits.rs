//! /v1/limits: the same rate limits as `netray limit`, with the API's auth,
//! revisions and If-Match; bad input is a 422 naming the problem and changes
//! nothing; limits come back from the state file when the pins are gone.

mod common;

use common::{Env, TOKEN};

#[test]
fn limits_through_the_api_add_list_delete_and_survive_wiped_pins() {
    let mut env = Env::new("dlim");
    let c = env.client();
    let body = r#"{"cidr": "10.0.0.0/8", "rate": "100/s", "burst": 200, "per_source": true, "proto": "udp", "ban": "60s"}"#;

    let r = c.request("POST", "/v1/limits", None, None, Some(body));
    assert_eq!(r.status, 401, "writes need the token: {}", r.text);
    let rev0 = c.get("/v1/limits").revision();
    for (bad, says) in [
        (r#"{"cidr": "10.0.0.0/8", "rate": "0/s"}"#, "lets nothing through"),
        (r#"{"cidr": "10.0.0.0/8", "rate": "1000000000/s"}"#, "more than 100000000 packets per second"),
        (r#"{"cidr": "10.0.0.0/8", "rate": "10/s", "burst": 0}"#, "below 1"),
        (r#"{"cidr": "10.0.0.0/8", "rate": "10/s", "colour": "red"}"#, "unknown field 'colour'"),
        (r#"{"cidr": "10.0.0.0/8"}"#, "missing field `rate`"),
        (r#"{"cidr": "10.0.0.0/8", "rate": "10/s", "ban": "60s"}"#, "needs --per-source"),
    ] {
        let e = c.post("/v1/limits", bad).error(422);
        assert!(e.contains(says), "{bad}: {e}");
    }

    let r = c.post("/v1/limits", body);
    assert_eq!(r.status, 201, "{}", r.text);
    let rev1 = r.revision();
    assert!(rev1 > rev0);
    let added = &r.json()["added"];
    assert_eq!((added["id"].as_u64(), added["rate"].as_str(), added["ban_ms"].as_u64()), (Some(1), Some("100/s"), Some(60_000)));
    // A bucket of 200 at 100/s holds ~2 s: it runs on the kernel's tick (this machine's CONFIG_HZ is readable).
    assert_eq!(added["clock"], "tick", "{added}");
    let e = c.post("/v1/limits", r#"{"cidr": "10.1.0.0/16", "rate": "5/s"}"#).error(422);
    assert!(e.contains("overlaps limit 1"), "{e}");
    assert_eq!(c.get("/v1/limits").revision(), rev1, "a refused add changes nothing");

    let list = c.get("/v1/limits").json();
    assert_eq!(list["limits"].as_array().map(Vec::len), Some(1), "{list}");
    let one = c.get("/v1/limits/1").json();
    assert_eq!(one["limit"]["cidr"], "10.0.0.0/8", "{one}");
    assert_eq!(one["limit"]["net"], "10.0.0.0/8", "the old name stays readable for one release: {one}");
    c.get("/v1/limits/2").error(404);
    c.get("/v1/limits/x").error(400);
    c.get("/v1/limits/65").error(400);

    // Pins wiped (a reboot): the state file brings the limit back.
    env.stop();
    env.pins.firewall().reset().unwrap();
    env.start(Default::default());
    let c = env.client();
    let list = c.get("/v1/limits").json();
    assert_eq!(list["limits"][0]["cidr"], "10.0.0.0/8", "restored: {list}");
    assert_eq!(list["limits"][0]["per_source"], true, "restored: {list}");

    let rev = c.get("/v1/limits").revision();
    let stale = format!("\"{}\"", rev - 1);
    c.request("DELETE", "/v1/limits/1", Some(TOKEN), Some(&stale), None).error(412);
    let r = c.request("DELETE", "/v1/limits/1", Some(TOKEN), Some(&format!("\"{rev}\"")), None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["deleted"]["id"], 1);
    c.delete("/v1/limits/1").error(404);
    assert_eq!(c.get("/v1/limits").json()["limits"], serde_json::json!([]));
}
