//! A capture file written with direct I/O (O_DIRECT) in large aligned blocks, the way
//! n2disk writes at line rate: no page-cache copy per byte and no dirty-page throttling
//! stalling the writer. Filesystems that refuse O_DIRECT get plain buffered writes.
//!
//! Every `write` call is taken as a unit that ends on a record boundary (the pcapng
//! writer hands over whole blocks). [`Write::flush`] writes the whole 4 KiB blocks
//! directly and the tail through the page cache, so after a flush the file is
//! complete; the next direct write simply rewrites that tail's block. When the disk
//! fills, the file is cut back to the last boundary that reached the disk, so it
//! stays a valid capture, and the error names the file and the full disk.

use std::{
    alloc::{self, Layout},
    collections::VecDeque,
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{FileExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

/// Direct I/O needs buffers, lengths and offsets aligned to the device's logical
/// block; 4 KiB covers every common device.
const ALIGN: usize = 4096;
/// Bytes per direct write: large enough that the per-write cost vanishes, small
/// enough to stay in the caches of the copy into it.
const CHUNK: usize = 4 << 20;

pub struct DirectFile {
    path: PathBuf,
    /// Opened with O_DIRECT, or plain where the filesystem refused it.
    file: File,
    /// The same file without O_DIRECT: the unaligned tail goes through it.
    tail: File,
    direct: bool,
    buf: AlignedBuf,
    /// File offset of buf[0]; always a multiple of ALIGN.
    base: u64,
    /// Offsets where a `write` call ended and the disk does not hold yet.
    boundaries: VecDeque<u64>,
    /// The last boundary known to be on the disk.
    safe_end: u64,
    failed: bool,
}

impl DirectFile {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path) -> io::Result<DirectFile> {
        let plain = || OpenOptions::new().write(true).create(true).truncate(true).open(path);
        let (file, direct) =
            match OpenOptions::new().write(true).create(true).truncate(true).custom_flags(libc::O_DIRECT).open(path) {
                Ok(f) => (f, true),
                // The filesystem has no direct I/O: page-cache writes still work.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (plain()?, false),
                Err(e) => return Err(e),
            };
        let tail = OpenOptions::new().write(true).open(path)?;
        Ok(DirectFile {
            path: path.to_owned(),
            file,
            tail,
            direct,
            buf: AlignedBuf::new(CHUNK),
            base: 0,
            boundaries: VecDeque::new(),
            safe_end: 0,
            failed: false,
        })
    }

    /// Whether the filesystem took O_DIRECT.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Writes the whole aligned blocks held in the buffer and keeps the rest.
    fn write_blocks(&mut self) -> io::Result<()> {
        let whole = if self.direct { self.buf.len / ALIGN * ALIGN } else { self.buf.len };
        if whole == 0 {
            return Ok(());
        }
        let mut done = 0;
        while done < whole {
            match self.file.write_at(&self.buf.as_slice()[done..whole], self.base + done as u64) {
                Ok(0) => return Err(self.fail(done, io::ErrorKind::StorageFull.into())),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.fail(done, e)),
            }
        }
        self.on_disk(self.base + whole as u64);
        self.buf.consume(whole);
        self.base += whole as u64;
        Ok(())
    }

    /// Everything up to `end` is on the disk.
    fn on_disk(&mut self, end: u64) {
        while let Some(&b) = self.boundaries.front() {
            if b > end {
                break;
            }
            self.safe_end = b;
            self.boundaries.pop_front();
        }
    }

    /// A write failed after `done` bytes of the buffer reached the disk: cut the file
    /// back to the last whole record there, and say which file and why.
    fn fail(&mut self, done: usize, e: io::Error) -> io::Error {
        self.failed = true;
        self.on_disk(self.base + done as u64);
        let kept = self.safe_end;
        let _ = self.tail.set_len(kept);
        let full = matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) || e.kind() == io::ErrorKind::StorageFull;
        let what = if full {
            format!(
                "the disk holding {} is full ({e}): the capture stopped there; the file keeps the {kept} bytes of whole \
                 records written before; free space or write to another disk",
                self.path.display()
            )
        } else {
            format!(
                "writing {} failed ({e}): the file keeps the {kept} bytes of whole records written before",
                self.path.display()
            )
        };
        io::Error::new(if full { io::ErrorKind::StorageFull } else { e.kind() }, Cut { kept, what })
    }

    fn refuse(&self) -> io::Error {
        io::Error::other(format!("{} could not be written before; nothing more is written to it", self.path.display()))
    }
}

/// The error of a write that failed, with how much of the file was kept: whoever
/// wrote the records can tell how many of them are in the file.
#[derive(Debug)]
struct Cut {
    kept: u64,
    what: String,
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

impl std::error::Error for Cut {}

/// The bytes a [`DirectFile`] kept when this error stopped it, if it was one of its.
pub fn kept_bytes(e: &io::Error) -> Option<u64> {
    e.get_ref()?.downcast_ref::<Cut>().map(|c| c.kept)
}

impl Write for DirectFile {
    /// Takes all of `data` (a unit ending on a record boundary).
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(self.refuse());
        }
        let total = data.len();
        while !data.is_empty() {
            let n = self.buf.append(data);
            data = &data[n..];
            if self.buf.len == self.buf.capacity() {
                self.write_blocks()?;
            }
        }
        self.boundaries.push_back(self.base + self.buf.len as u64);
        Ok(total)
    }

    /// The whole blocks go directly, the tail through the page cache: the file is
    /// complete on the disk (or in its cache) when this returns.
    fn flush(&mut self) -> io::Result<()> {
        if self.failed {
            return Err(self.refuse());
        }
        self.write_blocks()?;
        if self.buf.len > 0 {
            let tail = &self.buf.as_slice()[..self.buf.len];
            if let Err(e) = self.tail.write_all_at(tail, self.base) {
                let e = self.fail(0, e);
                return Err(e);
            }
            self.on_disk(self.base + self.buf.len as u64);
        }
        Ok(())
    }
}

/// A heap buffer aligned for direct I/O. Vec cannot promise an alignment; the few
/// lines of std::alloc below are smaller than a dependency for it.
struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    cap: usize,
    len: usize,
}

// SAFETY: the buffer is plain bytes owned by this value alone.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    fn new(cap: usize) -> AlignedBuf {
        let layout = Layout::from_size_align(cap, ALIGN).expect("a valid layout");
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc::alloc(layout) };
        let ptr = std::ptr::NonNull::new(raw).unwrap_or_else(|| alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, cap, len: 0 }
    }

    fn capacity(&self) -> usize {
        self.cap
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: the first `len` bytes were written by `append`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Copies as much of `data` as fits; returns how much.
    fn append(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.cap - self.len);
        // SAFETY: n bytes fit after len; the source does not overlap our buffer.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(self.len), n) };
        self.len += n;
        n
    }

    /// Drops the first `n` bytes, moving the rest to the front (less than one block).
    fn consume(&mut self, n: usize) {
        let rest = self.len - n;
        // SAFETY: both ranges are within the buffer; copy handles the overlap.
        unsafe { std::ptr::copy(self.ptr.as_ptr().add(n), self.ptr.as_ptr(), rest) };
        self.len = rest;
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.cap, ALIGN).expect("a valid layout");
        // SAFETY: allocated in `new` with this layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) };
    }
}

impl Drop for DirectFile {
    /// A file dropped without a flush (an error path) still gets its tail.
    fn drop(&mut self) {
        if !self.failed {
            let _ = self.flush();
        }
    }
}
