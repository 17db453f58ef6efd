//! netray exec: process exec events (execve/execveat) from the kernel, with
//! the syscall's result.
//!
//! The kernel side is `netray-ebpf`'s `exec.bpf.c`: arguments are captured at
//! syscall entry and the record is sent at exit, so failed execs are reported
//! with their errno. Filters run in the kernel. The hook (tracepoint, raw
//! tracepoint, kprobe or fentry) is chosen at run time from what the kernel
//! accepts.
//!
//! ```no_run
//! use netray_exec::{ExecTracer, Filter};
//! use std::time::Duration;
//!
//! let mut tracer = ExecTracer::start(Filter { comm: Some("curl".into()), ..Default::default() })?;
//! for ev in tracer.poll(Duration::from_secs(1))? {
//!     println!("{} {} {:?} -> {}", ev.pid, ev.filename, ev.argv, ev.result());
//! }
//! println!("lost: {}", tracer.lost());
//! # Ok::<(), netray_exec::ExecError>(())
//! ```

pub mod backend;
pub mod bench;
pub mod event;
pub mod filter;
mod loader;
pub mod output;
mod privilege;
pub mod tracer;

pub use backend::{Backend, BackendChoice, BackendReport, Refusal};
pub use event::{errno_name, ExecEvent, Syscall};
pub use filter::Filter;
pub use privilege::can_trace;
pub use tracer::{ExecError, ExecStats, ExecTracer, TracerOptions};
