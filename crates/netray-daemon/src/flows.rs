//! Flow accounting on the daemon's interfaces, for /v1/flows, and their
//! IPFIX export when `[ipfix]` names a collector. Built with the `flows`
//! feature (netray-flows); without it /v1/flows answers 501.
//!
//! The export runs on its own thread: every poll interval it reads each
//! interface's snapshot and hands it to the exporter (which never blocks on
//! the network); an interface that is detached has its flows flushed first,
//! and so has every interface at shutdown.

use netray_core::PinDir;
use netray_flows::metrics::Scrape;
use netray_ipfix::ExportConfig;

use crate::{config::FlowsConfig, error::{ApiError, ApiResult}};

#[cfg(feature = "flows")]
mod imp {
    use std::{
        collections::HashMap,
        sync::{
            atomic::{AtomicBool, Ordering},
            Arc, Mutex,
        },
        thread::JoinHandle,
        time::{Duration, Instant},
    };

    use netray_flows::{FlowCapacity, FlowSession, Snapshot, SnapshotJson, SortBy};
    use netray_ipfix::{Exporter, ExporterMetrics, Meter};

    use super::*;

    struct Entry {
        session: FlowSession,
        prev: Option<Snapshot>,
        /// The interface's IPFIX meter, when the daemon exports.
        meter: Option<Meter>,
    }

    type Sessions = Arc<Mutex<HashMap<String, Entry>>>;

    struct Export {
        exporter: Arc<Exporter>,
        metrics: ExporterMetrics,
        stop: Arc<AtomicBool>,
        thread: Mutex<Option<JoinHandle<()>>>,
    }

    pub struct Flows {
        pin: PinDir,
        cfg: FlowsConfig,
        sessions: Sessions,
        export: Option<Export>,
    }

    fn lock(s: &Sessions) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        s.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One interface's records due now (all of them with `flush`).
    fn export_one(exporter: &Exporter, name: &str, e: &mut Entry, flush: bool) {
        let Some(meter) = e.meter.as_mut() else { return };
        match e.session.snapshot() {
            Ok(snap) => exporter.export(meter, &snap, flush),
            Err(err) => eprintln!("netray daemon: IPFIX export of {name}: {err}"),
        }
    }

    impl Flows {
        pub fn new(pin: PinDir, cfg: FlowsConfig, ipfix: Option<ExportConfig>) -> anyhow::Result<Flows> {
            let sessions: Sessions = Arc::default();
            let export = match ipfix {
                Some(c) => {
                    let every = c.poll_interval();
                    let exporter = Arc::new(Exporter::start(c)?);
                    eprintln!(
                        "netray daemon: exporting IPFIX to {} over {}",
                        exporter.collector(),
                        exporter.config().transport.as_str()
                    );
                    let stop = Arc::new(AtomicBool::new(false));
                    let (x, s, st) = (Arc::clone(&exporter), Arc::clone(&sessions), Arc::clone(&stop));
                    let thread = std::thread::Builder::new().name("ipfix-poll".into()).spawn(move || {
                        let mut next = Instant::now();
                        while !st.load(Ordering::Relaxed) {
                            if Instant::now() < next {
                                std::thread::sleep(Duration::from_millis(50));
                                continue;
                            }
                            next += every;
                            for (name, e) in lock(&s).iter_mut() {
                                export_one(&x, name, e, false);
                            }
                        }
                    })?;
                    Some(Export {
                        metrics: exporter.metrics(),
                        exporter,
                        stop,
                        thread: Mutex::new(Some(thread)),
                    })
                }
                None => None,
            };
            Ok(Flows { pin, cfg, sessions, export })
        }

        /// The exporter's netray_ipfix_* series, when the daemon exports.
        pub fn scrape_ipfix(&self, s: &mut Scrape) {
            if let Some(x) = &self.export {
                x.metrics.scrape(s);
            }
        }

        /// Shutdown: flushes every interface's flows to the collector and
        /// ends the export (waiting a few seconds for a slow collector).
        pub fn finish_export(&self) {
            let Some(x) = &self.export else { return };
            if x.stop.swap(true, Ordering::Relaxed) {
                return;
            }
            if let Some(t) = x.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = t.join();
            }
            for (name, e) in lock(&self.sessions).iter_mut() {
                export_one(&x.exporter, name, e, true);
            }
            let st = x.exporter.finish(Duration::from_secs(5));
            eprintln!(
                "netray daemon: IPFIX export ended: {} records sent in {} messages; not delivered: {} (queue full), {} \
                 (send failed), {} (still queued)",
                st.records_sent, st.messages_sent, st.dropped_queue_full, st.dropped_send_failed, st.dropped_at_exit
            );
        }

        pub fn available(&self) -> bool {
            self.cfg.enabled
        }

        /// Turns flow accounting on for an interface the daemon attached.
        pub fn start(&self, name: &str, mode: &str) {
            if !self.cfg.enabled {
                return;
            }
            let mut s = lock(&self.sessions);
            if s.contains_key(name) {
                return;
            }
            match FlowSession::start(&self.pin, name, mode.parse().unwrap_or_default(), FlowCapacity::default()) {
                Ok(session) => {
                    let meter = self.export.as_ref().map(|x| x.exporter.meter(name));
                    s.insert(name.to_string(), Entry { session, prev: None, meter });
                }
                Err(e) => eprintln!("netray daemon: flow accounting on {name} failed: {e}"),
            }
        }

        pub fn stop(&self, name: &str) {
            let e = lock(&self.sessions).remove(name);
            if let Some(mut e) = e {
                if let Some(x) = self.export.as_ref().filter(|x| !x.stop.load(Ordering::Relaxed)) {
                    export_one(&x.exporter, name, &mut e, true);
                }
                let _ = e.session.stop();
            }
        }

        pub fn top(&self, interface: Option<&str>, sort: &str, limit: Option<usize>) -> ApiResult<serde_json::Value> {
            if !self.cfg.enabled {
                return Err(ApiError::not_implemented("flow accounting is disabled in the daemon's config")
                    .hint("set [flows] enabled = true and restart the daemon"));
            }
            let by: SortBy = sort.parse().map_err(ApiError::bad_request)?;
            let limit = limit.unwrap_or(self.cfg.top);
            let mut s = lock(&self.sessions);
            if let Some(name) = interface {
                if !s.contains_key(name) {
                    return Err(ApiError::not_found(format!("the daemon counts no flows on '{name}'"))
                        .hint("flows are counted on the interfaces the daemon attached (GET /v1/interfaces)"));
                }
            }
            let mut out = Vec::new();
            let mut names: Vec<String> = s.keys().cloned().collect();
            names.sort();
            for name in names {
                if interface.is_some_and(|i| i != name) {
                    continue;
                }
                let e = s.get_mut(&name).expect("listed");
                let cur = e.session.snapshot().map_err(ApiError::from_core)?;
                out.push(serde_json::to_value(SnapshotJson::new(e.prev.as_ref(), &cur, by, Some(limit)))
                    .map_err(|e| ApiError::internal(e.to_string()))?);
                e.prev = Some(cur);
            }
            Ok(serde_json::json!({ "interfaces": out }))
        }
    }
}

#[cfg(not(feature = "flows"))]
mod imp {
    use super::*;

    pub struct Flows;

    impl Flows {
        pub fn new(_pin: PinDir, _cfg: FlowsConfig, ipfix: Option<ExportConfig>) -> anyhow::Result<Flows> {
            if ipfix.is_some() {
                anyhow::bail!("[ipfix] needs flow accounting: build netray-daemon with the `flows` feature");
            }
            Ok(Flows)
        }
        pub fn scrape_ipfix(&self, _s: &mut Scrape) {}
        pub fn finish_export(&self) {}
        pub fn available(&self) -> bool {
            false
        }
        pub fn start(&self, _name: &str, _mode: &str) {}
        pub fn stop(&self, _name: &str) {}
        pub fn top(&self, _interface: Option<&str>, _sort: &str, _limit: Option<usize>) -> ApiResult<serde_json::Value> {
            Err(ApiError::not_implemented("flow accounting is not built into this daemon")
                .hint("build netray-daemon with the `flows` feature (netray-flows)"))
        }
    }
}

pub use imp::Flows;
