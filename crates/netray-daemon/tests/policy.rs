//! /v1/interfaces/{name}/policy: the same drop policy as `netray firewall
//! policy`, with the API's auth; bad input is a 422 naming the problem and
//! changes nothing; under `drop` the lab's peer is cut off until an allow
//! rule posted with `"action": "allow"` lets it in; the policy comes back
//! from the state file when the pins are gone, also when set with the CLI.

mod common;

use common::{Env, TOKEN};
use netray_firewall::Policy;
use netray_lab::Family;

#[test]
fn policy_through_the_api_drops_what_no_rule_decides_and_allow_rules_open_it() {
    let mut env = Env::new("dpol");
    let c = env.client();
    let iface = env.iface().to_string();
    let path = format!("/v1/interfaces/{iface}/policy");
    let put = |body: &str, token: Option<&str>| c.request("PUT", &path, token, None, Some(body));

    let e = c.get(&path).error(404);
    assert!(e.contains("not attached"), "{e}");
    let r = c.post("/v1/interfaces", &format!(r#"{{"name": "{iface}"}}"#));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(c.get(&path).json(), serde_json::json!({"interface": iface, "in": "pass"}));
    assert_eq!(env.lab.ping(Family::V4, 2).unwrap(), 2, "policy in pass: the peer gets through");

    put(r#"{"in": "drop"}"#, None).error(401);
    for (bad, says) in [
        (r#"{"in": "maybe"}"#, "field 'in'"),
        (r#"{"in": 1}"#, "expected \"drop\" or \"pass\""),
        (r#"{"out": "drop"}"#, "unknown field 'out'"),
        (r#"{}"#, "field 'in' is required"),
        (r#"["drop"]"#, "expected an object"),
    ] {
        let e = put(bad, Some(TOKEN)).error(422);
        assert!(e.contains(says), "{bad}: {e}");
    }
    assert_eq!(c.get(&path).json()["in"], "pass", "refused requests change nothing");

    let r = put(r#"{"in": "drop"}"#, Some(TOKEN));
    assert_eq!(r.status, 200, "{}", r.text);
    let set = r.json();
    assert_eq!((set["interface"].as_str(), set["in"].as_str()), (Some(iface.as_str()), Some("drop")), "{set}");
    assert!(set["connections_noted"].is_u64(), "{set}");
    assert_eq!(c.get(&path).json()["in"], "drop");
    assert_eq!(env.lab.ping(Family::V4, 2).unwrap(), 0, "policy in drop: the peer's echo requests are dropped");

    let allow = format!(r#"{{"cidr": "{}/32", "action": "allow"}}"#, env.lab.peer_v4());
    let r = c.post("/v1/rules", &allow);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["added"][0]["action"], "allow", "{}", r.text);
    assert_eq!(env.lab.ping(Family::V4, 2).unwrap(), 2, "the allow rule lets the peer in");

    let rev = c.get("/v1/rules").revision();

    // Pins wiped (a reboot): attached anew with its policy, the allow rule restored.
    env.stop();
    env.pins.firewall().reset().unwrap();
    env.start(Default::default());
    let c = env.client();
    assert_eq!(c.get(&path).json()["in"], "drop", "the policy comes back from the state file");
    assert_eq!(env.lab.ping(Family::V4, 2).unwrap(), 2, "and the allow rule with it");

    let r = c.request("PUT", &path, Some(TOKEN), None, Some(r#"{"in": "pass"}"#));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(c.get(&path).json()["in"], "pass");
    let rev2 = c.get("/v1/rules").revision();
    assert!(rev2 > rev, "a policy change is a new revision");
    c.get("/v1/interfaces/nrnope0/policy").error(404);

    // Set with the CLI while the daemon runs: seen (a new revision) and kept too.
    env.pins.firewall().set_policy(&iface, Policy::Drop).unwrap();
    assert!(c.get("/v1/rules").revision() > rev2, "the CLI's change is seen");
    env.stop();
    env.pins.firewall().reset().unwrap();
    env.start(Default::default());
    assert_eq!(env.client().get(&path).json()["in"], "drop", "the CLI's policy comes back too");
}
