//! /metrics: the interfaces' counters, the rules' hits (the rules with the
//! most hits by name, the rest summed), the daemon's own counters and the
//! `process_*` metrics, read at scrape time by netray-flows' collector and
//! written in the format the request asks for: the text format 0.0.4 by
//! default, OpenMetrics 1.0.0 for `Accept: application/openmetrics-text`
//! (netray_flows::metrics::Format::negotiate, shared with `netray top`).
//!
//! A source that cannot be read (the interfaces, a flow table, the rules,
//! /proc) is left out and reported by `netray_scrape_collector_success 0`,
//! with the error in the daemon's log: the scrape still answers 200 with what
//! could be read, never with zeros in place of what could not.

use std::sync::{atomic::Ordering, Arc};

use axum::{extract::State, http::HeaderMap, response::Response};
use netray_core::Dispatcher;
use netray_firewall::Rule;
use netray_flows::metrics::{self, MetricsConfig, NetrayCollector, RuleHits, RuleSeries, Scrape};

use super::blocking;
use crate::{
    daemon::{Daemon, RuleView},
    error::ApiResult,
};

// The same shape as netray-flows' impl for RuleStatus: the trait is the shared part,
// each type brings its own fields and its own way to write the rule.
impl RuleHits for RuleView {
    fn id(&self) -> u32 {
        self.id
    }
    fn packets(&self) -> u64 {
        self.packets
    }
    fn bytes(&self) -> u64 {
        self.bytes
    }
    fn text(&self) -> String {
        // As `netray deny list` and `netray top --metrics` write it.
        let rule = Rule::parse(&self.cidr, self.proto.as_deref(), self.port, Some(&self.dir))
            .map_or_else(|_| self.cidr.clone(), |r| r.to_string());
        metrics::rule_label(rule, self.action)
    }
}

/// The daemon's own series: revision, event streams, requests.
fn daemon_families(d: &Daemon, s: &mut Scrape, revision: Option<u64>) {
    if let Some(rev) = revision {
        s.gauge("netray_daemon_revision", "Revision of the daemon's rules and interfaces", vec![(Vec::new(), rev)]);
    }
    drops_families(d, s);
    let ev = d.hubs.stats();
    let c = &d.counters;
    s.gauge("netray_daemon_sse_clients", "Clients reading event streams", vec![(Vec::new(), ev.clients as u64)]);
    s.counter(
        "netray_daemon_sse_dropped_events",
        "Events dropped because a client read too slowly",
        vec![(Vec::new(), ev.dropped_total)],
    );
    let (requests, client, server) = (
        c.requests.load(Ordering::Relaxed),
        c.client_errors.load(Ordering::Relaxed),
        c.server_errors.load(Ordering::Relaxed),
    );
    s.counter(
        "netray_daemon_http_requests",
        "HTTP requests answered, by class of status",
        vec![
            (vec![("class", "ok".to_string())], requests.saturating_sub(client + server)),
            (vec![("class", "client_error".to_string())], client),
            (vec![("class", "server_error".to_string())], server),
        ],
    );
}

/// The drops counted by the drop streams: the all-interfaces stream's when
/// there is one (it sees every interface's), else the interface streams' summed.
fn drops_families(d: &Daemon, s: &mut Scrape) {
    let streams = d.drop_counts.lock().unwrap_or_else(|e| e.into_inner());
    if streams.is_empty() {
        return;
    }
    let mut counts = netray_drops::DropCounts::default();
    let mut lost = 0;
    match streams.get("") {
        Some((c, l)) => {
            counts.merge(c);
            lost = *l;
        }
        None => {
            for (c, l) in streams.values() {
                counts.merge(c);
                lost += l;
            }
        }
    }
    netray_drops::metrics::scrape(s, &counts, lost);
}

/// Everything /metrics reports, read now. Sources that could not be read
/// are logged on stderr.
pub fn scrape(d: &Daemon) -> Scrape {
    let mut s = Scrape::default();
    let listed = d.pin.lock().and_then(|_lock| Dispatcher::list(&d.pin));
    let interfaces = match listed {
        Ok(l) => l.iter().map(|x| x.interface().clone()).collect(),
        Err(e) => {
            s.source("interfaces", Err(format!("listing the interfaces: {e}")));
            Vec::new()
        }
    };
    let m = &d.config.metrics;
    let rule_series = RuleSeries { top: m.top_rules, zero_hits: m.zero_hit_rules };
    let cfg = MetricsConfig {
        pin: d.pin.clone(),
        interfaces,
        top_flows: m.top_flows,
        rules: rule_series,
        flow_tables: cfg!(feature = "flows"),
    };
    NetrayCollector::new(cfg).scrape_interfaces(&mut s);
    // The rules as the API reads them (which also notices the CLI's changes).
    let revision = match d.rules() {
        Ok((rev, rules)) => {
            metrics::rules(&mut s, &rules, rule_series);
            Some(rev)
        }
        Err(e) => {
            s.source("rules", Err(format!("reading the rules: {}", e.body.error)));
            None
        }
    };
    metrics::limits::scrape(&mut s, &d.pin);
    daemon_families(d, &mut s, revision);
    d.flows.scrape_ipfix(&mut s);
    metrics::process::scrape(&mut s);
    for (source, e) in s.errors() {
        eprintln!("netray daemon: /metrics: {source} not read: {e}");
    }
    s
}

pub async fn metrics(State(d): State<Arc<Daemon>>, headers: HeaderMap) -> ApiResult<Response> {
    let s = blocking(move || Ok(scrape(&d))).await?;
    Ok(metrics::respond(&headers, s))
}
