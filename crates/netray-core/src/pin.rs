//! Where netray keeps its pinned state, and the lock that serialises changes
//! to it between processes.
//!
//! Layout under the root (default /sys/fs/bpf/netray):
//! - `fw/`            the firewall's maps, shared by every interface
//! - `if/<ifindex>/`  one interface's dispatcher: `link`, `prog` and its maps;
//!   the TC programs' `tc_<ingress|egress>_link` (tcx) or `_prog` (clsact)
//!
//! The root can be moved with `--pin-dir` or `NETRAY_PIN_DIR`, which is how
//! tests running in parallel keep out of each other's way.

use std::{
    fs,
    os::fd::{AsRawFd, OwnedFd},
    path::{Path, PathBuf},
};

use crate::{Error, Result};

/// The default root of netray's pins.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/netray";
/// Environment variable that moves the pin root.
pub const PIN_DIR_ENV: &str = "NETRAY_PIN_DIR";

const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// The pin root, verified to live on a bpffs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinDir {
    root: PathBuf,
}

impl PinDir {
    /// The pin root from an explicit path, else `NETRAY_PIN_DIR`, else the
    /// default. Mounts bpffs on /sys/fs/bpf if nothing is mounted there.
    pub fn resolve(explicit: Option<&Path>) -> Result<PinDir> {
        let root = Self::root_path(explicit);
        ensure_bpffs(Path::new("/sys/fs/bpf"))?;
        fs::create_dir_all(&root).map_err(Error::io(&root))?;
        if !is_bpffs(&root) {
            return Err(Error::NotBpffs(root));
        }
        Ok(PinDir { root })
    }

    /// The pin root for a command that only reads (`deny list`, `firewall
    /// status`): never created. A root that does not exist yet holds nothing,
    /// and readers must check [`PinDir::exists`] before taking the lock.
    pub fn resolve_read_only(explicit: Option<&Path>) -> Result<PinDir> {
        let root = Self::root_path(explicit);
        ensure_bpffs(Path::new("/sys/fs/bpf"))?;
        if root.exists() && !is_bpffs(&root) {
            return Err(Error::NotBpffs(root));
        }
        Ok(PinDir { root })
    }

    /// The root asked for: explicit, else `NETRAY_PIN_DIR`, else the default.
    fn root_path(explicit: Option<&Path>) -> PathBuf {
        match explicit {
            Some(p) => p.to_path_buf(),
            None => std::env::var_os(PIN_DIR_ENV)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_DIR)),
        }
    }

    /// Whether the root exists (a read-only resolve does not create it).
    pub fn exists(&self) -> bool {
        self.root.is_dir()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The firewall's shared maps.
    pub fn fw_dir(&self) -> PathBuf {
        self.root.join("fw")
    }

    /// The directory holding every interface's dispatcher.
    pub fn ifaces_dir(&self) -> PathBuf {
        self.root.join("if")
    }

    /// The directory where `netray dump` keeps, per interface, what it needs
    /// to put a chained XDP program back after a crash.
    pub fn capture_dir(&self) -> PathBuf {
        self.root.join("capture")
    }

    /// Removes the capture directories that hold nothing: an interface's once
    /// its capture ended, and the capture directory itself when none is left.
    /// A live capture's state is never touched (its directory is not empty).
    pub fn prune_capture_dirs(&self) {
        let dir = self.capture_dir();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let _ = std::fs::remove_dir(e.path());
            }
        }
        let _ = std::fs::remove_dir(&dir);
    }

    /// One interface's dispatcher state.
    pub fn if_dir(&self, ifindex: u32) -> PathBuf {
        self.ifaces_dir().join(ifindex.to_string())
    }

    /// Takes the exclusive lock on the pin root (blocking). Every change to
    /// pinned state holds it, so two netray processes never interleave.
    pub fn lock(&self) -> Result<PinLock> {
        let dir = fs::File::open(&self.root).map_err(Error::io(&self.root))?;
        let fd: OwnedFd = dir.into();
        // SAFETY: fd is a valid open descriptor.
        if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Error::io(&self.root)(std::io::Error::last_os_error()));
        }
        Ok(PinLock { _fd: fd })
    }

    /// Removes every pin under the root and the root itself.
    pub fn remove_all(&self) -> Result<()> {
        remove_pins(&self.root)
    }
}

/// Removes a directory of pins and everything in it; one already gone is fine.
pub fn remove_pins(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(dir)(e)),
        _ => Ok(()),
    }
}

/// Held while pinned state changes; released on drop.
#[derive(Debug)]
pub struct PinLock {
    _fd: OwnedFd,
}

// The statfs magic is i64 here, a narrower integer on other targets.
#[allow(clippy::unnecessary_cast)]
fn is_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type().0 as i64 == BPF_FS_MAGIC)
        .unwrap_or(false)
}

fn ensure_bpffs(mountpoint: &Path) -> Result<()> {
    if is_bpffs(mountpoint) {
        return Ok(());
    }
    nix::mount::mount(
        Some("bpf"),
        mountpoint,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| match e {
        nix::errno::Errno::EPERM => Error::NotRoot,
        e => Error::BpffsMissing(mountpoint.to_path_buf(), e.desc().to_string()),
    })
}
