//! One error type for the loader layer. Every message names the problem and,
//! where there is one, the fix.

use std::{io, path::PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not running as root: netray loads BPF programs and needs CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN — run it as root (e.g. with sudo)")]
    NotRoot,

    #[error("BPF is unavailable on this kernel ({0}): check that CONFIG_BPF_SYSCALL is enabled and that kernel.unprivileged_bpf_disabled or a seccomp policy does not block bpf()")]
    BpfUnavailable(String),

    #[error("no interface named '{0}' — `ip link` lists the interfaces of this network namespace")]
    NoSuchInterface(String),

    #[error("bpffs is not mounted at {0} and mounting it failed ({1}) — mount it with `mount -t bpf bpf /sys/fs/bpf`")]
    BpffsMissing(PathBuf, String),

    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },

    #[error("{what}: {source}")]
    Bpf { what: String, source: libbpf_rs::Error },

    #[error("{0}")]
    Refused(String),

    #[error("netray is not attached to {0} — attach it with `netray firewall attach -i {0}` (or start `netray monitor -i {0}`)")]
    NotAttached(String),
}

impl Error {
    /// Wraps a libbpf error with what netray was doing.
    pub fn bpf(what: impl Into<String>) -> impl FnOnce(libbpf_rs::Error) -> Error {
        let what = what.into();
        move |source| Error::Bpf { what, source }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
