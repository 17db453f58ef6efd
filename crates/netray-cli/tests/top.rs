//! End to end in the lab: `netray top` counts exactly the packets and bytes
//! the lab sends, per flow, alongside the firewall and the monitor; its
//! Prometheus metrics parse and agree with its JSON; a tiny flow table evicts
//! and says how many flows it evicted.
//!
//! XDP sees the packets arriving at the host end of the lab (sent from the
//! namespace); the answers the host sends back are egress, not seen.
//!
//! One job, one file (over 600 lines): `netray top` end to end, sharing the lab,
//! traffic and exposition-parsing helpers.

mod common;
#[path = "../../netray-tests/support/promtool.rs"]
mod promtool;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{IpAddr, SocketAddr, TcpStream},
    process::{Child, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use common::{
    expected::{transcript, Normalise},
    sizes::{ECHO, ETH, IP4, IP6, TCP, UDP},
    tcp_syns, Env,
};
use netray_lab::Family;
use promtool::promtool_clean;
use serde_json::Value;

const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A `netray top` running in the background, serving metrics; stopped with
/// SIGINT (killed if it does not stop) when dropped.
struct Top {
    child: Child,
    metrics: SocketAddr,
}

impl Top {
    fn spawn(env: &Env, extra: &[&str]) -> Top {
        let mut args = vec!["top", "-i", env.iface(), "--interval", "200ms", "--metrics", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut child = env.cmd(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("netray top");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
                // Not left running when the test fails.
                let _ = child.kill();
                let _ = child.wait();
                panic!("netray top never said where its metrics are");
            };
            if let Some(rest) = line.split("metrics at http://").nth(1) {
                let addr = rest.trim_end_matches("/metrics").parse().expect("metrics address");
                return Top { child, metrics: addr };
            }
            assert!(!line.contains("error"), "netray top failed: {line}");
        }
    }

    /// GET /metrics with this Accept header: 200, and (Content-Type, body).
    fn get(&self, accept: Option<&str>) -> (String, String) {
        let mut s = TcpStream::connect(self.metrics).expect("connecting to /metrics");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
        write!(s, "GET /metrics HTTP/1.0\r\nHost: netray\r\n{accept}\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "{head}");
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        assert_eq!(header("vary").as_deref(), Some("accept"), "{head}");
        (header("content-type").unwrap_or_default(), body.to_string())
    }

    /// The metrics in OpenMetrics, checked strictly.
    fn metrics(&self) -> Metrics {
        let (content_type, body) = self.get(Some("application/openmetrics-text"));
        assert_eq!(content_type, OPENMETRICS);
        parse_openmetrics(&body)
    }

    fn stop(mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = wait_timeout(&mut self.child, Duration::from_secs(10)).expect("netray top did not stop on SIGINT");
        assert!(status.success(), "netray top exited with {status}");
    }
}

impl Drop for Top {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
            if wait_timeout(&mut self.child, Duration::from_secs(5)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

fn wait_timeout(c: &mut Child, t: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + t;
    while Instant::now() < end {
        if let Some(s) = c.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

// ---- OpenMetrics text, checked strictly --------------------------------------

type Labels = BTreeMap<String, String>;

struct Metrics {
    samples: Vec<(String, Labels, f64)>,
}

impl Metrics {
    /// The value of the one sample with this name and (at least) these labels.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<f64> = self
            .samples
            .iter()
            .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|s| s.2)
            .collect();
        assert_eq!(found.len(), 1, "{name} {labels:?}: {} samples", found.len());
        found[0]
    }

    fn names(&self, prefix: &str) -> usize {
        self.samples.iter().filter(|s| s.0.starts_with(prefix)).count()
    }
}

fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

/// Parses the OpenMetrics text format and checks its grammar: metadata
/// before samples, every sample in a declared family (counters as
/// `<family>_total`), label sets well formed, values numbers, `# EOF` last.
fn parse_openmetrics(body: &str) -> Metrics {
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "must end with # EOF");
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut samples = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for l in &lines[..lines.len() - 1] {
        if let Some(meta) = l.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let (kind, name, rest) = (parts.next().unwrap(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            assert!(valid_name(name), "bad metric name in {l:?}");
            match kind {
                "TYPE" => {
                    assert!(["counter", "gauge", "info", "histogram", "summary", "unknown", "stateset", "gaugehistogram"]
                        .contains(&rest));
                    assert!(types.insert(name.to_string(), rest.to_string()).is_none(), "family {name} twice");
                    current = Some(name.to_string());
                }
                "HELP" => {
                    // Escaped as label values are: \\, \n and \" only.
                    let mut c = rest.chars();
                    while let Some(x) = c.next() {
                        assert!(x != '"', "unescaped quote in {l:?}");
                        if x == '\\' {
                            assert!(matches!(c.next(), Some('\\' | 'n' | '"')), "bad escape in {l:?}");
                        }
                    }
                }
                "UNIT" => {}
                _ => panic!("unknown metadata line {l:?}"),
            }
            continue;
        }
        assert!(!l.is_empty(), "empty line in the exposition");
        let (name_labels, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("no value in {l:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {l:?}"));
        let (name, labels) = match name_labels.split_once('{') {
            Some((n, rest)) => (n, parse_labels(rest.strip_suffix('}').unwrap_or_else(|| panic!("bad labels in {l:?}")))),
            None => (name_labels, Labels::new()),
        };
        assert!(valid_name(name), "bad sample name in {l:?}");
        let family = current.as_deref().unwrap_or_else(|| panic!("sample before any # TYPE: {l:?}"));
        let ok = match types[family].as_str() {
            "counter" => name == format!("{family}_total") || name == format!("{family}_created"),
            _ => name == family,
        };
        assert!(ok, "sample {name} does not belong to family {family}");
        assert!(seen.insert((name.to_string(), format!("{labels:?}"))), "duplicate series {l:?}");
        samples.push((name.to_string(), labels, value));
    }
    Metrics { samples }
}

fn parse_labels(s: &str) -> Labels {
    let mut out = Labels::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (k, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("bad label in {s:?}"));
        assert!(valid_name(k), "bad label name {k:?}");
        let mut v = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => v.push('\n'),
                    Some((_, c)) => v.push(c),
                    None => panic!("bad escape in {s:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => v.push(c),
                None => panic!("unterminated label value in {s:?}"),
            }
        };
        assert!(out.insert(k.to_string(), v).is_none(), "label {k} twice");
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    out
}

// ---- traffic ------------------------------------------------------------------

/// One flow as `top --json` reports it, found by protocol, source and
/// destination port (or ICMP type); panics unless exactly one matches.
/// The one ingress flow that matches.
fn flow<'a>(j: &'a Value, proto: &str, src: IpAddr, dport: Option<u64>, icmp_type: Option<u64>) -> &'a Value {
    flow_dir(j, "ingress", proto, src, dport, icmp_type)
}

fn flow_dir<'a>(
    j: &'a Value,
    dir: &str,
    proto: &str,
    src: IpAddr,
    dport: Option<u64>,
    icmp_type: Option<u64>,
) -> &'a Value {
    let src = src.to_string();
    let found: Vec<&Value> = j["flows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["direction"] == dir
                && f["proto"] == proto
                && f["src"] == src.as_str()
                && dport.is_none_or(|p| f["dport"] == p)
                && icmp_type.is_none_or(|t| f["icmp_type"] == t)
        })
        .collect();
    assert_eq!(found.len(), 1, "{proto} from {src} to port {dport:?}: {j:#}");
    found[0]
}

fn packets_bytes(f: &Value) -> (u64, u64) {
    (f["packets"].as_u64().unwrap(), f["bytes"].as_u64().unwrap())
}

fn features(env: &Env) -> Vec<String> {
    let st = env.json(&["firewall", "status", "--json"]);
    st["interfaces"][0]["features"]
        .as_array()
        .map(|a| a.iter().map(|f| f.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn wait_for_feature(env: &Env, feature: &str) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if features(env).iter().any(|f| f == feature) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{feature} never came up");
}

// ---- the tests ------------------------------------------------------------------

#[test]
fn top_counts_every_packet_and_byte_per_flow_alongside_firewall_and_monitor() {
    let env = Env::new("top");
    let (peer4, peer6): (IpAddr, IpAddr) = (env.lab.peer_v4().into(), env.lab.peer_v6().into());
    let (host4, host6): (IpAddr, IpAddr) = (env.lab.host_v4().into(), env.lab.host_v6().into());

    // The firewall, a monitor and two flow sessions on one interface.
    env.ok(&["firewall", "attach", "-i", env.iface()]);
    env.ok(&["deny", "add", &peer4.to_string(), "--proto", "udp", "--port", "9004"]);
    let monitor = env
        .cmd(&["monitor", "-i", env.iface(), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_feature(&env, "monitor");
    let top = Top::spawn(&env, &["--metrics-top-flows", "50"]);
    assert_eq!(features(&env), ["firewall", "monitor", "flows"]);

    // Known packets of known sizes, on eight flows.
    assert_eq!(env.lab.udp_send(Family::V4, 9001, 100, 7).unwrap(), 7);
    assert_eq!(env.lab.udp_send(Family::V6, 9002, 200, 5).unwrap(), 5);
    assert_eq!(env.lab.udp_send(Family::V4, 9004, 30, 3).unwrap(), 3); // denied
    assert_eq!(env.lab.ping(Family::V4, 3).unwrap(), 3);
    assert_eq!(env.lab.ping(Family::V6, 2).unwrap(), 2);
    tcp_syns(&env, false, 40001, 9003, 4);
    tcp_syns(&env, true, 40002, 9003, 6);
    std::thread::sleep(Duration::from_millis(300));

    let j = env.json(&["top", "-i", env.iface(), "--once", "--json", "--interval", "0"]);
    let want: Vec<(&Value, (u64, u64))> = vec![
        (flow(&j, "udp", peer4, Some(9001), None), (7, 7 * (ETH + IP4 + UDP + 100))),
        (flow(&j, "udp", peer6, Some(9002), None), (5, 5 * (ETH + IP6 + UDP + 200))),
        (flow(&j, "udp", peer4, Some(9004), None), (3, 3 * (ETH + IP4 + UDP + 30))),
        (flow(&j, "icmp", peer4, None, Some(8)), (3, 3 * (ETH + IP4 + ECHO))),
        (flow(&j, "icmpv6", peer6, None, Some(128)), (2, 2 * (ETH + IP6 + ECHO))),
        (flow(&j, "tcp", peer4, Some(9003), None), (4, 4 * (ETH + IP4 + TCP))),
        (flow(&j, "tcp", peer6, Some(9003), None), (6, 6 * (ETH + IP6 + TCP))),
    ];
    for (f, pb) in &want {
        assert_eq!(packets_bytes(f), *pb, "{f}");
        assert_eq!(f["direction"], "ingress");
        assert_eq!(f["dst"], if f["family"] == 4 { host4.to_string() } else { host6.to_string() });
    }
    assert_eq!(flow(&j, "tcp", peer4, Some(9003), None)["sport"], 40001);
    let denied = flow(&j, "udp", peer4, Some(9004), None);
    assert_eq!((denied["dropped"].as_u64(), denied["last_verdict"].as_str()), (Some(3), Some("drop")));
    assert_eq!(denied["last_rule"], 1);
    assert_eq!(flow(&j, "udp", peer4, Some(9001), None)["dropped"], 0);
    // Nothing else arrived: no other ingress flow, and every packet is in a flow.
    let flows = j["flows"].as_array().unwrap();
    let ingress: Vec<&Value> = flows.iter().filter(|f| f["direction"] == "ingress").collect();
    assert_eq!(ingress.len(), want.len(), "{j:#}");
    let (packets, bytes) = want.iter().fold((0, 0), |a, (_, (p, b))| (a.0 + p, a.1 + b));
    let sum = |fs: &[&Value]| fs.iter().fold((0, 0), |a, f| (a.0 + packets_bytes(f).0, a.1 + packets_bytes(f).1));
    assert_eq!(sum(&ingress), (packets, bytes));
    let t = &j["totals"];
    assert_eq!((t["seen"].as_u64(), t["bytes_seen"].as_u64()), (Some(packets), Some(bytes)));
    assert_eq!((t["dropped"].as_u64(), t["passed"].as_u64()), (Some(3), Some(packets - 3)));

    // What the host sent back (TC egress): the echo replies, exactly; ICMP
    // "port unreachable" for the UDP to closed ports, of which the kernel
    // rate-limits some, so only bounded. (The raw SYNs carry no valid
    // checksum: the host answers none of them.)
    let out_want: Vec<(&Value, (u64, u64))> = vec![
        (flow_dir(&j, "egress", "icmp", host4, None, Some(0)), (3, 3 * (ETH + IP4 + ECHO))),
        (flow_dir(&j, "egress", "icmpv6", host6, None, Some(129)), (2, 2 * (ETH + IP6 + ECHO))),
    ];
    for (f, pb) in &out_want {
        assert_eq!(packets_bytes(f), *pb, "{f}");
        assert_eq!(f["dst"], if f["family"] == 4 { peer4.to_string() } else { peer6.to_string() });
    }
    let unreachable4 = packets_bytes(flow_dir(&j, "egress", "icmp", host4, None, Some(3))).0;
    assert!((1..=7).contains(&unreachable4), "{j:#}");
    let unreachable6 = packets_bytes(flow_dir(&j, "egress", "icmpv6", host6, None, Some(1))).0;
    assert!((1..=5).contains(&unreachable6), "{j:#}");
    let egress: Vec<&Value> = flows.iter().filter(|f| f["direction"] == "egress").collect();
    assert!(egress.len() <= out_want.len() + 2, "only replies go out: {j:#}");
    assert_eq!(flows.len(), ingress.len() + egress.len());
    assert_eq!((j["flow_packets"].as_u64(), j["flow_bytes"].as_u64()), (Some(sum(flows.iter().collect::<Vec<_>>().as_slice()).0), Some(sum(flows.iter().collect::<Vec<_>>().as_slice()).1)));
    let entries = flows.len() as u64;
    assert_eq!(j["table"]["entries"], entries);
    assert_eq!(j["table"]["inserts"], entries);
    assert_eq!(j["table"]["evictions"], 0);
    assert_eq!(j["table"]["capacity"], 65536);

    // The metrics parse, and say the same.
    let m = top.metrics();
    let i = ("interface", env.iface());
    let pass = [i, ("direction", "ingress"), ("verdict", "pass")];
    let drop = [i, ("direction", "ingress"), ("verdict", "drop")];
    assert_eq!(m.get("netray_interface_up", &[i]), 1.0);
    assert_eq!(m.get("netray_interface_packets_total", &pass), (packets - 3) as f64);
    assert_eq!(m.get("netray_interface_packets_total", &drop), 3.0);
    assert_eq!(m.get("netray_interface_bytes_total", &pass), (bytes - 3 * (ETH + IP4 + UDP + 30)) as f64);
    assert_eq!(m.get("netray_interface_bytes_total", &drop), t["bytes_dropped"].as_f64().unwrap());
    // Sent packets (TC egress): exactly the egress flows.
    let out_pass = [i, ("direction", "egress"), ("verdict", "pass")];
    let out_drop = [i, ("direction", "egress"), ("verdict", "drop")];
    let (out_packets, out_bytes) = sum(&egress);
    assert_eq!(m.get("netray_interface_packets_total", &out_pass), out_packets as f64);
    assert_eq!(m.get("netray_interface_bytes_total", &out_pass), out_bytes as f64);
    assert_eq!(m.get("netray_interface_packets_total", &out_drop), 0.0);
    assert_eq!(m.get("netray_interface_non_ip_packets_total", &[i]), 0.0);
    assert_eq!(m.get("netray_monitor_events_lost_total", &[i]), 0.0);
    assert_eq!(m.get("netray_flows_entries", &[i]), entries as f64);
    assert_eq!(m.get("netray_flows_capacity", &[i]), 65536.0);
    assert_eq!(m.get("netray_flows_inserts_total", &[i]), entries as f64);
    assert_eq!(m.get("netray_flows_evictions_total", &[i]), 0.0);
    assert_eq!(m.get("netray_flows_insert_failures_total", &[i]), 0.0);
    assert_eq!(m.get("netray_firewall_rules", &[]), 1.0);
    assert_eq!(m.get("netray_firewall_rule_packets_total", &[("rule_id", "1")]), 3.0);
    assert_eq!(m.get("netray_firewall_rule_bytes_total", &[("rule_id", "1")]), denied["bytes"].as_f64().unwrap());
    // Per-flow series (asked for with --metrics-top-flows 50): one per flow.
    assert_eq!(m.names("netray_flow_packets_total"), flows.len());
    for (f, (p, b)) in &want {
        let src = f["src"].as_str().unwrap();
        let dport = f["dport"].as_u64().unwrap_or(0).to_string();
        let labels = [i, ("proto", f["proto"].as_str().unwrap()), ("src", src), ("dport", dport.as_str())];
        assert_eq!(m.get("netray_flow_packets_total", &labels), *p as f64);
        assert_eq!(m.get("netray_flow_bytes_total", &labels), *b as f64);
    }

    // Stopping top leaves the firewall and the monitor running; the monitor
    // got every packet.
    top.stop();
    assert_eq!(features(&env), ["firewall", "monitor"]);
    unsafe { libc::kill(monitor.id() as i32, libc::SIGINT) };
    let out = monitor.wait_with_output().unwrap();
    let last: Value = serde_json::from_str(String::from_utf8(out.stdout).unwrap().lines().last().unwrap()).unwrap();
    assert_eq!((last["received"].as_u64(), last["lost"].as_u64()), (Some(packets), Some(0)), "{last}");
    env.ok(&["firewall", "detach", "-i", env.iface()]);
    assert_eq!(env.json(&["firewall", "status", "--json"])["interfaces"], serde_json::json!([]));
}

#[test]
fn a_tiny_flow_table_evicts_and_reports_its_evictions() {
    let env = Env::new("toplru");
    let top = Top::spawn(&env, &["--flow-table-size", "4"]);
    const N: u16 = 20;
    for i in 0..N {
        // A new socket (source port) and destination port each time: N flows.
        assert_eq!(env.lab.udp_send(Family::V4, 20000 + i, 10, 1).unwrap(), 1);
    }
    std::thread::sleep(Duration::from_millis(300));
    let j = env.json(&["top", "-i", env.iface(), "--once", "--json", "--interval", "0", "--flow-table-size", "4"]);
    let table = &j["table"];
    let entries = table["entries"].as_u64().unwrap();
    assert_eq!(table["capacity"], 4);
    assert!((1..=4).contains(&entries), "{table}");
    // N ingress flows, plus the host's (rate-limited) ICMP errors going out.
    let inserts = table["inserts"].as_u64().unwrap();
    assert!((N as u64..=2 * N as u64).contains(&inserts), "{table}");
    assert_eq!(table["insert_failed"], 0, "{table}");
    assert_eq!(table["evictions"].as_u64().unwrap(), inserts - entries, "{table}");
    // Listed: the table's entries, plus flows it evicted that a CPU's flow
    // cache still holds (counted from the cache; see netray-flows).
    let flows = j["flows"].as_array().unwrap();
    assert!((entries..=inserts).contains(&(flows.len() as u64)), "{j:#}");
    for f in flows.iter().filter(|f| f["direction"] == "ingress") {
        assert_eq!(packets_bytes(f), (1, ETH + IP4 + UDP + 10), "{f}");
    }
    // The most recent flow is still there; the interface saw every packet.
    assert!(flows.iter().any(|f| f["dport"] == 20000 + N - 1), "{j:#}");
    assert_eq!(j["totals"]["seen"], N);

    let m = top.metrics();
    let i = [("interface", env.iface())];
    assert_eq!(m.get("netray_flows_capacity", &i), 4.0);
    assert_eq!(m.get("netray_flows_entries", &i), entries as f64);
    assert_eq!(m.get("netray_flows_evictions_total", &i), (inserts - entries) as f64);
    assert_eq!(m.names("netray_flow_"), 0, "no per-flow series unless asked for");
    top.stop();
    assert_eq!(env.json(&["firewall", "status", "--json"])["interfaces"], serde_json::json!([]), "top detaches what it attached");
}

#[test]
fn top_text_output_help_errors_and_a_killed_session() {
    let env = Env::new("toptxt");
    // Not a terminal and not --once: plain tables, one per interval.
    assert_eq!(env.lab.ping(Family::V4, 1).unwrap(), 1); // before top: not counted
    let child = env
        .cmd(&["top", "-i", env.iface(), "--interval", "300ms", "--duration", "2.5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_feature(&env, "flows");
    assert_eq!(env.lab.udp_send(Family::V6, 9100, 1, 2).unwrap(), 2);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    // Column widths follow the rows, so find the header lines by their words.
    let header = |l: &str| l.starts_with("PROTO ") && l.contains(" SOURCE ");
    assert!(text.lines().filter(|l| header(l)).count() >= 3, "{text}");
    let udp = format!("[{}]:9100", env.lab.host_v6());
    let lines: Vec<&str> = text.lines().collect();
    let last_header = lines.iter().rposition(|l| header(l)).unwrap();
    let last_table = lines[last_header + 1..].join("\n");
    let row = last_table.lines().find(|l| l.contains(&udp)).unwrap_or_else(|| panic!("{text}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[0], "udp");
    assert_eq!(cells[3], "2", "{row}");
    assert_eq!(cells[4..6], ["126", "B"], "{row}");
    assert!(
        !text.lines().any(|l| l.starts_with("icmp ")),
        "the ping before top started (and its reply) is not counted: {text}"
    );
    assert_eq!(env.json(&["firewall", "status", "--json"])["interfaces"], serde_json::json!([]));

    // --once without a running session: a fresh, empty table.
    let j = env.json(&["top", "-i", env.iface(), "--once", "--json", "--interval", "0"]);
    assert_eq!((j["flows"].as_array().unwrap().len(), j["table"]["inserts"].as_u64()), (0, Some(0)), "{j}");

    // A SIGKILLed session no longer counts; the next one takes over.
    let mut killed = env.cmd(&["top", "-i", env.iface(), "--json"]).stdout(Stdio::null()).spawn().unwrap();
    wait_for_feature(&env, "flows");
    unsafe { libc::kill(killed.id() as i32, libc::SIGKILL) };
    killed.wait().unwrap();
    assert!(!features(&env).contains(&"flows".to_string()));
    let j = env.json(&["top", "-i", env.iface(), "--once", "--json", "--interval", "100ms"]);
    assert_eq!(j["type"], "flows");
    assert!(j["rates"]["interval_secs"].as_f64().unwrap() > 0.05, "{j}");
    assert_eq!(env.json(&["firewall", "status", "--json"])["interfaces"], serde_json::json!([]));

    // Usage errors (the help is in tests/help.rs).
    let iface = env.iface().to_string();
    let mut all = String::new();
    for args in [
        &["top", "-i", &iface, "--sort", "size"][..],
        &["top", "-i", "no-such-if0", "--once"],
        &["top", "-i", &iface, "--metrics", "203.0.113.1:9", "--once"],
    ] {
        all.push_str(&transcript(args, &env.cmd(args).output().unwrap()));
    }
    Normalise::default().literal(&iface, "<IFACE>").check("top-errors", &all);
    assert_eq!(env.json(&["firewall", "status", "--json"])["interfaces"], serde_json::json!([]));
}

// ---- what Prometheus reads ----------------------------------------------------------

/// The value of the one line that starts with `series` (name and labels as
/// written, up to the value).
fn text_value(text: &str, series: &str) -> f64 {
    let found: Vec<&str> = text.lines().filter(|l| l.starts_with(series)).collect();
    assert_eq!(found.len(), 1, "{series}: {found:?}\n{text}");
    found[0].rsplit_once(' ').unwrap().1.parse().unwrap()
}

#[test]
fn top_metrics_are_negotiated_promtool_clean_and_bounded() {
    let env = Env::new("topmet");
    let peer = env.lab.peer_v4().to_string();
    // 50 rules: 45 prefixes nobody sends from, and 5 that the lab's peer hits
    // 1 to 5 times each (UDP to ports 9001..9005): ids 46..50.
    env.ok(&["firewall", "attach", "-i", env.iface()]);
    let idle: Vec<String> = (1..=45).map(|i| format!("203.0.113.{i}")).collect();
    let mut args = vec!["deny", "add"];
    args.extend(idle.iter().map(String::as_str));
    env.ok(&args);
    for port in 9001..=9005 {
        env.ok(&["deny", "add", &peer, "--proto", "udp", "--port", &port.to_string()]);
    }
    let top = Top::spawn(&env, &["--metrics-top-rules", "3"]);
    let all = Top::spawn(&env, &["--metrics-top-rules", "8", "--metrics-zero-hit-rules"]);
    for p in 1..=5u16 {
        assert_eq!(env.lab.udp_send(Family::V4, 9000 + p, 10, u64::from(p)).unwrap(), u64::from(p));
    }
    std::thread::sleep(Duration::from_millis(200));

    // Content-Type follows the Accept header; the 0.0.4 text by default.
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
                      text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    for (accept, want) in [
        (None, TEXT),
        (Some("text/plain;version=0.0.4"), TEXT),
        (Some("*/*"), TEXT),
        (Some("application/openmetrics-text"), OPENMETRICS),
        (Some("application/openmetrics-text;q=0.2, text/plain"), TEXT),
        (Some(prometheus), OPENMETRICS),
    ] {
        assert_eq!(top.get(accept).0, want, "Accept: {accept:?}");
    }

    // promtool finds nothing to say about the text format, with every kind
    // of series there (per-flow ones too).
    let text = top.get(None).1;
    promtool_clean(&text);
    let with_flows = Top::spawn(&env, &["--metrics-top-flows", "5"]);
    promtool_clean(&with_flows.get(None).1);
    with_flows.stop();
    // OpenMetrics passes the strict parser, and says the same.
    let om = top.metrics();
    let i = ("interface", env.iface());
    assert_eq!(om.get("netray_interface_packets_total", &[i, ("direction", "ingress"), ("verdict", "drop")]), 15.0);
    assert_eq!(text_value(&text, &format!("netray_interface_packets_total{{interface=\"{}\",direction=\"ingress\",verdict=\"drop\"}}", env.iface())), 15.0);

    // The rules with the most hits, and the others summed.
    assert_eq!(om.get("netray_firewall_rules", &[]), 50.0);
    assert_eq!(om.names("netray_firewall_rule_packets_total"), 4);
    for (id, port, n) in [("48", 9003, 3.0), ("49", 9004, 4.0), ("50", 9005, 5.0)] {
        let rule = format!("{peer}/32 proto udp port {port}");
        assert_eq!(om.get("netray_firewall_rule_packets_total", &[("rule_id", id), ("rule", rule.as_str())]), n);
    }
    assert_eq!(om.get("netray_firewall_rule_packets_total", &[("rule_id", "other")]), 3.0);
    assert_eq!(om.get("netray_firewall_rule_bytes_total", &[("rule_id", "other")]), (3 * (ETH + IP4 + UDP + 10)) as f64);
    // Asked for: the top 8 filled with idle rules.
    let m = all.metrics();
    let ids = ["1", "2", "3", "46", "47", "48", "49", "50"];
    for id in ids {
        m.get("netray_firewall_rule_packets_total", &[("rule_id", id)]);
    }
    assert_eq!(m.names("netray_firewall_rule_packets_total"), ids.len() + 1);
    assert_eq!(m.get("netray_firewall_rule_packets_total", &[("rule_id", "other")]), 0.0);
    all.stop();

    // process_*: the netray top process.
    let fds = std::fs::read_dir(format!("/proc/{}/fd", top.child.id())).unwrap().count() as f64;
    let open = om.get("process_open_fds", &[]);
    assert!(open >= 5.0 && (open - fds).abs() <= 8.0, "process_open_fds {open}, /proc/PID/fd has {fds}");
    assert!(om.get("process_max_fds", &[]) >= open);
    assert!(om.get("process_resident_memory_bytes", &[]) > 1e6);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let start = om.get("process_start_time_seconds", &[]);
    assert!(start <= now && start > now - 120.0, "start {start}, now {now}");
    for source in ["interfaces", "flow_tables", "rules", "process"] {
        assert_eq!(om.get("netray_scrape_collector_success", &[("collector", source)]), 1.0, "{source}");
    }
    top.stop();
}
