//! Opens, configures, loads and attaches the exec skeleton for one backend.
//! Failures keep the stage and errno so backend.rs can say what the kernel
//! refused.

use std::mem::{ManuallyDrop, MaybeUninit};
use std::ptr::NonNull;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, OpenObject};
use netray_ebpf::exec::{ExecSkel, ExecSkelBuilder, OpenExecSkel};

use crate::backend::Backend;
use crate::filter::Filter;

/// Where loading a backend stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    Open,
    Load,
    /// Attaching the program to this hook (its section name).
    Attach(String),
}

#[derive(Debug)]
pub struct Failure {
    pub stage: Stage,
    pub errno: Option<i32>,
    pub message: String,
}

impl Failure {
    fn new(stage: Stage, err: &libbpf_rs::Error) -> Self {
        Failure {
            stage,
            errno: errno_of(err),
            message: format!("{err:#}"),
        }
    }
}

/// What the kernel programs need to know before load.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub filter: Filter,
    /// Ring buffer size in bytes (a power of two, at least a page).
    pub ring_bytes: u32,
    /// Wake the reader once this many bytes wait (0: on every record).
    pub wakeup_bytes: u32,
}

/// A loaded, attached skeleton. The skeleton borrows its object storage, so
/// both live here and are freed in order (links, skeleton, storage).
pub(crate) struct Loaded {
    links: Vec<Link>,
    skel: ManuallyDrop<ExecSkel<'static>>,
    storage: NonNull<MaybeUninit<OpenObject>>,
}

impl Drop for Loaded {
    fn drop(&mut self) {
        self.links.clear();
        // SAFETY: the skeleton is dropped exactly once, here, before the
        // storage it borrows; the storage came from Box::into_raw.
        unsafe {
            ManuallyDrop::drop(&mut self.skel);
            drop(Box::from_raw(self.storage.as_ptr()));
        }
    }
}

/// Heap storage for the libbpf object, freed on drop unless handed to Loaded.
struct Storage(Option<NonNull<MaybeUninit<OpenObject>>>);

impl Storage {
    fn new() -> Self {
        Storage(Some(NonNull::from(Box::leak(Box::new(
            MaybeUninit::uninit(),
        )))))
    }

    /// SAFETY: the caller must drop every borrow before this Storage (or the
    /// Loaded it is moved into) frees the memory.
    unsafe fn get(&self) -> &'static mut MaybeUninit<OpenObject> {
        &mut *self.0.expect("storage taken").as_ptr()
    }

    fn take(mut self) -> NonNull<MaybeUninit<OpenObject>> {
        self.0.take().expect("storage taken")
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            // SAFETY: from Box::leak in new(), and no borrow outlives us.
            drop(unsafe { Box::from_raw(p.as_ptr()) });
        }
    }
}

impl Loaded {
    pub fn open(backend: Backend, cfg: &LoadConfig) -> Result<Loaded, Failure> {
        let storage = Storage::new();
        // SAFETY: `open` and everything made from it is declared after
        // `storage`, so it is dropped first on every error path; on success
        // the pointer moves into Loaded, which drops the skeleton first.
        let mut open = ExecSkelBuilder::default()
            .open(unsafe { storage.get() })
            .map_err(|e| Failure::new(Stage::Open, &e))?;
        configure(&mut open, backend, cfg).map_err(|e| Failure::new(Stage::Open, &e))?;
        let skel = open.load().map_err(|e| Failure::new(Stage::Load, &e))?;
        let links = attach(&skel, backend)?;
        Ok(Loaded {
            links,
            skel: ManuallyDrop::new(skel),
            storage: storage.take(),
        })
    }

    pub fn skel(&self) -> &ExecSkel<'static> {
        &self.skel
    }

    /// Total run time and run count of the loaded programs, as the kernel
    /// accounts them while BPF stats are enabled (see [`enable_run_stats`]).
    pub fn run_stats(&self) -> (u64, u64) {
        use libbpf_rs::skel::Skel;
        use libbpf_rs::AsRawLibbpf;
        let (mut ns, mut runs) = (0, 0);
        for prog in self.skel.object().progs() {
            // SAFETY: a valid program of our object; -1 when not loaded.
            let fd = unsafe { libbpf_sys::bpf_program__fd(prog.as_libbpf_object().as_ptr()) };
            if fd < 0 {
                continue;
            }
            let mut info = libbpf_sys::bpf_prog_info::default();
            let mut len = std::mem::size_of_val(&info) as u32;
            // SAFETY: info is a bpf_prog_info of `len` bytes.
            if unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd, &mut info, &mut len) } == 0 {
                ns += info.run_time_ns;
                runs += info.run_cnt;
            }
        }
        (ns, runs)
    }
}

/// Makes the kernel account BPF program run time until the fd is closed
/// (BPF_ENABLE_STATS). None when the kernel refuses.
pub fn enable_run_stats() -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain syscall wrapper; a non-negative result is an fd we own.
    let fd = unsafe { libbpf_sys::bpf_enable_stats(libbpf_sys::BPF_STATS_RUN_TIME) };
    // SAFETY: see above.
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

fn configure(
    open: &mut OpenExecSkel<'static>,
    backend: Backend,
    cfg: &LoadConfig,
) -> libbpf_rs::Result<()> {
    let p = &mut open.progs;
    match backend {
        Backend::Tracepoint => {
            for prog in [
                &mut p.exec_tp_enter_execve,
                &mut p.exec_tp_enter_execveat,
                &mut p.exec_tp_exit_execve,
                &mut p.exec_tp_exit_execveat,
                &mut p.exec_tp_sched_exec,
            ] {
                prog.set_autoload(true);
            }
        }
        Backend::RawTracepoint => {
            for prog in [
                &mut p.exec_raw_enter,
                &mut p.exec_raw_exit,
                &mut p.exec_raw_sched_exec,
            ] {
                prog.set_autoload(true);
            }
        }
        Backend::Kprobe => {
            for prog in [
                &mut p.exec_kprobe_execve,
                &mut p.exec_kprobe_execveat,
                &mut p.exec_kretprobe_execve,
                &mut p.exec_kretprobe_execveat,
                &mut p.exec_raw_sched_exec,
            ] {
                prog.set_autoload(true);
            }
        }
        Backend::Fentry => {
            let (execve, execveat) = fentry_targets();
            p.exec_fentry_execve
                .set_attach_target(0, Some(execve.into()))?;
            p.exec_fexit_execve
                .set_attach_target(0, Some(execve.into()))?;
            p.exec_fentry_execveat
                .set_attach_target(0, Some(execveat.into()))?;
            p.exec_fexit_execveat
                .set_attach_target(0, Some(execveat.into()))?;
            for prog in [
                &mut p.exec_fentry_execve,
                &mut p.exec_fentry_execveat,
                &mut p.exec_fexit_execve,
                &mut p.exec_fexit_execveat,
                &mut p.exec_btf_sched_exec,
            ] {
                prog.set_autoload(true);
            }
        }
    }

    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .expect("exec.bpf.c has .rodata");
    let k = &mut rodata.exec_cfg;
    let f = &cfg.filter;
    k.flags = f.kernel_flags();
    k.pid = f.pid.unwrap_or(0);
    k.uid = f.uid.unwrap_or(0);
    k.nr_execve = libc::SYS_execve as u32;
    k.nr_execveat = libc::SYS_execveat as u32;
    k.wakeup_bytes = cfg.wakeup_bytes;
    if let Ok(Some(comm)) = f.kernel_comm() {
        for (d, s) in k.comm.iter_mut().zip(comm) {
            *d = s as i8;
        }
    }
    open.maps.exec_events.set_max_entries(cfg.ring_bytes)?;
    Ok(())
}

fn attach(skel: &ExecSkel<'static>, backend: Backend) -> Result<Vec<Link>, Failure> {
    let p = &skel.progs;
    let progs = match backend {
        Backend::Tracepoint => vec![
            &p.exec_tp_enter_execve,
            &p.exec_tp_enter_execveat,
            &p.exec_tp_exit_execve,
            &p.exec_tp_exit_execveat,
            &p.exec_tp_sched_exec,
        ],
        Backend::RawTracepoint => vec![&p.exec_raw_enter, &p.exec_raw_exit, &p.exec_raw_sched_exec],
        Backend::Kprobe => vec![
            &p.exec_kprobe_execve,
            &p.exec_kprobe_execveat,
            &p.exec_kretprobe_execve,
            &p.exec_kretprobe_execveat,
            &p.exec_raw_sched_exec,
        ],
        Backend::Fentry => vec![
            &p.exec_fentry_execve,
            &p.exec_fentry_execveat,
            &p.exec_fexit_execve,
            &p.exec_fexit_execveat,
            &p.exec_btf_sched_exec,
        ],
    };
    progs
        .into_iter()
        .map(|prog| {
            // The section names the hook (e.g. tracepoint/syscalls/sys_enter_execve),
            // so libbpf's generic attach picks the right kind.
            prog.attach().map_err(|e| {
                let hook = prog
                    .section()
                    .to_string_lossy()
                    .trim_start_matches('?')
                    .to_string();
                Failure::new(Stage::Attach(hook), &e)
            })
        })
        .collect()
}

/// The syscall functions fentry attaches to on this architecture (exec.bpf.c
/// reads their saved user registers on x86-64 and arm64 only).
pub fn fentry_targets() -> (&'static str, &'static str) {
    if cfg!(target_arch = "aarch64") {
        ("__arm64_sys_execve", "__arm64_sys_execveat")
    } else {
        ("__x64_sys_execve", "__x64_sys_execveat")
    }
}

/// The errno behind a libbpf-rs error. libbpf-rs keeps it in an io::Error it
/// does not expose, so read it from the "(os error N)" std prints.
pub fn errno_of(err: &libbpf_rs::Error) -> Option<i32> {
    let text = format!("{err:#}");
    let at = text.rfind("os error ")? + "os error ".len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_is_read_from_libbpf_errors() {
        let e = libbpf_rs::Error::from_raw_os_error(libc::EPERM);
        assert_eq!(errno_of(&e), Some(libc::EPERM));
    }
}
