//! `netray bench dump`: the highest packet rate `netray dump` writes to a file
//! with zero loss, measured beside tcpdump on the same veth in one run.
//!
//! The setup, all inside a throwaway lab (namespace + veth pair):
//!
//! ```text
//!  namespace                                   root namespace
//!  generator: BPF_PROG_TEST_RUN, live frames   host end (lab.host_if())
//!  XDP "redirect(peer)" on the peer end  ───►  XDP: count arrivals, XDP_PASS   ◄─ netray's capture goes in front
//!                                              AF_PACKET taps                   ◄─ tcpdump reads here
//!                                              tcx ingress: count, TC_ACT_SHOT  (the stack never sees them)
//! ```
//!
//! The generator is an XDP program run with `BPF_F_TEST_XDP_LIVE_FRAMES`: every
//! run sends a real frame out of the peer veth, so it reaches far higher rates
//! than a userspace sender. A thread paces it (one test run of up to `batch`
//! frames whenever that many are due) and the rate it really achieved is
//! reported next to the offered one.
//!
//! The receiving end counts what arrived (XDP, before any capture) and drops
//! every frame at tcx ingress, after the AF_PACKET taps: both tools pay for the
//! same receive path and the host stack never becomes the bottleneck. The
//! counters tell apart frames that never reached the interface (the veth ring
//! overflowed: the receive path, not the capture, was too slow) from frames the
//! capture lost. A third run with no capture at each rate is the baseline.
//!
//! The generator thread runs on one CPU, and the veth's NAPI (so the receive
//! path, netray's XDP program and tcpdump's packet tap) runs in its softirq
//! there too; netray's readers and writer and tcpdump run on the other CPUs. A
//! capture that makes the receive path slower therefore slows the generator
//! down: such a step is reported with the rate achieved and never counts as
//! reaching the offered rate (on a real NIC those frames would be dropped).
//!
//! Runs never overlap: per frame size and rate, baseline, then netray, then
//! tcpdump, each with a new capture file on a local disk that is deleted after.

use std::{
    fs,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{bail, Context as _};
use netray_capture::CaptureSpec;
use netray_lab::Lab;
use serde::Serialize;

mod cpus;
mod generator;
mod programs;
mod scratch;
mod sink;
mod step;
mod tcpdump;

use cpus::Cpus;
use generator::{build_frame, Generator};
use programs::Programs;
use scratch::{PinGuard, TempDir};
use sink::{link_create, Sink};
use step::Run;
use tcpdump::tcpdump_version;

/// UDP port the frames go to. Nothing listens: the frames are dropped at tcx
/// ingress before the stack would look.
pub const DST_PORT: u16 = 9;
pub(crate) const SRC_PORT: u16 = 40_000;
/// The kernel refuses larger live frames (and the veth MTU is 1500).
const MAX_FRAME: usize = 1514;
const MIN_FRAME: usize = 60;
/// A step whose generator achieved less than this share of the offered rate
/// is "generator-limited": no higher rate is tried for that frame size.
const GENERATOR_OK: f64 = 0.97;

#[derive(Debug, Clone)]
pub struct DumpBenchOptions {
    /// Frame sizes in bytes (Ethernet header included, no FCS).
    pub frame_sizes: Vec<usize>,
    /// Offered rates in packets per second, ascending.
    pub rates: Vec<u64>,
    /// How long the generator runs per step.
    pub step: Duration,
    /// Most frames per BPF_PROG_TEST_RUN call.
    pub batch: u32,
    /// Where capture files go (must not be tmpfs).
    pub dir: PathBuf,
    /// netray's ring buffer per CPU, in bytes (`netray dump -B`).
    pub ring_bytes: u32,
    /// Measure the receive path without any capture at each rate too.
    pub baseline: bool,
    /// Set (e.g. by SIGINT) to stop between steps; everything is cleaned up.
    pub abort: Arc<AtomicBool>,
}

impl Default for DumpBenchOptions {
    fn default() -> Self {
        DumpBenchOptions {
            frame_sizes: vec![64, 1500],
            rates: vec![
                50_000, 100_000, 200_000, 300_000, 400_000, 600_000, 800_000, 1_000_000, 1_500_000,
                2_000_000,
            ],
            step: Duration::from_secs(2),
            batch: 1024,
            dir: PathBuf::from("/var/tmp"),
            ring_bytes: CaptureSpec::DEFAULT_RING_BYTES,
            baseline: true,
            abort: Arc::new(AtomicBool::new(false)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tool {
    /// No capture: what the receive path itself delivers.
    None,
    Netray,
    Tcpdump,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::None => "none",
            Tool::Netray => "netray",
            Tool::Tcpdump => "tcpdump",
        }
    }
}

/// One tool at one frame size and rate.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub tool: Tool,
    pub frame_len: usize,
    pub offered_pps: u64,
    /// Frames the generator sent per second over the step.
    pub achieved_pps: f64,
    /// Frames the generator sent (runs of the redirect program).
    pub generated: u64,
    /// Frames that reached the host end's XDP hook.
    pub arrived: u64,
    /// Frames that reached tcx ingress (after the taps), where they are dropped.
    pub delivered: u64,
    /// Frames written to the capture file (0 for the baseline).
    pub captured: u64,
    /// What the tool says it lost: netray's "dropped by kernel" (ring full), tcpdump's
    /// "dropped by kernel" plus "dropped by interface".
    pub reported_lost: u64,
    /// generated - captured: every frame sent that is not in the file.
    pub missing: u64,
    pub missing_pct: f64,
    /// Capture file size.
    pub file_bytes: u64,
    /// CPU time (user + system) of the capturing process: netray's readers and writer
    /// threads, tcpdump's process. The kernel's share (the recorder, the packet tap) runs
    /// in the receive path's softirq and is in neither.
    pub cpu_secs: Option<f64>,
    /// cpu_secs per captured packet, in nanoseconds.
    pub cpu_ns_per_packet: Option<f64>,
    /// The generator fell short of the offered rate.
    pub generator_limited: bool,
    /// tcpdump's closing lines, verbatim.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_lines: Vec<String>,
}

impl Step {
    pub(crate) fn set_cpu(&mut self, cpu: Duration) {
        self.cpu_secs = Some(cpu.as_secs_f64());
        self.cpu_ns_per_packet = (self.captured > 0).then(|| cpu.as_nanos() as f64 / self.captured as f64);
    }

    /// Zero loss: every generated frame is in the file (or, for the baseline,
    /// reached the end of the receive path), at the offered rate.
    pub fn lossless(&self) -> bool {
        let got = if self.tool == Tool::None {
            self.delivered
        } else {
            self.captured
        };
        !self.generator_limited && self.generated > 0 && got >= self.generated
    }
}

/// The highest lossless rate per tool and frame size.
#[derive(Debug, Clone, Serialize)]
pub struct Best {
    pub frame_len: usize,
    /// Highest offered rate the receive path delivered without loss and no capture.
    pub baseline_pps: Option<u64>,
    pub netray_pps: Option<u64>,
    pub tcpdump_pps: Option<u64>,
    /// netray / tcpdump.
    pub ratio: Option<f64>,
    /// netray lost nothing at any rate measured: its figure is a lower bound (the
    /// generator, or the rates asked for, ran out first).
    pub netray_lower_bound: bool,
    pub tcpdump_lower_bound: bool,
    /// CPU time per captured packet at each tool's highest zero-loss rate, in ns.
    pub netray_cpu_ns: Option<f64>,
    pub tcpdump_cpu_ns: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DumpBenchReport {
    pub steps: Vec<Step>,
    pub best: Vec<Best>,
    pub step_secs: f64,
    pub batch: u32,
    pub dir: PathBuf,
    pub tcpdump_version: String,
    /// netray's ring buffer per CPU.
    pub ring_bytes: u32,
    /// Where the generator and the captures ran.
    pub cpus: String,
}

/// Runs the benchmark; `on_step` sees each step as it completes.
pub fn run(
    opts: &DumpBenchOptions,
    on_step: &mut dyn FnMut(&Step),
) -> anyhow::Result<DumpBenchReport> {
    anyhow::ensure!(
        !opts.frame_sizes.is_empty() && !opts.rates.is_empty(),
        "no frame sizes or rates to measure"
    );
    for &len in &opts.frame_sizes {
        anyhow::ensure!(
            (MIN_FRAME..=MAX_FRAME).contains(&len),
            "frame size {len}: use {MIN_FRAME} to {MAX_FRAME} bytes (the veth MTU is 1500)"
        );
    }
    anyhow::ensure!(
        opts.batch > 0 && opts.batch <= 1 << 20,
        "batch must be 1 to 1048576 frames"
    );
    let tcpdump_version = tcpdump_version()?;
    let files = TempDir::new(&opts.dir)?;
    let pin = PinGuard::new()?;

    let lab = Lab::up(&netray_lab::unique_name("bcap")).context("creating the lab")?;
    let programs = Programs::load()?;
    let sink = Sink::attach(&lab, &programs)?;
    let generator = Generator::new(&lab, &programs)?;

    // The generator, and with it the receive path (the veth's NAPI runs in its softirq),
    // on one CPU; the capture's readers and writer, tcpdump, and this thread on the others.
    let cpus = Cpus::split()?;

    let mut steps: Vec<Step> = Vec::new();
    for &frame_len in &opts.frame_sizes {
        let frame = build_frame(&lab, frame_len)?;
        let mut failures = [0usize; 3];
        for &rate in &opts.rates {
            let mut tools = Vec::new();
            if opts.baseline {
                tools.push(Tool::None);
            }
            // A capture tool is measured until its second failing rate.
            tools.extend(
                [Tool::Netray, Tool::Tcpdump]
                    .into_iter()
                    .filter(|&t| failures[t as usize] < 2),
            );
            if tools.iter().all(|&t| t == Tool::None) {
                break;
            }
            let mut generator_limit = false;
            for tool in tools {
                if opts.abort.load(Ordering::SeqCst) {
                    bail!("interrupted; the lab, programs, pins and files are removed");
                }
                let ext = if tool == Tool::Netray {
                    "pcapng"
                } else {
                    "pcap"
                };
                let path = files
                    .path
                    .join(format!("{}-{frame_len}-{rate}.{ext}", tool.name()));
                let run = Run {
                    lab: &lab,
                    sink: &sink,
                    generator: &generator,
                    frame: &frame,
                    rate,
                    opts,
                    cpus: &cpus,
                };
                let step = match tool {
                    Tool::None => run.baseline()?,
                    Tool::Netray => run.netray(pin.dir(), &path)?,
                    Tool::Tcpdump => run.tcpdump(&path)?,
                };
                let _ = fs::remove_file(&path);
                if opts.abort.load(Ordering::SeqCst) {
                    bail!("interrupted; the lab, programs, pins and files are removed");
                }
                if !step.lossless() {
                    failures[tool as usize] += 1;
                }
                // Without a capture, falling short of the rate is the generator's own limit.
                generator_limit |= tool == Tool::None && step.generator_limited;
                on_step(&step);
                steps.push(step);
            }
            if generator_limit {
                break;
            }
        }
    }
    let cpus_note = cpus.note.clone();
    drop(cpus);
    drop(generator);
    drop(sink);
    drop(programs);
    drop(lab);
    let best = summarize(&opts.frame_sizes, &steps);
    Ok(DumpBenchReport {
        steps,
        best,
        step_secs: opts.step.as_secs_f64(),
        batch: opts.batch,
        dir: opts.dir.clone(),
        tcpdump_version,
        ring_bytes: opts.ring_bytes,
        cpus: cpus_note,
    })
}

fn summarize(sizes: &[usize], steps: &[Step]) -> Vec<Best> {
    sizes
        .iter()
        .map(|&len| {
            let of = |tool: Tool| {
                steps
                    .iter()
                    .filter(move |s| s.tool == tool && s.frame_len == len)
            };
            // The highest rate up to which every step was lossless.
            let best_step = |tool: Tool| of(tool).take_while(|s| s.lossless()).last();
            let best = |tool: Tool| best_step(tool).map(|s| s.offered_pps);
            let cpu = |tool: Tool| best_step(tool).and_then(|s| s.cpu_ns_per_packet);
            let never_lost =
                |tool: Tool| of(tool).next().is_some() && of(tool).all(|s| s.lossless());
            let (netray, tcpdump) = (best(Tool::Netray), best(Tool::Tcpdump));
            Best {
                frame_len: len,
                baseline_pps: best(Tool::None),
                netray_pps: netray,
                tcpdump_pps: tcpdump,
                ratio: match (netray, tcpdump) {
                    (Some(n), Some(t)) if t > 0 => Some(n as f64 / t as f64),
                    _ => None,
                },
                netray_lower_bound: never_lost(Tool::Netray),
                tcpdump_lower_bound: never_lost(Tool::Tcpdump),
                netray_cpu_ns: cpu(Tool::Netray),
                tcpdump_cpu_ns: cpu(Tool::Tcpdump),
            }
        })
        .collect()
}
