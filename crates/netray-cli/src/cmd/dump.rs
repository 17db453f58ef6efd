//! `netray dump`.

use std::{
    io::{BufWriter, Write},
    path::PathBuf,
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use netray_capture::{offline, Capture, CaptureSpec, DirectFile, LiveCapture, Output, Point, PointStats};
use netray_core::{AttachMode, Hook};

use super::{firewall::parse_mode, Context};

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    netray dump -i eth1\n  \
    netray dump -i eth1 -w capture.pcapng tcp port 80 or icmp\n  \
    netray dump -i eth1 -w - 'udp and not port 53' | tcpdump -r -\n  \
    netray dump -i eth1 --point both -c 100 -w fw.pcapng\n  \
    netray dump -i eth1 --mode chain -w in.pcapng udp port 53\n  \
    netray dump -i eth1 --hook tc-egress -c 10\n  \
    netray dump -r capture.pcapng -w https.pcapng tcp port 443\n\
    \n\
    The filter expression is pcap-filter syntax (man 7 pcap-filter), compiled by libpcap and run\n\
    inside the kernel: packets it rejects are never copied to userspace.\n\
    \n\
    Hooks: xdp (received, before the network stack: sees what XDP programs drop), tc-ingress,\n\
    tc-egress (sent). Points: entry (before any program on the hook decides), exit (after the program\n\
    on the hook decided; each record carries the verdict, as the pcapng epb_verdict option and a comment).\n\
    \n\
    Beside an XDP program netray did not load, dump watches it through fentry/fexit on its main function\n\
    where the kernel allows it and the program has BTF: nothing is swapped, the program stays attached\n\
    untouched, and exit records carry the verdicts it returned. Elsewhere, or with --mode chain, the\n\
    capture goes in front of it, reaches it by tail call, and puts it back exactly when dump exits (also\n\
    on Ctrl-C and SIGTERM; after kill -9, traffic keeps flowing through it and the next dump on the\n\
    interface puts it back); the exit point then needs netray's own program on the interface. One line\n\
    on stderr (and \"foreign_xdp\" in the --json start record) says which way was taken and why.\n\
    \n\
    Without -w, one line per packet (tcpdump -nn style; --json: one object per packet). With -w,\n\
    pcapng with one interface per (interface, hook, point) and nanosecond timestamps. At the end, like\n\
    tcpdump: packets captured, received by filter, matched, and dropped by kernel (ring buffer full):\n\
    losses are never silent. See docs/dump.md.")]
pub struct DumpArgs {
    /// Interface to capture on.
    #[arg(short, long = "interface", value_name = "IFACE", required_unless_present = "read")]
    iface: Option<String>,
    /// Write pcapng to FILE ('-' for stdout) instead of printing packets.
    #[arg(short = 'w', value_name = "FILE")]
    write: Option<PathBuf>,
    /// Read packets from a pcap or pcapng FILE ('-' for stdin) and filter them with the same
    /// in-kernel program (BPF_PROG_TEST_RUN).
    #[arg(short = 'r', value_name = "FILE", conflicts_with_all = ["iface", "hook", "point"])]
    read: Option<PathBuf>,
    /// Exit after this many packets.
    #[arg(short = 'c', value_name = "COUNT")]
    count: Option<u64>,
    /// Bytes kept of each packet (0 = 262144, like tcpdump).
    #[arg(short = 's', long = "snapshot-length", value_name = "SNAPLEN", default_value_t = CaptureSpec::DEFAULT_SNAPLEN)]
    snaplen: u32,
    /// Where to capture: xdp, tc-ingress, tc-egress (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', value_parser = parse_hook, default_value = "xdp")]
    hook: Vec<Hook>,
    /// entry, exit or both.
    #[arg(long, value_enum, default_value = "entry")]
    point: PointArg,
    /// Ring buffer size per CPU and hook, in KiB (rounded up to a power of two).
    #[arg(short = 'B', long = "buffer-size", value_name = "KIB", default_value_t = CaptureSpec::DEFAULT_RING_BYTES / 1024)]
    buffer_kib: u32,
    /// auto: fentry/fexit on an XDP program netray did not load where the kernel allows it, else
    /// chaining in front of it; chain: always chaining; native, generic: the XDP attach mode when
    /// netray attaches a program itself (auto tries native, then generic).
    #[arg(long, default_value = "auto", value_parser = parse_dump_mode)]
    mode: (AttachMode, bool),
    /// One JSON object per packet (without -w), and the summary as JSON on stderr.
    #[arg(long)]
    json: bool,
    /// pcap-filter expression.
    #[arg(value_name = "EXPRESSION", trailing_var_arg = true)]
    expression: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum PointArg {
    Entry,
    Exit,
    Both,
}

pub fn run(ctx: &Context, args: DumpArgs) -> anyhow::Result<ExitCode> {
    let filter = args.expression.join(" ");
    let snaplen = if args.snaplen == 0 { CaptureSpec::DEFAULT_SNAPLEN } else { args.snaplen };
    let mut output = open_output(&args)?;
    if let Some(path) = &args.read {
        return read_file(path, &filter, snaplen, &mut output, args.json);
    }
    let iface = args.iface.clone().unwrap_or_default();
    let points = match args.point {
        PointArg::Entry => vec![Point::Entry],
        PointArg::Exit => vec![Point::Exit],
        PointArg::Both => vec![Point::Entry, Point::Exit],
    };
    let mut hooks = args.hook.clone();
    hooks.dedup();
    let ring_bytes = ring_size(args.buffer_kib)?;

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let pin = ctx.pin()?;
    let (mode, chain_only) = args.mode;
    let spec = CaptureSpec { iface, hooks, points, snaplen, filter, ring_bytes, mode, chain_only };
    let mut capture = Capture::start(&pin, &spec)?;
    for note in capture.notes.drain(..) {
        eprintln!("netray: {note}");
    }
    let hooks: Vec<&str> = spec.hooks.iter().map(|h| h.name()).collect();
    let points: Vec<&str> = spec.points.iter().map(|p| p.name()).collect();
    if args.json {
        let started = serde_json::json!({
            "type": "capturing", "interface": spec.iface, "hooks": hooks, "points": points, "snaplen": snaplen,
            "foreign_xdp": capture.foreign_xdp,
        });
        writeln!(std::io::stderr(), "{started}")?;
    } else {
        eprintln!(
            "netray: capturing on {} at {} ({}), snapshot length {} bytes; Ctrl-C to stop",
            spec.iface,
            hooks.join(","),
            points.join(","),
            snaplen
        );
    }

    let (live, output) = LiveCapture::write_to(capture, output)?;
    let mut vanished = false;
    while !stop.load(Ordering::SeqCst) && !live.done() {
        std::thread::sleep(Duration::from_millis(50));
        if let Ok(mut out) = output.lock() {
            out.flush();
        }
        if netray_core::Interface::resolve(&spec.iface).is_err() {
            vanished = true;
            break;
        }
    }
    // Take the programs down first, then drain what they wrote.
    let stopped = live.stop();
    let mut out = output.lock().map_err(|_| anyhow::anyhow!("the capture output was poisoned"))?;
    let written = out.written();
    let finished = out.finish();
    let stopped = stopped?;
    print_summary(written, &stopped.stats, args.json)?;
    for note in stopped.notes {
        eprintln!("netray: {note}");
    }
    finished.context("writing the capture")?;
    if vanished {
        bail!("{} went away while capturing (the capture up to then is complete)", spec.iface);
    }
    Ok(ExitCode::SUCCESS)
}

/// `--mode`: the XDP attach mode, and whether to chain beside a foreign program
/// even where fentry/fexit would do.
fn parse_dump_mode(s: &str) -> Result<(AttachMode, bool), String> {
    match s {
        "chain" => Ok((AttachMode::Auto, true)),
        other => parse_mode(other).map(|m| (m, false)).map_err(|e| format!("{e}; or chain (see --help)")),
    }
}

fn open_output(args: &DumpArgs) -> anyhow::Result<Output> {
    use std::io::IsTerminal;
    if args.count == Some(0) {
        bail!("-c 0: the count must be at least 1 (leave -c out to capture until Ctrl-C)");
    }
    if args.write.as_deref().is_some_and(|p| p.as_os_str() == "-") && std::io::stdout().is_terminal() {
        bail!("-w - writes binary pcapng to stdout, which is a terminal: pipe it (`| tcpdump -r -`) or use -w FILE");
    }
    Ok(match &args.write {
        Some(p) if p.as_os_str() == "-" => Output::pcapng(Box::new(BufWriter::new(std::io::stdout())), args.count)?,
        Some(p) => {
            // Direct I/O in large aligned blocks (buffered where the filesystem refuses it).
            let f = DirectFile::create(p).with_context(|| format!("cannot create {}", p.display()))?;
            Output::pcapng(Box::new(f), args.count)?
        }
        None => Output::text(Box::new(BufWriter::new(std::io::stdout())), args.json, args.count),
    })
}

/// `-r`: the file's packets through the in-kernel filter program.
fn read_file(path: &std::path::Path, filter: &str, snaplen: u32, out: &mut Output, json: bool) -> anyhow::Result<ExitCode> {
    let filter = netray_pcapfilter::Filter::new(filter, snaplen)?;
    let reader = offline::open(path)?;
    let (mut read, mut matched) = (0u64, 0u64);
    for pkt in reader {
        let pkt = pkt?;
        read += 1;
        if filter.matches(&pkt.data)? {
            matched += 1;
            let mut p = pkt.as_packet();
            p.data = &p.data[..p.data.len().min(snaplen as usize)];
            if !out.write(&p) {
                break;
            }
        }
    }
    let written = out.written();
    out.finish().context("writing the output")?;
    if json {
        let summary = serde_json::json!({"type": "summary", "read": read, "matched": matched, "written": written});
        writeln!(std::io::stderr(), "{summary}")?;
    } else {
        eprintln!("{read} packets read\n{matched} packets matched the filter\n{written} packets written");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(written: u64, stats: &[PointStats], json: bool) -> anyhow::Result<()> {
    let seen: u64 = stats.iter().map(|s| s.seen).sum();
    let matched: u64 = stats.iter().map(|s| s.matched).sum();
    let lost: u64 = stats.iter().map(|s| s.lost).sum();
    let clipped: u64 = stats.iter().map(|s| s.clipped).sum();
    if json {
        let summary = serde_json::json!({
            "type": "summary", "captured": written, "received_by_filter": seen, "matched": matched,
            "dropped_by_kernel": lost, "clipped": clipped, "points": stats,
        });
        writeln!(std::io::stderr(), "{summary}")?;
        return Ok(());
    }
    eprintln!("{written} packets captured");
    eprintln!("{seen} packets received by filter");
    eprintln!("{matched} packets matched the filter");
    eprintln!("{lost} packets dropped by kernel (ring buffer full)");
    if clipped > 0 {
        eprintln!("{clipped} packets kept shorter than the snapshot length (64 KiB per record at most)");
    }
    if stats.len() > 1 {
        for s in stats {
            eprintln!(
                "  {} {}: {} received by filter, {} matched, {} written to the ring, {} dropped by kernel",
                s.hook.name(),
                s.point.name(),
                s.seen,
                s.matched,
                s.captured,
                s.lost
            );
        }
    }
    Ok(())
}

fn ring_size(kib: u32) -> anyhow::Result<u32> {
    let bytes = u64::from(kib.max(64)) * 1024;
    let bytes = bytes.next_power_of_two();
    if bytes > 1 << 30 {
        bail!("-B {kib}: ring buffers are limited to 1 GiB per CPU; use a smaller -B");
    }
    Ok(bytes as u32)
}

fn parse_hook(s: &str) -> Result<Hook, String> {
    s.parse()
}
