//! /metrics: Prometheus (OpenMetrics text) of the interfaces' counters, the
//! rules' hits and the daemon's own counters, read at scrape time.

use std::sync::{atomic::Ordering, Arc};

use axum::{extract::State, http::header, response::{IntoResponse, Response}};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
    registry::Registry,
};

use super::blocking;
use crate::{daemon::Daemon, error::ApiResult};

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Per-rule series for at most this many rules (lowest ids); the rest are summed.
pub const MAX_RULE_SERIES: usize = 1000;

type Labels = Vec<(&'static str, String)>;

/// One metric family: name, help, type and (labels, value) per series.
type Family = (&'static str, &'static str, MetricType, Vec<(Labels, f64)>);

#[derive(Debug, Default)]
struct Sample {
    families: Vec<Family>,
}

impl Sample {
    fn push(&mut self, name: &'static str, help: &'static str, t: MetricType, series: Vec<(Labels, f64)>) {
        self.families.push((name, help, t, series));
    }
}

impl Collector for Sample {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, t, series) in &self.families {
            let mut fam = enc.encode_descriptor(name, help, None, *t)?;
            for (labels, v) in series {
                let e = fam.encode_family(labels)?;
                match t {
                    MetricType::Counter => ConstCounter::new(*v as u64).encode(e)?,
                    _ => ConstGauge::new(*v).encode(e)?,
                }
            }
        }
        Ok(())
    }
}

/// Interface and rule counters, read by the daemon itself (used when
/// netray-flows' collector is not built in).
#[cfg_attr(feature = "flows", allow(dead_code))]
fn kernel_sample(d: &Daemon) -> Sample {
    use MetricType::{Counter, Gauge};
    let mut s = Sample::default();
    if let Ok((ifaces, table)) = d.firewall_status() {
        let per = |f: &dyn Fn(&netray_core::dispatcher::IfStats) -> u64| -> Vec<(Labels, f64)> {
            ifaces.iter().map(|i| (vec![("interface", i.interface.clone())], f(&i.stats) as f64)).collect()
        };
        s.push("netray_interface_up", "1 while netray is attached to the interface", Gauge,
            ifaces.iter().map(|i| (vec![("interface", i.interface.clone())], 1.0)).collect());
        let mut pk = Vec::new();
        let mut by = Vec::new();
        for i in &ifaces {
            for (verdict, p, b) in [("pass", i.stats.passed, i.stats.bytes_seen - i.stats.bytes_dropped.min(i.stats.bytes_seen)),
                                    ("drop", i.stats.dropped, i.stats.bytes_dropped)] {
                let l = vec![("interface", i.interface.clone()), ("hook", "xdp".to_string()), ("verdict", verdict.to_string())];
                pk.push((l.clone(), p as f64));
                by.push((l, b as f64));
            }
            for t in &i.tc {
                for (verdict, p, b) in [("pass", t.stats.passed, t.stats.bytes_seen - t.stats.bytes_dropped.min(t.stats.bytes_seen)),
                                        ("drop", t.stats.dropped, t.stats.bytes_dropped)] {
                    let l = vec![("interface", i.interface.clone()), ("hook", t.hook.to_string()), ("verdict", verdict.to_string())];
                    pk.push((l.clone(), p as f64));
                    by.push((l, b as f64));
                }
            }
        }
        s.push("netray_interface_packets", "Packets seen by netray's programs", Counter, pk);
        s.push("netray_interface_bytes", "Bytes seen by netray's programs", Counter, by);
        s.push("netray_monitor_events_lost", "Monitor records lost on a full event ring", Counter, per(&|st| st.events_lost));
        s.push("netray_firewall_rules", "Deny rules in the firewall", Gauge, vec![(vec![], table.rules as f64)]);
        s.push("netray_firewall_generation", "Rule table generation (bumped by every published change)", Gauge,
            vec![(vec![], table.generation as f64)]);
    }
    if let Ok((_, rules)) = d.rules() {
        let mut pk = Vec::new();
        let mut by = Vec::new();
        let (mut op, mut ob) = (0u64, 0u64);
        for (n, r) in rules.iter().enumerate() {
            if n < MAX_RULE_SERIES {
                let mut text = r.cidr.clone();
                if let Some(p) = &r.proto { text += &format!(" {p}"); }
                if let Some(p) = r.port { text += &format!(":{p}"); }
                text += &format!(" {}", r.dir);
                let l = vec![("rule_id", r.id.to_string()), ("rule", text)];
                pk.push((l.clone(), r.packets as f64));
                by.push((l, r.bytes as f64));
            } else {
                op += r.packets;
                ob += r.bytes;
            }
        }
        if rules.len() > MAX_RULE_SERIES {
            let l = vec![("rule_id", "other".to_string()), ("rule", "other".to_string())];
            pk.push((l.clone(), op as f64));
            by.push((l, ob as f64));
        }
        s.push("netray_firewall_rule_packets", "Packets dropped by each rule", Counter, pk);
        s.push("netray_firewall_rule_bytes", "Bytes dropped by each rule", Counter, by);
    }
    s
}

/// The daemon's own series: revision, event streams, requests.
fn daemon_sample(d: &Daemon) -> Sample {
    use MetricType::{Counter, Gauge};
    let mut s = Sample::default();
    if let Ok((rev, _)) = d.rules() {
        s.push("netray_daemon_revision", "Revision of the daemon's rules and interfaces", Gauge, vec![(vec![], rev as f64)]);
    }
    let ev = d.hubs.stats();
    let c = &d.counters;
    s.push("netray_daemon_sse_clients", "Clients reading event streams", Gauge, vec![(vec![], ev.clients as f64)]);
    s.push("netray_daemon_sse_dropped_events", "Events dropped because a client read too slowly", Counter,
        vec![(vec![], ev.dropped_total as f64)]);
    s.push("netray_daemon_http_requests", "HTTP requests answered", Counter, vec![
        (vec![("class", "ok".to_string())], c.requests.load(Ordering::Relaxed)
            .saturating_sub(c.client_errors.load(Ordering::Relaxed) + c.server_errors.load(Ordering::Relaxed)) as f64),
        (vec![("class", "client_error".to_string())], c.client_errors.load(Ordering::Relaxed) as f64),
        (vec![("class", "server_error".to_string())], c.server_errors.load(Ordering::Relaxed) as f64),
    ]);
    s
}

/// The metrics as OpenMetrics text. With the `flows` feature the kernel's
/// counters come from netray-flows' collector (which adds the flow table's),
/// else from the daemon's own reader; the daemon's series are added either way.
pub fn render(d: &Daemon) -> String {
    let mut r = Registry::default();
    #[cfg(feature = "flows")]
    {
        let interfaces = {
            let _lock = d.pin.lock();
            netray_core::Dispatcher::list(&d.pin)
                .map(|l| l.iter().map(|x| x.interface().clone()).collect())
                .unwrap_or_default()
        };
        let cfg = netray_flows::metrics::MetricsConfig {
            pin: d.pin.clone(),
            interfaces,
            top_flows: 0,
            max_rules: MAX_RULE_SERIES,
        };
        r.register_collector(Box::new(netray_flows::metrics::NetrayCollector::new(cfg)));
    }
    #[cfg(not(feature = "flows"))]
    r.register_collector(Box::new(kernel_sample(d)));
    r.register_collector(Box::new(daemon_sample(d)));
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &r).is_err() {
        out = "# EOF\n".into();
    }
    out
}

pub async fn metrics(State(d): State<Arc<Daemon>>) -> ApiResult<Response> {
    let text = blocking(move || Ok(render(&d))).await?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}
