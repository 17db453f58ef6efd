//! The OpenAPI 3 document of the API, served at /openapi.json and checked in
//! at docs/openapi.json (a test keeps the two identical; regenerate the file
//! with `NETRAY_REGEN_OPENAPI=1 cargo test -p netray-daemon openapi`).

use axum::Json;
use serde_json::{json, Value};

use super::{events::MAX_FILTER_LEN, rules::{MAX_RULES_PER_REQUEST, MAX_RULE_ID}, stats::FLOWS_MAX_LIMIT, IF_MATCH_PATTERN};
use crate::config::{bounds, DEFAULT_BODY_LIMIT};

mod limits_doc;

/// An error answer: JSON `{"error", "hint"}`.
fn err(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": r("Error")}}})
}

/// A shared answer of `components.responses`.
fn resp(name: &str) -> Value {
    json!({"$ref": format!("#/components/responses/{name}")})
}

fn ok(desc: &str, schema: Value) -> Value {
    json!({"description": desc, "headers": {"ETag": {"$ref": "#/components/headers/ETag"}},
           "content": {"application/json": {"schema": schema}}})
}

fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn sse(desc: &str) -> Value {
    json!({"description": desc, "content": {"text/event-stream": {"schema": {"type": "string"}}}})
}

fn if_match() -> Value {
    json!({"$ref": "#/components/parameters/IfMatch"})
}

/// An object whose properties are all present in every answer.
fn object(props: Value) -> Value {
    let required: Vec<String> = props.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    json!({"type": "object", "required": required, "properties": props})
}

/// Merges `extra` into `base` (both objects).
fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    base
}

/// A response with links to operations taking `param` from `value` of its body.
fn linked(response: Value, ops: &[&str], param: &str, value: &str) -> Value {
    let links: serde_json::Map<String, Value> = ops
        .iter()
        .map(|op| (op.to_string(), json!({"operationId": op, "parameters": {param: value}})))
        .collect();
    with(response, json!({"links": links}))
}

fn ifname_schema() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": bounds::IFNAME_MAX_LEN, "pattern": "^[^/:\\s]+$",
           "description": format!("An interface name as the kernel takes it: 1-{} bytes, no '/', ':' or spaces, \
not '.' or '..'", bounds::IFNAME_MAX_LEN)})
}

/// The document.
pub fn document() -> Value {
    // Who may call what (see "Security" in docs/daemon.md).
    let token = json!([{"bearer": []}]);
    let read = json!([{}, {"bearer": []}]);
    let open = json!([]);
    let body_limit = DEFAULT_BODY_LIMIT / 1024;
    let rule_list = json!({"type": "array", "minItems": 1, "maxItems": MAX_RULES_PER_REQUEST, "items": r("RuleInput")});
    let mut doc = json!({
      "openapi": "3.0.3",
      "info": {
        "title": "netray daemon API",
        "version": env!("CARGO_PKG_VERSION"),
        "description": format!("Firewall rules, rate limits, interfaces, statistics, flows and live event streams of netray. \
\n\nAuthorization: every request that changes something (POST, DELETE) and the event streams need \
`Authorization: Bearer <token>` (the daemon's --token-file), else 401. Plain reads (rules, interfaces, stats, flows, \
this document) are open while the daemon listens on loopback and need the token otherwise. /healthz and /metrics \
never need it.\n\nRules and interfaces carry a revision, bumped by every change and returned in bodies and the \
ETag header; send it back in If-Match to make a change conditional (412 if someone changed something meanwhile). \
\n\nErrors are JSON {{\"error\": ..., \"hint\": ...}}; an invalid field is named in `error`, e.g. \
`rule 3: field 'port': 70000 is out of range 1-65535` (rules are counted from 0 in a list). Request bodies are \
limited ({body_limit} KiB by default, the daemon's body_limit; 413 beyond). Every path answers 404 for an unknown \
route and 405 (with Allow) for a method it does not have.")
      },
      "servers": [{"url": "http://127.0.0.1:9810"}],
      "paths": {
        "/v1/rules": {
          "get": {"summary": "List the deny and audit rules with their hit counters and time left (expired rules are removed first)", "operationId": "listRules", "security": read.clone(),
            "responses": {"200": ok("The rules", r("RuleList")), "401": resp("Unauthorized")}},
          "post": {"summary": "Add deny or audit rules, optionally expiring (all or none)", "operationId": "addRules", "security": token.clone(),
            "parameters": [if_match()],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"oneOf": [
                r("RuleInput"), rule_list.clone(),
                {"type": "object", "required": ["rules"], "additionalProperties": false, "properties": {"rules": rule_list}}]}}}},
            "responses": {"201": linked(ok("Added", r("RuleAdded")), &["getRule", "deleteRule"], "id", "$response.body#/added/0/id"), "400": resp("BadRequestBody"),
              "401": resp("Unauthorized"), "409": err("The rule exists already"),
              "412": resp("RevisionConflict"), "413": resp("TooLarge"),
              "422": err(&format!("Not a valid rule, naming the rule and the field: not an IPv4/IPv6 address or prefix, \
host bits set (\"did you mean 10.0.0.0/8?\"), unknown protocol, a port with a protocol that has none, an empty list or \
more than {MAX_RULES_PER_REQUEST} rules, an unknown field, a ttl that is not a positive duration")),
              "405": resp("MethodNotAllowed")}}
        },
        "/v1/rules/{id}": {
          "parameters": [{"name": "id", "in": "path", "required": true,
            "schema": {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_RULE_ID}}],
          "get": {"summary": "One rule", "operationId": "getRule", "security": read.clone(),
            "responses": {"200": ok("The rule", object(json!({"revision": {"type": "integer"}, "rule": r("Rule")}))),
              "400": err(&format!("Not a rule id (an integer from 1 to {MAX_RULE_ID})")), "401": resp("Unauthorized"),
              "404": err("No such rule")}},
          "delete": {"summary": "Delete a rule", "operationId": "deleteRule", "security": token.clone(), "parameters": [if_match()],
            "responses": {"200": ok("Deleted", object(json!({"revision": {"type": "integer"}, "deleted": r("Rule")}))),
              "400": err(&format!("Not a rule id (an integer from 1 to {MAX_RULE_ID}), or If-Match is not an ETag")),
              "401": resp("Unauthorized"), "404": err("No such rule"), "412": resp("RevisionConflict")}}
        },
        "/v1/interfaces": {
          "get": {"summary": "Interfaces the daemon manages or netray is attached to", "operationId": "listInterfaces",
            "security": read.clone(),
            "responses": {"200": ok("The interfaces", object(json!({"revision": {"type": "integer"},
              "interfaces": {"type": "array", "items": r("Interface")}}))), "401": resp("Unauthorized")}},
          "post": {"summary": "Attach the firewall to an interface (kept attached across restarts)", "operationId": "attachInterface",
            "security": token.clone(), "parameters": [if_match()],
            "requestBody": {"required": true, "content": {"application/json": {"schema": r("InterfaceInput")}}},
            "responses": {
              "201": linked(ok("Attached now", r("InterfaceAttached")), &["getInterface", "detachInterface"], "name", "$response.body#/interface/name"),
              "200": linked(ok("Already attached", r("InterfaceAttached")), &["getInterface", "detachInterface"], "name", "$response.body#/interface/name"),
              "400": resp("BadRequestBody"), "401": resp("Unauthorized"), "412": resp("RevisionConflict"),
              "413": resp("TooLarge"),
              "422": err("Not a valid interface, naming the field (a name the kernel would refuse, an unknown mode, an \
unknown field), no such interface in the daemon's network namespace, or the kernel refused the attachment (its reason)"),
              "405": resp("MethodNotAllowed")}}
        },
        "/v1/interfaces/{name}": {
          "parameters": [{"name": "name", "in": "path", "required": true, "schema": ifname_schema()}],
          "get": {"summary": "Status of one interface", "operationId": "getInterface", "security": read.clone(),
            "responses": {"200": ok("The interface", object(json!({"revision": {"type": "integer"}, "interface": r("Interface")}))),
              "400": err("Not an interface name"), "401": resp("Unauthorized"), "404": err("No such interface, or netray is not attached to it and the daemon does not manage it")}},
          "delete": {"summary": "Detach the firewall from an interface", "operationId": "detachInterface", "security": token.clone(),
            "parameters": [if_match()],
            "responses": {"200": ok("Detached", object(json!({"revision": {"type": "integer"}, "detached": {"type": "string"}}))),
              "400": err("Not an interface name, or If-Match is not an ETag"), "401": resp("Unauthorized"),
              "404": err("No such interface, or the firewall is not attached to it"),
              "412": resp("RevisionConflict")}}
        },
        "/v1/interfaces/{name}/policy": {
          "parameters": [{"name": "name", "in": "path", "required": true, "schema": ifname_schema()}],
          "get": {"summary": "The interface's policy for received packets no rule decides", "operationId": "getPolicy",
            "security": read.clone(),
            "responses": {"200": {"description": "The policy", "content": {"application/json": {"schema": r("Policy")}}},
              "400": err("Not an interface name"), "401": resp("Unauthorized"), "404": err("netray is not attached to the interface")}},
          "put": {"summary": "Set the interface's policy for received packets no rule decides", "operationId": "setPolicy",
            "security": token.clone(),
            "description": "drop: only what an allow rule matches passes, and always ARP, IPv6 neighbour/router \
discovery and the replies to what this host sends (noted at TC egress in a bounded table; the host's connected \
sockets are noted first, so a session to the host survives). pass (the default): what no rule decides passes.",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object",
              "required": ["in"], "additionalProperties": false,
              "properties": {"in": {"type": "string", "enum": ["drop", "pass"]}}}}}},
            "responses": {"200": {"description": "Set", "content": {"application/json": {"schema": r("Policy")}}},
              "400": resp("BadRequestBody"), "401": resp("Unauthorized"),
              "404": err("No such interface"),
              "409": err("The firewall is not attached to the interface: nothing changed"),
              "422": err("The body is not {\"in\": \"drop\"} or {\"in\": \"pass\"}")}}
        },
        "/v1/stats": {
          "get": {"summary": "Counters per interface and per rule, table usage, event streams and API", "operationId": "stats",
            "security": read.clone(),
            "responses": {"200": ok("Statistics", r("Stats")), "401": resp("Unauthorized")}}
        },
        "/v1/flows": {
          "get": {"summary": "The current top flows of the daemon's interfaces", "operationId": "flows", "security": read.clone(),
            "parameters": [
              {"name": "interface", "in": "query", "schema": ifname_schema()},
              {"name": "sort", "in": "query", "schema": {"type": "string", "enum": ["bytes", "packets", "rate"], "default": "bytes"}},
              {"name": "limit", "in": "query", "description": "Flows per interface (default: the config's flows.top, 20)",
               "schema": {"type": "integer", "minimum": 1, "maximum": FLOWS_MAX_LIMIT}}],
            "responses": {"200": {"description": "One snapshot per interface (as `netray top --json`)",
                "content": {"application/json": {"schema": object(json!({"interfaces": {"type": "array", "items": {"type": "object"}}}))}}},
              "400": err("Bad or unknown query parameter"), "401": resp("Unauthorized"),
              "404": err("No flows counted on that interface"),
              "501": err("Flow accounting is not available in this daemon (not built in, or disabled in its config)")}}
        },
        "/v1/events/packets": {
          "get": {"summary": "Server-Sent Events: one `packet` event per packet seen on an interface", "operationId": "packetEvents",
            "security": token.clone(),
            "description": "Events: `ready` (first), `packet`, `dropped` ({dropped, dropped_total}: events this client \
lost because it read too slowly), `error` (the stream ends). Without filter= a `packet` is the monitor's JSON event \
(`netray monitor --json`). With filter= the expression runs in the kernel, in a capture program put in front of the \
interface's XDP program, and a `packet` is shaped like `netray dump --json` (ts, ifname, hook, point, wire_len, \
cap_len, summary, src, dst, sport, dport, proto). One filter per interface at a time: clients with the same filter \
share the capture, another filter is a 409.",
            "parameters": [
              {"name": "interface", "in": "query", "required": true, "schema": ifname_schema()},
              {"name": "filter", "in": "query", "schema": {"type": "string", "maxLength": MAX_FILTER_LEN},
               "description": "pcap-filter expression (man 7 pcap-filter), e.g. `tcp port 80 or icmp`"}],
            "responses": {"200": sse("The event stream"),
              "400": err("Missing or unknown parameter, or a filter libpcap cannot compile (its message is in `error`)"),
              "401": resp("Unauthorized"),
              "404": err("Unknown interface"),
              "409": err("Another monitor reads the interface, or a stream with another filter (or a `netray dump`) captures there")}}
        },
        "/v1/events/exec": {
          "get": {"summary": "Server-Sent Events: one `exec` event per process exec", "operationId": "execEvents",
            "security": token.clone(),
            "description": "Events: `ready` (first), `exec` (as `netray exec --json`), `dropped`, `error` (the stream ends).",
            "parameters": [
              {"name": "comm", "in": "query", "description": "Only execs by this command name (the kernel's comm)",
               "schema": {"type": "string", "minLength": 1, "maxLength": super::events::COMM_MAX_LEN}},
              {"name": "pid", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": u32::MAX}},
              {"name": "failed", "in": "query", "description": "Only execs that failed", "schema": {"type": "boolean"}}],
            "responses": {"200": sse("The event stream"), "400": err("Bad or unknown parameter"),
              "401": resp("Unauthorized")}}
        },
        "/v1/events/drops": {
          "get": {"summary": "Server-Sent Events: one `drop` event per dropped packet, the kernel's and netray's", "operationId": "dropEvents",
            "security": token.clone(),
            "description": "Events: `ready` (first), `drop` (as `netray drops --json`: ts, ifname, who, reason, \
reason_code, location, function, rule, summary, src, dst, sport, dport, proto, len), `dropped`, `error` (the stream \
ends). Kernel drops come from skb:kfree_skb with the running kernel's reason names; with interface= netray's own \
firewall drops there are included (who `netray xdp rule N`). Without interface= every drop of the daemon's network \
namespace. Clients of the same interface share one tracer; the counts feed `netray_drops` on /metrics.",
            "parameters": [
              {"name": "interface", "in": "query", "schema": ifname_schema()}],
            "responses": {"200": sse("The event stream"),
              "400": err("Unknown parameter"),
              "401": resp("Unauthorized"),
              "404": err("Unknown interface"),
              "409": err("A `netray monitor` reads the interface's events"),
              "500": err("The kernel refused every way to trace skb:kfree_skb")}}
        },
        "/metrics": {
          "get": {"summary": "Prometheus metrics", "operationId": "metrics", "security": open.clone(),
            "description": "The Prometheus text format 0.0.4 by default; OpenMetrics 1.0.0 when the Accept header asks for \
application/openmetrics-text.",
            "responses": {"200": {"description": "Metrics", "content": {
              "text/plain; version=0.0.4; charset=utf-8": {"schema": {"type": "string"}},
              "application/openmetrics-text; version=1.0.0; charset=utf-8": {"schema": {"type": "string"}}}}}}
        },
        "/healthz": {
          "get": {"summary": "Health: what the daemon needs, checked", "operationId": "healthz", "security": open.clone(),
            "responses": {
              "200": {"description": "Healthy", "content": {"application/json": {"schema": r("Health")}}},
              "503": {"description": "Unhealthy: `error` says what is wrong, `checks` each check",
                "content": {"application/json": {"schema": r("Health")}}}}}
        },
        "/openapi.json": {
          "get": {"summary": "This document", "operationId": "openapi", "security": read.clone(),
            "responses": {"200": {"description": "OpenAPI 3 document", "content": {"application/json": {"schema": {"type": "object"}}}},
              "401": resp("Unauthorized")}}
        }
      },
      "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
          "description": "The content of the daemon's --token-file"}},
        "headers": {"ETag": {"description": "The revision, quoted", "schema": {"type": "string"}}},
        "parameters": {"IfMatch": {"name": "If-Match", "in": "header", "required": false,
          "description": "Apply only if the revision is still this one: an ETag of this API (\"12\", W/\"12\" or 12), \
or * for any revision; anything else is a 400",
          "schema": {"type": "string", "pattern": IF_MATCH_PATTERN}}},
        "responses": {
          "Unauthorized": err("No or wrong bearer token"),
          "BadRequestBody": err("Malformed JSON, an empty body, or If-Match is not an ETag"),
          "RevisionConflict": {"description": "Revision conflict (If-Match): nothing changed; ETag is the current revision",
            "headers": {"ETag": {"$ref": "#/components/headers/ETag"}},
            "content": {"application/json": {"schema": r("Error")}}},
          "TooLarge": err(&format!("Body larger than the daemon's body_limit ({body_limit} KiB by default)")),
          "MethodNotAllowed": err("The path has no such method (the Allow header lists those it has)")
        },
        "schemas": {
          "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}, "hint": {"type": "string"}}},
          "RuleInput": {"type": "object", "required": ["cidr"], "additionalProperties": false, "properties": {
            "cidr": {"type": "string", "minLength": 1, "maxLength": bounds::CIDR_MAX_LEN, "example": "10.0.0.0/8",
              "description": "An IPv4 or IPv6 address or prefix, host bits zero"},
            "proto": {"type": "string", "nullable": true, "minLength": 1, "maxLength": bounds::PROTO_MAX_LEN, "example": "udp",
              "description": "tcp, udp, sctp, icmp (IPv4 prefixes), icmpv6 (IPv6 prefixes) or a protocol number 1-255; absent or null: every protocol"},
            "port": {"type": "integer", "nullable": true, "minimum": bounds::PORT_MIN, "maximum": bounds::PORT_MAX,
              "description": "Destination port (with tcp, udp, sctp, or no proto: all three)"},
            "dir": {"type": "string", "nullable": true, "enum": [bounds::DIRS[0], bounds::DIRS[1], bounds::DIRS[2], null], "default": "in",
              "description": "in: received packets, by source; out: sent packets, by destination; both"},
            "ttl": {"type": "string", "nullable": true, "minLength": 1, "maxLength": bounds::TTL_MAX_LEN, "example": "10m",
              "description": "The rule expires this long after it is added (30s, 10m, 2h, 1h30m): the kernel stops matching it then; absent or null: never. Expiring rules are not kept in the daemon's state file"},
            "audit": {"type": "boolean", "nullable": true, "default": false,
              "description": "true: the rule only counts the packets it matches (its would-drop hits) and lets them pass \
(as action audit)"},
            "action": {"type": "string", "nullable": true, "enum": ["deny", "audit", "allow"], "default": "deny",
              "description": "deny drops, audit counts and lets pass, allow lets pass past a wider deny rule and the \
interface's drop policy. The most specific rule decides (longest prefix; then port over protocol over all; then deny \
over allow)"}}},
          "Policy": {"type": "object", "required": ["interface", "in"], "properties": {
            "interface": {"type": "string"}, "in": {"type": "string", "enum": ["drop", "pass"]},
            "connections_noted": {"type": "integer", "minimum": 0,
              "description": "PUT drop: the host's connected TCP/UDP sockets noted as replies to pass"}}},
          "Rule": object(json!({
            "id": {"type": "integer", "minimum": 1, "maximum": MAX_RULE_ID}, "cidr": {"type": "string"},
            "proto": {"type": "string", "nullable": true}, "port": {"type": "integer", "nullable": true},
            "dir": {"type": "string", "enum": bounds::DIRS},
            "action": {"type": "string", "enum": ["deny", "audit", "allow"]},
            "expires_in_ms": {"type": "integer", "nullable": true, "minimum": 0,
              "description": "Milliseconds until the rule expires; null: never"},
            "packets": {"type": "integer", "minimum": 0}, "bytes": {"type": "integer", "minimum": 0}})),
          "RuleList": object(json!({"revision": {"type": "integer"}, "rules": {"type": "array", "items": r("Rule")}})),
          "RuleAdded": object(json!({"revision": {"type": "integer"}, "added": {"type": "array", "items": r("Rule")}})),
          "InterfaceInput": {"type": "object", "required": ["name"], "additionalProperties": false, "properties": {
            "name": with(ifname_schema(), json!({"example": "eth1"})),
            "mode": {"type": "string", "enum": bounds::MODES, "default": "auto",
              "description": "XDP mode; drv and skb are iproute2's names for native and generic"}}},
          "Interface": object(json!({
            "name": {"type": "string"}, "desired": {"type": "boolean"}, "requested_mode": {"type": "string", "nullable": true},
            "attached": {"type": "boolean"}, "firewall": {"type": "boolean"}, "exists": {"type": "boolean"},
            "status": {"type": "object", "nullable": true, "description": "As `netray firewall status --json`"}})),
          "InterfaceAttached": object(json!({"revision": {"type": "integer"},
            "attached_now": {"type": "boolean"}, "interface": r("Interface")})),
          "Stats": object(json!({
            "revision": {"type": "integer"}, "interfaces": {"type": "array", "items": {"type": "object"}},
            "rules": {"type": "array", "items": r("Rule")}, "table": {"type": "object"},
            "events": {"type": "object", "properties": {"queue_per_client": {"type": "integer"}, "clients": {"type": "integer"},
              "dropped_total": {"type": "integer"}, "packet_streams": {"type": "array", "items": {"type": "object"}},
              "exec_stream": {"type": "object", "nullable": true}}},
            "api": {"type": "object"}, "uptime_seconds": {"type": "integer"}})),
          "Health": {"type": "object", "required": ["status"], "properties": {
            "status": {"type": "string", "enum": ["ok", "unhealthy"]},
            "checks": {"type": "object", "description": "Each check the daemon made, by name"},
            "error": {"type": "string", "description": "What is wrong (503 only)"}}}
        }
      }
    });
    limits_doc::add(&mut doc, &read, &token);
    doc
}

/// The document as checked in: pretty JSON with a final newline.
pub fn document_text() -> String {
    let mut s = serde_json::to_string_pretty(&document()).expect("serialisable");
    s.push('\n');
    s
}

pub async fn openapi() -> Json<Value> {
    Json(document())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    #[test]
    fn openapi_checked_in_matches_served() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
        let text = super::document_text();
        if std::env::var_os("NETRAY_REGEN_OPENAPI").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        let checked_in = std::fs::read_to_string(&path).expect("docs/openapi.json");
        assert!(
            checked_in == text,
            "docs/openapi.json differs from the served document: regenerate it with \
             NETRAY_REGEN_OPENAPI=1 cargo test -p netray-daemon openapi"
        );
    }
}
