//! Decoding the kernel's exec records (`nr_exec_event`, from exec_abi.h via
//! BTF) into [`ExecEvent`], and errno names.

use std::mem::{offset_of, size_of};
use std::time::{Duration, SystemTime};

use netray_core::clock::MonotonicClock;
use netray_ebpf::abi::{self, nr_exec_event, nr_exec_flags};

/// Which syscall made the exec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syscall {
    Execve,
    Execveat,
}

impl Syscall {
    pub fn name(self) -> &'static str {
        match self {
            Syscall::Execve => "execve",
            Syscall::Execveat => "execveat",
        }
    }
}

/// One exec, as reported when the syscall returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecEvent {
    /// Wall-clock time of the syscall's return.
    pub time: SystemTime,
    /// The same instant on CLOCK_MONOTONIC (what the kernel recorded), in ns.
    pub monotonic_ns: u64,
    /// Time spent in the syscall.
    pub duration: Duration,
    /// Process (thread group) id; exec does not change it.
    pub pid: u32,
    /// Thread that called exec; after a successful exec from a non-leader
    /// thread the process continues as `pid`.
    pub tid: u32,
    pub ppid: u32,
    /// Real uid of the caller.
    pub uid: u32,
    /// The new program's name on success, the caller's when the exec failed.
    pub comm: String,
    /// The path as passed to the syscall (relative to `dirfd` for execveat),
    /// with "..." appended if it was cut.
    pub filename: String,
    /// Captured arguments: at most [`MAX_ARGS`], each cut to [`MAX_ARG_LEN`]
    /// bytes with "..." appended; unreadable ones are `<unreadable>`.
    pub argv: Vec<String>,
    /// Some argument was cut, or there were more than [`MAX_ARGS`].
    pub argv_truncated: bool,
    /// The syscall's return value: 0 or -errno.
    pub ret: i32,
    pub syscall: Syscall,
    /// execveat's directory fd (AT_FDCWD, -100, for execve).
    pub dirfd: i32,
}

/// Arguments captured per exec (NR_EXEC_ARGS).
pub const MAX_ARGS: usize = abi::nr_exec_limits::NR_EXEC_ARGS.0 as usize;
/// Bytes kept per argument, without the NUL (NR_EXEC_ARG_LEN - 1).
pub const MAX_ARG_LEN: usize = abi::nr_exec_limits::NR_EXEC_ARG_LEN.0 as usize - 1;

/// Marks text cut by the kernel-side limits.
pub const TRUNCATION_MARK: &str = "...";

impl ExecEvent {
    /// The error number if the exec failed.
    pub fn errno(&self) -> Option<i32> {
        (self.ret < 0).then_some(-self.ret)
    }

    /// The error's name (e.g. "ENOENT") if the exec failed.
    pub fn errno_name(&self) -> Option<String> {
        self.errno().map(errno_name)
    }

    /// "0" on success, else the errno name.
    pub fn result(&self) -> String {
        self.errno_name().unwrap_or_else(|| self.ret.to_string())
    }
}

/// Name of an errno value ("ENOENT"), or "errno N" for one libc does not know.
pub fn errno_name(errno: i32) -> String {
    match nix::errno::Errno::from_raw(errno) {
        nix::errno::Errno::UnknownErrno => format!("errno {errno}"),
        e => format!("{e:?}"),
    }
}

/// Why a ring record could not be decoded (a kernel/user ABI mismatch).
#[derive(Debug, thiserror::Error)]
#[error("exec record of {0} bytes is shorter than its fixed part ({1} bytes)")]
pub struct DecodeError(usize, usize);

/// Decodes one ring record. The kernel sends only the argv rows in use, so the
/// record may be shorter than `nr_exec_event`; the rest reads as zeros.
pub fn decode(bytes: &[u8], clock: &MonotonicClock) -> Result<ExecEvent, DecodeError> {
    const FULL: usize = size_of::<nr_exec_event>();
    let fixed = offset_of!(nr_exec_event, argv);
    if bytes.len() < fixed {
        return Err(DecodeError(bytes.len(), fixed));
    }
    let mut buf = [0u8; FULL];
    let n = bytes.len().min(FULL);
    buf[..n].copy_from_slice(&bytes[..n]);
    let raw: nr_exec_event = abi::from_bytes(&buf).expect("buffer is exactly one record");
    Ok(from_raw(&raw, clock))
}

fn from_raw(e: &nr_exec_event, clock: &MonotonicClock) -> ExecEvent {
    let flags = e.flags;
    let has = |f: nr_exec_flags| flags & f.0 != 0;
    let argc = (e.argc as usize).min(MAX_ARGS);

    let mut filename = c_string(&e.filename);
    if has(nr_exec_flags::NR_EXEC_FILENAME_FAULT) {
        filename = "<unreadable>".into();
    } else if has(nr_exec_flags::NR_EXEC_FILENAME_TRUNCATED) {
        filename.push_str(TRUNCATION_MARK);
    }

    let mut argv_truncated = has(nr_exec_flags::NR_EXEC_ARGV_MORE);
    let argv = (0..argc)
        .map(|i| {
            if e.arg_fault & (1 << i) != 0 {
                return "<unreadable>".to_string();
            }
            let mut s = c_string(&e.argv[i]);
            if e.arg_truncated & (1 << i) != 0 {
                argv_truncated = true;
                s.push_str(TRUNCATION_MARK);
            }
            s
        })
        .collect();

    ExecEvent {
        time: clock.to_system(e.ts_ns),
        monotonic_ns: e.ts_ns,
        duration: Duration::from_nanos(e.duration_ns),
        pid: e.pid,
        tid: e.tid,
        ppid: e.ppid,
        uid: e.uid,
        comm: c_string(&e.comm),
        filename,
        argv,
        argv_truncated,
        ret: e.ret,
        syscall: if has(nr_exec_flags::NR_EXEC_AT) {
            Syscall::Execveat
        } else {
            Syscall::Execve
        },
        dirfd: e.dirfd,
    }
}

/// A NUL-terminated kernel string (C `char`, i8 here) as UTF-8, lossily.
fn c_string(chars: &[i8]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .map(|&c| c as u8)
        .take_while(|&c| c != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(dst: &mut [i8], s: &str) {
        for (d, b) in dst.iter_mut().zip(s.bytes()) {
            *d = b as i8;
        }
    }

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(libc::ENOENT), "ENOENT");
        assert_eq!(errno_name(libc::EACCES), "EACCES");
        assert_eq!(errno_name(4095), "errno 4095");
    }

    #[test]
    fn short_record_decodes_with_marks() {
        let mut raw = nr_exec_event {
            pid: 7,
            ret: -libc::ENOENT,
            argc: 2,
            arg_truncated: 0b10,
            flags: nr_exec_flags::NR_EXEC_AT.0 | nr_exec_flags::NR_EXEC_ARGV_MORE.0,
            ..Default::default()
        };
        put(&mut raw.comm, "sh");
        put(&mut raw.filename, "/bin/x");
        put(&mut raw.argv[0], "x");
        put(&mut raw.argv[1], "long");
        let bytes = abi::bytes_of(&raw);
        // The kernel sends only the rows in use.
        let cut = offset_of!(nr_exec_event, argv) + 2 * (MAX_ARG_LEN + 1);
        let ev = decode(&bytes[..cut], &MonotonicClock::new()).unwrap();
        assert_eq!(ev.pid, 7);
        assert_eq!(ev.comm, "sh");
        assert_eq!(ev.filename, "/bin/x");
        assert_eq!(ev.argv, vec!["x".to_string(), "long...".to_string()]);
        assert!(ev.argv_truncated);
        assert_eq!(ev.syscall, Syscall::Execveat);
        assert_eq!(ev.result(), "ENOENT");
        assert!(decode(&bytes[..10], &MonotonicClock::new()).is_err());
    }
}
