//! The library API: start a tracer, poll it for exec events, read its
//! kernel-side counters.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use libbpf_rs::{MapCore, MapFlags, RingBuffer, RingBufferBuilder};
use netray_ebpf::abi::{self, nr_exec_stats};

use crate::backend::{self, Backend, BackendChoice, BackendReport, Refusal};
use crate::event::{self, ExecEvent};
use netray_core::clock::MonotonicClock;
use crate::filter::{Filter, FilterError};
use crate::loader::{LoadConfig, Loaded};

/// Default ring size: room for thousands of typical records (under 1 KiB
/// each) while the reader is descheduled.
pub const DEFAULT_RING_BYTES: u32 = 4 << 20;

#[derive(Clone, Debug)]
pub struct TracerOptions {
    pub filter: Filter,
    pub backend: BackendChoice,
    /// Ring buffer size: a power of two, at least one page.
    pub ring_bytes: u32,
    /// In auto mode, also try the backends after the chosen one so the
    /// report says why each is (un)usable. Slower start.
    pub explain: bool,
    /// Wake a waiting [`ExecTracer::poll`] on every record. Off by default:
    /// a wakeup adds tens of µs to each exec (IPIs), so the kernel wakes the
    /// reader only once a quarter of the ring is used, and poll otherwise
    /// collects records when its timeout ends.
    pub wake_every_event: bool,
}

impl Default for TracerOptions {
    fn default() -> Self {
        TracerOptions {
            filter: Filter::default(),
            backend: BackendChoice::Auto,
            ring_bytes: DEFAULT_RING_BYTES,
            explain: false,
            wake_every_event: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(
        "netray exec needs root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN): run it with sudo"
    )]
    NotPrivileged,
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("ring buffer size {0} is not a power of two of at least one page")]
    RingSize(u32),
    #[error("--backend {}: {}", .0.backend, .0)]
    Forced(Refusal),
    #[error("no kernel hook for exec events works here: {}", .0.refused.iter().map(Refusal::to_string).collect::<Vec<_>>().join(", "))]
    NoBackend(BackendReport),
    #[error("{0}: {1}")]
    Bpf(&'static str, String),
}

/// Kernel-side counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExecStats {
    /// Execs that passed the pid/uid filters at entry.
    pub entered: u64,
    /// Records written to the ring.
    pub sent: u64,
    /// Records that passed every filter but found the ring full.
    pub lost: u64,
    /// Execs not tracked because the in-flight map was full.
    pub pending_full: u64,
}

/// Turns on the kernel's accounting of BPF program run time (system-wide,
/// small cost per program run) until the returned fd is dropped.
pub fn enable_bpf_run_stats() -> Option<std::os::fd::OwnedFd> {
    crate::loader::enable_run_stats()
}

/// A running exec tracer. Dropping it detaches the programs. Not `Send`:
/// poll it on the thread that started it (the ring's callback queue is
/// thread-local).
pub struct ExecTracer {
    // Field order is drop order: the ring reads a map of `loaded`.
    ring: RingBuffer<'static>,
    queue: Rc<RefCell<Vec<ExecEvent>>>,
    decode_errors: Rc<Cell<u64>>,
    loaded: Loaded,
    report: BackendReport,
}

impl ExecTracer {
    /// Starts tracing with `filter`, on the first backend the kernel accepts.
    pub fn start(filter: Filter) -> Result<Self, ExecError> {
        Self::with_options(TracerOptions {
            filter,
            ..Default::default()
        })
    }

    /// Starts tracing as `opts` says. Fails with one clear reason: no
    /// privileges, a bad filter, or (for each backend tried) what the kernel
    /// refused.
    pub fn with_options(opts: TracerOptions) -> Result<Self, ExecError> {
        if !crate::privilege::can_trace() {
            return Err(ExecError::NotPrivileged);
        }
        opts.filter.kernel_comm()?;
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .unwrap_or(4096) as u32;
        if !opts.ring_bytes.is_power_of_two() || opts.ring_bytes < page {
            return Err(ExecError::RingSize(opts.ring_bytes));
        }

        let wakeup_bytes = if opts.wake_every_event {
            0
        } else {
            opts.ring_bytes / 4
        };
        let cfg = LoadConfig {
            filter: opts.filter.clone(),
            ring_bytes: opts.ring_bytes,
            wakeup_bytes,
        };
        let (loaded, report) = backend::select(opts.backend, &cfg, opts.explain);
        let Some(loaded) = loaded else {
            return Err(match opts.backend {
                BackendChoice::Auto => ExecError::NoBackend(report),
                _ => ExecError::Forced(
                    report
                        .refused
                        .into_iter()
                        .next()
                        .expect("one forced backend was tried"),
                ),
            });
        };

        let clock = MonotonicClock::new();
        let queue = Rc::new(RefCell::new(Vec::new()));
        let decode_errors = Rc::new(Cell::new(0));
        let mut builder = RingBufferBuilder::new();
        let (q, errs) = (queue.clone(), decode_errors.clone());
        builder
            .add(&loaded.skel().maps.exec_events, move |bytes: &[u8]| {
                match event::decode(bytes, &clock) {
                    Ok(ev) => q.borrow_mut().push(ev),
                    Err(e) => {
                        tracing::warn!("{e}");
                        errs.set(errs.get() + 1);
                    }
                }
                0
            })
            .map_err(|e| ExecError::Bpf("ring buffer", format!("{e:#}")))?;
        let ring = builder
            .build()
            .map_err(|e| ExecError::Bpf("ring buffer", format!("{e:#}")))?;
        Ok(ExecTracer {
            ring,
            queue,
            decode_errors,
            loaded,
            report,
        })
    }

    /// Waits up to `timeout`, then returns every event available (possibly
    /// none). The wait ends early when the kernel wakes the reader (on every
    /// record with [`TracerOptions::wake_every_event`], else once a quarter
    /// of the ring is used) or on a signal. Poll at the latency you want.
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<ExecEvent>, ExecError> {
        if let Err(e) = self.ring.poll(timeout) {
            if e.kind() != libbpf_rs::ErrorKind::Interrupted {
                return Err(ExecError::Bpf("ring buffer poll", format!("{e:#}")));
            }
        }
        // Records written without a wakeup are not reported by epoll.
        self.drain()
    }

    /// Returns the events already in the ring, without waiting.
    pub fn drain(&mut self) -> Result<Vec<ExecEvent>, ExecError> {
        self.ring
            .consume()
            .map_err(|e| ExecError::Bpf("ring buffer consume", format!("{e:#}")))?;
        Ok(self.queue.take())
    }

    /// The kernel's counters.
    pub fn stats(&self) -> Result<ExecStats, ExecError> {
        let per_cpu = self
            .loaded
            .skel()
            .maps
            .exec_stats
            .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| ExecError::Bpf("reading exec_stats", format!("{e:#}")))?
            .unwrap_or_default();
        let per_cpu: Vec<nr_exec_stats> =
            per_cpu.iter().map(|b| abi::from_bytes(b).unwrap_or_default()).collect();
        let s = abi::sum_counters(&per_cpu);
        Ok(ExecStats { entered: s.entered, sent: s.sent, lost: s.lost, pending_full: s.pending_full })
    }

    /// Records lost because the ring was full (counted in the kernel).
    pub fn lost(&self) -> u64 {
        self.stats().map(|s| s.lost).unwrap_or(0)
    }

    /// Time the kernel spent in this tracer's programs, and how many times they
    /// ran (all hooks, all processes). Counted only while BPF stats are on:
    /// see [`enable_bpf_run_stats`].
    pub fn bpf_run_time(&self) -> (Duration, u64) {
        let (ns, runs) = self.loaded.run_stats();
        (Duration::from_nanos(ns), runs)
    }

    /// Records that reached userspace but could not be decoded (ABI mismatch).
    pub fn decode_errors(&self) -> u64 {
        self.decode_errors.get()
    }

    pub fn backend(&self) -> Backend {
        self.report.chosen.expect("a running tracer has a backend")
    }

    /// How the backend was chosen (what -v prints).
    pub fn report(&self) -> &BackendReport {
        &self.report
    }

    /// The ring's epoll fd, to wait on it with other fds.
    pub fn epoll_fd(&self) -> i32 {
        self.ring.epoll_fd()
    }
}
