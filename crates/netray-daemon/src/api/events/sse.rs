//! One client's Server-Sent Event stream: a `ready` event, then the events
//! of its queue, with a `dropped` event whenever some were dropped.

use std::{
    collections::VecDeque,
    convert::Infallible,
    sync::{atomic::{AtomicU64, Ordering}, Arc},
    time::Duration,
};

use axum::response::{
    sse::{Event, KeepAlive, Sse},
    IntoResponse, Response,
};
use tokio::sync::mpsc;

use crate::hub::Msg;

/// The SSE stream of one client: a `ready` event, then its events, with a
/// `dropped` event before the next one whenever some were dropped.
pub(super) fn sse(kind: &'static str, ready: serde_json::Value, rx: mpsc::Receiver<Msg>, dropped: Arc<AtomicU64>) -> Response {
    struct St {
        rx: mpsc::Receiver<Msg>,
        dropped: Arc<AtomicU64>,
        total: u64,
        pending: VecDeque<Event>,
        done: bool,
    }
    let mut pending = VecDeque::new();
    pending.push_back(Event::default().event("ready").data(ready.to_string()));
    let st = St { rx, dropped, total: 0, pending, done: false };
    let stream = futures_util::stream::unfold(st, move |mut st| async move {
        loop {
            if let Some(ev) = st.pending.pop_front() {
                return Some((Ok::<Event, Infallible>(ev), st));
            }
            if st.done {
                return None;
            }
            let msg = st.rx.recv().await;
            let n = st.dropped.swap(0, Ordering::Relaxed);
            if n > 0 {
                st.total += n;
                let body = serde_json::json!({"dropped": n, "dropped_total": st.total,
                    "reason": "this client read too slowly; its queue was full"});
                st.pending.push_back(Event::default().event("dropped").data(body.to_string()));
            }
            match msg {
                Some(Msg::Event(json)) => st.pending.push_back(Event::default().event(kind).data(&*json)),
                Some(Msg::Error(e)) => {
                    st.pending.push_back(Event::default().event("error").data(serde_json::json!({"error": e}).to_string()));
                    st.done = true;
                }
                None => st.done = true,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}
