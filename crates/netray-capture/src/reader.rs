//! One reader thread per capture ring (per CPU, per hook).
//!
//! The recorder submits without waking anyone unless a ring fills past its
//! wakeup mark, so each reader polls on a short timer and drains its ring in
//! batches; a wakeup per record would cost microseconds each. Each reader has
//! a sink of its own ([`RingSink`]), so readers share nothing per record.

use std::{
    cell::RefCell,
    rc::Rc,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use libbpf_rs::{MapHandle, RingBufferBuilder};
use netray_ebpf::abi::{from_bytes, nr_capture_record};

/// Where one reader puts its ring's records.
pub trait RingSink: Send {
    /// One record: its header and packet bytes.
    fn record(&mut self, rec: &nr_capture_record, data: &[u8]);
    /// The ring is empty for now: the moment to hand on what was gathered.
    fn drained(&mut self) {}
}

/// How long a reader sleeps between drains when no wakeup comes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Readers of a set of rings. They run until [`Readers::finish`], which makes
/// each drain its ring one last time (call it after the programs are detached,
/// so that nothing written is left behind).
pub struct Readers {
    threads: Vec<JoinHandle<Duration>>,
    done: Arc<AtomicBool>,
}

impl Readers {
    /// One reader per ring, each with its sink (`sinks` pairs with `rings`).
    pub fn spawn(rings: Vec<MapHandle>, sinks: Vec<Box<dyn RingSink>>) -> std::io::Result<Readers> {
        let done = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::with_capacity(rings.len());
        for (i, (ring, sink)) in rings.into_iter().zip(sinks).enumerate() {
            let done = Arc::clone(&done);
            let thread = std::thread::Builder::new()
                .name(format!("netray-cap{i}"))
                .spawn(move || {
                    read_ring(ring, sink, done);
                    thread_cpu_time()
                })?;
            threads.push(thread);
        }
        Ok(Readers { threads, done })
    }

    /// Drains every ring a last time and joins the readers; returns the CPU time
    /// they used.
    pub fn finish(self) -> Duration {
        self.done.store(true, Ordering::SeqCst);
        self.threads.into_iter().filter_map(|t| t.join().ok()).sum()
    }
}

fn read_ring(ring: MapHandle, sink: Box<dyn RingSink>, done: Arc<AtomicBool>) {
    let header = std::mem::size_of::<nr_capture_record>();
    let sink = Rc::new(RefCell::new(sink));
    let on_record = Rc::clone(&sink);
    let mut builder = RingBufferBuilder::new();
    let added = builder.add(&ring, move |data: &[u8]| {
        if let Some(rec) = data.get(..header).and_then(from_bytes::<nr_capture_record>) {
            let end = header + rec.cap_len as usize;
            if let Some(bytes) = data.get(header..end) {
                on_record.borrow_mut().record(&rec, bytes);
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
        sink.borrow_mut().drained();
        if last {
            return;
        }
    }
}

/// CPU time (user + system) the calling thread has used.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec to fill.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
