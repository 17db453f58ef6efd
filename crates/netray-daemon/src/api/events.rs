//! Server-Sent Event streams of packet events (`/v1/events/packets`) and exec
//! events (`/v1/events/exec`).
//!
//! One reader thread per source (a monitor session per interface, one exec
//! tracer) fans events out to the clients, each through its own bounded
//! queue: a client that reads too slowly (or has vanished) loses events
//! instead of stalling anyone. Lost events are counted per client, reported
//! in its stream as an `event: dropped`, and summed in /v1/stats. A source
//! stops when its last client goes.

use std::{
    collections::{HashMap, VecDeque},
    convert::Infallible,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc as std_mpsc, Arc, Mutex,
    },
    time::Duration,
};

use axum::{
    extract::{Query, State},
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::{
    daemon::Daemon,
    error::{ApiError, ApiResult},
};

/// What travels to a client.
#[derive(Debug, Clone)]
enum Msg {
    Event(Arc<str>),
    /// The source failed; the stream ends after this.
    Error(String),
}

/// Which exec events a client wants.
#[derive(Debug, Clone, Default)]
struct ExecFilter {
    comm: Option<String>,
    pid: Option<u32>,
    failed_only: bool,
}

struct Subscriber {
    tx: mpsc::Sender<Msg>,
    dropped: Arc<AtomicU64>,
    filter: ExecFilter,
}

/// One source and its clients.
#[derive(Default)]
pub struct Hub {
    subs: Mutex<Vec<Subscriber>>,
    stop: AtomicBool,
    delivered: AtomicU64,
    dropped: AtomicU64,
    /// Records the kernel could not write (ring full), since the source started.
    kernel_lost: AtomicU64,
    /// When the reader last went round its loop (ms since the Unix epoch):
    /// /healthz calls a source stalled when this gets old.
    beat_ms: AtomicU64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A reader that has not gone round its loop (at most ~100 ms a turn) for
/// this long is stalled.
const STALLED_AFTER_MS: u64 = 5_000;

#[derive(Debug, Clone, Serialize)]
pub struct HubStats {
    pub source: String,
    pub clients: usize,
    pub delivered: u64,
    pub dropped: u64,
    pub kernel_lost: u64,
}

impl Hub {
    fn stats(&self, source: &str) -> HubStats {
        HubStats {
            source: source.to_string(),
            clients: self.subs.lock().unwrap_or_else(|e| e.into_inner()).len(),
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            kernel_lost: self.kernel_lost.load(Ordering::Relaxed),
        }
    }

    /// Hands `msg` to every client that wants it; full queues drop it.
    fn broadcast(&self, msg: &Msg, total_dropped: &AtomicU64, wants: impl Fn(&ExecFilter) -> bool) {
        let mut subs = self.subs.lock().unwrap_or_else(|e| e.into_inner());
        subs.retain(|s| {
            if !wants(&s.filter) {
                return !s.tx.is_closed();
            }
            match s.tx.try_send(msg.clone()) {
                Ok(()) => {
                    self.delivered.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.dropped.fetch_add(1, Ordering::Relaxed);
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    total_dropped.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    fn fail(&self, err: String) {
        let subs = std::mem::take(&mut *self.subs.lock().unwrap_or_else(|e| e.into_inner()));
        for s in subs {
            let _ = s.tx.try_send(Msg::Error(err.clone()));
        }
    }
}

/// Every event source of the daemon.
pub struct Hubs {
    queue: usize,
    packets: Mutex<HashMap<String, Arc<Hub>>>,
    /// Packet streams with a pcap-filter expression, by interface: a capture
    /// at XDP with the filter run in the kernel. One filter per interface at
    /// a time (one capture program can sit in front of XDP).
    filtered: Mutex<HashMap<String, (String, Arc<Hub>)>>,
    exec: Mutex<Option<Arc<Hub>>>,
    pub dropped_total: AtomicU64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventStats {
    /// Events queued per client before newer ones are dropped.
    pub queue_per_client: usize,
    pub clients: usize,
    /// Events dropped because a client's queue was full, all streams.
    pub dropped_total: u64,
    pub packet_streams: Vec<HubStats>,
    pub exec_stream: Option<HubStats>,
}

impl Hubs {
    pub fn new(queue: usize) -> Hubs {
        Hubs {
            queue,
            packets: Mutex::default(),
            filtered: Mutex::default(),
            exec: Mutex::default(),
            dropped_total: AtomicU64::new(0),
        }
    }

    /// The sources whose reader stopped going round its loop, by name.
    pub fn stalled(&self) -> (usize, Vec<String>) {
        let now = now_ms();
        let mut all: Vec<(String, Arc<Hub>)> = Vec::new();
        all.extend(self.packets.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, h)| (k.clone(), Arc::clone(h))));
        all.extend(
            self.filtered.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, (f, h))| (format!("{k} filter={f}"), Arc::clone(h))),
        );
        all.extend(self.exec.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|h| ("exec".to_string(), Arc::clone(h))));
        let stalled = all
            .iter()
            .filter(|(_, h)| {
                let beat = h.beat_ms.load(Ordering::Relaxed);
                beat != 0 && now.saturating_sub(beat) > STALLED_AFTER_MS
            })
            .map(|(name, _)| name.clone())
            .collect();
        (all.len(), stalled)
    }

    pub fn stats(&self) -> EventStats {
        let packet_streams: Vec<HubStats> = {
            let m = self.packets.lock().unwrap_or_else(|e| e.into_inner());
            let mut v: Vec<HubStats> = m.iter().map(|(k, h)| h.stats(k)).collect();
            let f = self.filtered.lock().unwrap_or_else(|e| e.into_inner());
            v.extend(f.iter().map(|(k, (filter, h))| h.stats(&format!("{k} filter={filter}"))));
            v.sort_by(|a, b| a.source.cmp(&b.source));
            v
        };
        let exec_stream = self.exec.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|h| h.stats("exec"));
        EventStats {
            queue_per_client: self.queue,
            clients: packet_streams.iter().map(|h| h.clients).sum::<usize>()
                + exec_stream.as_ref().map_or(0, |h| h.clients),
            dropped_total: self.dropped_total.load(Ordering::Relaxed),
            packet_streams,
            exec_stream,
        }
    }

    fn new_sub(&self, filter: ExecFilter) -> (Subscriber, mpsc::Receiver<Msg>, Arc<AtomicU64>) {
        let (tx, rx) = mpsc::channel(self.queue);
        let dropped = Arc::new(AtomicU64::new(0));
        (Subscriber { tx, dropped: Arc::clone(&dropped), filter }, rx, dropped)
    }

    /// Joins (or starts) the monitor of `ifname`. Blocks while a new
    /// monitor session starts, to report its failure to the caller.
    fn subscribe_packets(d: &Arc<Daemon>, ifname: &str) -> ApiResult<(mpsc::Receiver<Msg>, Arc<AtomicU64>)> {
        let hubs = &d.hubs;
        let mut map = hubs.packets.lock().unwrap_or_else(|e| e.into_inner());
        let (sub, rx, dropped) = hubs.new_sub(ExecFilter::default());
        if let Some(hub) = map.get(ifname) {
            hub.subs.lock().unwrap_or_else(|e| e.into_inner()).push(sub);
            return Ok((rx, dropped));
        }
        let hub = Arc::new(Hub::default());
        hub.subs.lock().unwrap_or_else(|e| e.into_inner()).push(sub);
        let (d2, hub2, name) = (Arc::clone(d), Arc::clone(&hub), ifname.to_string());
        match start_source(format!("sse-{ifname}"), "monitor", move |ready| packet_reader(d2, hub2, name, ready))? {
            Ok(()) => {
                map.insert(ifname.to_string(), hub);
                Ok((rx, dropped))
            }
            Err(netray_core::Error::Refused(m)) if m.contains("another monitor") => {
                Err(ApiError::conflict(m).hint("one monitor per interface: stop the other `netray monitor` first"))
            }
            Err(e) => Err(ApiError::from_core(e)),
        }
    }

    /// Joins (or starts) the filtered capture of `ifname`; a different filter
    /// already running there is a conflict.
    fn subscribe_filtered(
        d: &Arc<Daemon>,
        ifname: &str,
        filter: &str,
    ) -> ApiResult<(mpsc::Receiver<Msg>, Arc<AtomicU64>)> {
        let hubs = &d.hubs;
        let mut map = hubs.filtered.lock().unwrap_or_else(|e| e.into_inner());
        let (sub, rx, dropped) = hubs.new_sub(ExecFilter::default());
        if let Some((running, hub)) = map.get(ifname) {
            if running != filter {
                return Err(ApiError::conflict(format!(
                    "a packet stream with another filter ('{running}') is open on {ifname}"
                ))
                .hint("one in-kernel filter per interface at a time: use the same filter=, or none"));
            }
            hub.subs.lock().unwrap_or_else(|e| e.into_inner()).push(sub);
            return Ok((rx, dropped));
        }
        let hub = Arc::new(Hub::default());
        hub.subs.lock().unwrap_or_else(|e| e.into_inner()).push(sub);
        let (d2, hub2, name, expr) = (Arc::clone(d), Arc::clone(&hub), ifname.to_string(), filter.to_string());
        let reader = move |ready| filtered_reader(d2, hub2, name, expr, ready);
        match start_source(format!("sse-f-{ifname}"), "capture", reader)? {
            Ok(()) => {
                map.insert(ifname.to_string(), (filter.to_string(), hub));
                Ok((rx, dropped))
            }
            Err(netray_core::Error::Refused(m)) if m.contains("another netray dump") => Err(ApiError::conflict(m)
                .hint("a `netray dump` holds the interface's XDP capture slot: stop it first")),
            Err(e) => Err(ApiError::from_core(e)),
        }
    }

    fn subscribe_exec(d: &Arc<Daemon>, filter: ExecFilter) -> ApiResult<(mpsc::Receiver<Msg>, Arc<AtomicU64>)> {
        let hubs = &d.hubs;
        let mut slot = hubs.exec.lock().unwrap_or_else(|e| e.into_inner());
        let (sub, rx, dropped) = hubs.new_sub(filter);
        if let Some(hub) = slot.as_ref() {
            hub.subs.lock().unwrap_or_else(|e| e.into_inner()).push(sub);
            return Ok((rx, dropped));
        }
        let hub = Arc::new(Hub::default());
        hub.subs.lock().unwrap_or_else(|e| e.into_inner()).push(sub);
        let (ready_tx, ready_rx) = std_mpsc::sync_channel::<Result<(), String>>(1);
        let (d2, hub2) = (Arc::clone(d), Arc::clone(&hub));
        std::thread::Builder::new()
            .name("sse-exec".into())
            .spawn(move || exec_reader(d2, hub2, ready_tx))
            .map_err(|e| ApiError::internal(format!("starting the exec thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {
                *slot = Some(hub);
                Ok((rx, dropped))
            }
            Ok(Err(e)) => Err(ApiError::internal(format!("exec tracing failed to start: {e}"))),
            Err(_) => Err(ApiError::internal("the exec thread ended before starting")),
        }
    }

    /// Stops every source (daemon shutdown).
    pub fn stop_all(&self) {
        for h in self.packets.lock().unwrap_or_else(|e| e.into_inner()).values() {
            h.stop.store(true, Ordering::Relaxed);
        }
        for (_, h) in self.filtered.lock().unwrap_or_else(|e| e.into_inner()).values() {
            h.stop.store(true, Ordering::Relaxed);
        }
        if let Some(h) = self.exec.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            h.stop.store(true, Ordering::Relaxed);
        }
    }
}

/// Runs a packet source's reader on a thread of its own and waits until it
/// says whether it started (its error, if not).
fn start_source(
    thread: String,
    what: &str,
    reader: impl FnOnce(std_mpsc::SyncSender<Result<(), netray_core::Error>>) + Send + 'static,
) -> ApiResult<Result<(), netray_core::Error>> {
    let (ready_tx, ready_rx) = std_mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name(thread)
        .spawn(move || reader(ready_tx))
        .map_err(|e| ApiError::internal(format!("starting the {what} thread: {e}")))?;
    ready_rx.recv().map_err(|_| ApiError::internal(format!("the {what} thread ended before starting")))
}

/// Whether a source should stop: asked to, or no client left. Decided under
/// the map's lock so that a client joining meanwhile is never orphaned.
fn should_stop(hub: &Hub, remove: impl FnOnce()) -> bool {
    hub.beat_ms.store(now_ms(), Ordering::Relaxed);
    let mut subs = hub.subs.lock().unwrap_or_else(|e| e.into_inner());
    subs.retain(|s| !s.tx.is_closed());
    if hub.stop.load(Ordering::Relaxed) || subs.is_empty() {
        remove();
        return true;
    }
    false
}

fn packet_reader(
    d: Arc<Daemon>,
    hub: Arc<Hub>,
    ifname: String,
    ready: std_mpsc::SyncSender<Result<(), netray_core::Error>>,
) {
    let mut session = match netray_monitor::MonitorSession::start(&d.pin, &ifname, netray_core::AttachMode::Auto) {
        Ok(s) => {
            let _ = ready.send(Ok(()));
            s
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut polls = 0u64;
    loop {
        let res = session.poll(Duration::from_millis(50), &mut |ev| {
            if let Ok(json) = serde_json::to_string(&ev) {
                hub.broadcast(&Msg::Event(json.into()), &d.hubs.dropped_total, |_| true);
            }
            true
        });
        if let Err(e) = res {
            hub.fail(format!("reading packet events of {ifname}: {e}"));
            d.hubs.packets.lock().unwrap_or_else(|e| e.into_inner()).remove(&ifname);
            break;
        }
        polls += 1;
        if polls.is_multiple_of(10) {
            if let Ok(s) = session.stats() {
                hub.kernel_lost.store(s.lost, Ordering::Relaxed);
            }
        }
        let mut map = d.hubs.packets.lock().unwrap_or_else(|e| e.into_inner());
        if should_stop(&hub, || {
            if map.get(&ifname).is_some_and(|h| Arc::ptr_eq(h, &hub)) {
                map.remove(&ifname);
            }
        }) {
            break;
        }
    }
    // Leaves the dispatcher attached if the firewall (or anything) uses it.
    let _ = session.stop();
}

/// Longest filter= accepted.
pub(crate) const MAX_FILTER_LEN: usize = 4096;

/// Bytes of each packet a filtered stream copies: enough for the headers its
/// events describe.
const FILTERED_SNAPLEN: u32 = 256;

/// A capture at the XDP entry point with the client's filter in the kernel;
/// each packet becomes an event shaped like `netray dump --json`'s.
fn filtered_reader(
    d: Arc<Daemon>,
    hub: Arc<Hub>,
    ifname: String,
    filter: String,
    ready: std_mpsc::SyncSender<Result<(), netray_core::Error>>,
) {
    let spec = netray_capture::CaptureSpec {
        iface: ifname.clone(),
        hooks: vec![netray_core::Hook::Xdp],
        points: vec![netray_capture::Point::Entry],
        snaplen: FILTERED_SNAPLEN,
        filter,
        ring_bytes: 4 << 20,
        mode: netray_core::AttachMode::Auto,
        chain_only: false,
    };
    let started = netray_capture::Capture::start(&d.pin, &spec).and_then(|capture| {
        let (hub, d) = (Arc::clone(&hub), Arc::clone(&d));
        netray_capture::LiveCapture::start(
            capture,
            Arc::new(move |pkt: &netray_capture::Packet| {
                let mut ev = netray_capture::line::to_json(pkt);
                ev["type"] = "packet".into();
                hub.broadcast(&Msg::Event(ev.to_string().into()), &d.hubs.dropped_total, |_| true);
                true
            }),
        )
    });
    let live = match started {
        Ok(l) => {
            let _ = ready.send(Ok(()));
            l
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    loop {
        std::thread::sleep(Duration::from_millis(50));
        if let Ok(stats) = live.capture().stats() {
            hub.kernel_lost.store(stats.iter().map(|s| s.lost).sum(), Ordering::Relaxed);
        }
        let mut map = d.hubs.filtered.lock().unwrap_or_else(|e| e.into_inner());
        if should_stop(&hub, || {
            if map.get(&ifname).is_some_and(|(_, h)| Arc::ptr_eq(h, &hub)) {
                map.remove(&ifname);
            }
        }) {
            break;
        }
    }
    // Puts back the program that was in front of (the dispatcher, or another).
    let _ = live.stop();
}

fn exec_matches(f: &ExecFilter, ev: &netray_exec::ExecEvent) -> bool {
    f.comm.as_ref().is_none_or(|c| *c == ev.comm)
        && f.pid.is_none_or(|p| p == ev.pid)
        && (!f.failed_only || ev.ret < 0)
}

fn exec_reader(d: Arc<Daemon>, hub: Arc<Hub>, ready: std_mpsc::SyncSender<Result<(), String>>) {
    let mut tracer = match netray_exec::ExecTracer::start(netray_exec::Filter::default()) {
        Ok(t) => {
            let _ = ready.send(Ok(()));
            t
        }
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    loop {
        match tracer.poll(Duration::from_millis(100)) {
            Ok(evs) => {
                for ev in evs {
                    let msg = Msg::Event(netray_exec::output::json_event(&ev).into());
                    hub.broadcast(&msg, &d.hubs.dropped_total, |f| exec_matches(f, &ev));
                }
                hub.kernel_lost.store(tracer.lost(), Ordering::Relaxed);
            }
            Err(e) => {
                hub.fail(format!("reading exec events: {e}"));
                *d.hubs.exec.lock().unwrap_or_else(|e| e.into_inner()) = None;
                return;
            }
        }
        let mut slot = d.hubs.exec.lock().unwrap_or_else(|e| e.into_inner());
        if should_stop(&hub, || {
            if slot.as_ref().is_some_and(|h| Arc::ptr_eq(h, &hub)) {
                *slot = None;
            }
        }) {
            return;
        }
    }
}

/// The SSE stream of one client: a `ready` event, then its events, with a
/// `dropped` event before the next one whenever some were dropped.
fn sse(kind: &'static str, ready: serde_json::Value, rx: mpsc::Receiver<Msg>, dropped: Arc<AtomicU64>) -> Response {
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
        Some(f) => Hubs::subscribe_filtered(&d2, &name, &f),
        None => Hubs::subscribe_packets(&d2, &name),
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
    let (rx, dropped) = tokio::task::spawn_blocking(move || Hubs::subscribe_exec(&d2, f))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(sse("exec", serde_json::json!({"stream": "exec", "queue": d.sse_queue}), rx, dropped))
}
