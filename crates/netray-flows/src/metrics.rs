//! Prometheus metrics of netray's kernel counters, read at scrape time.
//!
//! [`NetrayCollector`] is a prometheus-client `Collector`: register it in any
//! `Registry` (the future daemon registers it beside its own metrics). It reads
//! the pinned maps directly on each scrape, without taking the pin lock, so a
//! scrape never waits for a rule change. [`serve`] exposes a registry at
//! `/metrics` with a small axum server on its own thread.
//!
//! Series (OpenMetrics text; counters end in `_total`):
//! - `netray_interface_up{interface}`: 1 while netray is attached there
//! - `netray_interface_packets_total{interface,direction,verdict}` and
//!   `netray_interface_bytes_total{...}`: every packet the dispatcher saw
//!   (XDP: direction "ingress"), verdict "pass" or "drop"
//! - `netray_interface_non_ip_packets_total`, `netray_interface_truncated_packets_total`
//! - `netray_monitor_events_total` / `netray_monitor_events_lost_total{interface}`:
//!   monitor records written to / lost on the event ring (ring full)
//! - `netray_flows_entries`, `netray_flows_capacity{interface}` (gauges),
//!   `netray_flows_inserts_total`, `netray_flows_evictions_total`,
//!   `netray_flows_insert_failures_total{interface}`
//! - `netray_firewall_rules` (gauge), `netray_firewall_rule_packets_total{rule_id,rule}`
//!   and `netray_firewall_rule_bytes_total{...}`: hits of the `max_rules` rules with
//!   the lowest ids; the others are summed under `rule_id="other"`
//! - with `top_flows` K > 0 only: `netray_flow_packets_total` and
//!   `netray_flow_bytes_total{interface,direction,proto,icmp,src,dst,sport,dport}` for the K
//!   flows with the most bytes.
//!
//! Label cardinality is bounded by the number of interfaces, by `max_rules`
//! and by `top_flows`: no per-flow series unless asked for.

use std::{
    fmt::Write as _,
    net::{SocketAddr, TcpListener},
    path::Path,
    sync::Arc,
    thread::JoinHandle,
};

use libbpf_rs::MapHandle;
use netray_core::{
    dispatcher::FwCapacity,
    if_stats::IfCounters,
    maps, Hook, Interface, PinDir, Result,
};
use netray_ebpf::abi::nr_if_stats;
use netray_firewall::Firewall;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
    registry::Registry,
};

use crate::{
    snapshot::{top_k, FlowRate, SortBy},
    table::{proto_name, FlowTable, TableCounters},
};

/// Default cap on per-rule series.
pub const DEFAULT_MAX_RULES: usize = 1000;

/// What the collector reports on.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub pin: PinDir,
    pub interfaces: Vec<Interface>,
    /// Per-flow series for this many flows per interface (0: none).
    pub top_flows: usize,
    /// Per-rule series for at most this many rules.
    pub max_rules: usize,
}

type Labels = Vec<(&'static str, String)>;

/// One interface's counters as read for a scrape.
#[derive(Debug, Default)]
struct IfSample {
    name: String,
    up: bool,
    /// The XDP dispatcher's counters: received packets.
    stats: nr_if_stats,
    /// The TC egress program's counters: sent packets (zero while it is not attached).
    egress: nr_if_stats,
    /// Monitor records lost at any hook.
    events_lost: u64,
    table: Option<TableCounters>,
    top: Vec<FlowRate>,
}

/// Reads netray's counters on every scrape.
#[derive(Debug)]
pub struct NetrayCollector {
    cfg: MetricsConfig,
}

impl NetrayCollector {
    pub fn new(cfg: MetricsConfig) -> NetrayCollector {
        NetrayCollector { cfg }
    }

    /// A registry holding only this collector.
    pub fn registry(cfg: MetricsConfig) -> Registry {
        let mut r = Registry::default();
        r.register_collector(Box::new(NetrayCollector::new(cfg)));
        r
    }

    fn interface(&self, iface: &Interface) -> IfSample {
        let dir = self.cfg.pin.if_dir(iface.index);
        let s = IfSample { name: iface.name.clone(), ..Default::default() };
        if !dir.join("link").exists() {
            return s;
        }
        let read = || -> Result<IfSample> {
            let counters = IfCounters::open(&dir)?;
            let slot = |hook: Hook| -> Result<nr_if_stats> { counters.slot(hook.stats_slot()) };
            let stats = slot(Hook::Xdp)?;
            let egress = slot(Hook::TcEgress)?;
            let mut events_lost = 0;
            for hook in Hook::ALL {
                events_lost += slot(hook)?.events_lost;
            }
            let table =
                FlowTable::from_maps(open(&dir, "if_flows")?, open(&dir, "if_flow_stats")?, open(&dir, "if_flow_cache")?)?;
            let (flows, counters) = table.read()?;
            let top = if self.cfg.top_flows > 0 {
                let rates = flows.into_iter().map(|flow| FlowRate { flow, pps: None, bps: None }).collect();
                top_k(rates, SortBy::Bytes, self.cfg.top_flows)
            } else {
                Vec::new()
            };
            Ok(IfSample { name: iface.name.clone(), up: true, stats, egress, events_lost, table: Some(counters), top })
        };
        read().unwrap_or(s)
    }
}

fn open(dir: &Path, name: &str) -> Result<MapHandle> {
    maps::open_pinned(&dir.join(name))
}

fn family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    ty: MetricType,
    samples: &[(Labels, u64)],
) -> std::result::Result<(), std::fmt::Error> {
    if samples.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, ty)?;
    for (labels, v) in samples {
        let fam = m.encode_family(labels)?;
        match ty {
            MetricType::Counter => ConstCounter::new(*v).encode(fam)?,
            _ => ConstGauge::new(*v as i64).encode(fam)?,
        }
    }
    Ok(())
}

impl Collector for NetrayCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::result::Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let ifs: Vec<IfSample> = self.cfg.interfaces.iter().map(|i| self.interface(i)).collect();
        let per_if = |f: &dyn Fn(&IfSample) -> Option<u64>| -> Vec<(Labels, u64)> {
            ifs.iter().filter_map(|s| Some((vec![("interface", s.name.clone())], f(s)?))).collect()
        };
        let by_verdict = |pass: fn(&nr_if_stats) -> u64, drop: fn(&nr_if_stats) -> u64| -> Vec<(Labels, u64)> {
            let mut v = Vec::new();
            for s in ifs.iter().filter(|s| s.up) {
                for (direction, st) in [("ingress", &s.stats), ("egress", &s.egress)] {
                    for (verdict, n) in [("pass", pass(st)), ("drop", drop(st))] {
                        let labels = vec![
                            ("interface", s.name.clone()),
                            ("direction", direction.to_string()),
                            ("verdict", verdict.to_string()),
                        ];
                        v.push((labels, n));
                    }
                }
            }
            v
        };

        family(&mut enc, "netray_interface_up", "1 while netray is attached to the interface", Gauge, &per_if(&|s| Some(s.up as u64)))?;
        family(
            &mut enc,
            "netray_interface_packets",
            "Packets netray saw, by direction (ingress: XDP, egress: TC) and verdict",
            Counter,
            &by_verdict(|s| s.seen.saturating_sub(s.dropped), |s| s.dropped),
        )?;
        family(
            &mut enc,
            "netray_interface_bytes",
            "Bytes netray saw, by direction (ingress: XDP, egress: TC) and verdict",
            Counter,
            &by_verdict(|s| s.bytes_seen.saturating_sub(s.bytes_dropped), |s| s.bytes_dropped),
        )?;
        let up = |f: fn(&IfSample) -> u64| move |s: &IfSample| s.up.then(|| f(s));
        family(&mut enc, "netray_interface_non_ip_packets", "Frames that were not IPv4/IPv6", Counter, &per_if(&up(|s| s.stats.non_ip)))?;
        family(
            &mut enc,
            "netray_interface_truncated_packets",
            "Frames that ended inside a header the parser needed",
            Counter,
            &per_if(&up(|s| s.stats.truncated)),
        )?;
        family(&mut enc, "netray_monitor_events", "Monitor records written to the event ring", Counter, &per_if(&up(|s| s.stats.events_sent)))?;
        family(
            &mut enc,
            "netray_monitor_events_lost",
            "Monitor records lost because the event ring was full",
            Counter,
            &per_if(&up(|s| s.events_lost)),
        )?;
        let table = |f: fn(&TableCounters) -> u64| move |s: &IfSample| s.table.as_ref().map(f);
        family(&mut enc, "netray_flows_entries", "Flows in the flow table", Gauge, &per_if(&table(|t| t.entries)))?;
        family(&mut enc, "netray_flows_capacity", "Flows the flow table holds at most", Gauge, &per_if(&table(|t| t.capacity.into())))?;
        family(&mut enc, "netray_flows_inserts", "Flow table entries created", Counter, &per_if(&table(|t| t.inserts)))?;
        family(
            &mut enc,
            "netray_flows_evictions",
            "Flows evicted from the full flow table (inserts - entries)",
            Counter,
            &per_if(&table(|t| t.evictions)),
        )?;
        family(
            &mut enc,
            "netray_flows_insert_failures",
            "Packets of new flows the flow table could not store",
            Counter,
            &per_if(&table(|t| t.insert_failed)),
        )?;

        let mut rules = Firewall::new(self.cfg.pin.clone(), FwCapacity::default()).list().unwrap_or_default();
        rules.sort_by_key(|r| r.id);
        family(&mut enc, "netray_firewall_rules", "Deny rules installed", Gauge, &[(Vec::new(), rules.len() as u64)])?;
        let mut packets = Vec::new();
        let mut bytes = Vec::new();
        let (mut other_p, mut other_b) = (0u64, 0u64);
        for (i, r) in rules.iter().enumerate() {
            if i < self.cfg.max_rules {
                let labels: Labels = vec![("rule_id", r.id.to_string()), ("rule", r.rule.to_string())];
                packets.push((labels.clone(), r.packets));
                bytes.push((labels, r.bytes));
            } else {
                other_p += r.packets;
                other_b += r.bytes;
            }
        }
        if rules.len() > self.cfg.max_rules {
            let labels: Labels = vec![("rule_id", "other".to_string()), ("rule", "other".to_string())];
            packets.push((labels.clone(), other_p));
            bytes.push((labels, other_b));
        }
        family(&mut enc, "netray_firewall_rule_packets", "Packets dropped by each deny rule", Counter, &packets)?;
        family(&mut enc, "netray_firewall_rule_bytes", "Bytes dropped by each deny rule", Counter, &bytes)?;

        if self.cfg.top_flows > 0 {
            let mut packets = Vec::new();
            let mut bytes = Vec::new();
            for s in &ifs {
                for f in &s.top {
                    let k = &f.flow.key;
                    let (sport, dport) = k.ports().unwrap_or((0, 0));
                    // Direction and ICMP type/code are part of a flow's
                    // identity: without them an echo reply and an error
                    // between the same hosts would be one series twice.
                    let icmp = k.icmp().map_or("-".to_string(), |(t, c)| format!("{t}/{c}"));
                    let labels: Labels = vec![
                        ("interface", s.name.clone()),
                        ("direction", format!("{:?}", k.direction).to_lowercase()),
                        ("proto", proto_name(k.proto)),
                        ("icmp", icmp),
                        ("src", k.src.to_string()),
                        ("dst", k.dst.to_string()),
                        ("sport", sport.to_string()),
                        ("dport", dport.to_string()),
                    ];
                    packets.push((labels.clone(), f.flow.packets));
                    bytes.push((labels, f.flow.bytes));
                }
            }
            family(&mut enc, "netray_flow_packets", "Packets of the top flows (by bytes)", Counter, &packets)?;
            family(&mut enc, "netray_flow_bytes", "Bytes of the top flows (by bytes)", Counter, &bytes)?;
        }
        Ok(())
    }
}

/// The registry's metrics in the OpenMetrics text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
        let _ = writeln!(out, "# EOF");
    }
    out
}

/// Content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// An HTTP server exposing a registry at `/metrics`, on its own thread;
/// stopped when dropped.
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
/// serves `registry` at `/metrics` from a background thread.
pub fn serve(addr: SocketAddr, registry: Registry) -> std::io::Result<MetricsServer> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let registry = Arc::new(registry);
    let thread = std::thread::Builder::new().name("netray-metrics".into()).spawn(move || {
        runtime.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
            let metrics = {
                let registry = Arc::clone(&registry);
                move || {
                    let registry = Arc::clone(&registry);
                    async move {
                        // Reading the kernel's maps blocks briefly: fine on this
                        // thread, which serves nothing else.
                        ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], render(&registry))
                    }
                }
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
