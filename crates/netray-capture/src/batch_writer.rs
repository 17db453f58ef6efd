//! Capture to pcapng without a lock per packet: each reader encodes its ring's records
//! into a batch of its own ([`EpbSink`]) and hands full batches (and what it has when its
//! ring is empty) to one writer thread, which writes them whole to the output. A disk
//! that stalls stalls only the writer; the readers keep draining the rings into up to
//! [`QUEUED_BATCHES`] batches in memory, and only beyond that wait (the rings then
//! fill, and what the kernel cannot write is counted as dropped). Records of one ring
//! stay in order; rings are interleaved a batch at a time, so packets of different
//! CPUs are not sorted by time (tcpdump's are not either).

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::{self, Receiver, SyncSender},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use netray_core::clock::MonotonicClock;
use netray_ebpf::abi::nr_capture_record;

use crate::{pcapng::EpbBatch, reader::RingSink, CaptureIf, Output, Packet, Point};

/// A batch is handed on once it holds this much.
const BATCH_BYTES: usize = 1 << 20;
/// Batches waiting for the writer, at most (64 MiB at BATCH_BYTES).
pub const QUEUED_BATCHES: usize = 64;

/// The writer thread and the way to it.
pub struct BatchWriter {
    thread: JoinHandle<Duration>,
    queue: SyncSender<EpbBatch>,
    free: Arc<Mutex<Vec<EpbBatch>>>,
}

impl BatchWriter {
    /// Starts the thread writing batches to `output`; it sets `done` once the output
    /// wants no more (its packet limit, or a write error).
    pub fn spawn(output: Arc<Mutex<Output>>, done: Arc<AtomicBool>) -> std::io::Result<BatchWriter> {
        let (queue, batches) = mpsc::sync_channel(QUEUED_BATCHES);
        let free = Arc::new(Mutex::new(Vec::new()));
        let recycle = Arc::clone(&free);
        let thread = std::thread::Builder::new()
            .name("netray-write".into())
            .spawn(move || write_batches(batches, output, done, recycle))?;
        Ok(BatchWriter { thread, queue, free })
    }

    /// A sink for one ring's reader.
    pub fn sink(&self, ids: Arc<InterfaceIds>, done: Arc<AtomicBool>) -> EpbSink {
        EpbSink {
            ids,
            batch: EpbBatch::with_capacity(BATCH_BYTES + 70_000),
            queue: self.queue.clone(),
            free: Arc::clone(&self.free),
            done,
        }
    }

    /// Waits until every batch handed on is written (call after the readers finished);
    /// returns the writer's CPU time.
    pub fn finish(self) -> Duration {
        drop(self.queue);
        self.thread.join().unwrap_or_default()
    }
}

fn write_batches(
    batches: Receiver<EpbBatch>,
    output: Arc<Mutex<Output>>,
    done: Arc<AtomicBool>,
    free: Arc<Mutex<Vec<EpbBatch>>>,
) -> Duration {
    // Ends when every sink (and the BatchWriter) has let go of the queue.
    for mut batch in batches {
        let more = output.lock().map(|mut out| out.write_epbs(&batch)).unwrap_or(false);
        if !more {
            done.store(true, Ordering::Relaxed);
        }
        batch.clear();
        if let Ok(mut free) = free.lock() {
            free.push(batch);
        }
    }
    crate::reader::thread_cpu_time()
}

/// The pcapng interface id of each capture interface, by (hook code, point) as records
/// carry them (the order in which they were declared), and the clock of the records.
pub struct InterfaceIds {
    table: BTreeMap<(u8, u8), (u32, CaptureIf)>,
    clock: MonotonicClock,
}

impl InterfaceIds {
    /// `declared` in the order the output described them.
    pub fn new(declared: &BTreeMap<(u8, u8), CaptureIf>) -> InterfaceIds {
        let table = declared.iter().enumerate().map(|(id, (&key, iface))| (key, (id as u32, iface.clone()))).collect();
        InterfaceIds { table, clock: MonotonicClock::new() }
    }
}

/// One reader's batch under construction.
pub struct EpbSink {
    ids: Arc<InterfaceIds>,
    batch: EpbBatch,
    queue: SyncSender<EpbBatch>,
    free: Arc<Mutex<Vec<EpbBatch>>>,
    done: Arc<AtomicBool>,
}

impl EpbSink {
    fn hand_on(&mut self) {
        let fresh = self.free.lock().ok().and_then(|mut f| f.pop());
        let next = fresh.unwrap_or_else(|| EpbBatch::with_capacity(BATCH_BYTES + 70_000));
        let full = std::mem::replace(&mut self.batch, next);
        // The writer is gone only after the capture ended.
        let _ = self.queue.send(full);
    }
}

impl RingSink for EpbSink {
    fn record(&mut self, rec: &nr_capture_record, data: &[u8]) {
        if self.done.load(Ordering::Relaxed) {
            return;
        }
        let Some((id, iface)) = self.ids.table.get(&(rec.hook, rec.point)) else { return };
        let pkt = Packet {
            iface,
            ts: self.ids.clock.to_system(rec.ts_ns),
            wire_len: rec.wire_len,
            data,
            verdict: (iface.point == Point::Exit).then_some(rec.verdict),
            audit_rule: (iface.point == Point::Exit && rec.audit_rule != 0).then_some(rec.audit_rule),
        };
        self.batch.push(*id, &pkt);
        if self.batch.byte_len() >= BATCH_BYTES {
            self.hand_on();
        }
    }

    fn drained(&mut self) {
        if !self.batch.is_empty() {
            self.hand_on();
        }
    }
}
