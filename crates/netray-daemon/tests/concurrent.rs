//! Concurrent changes: the API and the CLI (the firewall API, which is what
//! `netray deny` calls) change rules at the same time and end consistent;
//! two API clients racing with the same If-Match: one wins, one gets 412.

mod common;

use std::sync::Arc;

use common::{Env, TOKEN};
use netray_firewall::Rule;

#[test]
fn api_and_cli_changes_interleave_and_end_consistent() {
    let env = Env::new("dconc");
    let c = Arc::new(env.client());
    let rev0 = c.get("/v1/rules").revision();
    const N: usize = 40;

    let api = {
        let c = Arc::clone(&c);
        std::thread::spawn(move || {
            let mut ids = Vec::new();
            for i in 0..N {
                let r = c.post("/v1/rules", &format!(r#"{{"cidr": "10.1.{i}.0/24", "proto": "udp", "port": 53}}"#));
                assert_eq!(r.status, 201, "{}", r.text);
                ids.push(r.json()["added"][0]["id"].as_u64().unwrap());
                if i % 4 == 3 {
                    // Delete every fourth rule again.
                    let d = c.delete(&format!("/v1/rules/{}", ids.pop().unwrap()));
                    assert_eq!(d.status, 200, "{}", d.text);
                }
            }
        })
    };
    let cli = {
        let fw = env.pins.firewall();
        std::thread::spawn(move || {
            for i in 0..N {
                let rule = Rule::parse(&format!("10.2.{i}.0/24"), None, None, Some("both")).unwrap();
                fw.add(std::slice::from_ref(&rule)).unwrap();
                if i % 4 == 3 {
                    fw.delete(&[rule]).unwrap();
                }
            }
        })
    };
    api.join().unwrap();
    cli.join().unwrap();

    let fw = env.pins.firewall().list().unwrap();
    let r = c.get("/v1/rules");
    let rev = r.revision();
    let rules = r.json()["rules"].as_array().unwrap().clone();
    let expect = 2 * (N - N / 4);
    assert_eq!(fw.len(), expect);
    assert_eq!(rules.len(), expect);
    for (a, f) in rules.iter().zip(&fw) {
        assert_eq!(a["id"].as_u64().unwrap(), f.id as u64);
        assert_eq!(a["cidr"], f.rule.net.to_string());
        assert_eq!(a["dir"], f.rule.dir.to_string());
    }
    for i in 0..N {
        let present = |p: &str| rules.iter().any(|r| r["cidr"] == p);
        assert_eq!(present(&format!("10.1.{i}.0/24")), i % 4 != 3);
        assert_eq!(present(&format!("10.2.{i}.0/24")), i % 4 != 3);
    }
    // Every API change bumped the revision; CLI changes bump it when seen.
    assert!(rev >= rev0 + (N + N / 4) as u64, "{rev0} -> {rev}");
}

#[test]
fn racing_clients_with_the_same_if_match_one_wins() {
    let env = Env::new("drace");
    let c = Arc::new(env.client());
    for round in 0..5 {
        let etag = c.get("/v1/rules").etag.unwrap();
        let handles: Vec<_> = (0..2)
            .map(|who| {
                let (c, etag) = (Arc::clone(&c), etag.clone());
                std::thread::spawn(move || {
                    let body = format!(r#"{{"cidr": "10.9.{round}.{who}"}}"#);
                    c.request("POST", "/v1/rules", Some(TOKEN), Some(&etag), Some(&body)).status
                })
            })
            .collect();
        let mut st: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        st.sort();
        assert_eq!(st, vec![201, 412], "round {round}");
    }
    assert_eq!(c.get("/v1/rules").json()["rules"].as_array().unwrap().len(), 5);
}

#[test]
fn interface_changes_made_with_the_cli_bump_the_revision() {
    let env = Env::new("dcifc");
    let c = env.client();
    let iface = env.iface().to_string();
    let rev0 = c.get("/v1/interfaces").revision();

    // `netray firewall attach` (the firewall API the CLI calls), behind the daemon's back.
    env.pins.firewall().attach(&iface, netray_core::AttachMode::Auto).unwrap();
    let r = c.get("/v1/interfaces");
    let rev1 = r.revision();
    assert_eq!(rev1, rev0 + 1, "seen once: {}", r.text);
    assert_eq!(c.get("/v1/interfaces").revision(), rev1, "and only once");
    let listed = r.json()["interfaces"].as_array().unwrap().iter().any(|i| i["name"] == iface.as_str() && i["firewall"] == true);
    assert!(listed, "{}", r.text);

    // A change based on the revision from before the CLI's change is refused.
    let e = c
        .request("POST", "/v1/rules", Some(TOKEN), Some(&rev0.to_string()), Some(r#"{"cidr": "192.0.2.0/24"}"#))
        .error(412);
    assert!(e.contains("revision conflict"), "{e}");

    // `netray firewall detach`: bumps again; the API agrees it is gone.
    env.pins.firewall().detach(&iface).unwrap();
    let r = c.get("/v1/interfaces");
    assert_eq!(r.revision(), rev1 + 1, "{}", r.text);
    assert!(!r.text.contains(&format!("\"name\":\"{iface}\"")), "{}", r.text);
}
