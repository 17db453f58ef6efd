//! Prometheus metrics of netray's kernel counters, read at scrape time, and
//! the exposition both `netray top --metrics` and the daemon serve.
//!
//! - [`exposition`]: what a scrape read ([`Scrape`]), the 0.0.4 text and
//!   OpenMetrics encoders and the `Accept` negotiation between them;
//! - [`process`]: the standard `process_*` metrics;
//! - [`server`]: the small HTTP server of `netray top --metrics`, and the
//!   HTTP answer the daemon gives too ([`server::respond`]);
//! - here: [`NetrayCollector`], which reads the pinned maps directly on each
//!   scrape, without taking the pin lock, so a scrape never waits for a rule
//!   change; and [`rules`], the bounded per-rule series.
//!
//! Series (counters are named here without `_total`; both formats add it):
//! - `netray_interface_up{interface}`: 1 while netray is attached there, 0 if not
//! - `netray_interface_packets_total{interface,direction,verdict}` and
//!   `netray_interface_bytes_total{...}`: every packet the dispatcher saw
//!   (direction "ingress": XDP, "egress": TC), verdict "pass" or "drop"
//! - `netray_interface_audited_packets_total{interface,direction}`: passed packets an audit rule matched
//! - `netray_interface_non_ip_packets_total`, `netray_interface_truncated_packets_total`
//! - `netray_monitor_events_total` / `netray_monitor_events_lost_total{interface}`:
//!   monitor records written to / lost on the event ring (ring full)
//! - `netray_flows_entries`, `netray_flows_capacity{interface}` (gauges),
//!   `netray_flows_inserts_total`, `netray_flows_evictions_total`,
//!   `netray_flows_insert_failures_total{interface}`
//! - `netray_firewall_rules` (gauge), `netray_firewall_rule_packets_total{rule_id,rule}`
//!   and `netray_firewall_rule_bytes_total{...}`: the K rules with the most hits
//!   (see [`RuleSeries`]), the others summed under `rule_id="other"`
//! - `netray_limits` (gauge), `netray_limit_packets_total{limit_id,limit,verdict}`,
//!   `netray_limit_bytes_total{...}`, `netray_limit_bans_total{limit_id,limit}` and, for
//!   per-source limits, `netray_limit_sources`, `netray_limit_sources_banned` (gauges) and
//!   `netray_limit_source_evictions_total` (see [`limits`])
//! - with `top_flows` K > 0 only: `netray_flow_packets_total` and
//!   `netray_flow_bytes_total{interface,direction,proto,icmp,src,dst,sport,dport}` for the K
//!   flows with the most bytes
//! - `netray_scrape_collector_success{collector}`: 0 when a source
//!   ("interfaces", "flow_tables", "rules", "limits", "process") could not be read; its
//!   series are then left out, never reported as zeros.
//!
//! Label cardinality is bounded by the number of interfaces, by the top-K of
//! rules and by `top_flows`: no per-flow series unless asked for.

pub mod exposition;
pub mod limits;
pub mod process;
pub mod server;

use std::path::Path;

use libbpf_rs::MapHandle;
use netray_core::{if_stats::IfCounters, map_names as M, maps, Hook, Interface, PinDir, Result};
use netray_ebpf::abi::nr_if_stats;
use netray_firewall::{Action, Firewall, RuleStatus};

pub use exposition::{Format, Kind, Labels, Scrape, Value};
pub use server::{respond, serve, MetricsServer};

use crate::{
    snapshot::{top_k, FlowRate, SortBy},
    table::{proto_name, FlowTable, TableCounters},
};

/// Default number of rules with their own series.
pub const DEFAULT_TOP_RULES: usize = 20;

/// Which rules get their own series: the `top` rules with the most hits
/// (packets, then bytes, then the lower id); `top = 0`: none. Rules without
/// a hit get none unless `zero_hits` is set, which fills the `top` with them
/// (lowest ids first). Every other rule is summed in one `rule_id="other"`
/// series, so a sum over the rules is always every hit.
///
/// When a rule enters the top, `other` drops by its count (and rises when one
/// leaves): rate() reads such a drop as a counter reset. For the drop rate of
/// the whole firewall use `netray_interface_packets_total{verdict="drop"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleSeries {
    pub top: usize,
    pub zero_hits: bool,
}

impl Default for RuleSeries {
    fn default() -> Self {
        RuleSeries { top: DEFAULT_TOP_RULES, zero_hits: false }
    }
}

/// A rule's hits, as any reader of the rules has them.
pub trait RuleHits {
    fn id(&self) -> u32;
    fn packets(&self) -> u64;
    fn bytes(&self) -> u64;
    /// The rule as written (`netray deny list`'s form), for its `rule` label.
    fn text(&self) -> String;
}

impl RuleHits for RuleStatus {
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
        rule_label(self.rule.to_string(), self.action)
    }
}

/// A rule's `rule` label: as written, and "(audit)" after an audit rule,
/// whose hits are the packets it let pass.
pub fn rule_label(rule: String, action: Action) -> String {
    match action {
        Action::Deny => rule,
        Action::Audit => format!("{rule} (audit)"),
        // An allow rule's text starts with "allow" already.
        Action::Allow => rule,
    }
}

/// The indices of the rules that get their own series, by id.
pub fn select_rules<R: RuleHits>(rules: &[R], sel: RuleSeries) -> Vec<usize> {
    let mut hit: Vec<usize> = (0..rules.len()).filter(|&i| rules[i].packets() > 0 || rules[i].bytes() > 0).collect();
    hit.sort_by_key(|&i| (std::cmp::Reverse(rules[i].packets()), std::cmp::Reverse(rules[i].bytes()), rules[i].id()));
    hit.truncate(sel.top);
    if sel.zero_hits && hit.len() < sel.top {
        let mut idle: Vec<usize> = (0..rules.len()).filter(|&i| rules[i].packets() == 0 && rules[i].bytes() == 0).collect();
        idle.sort_by_key(|&i| rules[i].id());
        idle.truncate(sel.top - hit.len());
        hit.extend(idle);
    }
    hit.sort_by_key(|&i| rules[i].id());
    hit
}

/// The rule families: `netray_firewall_rules` and the per-rule hits of the
/// selected rules plus `other` (source "rules").
pub fn rules<R: RuleHits>(out: &mut Scrape, rules: &[R], sel: RuleSeries) {
    out.gauge("netray_firewall_rules", "Deny rules installed", vec![(Vec::new(), rules.len() as u64)]);
    let shown = select_rules(rules, sel);
    let (mut packets, mut bytes) = (Vec::new(), Vec::new());
    let (mut other_p, mut other_b) = (0u64, 0u64);
    for r in rules {
        other_p += r.packets();
        other_b += r.bytes();
    }
    for &i in &shown {
        let r = &rules[i];
        other_p -= r.packets();
        other_b -= r.bytes();
        let labels: Labels = vec![("rule_id", r.id().to_string()), ("rule", r.text())];
        packets.push((labels.clone(), r.packets()));
        bytes.push((labels, r.bytes()));
    }
    let other: Labels = vec![("rule_id", "other".to_string()), ("rule", "other".to_string())];
    packets.push((other.clone(), other_p));
    bytes.push((other, other_b));
    out.counter(
        "netray_firewall_rule_packets",
        "Packets dropped by each of the deny rules with the most hits; the other rules summed as rule_id other",
        packets,
    );
    out.counter(
        "netray_firewall_rule_bytes",
        "Bytes dropped by each of the deny rules with the most hits; the other rules summed as rule_id other",
        bytes,
    );
    out.source("rules", Ok(()));
}

/// What the collector reports on.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub pin: PinDir,
    pub interfaces: Vec<Interface>,
    /// Per-flow series for this many flows per interface (0: none).
    pub top_flows: usize,
    /// Which rules get their own series.
    pub rules: RuleSeries,
    /// Report the interfaces' flow tables (`netray_flows_*`, per-flow series).
    pub flow_tables: bool,
}

/// One attached interface's counters as read for a scrape.
#[derive(Debug)]
struct IfSample {
    name: String,
    /// The XDP dispatcher's counters: received packets.
    stats: nr_if_stats,
    /// The TC egress program's counters: sent packets (zero while it is not attached).
    egress: nr_if_stats,
    /// Monitor records lost at any hook.
    events_lost: u64,
}

/// One interface's flow table as read for a scrape.
struct TableSample {
    name: String,
    table: TableCounters,
    top: Vec<FlowRate>,
}

/// Reads netray's counters on every scrape.
#[derive(Debug, Clone)]
pub struct NetrayCollector {
    cfg: MetricsConfig,
}

fn open(dir: &Path, name: &str) -> Result<MapHandle> {
    maps::open_pinned(&dir.join(name))
}

impl NetrayCollector {
    pub fn new(cfg: MetricsConfig) -> NetrayCollector {
        NetrayCollector { cfg }
    }

    /// Interfaces, flow tables, rules and limits (read from the pins).
    pub fn scrape(&self, out: &mut Scrape) {
        self.scrape_interfaces(out);
        match Firewall::open(self.cfg.pin.clone()).list() {
            Ok(list) => rules(out, &list, self.cfg.rules),
            Err(e) => out.source("rules", Err(format!("reading the rules: {e}"))),
        }
        limits::scrape(out, &self.cfg.pin);
    }

    /// The interfaces' counters and, with `flow_tables`, their flow tables
    /// (sources "interfaces" and "flow_tables").
    pub fn scrape_interfaces(&self, out: &mut Scrape) {
        let mut up = Vec::new();
        let mut ifs = Vec::new();
        let mut tables = Vec::new();
        out.source("interfaces", Ok(()));
        if self.cfg.flow_tables {
            out.source("flow_tables", Ok(()));
        }
        for iface in &self.cfg.interfaces {
            let dir = self.cfg.pin.if_dir(iface.index);
            let label = || vec![("interface", iface.name.clone())];
            match dir.join(netray_core::dispatcher::LINK_PIN).try_exists() {
                Ok(false) => {
                    up.push((label(), 0u64));
                    continue;
                }
                Ok(true) => {}
                Err(e) => {
                    out.source("interfaces", Err(format!("{}: {e}", iface.name)));
                    continue;
                }
            }
            match self.read_interface(&dir, &iface.name) {
                Ok(s) => {
                    up.push((label(), 1));
                    ifs.push(s);
                }
                Err(e) => {
                    out.source("interfaces", Err(format!("{}: {e}", iface.name)));
                    continue;
                }
            }
            if self.cfg.flow_tables {
                match self.read_table(&dir, &iface.name) {
                    Ok(t) => tables.push(t),
                    Err(e) => out.source("flow_tables", Err(format!("{}: {e}", iface.name))),
                }
            }
        }
        self.interface_families(out, up, &ifs);
        self.table_families(out, &tables);
    }

    fn read_interface(&self, dir: &Path, name: &str) -> Result<IfSample> {
        let counters = IfCounters::open(dir)?;
        let slot = |hook: Hook| -> Result<nr_if_stats> { counters.slot(hook.stats_slot()) };
        let mut events_lost = 0;
        for hook in Hook::ALL {
            events_lost += slot(hook)?.events_lost;
        }
        Ok(IfSample { name: name.to_string(), stats: slot(Hook::Xdp)?, egress: slot(Hook::TcEgress)?, events_lost })
    }

    fn read_table(&self, dir: &Path, name: &str) -> Result<TableSample> {
        let table = FlowTable::from_maps(open(dir, M::IF_FLOWS)?, open(dir, M::IF_FLOW_STATS)?, open(dir, M::IF_FLOW_CACHE)?)?;
        let (flows, table) = table.read()?;
        let top = if self.cfg.top_flows > 0 {
            let rates = flows.into_iter().map(|flow| FlowRate { flow, pps: None, bps: None }).collect();
            top_k(rates, SortBy::Bytes, self.cfg.top_flows)
        } else {
            Vec::new()
        };
        Ok(TableSample { name: name.to_string(), table, top })
    }

    fn interface_families(&self, out: &mut Scrape, up: Vec<(Labels, u64)>, ifs: &[IfSample]) {
        let per_if = |f: fn(&IfSample) -> u64| -> Vec<(Labels, u64)> {
            ifs.iter().map(|s| (vec![("interface", s.name.clone())], f(s))).collect()
        };
        let by_verdict = |pass: fn(&nr_if_stats) -> u64, drop: fn(&nr_if_stats) -> u64| -> Vec<(Labels, u64)> {
            let mut v = Vec::new();
            for s in ifs {
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
        out.gauge("netray_interface_up", "1 while netray is attached to the interface, 0 if not", up);
        out.counter(
            "netray_interface_packets",
            "Packets netray saw, by direction (ingress: XDP, egress: TC) and verdict",
            by_verdict(|s| s.seen.saturating_sub(s.dropped), |s| s.dropped),
        );
        out.counter(
            "netray_interface_bytes",
            "Bytes netray saw, by direction (ingress: XDP, egress: TC) and verdict",
            by_verdict(|s| s.bytes_seen.saturating_sub(s.bytes_dropped), |s| s.bytes_dropped),
        );
        out.counter("netray_interface_non_ip_packets", "Frames that were not IPv4/IPv6", per_if(|s| s.stats.non_ip));
        out.counter(
            "netray_interface_truncated_packets",
            "Frames that ended inside a header the parser needed",
            per_if(|s| s.stats.truncated),
        );
        let audited = ifs
            .iter()
            .flat_map(|s| {
                [("ingress", s.stats.audited), ("egress", s.egress.audited)]
                    .map(|(d, n)| (vec![("interface", s.name.clone()), ("direction", d.to_string())], n))
            })
            .collect();
        out.counter(
            "netray_interface_audited_packets",
            "Packets an audit rule matched: passed, counted as that rule's would-drop hits (included in verdict pass)",
            audited,
        );
        out.counter("netray_monitor_events", "Monitor records written to the event ring", per_if(|s| s.stats.events_sent));
        out.counter(
            "netray_monitor_events_lost",
            "Monitor records lost because the event ring was full",
            per_if(|s| s.events_lost),
        );
    }

    fn table_families(&self, out: &mut Scrape, tables: &[TableSample]) {
        let per_if = |f: fn(&TableCounters) -> u64| -> Vec<(Labels, u64)> {
            tables.iter().map(|t| (vec![("interface", t.name.clone())], f(&t.table))).collect()
        };
        out.gauge("netray_flows_entries", "Flows in the flow table", per_if(|t| t.entries));
        out.gauge("netray_flows_capacity", "Flows the flow table holds at most", per_if(|t| t.capacity.into()));
        out.counter("netray_flows_inserts", "Flow table entries created", per_if(|t| t.inserts));
        out.counter(
            "netray_flows_evictions",
            "Flows evicted from the full flow table (inserts - entries)",
            per_if(|t| t.evictions),
        );
        out.counter(
            "netray_flows_insert_failures",
            "Packets of new flows the flow table could not store",
            per_if(|t| t.insert_failed),
        );
        if self.cfg.top_flows == 0 {
            return;
        }
        let (mut packets, mut bytes) = (Vec::new(), Vec::new());
        for t in tables {
            for f in &t.top {
                let k = &f.flow.key;
                let (sport, dport) = k.ports().unwrap_or((0, 0));
                // Direction and ICMP type/code are part of a flow's
                // identity: without them an echo reply and an error
                // between the same hosts would be one series twice.
                let icmp = k.icmp().map_or("-".to_string(), |(t, c)| format!("{t}/{c}"));
                let labels: Labels = vec![
                    ("interface", t.name.clone()),
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
        out.counter("netray_flow_packets", "Packets of the top flows (by bytes)", packets);
        out.counter("netray_flow_bytes", "Bytes of the top flows (by bytes)", bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct R(u32, u64);

    impl RuleHits for R {
        fn id(&self) -> u32 {
            self.0
        }
        fn packets(&self) -> u64 {
            self.1
        }
        fn bytes(&self) -> u64 {
            self.1 * 100
        }
        fn text(&self) -> String {
            format!("10.0.0.{}/32", self.0)
        }
    }

    fn ids(rules: &[R], sel: RuleSeries) -> Vec<u32> {
        select_rules(rules, sel).into_iter().map(|i| rules[i].0).collect()
    }

    #[test]
    fn the_rules_with_the_most_hits_get_series_and_the_rest_sum_in_other() {
        // 50 rules, of which 5 have hits.
        let rules: Vec<R> = (1..=50).map(|id| R(id, [(7, 5), (9, 50), (20, 1), (33, 50), (40, 2)]
            .iter().find(|(i, _)| *i == id).map_or(0, |(_, n)| *n))).collect();
        assert_eq!(ids(&rules, RuleSeries { top: 20, zero_hits: false }), [7, 9, 20, 33, 40]);
        // Ties go to the lower id; zero-hit rules are not among the top.
        assert_eq!(ids(&rules, RuleSeries { top: 3, zero_hits: false }), [7, 9, 33]);
        assert_eq!(ids(&rules, RuleSeries { top: 0, zero_hits: true }), Vec::<u32>::new());
        // Asked for: the top filled with idle rules, lowest ids first.
        assert_eq!(ids(&rules, RuleSeries { top: 8, zero_hits: true }), [1, 2, 3, 7, 9, 20, 33, 40]);

        let mut s = Scrape::default();
        super::rules(&mut s, &rules, RuleSeries { top: 2, zero_hits: false });
        let fam = |name: &str| s.families().iter().find(|f| f.name == name).unwrap().series.clone();
        let packets = fam("netray_firewall_rule_packets");
        let got: Vec<(String, Value)> = packets.iter().map(|(l, v)| (l[0].1.clone(), *v)).collect();
        assert_eq!(got, [("9".into(), Value::Int(50)), ("33".into(), Value::Int(50)), ("other".into(), Value::Int(8))]);
        assert_eq!(packets[0].0[1], ("rule", "10.0.0.9/32".to_string()));
        assert_eq!(fam("netray_firewall_rule_bytes")[2].1, Value::Int(800));
        assert_eq!(fam("netray_firewall_rules"), [(Vec::new(), Value::Int(50))]);
        assert_eq!(s.errors().count(), 0);
    }
}
