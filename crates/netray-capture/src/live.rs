//! A running capture with its readers: records from the kernel turned into
//! [`Packet`]s and handed to the caller, until it has enough or is stopped.
//! Shared by `netray dump`, the daemon's filtered event streams and the bench.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
};

use netray_core::{clock::MonotonicClock, Error, Result};
use netray_ebpf::abi::nr_capture_record;

use crate::{reader::Readers, Capture, CaptureIf, Output, Packet, Point, PointStats};

/// Called for each captured packet, from the reader threads (one per ring,
/// so possibly concurrently). Returns false once it wants no more packets.
pub type OnPacket = Arc<dyn Fn(&Packet) -> bool + Send + Sync>;

pub struct LiveCapture {
    capture: Capture,
    readers: Readers,
    done: Arc<AtomicBool>,
}

/// What a capture saw, taken when it stopped.
#[derive(Debug)]
pub struct Stopped {
    pub stats: Vec<PointStats>,
    /// Things the user should know (e.g. a program put back).
    pub notes: Vec<String>,
}

impl LiveCapture {
    /// Starts one reader per ring; `on_packet` sees every record from now on.
    pub fn start(capture: Capture, on_packet: OnPacket) -> Result<LiveCapture> {
        let interfaces: Arc<BTreeMap<(u8, u8), CaptureIf>> = Arc::new(capture.interface_table().clone());
        let clock = MonotonicClock::new();
        let done = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&done);
        let on_record = Arc::new(move |rec: &nr_capture_record, data: &[u8]| {
            if flag.load(Ordering::Relaxed) {
                return;
            }
            let Some(iface) = interfaces.get(&(rec.hook, rec.point)) else { return };
            let pkt = Packet {
                iface,
                ts: clock.to_system(rec.ts_ns),
                wire_len: rec.wire_len,
                data,
                verdict: (iface.point == Point::Exit).then_some(rec.verdict),
            };
            if !on_packet(&pkt) {
                flag.store(true, Ordering::Relaxed);
            }
        });
        let readers = Readers::spawn(capture.rings()?, on_record)
            .map_err(|e| Error::Internal(format!("starting the capture readers: {e}")))?;
        Ok(LiveCapture { capture, readers, done })
    }

    /// Starts `capture` writing every packet to `output`, with the capture's
    /// interfaces declared first (so even an empty capture is a valid file).
    /// Returns the running capture and the output, shared with the readers.
    pub fn write_to(capture: Capture, mut output: Output) -> Result<(LiveCapture, Arc<Mutex<Output>>)> {
        for iface in capture.interfaces() {
            output.declare(iface);
        }
        let output = Arc::new(Mutex::new(output));
        let sink = Arc::clone(&output);
        let live = LiveCapture::start(
            capture,
            Arc::new(move |pkt: &Packet| sink.lock().map(|mut out| out.write(pkt)).unwrap_or(false)),
        )?;
        Ok((live, output))
    }

    /// The consumer said it has enough.
    pub fn done(&self) -> bool {
        self.done.load(Ordering::Relaxed)
    }

    pub fn capture(&self) -> &Capture {
        &self.capture
    }

    /// Takes the programs down (putting back what was there), then lets the
    /// readers drain what was written before: nothing in the rings is lost.
    pub fn stop(self) -> Result<Stopped> {
        let stats = self.capture.stats();
        let notes = self.capture.stop();
        self.readers.finish();
        Ok(Stopped { stats: stats?, notes: notes? })
    }
}
