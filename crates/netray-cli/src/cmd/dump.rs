//! `netray dump`.

use std::{
    io::{BufWriter, Write},
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{bail, Context as _};
use netray_capture::hexdump::{Payload, PayloadDump};
use netray_capture::line::{LineStyle, TimeStamp};
use netray_capture::rotation::{Rotation, RotationSpec};
use netray_capture::{offline, Capture, CaptureSpec, DirectFile, LiveCapture, Output, Point, PointStats};

pub use super::dump_args::DumpArgs;
use super::dump_args::PointArg;
use super::{dump_interfaces, Context};
use crate::output::outln;

pub fn run(ctx: &Context, args: DumpArgs) -> anyhow::Result<ExitCode> {
    if args.list_interfaces {
        dump_interfaces::list(args.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let filter = filter_expression(&args)?;
    let snaplen = if args.snaplen == 0 { CaptureSpec::DEFAULT_SNAPLEN } else { args.snaplen };
    check_output(&args)?;
    if let Some(path) = &args.read {
        // The filter runs as a BPF program here too: say what it needs before the
        // kernel refuses it.
        netray_core::probe::require_bpf()?;
        let filter = netray_pcapfilter::Filter::new(&filter, snaplen)?;
        let reader = offline::open(path)?;
        let mut output = open_output(&args)?;
        let code = read_file(reader, &filter, snaplen, &mut output, args.json)?;
        print_count(&args, &output)?;
        return Ok(code);
    }
    let iface = args.iface.clone().unwrap_or_default();
    let points = match args.point {
        PointArg::Entry => vec![Point::Entry],
        PointArg::Exit => vec![Point::Exit],
        PointArg::Both => vec![Point::Entry, Point::Exit],
    };
    let mut hooks = args.direction.map_or_else(|| args.hook.clone(), |d| d.hooks());
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
    // Created only once the capture stands: one that cannot start leaves no file.
    let output = open_output(&args)?;
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
    let file_limit = out.file_limit_reached();
    print_summary(written, &stopped.stats, args.json)?;
    for note in stopped.notes {
        eprintln!("netray: {note}");
    }
    if let Some(files) = file_limit {
        eprintln!("netray: maximum file limit reached: {files} (-W)");
    }
    finished.context("writing the capture")?;
    print_count(&args, &out)?;
    if vanished {
        bail!("{} went away while capturing (the capture up to then is complete)", spec.iface);
    }
    Ok(ExitCode::SUCCESS)
}

/// The output flags' mistakes, found before anything is attached or created.
fn check_output(args: &DumpArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if args.count == Some(0) {
        bail!("-c 0: the count must be at least 1 (leave -c out to capture until Ctrl-C)");
    }
    let to_stdout = args.write.as_deref().is_some_and(|p| p.as_os_str() == "-");
    if to_stdout && std::io::stdout().is_terminal() {
        bail!("-w - writes binary pcapng to stdout, which is a terminal: pipe it (`| tcpdump -r -`) or use -w FILE");
    }
    if let Some(spec) = rotation_spec(args) {
        if to_stdout {
            bail!("-C, -W and -G rotate files: give -w a file name, not -");
        }
        Rotation::start(spec, std::time::SystemTime::now())?;
    }
    line_style(args)?;
    Ok(())
}

/// `-w` with `-C`, `-W` or `-G`.
fn rotation_spec(args: &DumpArgs) -> Option<RotationSpec> {
    let rotating = args.file_size.is_some() || args.file_count.is_some() || args.rotate_seconds.is_some();
    Some(RotationSpec {
        pattern: args.write.as_ref().filter(|_| rotating)?.to_string_lossy().into_owned(),
        max_bytes: args.file_size.map(|mb| mb.saturating_mul(1_000_000)),
        max_files: args.file_count,
        seconds: args.rotate_seconds,
    })
}

/// Opens (creates) the output [`check_output`] accepted.
fn open_output(args: &DumpArgs) -> anyhow::Result<Output> {
    let to_stdout = args.write.as_deref().is_some_and(|p| p.as_os_str() == "-");
    if args.count_only {
        return Ok(Output::count_only(args.count));
    }
    let output = match (&args.write, rotation_spec(args)) {
        (Some(_), Some(spec)) => Output::rotating(spec, args.count)?,
        (Some(_), None) if to_stdout => Output::pcapng(Box::new(BufWriter::new(std::io::stdout())), args.count)?,
        (Some(p), None) => {
            // Direct I/O in large aligned blocks (buffered where the filesystem refuses it).
            let f = DirectFile::create(p).with_context(|| format!("cannot create {}", p.display()))?;
            Output::pcapng(Box::new(f), args.count)?
        }
        (None, _) => Output::text(Box::new(BufWriter::new(std::io::stdout())), args.json, args.count)
            .with_style(line_style(args)?),
    };
    Ok(output.flush_each_packet(args.line_buffered || args.packet_buffered))
}

/// The text line's shape from tcpdump's flags; -X wins over -x, and -x over -A, as in tcpdump.
fn line_style(args: &DumpArgs) -> anyhow::Result<LineStyle> {
    let Some(time) = TimeStamp::from_t_count(args.time) else {
        bail!("-{}: tcpdump's -t comes as -t, -tt, -ttt, -tttt or -ttttt", "t".repeat(args.time.into()));
    };
    let (payload, doubled) = if args.hex_ascii > 0 {
        (Payload::HexAscii, args.hex_ascii > 1)
    } else if args.hex > 0 {
        (Payload::Hex, args.hex > 1)
    } else if args.ascii > 0 {
        (Payload::Ascii, args.ascii > 1)
    } else {
        (Payload::None, false)
    };
    Ok(LineStyle {
        time,
        link_header: args.link_header,
        quiet: args.quiet,
        verbose: args.verbose,
        payload: PayloadDump { payload, with_link: doubled },
        skip_checksums: args.no_checksums,
    })
}

/// The expression: from -F FILE ('#' to the end of a line is a comment, as in tcpdump), or
/// the command line's words.
fn filter_expression(args: &DumpArgs) -> anyhow::Result<String> {
    let Some(path) = &args.filter_file else { return Ok(args.expression.join(" ")) };
    if !args.expression.is_empty() {
        bail!(
            "-F {} and an expression on the command line ('{}'): give the filter one way, in the file or after the options",
            path.display(),
            args.expression.join(" ")
        );
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("-F: cannot read the filter file {}", path.display()))?;
    Ok(text.lines().map(|l| l.split('#').next().unwrap_or_default()).collect::<Vec<_>>().join(" ").trim().to_owned())
}

/// `--count`: the number of matching packets on stdout, as tcpdump prints it.
fn print_count(args: &DumpArgs, output: &Output) -> anyhow::Result<()> {
    if args.count_only {
        let n = output.written();
        outln!("{n} packet{}", if n == 1 { "" } else { "s" })?;
    }
    Ok(())
}

/// `-r`: the file's packets through the in-kernel filter program.
fn read_file(
    reader: offline::OfflineReader,
    filter: &netray_pcapfilter::Filter,
    snaplen: u32,
    out: &mut Output,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (mut read, mut matched) = (0u64, 0u64);
    let mut first_iface = None;
    for pkt in reader {
        let pkt = pkt?;
        read += 1;
        first_iface.get_or_insert_with(|| pkt.iface.clone());
        if filter.matches(&pkt.data, pkt.wire_len)? {
            matched += 1;
            let mut p = pkt.as_packet();
            p.data = &p.data[..p.data.len().min(snaplen as usize)];
            if !out.write(&p) {
                break;
            }
        }
    }
    if out.written() == 0 {
        // A pcapng file without an Interface Description Block is refused by tcpdump:
        // an empty result still names the interface the packets came from.
        if let Some(iface) = &first_iface {
            out.declare(iface);
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
