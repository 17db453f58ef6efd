//! `netray demo`: the main job end to end, against the built-in lab. It
//! creates its own namespace, veth pair and pin directory, checks every step
//! (a failed expectation is an error), and removes everything when it ends —
//! also on failure or Ctrl-C.

use std::{
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::Args;
use netray_core::{AttachMode, PinDir};
use netray_firewall::{Firewall, Rule};
use netray_lab::{Family, Lab, Proto, TrafficReport, TrafficSpec};
use netray_monitor::{MonitorSession, PacketEvent, Verdict};

use crate::output::{json_line, outln, table_indented};

#[derive(Args)]
#[command(after_help = "Example:\n  \
    netray demo\n\
    \n\
    Creates a lab (a network namespace joined to this one by a veth pair), attaches the firewall to\n\
    the lab's interface, sends ICMP, UDP and TCP over IPv4 and IPv6 from the namespace while the\n\
    monitor prints what XDP sees, adds and removes deny rules and checks that traffic stops and\n\
    resumes, and captures packets with their firewall verdicts into pcapng (netray dump --point both).\n\
    Uses a private pin directory; nothing outside the lab is touched, and everything is removed at the\n\
    end.\n\
    \n\
    netray demo --json | jq '.checks[] | select(.passed | not)'")]
pub struct DemoArgs {
    /// Monitor lines to print per traffic round.
    #[arg(long, default_value_t = 8)]
    lines: usize,
    /// Print one JSON object at the end instead: each step, each check and whether it
    /// passed, the traffic counts of each round and the capture's counts.
    #[arg(long)]
    json: bool,
}

/// What the demo did and found: printed as it goes, or gathered for --json.
struct Log {
    json: bool,
    steps: Vec<serde_json::Value>,
    checks: Vec<serde_json::Value>,
}

impl Log {
    /// A command the demo runs (as the user would type it).
    fn step(&mut self, command: &str) -> std::io::Result<()> {
        self.steps.push(serde_json::json!({ "command": command }));
        if self.json {
            return Ok(());
        }
        outln!("\n$ {command}")
    }

    /// A line of what the step shows (text only; --json has it in the step's fields).
    fn say(&self, line: std::fmt::Arguments) -> std::io::Result<()> {
        if self.json {
            return Ok(());
        }
        outln!("    {line}")
    }

    /// Adds a field to the current step's JSON.
    fn record(&mut self, key: &str, value: serde_json::Value) {
        if let Some(serde_json::Value::Object(step)) = self.steps.last_mut() {
            step.insert(key.to_string(), value);
        }
    }

    /// An expectation: recorded, and an error if it failed.
    fn check(&mut self, passed: bool, what: &str) -> anyhow::Result<()> {
        self.checks.push(serde_json::json!({ "check": what, "passed": passed }));
        anyhow::ensure!(passed, "{what}");
        Ok(())
    }

    /// Prints a round's sent/answered table, or records it.
    fn report(&mut self, r: &TrafficReport) -> std::io::Result<()> {
        if self.json {
            let rounds = traffic_json(r);
            self.record("traffic", rounds);
            return Ok(());
        }
        print_report(r)
    }
}

/// Removes the demo's pins (and detaches its programs) however the demo ends.
struct DemoPin(PinDir);

impl Drop for DemoPin {
    fn drop(&mut self) {
        let _ = Firewall::open(self.0.clone()).reset();
        let _ = self.0.remove_all();
    }
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    netray_core::probe::require_bpf()?;
    let started = Instant::now();
    let mut log = Log { json: args.json, steps: Vec::new(), checks: Vec::new() };
    let result = demo(&args, &mut log);
    if args.json {
        json_line(&serde_json::json!({
            "passed": result.is_ok(),
            "error": result.as_ref().err().map(|e| format!("{e:#}")),
            "seconds": started.elapsed().as_secs_f64(),
            "steps": log.steps,
            "checks": log.checks,
        }))?;
    }
    result?;
    if !args.json {
        outln!("\ndemo finished: every check passed in {:.1} s; lab, programs and pins removed", started.elapsed().as_secs_f64())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The demo's steps; everything it made is removed however it ends.
fn demo(args: &DemoArgs, log: &mut Log) -> anyhow::Result<()> {
    let lines = if args.json { 0 } else { args.lines };
    let lab = Lab::up(&netray_lab::unique_name("demo")).context("creating the lab")?;
    let pin = DemoPin(PinDir::resolve(Some(&PathBuf::from(format!("/sys/fs/bpf/netray-demo-{}", std::process::id()))))?);
    let fw = Firewall::open(pin.0.clone());
    let iface = lab.host_if().to_string();

    log.step(&format!("netray lab up  → namespace {} joined by veth {} <-> {}", lab.netns(), iface, lab.peer_if()))?;
    log.say(format_args!("host end {} / {}, namespace end {} / {}", lab.host_v4(), lab.host_v6(), lab.peer_v4(), lab.peer_v6()))?;

    log.step(&format!("netray firewall attach -i {iface}"))?;
    let r = fw.attach(&iface, AttachMode::Auto)?;
    log.say(format_args!("attached to {} (ifindex {}) in {} XDP mode", r.interface, r.ifindex, r.mode))?;
    if let Some(note) = r.note {
        log.say(format_args!("note: {note}"))?;
    }

    let mut monitor = MonitorSession::start(&pin.0, &iface, AttachMode::Auto)?;
    log.step(&format!("netray monitor -i {iface}   (while the namespace sends ICMP, UDP and TCP over IPv4 and IPv6)"))?;
    let (report, events) = traffic_round(&lab, &mut monitor, lines)?;
    log.report(&report)?;
    log.check(report.total_answered() == report.total_sent(), "with no rules every packet should be answered")?;
    log.check(events.iter().all(|e| e.verdict == Verdict::Pass), "with no rules nothing should be dropped")?;

    let peer4 = Rule::parse(&lab.peer_v4().to_string(), None, None, None)?;
    let peer6 = Rule::parse(&lab.peer_v6().to_string(), None, None, None)?;
    log.step(&format!("netray deny add {} {}", peer4.net, peer6.net))?;
    let ids = fw.add(&[peer4.clone(), peer6.clone()])?;
    log.say(format_args!("added rules {ids:?}; effective from the next packet"))?;
    let (report, events) = traffic_round(&lab, &mut monitor, lines)?;
    log.report(&report)?;
    log.check(report.total_answered() == 0, "traffic from a denied source should get no answer")?;
    log.check(events.iter().any(|e| e.verdict == Verdict::Drop), "the monitor should show drops")?;

    log.step("netray deny list")?;
    if !log.json {
        print_rules(&fw)?;
    }

    log.step(&format!("netray deny del {} {}; netray deny add {} --proto udp --port 7", peer4.net, peer6.net, peer4.net))?;
    fw.delete(&[peer4.clone(), peer6])?;
    let udp7 = Rule::parse(&lab.peer_v4().to_string(), Some("udp"), Some(7), None)?;
    fw.add(std::slice::from_ref(&udp7))?;
    let file = std::env::temp_dir().join(format!("netray-demo-{}.pcapng", std::process::id()));
    log.step(&format!("netray dump -i {iface} --point both -w {} udp port 7   (during the same traffic)", file.display()))?;
    let (report, capture) = capture_round(&pin.0, &lab, &mut monitor, &file)?;
    log.report(&report)?;
    log.check(report.answered(Proto::Udp, Family::V4) == 0, "UDP port 7 over IPv4 should be dropped")?;
    log.say(format_args!(
        "{} packets written: {} at the entry point, {} at the exit point ({} XDP_DROP, {} XDP_PASS), {} lost",
        capture.written, capture.entry, capture.exit_drop + capture.exit_pass, capture.exit_drop, capture.exit_pass, capture.lost
    ))?;
    log.record(
        "capture",
        serde_json::json!({
            "written": capture.written, "entry": capture.entry, "exit_drop": capture.exit_drop,
            "exit_pass": capture.exit_pass, "lost": capture.lost,
        }),
    );
    log.check(
        capture.exit_drop == report.sent(Proto::Udp, Family::V4)
            && capture.exit_pass == report.sent(Proto::Udp, Family::V6)
            && capture.entry == capture.exit_drop + capture.exit_pass
            && capture.lost == 0,
        "the capture should see every UDP/7 packet at entry, and the firewall's verdict on each at exit"
    )?;
    if !log.json {
        show_tcpdump(&file, 4)?;
    }
    let _ = std::fs::remove_file(&file);
    log.check(
        report.answered(Proto::Udp, Family::V6) == report.sent(Proto::Udp, Family::V6)
            && report.answered(Proto::Icmp, Family::Both) == report.sent(Proto::Icmp, Family::Both)
            && report.answered(Proto::Tcp, Family::Both) == report.sent(Proto::Tcp, Family::Both),
        "a port rule should drop only its own traffic"
    )?;

    log.step(&format!("netray deny del {} --proto udp --port 7", peer4.net))?;
    fw.delete(&[udp7])?;
    let (report, _) = traffic_round(&lab, &mut monitor, 0)?;
    log.report(&report)?;
    log.check(report.total_answered() == report.total_sent(), "after deleting the rules traffic should flow again")?;

    let stats = monitor.stop()?;
    log.step("netray firewall status")?;
    let st = fw.status()?;
    for i in &st.interfaces {
        log.say(format_args!(
            "{} ({} XDP, prog {}): {} packets seen, {} passed, {} dropped",
            i.interface, i.mode, i.prog_id, i.stats.seen, i.stats.passed, i.stats.dropped
        ))?;
    }
    log.say(format_args!("monitor: {} events received, {} lost in the kernel", stats.received, stats.lost))?;
    log.record("monitor", serde_json::json!({ "received": stats.received, "lost": stats.lost }));

    log.step(&format!("netray firewall detach -i {iface}; netray lab down"))?;
    fw.detach(&iface)?;
    drop(pin);
    lab.down()?;
    Ok(())
}

/// Sends a fixed mix (10 of each protocol and family) while printing up to
/// `lines` monitor lines; returns the report and the events seen.
fn traffic_round(lab: &Lab, monitor: &mut MonitorSession, lines: usize) -> anyhow::Result<(TrafficReport, Vec<PacketEvent>)> {
    let spec = TrafficSpec {
        duration: None,
        count: Some(60),
        pps: 300,
        timeout: Duration::from_millis(700),
        ..TrafficSpec::default()
    };
    let mut events = Vec::new();
    let mut closed = None;
    let report = std::thread::scope(|s| -> anyhow::Result<TrafficReport> {
        let sender = s.spawn(|| lab.traffic(&spec));
        while !sender.is_finished() {
            monitor.poll(Duration::from_millis(50), &mut |e| {
                if events.len() < lines && closed.is_none() {
                    closed = outln!("    {e}").err();
                }
                events.push(e);
                true
            })?;
        }
        // Collect what arrived after the sender returned.
        monitor.poll(Duration::from_millis(100), &mut |e| {
            events.push(e);
            true
        })?;
        Ok(sender.join().map_err(|_| anyhow::anyhow!("traffic thread panicked"))??)
    })?;
    if let Some(e) = closed {
        return Err(e.into());
    }
    if events.len() > lines && lines > 0 {
        outln!("    ... {} more", events.len() - lines)?;
    }
    Ok((report, events))
}

/// What the demo's capture saw.
#[derive(Default)]
struct CaptureCounts {
    written: u64,
    entry: u64,
    exit_drop: u64,
    exit_pass: u64,
    lost: u64,
}

/// One traffic round with `netray dump --point both udp port 7` writing to `file`.
fn capture_round(
    pin: &PinDir,
    lab: &Lab,
    monitor: &mut MonitorSession,
    file: &std::path::Path,
) -> anyhow::Result<(TrafficReport, CaptureCounts)> {
    use std::sync::{Arc, Mutex};

    use netray_capture::{Capture, CaptureSpec, LiveCapture, Output, Packet, Point};

    let spec = CaptureSpec {
        iface: lab.host_if().to_string(),
        hooks: vec![netray_core::Hook::Xdp],
        points: vec![Point::Entry, Point::Exit],
        snaplen: CaptureSpec::DEFAULT_SNAPLEN,
        filter: "udp port 7".into(),
        ring_bytes: 4 << 20,
        mode: AttachMode::Auto,
        chain_only: false,
    };
    let capture = Capture::start(pin, &spec)?;
    let out = std::fs::File::create(file).with_context(|| format!("creating {}", file.display()))?;
    let mut output = Output::pcapng(Box::new(std::io::BufWriter::new(out)), None)?;
    for iface in capture.interfaces() {
        output.declare(iface);
    }
    let state = Arc::new(Mutex::new((output, CaptureCounts::default())));
    let sink = Arc::clone(&state);
    let live = LiveCapture::start(
        capture,
        Arc::new(move |pkt: &Packet| {
            let Ok(mut st) = sink.lock() else { return false };
            let (output, counts) = &mut *st;
            match pkt.verdict {
                None => counts.entry += 1,
                Some(1) => counts.exit_drop += 1,
                Some(_) => counts.exit_pass += 1,
            }
            output.write(pkt)
        }),
    )?;
    let (report, _) = traffic_round(lab, monitor, 0)?;
    let stopped = live.stop()?;
    let mut st = state.lock().map_err(|_| anyhow::anyhow!("capture state poisoned"))?;
    let (output, counts) = &mut *st;
    output.finish()?;
    counts.written = output.written();
    counts.lost = stopped.stats.iter().map(|s| s.lost).sum();
    Ok((report, std::mem::take(counts)))
}

/// The first lines `tcpdump -r` prints for the file: the capture is a file tcpdump reads.
fn show_tcpdump(file: &std::path::Path, lines: usize) -> std::io::Result<()> {
    match std::process::Command::new("tcpdump").arg("-nn").arg("-r").arg(file).output() {
        Ok(out) if out.status.success() => {
            outln!("    $ tcpdump -nn -r {}", file.display())?;
            for l in String::from_utf8_lossy(&out.stdout).lines().take(lines) {
                outln!("    {l}")?;
            }
        }
        _ => outln!("    (tcpdump is not installed: skipping the read-back)")?,
    }
    Ok(())
}

/// (proto, family, sent, answered) of each protocol and family a round sends.
fn report_rows(r: &TrafficReport) -> Vec<(String, String, u64, u64)> {
    [Proto::Icmp, Proto::Udp, Proto::Tcp]
        .iter()
        .flat_map(|p| [Family::V4, Family::V6].map(|f| (*p, f)))
        .map(|(p, f)| {
            let family = format!("{f:?}").to_lowercase().replace('v', "ipv");
            (format!("{p:?}").to_lowercase(), family, r.sent(p, f), r.answered(p, f))
        })
        .collect()
}

fn print_report(r: &TrafficReport) -> std::io::Result<()> {
    let rows: Vec<Vec<String>> =
        report_rows(r).into_iter().map(|(p, f, sent, answered)| vec![p, f, sent.to_string(), answered.to_string()]).collect();
    table_indented("    ", &["PROTO", "FAMILY", "SENT", "ANSWERED"], &rows)
}

fn traffic_json(r: &TrafficReport) -> serde_json::Value {
    let rows = report_rows(r).into_iter().map(|(proto, family, sent, answered)| {
        serde_json::json!({ "proto": proto, "family": family, "sent": sent, "answered": answered })
    });
    serde_json::Value::Array(rows.collect())
}

fn print_rules(fw: &Firewall) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = fw
        .list()?
        .iter()
        .map(|r| vec![r.id.to_string(), r.rule.to_string(), r.packets.to_string(), r.bytes.to_string()])
        .collect();
    table_indented("    ", &["ID", "RULE", "PACKETS", "BYTES"], &rows)?;
    Ok(())
}
