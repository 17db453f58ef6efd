//! `netray exec` (and `netray bench exec`): arguments and the print loop.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::backend::BackendChoice;
use crate::bench::{self, BenchOptions};
use crate::filter::Filter;
use crate::output;
use crate::tracer::{ExecTracer, TracerOptions};

const EXAMPLES: &str = "\
Examples:
  netray exec                              every exec, as it happens
  netray exec --comm curl --failed         failed execs that ran (or tried to run) as curl
  netray exec --json --uid 1000 -c 10      ten execs by uid 1000, as JSON lines
  netray exec -v --timestamp --duration 30 30 seconds, with times; print the backend used
  netray exec --backend raw-tracepoint     force a kernel hook";

/// Trace process execs (execve/execveat) with their result.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = EXAMPLES)]
pub struct ExecArgs {
    /// Print one JSON object per exec (ts, pid, ppid, uid, comm, filename, argv,
    /// argv_truncated, result, errno), and {"stats": ...} lines when records are
    /// lost and at exit.
    #[arg(long)]
    pub json: bool,

    /// Only execs whose reported comm is NAME: the new program's name, or the
    /// caller's when the exec failed. Longer names are cut to 15 bytes, as the
    /// kernel cuts them. Filtered in the kernel.
    #[arg(long, value_name = "NAME")]
    pub comm: Option<String>,

    /// Only execs by process PID. Filtered in the kernel.
    #[arg(long, value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub pid: Option<u32>,

    /// Only execs by real user id UID. Filtered in the kernel.
    #[arg(long, value_name = "UID")]
    pub uid: Option<u32>,

    /// Only execs that failed (result is an errno). Filtered in the kernel.
    #[arg(long)]
    pub failed: bool,

    /// Start each line with the local time of the exec's return (HH:MM:SS.mmm).
    #[arg(long)]
    pub timestamp: bool,

    /// Kernel hook that feeds events. auto tries tracepoint, fentry, kprobe,
    /// raw-tracepoint and uses the first the kernel accepts.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto, value_name = "BACKEND")]
    pub backend: BackendChoice,

    /// Print the backend chosen, and why the others were not (tries them all).
    #[arg(short, long)]
    pub verbose: bool,

    /// Exit after COUNT execs.
    #[arg(short = 'c', long = "count", value_name = "COUNT", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Exit after SECS seconds (fractions allowed).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub duration: Option<Duration>,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("'{s}' is not a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Longest delay between an exec and its line.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Stop cleanly on SIGINT/SIGTERM so the totals are printed. No SA_RESTART:
/// the ring's epoll wait returns at once.
fn install_signal_handlers() -> anyhow::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(sig, &action) }
            .with_context(|| format!("installing a {sig} handler"))?;
    }
    Ok(())
}

/// libbpf's own messages (expected failures while probing backends) go to
/// tracing at debug level rather than straight to stderr.
fn route_libbpf_logs() {
    fn log(level: libbpf_rs::PrintLevel, msg: String) {
        let msg = msg.trim_end();
        match level {
            libbpf_rs::PrintLevel::Debug => tracing::trace!(target: "libbpf", "{msg}"),
            _ => tracing::debug!(target: "libbpf", "{msg}"),
        }
    }
    libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Info, log)));
}

pub fn run(args: ExecArgs) -> anyhow::Result<()> {
    route_libbpf_logs();
    let filter = Filter {
        pid: args.pid,
        uid: args.uid,
        comm: args.comm.clone(),
        failed_only: args.failed,
    };
    let opts = TracerOptions {
        filter,
        backend: args.backend,
        explain: args.verbose,
        ..Default::default()
    };
    let mut tracer = ExecTracer::with_options(opts)?;
    if args.verbose {
        eprintln!("{}", tracer.report());
    }
    install_signal_handlers()?;

    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let printed = match print_loop(&mut tracer, &args, &mut out) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()), // e.g. `| head`
        Err(e) => return Err(e).context("writing to stdout"),
    };

    let stats = tracer.stats()?;
    if args.json {
        let line = output::json_stats(tracer.backend().name(), printed, &stats);
        let _ = writeln!(out, "{line}").and_then(|_| out.flush());
    } else {
        let _ = out.flush();
        eprintln!(
            "{printed} execs printed, {} lost (ring buffer full)",
            stats.lost
        );
    }
    Ok(())
}

/// Prints events until COUNT, the duration, or a signal; returns how many.
fn print_loop(tracer: &mut ExecTracer, args: &ExecArgs, out: &mut impl Write) -> io::Result<u64> {
    let deadline = args.duration.map(|d| Instant::now() + d);
    let mut printed = 0u64;
    let mut lost_reported = 0;
    let mut next_stats = Instant::now() + Duration::from_secs(1);
    if !args.json {
        writeln!(out, "{}", output::text_header(args.timestamp))?;
        out.flush()?;
    }
    while !STOP.load(Ordering::Relaxed) {
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        // The kernel wakes us only when records pile up: poll at the latency
        // a person watching accepts.
        let wait = deadline.map_or(POLL_INTERVAL, |d| (d - now).min(POLL_INTERVAL));
        let events = tracer.poll(wait).map_err(io::Error::other)?;
        for ev in &events {
            if args.json {
                writeln!(out, "{}", output::json_event(ev))?;
            } else {
                writeln!(out, "{}", output::text_line(ev, args.timestamp))?;
            }
            printed += 1;
            if args.count.is_some_and(|c| printed >= c) {
                out.flush()?;
                return Ok(printed);
            }
        }
        if !events.is_empty() {
            out.flush()?;
        }
        // Losses are reported as they happen in JSON mode, at most once a second.
        if args.json && Instant::now() >= next_stats {
            next_stats = Instant::now() + Duration::from_secs(1);
            if let Ok(stats) = tracer.stats() {
                if stats.lost != lost_reported {
                    lost_reported = stats.lost;
                    writeln!(
                        out,
                        "{}",
                        output::json_stats(tracer.backend().name(), printed, &stats)
                    )?;
                    out.flush()?;
                }
            }
        }
    }
    Ok(printed)
}

/// `netray bench exec`: the cost tracing adds to each exec.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "Example:\n  netray bench exec --execs 2000 --program /bin/true")]
pub struct BenchArgs {
    /// fork+exec per mode (untraced, and each backend).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    pub execs: u64,

    /// Rounds the modes take turns in (evens out load from other processes).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub rounds: u64,

    /// Program to exec (it must exit 0 with no arguments).
    #[arg(long, default_value = "/bin/true", value_name = "PATH")]
    pub program: std::path::PathBuf,

    /// Backends to measure (repeatable); default: every one that loads.
    #[arg(long, value_enum, value_name = "BACKEND")]
    pub backend: Vec<BackendChoice>,
}

pub fn run_bench(args: BenchArgs) -> anyhow::Result<()> {
    route_libbpf_logs();
    if !crate::privilege::can_trace() {
        return Err(crate::ExecError::NotPrivileged.into());
    }
    let mut opts = BenchOptions {
        execs: args.execs as usize,
        rounds: args.rounds as usize,
        program: args.program,
        ..Default::default()
    };
    if !args.backend.is_empty() {
        opts.backends = args.backend;
    }
    print!("{}", bench::bench(&opts)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    #[command(name = "netray-exec")]
    struct Cli {
        #[command(flatten)]
        args: ExecArgs,
    }

    #[test]
    fn help_lists_every_flag_and_an_example() {
        let help = Cli::command().render_long_help().to_string();
        for flag in [
            "--json",
            "--comm",
            "--pid",
            "--uid",
            "--failed",
            "--timestamp",
            "--backend",
            "--verbose",
            "-v",
            "--count",
            "-c",
            "--duration",
            "raw-tracepoint",
            "kprobe",
            "fentry",
            "Examples:",
        ] {
            assert!(help.contains(flag), "help lacks {flag}:\n{help}");
        }
    }

    #[test]
    fn bad_values_are_rejected_by_the_parser() {
        for bad in [
            &["--pid", "abc"][..],
            &["--pid", "0"],
            &["--duration", "-1"],
            &["--backend", "ebpf"],
            &["-c", "x"],
        ] {
            let argv = std::iter::once("netray-exec").chain(bad.iter().copied());
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?} accepted");
        }
        let ok = Cli::try_parse_from([
            "x",
            "--pid",
            "7",
            "--duration",
            "0.5",
            "--backend",
            "raw-tracepoint",
            "-c",
            "3",
        ])
        .unwrap();
        assert_eq!(ok.args.pid, Some(7));
        assert_eq!(ok.args.duration, Some(Duration::from_millis(500)));
        assert_eq!(ok.args.backend, BackendChoice::RawTracepoint);
    }
}
