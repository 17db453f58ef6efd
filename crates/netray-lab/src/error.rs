//! The one error type of the crate. Every message names the problem and,
//! where there is one, the fix, because these errors end up in front of a
//! person running `netray lab ...` or reading a failed test.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("not root: creating and entering network namespaces needs CAP_SYS_ADMIN and CAP_NET_ADMIN — run as root")]
    NotRoot,

    #[error(
        "`ip` (iproute2) not found in PATH — install iproute2 (e.g. `apt-get install iproute2`)"
    )]
    IpNotFound,

    #[error("invalid lab name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },

    #[error("lab '{0}' already exists — use it with `Lab::open`, or remove it first with `netray lab down {0}`")]
    Exists(String),

    #[error("lab '{0}' does not exist — create it with `netray lab up {0}`")]
    NotFound(String),

    #[error("lab '{name}' is incomplete ({problem}) — remove it with `netray lab down {name}` and create it again")]
    Broken { name: String, problem: String },

    #[error("no free lab subnet left in 198.18.0.0/15 / fd6e:7261:0::/48 — remove unused labs (`netray lab status`, `netray lab prune`)")]
    NoFreeSubnet,

    #[error("`{cmd}` failed: {stderr}")]
    Command { cmd: String, stderr: String },

    #[error("unexpected output from `{cmd}`: {detail}")]
    Parse { cmd: String, detail: String },

    #[error("lab '{name}': {what} did not happen within {secs:.1}s")]
    Timeout {
        name: String,
        what: String,
        secs: f64,
    },

    #[error("invalid traffic spec: {0}")]
    InvalidSpec(String),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl LabError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        LabError::Io {
            context: context.into(),
            source,
        }
    }

    /// Like [`LabError::io`] for operations that only need privileges to
    /// succeed (setns, raw sockets): EPERM there means "not root".
    pub(crate) fn privileged(context: impl Into<String>, source: io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::EPERM) => LabError::NotRoot,
            _ => LabError::io(context, source),
        }
    }
}

pub type Result<T, E = LabError> = std::result::Result<T, E>;
