//! One error type for the API: every failure becomes a JSON body
//! `{"error": "...", "hint": "..."}` with a 4xx/5xx status naming the problem.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    /// Sent as the `ETag` header (412 answers say the current revision).
    pub etag: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError { status, body: ErrorBody { error: error.into(), hint: None }, etag: None }
    }
    pub fn hint(mut self, hint: impl Into<String>) -> ApiError {
        self.body.hint = Some(hint.into());
        self
    }
    pub fn with_etag(mut self, revision: u64) -> ApiError {
        self.etag = Some(revision);
        self
    }
    pub fn bad_request(e: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, e)
    }
    pub fn unauthorized(e: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, e)
    }
    pub fn not_found(e: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, e)
    }
    pub fn conflict(e: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, e)
    }
    pub fn unprocessable(e: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e)
    }
    pub fn internal(e: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e)
    }
    pub fn not_implemented(e: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_IMPLEMENTED, e)
    }
    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body larger than {limit} bytes"))
            .hint("send smaller requests (e.g. fewer rules per POST)")
    }

    /// A loader/firewall error, with the status that fits it. Every variant
    /// is named, so a new one needs a decision here.
    pub fn from_core(e: netray_core::Error) -> ApiError {
        use netray_core::Error as E;
        match &e {
            E::NoSuchInterface(_) => ApiError::not_found(e.to_string()).hint("GET /v1/interfaces lists the interfaces"),
            E::NotAttached(_) | E::NoSuchRule(_) | E::NoSuchRuleId(_) => ApiError::not_found(e.to_string()),
            E::RuleExists { .. } => ApiError::conflict(e.to_string()).hint("GET /v1/rules lists the rules"),
            E::PolicyNotAttached(_) => ApiError::conflict(e.to_string())
                .hint("POST /v1/interfaces/{name}/attach attaches the firewall there"),
            E::MonitorBusy { .. } => ApiError::conflict(e.to_string())
                .hint("one monitor per interface: stop the other `netray monitor` first"),
            E::CaptureBusy { .. } => ApiError::conflict(e.to_string())
                .hint("a `netray dump` holds the interface's XDP capture slot: stop it first"),
            E::NotBpffs(_)
            | E::Syscall { .. }
            | E::KernelRefused(_)
            | E::NativeXdpRefused { .. }
            | E::ForeignXdp { .. }
            | E::CaptureInFront { .. }
            | E::DetachedMeanwhile(_)
            | E::DispatcherVanished(_)
            | E::PlainMapPin(_)
            | E::WrongValueSize { .. }
            | E::NotAFlowTable { .. }
            | E::TableFormat { .. }
            | E::NoRuleHits(_)
            | E::RuleTwice(_)
            | E::TooManyRules(_)
            | E::L4TableFull { .. }
            | E::TablesFull(_)
            | E::BadRequest(_) => ApiError::unprocessable(e.to_string()),
            E::NotRoot
            | E::BpfUnavailable(_)
            | E::BpffsMissing(..)
            | E::Io { .. }
            | E::Bpf { .. }
            | E::NoTableOwner { .. }
            | E::Internal(_) => ApiError::internal(e.to_string()),
        }
    }
}

impl From<netray_core::Error> for ApiError {
    fn from(e: netray_core::Error) -> ApiError {
        ApiError::from_core(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body)).into_response();
        if let Some(rev) = self.etag {
            if let Ok(v) = HeaderValue::from_str(&format!("\"{rev}\"")) {
                resp.headers_mut().insert(header::ETAG, v);
            }
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use std::io;

    use netray_core::Error as E;

    use super::*;

    fn answer(e: E) -> (StatusCode, String, Option<String>) {
        let a = ApiError::from_core(e);
        (a.status, a.body.error, a.body.hint)
    }

    #[test]
    fn core_errors_get_the_status_of_their_kind_and_keep_their_message() {
        let (status, error, hint) = answer(E::RuleExists { id: 2, rule: "10.0.0.0/8".into() });
        assert_eq!(
            (status, error.as_str(), hint.as_deref()),
            (StatusCode::CONFLICT, "rule already exists as id 2: 10.0.0.0/8", Some("GET /v1/rules lists the rules"))
        );
        let (status, error, _) = answer(E::NoSuchRuleId(9));
        assert_eq!((status, error.as_str()), (StatusCode::NOT_FOUND, "no rule with id 9 — `netray deny list` shows the rules"));
        assert_eq!(answer(E::NoSuchRule("10.0.0.0/8".into())).0, StatusCode::NOT_FOUND);
        assert_eq!(answer(E::NotAttached("veth0".into())).0, StatusCode::NOT_FOUND);
        let (status, _, hint) = answer(E::NoSuchInterface("nope0".into()));
        assert_eq!((status, hint.as_deref()), (StatusCode::NOT_FOUND, Some("GET /v1/interfaces lists the interfaces")));
        let (status, _, hint) = answer(E::MonitorBusy { pid: 7, iface: "veth0".into() });
        assert_eq!(
            (status, hint.as_deref()),
            (StatusCode::CONFLICT, Some("one monitor per interface: stop the other `netray monitor` first"))
        );
        assert_eq!(answer(E::CaptureBusy { what: "is capturing at XDP on veth0".into() }).0, StatusCode::CONFLICT);
        assert_eq!(answer(E::RuleTwice("10.0.0.0/8".into())).0, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(answer(E::TooManyRules(4)).0, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(answer(E::BadRequest("no hook".into())).0, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(answer(E::io("/sys/fs/bpf/x")(io::Error::from(io::ErrorKind::NotFound))).0, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(answer(E::NotRoot).0, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
