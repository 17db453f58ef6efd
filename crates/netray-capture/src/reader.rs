//! One reader thread per capture ring (per CPU, per hook).
//!
//! The recorder submits without waking anyone unless a ring fills past its
//! wakeup mark, so each reader polls on a short timer and drains its ring in
//! batches; a wakeup per record would cost microseconds each.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use libbpf_rs::{MapHandle, RingBufferBuilder};
use netray_ebpf::abi::{from_bytes, nr_capture_record};

/// Called for each record with its header and packet bytes.
pub type OnRecord = Arc<dyn Fn(&nr_capture_record, &[u8]) + Send + Sync>;

/// How long a reader sleeps between drains when no wakeup comes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Readers of a set of rings. They run until [`Readers::finish`], which makes
/// each drain its ring one last time (call it after the programs are detached,
/// so that nothing written is left behind).
pub struct Readers {
    threads: Vec<JoinHandle<()>>,
    done: Arc<AtomicBool>,
}

impl Readers {
    pub fn spawn(rings: Vec<MapHandle>, on_record: OnRecord) -> std::io::Result<Readers> {
        let done = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::with_capacity(rings.len());
        for (i, ring) in rings.into_iter().enumerate() {
            let on_record = Arc::clone(&on_record);
            let done = Arc::clone(&done);
            let thread = std::thread::Builder::new()
                .name(format!("netray-cap{i}"))
                .spawn(move || read_ring(ring, on_record, done))?;
            threads.push(thread);
        }
        Ok(Readers { threads, done })
    }

    /// Drains every ring a last time and joins the readers.
    pub fn finish(self) {
        self.done.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn read_ring(ring: MapHandle, on_record: OnRecord, done: Arc<AtomicBool>) {
    let header = std::mem::size_of::<nr_capture_record>();
    let mut builder = RingBufferBuilder::new();
    let added = builder.add(&ring, move |data: &[u8]| {
        if let Some(rec) = data.get(..header).and_then(from_bytes::<nr_capture_record>) {
            let end = header + rec.cap_len as usize;
            if let Some(bytes) = data.get(header..end) {
                on_record(&rec, bytes);
            }
        }
        0
    });
    if added.is_err() {
        return;
    }
    let Ok(rb) = builder.build() else { return };
    loop {
        let last = done.load(Ordering::SeqCst);
        let _ = rb.poll(POLL_INTERVAL);
        let _ = rb.consume();
        if last {
            return;
        }
    }
}
