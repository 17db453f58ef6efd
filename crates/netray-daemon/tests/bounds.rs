//! Every bound the OpenAPI document states is the server's: read from the
//! served document, then tried on both sides of the edge. And what the server
//! refuses names the field (and the rule) at fault.

mod common;

use common::{Env, TOKEN};
use serde_json::Value;

fn at<'a>(doc: &'a Value, pointer: &str) -> &'a Value {
    doc.pointer(pointer).unwrap_or_else(|| panic!("the document has no {pointer}"))
}

fn num(doc: &Value, pointer: &str) -> u64 {
    at(doc, pointer).as_u64().unwrap_or_else(|| panic!("{pointer} is not a number"))
}

#[test]
fn documented_bounds_hold_on_both_sides() {
    let env = Env::new("dbnd");
    let c = env.client();
    let doc = c.get("/openapi.json").json();
    let input = "/components/schemas/RuleInput/properties";

    // Rules per request: the list's maxItems are taken, one more is not; an
    // empty list is refused (minItems).
    let body = "/paths/~1v1~1rules/post/requestBody/content/application~1json/schema/oneOf";
    let max = num(&doc, &format!("{body}/1/maxItems"));
    assert_eq!(num(&doc, &format!("{body}/1/minItems")), 1);
    assert_eq!(at(&doc, &format!("{body}/2/properties/rules/maxItems")), at(&doc, &format!("{body}/1/maxItems")));
    let rules = |n: u64, third: u8| -> String {
        let v: Vec<String> = (0..n).map(|i| format!(r#"{{"cidr": "10.{third}.{}.{}/32"}}"#, i / 256, i % 256)).collect();
        format!("[{}]", v.join(","))
    };
    let e = c.post("/v1/rules", &rules(max + 1, 1)).error(422);
    assert!(e.contains(&format!("{} rules in one request: at most {max}", max + 1)), "{e}");
    let e = c.post("/v1/rules", r#"{"rules": []}"#).error(422);
    assert!(e.contains("no rule given"), "{e}");
    c.post("/v1/rules", "[]").error(422);
    let r = c.post("/v1/rules", &rules(max, 2));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["added"].as_array().unwrap().len() as u64, max);

    // port: minimum and maximum taken, one beyond refused naming rule and field.
    let (pmin, pmax) = (num(&doc, &format!("{input}/port/minimum")), num(&doc, &format!("{input}/port/maximum")));
    assert_eq!((pmin, pmax), (1, 65535));
    let r = c.post("/v1/rules", &format!(r#"[{{"cidr": "192.0.2.0/24", "proto": "udp", "port": {pmin}}}, {{"cidr": "192.0.2.0/24", "proto": "tcp", "port": {pmax}}}]"#));
    assert_eq!(r.status, 201, "{}", r.text);
    let e = c.post("/v1/rules", &format!(r#"[{{"cidr": "192.0.2.0/24"}}, {{"cidr": "192.0.2.0/24", "port": {}}}]"#, pmax + 1)).error(422);
    assert!(e.starts_with(&format!("rule 1: field 'port': {} is out of range 1-65535", pmax + 1)), "{e}");
    let e = c.post("/v1/rules", r#"{"cidr": "192.0.2.0/24", "port": 0}"#).error(422);
    assert!(e.starts_with("field 'port': 0 is out of range 1-65535"), "{e}");
    let e = c.post("/v1/rules", r#"{"cidr": "192.0.2.0/24", "port": "53"}"#).error(422);
    assert!(e.starts_with("field 'port': expected an integer"), "{e}");

    // cidr and proto: their maxLength is the longest valid spelling.
    let cidr_max = num(&doc, &format!("{input}/cidr/maxLength")) as usize;
    let longest = "0000:0000:0000:0000:0000:ffff:255.255.255.255/128";
    assert_eq!(longest.len(), cidr_max);
    let r = c.post("/v1/rules", &format!(r#"{{"cidr": "{longest}"}}"#));
    assert_eq!(r.status, 201, "{}", r.text);
    let e = c.post("/v1/rules", &format!(r#"{{"cidr": " {longest}"}}"#)).error(422);
    assert!(e.starts_with(&format!("field 'cidr': longer than {cidr_max} bytes")), "{e}");
    let proto_max = num(&doc, &format!("{input}/proto/maxLength")) as usize;
    assert_eq!("icmpv6".len(), proto_max);
    let r = c.post("/v1/rules", r#"{"cidr": "2001:db8:1::/48", "proto": "icmpv6"}"#);
    assert_eq!(r.status, 201, "{}", r.text);
    let e = c.post("/v1/rules", r#"{"cidr": "2001:db8:1::/48", "proto": "0000017"}"#).error(422);
    assert!(e.starts_with(&format!("field 'proto': longer than {proto_max} bytes")), "{e}");

    // Fields are named: unknown, missing, wrong type or value.
    let e = c.post("/v1/rules", r#"{"cidr": "10.0.0.0/8", "prot": "udp"}"#).error(422);
    assert!(e.starts_with("unknown field 'prot' (expected cidr, proto, port, dir, ttl, audit, action)"), "{e}");
    let e = c.post("/v1/rules", r#"{"proto": "udp"}"#).error(422);
    assert!(e.starts_with("field 'cidr' is required"), "{e}");
    let e = c.post("/v1/rules", r#"{"cidr": 10}"#).error(422);
    assert!(e.starts_with("field 'cidr': expected a string, got a number"), "{e}");
    let e = c.post("/v1/rules", r#"[{"cidr": "10.0.0.0/8"}, {"cidr": "10.0.0.0/8"}, {"cidr": "10.0.0.1/8"}]"#).error(422);
    assert!(e.starts_with("rule 2: field 'cidr': '10.0.0.1/8' has host bits set beyond /8; did you mean 10.0.0.0/8?"), "{e}");
    let e = c.post("/v1/rules", r#"{"cidr": "10.0.0.0/8", "proto": "icmp", "port": 53}"#).error(422);
    assert!(e.starts_with("field 'port': protocol icmp has no ports"), "{e}");
    // ICMP is the prefix's own, as on the command line: the same sentence.
    let e = c.post("/v1/rules", r#"{"cidr": "10.0.0.0/8", "proto": "icmpv6"}"#).error(422);
    assert!(e.starts_with("field 'proto': protocol icmpv6 is ICMP for IPv6, but 10.0.0.0/8 is an IPv4 prefix: use protocol icmp"), "{e}");
    let e = c.post("/v1/rules", r#"{"cidr": "2001:db8::/32", "proto": "icmp"}"#).error(422);
    assert!(e.starts_with("field 'proto': protocol icmp is ICMP for IPv4, but 2001:db8::/32 is an IPv6 prefix: use protocol icmpv6"), "{e}");
    let e = c.post("/v1/rules", r#"{"cidr": "10.0.0.0/8", "dir": "sideways"}"#).error(422);
    assert!(e.starts_with("field 'dir': 'sideways' is not one of in, out, both"), "{e}");
    let e = c.post("/v1/rules", r#"{"rules": [{"cidr": "10.0.0.0/8"}], "dir": "in"}"#).error(422);
    assert!(e.starts_with("unknown field 'dir' beside 'rules'"), "{e}");
    let e = c.post("/v1/rules", "7").error(422);
    assert!(e.contains("got a number"), "{e}");
    // null means absent for proto, port and dir (the document says nullable).
    let r = c.post("/v1/rules", r#"{"cidr": "198.51.100.0/24", "proto": null, "port": null, "dir": null}"#);
    assert_eq!(r.status, 201, "{}", r.text);
    let e = c.post("/v1/interfaces", r#"{"mode": "auto"}"#).error(422);
    assert!(e.starts_with("field 'name' is required"), "{e}");
    let e = c.post("/v1/interfaces", r#"{"nam": "x"}"#).error(422);
    assert!(e.starts_with("unknown field 'nam' (expected name, mode)"), "{e}");
    let e = c.post("/v1/interfaces", r#"{"name": "nr:0"}"#).error(422);
    assert!(e.starts_with("field 'name': 'nr:0' is not a valid interface name"), "{e}");
    let ifmax = num(&doc, "/components/schemas/InterfaceInput/properties/name/maxLength") as usize;
    let e = c.post("/v1/interfaces", &format!(r#"{{"name": "{}"}}"#, "n".repeat(ifmax + 1))).error(422);
    assert!(e.starts_with("field 'name':") && e.contains(&format!("1-{ifmax} bytes")), "{e}");
    let e = c.post("/v1/interfaces", r#"{"name": "nrnope0", "mode": "fast"}"#).error(422);
    assert!(e.starts_with("field 'mode': unknown XDP mode 'fast'"), "{e}");

    // Rule ids: the path's maximum is a rule id (unknown: 404), one more is not (400).
    let idmax = num(&doc, "/paths/~1v1~1rules~1{id}/parameters/0/schema/maximum");
    assert_eq!(idmax, u32::MAX as u64);
    c.get(&format!("/v1/rules/{idmax}")).error(404);
    let e = c.get(&format!("/v1/rules/{}", idmax + 1)).error(400);
    assert!(e.contains(&format!("from 1 to {idmax}")), "{e}");
    c.delete(&format!("/v1/rules/{}", idmax + 1)).error(400);

    // Flows: limit within 1..maximum.
    let fmax = num(&doc, "/paths/~1v1~1flows/get/parameters/2/schema/maximum");
    if cfg!(feature = "flows") {
        assert_eq!(c.get(&format!("/v1/flows?limit={fmax}")).status, 200);
    }
    let e = c.get(&format!("/v1/flows?limit={}", fmax + 1)).error(400);
    assert!(e.starts_with("query parameter 'limit'"), "{e}");

    // If-Match: what the pattern allows is a revision (stale ones get 412),
    // anything else is a 400 on every request that takes it.
    let pattern = at(&doc, "/components/parameters/IfMatch/schema/pattern").as_str().unwrap();
    assert_eq!(pattern, netray_daemon::api::IF_MATCH_PATTERN);
    let forms: [fn(u64) -> String; 4] =
        [|rev| format!("\"{rev}\""), |rev| format!("W/\"{rev}\""), |rev| format!("{rev}"), |_| "*".to_string()];
    for form in forms {
        let good = form(c.get("/v1/rules").revision());
        let r = c.request("POST", "/v1/rules", Some(TOKEN), Some(&good), Some(r#"{"cidr": "203.0.113.0/24"}"#));
        assert_eq!(r.status, 201, "If-Match {good}: {}", r.text);
        let r = c.request("DELETE", &format!("/v1/rules/{}", r.json()["added"][0]["id"]), Some(TOKEN), Some("*"), None);
        assert_eq!(r.status, 200, "{}", r.text);
    }
    c.request("POST", "/v1/rules", Some(TOKEN), Some("\"1\""), Some(r#"{"cidr": "203.0.113.0/24"}"#)).error(412);
    for bad in ["", "junk", "W/1", "\"1", "1\"", "\"1\", \"2\"", "-1", "10000000000000000000"] {
        let e = c.request("POST", "/v1/rules", Some(TOKEN), Some(bad), Some(r#"{"cidr": "203.0.113.0/24"}"#)).error(400);
        assert!(e.starts_with("If-Match"), "{bad}: {e}");
        c.request("DELETE", "/v1/rules/1", Some(TOKEN), Some(bad), None).error(400);
        c.request("POST", "/v1/interfaces", Some(TOKEN), Some(bad), Some(r#"{"name": "nrnope0"}"#)).error(400);
        c.request("DELETE", "/v1/interfaces/nrnope0", Some(TOKEN), Some(bad), None).error(400);
    }

    // A path name the pattern refuses is a 400 naming it, before the
    // revision is compared (schemathesis found a stale If-Match won: 412).
    for path in ["/v1/interfaces/nr:0", "/v1/interfaces/nr%200", "/v1/interfaces/nr:0/policy"] {
        let e = c.get(path).error(400);
        assert!(e.contains("is not an interface name: no '/', ':' or spaces"), "{path}: {e}");
    }
    let e = c.request("DELETE", "/v1/interfaces/nr:0", Some(TOKEN), Some("\"999999\""), None).error(400);
    assert!(e.starts_with("'nr:0' is not an interface name"), "{e}");
    // Within the schema but over the kernel's 15 bytes: not found.
    let e = c.get(&format!("/v1/interfaces/{}", "é".repeat(ifmax))).error(404);
    assert!(e.contains(&format!("is not a valid interface name: 1-{ifmax} bytes")), "{e}");
    let e = c.request("DELETE", "/v1/interfaces/nr%C2%A00", Some(TOKEN), Some("\"999999\""), None).error(404);
    assert!(e.starts_with("no interface named"), "{e}");
    let e = c.get(&format!("/v1/interfaces/{}", "n".repeat(ifmax + 1))).error(400);
    assert!(e.ends_with(&format!("1-{ifmax} characters")), "{e}");
    let e = c.request("PUT", "/v1/interfaces/nr:0/policy", Some(TOKEN), None, Some(r#"{"in": "drop"}"#)).error(400);
    assert!(e.starts_with("'nr:0' is not an interface name"), "{e}");
}
