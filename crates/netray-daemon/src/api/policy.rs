//! /v1/interfaces/{name}/policy: what the firewall does with received
//! packets no rule decides on one interface (`netray firewall policy`).

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use netray_firewall::Policy;

use super::{blocking, interfaces::checked_ifname, parsed_body};
use crate::{
    config::{json_kind, short},
    daemon::Daemon,
    error::{ApiError, ApiResult},
};

pub const EXAMPLE: &str = r#"{"in": "drop"}"#;

pub async fn get(State(d): State<Arc<Daemon>>, Path(name): Path<String>) -> ApiResult<Response> {
    checked_ifname(&name)?;
    let n = name.clone();
    let status = blocking(move || Ok(d.fw.status()?)).await?;
    match status.policies.into_iter().find(|p| p.interface == n) {
        Some(p) => Ok((StatusCode::OK, Json(serde_json::json!({ "interface": name, "in": p.policy_in }))).into_response()),
        None => Err(ApiError::not_found(format!("netray is not attached to {name}"))
            .hint("POST /v1/interfaces {\"name\": ...} attaches the firewall to an interface")),
    }
}

pub async fn put(
    State(d): State<Arc<Daemon>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    checked_ifname(&name)?;
    let policy = parsed_body(body, d.body_limit, EXAMPLE, parse)?;
    let n = name.clone();
    let noted = blocking(move || d.set_policy(&n, policy)).await?;
    Ok((StatusCode::OK, Json(serde_json::json!({ "interface": name, "in": policy, "connections_noted": noted }))).into_response())
}

/// `{"in": "drop"}` or `{"in": "pass"}`.
fn parse(v: &serde_json::Value) -> Result<Policy, String> {
    let obj = v.as_object().ok_or_else(|| format!("expected an object such as {EXAMPLE}, got {}", json_kind(v)))?;
    if let Some(k) = obj.keys().find(|k| *k != "in") {
        return Err(format!("unknown field '{}' (expected in: the policy applies to received packets)", short(k)));
    }
    match obj.get("in") {
        Some(serde_json::Value::String(s)) => s.parse::<Policy>().map_err(|e| format!("field 'in': {e}")),
        Some(v) => Err(format!("field 'in': expected \"drop\" or \"pass\", got {}", json_kind(v))),
        None => Err("field 'in' is required".into()),
    }
}
