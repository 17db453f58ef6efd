//! The benchmark's private pins and capture files, removed on every path.

use std::{
    ffi::CString,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _};
use netray_core::PinDir;

pub(super) struct PinGuard {
    dir: PinDir,
    path: PathBuf,
}

impl PinGuard {
    pub(super) fn new() -> anyhow::Result<PinGuard> {
        let path = PathBuf::from(format!("/sys/fs/bpf/netray-bench-{}", std::process::id()));
        let dir = PinDir::resolve(Some(&path)).context("creating the benchmark's pin directory")?;
        Ok(PinGuard { dir, path })
    }
    pub(super) fn dir(&self) -> &PinDir {
        &self.dir
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

pub(super) struct TempDir {
    pub(super) path: PathBuf,
}

impl TempDir {
    /// A fresh directory under `parent`, which must be on a disk (not tmpfs or ramfs: the
    /// point is writing to a file as a user would).
    pub(super) fn new(parent: &Path) -> anyhow::Result<TempDir> {
        let c = CString::new(parent.as_os_str().as_encoded_bytes())?;
        // SAFETY: an all-zero statfs is valid to fill.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: c is NUL-terminated and st is writable.
        if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
            bail!("{}: {}", parent.display(), std::io::Error::last_os_error());
        }
        const TMPFS_MAGIC: i64 = 0x0102_1994;
        const RAMFS_MAGIC: i64 = 0x8584_58f6;
        if matches!(st.f_type as i64, TMPFS_MAGIC | RAMFS_MAGIC) {
            bail!(
                "{} is in memory (tmpfs): give a directory on a disk with --dir",
                parent.display()
            );
        }
        let path = parent.join(format!("netray-bench-dump-{}", std::process::id()));
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}
