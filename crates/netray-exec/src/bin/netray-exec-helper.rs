//! Test and development helper for netray-exec (not installed by netray):
//!
//!   netray-exec-helper execveat DIR NAME [ARG...]  execveat(open(DIR), NAME, [NAME, ARG...])
//!   netray-exec-helper thread-exec PATH [ARG...]   execve from a second thread (not the leader)
//!   netray-exec-helper wait-exec PATH [ARG...]     read a line from stdin, then execve
//!   netray-exec-helper as-user UID MODE|PATH ...   drop to UID (gid UID, no groups), then run
//!                                                  one of these modes, or exec PATH
//!
//! On a failed exec it prints the error and exits 127.
use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStringExt;

fn cstrings(args: &[OsString]) -> Vec<CString> {
    args.iter()
        .map(|a| CString::new(a.clone().into_vec()).expect("no NUL in arguments"))
        .collect()
}

/// execve(path, argv) with the current environment; returns only on failure.
fn exec(path: &CString, argv: &[CString]) -> ! {
    let err = nix::unistd::execv(path, argv).unwrap_err();
    eprintln!("exec {}: {err}", path.to_string_lossy());
    std::process::exit(127)
}

fn main() {
    run(std::env::args_os().skip(1).collect())
}

fn run(mut args: Vec<OsString>) {
    if args.is_empty() {
        eprintln!("usage: netray-exec-helper execveat|thread-exec|wait-exec|as-user ...");
        std::process::exit(2);
    }
    let mode = args.remove(0).into_string().unwrap_or_default();
    match mode.as_str() {
        "execveat" => {
            use std::os::fd::AsRawFd;
            let c = cstrings(&args);
            let flags = nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY;
            let dir = nix::fcntl::open(c[0].as_c_str(), flags, nix::sys::stat::Mode::empty())
                .expect("open DIR");
            let argv: Vec<*const libc::c_char> = c[1..]
                .iter()
                .map(|s| s.as_ptr())
                .chain([std::ptr::null()])
                .collect();
            let envp = [std::ptr::null::<libc::c_char>()];
            // SAFETY: NULL-terminated arrays of valid C strings.
            unsafe {
                libc::syscall(
                    libc::SYS_execveat,
                    dir.as_raw_fd(),
                    c[1].as_ptr(),
                    argv.as_ptr(),
                    envp.as_ptr(),
                    0,
                )
            };
            eprintln!(
                "execveat {}: {}",
                c[1].to_string_lossy(),
                std::io::Error::last_os_error()
            );
            std::process::exit(127)
        }
        "thread-exec" => {
            let c = cstrings(&args);
            let t = std::thread::spawn(move || exec(&c[0], &c));
            let _ = t.join();
            std::process::exit(1)
        }
        "wait-exec" => {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            let c = cstrings(&args);
            exec(&c[0], &c)
        }
        "as-user" => {
            let uid: u32 = args
                .remove(0)
                .into_string()
                .ok()
                .and_then(|s| s.parse().ok())
                .expect("UID");
            nix::unistd::setgroups(&[]).expect("setgroups");
            nix::unistd::setgid(nix::unistd::Gid::from_raw(uid)).expect("setgid");
            // Leaving uid 0 clears the effective capabilities.
            nix::unistd::setuid(nix::unistd::Uid::from_raw(uid)).expect("setuid");
            let known = ["execveat", "thread-exec", "wait-exec"];
            if args.first().is_some_and(|a| known.iter().any(|k| a == k)) {
                run(args)
            } else {
                let c = cstrings(&args);
                exec(&c[0], &c)
            }
        }
        other => {
            eprintln!("unknown mode {other}");
            std::process::exit(2)
        }
    }
}
