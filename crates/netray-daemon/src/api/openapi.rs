//! The OpenAPI 3 document of the API, served at /openapi.json and checked in
//! at docs/openapi.json (a test keeps the two identical; regenerate the file
//! with `NETRAY_REGEN_OPENAPI=1 cargo test -p netray-daemon openapi`).

use axum::Json;
use serde_json::{json, Value};

fn err(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
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

/// The document.
pub fn document() -> Value {
    let auth = json!([{"bearer": []}]);
    json!({
      "openapi": "3.0.3",
      "info": {
        "title": "netray daemon API",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "Firewall rules, interfaces, statistics, flows and live event streams of netray. \
Every mutating request needs `Authorization: Bearer <token>` (the daemon's --token-file). Rules and interfaces \
carry a revision, bumped by every change and returned in bodies and the ETag header; send it back in If-Match \
to make a change conditional (412 if someone changed something meanwhile). Errors are JSON \
{\"error\": ..., \"hint\": ...}. Request bodies are limited (64 KiB by default; 413 beyond)."
      },
      "servers": [{"url": "http://127.0.0.1:9810"}],
      "paths": {
        "/v1/rules": {
          "get": {"summary": "List the deny rules with their hit counters", "operationId": "listRules",
            "responses": {"200": ok("The rules", r("RuleList"))}},
          "post": {"summary": "Add deny rules (all or none)", "operationId": "addRules", "security": auth.clone(),
            "parameters": [if_match()],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"oneOf": [
                r("RuleInput"), {"type": "array", "items": r("RuleInput")},
                {"type": "object", "required": ["rules"], "properties": {"rules": {"type": "array", "items": r("RuleInput")}}}]}}}},
            "responses": {"201": ok("Added", r("RuleAdded")), "400": err("Malformed JSON or If-Match"),
              "401": err("No or wrong bearer token"), "409": err("The rule exists already"),
              "412": err("Revision conflict (If-Match)"), "413": err("Body too large"),
              "422": err("Invalid rule")}}
        },
        "/v1/rules/{id}": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 1}}],
          "get": {"summary": "One rule", "operationId": "getRule",
            "responses": {"200": ok("The rule", json!({"type": "object", "properties": {"revision": {"type": "integer"}, "rule": r("Rule")}})),
              "400": err("Not a rule id"), "404": err("No such rule")}},
          "delete": {"summary": "Delete a rule", "operationId": "deleteRule", "security": auth.clone(), "parameters": [if_match()],
            "responses": {"200": ok("Deleted", json!({"type": "object", "properties": {"revision": {"type": "integer"}, "deleted": r("Rule")}})),
              "400": err("Not a rule id"), "401": err("No or wrong bearer token"), "404": err("No such rule"),
              "412": err("Revision conflict (If-Match)")}}
        },
        "/v1/interfaces": {
          "get": {"summary": "Interfaces the daemon manages or netray is attached to", "operationId": "listInterfaces",
            "responses": {"200": ok("The interfaces", json!({"type": "object", "properties": {"revision": {"type": "integer"},
              "interfaces": {"type": "array", "items": r("Interface")}}}))}},
          "post": {"summary": "Attach the firewall to an interface (kept attached across restarts)", "operationId": "attachInterface",
            "security": auth.clone(), "parameters": [if_match()],
            "requestBody": {"required": true, "content": {"application/json": {"schema": r("InterfaceInput")}}},
            "responses": {"201": ok("Attached now", r("InterfaceAttached")), "200": ok("Already attached", r("InterfaceAttached")),
              "400": err("Malformed JSON"), "401": err("No or wrong bearer token"), "412": err("Revision conflict (If-Match)"),
              "413": err("Body too large"), "422": err("No such interface, or an invalid mode")}}
        },
        "/v1/interfaces/{name}": {
          "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
          "get": {"summary": "Status of one interface", "operationId": "getInterface",
            "responses": {"200": ok("The interface", json!({"type": "object", "properties": {"revision": {"type": "integer"}, "interface": r("Interface")}})),
              "404": err("Unknown interface")}},
          "delete": {"summary": "Detach the firewall from an interface", "operationId": "detachInterface", "security": auth.clone(),
            "parameters": [if_match()],
            "responses": {"200": ok("Detached", json!({"type": "object", "properties": {"revision": {"type": "integer"}, "detached": {"type": "string"}}})),
              "401": err("No or wrong bearer token"), "404": err("Unknown interface, or not attached"),
              "412": err("Revision conflict (If-Match)")}}
        },
        "/v1/stats": {
          "get": {"summary": "Counters per interface and per rule, table usage, event streams and API", "operationId": "stats",
            "responses": {"200": ok("Statistics", r("Stats"))}}
        },
        "/v1/flows": {
          "get": {"summary": "The current top flows of the daemon's interfaces", "operationId": "flows",
            "parameters": [
              {"name": "interface", "in": "query", "schema": {"type": "string"}},
              {"name": "sort", "in": "query", "schema": {"type": "string", "enum": ["bytes", "packets", "rate"]}},
              {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000}}],
            "responses": {"200": {"description": "One snapshot per interface (as `netray top --json`)",
                "content": {"application/json": {"schema": {"type": "object", "properties": {"interfaces": {"type": "array", "items": {"type": "object"}}}}}}},
              "400": err("Bad query"), "404": err("No flows counted on that interface"),
              "501": err("Flow accounting is not available in this daemon")}}
        },
        "/v1/events/packets": {
          "get": {"summary": "Server-Sent Events: one `packet` event per packet seen on an interface", "operationId": "packetEvents",
            "description": "Events: `ready` (first), `packet`, `dropped` ({dropped, dropped_total}: events this client \
lost because it read too slowly), `error` (the stream ends). Without filter= a `packet` is the monitor's JSON event \
(`netray monitor --json`). With filter= the expression runs in the kernel, in a capture program put in front of the \
interface's XDP program, and a `packet` is shaped like `netray dump --json` (ts, ifname, hook, point, wire_len, \
cap_len, summary, src, dst, sport, dport, proto). One filter per interface at a time: clients with the same filter \
share the capture, another filter is a 409.",
            "parameters": [
              {"name": "interface", "in": "query", "required": true, "schema": {"type": "string"}},
              {"name": "filter", "in": "query", "schema": {"type": "string", "maxLength": 4096},
               "description": "pcap-filter expression (man 7 pcap-filter), e.g. `tcp port 80 or icmp`"}],
            "responses": {"200": sse("The event stream"),
              "400": err("Missing or unknown parameter, or a filter libpcap cannot compile (its message is in `error`)"),
              "404": err("Unknown interface"),
              "409": err("Another monitor reads the interface, or a stream with another filter (or a `netray dump`) captures there")}}
        },
        "/v1/events/exec": {
          "get": {"summary": "Server-Sent Events: one `exec` event per process exec", "operationId": "execEvents",
            "parameters": [
              {"name": "comm", "in": "query", "schema": {"type": "string"}},
              {"name": "pid", "in": "query", "schema": {"type": "integer"}},
              {"name": "failed", "in": "query", "schema": {"type": "boolean"}}],
            "responses": {"200": sse("The event stream"), "400": err("Bad parameter")}}
        },
        "/metrics": {
          "get": {"summary": "Prometheus metrics (OpenMetrics text)", "operationId": "metrics",
            "responses": {"200": {"description": "Metrics", "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}}}}
        },
        "/healthz": {
          "get": {"summary": "Liveness", "operationId": "healthz",
            "responses": {"200": {"description": "Healthy", "content": {"application/json": {"schema": {"type": "object"}}}},
              "503": err("Unhealthy")}}
        },
        "/openapi.json": {
          "get": {"summary": "This document", "operationId": "openapi",
            "responses": {"200": {"description": "OpenAPI 3 document", "content": {"application/json": {"schema": {"type": "object"}}}}}}
        }
      },
      "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "headers": {"ETag": {"description": "The revision, quoted", "schema": {"type": "string"}}},
        "parameters": {"IfMatch": {"name": "If-Match", "in": "header", "required": false,
          "description": "Apply only if the revision is still this one (an ETag)", "schema": {"type": "string"}}},
        "schemas": {
          "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}, "hint": {"type": "string"}}},
          "RuleInput": {"type": "object", "required": ["cidr"], "additionalProperties": false, "properties": {
            "cidr": {"type": "string", "example": "10.0.0.0/8"},
            "proto": {"type": "string", "example": "udp", "description": "tcp, udp, sctp, icmp or a protocol number"},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "dir": {"type": "string", "enum": ["in", "out", "both"], "default": "in"}}},
          "Rule": {"type": "object", "properties": {
            "id": {"type": "integer"}, "cidr": {"type": "string"}, "proto": {"type": "string", "nullable": true},
            "port": {"type": "integer", "nullable": true}, "dir": {"type": "string"},
            "packets": {"type": "integer"}, "bytes": {"type": "integer"}}},
          "RuleList": {"type": "object", "properties": {"revision": {"type": "integer"}, "rules": {"type": "array", "items": r("Rule")}}},
          "RuleAdded": {"type": "object", "properties": {"revision": {"type": "integer"}, "added": {"type": "array", "items": r("Rule")}}},
          "InterfaceInput": {"type": "object", "required": ["name"], "additionalProperties": false, "properties": {
            "name": {"type": "string", "example": "eth1"},
            "mode": {"type": "string", "enum": ["auto", "native", "generic"], "default": "auto"}}},
          "Interface": {"type": "object", "properties": {
            "name": {"type": "string"}, "desired": {"type": "boolean"}, "requested_mode": {"type": "string", "nullable": true},
            "attached": {"type": "boolean"}, "firewall": {"type": "boolean"}, "exists": {"type": "boolean"},
            "status": {"type": "object", "nullable": true, "description": "As `netray firewall status --json`"}}},
          "InterfaceAttached": {"type": "object", "properties": {"revision": {"type": "integer"},
            "attached_now": {"type": "boolean"}, "interface": r("Interface")}},
          "Stats": {"type": "object", "properties": {
            "revision": {"type": "integer"}, "interfaces": {"type": "array", "items": {"type": "object"}},
            "rules": {"type": "array", "items": r("Rule")}, "table": {"type": "object"},
            "events": {"type": "object", "properties": {"queue_per_client": {"type": "integer"}, "clients": {"type": "integer"},
              "dropped_total": {"type": "integer"}, "packet_streams": {"type": "array", "items": {"type": "object"}},
              "exec_stream": {"type": "object", "nullable": true}}},
            "api": {"type": "object"}, "uptime_seconds": {"type": "integer"}}}
        }
      }
    })
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
