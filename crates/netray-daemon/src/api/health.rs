//! /healthz: whether the daemon can do its job, checked at each call — the
//! pins and the firewall's maps readable, file descriptors well below the
//! limit, every event source's reader alive, the state file being written.
//! 200 with each check when all pass; 503 naming what is wrong otherwise.
//! The same checks feed systemd's watchdog (see server.rs).

use std::sync::Arc;

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

use crate::daemon::Daemon;

/// Unhealthy once fewer than this share of the fd limit (or 64) is left.
const FD_MARGIN_DIVISOR: u64 = 10;

/// The checks, and the problems found (empty when healthy).
pub fn check(d: &Daemon) -> (Value, Vec<String>) {
    let mut problems = Vec::new();

    let root = d.pin.root();
    let pins = match d.firewall_status() {
        Ok(_) if !root.join("fw").exists() => {
            let e = format!("the pin directory {} has no firewall state (wiped?): restart the daemon", root.display());
            problems.push(e.clone());
            json!({"ok": false, "dir": root, "error": e})
        }
        Ok((ifaces, table)) => json!({"ok": true, "dir": root, "interfaces": ifaces.len(), "rules": table.rules}),
        Err(e) => {
            let e = format!("the pinned firewall state under {} cannot be read: {}", root.display(), e.body.error);
            problems.push(e.clone());
            json!({"ok": false, "dir": root, "error": e})
        }
    };

    let (open, limit) = (open_fds(), fd_limit());
    let margin = (limit / FD_MARGIN_DIVISOR).max(64);
    let fds_ok = open.is_some_and(|n| n + margin <= limit);
    if !fds_ok {
        problems.push(format!(
            "{} of {limit} file descriptors are open (fewer than {margin} left): raise LimitNOFILE or look for a leak",
            open.map_or("?".to_string(), |n| n.to_string())
        ));
    }
    let fds = json!({"ok": fds_ok, "open": open, "limit": limit});

    let (running, stalled) = d.hubs.stalled();
    if !stalled.is_empty() {
        problems.push(format!("event sources stopped reading: {}", stalled.join(", ")));
    }
    let sources = json!({"ok": stalled.is_empty(), "running": running, "stalled": stalled});

    let persist = d.persist_status();
    if let Some(e) = &persist.error {
        problems.push(e.clone());
    }
    let state = json!({"ok": persist.error.is_none(), "saved_revision": persist.saved_revision,
        "unsaved_revisions": persist.unsaved_revisions, "error": persist.error});

    (json!({"pins": pins, "fds": fds, "event_sources": sources, "state_file": state}), problems)
}

pub async fn healthz(State(d): State<Arc<Daemon>>) -> Response {
    let d2 = Arc::clone(&d);
    let Ok((checks, problems)) = tokio::task::spawn_blocking(move || check(&d2)).await else {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unhealthy", "error": "the health check itself failed"})))
            .into_response();
    };
    let mut body = json!({
        "status": if problems.is_empty() { "ok" } else { "unhealthy" },
        "checks": checks,
        "revision": d.revision(),
        "uptime_seconds": d.started.elapsed().as_secs(),
        "flows": d.flows.available(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    if problems.is_empty() {
        return (StatusCode::OK, Json(body)).into_response();
    }
    body["error"] = problems.join("; ").into();
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// File descriptors this process has open.
pub fn open_fds() -> Option<u64> {
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64)
}

/// The soft limit on open files.
pub fn fd_limit() -> u64 {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: r is a valid rlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return 1024;
    }
    r.rlim_cur
}
