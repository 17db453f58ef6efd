//! Server-Sent Event streams of packet events (`/v1/events/packets`), exec
//! events (`/v1/events/exec`) and dropped packets (`/v1/events/drops`).
//!
//! One reader thread per source (a monitor session per interface, one exec
//! tracer) fans events out to the clients, each through its own bounded
//! queue: a client that reads too slowly (or has vanished) loses events
//! instead of stalling anyone. Lost events are counted per client, reported
//! in its stream as an `event: dropped`, and summed in /v1/stats. A source
//! stops when its last client goes.
//!
//! The hubs are [`crate::hub`]; the readers that feed them are [`sources`];
//! a client's stream is [`sse`]. Here: the two endpoints.

mod sources;
mod sse;

use std::{collections::HashMap, sync::Arc};

use axum::{
    extract::{Query, State},
    response::Response,
};

use crate::{
    daemon::Daemon,
    error::{ApiError, ApiResult},
    hub::ExecFilter,
};
use sources::FILTERED_SNAPLEN;
use sse::sse;

/// Longest filter= accepted.
pub(crate) const MAX_FILTER_LEN: usize = 4096;

pub async fn packets(State(d): State<Arc<Daemon>>, Query(q): Query<HashMap<String, String>>) -> ApiResult<Response> {
    for k in q.keys() {
        if k != "interface" && k != "filter" {
            return Err(ApiError::bad_request(format!("unknown query parameter '{}'", crate::config::short(k)))
                .hint("/v1/events/packets takes interface=NAME and filter=EXPR"));
        }
    }
    let Some(ifname) = q.get("interface").cloned() else {
        return Err(ApiError::bad_request("missing query parameter 'interface'")
            .hint("GET /v1/events/packets?interface=eth1"));
    };
    if q.get("filter").is_some_and(|f| f.len() > MAX_FILTER_LEN) {
        return Err(ApiError::bad_request(format!("query parameter 'filter': longer than {MAX_FILTER_LEN} bytes")));
    }
    let filter = q.get("filter").map(|f| f.trim().to_string()).filter(|f| !f.is_empty());
    if let Some(f) = &filter {
        netray_pcapfilter::compile(f, FILTERED_SNAPLEN).map_err(|e| {
            ApiError::bad_request(format!("query parameter 'filter': '{}': {e}", crate::config::short(f)))
                .hint("pcap-filter syntax, e.g. filter=tcp%20port%2080")
        })?;
    }
    if netray_core::Interface::resolve(&ifname).is_err() {
        return Err(ApiError::not_found(format!("no interface named '{ifname}'"))
            .hint("GET /v1/interfaces lists the interfaces netray is attached to"));
    }
    let d2 = Arc::clone(&d);
    let (name, expr) = (ifname.clone(), filter.clone());
    let (rx, dropped) = tokio::task::spawn_blocking(move || match expr {
        Some(f) => sources::subscribe_filtered(&d2, &name, &f),
        None => sources::subscribe_packets(&d2, &name),
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    let ready = serde_json::json!({"stream": "packets", "interface": ifname, "filter": filter, "queue": d.sse_queue});
    Ok(sse("packet", ready, rx, dropped))
}

/// Longest comm= (the kernel's TASK_COMM_LEN less its NUL).
pub(crate) const COMM_MAX_LEN: usize = 15;

pub async fn exec(State(d): State<Arc<Daemon>>, Query(q): Query<HashMap<String, String>>) -> ApiResult<Response> {
    let mut f = ExecFilter::default();
    for (k, v) in &q {
        match k.as_str() {
            "comm" if v.is_empty() || v.len() > COMM_MAX_LEN => {
                return Err(ApiError::bad_request(format!(
                    "query parameter 'comm': '{}' is not a command name (1-{COMM_MAX_LEN} bytes, as the kernel keeps it)",
                    crate::config::short(v)
                )))
            }
            "comm" => f.comm = Some(v.clone()),
            "pid" => {
                f.pid = Some(v.parse::<u32>().ok().filter(|&p| p > 0).ok_or_else(|| {
                    ApiError::bad_request(format!("query parameter 'pid': '{}' is not a process id (1-{})", crate::config::short(v), u32::MAX))
                })?)
            }
            "failed" => {
                f.failed_only = match v.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(ApiError::bad_request(format!("query parameter 'failed': '{}' is not true or false", crate::config::short(v)))),
                }
            }
            _ => {
                return Err(ApiError::bad_request(format!("unknown query parameter '{}'", crate::config::short(k)))
                    .hint("the exec stream takes comm=, pid= and failed="))
            }
        }
    }
    let d2 = Arc::clone(&d);
    let (rx, dropped) = tokio::task::spawn_blocking(move || sources::subscribe_exec(&d2, f))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(sse("exec", serde_json::json!({"stream": "exec", "queue": d.sse_queue}), rx, dropped))
}


pub async fn drops(State(d): State<Arc<Daemon>>, Query(q): Query<HashMap<String, String>>) -> ApiResult<Response> {
    for k in q.keys() {
        if k != "interface" {
            return Err(ApiError::bad_request(format!("unknown query parameter '{}'", crate::config::short(k)))
                .hint("/v1/events/drops takes interface=NAME (or nothing: every interface)"));
        }
    }
    let ifname = q.get("interface").cloned().unwrap_or_default();
    if !ifname.is_empty() && netray_core::Interface::resolve(&ifname).is_err() {
        return Err(ApiError::not_found(format!("no interface named '{}'", crate::config::short(&ifname)))
            .hint("GET /v1/interfaces lists the interfaces netray is attached to"));
    }
    let d2 = Arc::clone(&d);
    let name = ifname.clone();
    let (rx, dropped) = tokio::task::spawn_blocking(move || sources::subscribe_drops(&d2, &name))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    let iface = (!ifname.is_empty()).then_some(ifname);
    Ok(sse("drop", serde_json::json!({"stream": "drops", "interface": iface, "queue": d.sse_queue}), rx, dropped))
}
