//! One step: one tool at one frame size and rate, from the generator's start to
//! the last record on disk.

use std::{
    fs,
    path::Path,
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use netray_capture::{Capture, CaptureSpec, DirectFile, LiveCapture, Output, Point};
use netray_core::{AttachMode, Hook, PinDir};
use netray_lab::Lab;

use super::{
    cpus::Cpus,
    generator::{Generated, Generator},
    sink::{Counts, Sink},
    tcpdump::Tcpdump,
    DumpBenchOptions, Step, Tool, GENERATOR_OK,
};

/// One step's context.
pub(super) struct Run<'a> {
    pub(super) lab: &'a Lab,
    pub(super) sink: &'a Sink,
    pub(super) generator: &'a Generator,
    pub(super) frame: &'a [u8],
    pub(super) rate: u64,
    pub(super) opts: &'a DumpBenchOptions,
    pub(super) cpus: &'a Cpus,
}

impl Run<'_> {
    pub(super) fn generate(&self) -> anyhow::Result<Generated> {
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

    pub(super) fn step(
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
            cpu_secs: None,
            cpu_ns_per_packet: None,
            generator_limited: gen.achieved_pps() < GENERATOR_OK * self.rate as f64,
            tool_lines: Vec::new(),
        })
    }

    pub(super) fn baseline(&self) -> anyhow::Result<Step> {
        let before = self.sink.counts()?;
        let gen = self.generate()?;
        self.sink.settle(&before, gen.sent)?;
        self.step(Tool::None, &gen, before, 0, 0)
    }

    pub(super) fn netray(&self, pin: &PinDir, path: &Path) -> anyhow::Result<Step> {
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
        // As `netray dump -w FILE` writes.
        let file = DirectFile::create(path).with_context(|| format!("creating {}", path.display()))?;
        let output = Output::pcapng(Box::new(file), None)?;
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
        let stopped = stopped.context("taking netray's capture down")?;
        let stats = stopped.stats;
        let mut out = output
            .lock()
            .map_err(|_| anyhow::anyhow!("the capture output was poisoned"))?;
        out.finish().context("writing the capture file")?;
        let captured = out.written();
        let lost = stats.iter().map(|s| s.lost).sum();
        let mut step = self.step(Tool::Netray, &gen, before, captured, lost)?;
        step.file_bytes = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        step.set_cpu(stopped.cpu_time);
        Ok(step)
    }

    pub(super) fn tcpdump(&self, path: &Path) -> anyhow::Result<Step> {
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
        step.set_cpu(summary.cpu_time);
        Ok(step)
    }
}

/// Waits at least `min` and until `path` holds `want` bytes, or has not grown for 1.5 s.
pub(super) fn wait_file(path: &Path, want: u64, min: Duration) {
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
pub(super) fn drain(capture: &Capture, output: &Mutex<Output>) -> anyhow::Result<()> {
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
