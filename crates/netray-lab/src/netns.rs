//! Running code inside a named network namespace.
//!
//! `setns(CLONE_NEWNET)` changes only the calling thread, so the closure runs
//! on a fresh scoped thread that enters `/run/netns/<ns>` and then exits: the
//! caller never leaves its own namespace, and sockets created by the closure
//! stay in the lab's namespace for as long as they live.

use std::fs::File;
use std::path::PathBuf;

use nix::sched::{setns, CloneFlags};

use crate::error::{LabError, Result};

/// Where `ip netns add` keeps its namespaces.
pub(crate) const NETNS_DIR: &str = "/run/netns";

pub(crate) fn path(netns: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(netns)
}

pub(crate) fn exists(netns: &str) -> bool {
    path(netns).exists()
}

/// Runs `f` on a thread inside `netns`. A panic in `f` is resumed in the
/// caller, so assertions inside the closure fail the test as usual.
pub(crate) fn run_in<F, R>(netns: &str, f: F) -> Result<R>
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    let file = File::open(path(netns))
        .map_err(|e| LabError::io(format!("opening {}", path(netns).display()), e))?;
    std::thread::scope(|scope| {
        let handle = scope.spawn(move || -> Result<R> {
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| {
                LabError::privileged(format!("entering network namespace {netns}"), e.into())
            })?;
            drop(file);
            Ok(f())
        });
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
