//! Shared by the integration tests. They load BPF programs, so they need root
//! and fail (never skip) without it. Other tests exec things concurrently:
//! every assertion picks its own events by pid, filename or a unique comm.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use netray_exec::{ExecEvent, ExecTracer};

pub const HELPER: &str = env!("CARGO_BIN_EXE_netray-exec-helper");

pub fn require_root() {
    assert!(
        netray_exec::can_trace(),
        "netray-exec's tests load BPF programs: run them as root (CAP_BPF+CAP_PERFMON or CAP_SYS_ADMIN)"
    );
}

/// Polls until `done` holds for the events collected so far, or panics after
/// `timeout` with what was seen.
pub fn collect_until(
    tracer: &mut ExecTracer,
    timeout: Duration,
    done: impl Fn(&[ExecEvent]) -> bool,
) -> Vec<ExecEvent> {
    let deadline = Instant::now() + timeout;
    let mut all = Vec::new();
    loop {
        all.extend(tracer.poll(Duration::from_millis(100)).expect("poll"));
        if done(&all) {
            return all;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?}; {} events seen:\n{all:#?}",
                all.len()
            );
        }
    }
}

/// A symlink to `target` with a name no other process uses, so its execs have
/// a unique comm (the kernel names the task after the path's last component).
pub struct UniqueProgram {
    dir: PathBuf,
    pub path: PathBuf,
    pub comm: String,
}

impl UniqueProgram {
    pub fn new(tag: &str, target: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let mut comm = format!("nx{tag}{}x{n}", std::process::id());
        comm.truncate(15);
        let dir = std::env::temp_dir().join(format!("netray-exec-test-{comm}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(&comm);
        std::os::unix::fs::symlink(target, &path).unwrap();
        UniqueProgram { dir, path, comm }
    }
}

impl Drop for UniqueProgram {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
