//! /v1/stats (per interface, per rule, event streams, API) and /v1/flows.

use std::{collections::HashMap, sync::{atomic::Ordering, Arc}};

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::Response,
    Json,
};

use super::{blocking, with_etag};

use crate::{config::short, daemon::Daemon, error::{ApiError, ApiResult}};

pub async fn stats(State(d): State<Arc<Daemon>>) -> ApiResult<Response> {
    let (rev, body) = blocking(move || {
        let (rev, rules) = d.rules()?;
        let (interfaces, table) = d.firewall_status()?;
        let c = &d.counters;
        Ok((rev, serde_json::json!({
            "revision": rev,
            "interfaces": interfaces,
            "rules": rules,
            "table": table,
            "events": d.hubs.stats(),
            "api": {
                "requests": c.requests.load(Ordering::Relaxed),
                "client_errors": c.client_errors.load(Ordering::Relaxed),
                "server_errors": c.server_errors.load(Ordering::Relaxed),
            },
            "uptime_seconds": d.started.elapsed().as_secs(),
        })))
    })
    .await?;
    Ok(with_etag(StatusCode::OK, rev, body))
}

/// Most flows /v1/flows lists per interface.
pub const FLOWS_MAX_LIMIT: usize = 10_000;

pub async fn flows(State(d): State<Arc<Daemon>>, Query(q): Query<HashMap<String, String>>) -> ApiResult<Response> {
    let mut interface = None;
    let mut sort = "bytes".to_string();
    let mut limit = None;
    for (k, v) in q {
        match k.as_str() {
            // A name the kernel would not take has no flows either: 404.
            "interface" => interface = Some(v),
            "sort" if ["bytes", "packets", "rate"].contains(&v.as_str()) => sort = v,
            "sort" => {
                return Err(ApiError::bad_request(format!("query parameter 'sort': '{}' is not bytes, packets or rate",
                    short(&v))))
            }
            "limit" => {
                limit = Some(v.parse::<usize>().ok().filter(|&n| (1..=FLOWS_MAX_LIMIT).contains(&n)).ok_or_else(|| {
                    ApiError::bad_request(format!("query parameter 'limit': '{}' is not an integer from 1 to {FLOWS_MAX_LIMIT}",
                        short(&v)))
                })?)
            }
            _ => return Err(ApiError::bad_request(format!("unknown query parameter '{}'", short(&k)))
                .hint("/v1/flows takes interface=, sort=bytes|packets|rate and limit=")),
        }
    }
    let body = blocking(move || d.flows.top(interface.as_deref(), &sort, limit)).await?;
    Ok(axum::response::IntoResponse::into_response(Json(body)))
}
