//! The readers that feed the hubs: a monitor session per interface, a
//! filtered capture per interface, one exec tracer, a drops session per
//! interface (or for all); each on a thread of its own, started by the first
//! client and stopped when its last client goes.

use std::{
    sync::{atomic::{AtomicU64, Ordering}, mpsc as std_mpsc, Arc},
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
        Err(e) => Err(ApiError::from_core(e)),
    }
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

/// Joins (or starts) the drops session of `ifname` ("" for every interface of
/// the daemon's network namespace).
pub(super) fn subscribe_drops(d: &Arc<Daemon>, ifname: &str) -> ApiResult<(mpsc::Receiver<Msg>, Arc<AtomicU64>)> {
    let hubs = &d.hubs;
    let mut map = hubs.drops.lock().unwrap_or_else(|e| e.into_inner());
    let (sub, rx, dropped) = hubs.new_sub(ExecFilter::default());
    if let Some(hub) = map.get(ifname) {
        hub.subs.lock().unwrap_or_else(|e| e.into_inner()).push(sub);
        return Ok((rx, dropped));
    }
    let hub = Arc::new(Hub::default());
    hub.subs.lock().unwrap_or_else(|e| e.into_inner()).push(sub);
    let (d2, hub2, name) = (Arc::clone(d), Arc::clone(&hub), ifname.to_string());
    match start_source(format!("sse-drops-{ifname}"), "drops", move |ready| drops_reader(d2, hub2, name, ready))? {
        Ok(()) => {
            map.insert(ifname.to_string(), hub);
            Ok((rx, dropped))
        }
        Err(e) => Err(ApiError::from_core(e)),
    }
}

fn drops_reader(d: Arc<Daemon>, hub: Arc<Hub>, ifname: String, ready: std_mpsc::SyncSender<Result<(), netray_core::Error>>) {
    let spec = netray_drops::DropsSpec {
        iface: (!ifname.is_empty()).then(|| ifname.clone()),
        snaplen: 256,
        ring_bytes: 4 << 20,
        ..Default::default()
    };
    let mut session = match netray_drops::DropsSession::start(Some(&d.pin), &spec) {
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
            hub.fail(format!("reading drops: {e}"));
            d.hubs.drops.lock().unwrap_or_else(|e| e.into_inner()).remove(&ifname);
            break;
        }
        polls += 1;
        if polls.is_multiple_of(10) {
            if let Ok(s) = session.stats() {
                let lost = s.kernel.lost + s.netray_lost;
                hub.kernel_lost.store(lost, Ordering::Relaxed);
                d.drop_counts.lock().unwrap_or_else(|e| e.into_inner()).insert(ifname.clone(), (session.counts().clone(), lost));
            }
        }
        let mut map = d.hubs.drops.lock().unwrap_or_else(|e| e.into_inner());
        if should_stop(&hub, || {
            if map.get(&ifname).is_some_and(|h| Arc::ptr_eq(h, &hub)) {
                map.remove(&ifname);
            }
        }) {
            break;
        }
    }
    if let Ok(s) = session.finish(&mut |_| true) {
        let mut counts = d.drop_counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = counts.get_mut(&ifname) {
            c.1 = s.kernel.lost + s.netray_lost;
        }
    }
}
