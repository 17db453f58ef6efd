//! Where captured packets go: a pcapng stream (one file, or files rotated like tcpdump's
//! `-C`/`-W`/`-G`), text lines (tcpdump style or JSON), or only their number (`--count`),
//! with tcpdump's `-c` limit. Shared by live capture and `-r`.

use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use crate::direct_io::DirectFile;
use crate::line::{self, LineFormatter, LineStyle};
use crate::pcapng::{EpbBatch, InterfaceStatistics};
use crate::rotation::{Next, Rotation, RotationError, RotationSpec};
use crate::{CaptureIf, Packet, PcapngWriter};

pub struct Output {
    sink: Sink,
    written: u64,
    limit: Option<u64>,
    /// `-l` / `-U`: flush after every packet rather than on the caller's timer.
    flush_each: bool,
    /// Interfaces declared so far, declared again at the start of each rotated file.
    declared: Vec<CaptureIf>,
    /// `-G` with `-W`: the file limit that ended the capture.
    file_limit_reached: Option<u32>,
    /// The statistics each rotated file ends with, as they stand when it is closed.
    statistics: Option<StatisticsSource>,
    error: Option<io::Error>,
}

/// The Interface Statistics Blocks of the declared interfaces, taken now.
pub type StatisticsSource = Box<dyn FnMut() -> Vec<(CaptureIf, InterfaceStatistics)> + Send>;

enum Sink {
    Pcapng(PcapngWriter<Box<dyn Write + Send>>),
    Rotating { rotation: Rotation, segment: Segment },
    Text { out: Box<dyn Write + Send>, json: bool, lines: LineFormatter },
    Count,
}

/// One rotated file: its pcapng section and how many bytes went into it.
struct Segment {
    writer: PcapngWriter<Box<dyn Write + Send>>,
    bytes: Arc<AtomicU64>,
}

/// Opens one file of a rotated capture and starts its pcapng section. The one place a
/// rotated file is opened, so how files are written can change here alone.
fn open_segment(path: &Path) -> io::Result<Segment> {
    // Direct I/O in large aligned blocks, as a single -w file (buffered where refused).
    let file = DirectFile::create(path).map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display())))?;
    let bytes = Arc::new(AtomicU64::new(0));
    let counted = Counted { inner: file, bytes: Arc::clone(&bytes) };
    Ok(Segment { writer: PcapngWriter::new(Box::new(counted) as Box<dyn Write + Send>)?, bytes })
}

/// Counts what goes through it: a rotated file's size without asking the file system.
struct Counted<W> {
    inner: W,
    bytes: Arc<AtomicU64>,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Output {
    /// pcapng to `out` (a file, or stdout for `-w -`).
    pub fn pcapng(out: Box<dyn Write + Send>, limit: Option<u64>) -> io::Result<Output> {
        Ok(Output::new(Sink::Pcapng(PcapngWriter::new(out)?), limit))
    }

    /// pcapng into files named and rotated as `spec` says (tcpdump's `-w` with `-C`/`-W`/`-G`).
    /// A spec that cannot work is an `InvalidInput` error naming the flag.
    pub fn rotating(spec: RotationSpec, limit: Option<u64>) -> io::Result<Output> {
        let (rotation, first) = Rotation::start(spec, SystemTime::now())
            .map_err(|e: RotationError| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Output::new(Sink::Rotating { rotation, segment: open_segment(&first)? }, limit))
    }

    /// One line per packet: tcpdump style, or one JSON object.
    pub fn text(out: Box<dyn Write + Send>, json: bool, limit: Option<u64>) -> Output {
        Output::new(Sink::Text { out, json, lines: LineFormatter::new(LineStyle::default()) }, limit)
    }

    /// Nothing but the number of packets (`--count`): [`Output::written`] at the end.
    pub fn count_only(limit: Option<u64>) -> Output {
        Output::new(Sink::Count, limit)
    }

    /// Text lines in this style (`-t`, `-e`, `-q`, `-v`, `-x`...); no effect on other outputs.
    pub fn with_style(mut self, style: LineStyle) -> Output {
        if let Sink::Text { lines, .. } = &mut self.sink {
            *lines = LineFormatter::new(style);
        }
        self
    }

    /// Flush after each packet: `-l` for lines, `-U` for pcapng.
    pub fn flush_each_packet(mut self, on: bool) -> Output {
        self.flush_each = on;
        self
    }

    /// Where a rotated file's closing statistics come from (a live capture's counters);
    /// without one, rotated files end without them (a `-r` replay has none to give).
    pub fn set_statistics_source(&mut self, source: StatisticsSource) {
        self.statistics = Some(source);
    }

    fn new(sink: Sink, limit: Option<u64>) -> Output {
        Output {
            sink,
            written: 0,
            limit,
            flush_each: false,
            declared: Vec::new(),
            file_limit_reached: None,
            statistics: None,
            error: None,
        }
    }

    /// Writes one packet; false once the limit is reached or writing failed
    /// (the error is kept for [`Output::finish`]).
    pub fn write(&mut self, pkt: &Packet) -> bool {
        if self.done() {
            return false;
        }
        if let Err(e) = self.rotate_if_due() {
            self.error = Some(e);
            return false;
        }
        if self.file_limit_reached.is_some() {
            return false;
        }
        let result = match &mut self.sink {
            Sink::Pcapng(w) => w.write(pkt),
            Sink::Rotating { segment, .. } => segment.writer.write(pkt),
            Sink::Text { out, json: false, lines } => writeln!(out, "{}", lines.format(pkt)),
            Sink::Text { out, json: true, .. } => writeln!(out, "{}", line::to_json(pkt)),
            Sink::Count => Ok(()),
        };
        match result {
            Ok(()) => self.written += 1,
            Err(e) => self.error = Some(e),
        }
        if self.flush_each {
            self.flush();
        }
        !self.done()
    }

    /// Moves to the next rotated file when its time or size has come. The file left
    /// ends with the statistics of each interface; the next one starts with the same
    /// section header and interfaces in the same order, so blocks encoded for one
    /// file's interface ids are right in every file.
    fn rotate_if_due(&mut self) -> io::Result<()> {
        let Sink::Rotating { rotation, segment } = &mut self.sink else { return Ok(()) };
        let next = rotation.before_packet(SystemTime::now(), segment.bytes.load(Ordering::Relaxed));
        if next == Next::Same {
            return Ok(());
        }
        if let Some(source) = &mut self.statistics {
            for (iface, s) in source() {
                segment.writer.write_statistics(&iface, &s)?;
            }
        }
        segment.writer.flush()?;
        match next {
            Next::Same => {}
            Next::Stop => self.file_limit_reached = rotation.files_limit(),
            Next::Open(path) => {
                *segment = open_segment(&path)?;
                for iface in &self.declared {
                    segment.writer.declare(iface)?;
                }
            }
        }
        Ok(())
    }

    /// Whether packets go out as pcapng (and [`Output::write_epbs`] applies).
    pub fn writes_pcapng(&self) -> bool {
        matches!(self.sink, Sink::Pcapng(_) | Sink::Rotating { .. })
    }

    /// Writes blocks the readers encoded for the declared interfaces, as many as the
    /// limit allows; false once the limit is reached or writing failed.
    pub fn write_epbs(&mut self, batch: &EpbBatch) -> bool {
        if self.done() {
            return false;
        }
        let room = self.limit.map_or(u64::MAX, |l| l - self.written);
        let packets = (batch.len() as u64).min(room) as usize;
        if let Sink::Pcapng(w) = &mut self.sink {
            match w.write_encoded(batch.first(packets), packets as u64) {
                Ok(()) => self.written += packets as u64,
                Err(e) => self.error = Some(e),
            }
        } else if let Err(e) = self.write_epbs_rotating(batch, packets) {
            self.error = Some(e);
        }
        !self.done()
    }

    /// The first `packets` blocks of `batch` over the rotated files: each piece goes
    /// whole to one file, and a file that passes `-C` takes no packet after the one that
    /// filled it (tcpdump's rule, checked per packet).
    fn write_epbs_rotating(&mut self, batch: &EpbBatch, packets: usize) -> io::Result<()> {
        let mut from = 0;
        while from < packets {
            self.rotate_if_due()?;
            if self.file_limit_reached.is_some() {
                return Ok(());
            }
            let Sink::Rotating { rotation, segment } = &mut self.sink else { return Ok(()) };
            let to = match rotation.max_bytes() {
                Some(limit) => {
                    let room = limit.saturating_sub(segment.bytes.load(Ordering::Relaxed));
                    (from + batch.packets_until_full(from, room)).min(packets)
                }
                None => packets,
            };
            segment.writer.write_encoded(batch.blocks(from, to), (to - from) as u64)?;
            self.written += (to - from) as u64;
            from = to;
        }
        Ok(())
    }

    /// One Interface Statistics Block per declared interface (pcapng), at the end; with
    /// rotation, in the last file (unless `-W` ended the capture after closing it).
    pub fn interface_statistics(&mut self, stats: &[(CaptureIf, InterfaceStatistics)]) {
        if self.error.is_some() || self.file_limit_reached.is_some() {
            return;
        }
        let w = match &mut self.sink {
            Sink::Pcapng(w) => w,
            Sink::Rotating { segment, .. } => &mut segment.writer,
            Sink::Text { .. } | Sink::Count => return,
        };
        for (iface, s) in stats {
            if let Err(e) = w.write_statistics(iface, s) {
                self.error.get_or_insert(e);
                return;
            }
        }
    }

    /// Declares a capture interface up front (pcapng), so an empty capture is a valid file.
    pub fn declare(&mut self, iface: &CaptureIf) {
        let result = match &mut self.sink {
            Sink::Pcapng(w) => w.declare(iface),
            Sink::Rotating { segment, .. } => segment.writer.declare(iface),
            Sink::Text { .. } | Sink::Count => Ok(()),
        };
        self.declared.push(iface.clone());
        if let Err(e) = result {
            self.error.get_or_insert(e);
        }
    }

    /// The limit is reached, the `-W` file limit is, or the output is gone.
    pub fn done(&self) -> bool {
        self.error.is_some()
            || self.file_limit_reached.is_some()
            || self.limit.is_some_and(|l| self.written >= l)
    }

    /// `-G` with `-W N`: Some(N) once the N-th file was complete and the capture stopped.
    pub fn file_limit_reached(&self) -> Option<u32> {
        self.file_limit_reached
    }

    /// Packets written; for pcapng, those the file holds (fewer than handed over when
    /// the disk filled: it keeps whole blocks only).
    pub fn written(&self) -> u64 {
        match &self.sink {
            Sink::Pcapng(w) => w.packets_written(),
            Sink::Rotating { .. } | Sink::Text { .. } | Sink::Count => self.written,
        }
    }

    pub fn flush(&mut self) {
        let r = match &mut self.sink {
            Sink::Pcapng(w) => w.flush(),
            Sink::Rotating { segment, .. } => segment.writer.flush(),
            Sink::Text { out, .. } => out.flush(),
            Sink::Count => Ok(()),
        };
        if let Err(e) = r {
            self.error.get_or_insert(e);
        }
    }

    /// Flushes; a write error other than a closed pipe (`| head`) is returned.
    pub fn finish(&mut self) -> io::Result<()> {
        self.flush();
        match self.error.take() {
            Some(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e),
            _ => Ok(()),
        }
    }
}
