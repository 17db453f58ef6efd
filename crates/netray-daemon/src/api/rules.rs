//! /v1/rules: list, add, delete, with revisions and If-Match.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use serde::Deserialize;

use super::{blocking, if_match, json_body, with_etag};
use crate::{
    config::RuleSpec,
    daemon::Daemon,
    error::{ApiError, ApiResult},
};

pub const EXAMPLE: &str = r#"{"cidr": "10.0.0.0/8", "proto": "udp", "port": 53, "dir": "in"}"#;
/// Rules accepted in one request.
pub const MAX_RULES_PER_REQUEST: usize = 1000;

#[derive(Deserialize)]
#[serde(untagged)]
enum Posted {
    One(RuleSpec),
    Many(Vec<RuleSpec>),
    Wrapped { rules: Vec<RuleSpec> },
}

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
    let posted: Posted = json_body(body, d.body_limit, EXAMPLE).map_err(|mut e| {
        if e.status == StatusCode::UNPROCESSABLE_ENTITY {
            e.body.error = e.body.error.replace("data did not match any variant of untagged enum Posted",
                "expected a rule object {\"cidr\": ..., \"proto\": ..., \"port\": ..., \"dir\": ...} (cidr required, no other fields), or a list of them");
        }
        e
    })?;
    let specs = match posted {
        Posted::One(s) => vec![s],
        Posted::Many(v) | Posted::Wrapped { rules: v } => v,
    };
    if specs.is_empty() {
        return Err(ApiError::unprocessable("no rule given").hint(format!("example: {EXAMPLE}")));
    }
    if specs.len() > MAX_RULES_PER_REQUEST {
        return Err(ApiError::unprocessable(format!("at most {MAX_RULES_PER_REQUEST} rules per request")));
    }
    let mut rules = Vec::with_capacity(specs.len());
    for (i, s) in specs.iter().enumerate() {
        let r = s.to_rule().map_err(|e| {
            let at = if specs.len() > 1 { format!("rule {i}: ") } else { String::new() };
            ApiError::unprocessable(format!("{at}{e}")).hint(format!("example: {EXAMPLE}"))
        })?;
        rules.push(r);
    }
    let im = if_match(&headers);
    let (rev, added) = blocking(move || d.add_rules(im.as_deref(), &rules)).await?;
    Ok(with_etag(StatusCode::CREATED, rev, serde_json::json!({ "revision": rev, "added": added })))
}

pub async fn delete(State(d): State<Arc<Daemon>>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let im = if_match(&headers);
    let (rev, gone) = blocking(move || d.delete_rule(im.as_deref(), id)).await?;
    Ok(with_etag(StatusCode::OK, rev, serde_json::json!({ "revision": rev, "deleted": gone })))
}

fn parse_id(s: &str) -> ApiResult<u32> {
    s.parse::<u32>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| ApiError::bad_request(format!("'{s}' is not a rule id (a positive integer)")).hint("GET /v1/rules lists the ids"))
}
