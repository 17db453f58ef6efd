//! The fan-out of live events to the daemon's SSE clients: one hub per
//! source (a monitor session per interface, a filtered capture, one exec
//! tracer), each client behind its own bounded queue. A client that reads too
//! slowly (or has vanished) loses events instead of stalling anyone; lost
//! events are counted per client and in total. The readers that feed the
//! hubs and the HTTP side are in [`crate::api::events`].

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use serde::Serialize;
use tokio::sync::mpsc;

/// What travels to a client.
#[derive(Debug, Clone)]
pub(crate) enum Msg {
    Event(Arc<str>),
    /// The source failed; the stream ends after this.
    Error(String),
}

/// Which exec events a client wants.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExecFilter {
    pub(crate) comm: Option<String>,
    pub(crate) pid: Option<u32>,
    pub(crate) failed_only: bool,
}

pub(crate) struct Subscriber {
    tx: mpsc::Sender<Msg>,
    dropped: Arc<AtomicU64>,
    filter: ExecFilter,
}

impl ExecFilter {
    /// Whether an exec event is one the client asked for.
    pub(crate) fn matches(&self, ev: &netray_exec::ExecEvent) -> bool {
        self.comm.as_ref().is_none_or(|c| *c == ev.comm)
            && self.pid.is_none_or(|p| p == ev.pid)
            && (!self.failed_only || ev.ret < 0)
    }
}

/// One source and its clients.
#[derive(Default)]
pub struct Hub {
    pub(crate) subs: Mutex<Vec<Subscriber>>,
    stop: AtomicBool,
    delivered: AtomicU64,
    dropped: AtomicU64,
    /// Records the kernel could not write (ring full), since the source started.
    pub(crate) kernel_lost: AtomicU64,
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
    pub(crate) fn broadcast(&self, msg: &Msg, total_dropped: &AtomicU64, wants: impl Fn(&ExecFilter) -> bool) {
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

    pub(crate) fn fail(&self, err: String) {
        let subs = std::mem::take(&mut *self.subs.lock().unwrap_or_else(|e| e.into_inner()));
        for s in subs {
            let _ = s.tx.try_send(Msg::Error(err.clone()));
        }
    }
}

/// Every event source of the daemon.
pub struct Hubs {
    queue: usize,
    pub(crate) packets: Mutex<HashMap<String, Arc<Hub>>>,
    /// Packet streams with a pcap-filter expression, by interface: a capture
    /// at XDP with the filter run in the kernel. One filter per interface at
    /// a time (one capture program can sit in front of XDP).
    pub(crate) filtered: Mutex<HashMap<String, (String, Arc<Hub>)>>,
    pub(crate) exec: Mutex<Option<Arc<Hub>>>,
    /// Drop streams (`netray drops`), by interface ("" for the daemon's whole
    /// network namespace).
    pub(crate) drops: Mutex<HashMap<String, Arc<Hub>>>,
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
            drops: Mutex::default(),
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
        all.extend(self.drops.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, h)| (drops_source(k), Arc::clone(h))));
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
            let drops = self.drops.lock().unwrap_or_else(|e| e.into_inner());
            v.extend(drops.iter().map(|(k, h)| h.stats(&drops_source(k))));
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

    pub(crate) fn new_sub(&self, filter: ExecFilter) -> (Subscriber, mpsc::Receiver<Msg>, Arc<AtomicU64>) {
        let (tx, rx) = mpsc::channel(self.queue);
        let dropped = Arc::new(AtomicU64::new(0));
        (Subscriber { tx, dropped: Arc::clone(&dropped), filter }, rx, dropped)
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
        for h in self.drops.lock().unwrap_or_else(|e| e.into_inner()).values() {
            h.stop.store(true, Ordering::Relaxed);
        }
    }
}

/// A drop stream's name in /v1/stats: "drops" or "drops IFACE".
fn drops_source(iface: &str) -> String {
    if iface.is_empty() { "drops".into() } else { format!("drops {iface}") }
}

/// Whether a source should stop: asked to, or no client left. Decided under
/// the map's lock so that a client joining meanwhile is never orphaned.
pub(crate) fn should_stop(hub: &Hub, remove: impl FnOnce()) -> bool {
    hub.beat_ms.store(now_ms(), Ordering::Relaxed);
    let mut subs = hub.subs.lock().unwrap_or_else(|e| e.into_inner());
    subs.retain(|s| !s.tx.is_closed());
    if hub.stop.load(Ordering::Relaxed) || subs.is_empty() {
        remove();
        return true;
    }
    false
}
