//! The exporter: one sender thread (transport) fed through a bounded queue,
//! and a [`Meter`] per interface that turns snapshots into records. Callers
//! poll their flow sessions and hand the snapshots to [`Exporter::export`],
//! which never blocks on the network.

use std::{
    net::SocketAddr,
    sync::{mpsc, Arc, Mutex},
    time::Duration,
};

use netray_flows::{metrics::Scrape, Snapshot};

use crate::{
    config::ExportConfig,
    counters::{Counters, Stats},
    meter::{Meter, MeterCounters},
    queue::Queue,
    transport::Sender,
    IpfixError,
};

pub struct Exporter {
    cfg: ExportConfig,
    addr: SocketAddr,
    queue: Arc<Queue>,
    counters: Arc<Counters>,
    /// Says when the sender thread ended (a Mutex: the exporter is shared
    /// with the polling thread, and a Receiver is not Sync).
    done: Mutex<mpsc::Receiver<()>>,
}

/// A handle for metrics: reads the counters while the exporter runs.
#[derive(Clone)]
pub struct ExporterMetrics {
    counters: Arc<Counters>,
    collector: String,
    transport: &'static str,
}

impl ExporterMetrics {
    pub fn scrape(&self, s: &mut Scrape) {
        self.counters.scrape(s, &self.collector, self.transport);
    }
}

impl Exporter {
    pub fn start(cfg: ExportConfig) -> Result<Exporter, IpfixError> {
        cfg.check()?;
        let addr = cfg.resolve()?;
        let queue = Arc::new(Queue::new(cfg.queue_records));
        let counters = Arc::new(Counters::default());
        let sender = Sender::new(cfg.clone(), addr, Arc::clone(&queue), Arc::clone(&counters))
            .map_err(|e| IpfixError::Collector { collector: cfg.collector.clone(), why: e.to_string() })?;
        let (tx, done) = mpsc::channel();
        std::thread::Builder::new()
            .name("ipfix-sender".into())
            .spawn(move || {
                sender.run();
                let _ = tx.send(());
            })
            .map_err(|e| IpfixError::Config(format!("starting the IPFIX sender thread: {e}")))?;
        Ok(Exporter { cfg, addr, queue, counters, done: Mutex::new(done) })
    }

    pub fn collector(&self) -> SocketAddr {
        self.addr
    }

    pub fn config(&self) -> &ExportConfig {
        &self.cfg
    }

    /// A meter for one interface's flows, with this exporter's timeouts.
    pub fn meter(&self, ifname: &str) -> Meter {
        Meter::new(ifname, self.cfg.timeouts)
    }

    pub fn metrics(&self) -> ExporterMetrics {
        ExporterMetrics {
            counters: Arc::clone(&self.counters),
            collector: self.cfg.collector.clone(),
            transport: self.cfg.transport.as_str(),
        }
    }

    /// Queues the records due from `snap` (all pending ones with `flush`).
    pub fn export(&self, meter: &mut Meter, snap: &Snapshot, flush: bool) {
        let before = meter.counters();
        let mut records = Vec::new();
        meter.update(snap, flush, &mut records);
        let after = meter.counters();
        self.add_meter(&before, &after);
        if !records.is_empty() {
            let dropped = self.queue.push(records);
            Counters::add(&self.counters.dropped_queue_full, dropped as u64);
        }
        self.counters.queued.store(self.queue.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    fn add_meter(&self, b: &MeterCounters, a: &MeterCounters) {
        let c = &self.counters;
        Counters::add(&c.evicted, a.evicted - b.evicted);
        Counters::add(&c.evicted_active, a.evicted_active - b.evicted_active);
        Counters::add(&c.evicted_recreated, a.evicted_recreated - b.evicted_recreated);
        // Not a sum of increments: the meter recomputes it from the kernel.
        Counters::add(&c.evicted_unread, a.evicted_unread.saturating_sub(b.evicted_unread));
    }

    pub fn stats(&self) -> Stats {
        self.counters.stats()
    }

    /// Ends the export: the sender sends what is queued, waiting up to
    /// `wait` for a collector that is slow or away; what is still queued
    /// then is counted in `dropped_at_exit`.
    /// Records exported after this are not sent.
    pub fn finish(&self, wait: Duration) -> Stats {
        self.queue.close();
        let _ = self.done.lock().map(|d| d.recv_timeout(wait));
        let mut s = self.counters.stats();
        s.dropped_at_exit = self.queue.len() as u64;
        s
    }
}

impl Exporter {
    /// Exports one interface's flows until `stop` says so: reads a snapshot
    /// every poll interval, then a last one whose pending counts are all
    /// exported (the shutdown flush). A snapshot that cannot be read ends
    /// the loop with its error (after nothing more can be read anyway).
    pub fn run_polling<E>(
        &self,
        ifname: &str,
        mut snapshot: impl FnMut() -> Result<Snapshot, E>,
        stop: impl Fn() -> bool,
    ) -> Result<(), E> {
        let mut meter = self.meter(ifname);
        let every = self.cfg.poll_interval();
        let mut next = std::time::Instant::now();
        while !stop() {
            let now = std::time::Instant::now();
            if now < next {
                std::thread::sleep((next - now).min(Duration::from_millis(50)));
                continue;
            }
            next += every;
            let snap = snapshot()?;
            self.export(&mut meter, &snap, false);
        }
        let snap = snapshot()?;
        self.export(&mut meter, &snap, true);
        Ok(())
    }
}
