//! /v1/interfaces: list, attach, detach, status.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};

use super::{blocking, if_match, parsed_body, with_etag};
use crate::{
    config::{InterfaceSpec, INTERFACE_EXAMPLE},
    daemon::Daemon,
    error::ApiResult,
};

pub const EXAMPLE: &str = INTERFACE_EXAMPLE;

pub async fn list(State(d): State<Arc<Daemon>>) -> ApiResult<Response> {
    let (rev, list) = blocking(move || d.interfaces()).await?;
    Ok(with_etag(StatusCode::OK, rev, serde_json::json!({ "revision": rev, "interfaces": list })))
}

pub async fn get(State(d): State<Arc<Daemon>>, Path(name): Path<String>) -> ApiResult<Response> {
    let (rev, view) = blocking(move || d.interface(&name)).await?;
    Ok(with_etag(StatusCode::OK, rev, serde_json::json!({ "revision": rev, "interface": view })))
}

pub async fn attach(
    State(d): State<Arc<Daemon>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let im = if_match(&headers)?;
    let spec = parsed_body(body, d.body_limit, EXAMPLE, InterfaceSpec::from_json)?;
    let (rev, view, attached_now) = blocking(move || d.attach(im.as_deref(), &spec)).await?;
    let status = if attached_now { StatusCode::CREATED } else { StatusCode::OK };
    Ok(with_etag(status, rev, serde_json::json!({ "revision": rev, "attached_now": attached_now, "interface": view })))
}

pub async fn detach(State(d): State<Arc<Daemon>>, headers: HeaderMap, Path(name): Path<String>) -> ApiResult<Response> {
    let im = if_match(&headers)?;
    let n = name.clone();
    let rev = blocking(move || d.detach(im.as_deref(), &n)).await?;
    Ok(with_etag(StatusCode::OK, rev, serde_json::json!({ "revision": rev, "detached": name })))
}
