//! Which kernel hook feeds the tracer, chosen at run time by trying to load
//! and attach each one: kernels differ (kprobes compiled out, fentry refused,
//! tracefs unmounted), and only the kernel can say what it accepts.

use std::fmt;
use std::path::Path;

use crate::event::errno_name;
use crate::loader::{fentry_targets, Failure, LoadConfig, Loaded, Stage};

/// A set of hooks that feeds the same kernel logic (exec.bpf.c).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// syscalls:sys_{enter,exit}_execve[at]: stable ABI, runs only on exec.
    Tracepoint,
    /// raw_syscalls sys_enter/sys_exit: needs no tracefs, but runs on every syscall.
    RawTracepoint,
    /// kprobes on the syscall functions.
    Kprobe,
    /// fentry/fexit on the syscall functions: cheapest, needs BTF and trampolines.
    Fentry,
}

impl Backend {
    /// Auto order: stable and exec-only first, every-syscall hooks last.
    pub const AUTO_ORDER: [Backend; 4] = [
        Backend::Tracepoint,
        Backend::Fentry,
        Backend::Kprobe,
        Backend::RawTracepoint,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Tracepoint => "tracepoint",
            Backend::RawTracepoint => "raw-tracepoint",
            Backend::Kprobe => "kprobe",
            Backend::Fentry => "fentry",
        }
    }

    /// The hooks used, for messages.
    pub fn hooks(self) -> String {
        match self {
            Backend::Tracepoint => "syscalls:sys_enter_execve[at]".into(),
            Backend::RawTracepoint => "raw_syscalls:sys_enter/sys_exit".into(),
            Backend::Kprobe => "ksyscall execve[at]".into(),
            Backend::Fentry => format!("fentry {}[at]", fentry_targets().0),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the user asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// The first the kernel accepts, in the order tracepoint, fentry, kprobe, raw-tracepoint.
    #[default]
    Auto,
    Tracepoint,
    RawTracepoint,
    Kprobe,
    Fentry,
}

impl BackendChoice {
    fn candidates(self) -> Vec<Backend> {
        match self {
            BackendChoice::Auto => Backend::AUTO_ORDER.to_vec(),
            BackendChoice::Tracepoint => vec![Backend::Tracepoint],
            BackendChoice::RawTracepoint => vec![Backend::RawTracepoint],
            BackendChoice::Kprobe => vec![Backend::Kprobe],
            BackendChoice::Fentry => vec![Backend::Fentry],
        }
    }
}

/// A backend the kernel did not accept, and the reason as far as it can be told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub backend: Backend,
    /// Where it failed: "open", "load" or "attach <hook>".
    pub stage: String,
    pub errno: Option<i32>,
    /// What the kernel lacks, when it can be told from outside.
    pub reason: Option<String>,
    /// libbpf's full error, for -v and logs.
    pub detail: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.backend {
            Backend::Kprobe => "kprobes",
            b => b.name(),
        };
        let errno = self
            .errno
            .map(errno_name)
            .unwrap_or_else(|| self.detail.clone());
        match (&self.reason, self.errno) {
            (Some(reason), _) => {
                write!(f, "{what} unavailable ({reason}; {}: {errno})", self.stage)
            }
            (None, Some(libc::EPERM | libc::EACCES)) => {
                write!(f, "{what} refused by kernel ({}: {errno})", self.stage)
            }
            (None, _) => write!(f, "{what} failed ({}: {errno})", self.stage),
        }
    }
}

/// The outcome of backend selection, for -v and errors.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendReport {
    pub chosen: Option<Backend>,
    /// Backends tried and refused (in auto mode with `explain`, also the ones
    /// after the chosen one).
    pub refused: Vec<Refusal>,
    /// With `explain`: backends after the chosen one that work too.
    pub also_available: Vec<Backend>,
    /// Things done to the system on the way (e.g. mounting tracefs).
    pub notes: Vec<String>,
}

impl fmt::Display for BackendReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.chosen {
            Some(b) => write!(f, "backend: {b} ({})", b.hooks())?,
            None => write!(f, "no usable backend")?,
        }
        let refused: Vec<String> = self.refused.iter().map(Refusal::to_string).collect();
        if !refused.is_empty() {
            write!(f, "; {}", refused.join(", "))?;
        }
        if !self.also_available.is_empty() {
            let names: Vec<&str> = self.also_available.iter().map(|b| b.name()).collect();
            write!(f, "; also available: {}", names.join(", "))?;
        }
        for note in &self.notes {
            write!(f, "; {note}")?;
        }
        Ok(())
    }
}

/// Loads the first backend of `choice` that the kernel accepts. With
/// `explain`, also tries the remaining auto candidates (then unloads them) so
/// the report says why each was not used.
pub(crate) fn select(
    choice: BackendChoice,
    cfg: &LoadConfig,
    explain: bool,
) -> (Option<Loaded>, BackendReport) {
    let mut report = BackendReport::default();
    let mut loaded = None;
    for backend in choice.candidates() {
        if loaded.is_some() && !explain {
            break;
        }
        match try_backend(backend, cfg, &mut report.notes) {
            Ok(l) if loaded.is_none() => {
                report.chosen = Some(backend);
                loaded = Some(l);
            }
            Ok(_) => report.also_available.push(backend), // dropped (detached) at once
            Err(r) => report.refused.push(r),
        }
    }
    (loaded, report)
}

fn try_backend(
    backend: Backend,
    cfg: &LoadConfig,
    notes: &mut Vec<String>,
) -> Result<Loaded, Refusal> {
    if backend == Backend::Tracepoint {
        match ensure_tracefs() {
            Ok(Some(note)) => notes.push(note),
            Ok(None) => {}
            Err(errno) => {
                return Err(Refusal {
                    backend,
                    stage: "mount tracefs".into(),
                    errno: Some(errno),
                    reason: Some("tracefs is not mounted and could not be mounted".into()),
                    detail: format!("mount -t tracefs tracefs {TRACEFS}: {}", errno_name(errno)),
                })
            }
        }
    }
    // The verifier gives up with EAGAIN (or EINTR) when a signal arrives
    // while it works; on a busy machine that is a passing fault, not the
    // kernel's answer: try again a few times before calling it a refusal.
    let mut attempts = 0;
    loop {
        match Loaded::open(backend, cfg) {
            Err(f)
                if matches!(f.stage, Stage::Load)
                    && matches!(f.errno, Some(libc::EAGAIN) | Some(libc::EINTR))
                    && attempts < 5 =>
            {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(20 * attempts));
            }
            r => return r.map_err(|f| refusal(backend, f)),
        }
    }
}

fn refusal(backend: Backend, f: Failure) -> Refusal {
    let stage = match &f.stage {
        Stage::Open => "open".to_string(),
        Stage::Load => "load".to_string(),
        Stage::Attach(hook) => format!("attach {hook}"),
    };
    Refusal {
        backend,
        stage,
        errno: f.errno,
        reason: diagnose(backend, &f),
        detail: f.message,
    }
}

/// What the kernel lacks, from what it exposes, once it refused a backend.
fn diagnose(backend: Backend, f: &Failure) -> Option<String> {
    let exists = |p: &str| Path::new(p).exists();
    match backend {
        Backend::Kprobe if matches!(f.stage, Stage::Attach(_)) => {
            if exists("/sys/bus/event_source/devices/kprobe") {
                return None;
            }
            // Without the PMU libbpf falls back to tracefs kprobe_events,
            // which only tells something when tracefs is mounted.
            let tracefs = [TRACEFS, "/sys/kernel/debug/tracing"]
                .into_iter()
                .find(|d| exists(&format!("{d}/events")));
            match tracefs {
                Some(d) if !exists(&format!("{d}/kprobe_events")) => {
                    Some("CONFIG_KPROBES not set: no kprobe PMU, no kprobe_events".into())
                }
                Some(_) => None,
                None => Some("no kprobe PMU: CONFIG_KPROBE_EVENTS not set".into()),
            }
        }
        Backend::Fentry if !exists("/sys/kernel/btf/vmlinux") => {
            Some("no kernel BTF: CONFIG_DEBUG_INFO_BTF not set".into())
        }
        Backend::Fentry if f.stage == Stage::Open && f.errno == Some(libc::ESRCH) => {
            Some(format!("{} not in kernel BTF", fentry_targets().0))
        }
        Backend::Tracepoint if matches!(f.stage, Stage::Attach(_)) => {
            let syscalls = exists(&format!("{TRACEFS}/events/syscalls/sys_enter_execve"))
                || exists("/sys/kernel/debug/tracing/events/syscalls/sys_enter_execve");
            (!syscalls).then(|| {
                "no syscalls:sys_enter_execve tracepoint: CONFIG_FTRACE_SYSCALLS not set"
                    .to_string()
            })
        }
        _ => {
            // Under lockdown=confidentiality the kernel refuses tracing programs.
            let lockdown = std::fs::read_to_string("/sys/kernel/security/lockdown").ok()?;
            lockdown
                .contains("[confidentiality]")
                .then(|| "kernel lockdown=confidentiality".to_string())
        }
    }
}

const TRACEFS: &str = "/sys/kernel/tracing";

/// libbpf finds tracepoint ids in tracefs (or debugfs/tracing): mount tracefs
/// if neither is there. Returns a note when it mounted, the errno on failure.
fn ensure_tracefs() -> Result<Option<String>, i32> {
    if Path::new(TRACEFS).join("events").exists()
        || Path::new("/sys/kernel/debug/tracing/events").exists()
    {
        return Ok(None);
    }
    nix::mount::mount(
        Some("tracefs"),
        TRACEFS,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| e as i32)?;
    Ok(Some(format!("mounted tracefs at {TRACEFS}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_reads_like_one_line() {
        let report = BackendReport {
            chosen: Some(Backend::Tracepoint),
            refused: vec![
                Refusal {
                    backend: Backend::Fentry,
                    stage: "load".into(),
                    errno: Some(libc::EPERM),
                    reason: None,
                    detail: String::new(),
                },
                Refusal {
                    backend: Backend::Kprobe,
                    stage: "attach ksyscall/execve".into(),
                    errno: Some(libc::ENOENT),
                    reason: Some("CONFIG_KPROBES not set".into()),
                    detail: String::new(),
                },
            ],
            also_available: vec![Backend::RawTracepoint],
            notes: vec![],
        };
        assert_eq!(
            report.to_string(),
            "backend: tracepoint (syscalls:sys_enter_execve[at]); fentry refused by kernel (load: EPERM), \
             kprobes unavailable (CONFIG_KPROBES not set; attach ksyscall/execve: ENOENT); \
             also available: raw-tracepoint"
        );
    }
}
