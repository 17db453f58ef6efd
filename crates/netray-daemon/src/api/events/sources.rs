//! The readers that feed the hubs: a monitor session per interface, a
//! filtered capture per interface, one exec tracer, a drops session per
//! interface (or for all); each on a thread of its own, started by the first
//! client and stopped when its last client goes.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc as std_mpsc, Arc, Mutex,
    },
    time::Duration,
};

use tokio::sync::mpsc;

use crate::{
    daemon::Daemon,
    error::{ApiError, ApiResult},
    hub::{should_stop, ExecFilter, Hub, Msg},
};

/// Joins (or starts) the monitor of `ifname`. Blocks while a new
/// monitor session starts, to report its failure to the caller.
pub(super) fn subscribe_packets(d: &Arc<Daemon>, ifname: &str) -> ApiResult<(mpsc::Receiver<Msg>, Arc<AtomicU64>)> {
    subscribe_polled(d, ifname, format!("sse-{ifname}"), |d, ifname| {
        netray_monitor::MonitorSession::start(&d.pin, ifname, netray_core::AttachMode::Auto)
    })
}

/// Joins (or starts) the drops session of `ifname` ("" for every interface of
/// the daemon's network namespace).
pub(super) fn subscribe_drops(d: &Arc<Daemon>, ifname: &str) -> ApiResult<(mpsc::Receiver<Msg>, Arc<AtomicU64>)> {
    subscribe_polled(d, ifname, format!("sse-drops-{ifname}"), |d, ifname| {
        let spec = netray_drops::DropsSpec {
            iface: (!ifname.is_empty()).then(|| ifname.to_string()),
            snaplen: 256,
            ring_bytes: 4 << 20,
            ..Default::default()
        };
        netray_drops::DropsSession::start(Some(&d.pin), &spec)
    })
}

/// A session whose events go to a hub as they are, one per interface: the
/// monitor's packets and the drops.
trait PolledSource: Sized + 'static {
    type Event: serde::Serialize;
    /// What it is, in the thread's and the errors' words.
    const WHAT: &'static str;
    /// Its hubs, by interface.
    fn hubs(d: &Daemon) -> &Mutex<HashMap<String, Arc<Hub>>>;
    fn poll(&mut self, timeout: Duration, each: &mut dyn FnMut(Self::Event) -> bool) -> netray_core::Result<bool>;
    /// Reports its counters (every ten polls): the kernel's losses to the hub.
    fn report(&self, d: &Daemon, hub: &Hub, ifname: &str);
    /// Ends it, with a last report.
    fn end(self, d: &Daemon, ifname: &str);
}

impl PolledSource for netray_monitor::MonitorSession {
    type Event = netray_monitor::PacketEvent;
    const WHAT: &'static str = "packet events";
    fn hubs(d: &Daemon) -> &Mutex<HashMap<String, Arc<Hub>>> {
        &d.hubs.packets
    }
    fn poll(&mut self, timeout: Duration, each: &mut dyn FnMut(Self::Event) -> bool) -> netray_core::Result<bool> {
        netray_monitor::MonitorSession::poll(self, timeout, each)
    }
    fn report(&self, _: &Daemon, hub: &Hub, _: &str) {
        if let Ok(s) = self.stats() {
            hub.kernel_lost.store(s.lost, Ordering::Relaxed);
        }
    }
    fn end(self, _: &Daemon, _: &str) {
        // Leaves the dispatcher attached if the firewall (or anything) uses it.
        let _ = self.stop();
    }
}

impl PolledSource for netray_drops::DropsSession {
    type Event = netray_drops::DropEvent;
    const WHAT: &'static str = "drops";
    fn hubs(d: &Daemon) -> &Mutex<HashMap<String, Arc<Hub>>> {
        &d.hubs.drops
    }
    fn poll(&mut self, timeout: Duration, each: &mut dyn FnMut(Self::Event) -> bool) -> netray_core::Result<bool> {
        netray_drops::DropsSession::poll(self, timeout, each)
    }
    fn report(&self, d: &Daemon, hub: &Hub, ifname: &str) {
        if let Ok(s) = self.stats() {
            let lost = s.kernel.lost + s.netray_lost;
            hub.kernel_lost.store(lost, Ordering::Relaxed);
            d.drop_counts.lock().unwrap_or_else(|e| e.into_inner()).insert(ifname.to_string(), (self.counts().clone(), lost));
        }
    }
    fn end(self, d: &Daemon, ifname: &str) {
        if let Ok(s) = self.finish(&mut |_| true) {
            let mut counts = d.drop_counts.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = counts.get_mut(ifname) {
                c.1 = s.kernel.lost + s.netray_lost;
            }
        }
    }
}

/// Joins the hub of `ifname` for a polled source, or starts the source
/// (`start`) on a thread of its own, reporting its failure to the caller.
fn subscribe_polled<S: PolledSource>(
    d: &Arc<Daemon>,
    ifname: &str,
    thread: String,
    start: impl FnOnce(&Daemon, &str) -> netray_core::Result<S> + Send + 'static,
) -> ApiResult<(mpsc::Receiver<Msg>, Arc<AtomicU64>)> {
    let mut map = S::hubs(d).lock().unwrap_or_else(|e| e.into_inner());
    let (sub, rx, dropped) = d.hubs.new_sub(ExecFilter::default());
    if let Some(hub) = map.get(ifname) {
        hub.subs.lock().unwrap_or_else(|e| e.into_inner()).push(sub);
        return Ok((rx, dropped));
    }
    let hub = Arc::new(Hub::default());
    hub.subs.lock().unwrap_or_else(|e| e.into_inner()).push(sub);
    let (d2, hub2, name) = (Arc::clone(d), Arc::clone(&hub), ifname.to_string());
    let reader = move |ready: std_mpsc::SyncSender<Result<(), netray_core::Error>>| {
        match start(&d2, &name) {
            Ok(session) => {
                let _ = ready.send(Ok(()));
                polled_reader(d2, hub2, name, session);
            }
            Err(e) => {
                let _ = ready.send(Err(e));
            }
        }
    };
    match start_source(thread, S::WHAT, reader)? {
        Ok(()) => {
            map.insert(ifname.to_string(), hub);
            Ok((rx, dropped))
        }
        Err(e) => Err(ApiError::from_core(e)),
    }
}

/// Broadcasts a polled source's events until its last client goes.
fn polled_reader<S: PolledSource>(d: Arc<Daemon>, hub: Arc<Hub>, ifname: String, mut session: S) {
    let mut polls = 0u64;
    loop {
        let res = session.poll(Duration::from_millis(50), &mut |ev| {
            if let Ok(json) = serde_json::to_string(&ev) {
                hub.broadcast(&Msg::Event(json.into()), &d.hubs.dropped_total, |_| true);
            }
            true
        });
        if let Err(e) = res {
            hub.fail(format!("reading {} of {ifname}: {e}", S::WHAT));
            S::hubs(&d).lock().unwrap_or_else(|e| e.into_inner()).remove(&ifname);
            break;
        }
        polls += 1;
        if polls.is_multiple_of(10) {
            session.report(&d, &hub, &ifname);
        }
        let mut map = S::hubs(&d).lock().unwrap_or_else(|e| e.into_inner());
        if should_stop(&hub, || {
            if map.get(&ifname).is_some_and(|h| Arc::ptr_eq(h, &hub)) {
                map.remove(&ifname);
            }
        }) {
            break;
        }
    }
    session.end(&d, &ifname);
}

/// Joins (or starts) the filtered capture of `ifname`; a different filter
/// already running there is a conflict.
pub(super) fn subscribe_filtered(
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
        Err(e) => Err(ApiError::from_core(e)),
    }
}

pub(super) fn subscribe_exec(d: &Arc<Daemon>, filter: ExecFilter) -> ApiResult<(mpsc::Receiver<Msg>, Arc<AtomicU64>)> {
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

/// Bytes of each packet a filtered stream copies: enough for the headers its
/// events describe.
pub(super) const FILTERED_SNAPLEN: u32 = 256;

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
                    hub.broadcast(&msg, &d.hubs.dropped_total, |f| f.matches(&ev));
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
