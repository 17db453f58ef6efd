//! The HTTP API under /v1, plus /metrics, /healthz and /openapi.json.

pub mod events;
pub mod health;
pub mod interfaces;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod policy;
pub mod rules;
pub mod stats;

use axum::{
    body::Bytes,
    extract::rejection::BytesRejection,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::{de::DeserializeOwned, Serialize};

use crate::error::{ApiError, ApiResult};

/// Runs blocking work (bpf() calls, the pin lock, fsync) off the async threads.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> ApiResult<T> + Send + 'static) -> ApiResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(ApiError::internal(format!("internal error: {e}"))
            .hint("this is a bug in netray: please report it with the daemon's log")),
    }
}

/// Parses a JSON request body, naming the problem when it is not valid.
pub fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>, limit: usize, example: &str) -> ApiResult<T> {
    let bytes = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(ApiError::too_large(limit)),
        Err(e) => return Err(ApiError::bad_request(format!("could not read the request body: {}", e.body_text()))),
    };
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the request body is empty; a JSON object is expected")
            .hint(format!("example: {example}")));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        use serde_json::error::Category;
        let status = match e.classify() {
            Category::Data => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        let what = if status == StatusCode::BAD_REQUEST { "malformed JSON" } else { "invalid request" };
        ApiError::new(status, format!("{what}: {e}")).hint(format!("example: {example}"))
    })
}

/// A JSON request body checked by `parse`: what [`json_body`] refuses, or a 422 with
/// `parse`'s complaint and the example. POST /v1/interfaces, /v1/rules and /v1/limits take
/// their bodies this way.
pub fn parsed_body<T, E: Into<String>>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
    example: &str,
    parse: impl FnOnce(&serde_json::Value) -> Result<T, E>,
) -> ApiResult<T> {
    let posted: serde_json::Value = json_body(body, limit, example)?;
    parse(&posted).map_err(|e| ApiError::unprocessable(e).hint(format!("example: {example}")))
}

/// Longest revision accepted in `If-Match` (digits): u64 holds every one.
pub const IF_MATCH_MAX_DIGITS: usize = 19;
/// What `If-Match` may be, as the OpenAPI document states it.
pub const IF_MATCH_PATTERN: &str = r#"^(\*|(W/)?"[0-9]{1,19}"|[0-9]{1,19})$"#;

/// The `If-Match` header, if any: an ETag this API gave (`"12"`, also
/// `W/"12"` or a bare `12`) or `*`. Anything else is a 400, answered before
/// anything is looked at. Returned as the ETag, quoted (or `*`).
pub fn if_match(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let mut all = headers.get_all(header::IF_MATCH).iter();
    let Some(value) = all.next() else { return Ok(None) };
    let hint = "send the ETag of a previous response, e.g. If-Match: \"12\", or * (any revision)";
    if all.next().is_some() {
        return Err(ApiError::bad_request("more than one If-Match header: send one ETag").hint(hint));
    }
    let text = value.to_str().unwrap_or("").trim();
    if text == "*" {
        return Ok(Some(text.to_string()));
    }
    let digits = match text.strip_prefix("W/\"").or_else(|| text.strip_prefix('"')) {
        Some(quoted) => quoted.strip_suffix('"'),
        None => Some(text),
    };
    match digits {
        Some(d) if !d.is_empty() && d.len() <= IF_MATCH_MAX_DIGITS && d.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(Some(format!("\"{d}\"")))
        }
        _ => {
            let shown: String = String::from_utf8_lossy(value.as_bytes()).chars().take(40).collect();
            Err(ApiError::bad_request(format!("If-Match '{shown}' is not a revision (an ETag such as \"12\", or *)")).hint(hint))
        }
    }
}

/// A JSON answer carrying the revision as its ETag.
pub fn with_etag(status: StatusCode, revision: u64, body: impl Serialize) -> Response {
    let mut resp = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{revision}\"")) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}
