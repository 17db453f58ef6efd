//! Typed access to pinned maps: values are the ABI structs of
//! `netray_ebpf::abi`, read and written as the kernel's bytes.

use std::{
    os::fd::{AsFd, AsRawFd},
    path::Path,
    ptr::NonNull,
};

use libbpf_rs::{MapCore, MapFlags, MapHandle};
use netray_ebpf::abi::{bytes_of, from_bytes};
use plain::Plain;

use crate::{Error, Result};

/// Opens a pinned map, with an error that names the path.
pub fn open_pinned(path: &Path) -> Result<MapHandle> {
    MapHandle::from_pinned_path(path).map_err(Error::bpf(format!("opening pinned map {}", path.display())))
}

/// Reads the value at a u32 key. A map whose values are not exactly a T
/// (pinned by another netray version) is refused, not read as nothing.
pub fn get<T: Plain + Default>(map: &MapHandle, key: u32) -> Result<Option<T>> {
    if map.value_size() as usize != std::mem::size_of::<T>() {
        return Err(wrong_size(map, std::mem::size_of::<T>()));
    }
    let raw = map
        .lookup(&key.to_ne_bytes(), MapFlags::ANY)
        .map_err(Error::bpf(format!("reading map {}", map_name(map))))?;
    Ok(raw.and_then(|b| from_bytes(&b)))
}

/// Every entry of a map as raw bytes, read in batches (a few syscalls for
/// thousands of entries, where a key-by-key walk takes two per entry):
/// `each(key, value)` per entry, the value being `value_bytes` long (for a
/// per-CPU map, every possible CPU's value, each rounded up to 8 bytes).
/// Written here because libbpf-rs 0.27's batched lookup stops at the first
/// batch the kernel returns short, which a hash map does at bucket boundaries.
pub fn lookup_all_raw(map: &MapHandle, value_bytes: usize, mut each: impl FnMut(&[u8], &[u8])) -> Result<()> {
    let key_size = map.key_size() as usize;
    let mut batch = (map.max_entries() as usize).clamp(1, 4096);
    // The batch token: a 4-byte bucket number for hash maps, a key for arrays.
    let mut token: Option<Vec<u8>> = None;
    let mut next = vec![0u8; key_size.max(8)];
    loop {
        let mut keys = vec![0u8; batch * key_size];
        let mut values = vec![0u8; batch * value_bytes];
        let mut count = batch as u32;
        let opts = libbpf_sys::bpf_map_batch_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
            ..Default::default()
        };
        let in_batch = token.as_mut().map_or(std::ptr::null_mut(), |t| t.as_mut_ptr().cast());
        // SAFETY: the buffers hold `batch` keys and `batch` values as the
        // kernel writes them; `next` is at least key_size and 8 bytes.
        let rc = unsafe {
            libbpf_sys::bpf_map_lookup_batch(
                map.as_fd().as_raw_fd(),
                in_batch,
                next.as_mut_ptr().cast(),
                keys.as_mut_ptr().cast(),
                values.as_mut_ptr().cast(),
                &mut count,
                &opts,
            )
        };
        let err = if rc < 0 { -rc } else { 0 };
        if err == libc::ENOSPC && count == 0 {
            // One hash bucket holds more entries than the batch: grow it.
            batch *= 2;
            continue;
        }
        if err != 0 && err != libc::ENOENT {
            return Err(Error::errno(format!("reading map {} in batches", map_name(map)), err));
        }
        for i in 0..(count as usize).min(batch) {
            each(&keys[i * key_size..][..key_size], &values[i * value_bytes..][..value_bytes]);
        }
        if err == libc::ENOENT {
            return Ok(());
        }
        token = Some(next.clone());
    }
}

/// Every (key, value) of a map whose keys are K and values V.
pub fn dump<K: Plain + Default, V: Plain + Default>(map: &MapHandle) -> Result<Vec<(K, V)>> {
    if map.key_size() as usize != std::mem::size_of::<K>() || map.value_size() as usize != std::mem::size_of::<V>() {
        return Err(wrong_size(map, std::mem::size_of::<V>()));
    }
    let mut out = Vec::new();
    lookup_all_raw(map, std::mem::size_of::<V>(), |k, v| {
        if let (Some(k), Some(v)) = (from_bytes(k), from_bytes(v)) {
            out.push((k, v));
        }
    })?;
    Ok(out)
}

/// Writes the value at a u32 key.
pub fn put<T: Plain>(map: &MapHandle, key: u32, value: &T) -> Result<()> {
    map.update(&key.to_ne_bytes(), bytes_of(value), MapFlags::ANY)
        .map_err(Error::bpf(format!("writing map {}", map_name(map))))
}

/// Reads every CPU's value of a per-CPU map at a u32 key.
pub fn get_percpu<T: Plain + Default>(map: &MapHandle, key: u32) -> Result<Vec<T>> {
    let raw = map
        .lookup_percpu(&key.to_ne_bytes(), MapFlags::ANY)
        .map_err(Error::bpf(format!("reading per-CPU map {}", map_name(map))))?;
    Ok(raw.unwrap_or_default().iter().filter_map(|b| from_bytes(b)).collect())
}

/// Sets every CPU's value of a per-CPU map at a u32 key to T::default().
pub fn zero_percpu<T: Plain + Default>(map: &MapHandle, key: u32) -> Result<()> {
    let ncpu = libbpf_rs::num_possible_cpus().map_err(Error::bpf("counting CPUs"))?;
    let zero = T::default();
    let values = vec![bytes_of(&zero).to_vec(); ncpu];
    map.update_percpu(&key.to_ne_bytes(), &values, MapFlags::ANY)
        .map_err(Error::bpf(format!("clearing per-CPU map {}", map_name(map))))
}

pub fn map_name(map: &MapHandle) -> String {
    map.name().to_string_lossy().into_owned()
}

/// A BPF_F_MMAPABLE array map mapped into this process: element i is
/// `slice()[i]`, and writes are seen by the very next program run.
pub struct MmapArray<T> {
    ptr: NonNull<T>,
    len: usize,
    map_len: usize,
}

fn wrong_size(map: &MapHandle, want: usize) -> Error {
    Error::WrongValueSize { map: map_name(map), size: map.value_size(), want }
}

impl<T: Plain> MmapArray<T> {
    /// Maps the whole array. T must be the map's value type (its size is checked).
    pub fn new(map: &MapHandle) -> Result<MmapArray<T>> {
        let value_size = map.value_size() as usize;
        if value_size != std::mem::size_of::<T>() || !value_size.is_multiple_of(8) {
            return Err(wrong_size(map, std::mem::size_of::<T>()));
        }
        Self::map_all(map, map.max_entries() as usize, value_size)
    }

    /// Maps a one-element map whose value is an array of `len` T (a global
    /// array variable's data section).
    pub fn of_global(map: &MapHandle, len: usize) -> Result<MmapArray<T>> {
        let value_size = map.value_size() as usize;
        if map.max_entries() != 1 || value_size != len * std::mem::size_of::<T>() {
            return Err(wrong_size(map, len * std::mem::size_of::<T>()));
        }
        Self::map_all(map, len, std::mem::size_of::<T>())
    }

    fn map_all(map: &MapHandle, len: usize, value_size: usize) -> Result<MmapArray<T>> {
        let page = 4096usize;
        let map_len = (len * value_size).div_ceil(page) * page;
        // SAFETY: mapping a BPF array map fd shared and read-write, as the
        // kernel allows for BPF_F_MMAPABLE maps; the length covers the array.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.as_fd().as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::last_os(format!("mapping {} into memory failed", map_name(map))));
        }
        Ok(MmapArray { ptr: NonNull::new(p.cast()).expect("mmap returned non-null"), len, map_len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Element i as it is now: a volatile read, since the kernel writes
    /// the array concurrently.
    pub fn read(&self, i: usize) -> T
    where
        T: Copy,
    {
        assert!(i < self.len, "index {i} out of {}", self.len);
        // SAFETY: i is in bounds of the mapping, which holds initialised T.
        unsafe { std::ptr::read_volatile(self.ptr.as_ptr().add(i)) }
    }

    pub fn slice(&self) -> &[T] {
        // SAFETY: the mapping holds len initialised T (Plain: any bytes valid).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn slice_mut(&mut self) -> &mut [T] {
        // SAFETY: as above, and &mut self gives exclusive access in this process.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

// SAFETY: the mapping belongs to this value alone (unmapped on drop) and holds
// plain data, so it may move to and be read from other threads like a Vec<T>;
// writes need &mut self.
unsafe impl<T: Send> Send for MmapArray<T> {}
unsafe impl<T: Sync> Sync for MmapArray<T> {}

impl<T> std::fmt::Debug for MmapArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmapArray").field("len", &self.len).finish()
    }
}

impl<T> Drop for MmapArray<T> {
    fn drop(&mut self) {
        // SAFETY: ptr/map_len are exactly what mmap returned.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.map_len) };
    }
}
