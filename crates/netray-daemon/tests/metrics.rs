//! The daemon's /metrics as Prometheus reads it: the format the Accept header
//! asks for, `promtool check metrics` clean, per-rule series bounded to the
//! rules with the most hits (the rest summed, so sums stay right), the
//! process_* metrics, and a read that fails reported as such, never as zeros.

mod common;
#[path = "../../netray-tests/support/promtool.rs"]
mod promtool;

use std::process::Command;

use common::{Env, TOKEN};
use netray_daemon::config::{Config, MetricsConfig};
use netray_lab::Family;
use promtool::promtool_clean;

const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// GET /metrics (with this Accept header): 200, and (Content-Type, body).
fn get(env: &Env, accept: Option<&str>) -> (String, String) {
    let mut req = ureq::get(&env.client().url("/metrics"));
    if let Some(a) = accept {
        req = req.set("Accept", a);
    }
    let resp = req.call().unwrap_or_else(|e| panic!("GET /metrics (Accept: {accept:?}): {e}"));
    assert_eq!(resp.header("vary"), Some("accept"));
    let content_type = resp.header("content-type").unwrap_or_default().to_string();
    (content_type, resp.into_string().unwrap())
}

/// The value of the one sample whose line starts with `series` (name and
/// labels as written, up to the value).
fn value(text: &str, series: &str) -> f64 {
    let found: Vec<&str> = text.lines().filter(|l| l.starts_with(series)).collect();
    assert_eq!(found.len(), 1, "{series}: {found:?}\n{text}");
    found[0].rsplit_once(' ').unwrap().1.parse().unwrap()
}

/// Pins the map pinned at `from` at `to` too.
fn bpftool_pin(from: &std::path::Path, to: &std::path::Path) {
    let out = Command::new("bpftool").arg("map").arg("pin").arg("pinned").arg(from).arg(to).output().expect("bpftool");
    assert!(out.status.success(), "bpftool map pin: {}", String::from_utf8_lossy(&out.stderr));
}

/// Pins the map pinned at `path` anew (another inode, the same map).
fn repin(path: &std::path::Path) {
    let tmp = path.with_file_name(format!("{}_repin", path.file_name().unwrap().to_str().unwrap()));
    bpftool_pin(path, &tmp);
    std::fs::remove_file(path).unwrap();
    bpftool_pin(&tmp, path);
    std::fs::remove_file(&tmp).unwrap();
}

fn config(top_rules: usize) -> Config {
    Config { metrics: MetricsConfig { top_rules, ..Default::default() }, ..Default::default() }
}

#[test]
fn metrics_are_negotiated_promtool_clean_and_bounded() {
    let env = Env::with_config("dmet", config(3));
    let c = env.client();
    let iface = env.iface().to_string();
    let peer = env.lab.peer_v4();
    assert_eq!(c.post("/v1/interfaces", &format!(r#"{{"name": "{iface}"}}"#)).status, 201);
    // 50 rules: 45 prefixes nobody sends from, and 5 that the lab's peer hits
    // 1 to 5 times each (UDP to ports 9001..9005).
    let mut rules: Vec<String> = (1..=45).map(|i| format!(r#"{{"cidr": "203.0.113.{i}"}}"#)).collect();
    rules.extend((1..=5).map(|p| format!(r#"{{"cidr": "{peer}", "proto": "udp", "port": {}}}"#, 9000 + p)));
    let added = c.post("/v1/rules", &format!("[{}]", rules.join(",")));
    assert_eq!(added.status, 201, "{}", added.text);
    for p in 1..=5u16 {
        assert_eq!(env.lab.udp_send(Family::V4, 9000 + p, 10, u64::from(p)).unwrap(), u64::from(p));
    }

    // Content-Type follows the Accept header; the 0.0.4 text by default.
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
                      text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    for (accept, want) in [
        (None, TEXT),
        (Some("*/*"), TEXT),
        (Some("text/plain"), TEXT),
        (Some("text/plain;version=0.0.4"), TEXT),
        (Some("application/json"), TEXT),
        (Some("application/openmetrics-text"), OPENMETRICS),
        (Some("application/openmetrics-text; version=1.0.0"), OPENMETRICS),
        (Some("application/openmetrics-text;q=0.2, text/plain"), TEXT),
        (Some(prometheus), OPENMETRICS),
    ] {
        assert_eq!(get(&env, accept).0, want, "Accept: {accept:?}");
    }

    // The text format: promtool finds nothing to say.
    let text = get(&env, None).1;
    promtool_clean(&text);
    assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{text}");
    assert!(text.contains("# TYPE netray_firewall_rule_packets_total counter\n"), "{text}");
    assert!(text.contains("# HELP netray_interface_packets_total "), "{text}");

    // OpenMetrics: the families without _total, samples with it, # EOF last.
    let om = get(&env, Some("application/openmetrics-text")).1;
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# TYPE netray_firewall_rule_packets counter\n"), "{om}");
    assert!(om.contains("# TYPE process_cpu_seconds counter\nprocess_cpu_seconds_total "), "{om}");
    for t in [&text, &om] {
        let pass = format!("netray_interface_packets_total{{interface=\"{iface}\",direction=\"ingress\",verdict=\"drop\"}}");
        assert_eq!(value(t, &pass), 15.0);
    }

    // Rules: 3 series (the most hits) and "other" (the 2 others' hits).
    assert_eq!(value(&text, "netray_firewall_rules "), 50.0);
    let series: Vec<&str> = text.lines().filter(|l| l.starts_with("netray_firewall_rule_packets_total{")).collect();
    assert_eq!(series.len(), 4, "{series:#?}");
    let hits = |port: u16| value(&text, &format!("netray_firewall_rule_packets_total{{rule_id=\"{}\",rule=\"{peer}/32 proto udp port {port}\"}}", 45 + port - 9000));
    assert_eq!((hits(9003), hits(9004), hits(9005)), (3.0, 4.0, 5.0));
    assert_eq!(value(&text, "netray_firewall_rule_packets_total{rule_id=\"other\",rule=\"other\"}"), 3.0);
    let bytes = |id: &str| value(&text, &format!("netray_firewall_rule_bytes_total{{rule_id=\"{id}\""));
    assert_eq!(bytes("other"), 3.0 * (14 + 20 + 8 + 10) as f64);
    assert_eq!(value(&text, "netray_scrape_collector_success{collector=\"rules\"}"), 1.0);

    // process_*: this test process (the daemon runs in it).
    let fds = std::fs::read_dir("/proc/self/fd").unwrap().count() as f64;
    let open = value(&text, "process_open_fds ");
    assert!(open >= 5.0 && (open - fds).abs() < 64.0, "process_open_fds {open}, /proc/self/fd has {fds}");
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    assert_eq!(value(&text, "process_max_fds "), lim.rlim_cur as f64);
    assert!(value(&text, "process_resident_memory_bytes ") > 1e6);
    assert!(value(&text, "process_virtual_memory_bytes ") >= value(&text, "process_resident_memory_bytes "));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let start = value(&text, "process_start_time_seconds ");
    assert!(start <= now && start > now - 3600.0, "start {start}, now {now}");
    assert!(value(&text, "process_cpu_seconds_total ") > 0.0);
}

#[test]
fn a_failed_read_is_reported_not_zeroed() {
    let env = Env::with_config("dmeterr", config(20));
    let c = env.client();
    let added = c.request("POST", "/v1/rules", Some(TOKEN), None, Some(r#"[{"cidr": "203.0.113.1"}, {"cidr": "203.0.113.2"}]"#));
    assert_eq!(added.status, 201, "{}", added.text);
    let text = get(&env, None).1;
    assert_eq!(value(&text, "netray_firewall_rules "), 2.0);

    // The rules' map disappears from under the daemon (as when it cannot be
    // opened): no rule count, no rule series, and the source says it failed.
    // (bpffs renames nothing and refuses dots in names: the map is pinned a
    // second time, kept alive by that pin while the first is gone, then
    // pinned back. fw_state is pinned anew so that the daemon, which keeps
    // the maps open while it is the same pin, opens them again.)
    let fw = env.pins.path.join("fw");
    let (pin, away) = (fw.join(netray_core::map_names::FW_RULES), fw.join("fw_rules_away"));
    bpftool_pin(&pin, &away);
    std::fs::remove_file(&pin).unwrap();
    repin(&fw.join(netray_core::map_names::FW_STATE));
    let (_, text_away) = get(&env, None);
    bpftool_pin(&away, &pin);
    std::fs::remove_file(&away).unwrap();
    let away = text_away;
    assert_eq!(value(&away, "netray_scrape_collector_success{collector=\"rules\"}"), 0.0);
    assert_eq!(value(&away, "netray_scrape_collector_success{collector=\"interfaces\"}"), 1.0);
    assert!(!away.contains("netray_firewall_rule"), "nothing said about rules: {}", away);
    assert!(!away.contains("netray_daemon_revision"), "{}", away);
    assert!(away.contains("process_open_fds "), "the rest is still reported: {}", away);
    promtool_clean(&away);

    // Back: the same numbers as before.
    let text = get(&env, None).1;
    assert_eq!(value(&text, "netray_firewall_rules "), 2.0);
    assert_eq!(value(&text, "netray_scrape_collector_success{collector=\"rules\"}"), 1.0);
}

/// The rate limits' series: promtool clean, bounded to {limit_id,limit}, and
/// equal to what `netray limit list --json` prints (`Limits::list`, which
/// GET /v1/limits serves too): a per-source limit with a burst of 5 and a
/// ban, and a whole-prefix limit nobody hits.
#[test]
fn limit_metrics_equal_the_limit_list() {
    let env = Env::new("dmlim");
    let c = env.client();
    let iface = env.iface().to_string();
    let peer = env.lab.peer_v4();
    assert_eq!(c.post("/v1/interfaces", &format!(r#"{{"name": "{iface}"}}"#)).status, 201);
    let body = format!(r#"{{"cidr": "{peer}/32", "rate": "1/h", "burst": 5, "per_source": true, "proto": "udp", "ban": "1h"}}"#);
    assert_eq!(c.post("/v1/limits", &body).status, 201);
    assert_eq!(c.post("/v1/limits", r#"{"cidr": "203.0.113.0/24", "rate": "10/s"}"#).status, 201);
    assert_eq!(env.lab.udp_send(Family::V4, 9000, 10, 12).unwrap(), 12);

    let text = get(&env, None).1;
    promtool_clean(&text);
    let list = netray_firewall::Limits::open(env.pins.pin()).list().unwrap();
    assert_eq!(serde_json::to_value(&list).unwrap(), c.get("/v1/limits").json()["limits"], "the API lists the same");
    let l = &list[0];
    // 5 in the burst; the 6th is over the rate and bans the source, which
    // loses the other 6 while banned.
    assert_eq!((l.passed, l.dropped, l.bans, l.sources_tracked, l.sources_banned), (5, 7, 1, 1, 1), "{list:?}");
    assert_eq!(value(&text, "netray_limits "), 2.0);
    let of = |name: &str, s: &netray_firewall::LimitStatus, extra: &str| {
        value(&text, &format!("{name}{{limit_id=\"{}\",limit=\"{}\"{extra}}}", s.id, s.limit))
    };
    for s in &list {
        assert_eq!(of("netray_limit_packets_total", s, ",verdict=\"pass\"") as u64, s.passed, "{s:?}");
        assert_eq!(of("netray_limit_packets_total", s, ",verdict=\"drop\"") as u64, s.dropped, "{s:?}");
        assert_eq!(of("netray_limit_bytes_total", s, ",verdict=\"pass\"") as u64, s.passed_bytes, "{s:?}");
        assert_eq!(of("netray_limit_bytes_total", s, ",verdict=\"drop\"") as u64, s.dropped_bytes, "{s:?}");
        assert_eq!(of("netray_limit_bans_total", s, "") as u64, s.bans, "{s:?}");
    }
    assert_eq!(of("netray_limit_sources", l, "") as u64, l.sources_tracked);
    assert_eq!(of("netray_limit_sources_banned", l, "") as u64, l.sources_banned);
    assert_eq!(of("netray_limit_source_evictions_total", l, "") as u64, l.sources_evicted);
    // The whole-prefix limit has no per-source series.
    assert!(!text.contains(&format!("netray_limit_sources{{limit_id=\"{}\"", list[1].id)), "{text}");
    assert_eq!(value(&text, "netray_scrape_collector_success{collector=\"limits\"}"), 1.0);
}
