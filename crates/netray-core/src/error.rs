//! One error type for the loader layer and the features built on it. Every
//! message names the problem and, where there is one, the fix; callers that
//! must tell errors apart (the daemon's status codes, the CLI's closed pipe)
//! match variants, never the text.

use std::{io, path::PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- the machine ----
    #[error("not running as root: netray loads BPF programs and needs CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN — run it as root (e.g. with sudo)")]
    NotRoot,

    #[error("BPF is unavailable on this kernel ({0}): check that CONFIG_BPF_SYSCALL is enabled and that kernel.unprivileged_bpf_disabled or a seccomp policy does not block bpf()")]
    BpfUnavailable(String),

    #[error("no interface named '{0}' — `ip link` lists the interfaces of this network namespace")]
    NoSuchInterface(String),

    #[error("bpffs is not mounted at {0} and mounting it failed ({1}) — mount it with `mount -t bpf bpf /sys/fs/bpf`")]
    BpffsMissing(PathBuf, String),

    #[error("{} is not on a bpffs: pins must live under a bpf filesystem such as /sys/fs/bpf", .0.display())]
    NotBpffs(PathBuf),

    // ---- calls that failed ----
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },

    #[error("{what}: {source}")]
    Bpf { what: String, source: libbpf_rs::Error },

    /// A system call (or libbpf call that returns an errno) failed; `what`
    /// says what netray was doing, on what.
    #[error("{what}: {source}")]
    Syscall { what: String, source: io::Error },

    /// The kernel refused something netray tried in more than one way (or
    /// without an errno of its own); the message says each way.
    #[error("{0}")]
    KernelRefused(String),

    #[error("native XDP refused on {iface}: {reason} — use --mode generic, or --mode auto to fall back")]
    NativeXdpRefused { iface: String, reason: String },

    // ---- an interface already taken ----
    #[error("netray is not attached to {0} — attach it with `netray firewall attach -i {0}` (or start `netray monitor -i {0}`)")]
    NotAttached(String),

    #[error("the firewall is not attached to {0}, so it has no policy there; nothing changed — attach it first with `netray firewall attach -i {0}`")]
    PolicyNotAttached(String),

    #[error("{iface} already has an XDP program that netray did not load (id {prog_id}, '{name}'); netray will not replace it. Remove it first (`ip link set dev {iface} xdp off`) if it is not needed")]
    ForeignXdp { iface: String, prog_id: u32, name: String },

    #[error("a `netray dump` is capturing on {iface} with its own program (id {prog_id}); stop it, then attach")]
    CaptureInFront { iface: String, prog_id: u32 },

    #[error("another monitor (pid {pid}) is already reading {iface}; stop it first")]
    MonitorBusy { pid: u32, iface: String },

    /// `what` is the rest of "another netray dump … ; stop it first".
    #[error("another netray dump {what}; stop it first")]
    CaptureBusy { what: String },

    #[error("netray was detached from {0} (its pins are gone); flows are no longer counted")]
    DetachedMeanwhile(String),

    #[error("the dispatcher on {0} vanished while attaching")]
    DispatcherVanished(String),

    // ---- pinned state from another netray version ----
    #[error("{} was pinned by an older netray (a plain map, not a global variable's): remove the old state with `netray firewall detach --all`, then attach again", .0.display())]
    PlainMapPin(PathBuf),

    #[error("map {map} holds {size}-byte values, not {want}: pinned state is from another netray version — remove it with `netray firewall detach --all`")]
    WrongValueSize { map: String, size: u32, want: usize },

    #[error("map {map} is not a flow table of this netray version (key {key} / value {value} bytes): detach netray from the interface (`netray firewall detach`) and start again")]
    NotAFlowTable { map: String, key: u32, value: u32 },

    #[error("the rule tables under {} are in format {found} and this netray reads format {want}: they were made by another netray version — remove the old state with `netray firewall detach --all`, then attach again and re-add the rules", .dir.display())]
    TableFormat { dir: PathBuf, found: u32, want: u32 },

    #[error("{} has no fw_rule_hits: it was pinned by an older netray — remove the old state with `netray firewall detach --all`, then attach again", .0.display())]
    NoRuleHits(PathBuf),

    #[error("the shared table {map} does not exist and no owner of the '{prefix}' tables is registered to create it: call the owner's register() (netray_firewall::tables::register) when the program starts")]
    NoTableOwner { map: String, prefix: String },

    // ---- the firewall's rules ----
    #[error("rule already exists as id {id}: {rule}")]
    RuleExists { id: u32, rule: String },

    #[error("rule given twice: {0}")]
    RuleTwice(String),

    #[error("no rule {0} — `netray deny list` shows the rules")]
    NoSuchRule(String),

    #[error("no rule with id {0} — `netray deny list` shows the rules")]
    NoSuchRuleId(u32),

    #[error("the firewall holds at most {0} rules; delete some, or recreate it with a larger --max-rules")]
    TooManyRules(u32),

    #[error("the protocol/port table is full ({entries} entries, {reason}): recreate the firewall with a larger --max-rules")]
    L4TableFull { entries: u32, reason: String },

    /// The rule set does not fit the tables (the compiler's own message).
    #[error("{0}")]
    TablesFull(String),

    /// Something netray itself got wrong (an object built without a
    /// section, a thread that would not start): a bug to report.
    #[error("{0}")]
    Internal(String),

    // ---- requests that cannot be met as asked ----
    /// A request netray cannot carry out as given (an empty hook list, a
    /// filter that does not compile...): the message says what to change.
    #[error("{0}")]
    BadRequest(String),
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

    /// A failed call's errno (positive or negative, as libbpf returns it)
    /// with what netray was doing.
    pub fn errno(what: impl Into<String>, errno: i32) -> Error {
        Error::Syscall { what: what.into(), source: io::Error::from_raw_os_error(errno.abs()) }
    }

    /// The last OS error with what netray was doing.
    pub fn last_os(what: impl Into<String>) -> Error {
        Error::Syscall { what: what.into(), source: io::Error::last_os_error() }
    }

    /// The I/O error underneath, if this is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::Io { source, .. } | Error::Syscall { source, .. } => Some(source),
            _ => None,
        }
    }

    /// True when writing to a pipe whose reader has gone (`netray ... | head`).
    pub fn is_broken_pipe(&self) -> bool {
        self.io_error().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    }
}
