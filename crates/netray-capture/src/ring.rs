//! A BPF ring buffer read straight from its mapping.
//!
//! libbpf (and so libbpf-rs) stores the consumer position after every record. The
//! recorder reads that position on every reservation, on another CPU, so each record
//! the reader takes moves that cache line back and forth between the two CPUs while
//! a capture drains at full rate, and the receive path pays for it. This reader
//! publishes its position once per [`PUBLISH_BYTES`] consumed and at the end of each
//! drain. The layout is the kernel's (kernel/bpf/ringbuf.c): a consumer page the
//! reader writes, a producer page, and the data pages mapped twice in a row so that
//! a record that wraps around is contiguous; each record starts with an 8-byte header
//! (length with a busy and a discard bit, page offset) and is padded to 8 bytes.

use std::{
    io,
    os::fd::{AsFd, AsRawFd},
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
    time::Duration,
};

use libbpf_rs::{MapCore, MapHandle};

const BUSY_BIT: u32 = 1 << 31;
const DISCARD_BIT: u32 = 1 << 30;
const HDR_SZ: u64 = 8;
/// Consumed bytes between two stores of the consumer position: frees room for the
/// producer often enough, while it sees one store per few hundred records.
const PUBLISH_BYTES: u64 = 256 << 10;

pub struct Ring {
    map: MapHandle,
    consumer: *mut u8,
    /// Producer page followed by the data, mapped twice.
    producer: *mut u8,
    page: usize,
    size: u64,
}

// SAFETY: the mappings belong to this value alone; one thread reads a ring at a time.
unsafe impl Send for Ring {}

impl Ring {
    pub fn new(map: MapHandle) -> io::Result<Ring> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let size = u64::from(map.max_entries());
        let fd = map.as_fd().as_raw_fd();
        // SAFETY: mapping a ring buffer map fd as the kernel documents it; checked below.
        let consumer =
            unsafe { libc::mmap(std::ptr::null_mut(), page, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0) };
        if consumer == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let len = page + 2 * size as usize;
        // SAFETY: as above; the producer side is read-only.
        let producer = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, fd, page as i64) };
        if producer == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            // SAFETY: unmapping what was mapped above.
            unsafe { libc::munmap(consumer, page) };
            return Err(e);
        }
        Ok(Ring { map, consumer: consumer.cast(), producer: producer.cast(), page, size })
    }

    fn consumer_pos(&self) -> &AtomicU64 {
        // SAFETY: the consumer page starts with the kernel's 8-byte aligned position.
        unsafe { &*(self.consumer as *const AtomicU64) }
    }

    fn producer_pos(&self) -> &AtomicU64 {
        // SAFETY: likewise on the producer page.
        unsafe { &*(self.producer as *const AtomicU64) }
    }

    /// Waits until the kernel wakes the reader or `timeout` passes.
    pub fn wait(&self, timeout: Duration) {
        let mut pfd = libc::pollfd { fd: self.map.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
    }

    /// Hands every committed record to `on_record`, in order.
    pub fn drain(&self, on_record: &mut dyn FnMut(&[u8])) {
        let mask = self.size - 1;
        let data = self.producer.wrapping_add(self.page);
        let mut cons = self.consumer_pos().load(Ordering::Acquire);
        let mut published = cons;
        loop {
            let prod = self.producer_pos().load(Ordering::Acquire);
            if cons >= prod {
                break;
            }
            while cons < prod {
                // SAFETY: cons & mask is inside the data area; the header is 8-byte aligned.
                let hdr = unsafe { &*(data.add((cons & mask) as usize) as *const AtomicU32) };
                let len = hdr.load(Ordering::Acquire);
                if len & BUSY_BIT != 0 {
                    // Reserved, not yet submitted: the records after it wait too.
                    self.consumer_pos().store(cons, Ordering::Release);
                    return;
                }
                let body = u64::from(len & !(BUSY_BIT | DISCARD_BIT));
                if len & DISCARD_BIT == 0 {
                    // SAFETY: the record lies within the double mapping after its header.
                    let rec = unsafe {
                        std::slice::from_raw_parts(data.add(((cons & mask) + HDR_SZ) as usize), body as usize)
                    };
                    on_record(rec);
                }
                cons += (body + HDR_SZ).next_multiple_of(8);
                if cons - published >= PUBLISH_BYTES {
                    self.consumer_pos().store(cons, Ordering::Release);
                    published = cons;
                }
            }
        }
        self.consumer_pos().store(cons, Ordering::Release);
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe {
            libc::munmap(self.consumer.cast(), self.page);
            libc::munmap(self.producer.cast(), self.page + 2 * self.size as usize);
        }
    }
}
