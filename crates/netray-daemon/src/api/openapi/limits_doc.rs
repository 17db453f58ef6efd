//! The /v1/limits part of the OpenAPI document (paths and schemas).

use serde_json::{json, Value};

use super::{err, if_match, linked, object, ok, r, resp};
use crate::limit_spec::LIMIT_EXAMPLE;

/// Adds the rate limits' paths and schemas to `doc`.
pub fn add(doc: &mut Value, read: &Value, token: &Value) {
    let max_id = netray_firewall::limit::store::MAX_LIMITS;
    let max_rate = netray_firewall::limit::spec::MAX_RATE_PER_SEC;
    let max_burst = netray_firewall::limit::spec::MAX_BURST;
    let example: Value = serde_json::from_str(LIMIT_EXAMPLE).expect("the example is JSON");
    let paths = json!({
      "/v1/limits": {
        "get": {"summary": "List the rate limits: packets passed and dropped, sources tracked and banned now",
          "operationId": "listLimits", "security": read,
          "responses": {"200": ok("The limits", r("LimitList")), "401": resp("Unauthorized")}},
        "post": {"summary": "Add a rate limit (a token bucket in the kernel on received packets the firewall lets pass)",
          "operationId": "addLimit", "security": token, "parameters": [if_match()],
          "requestBody": {"required": true, "content": {"application/json": {"schema": r("LimitInput"), "example": example}}},
          "responses": {"201": linked(ok("Added", r("LimitAdded")), &["getLimit", "deleteLimit"], "id", "$response.body#/added/id"),
            "400": resp("BadRequestBody"), "401": resp("Unauthorized"), "412": resp("RevisionConflict"), "413": resp("TooLarge"),
            "422": err(&format!("Not a valid limit, or one that cannot be added: a rate of 0 or more than {max_rate} packets per \
second, a burst below 1, --ban without per_source, syn with a protocol other than tcp, a direction other than in, an \
unknown field; a limit that exists or overlaps another; more than {max_id} limits")),
            "405": resp("MethodNotAllowed")}}
      },
      "/v1/limits/{id}": {
        "parameters": [{"name": "id", "in": "path", "required": true,
          "schema": {"type": "integer", "minimum": 1, "maximum": max_id}}],
        "get": {"summary": "One rate limit", "operationId": "getLimit", "security": read,
          "responses": {"200": ok("The limit", object(json!({"revision": {"type": "integer"}, "limit": r("Limit")}))),
            "400": err(&format!("Not a limit id (an integer from 1 to {max_id})")), "401": resp("Unauthorized"),
            "404": err("No such limit")}},
        "delete": {"summary": "Delete a rate limit", "operationId": "deleteLimit", "security": token, "parameters": [if_match()],
          "responses": {"200": ok("Deleted", object(json!({"revision": {"type": "integer"}, "deleted": r("Limit")}))),
            "400": err(&format!("Not a limit id (an integer from 1 to {max_id}), or If-Match is not an ETag")),
            "401": resp("Unauthorized"), "404": err("No such limit"), "412": resp("RevisionConflict")}}
      }
    });
    let counter = json!({"type": "integer", "minimum": 0});
    let schemas = json!({
      "LimitInput": {"type": "object", "required": ["cidr", "rate"], "additionalProperties": false, "properties": {
        "cidr": {"type": "string", "minLength": 1, "maxLength": 64, "example": "10.0.0.0/8",
          "description": "Source prefix of received packets (IPv4 or IPv6), host bits zero"},
        "rate": {"type": "string", "minLength": 1, "maxLength": 64, "example": "100/s",
          "description": format!("Packets per second, minute or hour: 100/s, 6000/m, 10/h; at most {max_rate} per second")},
        "burst": {"type": "integer", "nullable": true, "minimum": 1, "maximum": max_burst,
          "description": "Packets a full bucket lets through at once; default: the rate's count"},
        "per_source": {"type": "boolean", "default": false, "description": "One bucket per source address"},
        "proto": {"type": "string", "nullable": true, "minLength": 1, "maxLength": 64,
          "description": "tcp, udp, sctp, icmp (IPv4 prefixes), icmpv6 (IPv6 prefixes) or a number; absent or null: all"},
        "port": {"type": "integer", "nullable": true, "minimum": 1, "maximum": 65535, "description": "Destination port (with tcp, udp, sctp, or no proto: all three)"},
        "syn": {"type": "boolean", "default": false, "description": "Only TCP SYNs without ACK"},
        "ban": {"type": "string", "nullable": true, "minLength": 1, "maxLength": 64, "example": "60s",
          "description": "With per_source: drop everything from a source that exceeded the rate, this long"},
        "dir": {"type": "string", "nullable": true, "enum": ["in", null], "default": "in", "description": "Received packets, by source (the only direction)"}}},
      "Limit": object(json!({
        "id": {"type": "integer", "minimum": 1, "maximum": max_id},
        "cidr": {"type": "string", "description": "The source prefix"},
        "net": {"type": "string", "deprecated": true, "description": "The same as cidr, by its old name; goes in the next release"},
        "rate": {"type": "string"}, "burst": {"type": "integer"}, "per_source": {"type": "boolean"},
        "proto": {"type": "string", "nullable": true}, "port": {"type": "integer", "nullable": true},
        "syn": {"type": "boolean"}, "ban_ms": {"type": "integer", "nullable": true},
        "passed": counter, "passed_bytes": counter, "dropped": counter, "dropped_bytes": counter,
        "banned_drops": counter, "bans": counter, "sources_tracked": counter, "sources_banned": counter,
        "sources_evicted": with_desc(&counter, "Per-source buckets the full table evicted (sources added minus sources held)"),
        "clock": {"type": "string", "enum": ["tick", "boot"],
          "description": "The bucket's clock: the kernel's tick (free to read), or the boot clock when the bucket holds less than one tick or CONFIG_HZ could not be read"}})),
      "LimitList": object(json!({"revision": {"type": "integer"}, "limits": {"type": "array", "items": r("Limit")}})),
      "LimitAdded": object(json!({"revision": {"type": "integer"}, "added": r("Limit")}))
    });
    merge(&mut doc["paths"], paths);
    merge(&mut doc["components"]["schemas"], schemas);
}

fn with_desc(schema: &Value, desc: &str) -> Value {
    let mut s = schema.clone();
    s["description"] = json!(desc);
    s
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(i), Value::Object(f)) = (into.as_object_mut(), from) {
        i.extend(f);
    }
}
