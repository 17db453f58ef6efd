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
    ffi::CString,
    fs::{self, File},
    io::{BufRead, BufReader, BufWriter},
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use netray_capture::{Capture, CaptureSpec, LiveCapture, Output, Point};
use netray_core::{AttachMode, Hook, PinDir};
use netray_lab::Lab;
use netray_pcapfilter::{
    ebpf::{self as e, EbpfInsn as I, R0, R1, R10, R2},
    load_program, ProgramSpec,
};
use serde::Serialize;

/// UDP port the frames go to. Nothing listens: the frames are dropped at tcx
/// ingress before the stack would look.
pub const DST_PORT: u16 = 9;
const SRC_PORT: u16 = 40_000;
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
    /// The generator fell short of the offered rate.
    pub generator_limited: bool,
    /// tcpdump's closing lines, verbatim.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_lines: Vec<String>,
}

impl Step {
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
    let sink = Sink::attach(&lab)?;
    let generator = Generator::new(&lab)?;

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
            let best = |tool: Tool| {
                of(tool)
                    .take_while(|s| s.lossless())
                    .last()
                    .map(|s| s.offered_pps)
            };
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
            }
        })
        .collect()
}

/// CPU placement: the generator on the first online CPU, everything else on the
/// others; the calling thread's affinity is restored on drop.
struct Cpus {
    generator: Option<libc::cpu_set_t>,
    saved: libc::cpu_set_t,
    /// e.g. "generator and receive path on CPU 0, captures on CPUs 1"
    pub note: String,
}

impl Cpus {
    fn split() -> anyhow::Result<Cpus> {
        // SAFETY: an all-zero cpu_set_t is the empty set; sched_getaffinity fills it.
        let mut saved: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: saved is a valid cpu_set_t of the size given.
        if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut saved) }
            != 0
        {
            bail!("sched_getaffinity: {}", std::io::Error::last_os_error());
        }
        // SAFETY: CPU_ISSET reads within the set.
        let allowed: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &saved) })
            .collect();
        if allowed.len() < 2 {
            return Ok(Cpus {
                generator: None,
                saved,
                note: "one CPU: generator and captures share it".into(),
            });
        }
        // SAFETY: as above; CPU_SET writes within the sets.
        let (mut gen, mut rest): (libc::cpu_set_t, libc::cpu_set_t) =
            unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        unsafe { libc::CPU_SET(allowed[0], &mut gen) };
        for &c in &allowed[1..] {
            unsafe { libc::CPU_SET(c, &mut rest) };
        }
        set_affinity(&rest)?;
        let others: Vec<String> = allowed[1..].iter().map(|c| c.to_string()).collect();
        Ok(Cpus {
            generator: Some(gen),
            saved,
            note: format!(
                "generator and receive path on CPU {}, captures (readers, writers, tcpdump) on CPU {}",
                allowed[0],
                others.join(",")
            ),
        })
    }

    /// Moves the calling thread (the generator) to its CPU.
    fn enter_generator(&self) -> anyhow::Result<()> {
        match &self.generator {
            Some(set) => set_affinity(set),
            None => Ok(()),
        }
    }
}

impl Drop for Cpus {
    fn drop(&mut self) {
        let _ = set_affinity(&self.saved);
    }
}

fn set_affinity(set: &libc::cpu_set_t) -> anyhow::Result<()> {
    // SAFETY: set is a valid cpu_set_t of the size given; 0 is the calling thread.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) } != 0 {
        bail!("sched_setaffinity: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// One step's context.
struct Run<'a> {
    lab: &'a Lab,
    sink: &'a Sink,
    generator: &'a Generator,
    frame: &'a [u8],
    rate: u64,
    opts: &'a DumpBenchOptions,
    cpus: &'a Cpus,
}

impl Run<'_> {
    fn generate(&self) -> anyhow::Result<Generated> {
        let (frame, rate, batch, dur, abort) = (
            self.frame,
            self.rate,
            self.opts.batch,
            self.opts.step,
            &self.opts.abort,
        );
        self.lab
            .in_netns(|| {
                self.cpus.enter_generator()?;
                self.generator.paced(frame, rate, batch, dur, abort)
            })
            .context("entering the lab's namespace")?
    }

    fn step(
        &self,
        tool: Tool,
        gen: &Generated,
        before: Counts,
        captured: u64,
        reported_lost: u64,
    ) -> anyhow::Result<Step> {
        let after = self.sink.counts()?;
        let delivered = after.delivered - before.delivered;
        let got = if tool == Tool::None {
            delivered
        } else {
            captured
        };
        let missing = gen.sent.saturating_sub(got);
        Ok(Step {
            tool,
            frame_len: self.frame.len(),
            offered_pps: self.rate,
            achieved_pps: gen.achieved_pps(),
            generated: gen.sent,
            arrived: after.arrived - before.arrived,
            delivered,
            captured,
            reported_lost,
            missing,
            missing_pct: if gen.sent > 0 {
                100.0 * missing as f64 / gen.sent as f64
            } else {
                0.0
            },
            file_bytes: 0,
            generator_limited: gen.achieved_pps() < GENERATOR_OK * self.rate as f64,
            tool_lines: Vec::new(),
        })
    }

    fn baseline(&self) -> anyhow::Result<Step> {
        let before = self.sink.counts()?;
        let gen = self.generate()?;
        self.sink.settle(&before, gen.sent)?;
        self.step(Tool::None, &gen, before, 0, 0)
    }

    fn netray(&self, pin: &PinDir, path: &Path) -> anyhow::Result<Step> {
        let spec = CaptureSpec {
            iface: self.lab.host_if().into(),
            hooks: vec![Hook::Xdp],
            points: vec![Point::Entry],
            snaplen: CaptureSpec::DEFAULT_SNAPLEN,
            filter: String::new(),
            ring_bytes: self.opts.ring_bytes,
            mode: AttachMode::Auto,
            chain_only: false,
        };
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let output = Output::pcapng(Box::new(BufWriter::with_capacity(1 << 20, file)), None)?;
        let capture = Capture::start(pin, &spec).context("starting netray's capture")?;
        let (live, output) = LiveCapture::write_to(capture, output)?;

        let before = self.sink.counts()?;
        let gen = self.generate();
        let settled = match &gen {
            Ok(g) => self.sink.settle(&before, g.sent),
            Err(_) => Ok(()),
        };
        // Let the readers drain the rings: everything the kernel wrote there is in the file.
        let drained = drain(live.capture(), &output);
        // Programs down first, then the readers' last drain.
        let stopped = live.stop();
        let gen = gen?;
        settled?;
        drained?;
        let stats = stopped.context("taking netray's capture down")?.stats;
        let mut out = output
            .lock()
            .map_err(|_| anyhow::anyhow!("the capture output was poisoned"))?;
        out.finish().context("writing the capture file")?;
        let captured = out.written();
        let lost = stats.iter().map(|s| s.lost).sum();
        let mut step = self.step(Tool::Netray, &gen, before, captured, lost)?;
        step.file_bytes = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Ok(step)
    }

    fn tcpdump(&self, path: &Path) -> anyhow::Result<Step> {
        let mut td = Tcpdump::start(self.lab.host_if(), path)?;
        let before = self.sink.counts()?;
        let gen = self.generate();
        let settled = match &gen {
            Ok(g) => self.sink.settle(&before, g.sent),
            Err(_) => Ok(()),
        };
        // tcpdump gets a ring block when it is full or its 1 s timeout expires (TPACKET_V3),
        // and writes through stdio; SIGINT drops what it has not been handed yet. So wait
        // past the block timeout until the file holds what was sent (but for the stdio
        // buffer), or stops growing.
        if let Ok(g) = &gen {
            let want = 24 + g.sent * (16 + self.frame.len() as u64);
            wait_file(path, want.saturating_sub(8192), Duration::from_millis(1100));
        }
        let summary = td.stop()?;
        let gen = gen?;
        settled?;
        let lost = summary.dropped_by_kernel + summary.dropped_by_interface;
        let mut step = self.step(Tool::Tcpdump, &gen, before, summary.captured, lost)?;
        step.file_bytes = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        step.tool_lines = summary.lines;
        Ok(step)
    }
}

/// Waits at least `min` and until `path` holds `want` bytes, or has not grown for 1.5 s.
fn wait_file(path: &Path, want: u64, min: Duration) {
    let start = Instant::now();
    let size = || fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let (mut last, mut since) = (size(), Instant::now());
    while since.elapsed() < Duration::from_millis(1500) {
        std::thread::sleep(Duration::from_millis(20));
        let now = size();
        if now >= want && start.elapsed() >= min {
            return;
        }
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
}

/// Waits until the file holds every record the kernel put in the rings (at most 10 s).
fn drain(capture: &Capture, output: &Mutex<Output>) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let in_rings: u64 = capture.stats()?.iter().map(|p| p.captured).sum();
        let written = output.lock().map(|o| o.written()).unwrap_or(0);
        if written >= in_rings {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(10) {
            bail!("netray's readers had written {written} of {in_rings} records 10 s after the generator stopped");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// The generator.

struct Generated {
    sent: u64,
    elapsed: Duration,
}

impl Generated {
    fn achieved_pps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.sent as f64 / secs
        } else {
            0.0
        }
    }
}

/// `r0 = bpf_redirect(peer_ifindex, 0); exit`, run with live frames on the peer end.
///
/// The program is also attached at XDP to the peer end for as long as the generator
/// lives. A test run with `repeat > 1` puts its program into the kernel's XDP dispatcher
/// and takes it out again at the end, and each change waits for an RCU grace period:
/// about 24 ms per call here, whatever the repeat count (17 calls a second). A program
/// already attached somewhere is in the dispatcher, so the calls skip that and cost
/// ~13 us plus ~0.35 us per frame. Nothing reaches the peer end (the host end drops
/// every frame and the lab is quiet); anything that did would be sent back to the host end.
struct Generator {
    prog: OwnedFd,
    peer_ifindex: u32,
    _attached: OwnedFd,
}

impl Generator {
    fn new(lab: &Lab) -> anyhow::Result<Generator> {
        let peer = lab.peer_if().to_string();
        let peer_ifindex = lab
            .in_netns(move || ifindex(&peer))
            .context("entering the lab's namespace")??;
        let insns = [
            I::mov32_imm(R1, peer_ifindex as i32),
            I::mov32_imm(R2, 0),
            I::call(libbpf_sys::BPF_FUNC_redirect as i32),
            I::exit(),
        ];
        let prog = load_program(&insns, &ProgramSpec::xdp("nr_bench_gen"))
            .context("loading the generator program")?;
        let attached = lab
            .in_netns(|| {
                link_create(
                    prog.as_fd(),
                    peer_ifindex,
                    libbpf_sys::BPF_XDP,
                    libbpf_sys::XDP_FLAGS_DRV_MODE,
                )
            })
            .context("entering the lab's namespace")?
            .with_context(|| {
                format!(
                    "attaching the generator program to {} (see Generator)",
                    lab.peer_if()
                )
            })?;
        Ok(Generator {
            prog,
            peer_ifindex,
            _attached: attached,
        })
    }

    /// Sends `count` frames in one test run; call from inside the lab's namespace.
    fn send(&self, frame: &[u8], count: u32) -> anyhow::Result<()> {
        #[repr(C)]
        #[derive(Default)]
        struct XdpMd {
            data: u32,
            data_end: u32,
            data_meta: u32,
            ingress_ifindex: u32,
            rx_queue_index: u32,
            egress_ifindex: u32,
        }
        let ctx = XdpMd {
            data_end: frame.len() as u32,
            ingress_ifindex: self.peer_ifindex,
            ..Default::default()
        };
        let mut opts = libbpf_sys::bpf_test_run_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _,
            data_in: frame.as_ptr().cast(),
            data_size_in: frame.len() as u32,
            ctx_in: (&ctx as *const XdpMd).cast(),
            ctx_size_in: std::mem::size_of::<XdpMd>() as u32,
            repeat: count as i32,
            flags: libbpf_sys::BPF_F_TEST_XDP_LIVE_FRAMES,
            ..Default::default()
        };
        // SAFETY: opts is sized and initialised; data_in and ctx_in point at live values of the
        // given sizes for the duration of the call; no output buffers are given.
        let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(self.prog.as_raw_fd(), &mut opts) };
        if rc != 0 {
            let err = std::io::Error::from_raw_os_error(-rc);
            bail!(
                "BPF_PROG_TEST_RUN with live frames ({} bytes x {count}) failed: {err}",
                frame.len()
            );
        }
        Ok(())
    }

    /// Sends frames at `rate` per second for `dur`: whenever at least `min(batch, rate/1000)`
    /// frames are due, one test run sends them (at most `batch`). Call inside the namespace.
    fn paced(
        &self,
        frame: &[u8],
        rate: u64,
        batch: u32,
        dur: Duration,
        abort: &AtomicBool,
    ) -> anyhow::Result<Generated> {
        let chunk = (rate / 1000).clamp(1, u64::from(batch));
        let total = (rate as f64 * dur.as_secs_f64()) as u64;
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < total && !abort.load(Ordering::Relaxed) {
            let elapsed = start.elapsed();
            if elapsed > dur + Duration::from_secs(2) {
                break; // far behind: the generator cannot reach the rate
            }
            let due = ((rate as f64 * elapsed.as_secs_f64()) as u64).min(total);
            let owed = due.saturating_sub(sent);
            if owed >= chunk || (due == total && owed > 0) {
                let n = owed.min(u64::from(batch)) as u32;
                self.send(frame, n)?;
                sent += u64::from(n);
            } else {
                // Sleep until the next chunk is due.
                let next = Duration::from_secs_f64((sent + chunk) as f64 / rate as f64);
                if let Some(wait) = next.checked_sub(elapsed) {
                    std::thread::sleep(wait.min(Duration::from_millis(2)));
                }
            }
        }
        // The rate achieved: the frames sent over the time it took (the step's length at best).
        let elapsed = start
            .elapsed()
            .max(dur.mul_f64(sent as f64 / total.max(1) as f64));
        Ok(Generated { sent, elapsed })
    }
}

fn ifindex(name: &str) -> anyhow::Result<u32> {
    let c = CString::new(name)?;
    // SAFETY: c is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        bail!("no interface {name}: {}", std::io::Error::last_os_error());
    }
    Ok(idx)
}

/// Ethernet / IPv4 / UDP from the peer end to the host end, `len` bytes in all.
fn build_frame(lab: &Lab, len: usize) -> anyhow::Result<Vec<u8>> {
    let payload = vec![0x5a; len - 14 - 20 - 8];
    let builder = etherparse::PacketBuilder::ethernet2(lab.peer_mac(), lab.host_mac())
        .ipv4(lab.peer_v4().octets(), lab.host_v4().octets(), 64)
        .udp(SRC_PORT, DST_PORT);
    let mut frame = Vec::with_capacity(len);
    builder
        .write(&mut frame, &payload)
        .context("building the test frame")?;
    debug_assert_eq!(frame.len(), len);
    Ok(frame)
}

// ---------------------------------------------------------------------------
// The receiving end: count at XDP, drop at tcx ingress (a clsact filter without tcx).

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    arrived: u64,
    delivered: u64,
}

/// Programs on the host end, detached when dropped (their links are not pinned).
struct Sink {
    arrived: Counter,
    delivered: Counter,
    _xdp: OwnedFd,
    _drop: DropAttach,
    _progs: [OwnedFd; 2],
}

/// How the drop program is attached: a tcx link, or where the kernel has no tcx (before
/// 6.6) the first clsact filter. Either goes when dropped.
enum DropAttach {
    Tcx(#[allow(dead_code)] OwnedFd),
    Clsact(#[allow(dead_code)] netray_capture::tc_front::ClsactEntry),
}

impl Sink {
    fn attach(lab: &Lab) -> anyhow::Result<Sink> {
        let ifindex = lab.host_ifindex();
        let arrived = Counter::new()?;
        let delivered = Counter::new()?;
        // XDP_PASS = 2, TC_ACT_SHOT = 2.
        let xdp_prog = load_program(
            &counting(arrived.fd.as_fd(), 2),
            &ProgramSpec::xdp("nr_bench_rx"),
        )
        .context("loading the receive counter")?;
        let tc_prog = load_program(
            &counting(delivered.fd.as_fd(), 2),
            &ProgramSpec {
                name: "nr_bench_drop",
                prog_type: libbpf_sys::BPF_PROG_TYPE_SCHED_CLS,
                expected_attach_type: libbpf_sys::BPF_TCX_INGRESS,
                flags: 0,
                attach_target: None,
                btf_func: false,
            },
        )
        .context("loading the tcx drop program")?;
        // A native XDP program on the host end also makes the veth accept redirected frames.
        let xdp = link_create(
            xdp_prog.as_fd(),
            ifindex,
            libbpf_sys::BPF_XDP,
            libbpf_sys::XDP_FLAGS_DRV_MODE,
        )
        .with_context(|| {
            format!(
                "attaching the receive counter to {} in native XDP mode",
                lab.host_if()
            )
        })?;
        let drop = match link_create(tc_prog.as_fd(), ifindex, libbpf_sys::BPF_TCX_INGRESS, 0) {
            Ok(link) => DropAttach::Tcx(link),
            Err(tcx) => netray_capture::tc_front::attach(tc_prog.as_fd(), ifindex, netray_core::Hook::TcIngress)
                .map(DropAttach::Clsact)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "attaching the drop program to {} at TC ingress: tcx refused ({tcx:#}), clsact too ({})",
                        lab.host_if(),
                        std::io::Error::from_raw_os_error(e)
                    )
                })?,
        };
        Ok(Sink {
            arrived,
            delivered,
            _xdp: xdp,
            _drop: drop,
            _progs: [xdp_prog, tc_prog],
        })
    }

    fn counts(&self) -> anyhow::Result<Counts> {
        Ok(Counts {
            arrived: self.arrived.read()?,
            delivered: self.delivered.read()?,
        })
    }

    /// Waits until the receive path has handled what was sent (the veth's NAPI may lag
    /// behind the generator a little), at most 2 s.
    fn settle(&self, before: &Counts, sent: u64) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut last = self.counts()?;
        loop {
            std::thread::sleep(Duration::from_millis(20));
            let now = self.counts()?;
            let done = now.delivered - before.delivered >= sent;
            let still = now.arrived == last.arrived && now.delivered == last.delivered;
            if done || still || start.elapsed() > Duration::from_secs(2) {
                return Ok(());
            }
            last = now;
        }
    }
}

/// `counter[0]++ ; return verdict`, for XDP and TC alike.
fn counting(map: BorrowedFd<'_>, verdict: i32) -> Vec<I> {
    let mut p = vec![
        I::st_imm(e::W, R10, -4, 0),
        I::mov64_reg(R2, R10),
        I::alu64_imm(e::ADD, R2, -4),
    ];
    p.extend(I::ld_map_fd(R1, map.as_raw_fd()));
    p.extend([
        I::call(libbpf_sys::BPF_FUNC_map_lookup_elem as i32),
        I::jmp_imm(e::JEQ, R0, 0, 3),
        I::ldx(e::DW, R1, R0, 0),
        I::alu64_imm(e::ADD, R1, 1),
        I::stx(e::DW, R0, 0, R1),
        I::mov32_imm(R0, verdict),
        I::exit(),
    ]);
    p
}

/// A one-slot per-CPU u64 counter.
struct Counter {
    fd: OwnedFd,
    cpus: usize,
}

impl Counter {
    fn new() -> anyhow::Result<Counter> {
        // SAFETY: a plain query.
        let cpus = unsafe { libbpf_sys::libbpf_num_possible_cpus() };
        anyhow::ensure!(
            cpus > 0,
            "cannot tell the number of possible CPUs: {}",
            std::io::Error::from_raw_os_error(-cpus)
        );
        let name = c"nr_bench_cnt";
        // SAFETY: name is NUL-terminated; null opts mean defaults.
        let fd = unsafe {
            libbpf_sys::bpf_map_create(
                libbpf_sys::BPF_MAP_TYPE_PERCPU_ARRAY,
                name.as_ptr(),
                4,
                8,
                1,
                std::ptr::null(),
            )
        };
        if fd < 0 {
            bail!(
                "creating a counter map: {}",
                std::io::Error::from_raw_os_error(-fd)
            );
        }
        // SAFETY: a fresh fd we own.
        Ok(Counter {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            cpus: cpus as usize,
        })
    }

    fn read(&self) -> anyhow::Result<u64> {
        let key = 0u32;
        let mut values = vec![0u64; self.cpus];
        // SAFETY: the key is 4 bytes, values holds one u64 per possible CPU.
        let rc = unsafe {
            libbpf_sys::bpf_map_lookup_elem(
                self.fd.as_raw_fd(),
                (&key as *const u32).cast(),
                values.as_mut_ptr().cast(),
            )
        };
        if rc != 0 {
            bail!(
                "reading a counter: {}",
                std::io::Error::from_raw_os_error(-rc)
            );
        }
        Ok(values.iter().sum())
    }
}

fn link_create(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    at: libbpf_sys::bpf_attach_type,
    flags: u32,
) -> anyhow::Result<OwnedFd> {
    netray_core::link::create(prog, ifindex, at, flags)
        .map_err(|e| std::io::Error::from_raw_os_error(e).into())
}

// ---------------------------------------------------------------------------
// tcpdump.

#[derive(Debug, Default)]
struct TcpdumpSummary {
    captured: u64,
    received_by_filter: u64,
    dropped_by_kernel: u64,
    dropped_by_interface: u64,
    lines: Vec<String>,
}

/// A running `tcpdump -w`; killed if dropped before [`Tcpdump::stop`].
struct Tcpdump {
    child: Option<Child>,
    stderr: mpsc::Receiver<String>,
}

fn tcpdump_version() -> anyhow::Result<String> {
    let out = Command::new("tcpdump").arg("--version").output().map_err(|e| {
        anyhow::anyhow!("tcpdump is needed to compare against ({e}); install it (setup/deps.sh, or apt-get install tcpdump)")
    })?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    Ok(text.lines().next().unwrap_or("tcpdump").trim().to_string())
}

impl Tcpdump {
    fn start(iface: &str, path: &Path) -> anyhow::Result<Tcpdump> {
        let mut child = Command::new("tcpdump")
            .args(["-i", iface, "-w"])
            .arg(path)
            .args(["-s", "262144", "-n"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting tcpdump")?;
        let stderr = child.stderr.take().context("tcpdump's stderr")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let td = Tcpdump {
            child: Some(child),
            stderr: rx,
        };
        // Wait for "listening on ...": only then is the socket bound.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match td
                .stderr
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) if line.contains("listening on") => return Ok(td),
                Ok(_) => {}
                Err(_) => bail!("tcpdump did not start listening on {iface} within 10 s"),
            }
        }
    }

    fn stop(&mut self) -> anyhow::Result<TcpdumpSummary> {
        let mut child = self.child.take().context("tcpdump already stopped")?;
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let status = child.wait().context("waiting for tcpdump")?;
        let mut s = TcpdumpSummary::default();
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(2)) {
            let n = || {
                line.split_whitespace()
                    .next()
                    .and_then(|w| w.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            if line.ends_with("packets captured") || line.ends_with("packet captured") {
                s.captured = n();
            } else if line.contains("received by filter") {
                s.received_by_filter = n();
            } else if line.contains("dropped by kernel") {
                s.dropped_by_kernel = n();
            } else if line.contains("dropped by interface") {
                s.dropped_by_interface = n();
            } else {
                continue;
            }
            s.lines.push(line);
        }
        if s.lines.is_empty() {
            bail!("tcpdump exited ({status}) without its packet counts");
        }
        Ok(s)
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// Private pins and files, removed on every path.

struct PinGuard {
    dir: PinDir,
    path: PathBuf,
}

impl PinGuard {
    fn new() -> anyhow::Result<PinGuard> {
        let path = PathBuf::from(format!("/sys/fs/bpf/netray-bench-{}", std::process::id()));
        let dir = PinDir::resolve(Some(&path)).context("creating the benchmark's pin directory")?;
        Ok(PinGuard { dir, path })
    }
    fn dir(&self) -> &PinDir {
        &self.dir
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A fresh directory under `parent`, which must be on a disk (not tmpfs or ramfs: the
    /// point is writing to a file as a user would).
    fn new(parent: &Path) -> anyhow::Result<TempDir> {
        let c = CString::new(parent.as_os_str().as_encoded_bytes())?;
        // SAFETY: an all-zero statfs is valid to fill.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: c is NUL-terminated and st is writable.
        if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
            bail!("{}: {}", parent.display(), std::io::Error::last_os_error());
        }
        const TMPFS_MAGIC: i64 = 0x0102_1994;
        const RAMFS_MAGIC: i64 = 0x8584_58f6;
        if matches!(st.f_type as i64, TMPFS_MAGIC | RAMFS_MAGIC) {
            bail!(
                "{} is in memory (tmpfs): give a directory on a disk with --dir",
                parent.display()
            );
        }
        let path = parent.join(format!("netray-bench-dump-{}", std::process::id()));
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}
