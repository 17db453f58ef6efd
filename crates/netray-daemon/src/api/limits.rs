//! /v1/limits: list, add, delete rate limits, with revisions and If-Match
//! (as /v1/rules).

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};

use super::{blocking, if_match, parsed_body, with_etag};
use crate::{
    config::short,
    daemon::Daemon,
    error::{ApiError, ApiResult},
    limit_spec::{LimitSpec, LIMIT_EXAMPLE},
};

pub async fn list(State(d): State<Arc<Daemon>>) -> ApiResult<Response> {
    let (rev, limits) = blocking(move || d.limits()).await?;
    Ok(with_etag(StatusCode::OK, rev, serde_json::json!({ "revision": rev, "limits": limits })))
}

pub async fn get(State(d): State<Arc<Daemon>>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let (rev, limits) = blocking(move || d.limits()).await?;
    match limits.into_iter().find(|l| l.id == id) {
        Some(l) => Ok(with_etag(StatusCode::OK, rev, serde_json::json!({ "revision": rev, "limit": l }))),
        None => Err(ApiError::not_found(format!("no limit with id {id}")).hint("GET /v1/limits lists the limits")),
    }
}

pub async fn add(
    State(d): State<Arc<Daemon>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let im = if_match(&headers)?;
    let limit = parsed_body(body, d.body_limit, LIMIT_EXAMPLE, |v| {
        LimitSpec::from_json(v).and_then(|s| s.to_limit().map_err(|e| e.to_string()))
    })?;
    let (rev, added) = blocking(move || d.add_limit(im.as_deref(), &limit)).await?;
    Ok(with_etag(StatusCode::CREATED, rev, serde_json::json!({ "revision": rev, "added": added })))
}

pub async fn delete(State(d): State<Arc<Daemon>>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Response> {
    let im = if_match(&headers)?;
    let id = parse_id(&id)?;
    let (rev, gone) = blocking(move || d.delete_limit(im.as_deref(), id)).await?;
    Ok(with_etag(StatusCode::OK, rev, serde_json::json!({ "revision": rev, "deleted": gone })))
}

fn parse_id(s: &str) -> ApiResult<u32> {
    let max = netray_firewall::limit::store::MAX_LIMITS;
    s.parse::<u32>().ok().filter(|n| (1..=max).contains(n)).ok_or_else(|| {
        ApiError::bad_request(format!("'{}' is not a limit id (an integer from 1 to {max})", short(s)))
            .hint("GET /v1/limits lists the ids")
    })
}
