//! `netray drops`.

use std::{
    fs::File,
    io::{BufWriter, Write},
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use clap::Args;
use netray_capture::{CaptureIf, Packet, PcapngWriter, Point};
use netray_drops::{DropEvent, DropsSession, DropsSpec};

use super::iface_watch::{exit_status_help, IfaceWatch, EXIT_IFACE_GONE};
use super::Context;
use crate::output::{json_line, line};

#[derive(Args)]
#[command(after_help = concat!("Examples:\n  \
    netray drops                              # every drop in this network namespace\n  \
    netray drops -i eth1 udp port 53          # on eth1, DNS only (filtered in the kernel)\n  \
    netray drops --reason NO_SOCKET,TCP_CSUM -c 10\n  \
    netray drops -i eth1 -w drops.pcapng      # tshark -r drops.pcapng -T fields -e frame.comment\n  \
    netray drops --stats                      # counts per (who, reason, interface) each second\n\
    \n\
    Each line: time, interface, who dropped it (kernel, or netray's firewall with its hook and rule),\n\
    the kernel's reason as the running kernel names it (NO_SOCKET, TCP_CSUM, NETFILTER_DROP, ...) and\n\
    the kernel function that freed it, then the packet as `netray dump` prints it. Kernel drops come\n\
    from the skb:kfree_skb tracepoint (tp_btf, else raw_tp, else the plain tracepoint: whichever this\n\
    kernel takes; the first line on stderr says which); frees that are not drops are not shown. With\n\
    -i, netray's own drops on that interface are shown too when its firewall runs there. Without -i,\n\
    the drops of this process's network namespace are shown (--all-namespaces: every namespace;\n\
    interfaces of other namespaces read ifN@nsINODE). The EXPRESSION (tcpdump syntax) applies to the\n\
    kernel's drops. --json: one object per drop ({\"type\":\"drop\", ts, ifname, who, reason, location,\n\
    function, rule, summary, src, dst, sport, dport, proto, len}) and a {\"type\":\"stats\"} line each\n\
    second and at exit. Drops the ring had no room for are counted (lost), never silently missing.",
    exit_status_help!()))]
pub struct DropsArgs {
    /// Only drops on this interface (of the current network namespace).
    #[arg(short, long = "interface", value_name = "IFACE")]
    iface: Option<String>,
    /// Only these reasons (the kernel's names, e.g. NO_SOCKET; "rule N" for netray's).
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    reason: Vec<String>,
    /// Exit after this many drops.
    #[arg(short = 'c', long = "count", value_name = "COUNT")]
    count: Option<u64>,
    /// Exit after this many seconds.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Write the dropped packets as pcapng, the reason and location as each packet's comment.
    #[arg(short = 'w', value_name = "FILE")]
    write: Option<std::path::PathBuf>,
    /// Print counts per (who, reason, interface) each second instead of lines.
    #[arg(long)]
    stats: bool,
    /// Trace every network namespace (without -i).
    #[arg(long, conflicts_with = "iface")]
    all_namespaces: bool,
    /// Bytes kept of each packet.
    #[arg(short = 's', long = "snaplen", default_value_t = 65535, value_name = "BYTES")]
    snaplen: u32,
    /// The ring buffer's size in MiB (a power of two).
    #[arg(long, default_value_t = 8, value_name = "MIB")]
    buffer_mib: u32,
    /// Print the drop reasons of the running kernel and exit.
    #[arg(long)]
    list_reasons: bool,
    /// pcap-filter expression (tcpdump syntax), run in the kernel.
    #[arg(value_name = "EXPRESSION", trailing_var_arg = true)]
    expression: Vec<String>,
}

pub fn run(ctx: &Context, args: DropsArgs) -> anyhow::Result<ExitCode> {
    if args.list_reasons {
        for name in DropsSession::reason_names().map_err(anyhow::Error::msg)? {
            line(&name)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !args.buffer_mib.is_power_of_two() || args.buffer_mib > 1024 {
        anyhow::bail!("--buffer-mib {}: give a power of two from 1 to 1024", args.buffer_mib);
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGPIPE] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let pin = ctx.pin()?;
    let spec = DropsSpec {
        iface: args.iface.clone(),
        all_namespaces: args.all_namespaces,
        expression: args.expression.join(" "),
        snaplen: args.snaplen.clamp(1, 65535),
        reasons: args.reason.clone(),
        ring_bytes: args.buffer_mib << 20,
    };
    let mut session = DropsSession::start(Some(&pin), &spec)?;
    let watch = match &args.iface {
        Some(i) => Some(IfaceWatch::start(&netray_core::Interface::resolve(i)?, &stop)?),
        None => None,
    };
    let scope = match (&args.iface, args.all_namespaces) {
        (Some(i), _) => i.clone(),
        (None, true) => "every network namespace".into(),
        (None, false) => "this network namespace".into(),
    };
    eprintln!(
        "netray: drops on {scope} via {}{}; Ctrl-C to stop",
        session.attach_way(),
        if session.reads_own() { ", with netray's firewall drops" } else { "" }
    );
    for note in session.notes() {
        eprintln!("netray: {note}");
    }
    let mut pcap = match &args.write {
        Some(path) => {
            let out: Box<dyn Write> = if path.as_os_str() == "-" {
                Box::new(std::io::stdout())
            } else {
                Box::new(BufWriter::new(File::create(path).map_err(|e| anyhow::anyhow!("-w {}: {e}", path.display()))?))
            };
            Some(PcapngWriter::new(out)?)
        }
        None => None,
    };
    let to_stdout = args.write.as_ref().is_some_and(|p| p.as_os_str() == "-");
    let deadline = args.duration.map(|s| Instant::now() + Duration::from_secs_f64(s));
    let mut printed = 0u64;
    let mut write_error: Option<anyhow::Error> = None;
    let mut last_stats = Instant::now();
    let lines = !args.stats && !to_stdout;
    let mut each = |ev: DropEvent| {
        if write_error.is_some() || args.count.is_some_and(|c| printed >= c) {
            return false;
        }
        let r = (|| -> anyhow::Result<()> {
            if let Some(w) = &mut pcap {
                write_pcap(w, &ev, spec.snaplen)?;
            }
            if lines {
                if args.json {
                    json_line(&ev)?;
                } else {
                    line(&ev.to_string())?;
                }
            }
            Ok(())
        })();
        if let Err(e) = r {
            write_error = Some(e);
            return false;
        }
        printed += 1;
        args.count.is_none_or(|c| printed < c)
    };
    while !stop.load(Ordering::Relaxed) && deadline.is_none_or(|d| Instant::now() < d) {
        if !session.poll(Duration::from_millis(50), &mut each)? {
            break;
        }
        if last_stats.elapsed() >= Duration::from_secs(1) {
            if args.stats {
                print_counts(&session, args.json)?;
            } else if args.json {
                json_line(&session.stats()?)?;
            }
            last_stats = Instant::now();
        }
    }
    let gone = watch.as_ref().is_some_and(IfaceWatch::report);
    let counts = session.counts().clone();
    let stats = session.finish(&mut each)?;
    drop(each);
    if let Some(mut w) = pcap {
        w.flush()?;
    }
    if args.stats {
        print_rows(&counts, args.json)?;
    }
    if args.json && !to_stdout {
        json_line(&stats)?;
    } else {
        eprintln!("{printed} drops reported");
        eprintln!(
            "kernel: {} frees seen, {} not drops, {} elsewhere, {} filtered out, {} reported, {} lost (ring full)",
            stats.kernel.freed,
            stats.kernel.not_drops,
            stats.kernel.other_scope,
            stats.kernel.filtered,
            stats.kernel.reported,
            stats.kernel.lost
        );
        eprintln!("netray: {} drop events received, {} lost (ring full)", stats.netray_received, stats.netray_lost);
        if stats.hold_overflow > 0 {
            eprintln!(
                "{} drops went out before their pairing window ended (hold queue full): some of netray's drops may also show as the kernel's",
                stats.hold_overflow
            );
        }
    }
    if let Some(w) = &watch {
        w.remove_pins(&pin)?;
    }
    let code = if gone { ExitCode::from(EXIT_IFACE_GONE) } else { ExitCode::SUCCESS };
    write_error.map_or(Ok(code), Err)
}

fn print_counts(session: &DropsSession, json: bool) -> anyhow::Result<()> {
    print_rows(session.counts(), json)
}

fn print_rows(counts: &netray_drops::DropCounts, json: bool) -> anyhow::Result<()> {
    let rows = counts.rows();
    if json {
        return json_line(&serde_json::json!({"type": "counts", "drops": rows}));
    }
    line(&format!("{:<20} {:<28} {:<16} {:>10} {:>12}", "WHO", "REASON", "INTERFACE", "PACKETS", "BYTES"))?;
    for r in rows {
        line(&format!("{:<20} {:<28} {:<16} {:>10} {:>12}", r.who, r.reason, r.ifname, r.packets, r.bytes))?;
    }
    Ok(())
}

/// A drop as a pcapng packet; netray's own drops carry no bytes and are not written.
fn write_pcap(w: &mut PcapngWriter<Box<dyn Write>>, ev: &DropEvent, snaplen: u32) -> anyhow::Result<()> {
    let Some(ts) = ev.time else { return Ok(()) };
    if ev.data.is_empty() {
        return Ok(());
    }
    let iface = CaptureIf { ifindex: ev.ifindex, ifname: ev.ifname.clone(), hook: None, point: Point::Entry, snaplen };
    let pkt = Packet { iface: &iface, ts, wire_len: ev.len, data: &ev.data, verdict: None, audit_rule: None };
    w.write_with_comment(&pkt, Some(&ev.cause()))?;
    Ok(())
}
