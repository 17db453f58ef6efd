//! `netray top`: the flows on an interface, live.

use std::{
    collections::VecDeque,
    io::IsTerminal,
    net::SocketAddr,
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use clap::Args;
use netray_core::AttachMode;
use netray_flows::{
    metrics::{self, MetricsConfig, NetrayCollector, RuleSeries, Scrape},
    snapshot::{interface_rates, FlowJson},
    conversations, rates, ConversationJson, FlowCapacity, FlowHook, FlowSession, Snapshot, SnapshotJson, SortBy,
};

use netray_ipfix::{ExportConfig, Exporter, ExporterMetrics, Stats, Timeouts, Transport};

use super::iface_watch::{exit_status_help, IfaceWatch};
use super::{firewall::parse_mode, Context};

mod fit;
mod screen;
mod units;

use screen::Grouping;
use crate::output::{json_line, line};

#[derive(Args)]
#[command(after_help = concat!("Examples:\n  \
    netray top -i eth1\n  \
    netray top -i eth1 --sort bytes --interval 2s\n  \
    netray top -i eth1 --group port\n  \
    netray top -i eth1 --once --json | jq '.conversations[0]'\n  \
    netray top -i eth1 --metrics 127.0.0.1:9810\n  \
    netray top -i eth1 --metrics 127.0.0.1:9810 --metrics-top-flows 10 > /dev/null\n  \
    netray top -i eth1 --ipfix 127.0.0.1:4739 --active-timeout 60s --idle-timeout 15s > /dev/null\n  \
    curl -H 'Accept: application/openmetrics-text' http://127.0.0.1:9810/metrics\n\
    \n\
    Counts packets and bytes per flow (interface, direction, protocol, addresses, ports) in the\n\
    kernel: received packets at XDP, sent ones at TC egress (tcx, or clsact where the kernel has no\n\
    tcx); the header names the hooks in use. In a terminal: a live view like iftop's, one row per\n\
    conversation (both directions of a connection: TX sent, RX received, DIR in/out, in or out for\n\
    a flow seen one way only), sorted by the rate over the last interval, idle ones last. Keys: r\n\
    rate, b cumulative bytes, p cumulative packets, g conversations or service ports (the smaller\n\
    port of each conversation), q, Esc or Ctrl-C quit. The view fits the terminal's width: numbers\n\
    are never cut (876kB, 4.7Mb/s); as it narrows, LAST goes first, then DROPPED (both shown only\n\
    when something was dropped), PPS, ICMP types, then IPv6 endpoints are shortened in the middle of\n\
    the address (ports kept; IPv4 endpoints stay whole at 80 columns), then PACKETS, then BYTES.\n\
    When stdout is not a terminal, a plain table of the flows per direction is printed every\n\
    interval (one JSON object per interval with --json). --once prints one snapshot taken after one\n\
    interval (at once with --interval 0) and exits.\n\
    \n\
    JSON: {\"type\":\"flows\", interface, sort, totals (the XDP hook's counters: seen, passed,\n\
    dropped, bytes_seen, ...), rates, table {capacity, entries, inserts, evictions, insert_failed},\n\
    flow_packets, flow_bytes, flows: [{direction, proto, src, dst, sport, dport, icmp_type,\n\
    icmp_code, packets, bytes, dropped, last_verdict, last_decided_by (\"rule 7\", \"limit 3\",\n\
    \"policy\"), tcp_flags (TCP: every flag seen, as \"SYN,ACK,FIN\"), pps, bps, ...}],\n\
    conversations: [{proto, local, local_port, remote, remote_port, direction, tx {packets, bytes,\n\
    dropped, pps, bps}, rx {...}}]}.\n\
    packets and bytes are exact and cumulative since the flow entered the table. The table is an\n\
    LRU: when it is full the least recently seen flows are evicted, and counted (evictions = inserts\n\
    - entries). Non-IP frames are not flows (see totals.non_ip).\n\
    \n\
    --metrics ADDR serves Prometheus metrics at http://ADDR/metrics while netray top runs (port 0: any\n\
    free port, printed on stderr): the text format 0.0.4, or OpenMetrics 1.0.0 when the Accept header\n\
    asks for application/openmetrics-text. Per-rule series for the --metrics-top-rules rules with the\n\
    most hits (the others summed under rule_id=\"other\"), per-flow series only with\n\
    --metrics-top-flows, process_* metrics; a source that cannot be read is reported by\n\
    netray_scrape_collector_success 0, never as zeros.\n\
    \n\
    --ipfix HOST:PORT exports the flows to an IPFIX collector (RFC 7011; nfacctd, nfcapd, goflow2,\n\
    ...) over UDP, or TCP with --ipfix-transport tcp: a flow's new packets and bytes every\n\
    --active-timeout while it lasts, after --idle-timeout once it stops, and everything at exit\n\
    (Ctrl-C, SIGTERM). A collector that is down or slow never stalls netray: records that do not\n\
    fit the queue are dropped and counted; the counts are printed at exit and served as\n\
    netray_ipfix_* with --metrics. See docs/ipfix.md for the template.\n\
    \n\
    Flow accounting stays on while any `netray top` runs on the interface; the first one starts from\n\
    an empty table. If netray is not attached to the interface, it is attached, and detached at exit\n\
    when nothing else uses it.", exit_status_help!()))]
pub struct TopArgs {
    /// Interface to watch.
    #[arg(short, long = "interface", value_name = "IFACE")]
    iface: String,
    /// Refresh interval (e.g. 1s, 500ms, 2).
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    interval: Duration,
    /// Order of the rows: rate (over the last interval, idle ones last), bytes or packets (cumulative).
    #[arg(long, default_value = "rate")]
    sort: SortBy,
    /// Rows of the live view: conversation (both directions on one row) or port (service port); key g.
    #[arg(long, value_enum, value_name = "conversation|port", default_value = "conversation")]
    group: Grouping,
    /// Rows to show (default: what fits the terminal; 20 in text; all with --json).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Print one snapshot and exit.
    #[arg(long)]
    once: bool,
    /// JSON output (one object per snapshot).
    #[arg(long)]
    json: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9810).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Also export per-flow series for the K largest flows (bounded label cardinality).
    #[arg(long, value_name = "K", default_value_t = 0)]
    metrics_top_flows: usize,
    /// Per-rule series for the N rules with the most hits; the others are summed under rule_id="other" (0: none).
    #[arg(long, value_name = "N", default_value_t = metrics::DEFAULT_TOP_RULES)]
    metrics_top_rules: usize,
    /// With --metrics: also trace the drops on the interface (`netray drops -i IFACE`) and export
    /// their counts (netray_drops_total by who, reason, interface).
    #[arg(long, requires = "metrics")]
    drops: bool,
    /// Also give rules without a hit a series (up to --metrics-top-rules in all).
    #[arg(long)]
    metrics_zero_hit_rules: bool,
    /// Flows the kernel's table holds (LRU), if netray attaches to the interface now.
    #[arg(long, value_name = "N", default_value_t = FlowCapacity::default().max_flows)]
    flow_table_size: u32,
    /// Exit after this many seconds.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// XDP attach mode if netray must attach: auto, native or generic.
    #[arg(long, default_value = "auto", value_parser = parse_mode)]
    mode: AttachMode,
    /// Export the flows over IPFIX to this collector (e.g. 127.0.0.1:4739).
    #[arg(long, value_name = "HOST:PORT")]
    ipfix: Option<String>,
    /// IPFIX transport: udp or tcp.
    #[arg(long, value_name = "udp|tcp", default_value = "udp", requires = "ipfix")]
    ipfix_transport: Transport,
    /// IPFIX: a long-lived flow's counts are exported this often.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_timeout, requires = "ipfix")]
    active_timeout: Duration,
    /// IPFIX: a flow is exported once it had no packet for this long.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_timeout, requires = "ipfix")]
    idle_timeout: Duration,
    /// IPFIX observation domain ID (tells this host's records apart at the collector).
    #[arg(long, value_name = "N", default_value_t = 0, requires = "ipfix")]
    ipfix_domain_id: u32,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    match parse_interval(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(format!("invalid timeout '{s}': use e.g. 60s, 500ms, 2m (above 0, at most 60m)")),
    }
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid interval '{s}': use e.g. 1s, 500ms, 2m or a number of seconds");
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(bad()),
    };
    if !secs.is_finite() || !(0.0..=3600.0).contains(&secs) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

pub fn run(ctx: &Context, args: TopArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.flow_table_size >= 1, "--flow-table-size must be at least 1");
    anyhow::ensure!(args.once || !args.interval.is_zero(), "--interval 0 needs --once");
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGPIPE] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let pin = ctx.pin()?;
    let session =
        FlowSession::start(&pin, &args.iface, args.mode, FlowCapacity { max_flows: args.flow_table_size })?;
    if let Some(note) = session.note() {
        eprintln!("netray: note: {note}");
    }
    let watch = IfaceWatch::start(session.interface(), &stop)?;
    let exporter = match &args.ipfix {
        Some(collector) => {
            let mut cfg = ExportConfig::new(collector);
            cfg.transport = args.ipfix_transport;
            cfg.timeouts = Timeouts { active: args.active_timeout, idle: args.idle_timeout };
            cfg.domain_id = args.ipfix_domain_id;
            let e = Exporter::start(cfg)?;
            eprintln!(
                "netray: exporting IPFIX to {} over {} (active timeout {:?}, idle timeout {:?})",
                e.collector(),
                args.ipfix_transport.as_str(),
                args.active_timeout,
                args.idle_timeout
            );
            Some(e)
        }
        None => None,
    };
    let ipfix_metrics: Option<ExporterMetrics> = exporter.as_ref().map(Exporter::metrics);
    let _server = match args.metrics {
        Some(addr) => {
            let collector = NetrayCollector::new(MetricsConfig {
                pin: pin.clone(),
                interfaces: vec![session.interface().clone()],
                top_flows: args.metrics_top_flows,
                rules: RuleSeries { top: args.metrics_top_rules, zero_hits: args.metrics_zero_hit_rules },
                flow_tables: true,
            });
            let drops = args.drops.then(|| drop_counter(&pin, &args.iface, Arc::clone(&stop))).transpose()?;
            let scrape = move || {
                let mut s = Scrape::default();
                collector.scrape(&mut s);
                if let Some(m) = &ipfix_metrics {
                    m.scrape(&mut s);
                }
                if let Some(d) = &drops {
                    let (counts, lost) = &*d.lock().unwrap_or_else(|e| e.into_inner());
                    netray_drops::metrics::scrape(&mut s, counts, *lost);
                }
                metrics::process::scrape(&mut s);
                s
            };
            let server = metrics::serve(addr, scrape)
                .map_err(|e| anyhow::anyhow!("serving metrics on {addr}: {e}"))?;
            eprintln!("netray: serving Prometheus metrics at http://{}/metrics", server.local_addr());
            Some(server)
        }
        None => None,
    };
    let deadline = args.duration.map(|s| Instant::now() + Duration::from_secs_f64(s));
    let view_done = AtomicBool::new(false);
    let (result, exported) = std::thread::scope(|scope| {
        // The export polls on its own thread and pace, whatever the view does.
        let export = exporter.as_ref().map(|e| {
            let (session, stop, view_done) = (&session, &stop, &view_done);
            scope.spawn(move || {
                e.run_polling(&session.interface().name, || session.snapshot(), || {
                    stop.load(Ordering::Relaxed) || view_done.load(Ordering::Relaxed)
                })
            })
        });
        let result = if args.once {
            once(&session, &args, &stop)
        } else if !args.json && std::io::stdout().is_terminal() {
            tui::run(&session, &args, &stop, deadline)
        } else {
            periodic(&session, &args, &stop, deadline)
        };
        view_done.store(true, Ordering::Relaxed);
        watch.report();
        let exported = export.map(|h| h.join().unwrap_or_else(|_| Err(netray_core::Error::BadRequest("the IPFIX exporter panicked".into()))));
        (result, exported)
    });
    if let Some(e) = exporter {
        let stats = e.finish(Duration::from_secs(5));
        ipfix_summary(&args, &stats)?;
    }
    session.stop()?;
    watch.remove_pins(&pin)?;
    if let Some(Err(e)) = exported {
        return Err(anyhow::Error::from(e).context("exporting IPFIX"));
    }
    // A closed pipe (`| head`) ends the command quietly in main.
    result.map(|()| watch.exit_code())
}

/// What the IPFIX export did, on stderr (and a JSON line with --json).
fn ipfix_summary(args: &TopArgs, s: &Stats) -> anyhow::Result<()> {
    let collector = args.ipfix.as_deref().unwrap_or_default();
    eprintln!(
        "netray: ipfix: {} records in {} messages ({} bytes) to {collector} over {}; not delivered: {} (queue full), \
         {} (send failed), {} (still queued at exit); {} TCP connects, {} failed; flows evicted from the kernel table: \
         {} (of them {} active, packets after the last read lost), {} created again between reads, {} never read",
        s.records_sent,
        s.messages_sent,
        s.bytes_sent,
        args.ipfix_transport.as_str(),
        s.dropped_queue_full,
        s.dropped_send_failed,
        s.dropped_at_exit,
        s.connects,
        s.connect_failures,
        s.evicted,
        s.evicted_active,
        s.evicted_recreated,
        s.evicted_unread,
    );
    if args.json {
        #[derive(serde::Serialize)]
        struct Summary<'a> {
            r#type: &'static str,
            collector: &'a str,
            transport: &'static str,
            #[serde(flatten)]
            stats: &'a Stats,
        }
        json_line(&Summary { r#type: "ipfix", collector, transport: args.ipfix_transport.as_str(), stats: s })?;
    }
    Ok(())
}

/// Drop counts of `iface`, kept up to date by a drops session on a thread of
/// its own (its rings are read there) until `stop`.
fn drop_counter(
    pin: &netray_core::PinDir,
    iface: &str,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Arc<std::sync::Mutex<(netray_drops::DropCounts, u64)>>> {
    let shared = Arc::new(std::sync::Mutex::new((netray_drops::DropCounts::default(), 0)));
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let (pin, spec, out) = (
        pin.clone(),
        netray_drops::DropsSpec { iface: Some(iface.to_string()), snaplen: 128, ring_bytes: 4 << 20, ..Default::default() },
        Arc::clone(&shared),
    );
    std::thread::Builder::new().name("drops".into()).spawn(move || {
        let mut session = match netray_drops::DropsSession::start(Some(&pin), &spec) {
            Ok(s) => {
                let _ = tx.send(Ok(s.attach_way()));
                s
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        while !stop.load(Ordering::Relaxed) {
            if session.poll(Duration::from_millis(200), &mut |_| true).is_err() {
                break;
            }
            let lost = session.stats().map_or(0, |s| s.kernel.lost + s.netray_lost);
            *out.lock().unwrap_or_else(|e| e.into_inner()) = (session.counts().clone(), lost);
        }
        let _ = session.finish(&mut |_| true);
    })?;
    let way = rx.recv().map_err(|_| anyhow::anyhow!("the drops thread ended before starting"))??;
    eprintln!("netray: counting drops on {iface} via {way} for /metrics");
    Ok(shared)
}

/// Sleeps until `until`, or less when asked to stop. False when stopped.
fn sleep_until(until: Instant, stop: &AtomicBool) -> bool {
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= until {
            return true;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
    false
}

fn once(session: &FlowSession, args: &TopArgs, stop: &AtomicBool) -> anyhow::Result<()> {
    let mut prev = None;
    if !args.interval.is_zero() {
        prev = Some(session.snapshot()?);
        sleep_until(Instant::now() + args.interval, stop);
    }
    let cur = session.snapshot()?;
    print(session, prev.as_ref(), &cur, args)
}

fn periodic(session: &FlowSession, args: &TopArgs, stop: &AtomicBool, deadline: Option<Instant>) -> anyhow::Result<()> {
    let mut prev: Option<Snapshot> = None;
    let mut next = Instant::now();
    loop {
        let cur = session.snapshot()?;
        if prev.is_some() {
            print(session, prev.as_ref(), &cur, args)?;
        }
        prev = Some(cur);
        next += args.interval;
        let until = deadline.map_or(next, |d| d.min(next));
        if !sleep_until(until, stop) {
            // Ctrl-C, or the interface went away: what came since the last
            // report is reported too (with --json: a last snapshot).
            let cur = session.snapshot()?;
            return print(session, prev.as_ref(), &cur, args);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(());
        }
    }
}

/// `netray top --json`: the flows of each direction as before, and the
/// conversations (both directions of a connection paired) beside them.
#[derive(serde::Serialize)]
struct TopJson {
    #[serde(flatten)]
    snapshot: SnapshotJson,
    conversations: Vec<ConversationJson>,
}

fn print(session: &FlowSession, prev: Option<&Snapshot>, cur: &Snapshot, args: &TopArgs) -> anyhow::Result<()> {
    if args.json {
        let convs = conversations(&rates(prev, cur), args.sort);
        let limit = args.limit.unwrap_or(usize::MAX);
        return json_line(&TopJson {
            snapshot: SnapshotJson::new(prev, cur, args.sort, args.limit),
            conversations: convs.iter().take(limit).map(ConversationJson::from).collect(),
        });
    }
    let json = SnapshotJson::new(prev, cur, args.sort, Some(args.limit.unwrap_or(20)));
    for l in text_report(&json, &session.hooks()?) {
        line(&l)?;
    }
    Ok(())
}

/// "in: xdp native, out: tcx egress": the hooks that count the flows.
fn hook_names(hooks: &[FlowHook]) -> String {
    let names: Vec<String> = hooks
        .iter()
        .map(|h| format!("{}: {}", if h.direction == netray_flows::Direction::Egress { "out" } else { "in" }, h.name))
        .collect();
    names.join(", ")
}

/// The plain-text report: a summary and a table.
fn text_report(s: &SnapshotJson, hooks: &[FlowHook]) -> Vec<String> {
    let t = &s.totals;
    let mut out = vec![format!(
        "{} ({}): {} packets in, {}; {} dropped ({}){}",
        s.interface,
        hook_names(hooks),
        t.seen,
        bytes(t.bytes_seen),
        t.dropped,
        bytes(t.bytes_dropped),
        s.rates.map_or(String::new(), |r| format!("; now {} pps, {} in", num(r.pps), bits(r.bps))),
    )];
    out.push(format!(
        "flows: {} of {} in the table, {} evicted, {} not stored; non-IP {}, truncated {}, monitor events lost {}",
        s.table.entries, s.table.capacity, s.table.evictions, s.table.insert_failed, t.non_ip, t.truncated, t.events_lost
    ));
    let header = ["PROTO", "DIR", "SOURCE", "DESTINATION", "PACKETS", "BYTES", "PPS", "BIT/S", "DROPPED", "LAST"];
    let rows: Vec<Vec<String>> = s.flows.iter().map(flow_cells).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let fmt = |cells: Vec<&str>| {
        let v: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        v.join("  ").trim_end().to_string()
    };
    out.push(fmt(header.to_vec()));
    for r in &rows {
        out.push(fmt(r.iter().map(String::as_str).collect()));
    }
    out.push(String::new());
    out
}

fn flow_cells(f: &FlowJson) -> Vec<String> {
    let proto = match (f.icmp_type, f.icmp_code) {
        (Some(t), Some(c)) => format!("{} {t}/{c}", f.proto),
        _ => f.proto.clone(),
    };
    vec![
        proto,
        if f.direction == netray_flows::Direction::Egress { "out" } else { "in" }.to_string(),
        screen::endpoint(f.src, f.sport),
        screen::endpoint(f.dst, f.dport),
        f.packets.to_string(),
        bytes(f.bytes),
        f.pps.map_or("-".into(), num),
        f.bps.map_or("-".into(), bits),
        f.dropped.to_string(),
        screen::verdict(f.last_verdict == "drop", f.last_decided_by.as_deref()),
    ]
}

fn scaled(v: f64, units: &[&str]) -> String {
    let mut v = v;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0}{}", units[0])
    } else {
        format!("{v:.1}{}", units[i])
    }
}

fn bytes(b: u64) -> String {
    scaled(b as f64, &[" B", " kB", " MB", " GB", " TB"])
}

fn bits(b: f64) -> String {
    scaled(b, &[" bit/s", " kbit/s", " Mbit/s", " Gbit/s", " Tbit/s"])
}

fn num(v: f64) -> String {
    if v < 9.95 && v.fract() != 0.0 {
        return format!("{v:.1}");
    }
    scaled(v, &["", "k", "M", "G"])
}

mod tui {
    //! The live terminal view: the loop (refresh, keys); what it shows is in `screen`.

    use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
    use ratatui::DefaultTerminal;

    use super::{screen::View, *};

    struct Restore;

    impl Drop for Restore {
        fn drop(&mut self) {
            ratatui::restore();
        }
    }

    pub fn run(
        session: &FlowSession,
        args: &TopArgs,
        stop: &AtomicBool,
        deadline: Option<Instant>,
    ) -> anyhow::Result<()> {
        let mut terminal: DefaultTerminal = ratatui::try_init()?;
        let _restore = Restore;
        let mut view = View {
            sort: args.sort,
            grouping: args.group,
            interval: args.interval,
            prev: None,
            cur: session.snapshot()?,
            hooks: session.hooks()?,
            prev_hooks: Vec::new(),
            history: VecDeque::new(),
            limit: args.limit,
        };
        let mut next = Instant::now() + args.interval;
        loop {
            terminal.draw(|f| view.draw(f))?;
            let until = deadline.map_or(next, |d| d.min(next));
            let timeout = until.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
            if event::poll(timeout)? {
                if let Event::Key(k) = event::read()? {
                    if k.kind != KeyEventKind::Press {
                        continue;
                    }
                    match k.code {
                        KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => return Ok(()),
                        KeyCode::Char('b') => view.sort = SortBy::Bytes,
                        KeyCode::Char('p') => view.sort = SortBy::Packets,
                        KeyCode::Char('r') => view.sort = SortBy::Rate,
                        KeyCode::Char('g') => {
                            view.grouping = match view.grouping {
                                Grouping::Conversation => Grouping::Port,
                                Grouping::Port => Grouping::Conversation,
                            }
                        }
                        _ => {}
                    }
                }
            }
            if stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(());
            }
            if Instant::now() >= next {
                next += args.interval;
                let cur = session.snapshot()?;
                let prev = std::mem::replace(&mut view.cur, cur);
                view.prev = Some(prev);
                view.prev_hooks = std::mem::replace(&mut view.hooks, session.hooks()?);
                if let Some(r) = interface_rates(view.prev.as_ref(), &view.cur) {
                    view.history.push_back(r.bps as u64);
                    if view.history.len() > 512 {
                        view.history.pop_front();
                    }
                }
            }
        }
    }
}
