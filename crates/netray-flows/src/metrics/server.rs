//! A small HTTP server for `/metrics` on its own thread (what `netray top
//! --metrics` runs), and the answer both it and the daemon give.

use std::{
    net::{SocketAddr, TcpListener},
    sync::Arc,
    thread::JoinHandle,
};

use axum::{
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};

use super::exposition::{Format, Scrape};

/// The HTTP answer to a scrape: the format the request's `Accept` header
/// asks for ([`Format::negotiate`]), with its Content-Type and `Vary: Accept`;
/// 500 with the error if encoding fails.
pub fn respond(headers: &HeaderMap, scrape: Scrape) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let vary = (header::VARY, HeaderValue::from_static("accept"));
    match scrape.encode(format) {
        Ok(text) => {
            ([(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type())), vary], text).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, [vary], format!("netray: encoding the metrics failed: {e}\n"))
            .into_response(),
    }
}

/// An HTTP server exposing `/metrics`, on its own thread; stopped when dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// The address it listens on (with the actual port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Listens on `addr` (binding here, so errors are reported at once) and
/// answers `/metrics` from a background thread with what `scrape` reads.
pub fn serve<F>(addr: SocketAddr, scrape: F) -> std::io::Result<MetricsServer>
where
    F: Fn() -> Scrape + Send + Sync + 'static,
{
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let scrape = Arc::new(scrape);
    let thread = std::thread::Builder::new().name("netray-metrics".into()).spawn(move || {
        runtime.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
            let metrics = move |headers: HeaderMap| {
                let scrape = Arc::clone(&scrape);
                // Reading the kernel's maps blocks briefly: fine on this
                // thread, which serves nothing else.
                async move { respond(&headers, scrape()) }
            };
            let app = axum::Router::new()
                .route("/metrics", axum::routing::get(metrics))
                .route("/", axum::routing::get(|| async { "netray: metrics at /metrics\n" }));
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
    })?;
    Ok(MetricsServer { addr: local, shutdown: Some(tx), thread: Some(thread) })
}
