//! What tracing costs each exec: the wall time of a burst of fork+exec of a
//! small program, without and with the tracer attached (its reader draining
//! the ring on another thread, as `netray exec` does).

use std::ffi::CString;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

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
            backends: vec![BackendChoice::Tracepoint, BackendChoice::RawTracepoint, BackendChoice::Fentry, BackendChoice::Kprobe],
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
        writeln!(f, "  {:<15} {:>8.1} us/exec (best round {:.1})", "untraced", us(base.per_exec()), us(base.best_per_exec))?;
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
        }
        for s in &self.skipped {
            writeln!(f, "  skipped: {s}")?;
        }
        Ok(())
    }
}

pub fn bench(opts: &BenchOptions) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(opts.execs > 0 && opts.rounds > 0, "execs and rounds must be positive");
    let program = CString::new(opts.program.as_os_str().as_bytes())?;
    let rounds = opts.rounds.min(opts.execs);
    burst(&program, opts.execs.min(200))?; // warm the page cache and the allocator

    let mut untraced = Timing::default();
    let mut traced: Vec<TracedRun> = Vec::new();
    let mut skipped = Vec::new();
    let mut choices = opts.backends.clone();
    for round in 0..rounds {
        // Split execs over the rounds, the remainder in the first ones.
        let n = opts.execs / rounds + usize::from(round < opts.execs % rounds);
        untraced.add(burst(&program, n)?, n);
        let mut refused = Vec::new();
        for &choice in &choices {
            match traced_burst(&program, n, choice)? {
                Ok((backend, elapsed, seen, lost)) => {
                    let i = match traced.iter().position(|r| r.backend == backend) {
                        Some(i) => i,
                        None => {
                            traced.push(TracedRun { backend, timing: Timing::default(), seen: 0, lost: 0 });
                            traced.len() - 1
                        }
                    };
                    let run = &mut traced[i];
                    run.timing.add(elapsed, n);
                    run.seen += seen;
                    run.lost += lost;
                }
                Err(reason) => {
                    skipped.push(reason);
                    refused.push(choice);
                }
            }
        }
        choices.retain(|c| !refused.contains(c));
    }
    Ok(BenchReport { program: opts.program.clone(), rounds, untraced, traced, skipped })
}

/// One burst with a tracer running on its own thread. The inner Err is a
/// backend that could not be loaded.
fn traced_burst(
    program: &CString,
    execs: usize,
    choice: BackendChoice,
) -> anyhow::Result<Result<(Backend, Duration, u64, u64), String>> {
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let me = std::process::id();
    let reader = {
        let stop = stop.clone();
        thread::spawn(move || -> anyhow::Result<(u64, u64)> {
            let opts = TracerOptions { backend: choice, ..Default::default() };
            let mut tracer = match ExecTracer::with_options(opts) {
                Ok(t) => t,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return Ok((0, 0));
                }
            };
            let _ = ready_tx.send(Ok(tracer.backend()));
            let mut seen = 0;
            let mut count = |evs: Vec<crate::ExecEvent>| seen += evs.iter().filter(|e| e.ppid == me).count() as u64;
            while !stop.load(Ordering::Relaxed) {
                count(tracer.poll(Duration::from_millis(50))?);
            }
            count(tracer.drain()?);
            Ok((seen, tracer.stats()?.lost))
        })
    };
    let backend = match ready_rx.recv()? {
        Ok(b) => b,
        Err(reason) => {
            reader.join().expect("reader thread panicked")?;
            return Ok(Err(reason));
        }
    };
    let elapsed = burst(program, execs);
    stop.store(true, Ordering::Relaxed);
    let (seen, lost) = reader.join().expect("reader thread panicked")?;
    Ok(Ok((backend, elapsed?, seen, lost)))
}

/// Wall time of `n` sequential fork + execve + waitpid.
fn burst(program: &CString, n: usize) -> anyhow::Result<Duration> {
    let argv = [program.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null()];
    let start = Instant::now();
    for _ in 0..n {
        // SAFETY: the child only calls execve and _exit (async-signal-safe),
        // with arguments prepared before the fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            anyhow::bail!("fork: {}", std::io::Error::last_os_error());
        }
        if pid == 0 {
            unsafe {
                libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr());
                libc::_exit(127);
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        if unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
            anyhow::bail!("waitpid: {}", std::io::Error::last_os_error());
        }
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            anyhow::bail!("{} did not exit 0 (status {status:#x})", program.to_string_lossy());
        }
    }
    Ok(start.elapsed())
}
