//! What tracing costs each exec: the wall time of a burst of fork+exec of a
//! small program, without and with the tracer attached (its reader draining
//! the ring on another thread, as `netray exec` does).
//!
//! The bursts run in a separate runner process, forked before any tracer
//! exists: like real workloads, it does not hold the tracer's ring mapping.
//! (fork() copies the page tables of that 8 MiB double mapping, which alone
//! costs a few hundred µs per fork on a small VM and would swamp the figure.)

use std::ffi::CString;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

mod runner;

use runner::Runner;

use crate::backend::{Backend, BackendChoice};
use crate::tracer::{ExecTracer, TracerOptions};

#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// fork+exec per mode (untraced, and each backend).
    pub execs: usize,
    /// The modes take turns in this many rounds, so load from other processes
    /// and drift hit them alike.
    pub rounds: usize,
    pub program: PathBuf,
    /// Backends to measure (each one that loads); auto measures the one
    /// `netray exec` would pick.
    pub backends: Vec<BackendChoice>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            execs: 2000,
            rounds: 5,
            program: "/bin/true".into(),
            backends: vec![
                BackendChoice::Tracepoint,
                BackendChoice::RawTracepoint,
                BackendChoice::Fentry,
                BackendChoice::Kprobe,
            ],
        }
    }
}

/// One mode's timings.
#[derive(Clone, Debug, Default)]
pub struct Timing {
    /// Sum over rounds.
    pub elapsed: Duration,
    pub execs: usize,
    /// The fastest round, per exec: the figure least disturbed by other load.
    pub best_per_exec: Duration,
}

impl Timing {
    pub fn per_exec(&self) -> Duration {
        self.elapsed / self.execs.max(1) as u32
    }

    fn add(&mut self, elapsed: Duration, execs: usize) {
        let per = elapsed / execs.max(1) as u32;
        if self.execs == 0 || per < self.best_per_exec {
            self.best_per_exec = per;
        }
        self.elapsed += elapsed;
        self.execs += execs;
    }
}

#[derive(Clone, Debug)]
pub struct TracedRun {
    pub backend: Backend,
    pub timing: Timing,
    /// Kernel time in the tracer's programs during the bursts (all hooks, all
    /// processes: for raw-tracepoint that is every syscall on the system),
    /// and their run count. Zero if the kernel would not account it.
    pub bpf_time: Duration,
    pub bpf_runs: u64,
    /// Events for the bench's execs that reached userspace.
    pub seen: u64,
    pub lost: u64,
}

#[derive(Clone, Debug)]
pub struct BenchReport {
    pub program: PathBuf,
    pub rounds: usize,
    pub untraced: Timing,
    pub traced: Vec<TracedRun>,
    /// Backends that could not be loaded, with the reason.
    pub skipped: Vec<String>,
}

impl BenchReport {
    /// Traced time over untraced time, per exec (means over all rounds).
    pub fn ratio(&self, run: &TracedRun) -> f64 {
        run.timing.per_exec().as_secs_f64() / self.untraced.per_exec().as_secs_f64()
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let base = &self.untraced;
        writeln!(
            f,
            "exec bench: fork+exec {}, {} per mode, modes interleaved over {} rounds",
            self.program.display(),
            base.execs,
            self.rounds
        )?;
        writeln!(
            f,
            "  {:<15} {:>8.1} us/exec (best round {:.1})",
            "untraced",
            us(base.per_exec()),
            us(base.best_per_exec)
        )?;
        for run in &self.traced {
            let t = &run.timing;
            writeln!(
                f,
                "  {:<15} {:>8.1} us/exec (best round {:.1})  {:+.1} us/exec, x{:.3}  {}/{} seen, {} lost",
                run.backend.name(),
                us(t.per_exec()),
                us(t.best_per_exec),
                us(t.per_exec()) - us(base.per_exec()),
                self.ratio(run),
                run.seen,
                t.execs,
                run.lost
            )?;
            if run.bpf_runs > 0 {
                writeln!(
                    f,
                    "  {:<15} in BPF: {:.2} us/exec ({} program runs, {:.0} ns each)",
                    "",
                    us(run.bpf_time / t.execs.max(1) as u32),
                    run.bpf_runs,
                    run.bpf_time.as_nanos() as f64 / run.bpf_runs as f64
                )?;
            }
        }
        for s in &self.skipped {
            writeln!(f, "  skipped: {s}")?;
        }
        Ok(())
    }
}

pub fn bench(opts: &BenchOptions) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(
        opts.execs > 0 && opts.rounds > 0,
        "execs and rounds must be positive"
    );
    let program = CString::new(opts.program.as_os_str().as_bytes())?;
    let rounds = opts.rounds.min(opts.execs);
    let mut runner = Runner::start(&program)?;
    runner.burst(opts.execs.min(200))?; // warm the page cache

    let mut untraced = Timing::default();
    let mut traced: Vec<TracedRun> = Vec::new();
    let mut skipped = Vec::new();
    let mut choices = opts.backends.clone();
    // Kernel-side run time of the programs: a figure other load cannot blur.
    let _stats = crate::tracer::enable_bpf_run_stats();
    for round in 0..rounds {
        // Split execs over the rounds, the remainder in the first ones.
        let n = opts.execs / rounds + usize::from(round < opts.execs % rounds);
        untraced.add(runner.burst(n)?, n);
        let mut refused = Vec::new();
        for &choice in &choices {
            match traced_burst(&mut runner, n, choice)? {
                Ok(Traced {
                    backend,
                    elapsed,
                    seen,
                    lost,
                    bpf_time,
                    bpf_runs,
                }) => {
                    let i = match traced.iter().position(|r| r.backend == backend) {
                        Some(i) => i,
                        None => {
                            traced.push(TracedRun {
                                backend,
                                timing: Timing::default(),
                                bpf_time: Duration::ZERO,
                                bpf_runs: 0,
                                seen: 0,
                                lost: 0,
                            });
                            traced.len() - 1
                        }
                    };
                    let run = &mut traced[i];
                    run.timing.add(elapsed, n);
                    run.seen += seen;
                    run.lost += lost;
                    run.bpf_time += bpf_time;
                    run.bpf_runs += bpf_runs;
                }
                Err(reason) => {
                    skipped.push(reason);
                    refused.push(choice);
                }
            }
        }
        choices.retain(|c| !refused.contains(c));
    }
    Ok(BenchReport {
        program: opts.program.clone(),
        rounds,
        untraced,
        traced,
        skipped,
    })
}

/// One burst with a tracer running on its own thread. The inner Err is a
/// backend that could not be loaded.
fn traced_burst(
    runner: &mut Runner,
    execs: usize,
    choice: BackendChoice,
) -> anyhow::Result<Result<Traced, String>> {
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let runner_pid = runner.pid as u32;
    let reader = {
        let stop = stop.clone();
        thread::spawn(move || -> anyhow::Result<(u64, u64, (Duration, u64))> {
            let opts = TracerOptions {
                backend: choice,
                ..Default::default()
            };
            let mut tracer = match ExecTracer::with_options(opts) {
                Ok(t) => t,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return Ok((0, 0, (Duration::ZERO, 0)));
                }
            };
            let _ = ready_tx.send(Ok(tracer.backend()));
            let mut seen = 0;
            let mut count = |evs: Vec<crate::ExecEvent>| {
                seen += evs.iter().filter(|e| e.ppid == runner_pid).count() as u64
            };
            while !stop.load(Ordering::Relaxed) {
                count(tracer.poll(Duration::from_millis(50))?);
            }
            count(tracer.drain()?);
            Ok((seen, tracer.stats()?.lost, tracer.bpf_run_time()))
        })
    };
    let backend = match ready_rx.recv()? {
        Ok(b) => b,
        Err(reason) => {
            reader.join().expect("reader thread panicked")?;
            return Ok(Err(reason));
        }
    };
    let elapsed = runner.burst(execs);
    stop.store(true, Ordering::Relaxed);
    let (seen, lost, (bpf_time, bpf_runs)) = reader.join().expect("reader thread panicked")?;
    Ok(Ok(Traced {
        backend,
        elapsed: elapsed?,
        seen,
        lost,
        bpf_time,
        bpf_runs,
    }))
}

/// One traced burst's figures.
struct Traced {
    backend: Backend,
    elapsed: Duration,
    seen: u64,
    lost: u64,
    bpf_time: Duration,
    bpf_runs: u64,
}
