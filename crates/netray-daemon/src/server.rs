//! The HTTP server: routes, the auth / accounting / JSON-error layer, and
//! running it (in the foreground for `netray daemon`, or on a thread of its
//! own for tests and benchmarks).

use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc},
    thread::JoinHandle,
};

use axum::{
    body::Body,
    extract::{DefaultBodyLimit, Request, State},
    http::{header, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};

use crate::{
    api,
    auth,
    daemon::{Daemon, Options},
    error::ApiError,
};

pub fn router(d: Arc<Daemon>) -> Router {
    let limit = d.body_limit;
    Router::new()
        .route("/v1/rules", get(api::rules::list).post(api::rules::add))
        .route("/v1/rules/{id}", get(api::rules::get).delete(api::rules::delete))
        .route("/v1/limits", get(api::limits::list).post(api::limits::add))
        .route("/v1/limits/{id}", get(api::limits::get).delete(api::limits::delete))
        .route("/v1/interfaces", get(api::interfaces::list).post(api::interfaces::attach))
        .route("/v1/interfaces/{name}", get(api::interfaces::get).delete(api::interfaces::detach))
        .route("/v1/interfaces/{name}/policy", get(api::policy::get).put(api::policy::put))
        .route("/v1/stats", get(api::stats::stats))
        .route("/v1/flows", get(api::stats::flows))
        .route("/v1/events/packets", get(api::events::packets))
        .route("/v1/events/exec", get(api::events::exec))
        .route("/v1/events/drops", get(api::events::drops))
        .route("/metrics", get(api::metrics::metrics))
        .route("/healthz", get(api::health::healthz))
        .route("/openapi.json", get(api::openapi::openapi))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(Arc::clone(&d), gate))
        .with_state(d)
}

/// Authentication (who needs the token: auth::token_needed), early refusal of oversized bodies,
/// request accounting, and JSON bodies for every error (also axum's own:
/// unknown route, wrong method, bad query).
async fn gate(State(d): State<Arc<Daemon>>, req: Request, next: Next) -> Response {
    d.counters.requests.fetch_add(1, Ordering::Relaxed);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let authorized = match auth::token_needed(req.method(), req.uri().path(), d.open_reads) {
        Some(why) => auth::check(req.headers(), &d.token, why),
        None => Ok(()),
    };
    let resp = if let Err(e) = authorized {
        discard_body(req, declared).await;
        e.into_response()
    } else if declared.is_some_and(|n| n > d.body_limit) {
        discard_body(req, declared).await;
        ApiError::too_large(d.body_limit).into_response()
    } else {
        next.run(req).await
    };
    let status = resp.status();
    if status.is_client_error() {
        d.counters.client_errors.fetch_add(1, Ordering::Relaxed);
    } else if status.is_server_error() {
        d.counters.server_errors.fetch_add(1, Ordering::Relaxed);
    }
    if status.as_u16() < 400 || is_json(&resp) {
        return resp;
    }
    // An error axum produced itself (plain text): make it JSON.
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let mut e = ApiError::new(status, if text.is_empty() { status.canonical_reason().unwrap_or("error").to_string() } else { text });
    e = match status {
        StatusCode::NOT_FOUND => e.hint("GET /openapi.json describes every endpoint"),
        StatusCode::METHOD_NOT_ALLOWED => e.hint("GET /openapi.json lists the methods of each endpoint"),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(d.body_limit),
        _ => e,
    };
    let mut out = e.into_response();
    for (k, v) in parts.headers.iter() {
        if k == header::ALLOW {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

/// Reads and forgets a refused request's body when it is small enough, so
/// that a client still sending it gets the answer rather than a reset
/// connection; larger ones are not read (the connection is closed).
async fn discard_body(req: Request, declared: Option<usize>) {
    const DRAIN_MAX: usize = 1 << 20;
    if declared.is_some_and(|n| n > 0 && n <= DRAIN_MAX) {
        let _ = axum::body::to_bytes(req.into_body(), DRAIN_MAX).await;
    }
}

fn is_json(resp: &Response<Body>) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// A daemon serving on a thread of its own; stopped on drop.
pub struct DaemonHandle {
    pub addr: SocketAddr,
    pub daemon: Arc<Daemon>,
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl DaemonHandle {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn stop(mut self) {
        self.shutdown_now();
    }

    fn shutdown_now(&mut self) {
        // Ending the event sources ends the streams, so the server can drain.
        self.daemon.hubs.stop_all();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
            self.daemon.finish_state();
        }
        self.daemon.flows_stop_all();
    }
}

impl Drop for DaemonHandle {
    fn drop(&mut self) {
        self.shutdown_now();
    }
}

/// Creates the daemon, reconciles the kernel with its desired state, binds
/// `listen` and serves from a background thread.
pub fn spawn(opts: Options, listen: SocketAddr) -> anyhow::Result<DaemonHandle> {
    let mut daemon = Daemon::new(opts)?;
    daemon.open_reads = listen.ip().is_loopback();
    let daemon = Arc::new(daemon);
    daemon.reconcile()?;
    let listener = std::net::TcpListener::bind(listen).map_err(|e| anyhow::anyhow!("listening on {listen}: {e}"))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let app = router(Arc::clone(&daemon));
    let thread = std::thread::Builder::new().name("netray-daemon".into()).spawn(move || {
        rt.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
            let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
                let _ = rx.wait_for(|&s| s).await;
            };
            let serve = axum::serve(listener, app).with_graceful_shutdown(stopped(rx.clone()));
            // Connections get a few seconds to finish once asked to stop.
            tokio::select! {
                _ = serve => {}
                _ = async { stopped(rx).await; tokio::time::sleep(std::time::Duration::from_secs(3)).await } => {}
            }
        });
        // Streams still open must not keep the runtime alive.
        rt.shutdown_timeout(std::time::Duration::from_millis(200));
    })?;
    Ok(DaemonHandle { addr, daemon, shutdown: Some(tx), thread: Some(thread) })
}

/// Runs in the foreground until SIGINT or SIGTERM. `on_listen` is told the
/// address once the socket is bound.
pub fn run(opts: Options, listen: SocketAddr, on_listen: impl FnOnce(SocketAddr, &Daemon)) -> anyhow::Result<()> {
    raise_fd_limit();
    let handle = spawn(opts, listen)?;
    on_listen(handle.addr, &handle.daemon);
    systemd_notify(&handle.daemon);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        Ok::<(), std::io::Error>(())
    })?;
    handle.stop();
    Ok(())
}

/// File descriptors the daemon asks for: the soft limit is raised towards the
/// hard one (what Go's runtime does too), since the default 1,024 is small for
/// a process holding BPF objects, connections and event rings.
const WANTED_FDS: u64 = 65_536;

fn raise_fd_limit() {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: r is a valid rlimit to fill, then to set.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < WANTED_FDS.min(r.rlim_max) {
            r.rlim_cur = WANTED_FDS.min(r.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Under systemd (Type=notify): READY=1 once serving, and with WatchdogSec a
/// thread that pings the watchdog only while /healthz's checks pass, so that
/// systemd restarts a daemon that has stopped being able to do its job.
fn systemd_notify(d: &Arc<Daemon>) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let Some(period) = sd_notify::watchdog_enabled() else { return };
    let d = Arc::clone(d);
    let _ = std::thread::Builder::new().name("netray-watchdog".into()).spawn(move || loop {
        let (_, problems) = api::health::check(&d);
        if problems.is_empty() {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        } else {
            eprintln!("netray daemon: unhealthy, not pinging systemd's watchdog: {}", problems.join("; "));
        }
        std::thread::sleep(period / 2);
    });
}
