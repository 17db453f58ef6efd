//! `netray exec` end to end (root required): what it prints for an exec, as
//! text and JSON, and its errors for bad input.

mod common;

use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, ChildStderr, Command, Stdio},
};

use common::expected::{transcript, Normalise};
use serde_json::Value;

fn require_root() {
    assert_eq!(unsafe { libc::geteuid() }, 0, "netray exec's tests load BPF programs: run them as root");
}

/// Starts `netray exec -v ARGS` and waits for its backend line on stderr,
/// i.e. until the programs are attached.
fn start(args: &[&str]) -> (Child, BufReader<ChildStderr>) {
    require_root();
    let mut child = Command::new(env!("CARGO_BIN_EXE_netray"))
        .args(["exec", "-v"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("backend: "), "first stderr line: {line:?}");
    (child, stderr)
}

/// Waits for the end; returns stdout and the rest of stderr.
fn finish(mut child: Child, mut stderr: BufReader<ChildStderr>) -> (String, String) {
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let mut err = String::new();
    stderr.read_to_string(&mut err).unwrap();
    assert!(child.wait().unwrap().success(), "stderr: {err}");
    (out, err)
}

#[test]
fn json_lines_have_the_documented_keys() {
    // A shell that execs echo when told: its pid is known before the exec,
    // so `--pid` keeps every other test's execs out.
    require_root();
    let mut shell = Command::new("/bin/sh")
        .args(["-c", r#"read go; exec /bin/echo a "b c""#])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = shell.id().to_string();
    let (child, stderr) = start(&["--json", "--pid", &pid, "-c", "1", "--duration", "20"]);
    std::io::Write::write_all(shell.stdin.as_mut().unwrap(), b"go\n").unwrap();
    assert!(shell.wait().unwrap().success());
    let (out, _) = finish(child, stderr);

    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "one event, one stats line: {out}");
    let ev: Value = serde_json::from_str(lines[0]).unwrap();
    assert!(ev["ts"].as_f64().unwrap() > 1.5e9);
    let stats: Value = serde_json::from_str(lines[1]).unwrap();
    assert!(stats["stats"]["ts"].as_f64().unwrap() > 1.5e9);
    // Keys in their documented order, values exact but for the times and ids.
    Normalise::default()
        .pattern(r#""ts":[0-9.e+]+"#, r#""ts":<TS>"#)
        .literal(&format!(r#""pid":{pid},"#), r#""pid":<PID>,"#)
        .literal(&format!(r#""ppid":{},"#, std::process::id()), r#""ppid":<TEST PID>,"#)
        .pattern(r#""backend":"[a-z-]+""#, r#""backend":<BACKEND>"#)
        .pattern(r#""sent":\d+,"#, r#""sent":<SENT>,"#)
        .check("exec-json", &out);
}

#[test]
fn text_lines_show_time_result_and_quoted_argv() {
    // A failed exec keeps the caller's comm: this test thread's name, which
    // the kernel knows cut to 15 bytes. That keeps other tests' execs out.
    let mut comm = std::thread::current().name().unwrap().to_string();
    comm.truncate(15);
    let missing = format!("/nonexistent-netray-cli-{}", std::process::id());
    let (child, stderr) = start(&["--timestamp", "--failed", "--comm", &comm, "-c", "1", "--duration", "20"]);
    // An exec that works: --failed leaves it out.
    assert!(Command::new("/bin/true").arg("skip me").status().unwrap().success());
    assert!(Command::new(&missing).args(["a", "b c"]).spawn().is_err());
    let (out, err) = finish(child, stderr);

    let pid = std::process::id().to_string();
    // The child's pid (an unknown number of digits, then its column's padding).
    let child_pid = out.lines().nth(1).and_then(|l| l.split_whitespace().nth(1)).unwrap_or("?").to_string();
    let norm = Normalise::default()
        .pattern(&format!(r"\b{child_pid}\b"), "<PID>")
        .pattern(&format!(r"\b{pid}\b"), "<TEST PID>")
        .literal(&missing, "<MISSING>")
        .literal(&comm, "<COMM>")
        .fold_padding();
    norm.check("exec-text", &format!("{out}--- the last stderr line\n{}\n", err.lines().last().unwrap_or("")));
}

/// Bad input: one clear line, the exit code a script can tell apart (2 for
/// usage, 1 for the rest), no panic.
#[test]
fn bad_input_gets_one_clear_error() {
    require_root();
    let mut all = String::new();
    for args in [
        &["exec", "--pid", "abc"][..],
        &["exec", "--pid", "0"],
        &["exec", "--duration", "-1"],
        &["exec", "--backend", "ebpf"],
        &["exec", "-c", "x"],
        &["exec", "--comm", ""],
    ] {
        all.push_str(&transcript(args, &common::netray(args)));
    }
    // Not root: drop privileges for one call.
    let out = common::netray_as_nobody(&["exec", "-c", "1"]);
    all.push_str(&transcript(&["exec", "-c", "1", "(as uid 65534)"], &out));
    Normalise::default().check("exec-errors", &all);
}

#[test]
fn forced_backend_that_fails_is_one_clear_error() {
    require_root();
    // fentry or kprobe, whichever this kernel refuses (this VM refuses both).
    for backend in ["fentry", "kprobe"] {
        let out = common::netray(&["exec", "--backend", backend, "--duration", "0.1"]);
        if out.status.success() {
            continue;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        // The rest of the line is the kernel's reason, which differs between kernels.
        assert!(err.starts_with(&format!("netray: error: --backend {backend}: ")), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        return;
    }
    panic!("both fentry and kprobe work here: nothing to check");
}
