//! A running capture with its readers: records from the kernel turned into
//! [`Packet`]s and handed to the caller, until it has enough or is stopped.
//! Shared by `netray dump`, the daemon's filtered event streams and the bench.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime},
};

use netray_core::{clock::MonotonicClock, Error, Result};
use netray_ebpf::abi::nr_capture_record;

use crate::{
    batch_writer::{BatchWriter, InterfaceIds},
    pcapng::InterfaceStatistics,
    reader::{Readers, RingSink},
    session::hook_code,
    Capture, CaptureIf, Output, Packet, Point, PointStats,
};

/// Called for each captured packet, from the reader threads (one per ring,
/// so possibly concurrently). Returns false once it wants no more packets.
pub type OnPacket = Arc<dyn Fn(&Packet) -> bool + Send + Sync>;

pub struct LiveCapture {
    capture: Capture,
    readers: Readers,
    done: Arc<AtomicBool>,
    /// Capture to pcapng: the writer thread, and the output to end with statistics.
    writer: Option<(BatchWriter, Arc<Mutex<Output>>)>,
    started: SystemTime,
}

/// What a capture saw, taken when it stopped.
#[derive(Debug)]
pub struct Stopped {
    pub stats: Vec<PointStats>,
    /// Things the user should know (e.g. a program put back).
    pub notes: Vec<String>,
    /// CPU time (user + system) of the readers and the writer.
    pub cpu_time: Duration,
}

/// Hands each record to `on_packet` as a [`Packet`].
struct PacketSink {
    interfaces: Arc<BTreeMap<(u8, u8), CaptureIf>>,
    clock: Arc<MonotonicClock>,
    on_packet: OnPacket,
    done: Arc<AtomicBool>,
}

impl RingSink for PacketSink {
    fn record(&mut self, rec: &nr_capture_record, data: &[u8]) {
        if self.done.load(Ordering::Relaxed) {
            return;
        }
        let Some(iface) = self.interfaces.get(&(rec.hook, rec.point)) else { return };
        let pkt = Packet {
            iface,
            ts: self.clock.to_system(rec.ts_ns),
            wire_len: rec.wire_len,
            data,
            verdict: (iface.point == Point::Exit).then_some(rec.verdict),
            audit_rule: (iface.point == Point::Exit && rec.audit_rule != 0).then_some(rec.audit_rule),
        };
        if !(self.on_packet)(&pkt) {
            self.done.store(true, Ordering::Relaxed);
        }
    }
}

impl LiveCapture {
    /// Starts one reader per ring; `on_packet` sees every record from now on.
    pub fn start(capture: Capture, on_packet: OnPacket) -> Result<LiveCapture> {
        let interfaces: Arc<BTreeMap<(u8, u8), CaptureIf>> = Arc::new(capture.interface_table().clone());
        let clock = Arc::new(MonotonicClock::new());
        let done = Arc::new(AtomicBool::new(false));
        let rings = capture.rings()?;
        let sinks = (0..rings.len())
            .map(|_| {
                Box::new(PacketSink {
                    interfaces: Arc::clone(&interfaces),
                    clock: Arc::clone(&clock),
                    on_packet: Arc::clone(&on_packet),
                    done: Arc::clone(&done),
                }) as Box<dyn RingSink>
            })
            .collect();
        let readers = Readers::spawn(rings, sinks).map_err(reader_error)?;
        Ok(LiveCapture { capture, readers, done, writer: None, started: SystemTime::now() })
    }

    /// Starts `capture` writing every packet to `output`, with the capture's
    /// interfaces declared first (so even an empty capture is a valid file).
    /// Returns the running capture and the output, shared with the writer.
    ///
    /// pcapng goes through [`BatchWriter`]: readers encode into batches of their own
    /// and one thread writes them, with no lock per packet; [`LiveCapture::stop`] ends
    /// the file with an Interface Statistics Block per interface. Text lines are
    /// written per packet.
    pub fn write_to(capture: Capture, mut output: Output) -> Result<(LiveCapture, Arc<Mutex<Output>>)> {
        let started = SystemTime::now();
        for iface in capture.interfaces() {
            output.declare(iface);
        }
        // Each rotated file ends with the counters since the capture started (as
        // dumpcap's statistics count), taken when the file is closed.
        let (reader, table) = (capture.stats_reader()?, capture.interface_table().clone());
        output.set_statistics_source(Box::new(move || match reader.read() {
            Ok(stats) => statistics(&table, &stats, started, SystemTime::now()),
            // Counters that cannot be read leave this file without statistics; the
            // summary at the end still reads them.
            Err(_) => Vec::new(),
        }));
        let pcapng = output.writes_pcapng();
        let output = Arc::new(Mutex::new(output));
        if !pcapng {
            let sink = Arc::clone(&output);
            let live = LiveCapture::start(
                capture,
                Arc::new(move |pkt: &Packet| sink.lock().map(|mut out| out.write(pkt)).unwrap_or(false)),
            )?;
            return Ok((live, output));
        }
        let done = Arc::new(AtomicBool::new(false));
        let writer = BatchWriter::spawn(Arc::clone(&output), Arc::clone(&done)).map_err(reader_error)?;
        // Declared in the interface table's order: that order is their pcapng id.
        let ids = Arc::new(InterfaceIds::new(capture.interface_table()));
        let rings = capture.rings()?;
        let sinks =
            (0..rings.len()).map(|_| Box::new(writer.sink(Arc::clone(&ids), Arc::clone(&done))) as Box<dyn RingSink>).collect();
        let readers = Readers::spawn(rings, sinks).map_err(reader_error)?;
        let live = LiveCapture {
            capture,
            readers,
            done,
            writer: Some((writer, Arc::clone(&output))),
            started,
        };
        Ok((live, output))
    }

    /// The consumer said it has enough (or, writing to an output, the output
    /// failed, also where a flush between packets found the disk full).
    pub fn done(&self) -> bool {
        let output_done = || self.writer.as_ref().is_some_and(|(_, out)| out.lock().map_or(true, |o| o.done()));
        self.done.load(Ordering::Relaxed) || output_done()
    }

    pub fn capture(&self) -> &Capture {
        &self.capture
    }

    /// Takes the programs down (putting back what was there), then lets the
    /// readers drain what was written before: nothing in the rings is lost. A pcapng
    /// output then gets the statistics of each interface.
    pub fn stop(self) -> Result<Stopped> {
        let stats = self.capture.stats();
        let table = self.capture.interface_table().clone();
        let notes = self.capture.stop();
        let mut cpu_time = self.readers.finish();
        let ended = SystemTime::now();
        if let Some((writer, output)) = self.writer {
            cpu_time += writer.finish();
            if let (Ok(stats), Ok(mut out)) = (&stats, output.lock()) {
                out.interface_statistics(&statistics(&table, stats, self.started, ended));
            }
        }
        Ok(Stopped { stats: stats?, notes: notes?, cpu_time })
    }
}

/// The Interface Statistics Block contents of each capture interface, in the order of
/// their interface ids.
fn statistics(
    table: &BTreeMap<(u8, u8), CaptureIf>,
    stats: &[PointStats],
    start: SystemTime,
    end: SystemTime,
) -> Vec<(CaptureIf, InterfaceStatistics)> {
    table
        .iter()
        .filter_map(|(&key, iface)| {
            let s = stats.iter().find(|s| (hook_code(s.hook), s.point as u8) == key)?;
            let isb = InterfaceStatistics {
                start,
                end,
                received: s.seen,
                dropped: s.lost,
                filter_accepted: Some(s.matched),
            };
            Some((iface.clone(), isb))
        })
        .collect()
}

fn reader_error(e: std::io::Error) -> Error {
    Error::Internal(format!("starting the capture readers: {e}"))
}
