//! `netray exec` and `netray bench exec`: arguments and the print loop over
//! netray-exec's tracer.

use std::{
    io::{self, Write},
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use netray_exec::{bench, output, BackendChoice, ExecTracer, Filter, TracerOptions};

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
    let secs: f64 = s.parse().map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("'{s}' is not a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Longest delay between an exec and its line.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

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

pub fn run(args: ExecArgs) -> anyhow::Result<ExitCode> {
    route_libbpf_logs();
    let filter = Filter { pid: args.pid, uid: args.uid, comm: args.comm.clone(), failed_only: args.failed };
    let opts = TracerOptions { filter, backend: args.backend, explain: args.verbose, ..Default::default() };
    let mut tracer = ExecTracer::with_options(opts)?;
    if args.verbose {
        eprintln!("{}", tracer.report());
    }
    // Stop cleanly on SIGINT/SIGTERM so the totals are printed.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }

    let mut out = io::BufWriter::new(io::stdout().lock());
    let printed = print_loop(&mut tracer, &args, &stop, &mut out)?;
    let stats = tracer.stats()?;
    if args.json {
        writeln!(out, "{}", output::json_stats(tracer.backend().name(), printed, &stats))?;
        out.flush()?;
    } else {
        out.flush()?;
        eprintln!("{printed} execs printed, {} lost (ring buffer full)", stats.lost);
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints events until COUNT, the duration, or a signal; returns how many.
fn print_loop(tracer: &mut ExecTracer, args: &ExecArgs, stop: &AtomicBool, out: &mut impl Write) -> anyhow::Result<u64> {
    let deadline = args.duration.map(|d| Instant::now() + d);
    let mut printed = 0u64;
    let mut lost_reported = 0;
    let mut next_stats = Instant::now() + Duration::from_secs(1);
    if !args.json {
        writeln!(out, "{}", output::text_header(args.timestamp))?;
        out.flush()?;
    }
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        // The kernel wakes us only when records pile up: poll at the latency
        // a person watching accepts.
        let wait = deadline.map_or(POLL_INTERVAL, |d| (d - now).min(POLL_INTERVAL));
        let events = tracer.poll(wait)?;
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
                    writeln!(out, "{}", output::json_stats(tracer.backend().name(), printed, &stats))?;
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
    if !netray_exec::can_trace() {
        return Err(netray_exec::ExecError::NotPrivileged.into());
    }
    let mut opts = bench::BenchOptions {
        execs: args.execs as usize,
        rounds: args.rounds as usize,
        program: args.program,
        ..Default::default()
    };
    if !args.backend.is_empty() {
        opts.backends = args.backend;
    }
    write!(io::stdout(), "{}", bench::bench(&opts)?)?;
    Ok(())
}
