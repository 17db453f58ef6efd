//! /v1/rules: list, add, delete, with revisions and If-Match.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use netray_firewall::{Rule, RuleOptions};

use super::{blocking, if_match, parsed_body, with_etag};
use crate::{
    config::{json_kind, short, RuleSpec, RULE_EXAMPLE},
    daemon::Daemon,
    error::{ApiError, ApiResult},
};

pub const EXAMPLE: &str = RULE_EXAMPLE;
/// Rules accepted in one request.
pub const MAX_RULES_PER_REQUEST: usize = 1000;
/// Rule ids are u32s from 1.
pub const MAX_RULE_ID: u64 = u32::MAX as u64;

pub async fn list(State(d): State<Arc<Daemon>>) -> ApiResult<Response> {
    let (rev, rules) = blocking(move || d.rules()).await?;
    Ok(with_etag(StatusCode::OK, rev, serde_json::json!({ "revision": rev, "rules": rules })))
}

pub async fn get(State(d): State<Arc<Daemon>>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let (rev, rules) = blocking(move || d.rules()).await?;
    match rules.into_iter().find(|r| r.id == id) {
        Some(r) => Ok(with_etag(StatusCode::OK, rev, serde_json::json!({ "revision": rev, "rule": r }))),
        None => Err(ApiError::not_found(format!("no rule with id {id}")).hint("GET /v1/rules lists the rules")),
    }
}

pub async fn add(
    State(d): State<Arc<Daemon>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let im = if_match(&headers)?;
    let rules = parsed_body(body, d.body_limit, EXAMPLE, parse_rules)?;
    let (rev, added) = blocking(move || d.add_rules(im.as_deref(), &rules)).await?;
    Ok(with_etag(StatusCode::CREATED, rev, serde_json::json!({ "revision": rev, "added": added })))
}

pub async fn delete(State(d): State<Arc<Daemon>>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Response> {
    let im = if_match(&headers)?;
    let id = parse_id(&id)?;
    let (rev, gone) = blocking(move || d.delete_rule(im.as_deref(), id)).await?;
    Ok(with_etag(StatusCode::OK, rev, serde_json::json!({ "revision": rev, "deleted": gone })))
}

/// The rules of a POST body: one rule object, a list of them, or
/// `{"rules": [...]}`. What is wrong names the rule (by its index in the
/// list, from 0) and the field.
fn parse_rules(posted: &serde_json::Value) -> Result<Vec<(Rule, RuleOptions)>, String> {
    use serde_json::Value;
    let list = match posted {
        Value::Array(list) => list,
        Value::Object(o) if o.contains_key("rules") => {
            if let Some(k) = o.keys().find(|k| *k != "rules") {
                return Err(format!("unknown field '{}' beside 'rules' (send {{\"rules\": [...]}} or one rule)", short(k)));
            }
            match &o["rules"] {
                Value::Array(list) => list,
                v => return Err(format!("field 'rules': expected an array of rules, got {}", json_kind(v))),
            }
        }
        Value::Object(_) => {
            return RuleSpec::from_json(posted).and_then(|s| s.rule_with_options()).map(|r| vec![r]).map_err(String::from)
        }
        v => {
            return Err(format!(
                "expected a rule object such as {EXAMPLE}, a list of them or {{\"rules\": [...]}}, got {}",
                json_kind(v)
            ))
        }
    };
    if list.is_empty() {
        return Err("no rule given: the list is empty".into());
    }
    if list.len() > MAX_RULES_PER_REQUEST {
        return Err(format!("{} rules in one request: at most {MAX_RULES_PER_REQUEST}", list.len()));
    }
    list.iter()
        .enumerate()
        .map(|(i, v)| RuleSpec::from_json(v).and_then(|s| s.rule_with_options()).map_err(|e| format!("rule {i}: {e}")))
        .collect()
}

fn parse_id(s: &str) -> ApiResult<u32> {
    s.parse::<u32>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            ApiError::bad_request(format!("'{}' is not a rule id (an integer from 1 to {MAX_RULE_ID})", short(s)))
                .hint("GET /v1/rules lists the ids")
        })
}
