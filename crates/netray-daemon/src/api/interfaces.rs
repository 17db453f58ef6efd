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
    config::{bounds, check_ifname, short, InterfaceSpec, INTERFACE_EXAMPLE},
    daemon::Daemon,
    error::{ApiError, ApiResult},
};

pub const EXAMPLE: &str = INTERFACE_EXAMPLE;

pub async fn list(State(d): State<Arc<Daemon>>) -> ApiResult<Response> {
    let (rev, list) = blocking(move || d.interfaces()).await?;
    Ok(with_etag(StatusCode::OK, rev, serde_json::json!({ "revision": rev, "interfaces": list })))
}

pub async fn get(State(d): State<Arc<Daemon>>, Path(name): Path<String>) -> ApiResult<Response> {
    checked_ifname(&name)?;
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
    checked_ifname(&name)?;
    let im = if_match(&headers)?;
    let n = name.clone();
    let rev = blocking(move || d.detach(im.as_deref(), &n)).await?;
    Ok(with_etag(StatusCode::OK, rev, serde_json::json!({ "revision": rev, "detached": name })))
}

/// The `{name}` of a path, checked before anything else: a revision
/// conflict must not hide that the name itself is impossible. What plainly
/// breaks the documented schema is a 400; a name the kernel would refuse
/// otherwise (over 15 bytes in UTF-8, a Unicode space, '.') names no
/// interface: 404. (JSON Schema tools differ on which Unicode characters the
/// pattern's \s covers; both answers suit them all.)
pub fn checked_ifname(name: &str) -> ApiResult<()> {
    let max = bounds::IFNAME_MAX_LEN;
    let problem = if name.is_empty() || name.chars().count() > max {
        format!("1-{max} characters")
    } else if name.chars().any(|c| matches!(c, '/' | ':' | ' ' | '\t' | '\n' | '\r' | '\u{b}' | '\u{c}')) {
        "no '/', ':' or spaces".to_string()
    } else if let Err(problem) = check_ifname(name) {
        return Err(ApiError::not_found(format!("no interface named '{}' ({problem})", short(name))));
    } else {
        return Ok(());
    };
    Err(ApiError::bad_request(format!("'{}' is not an interface name: {problem}", short(name)))
        .hint("GET /v1/interfaces lists the interface names"))
}
