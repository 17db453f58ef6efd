//! The process the measured bursts run in: forked before any tracer exists,
//! so it does not share the tracer's ring mapping (whose page tables every
//! fork() would copy), and driven over two pipes.

use std::ffi::CString;
use std::time::Duration;

/// A child process that runs bursts on request: it gets a count on one pipe,
/// does that many fork + execve + waitpid, and answers with the elapsed
/// nanoseconds and the number of failed runs on another.
pub(super) struct Runner {
    pub pid: libc::pid_t,
    cmd: std::fs::File,
    reply: std::fs::File,
}

impl Runner {
    pub fn start(program: &CString) -> anyhow::Result<Runner> {
        use std::os::fd::{AsRawFd, OwnedFd};
        let (cmd_r, cmd_w): (OwnedFd, OwnedFd) = nix::unistd::pipe()?;
        let (reply_r, reply_w): (OwnedFd, OwnedFd) = nix::unistd::pipe()?;
        let argv = [program.as_ptr(), std::ptr::null()];
        let envp = [std::ptr::null()];
        // SAFETY: the child runs only async-signal-safe calls (read, write,
        // fork, execve, waitpid, clock_gettime, _exit) on data prepared
        // before the fork, so this is sound even if the caller has threads.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            anyhow::bail!("fork: {}", std::io::Error::last_os_error());
        }
        if pid == 0 {
            unsafe {
                runner_loop(
                    cmd_r.as_raw_fd(),
                    reply_w.as_raw_fd(),
                    program.as_ptr(),
                    &argv,
                    &envp,
                )
            }
        }
        Ok(Runner {
            pid,
            cmd: cmd_w.into(),
            reply: reply_r.into(),
        })
    }

    /// Wall time of `n` sequential fork + execve + waitpid in the runner.
    pub fn burst(&mut self, n: usize) -> anyhow::Result<Duration> {
        use std::io::{Read, Write};
        self.cmd.write_all(&(n as u64).to_ne_bytes())?;
        let mut reply = [0u8; 16];
        self.reply.read_exact(&mut reply)?;
        let ns = u64::from_ne_bytes(reply[..8].try_into().unwrap());
        let failed = u64::from_ne_bytes(reply[8..].try_into().unwrap());
        anyhow::ensure!(failed == 0, "{failed} of {n} runs did not exit 0");
        Ok(Duration::from_nanos(ns))
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        // A zero count tells the runner to exit.
        let _ = std::io::Write::write_all(&mut self.cmd, &0u64.to_ne_bytes());
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(self.pid, std::ptr::null_mut(), 0) };
    }
}

/// The runner's body. Never returns.
///
/// # Safety
/// Called in a freshly forked child; the pointers must stay valid (they are
/// the parent's, copied by fork).
unsafe fn runner_loop(
    cmd: i32,
    reply: i32,
    program: *const libc::c_char,
    argv: &[*const libc::c_char; 2],
    envp: &[*const libc::c_char; 1],
) -> ! {
    let now_ns = || {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    };
    loop {
        let mut n = [0u8; 8];
        if libc::read(cmd, n.as_mut_ptr().cast(), 8) != 8 {
            libc::_exit(0);
        }
        let n = u64::from_ne_bytes(n);
        if n == 0 {
            libc::_exit(0);
        }
        let start = now_ns();
        let mut failed = 0u64;
        for _ in 0..n {
            let pid = libc::fork();
            if pid == 0 {
                libc::execve(program, argv.as_ptr(), envp.as_ptr());
                libc::_exit(127);
            }
            let mut status = 0;
            if pid < 0
                || libc::waitpid(pid, &mut status, 0) < 0
                || !libc::WIFEXITED(status)
                || libc::WEXITSTATUS(status) != 0
            {
                failed += 1;
            }
        }
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&(now_ns() - start).to_ne_bytes());
        out[8..].copy_from_slice(&failed.to_ne_bytes());
        if libc::write(reply, out.as_ptr().cast(), 16) != 16 {
            libc::_exit(1);
        }
    }
}
