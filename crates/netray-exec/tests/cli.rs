//! `netray exec` end to end, through the helper binary that runs the CLI
//! standalone (root required).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};

use common::{require_root, UniqueProgram, HELPER};
use serde_json::Value;

/// Starts `netray exec -v ARGS` and waits for its backend line on stderr,
/// i.e. until the programs are attached.
fn start_cli(args: &[&str]) -> (Child, BufReader<std::process::ChildStderr>) {
    require_root();
    let mut child = Command::new(HELPER)
        .arg("cli")
        .arg("-v")
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

fn finish(mut child: Child, mut stderr: BufReader<std::process::ChildStderr>) -> (String, String) {
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    stderr.read_to_string(&mut err).unwrap();
    assert!(child.wait().unwrap().success(), "stderr: {err}");
    (out, err)
}

#[test]
fn json_lines_have_the_documented_keys() {
    let prog = UniqueProgram::new("j", "/bin/echo");
    let (child, stderr) = start_cli(&[
        "--json",
        "--comm",
        &prog.comm,
        "-c",
        "1",
        "--duration",
        "20",
    ]);
    let status = Command::new(&prog.path)
        .args(["a", "b c"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let (out, _) = finish(child, stderr);

    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "one event, one stats line: {out}");
    assert!(
        lines[0].starts_with(r#"{"ts":"#),
        "keys in documented order: {}",
        lines[0]
    );
    let ev: Value = serde_json::from_str(lines[0]).unwrap();
    let keys: Vec<&str> = ev.as_object().unwrap().keys().map(String::as_str).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "argv",
            "argv_truncated",
            "comm",
            "errno",
            "filename",
            "pid",
            "ppid",
            "result",
            "ts",
            "uid"
        ]
    );
    assert_eq!(ev["comm"], prog.comm.as_str());
    assert_eq!(ev["filename"], prog.path.to_str().unwrap());
    assert_eq!(
        ev["argv"],
        serde_json::json!([prog.path.to_str().unwrap(), "a", "b c"])
    );
    assert_eq!(ev["argv_truncated"], false);
    assert_eq!(ev["result"], 0);
    assert_eq!(ev["errno"], Value::Null);
    assert_eq!(ev["uid"], 0);
    assert_eq!(ev["ppid"], std::process::id());
    assert!(ev["ts"].as_f64().unwrap() > 1.5e9);

    let stats: Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(stats["stats"]["events"], 1);
    assert_eq!(stats["stats"]["lost"], 0);
}

#[test]
fn text_lines_show_time_result_and_quoted_argv() {
    // A failed exec keeps the caller's comm: this test thread's name, which
    // the kernel knows cut to 15 bytes. That keeps other tests' execs out.
    let mut comm = std::thread::current().name().unwrap().to_string();
    comm.truncate(15);
    let prog = UniqueProgram::new("t", "/bin/echo");
    let missing = format!("/nonexistent-netray-cli-{}", std::process::id());
    let (child, stderr) = start_cli(&[
        "--timestamp",
        "--failed",
        "--comm",
        &comm,
        "-c",
        "1",
        "--duration",
        "20",
    ]);
    let ok = Command::new(&prog.path)
        .arg("skip me")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    assert!(Command::new(&missing).args(["a", "b c"]).spawn().is_err());
    let (out, err) = finish(child, stderr);

    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("TIME "), "{out}");
    assert_eq!(lines.len(), 2, "{out}");
    let line = lines[1];
    let time = line.split_whitespace().next().unwrap();
    assert!(
        time.len() == 12 && time.as_bytes()[2] == b':' && time.as_bytes()[8] == b'.',
        "{line}"
    );
    let fields: Vec<&str> = line.split_whitespace().collect();
    // TIME PID PPID UID COMM RESULT FILENAME ARGV...
    assert_eq!(fields[2], std::process::id().to_string(), "{line}");
    assert_eq!(fields[3], "0", "{line}");
    assert_eq!(fields[4], comm, "{line}");
    assert_eq!(fields[5], "ENOENT", "{line}");
    assert!(
        line.ends_with(&format!(r#"{missing} {missing} a "b c""#)),
        "{line}"
    );
    assert!(err.contains("1 execs printed, 0 lost"), "{err}");
}

fn run_helper(args: &[&str]) -> Output {
    Command::new(HELPER).args(args).output().unwrap()
}

/// One error line on stderr, the given exit code, no panic.
fn assert_one_error_line(out: &Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error: ") && first.contains(needle),
        "{err}"
    );
}

#[test]
fn bad_pid_is_one_clear_error() {
    let out = run_helper(&["cli", "--pid", "abc"]);
    assert_one_error_line(&out, 2, "invalid value 'abc' for '--pid <PID>'");
}

#[test]
fn empty_comm_is_one_clear_error() {
    require_root();
    let out = run_helper(&["cli", "--comm", ""]);
    assert_one_error_line(&out, 1, "--comm must not be empty");
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

#[test]
fn not_root_is_one_clear_error() {
    require_root(); // to become someone else
    let out = run_helper(&["as-user", "65534", "cli", "-c", "1"]);
    assert_one_error_line(&out, 1, "needs root");
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

#[test]
fn forced_backend_that_fails_is_one_clear_error() {
    require_root();
    // fentry or kprobe, whichever this kernel refuses (this VM refuses both).
    for backend in ["fentry", "kprobe"] {
        let out = run_helper(&["cli", "--backend", backend, "--duration", "0.1"]);
        if out.status.success() {
            continue;
        }
        assert_one_error_line(&out, 1, &format!("--backend {backend}: "));
        assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
        return;
    }
    panic!("both fentry and kprobe work here: nothing to check");
}
