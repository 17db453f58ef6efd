//! A closed pipe ends netray quietly, as it ends ls or grep: no panic, no
//! message, exit 0, nothing left half done (`netray deny list | head -1`).
//! Every command that prints runs with its stdout already closed at the far
//! end, so its first write fails, whatever the size of its output.

mod common;

use std::{
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use common::Env;
use netray_lab::Family;

/// What a command may say on stderr when its stdout goes: the streaming
/// commands announce themselves and print their closing counts there.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Stderr {
    Empty,
    /// Their usual notes and totals, but no error and no panic.
    Notes,
}

#[test]
fn every_printing_command_ends_quietly_on_a_closed_pipe() {
    let env = Env::new("pipe");
    let iface = env.iface().to_string();
    let lab = env.lab.name().to_string();
    let other_lab = netray_lab::unique_name("pipeup");
    let _cleanup = RemoveLab(other_lab.clone());
    let pcap = std::env::temp_dir().join(format!("netray-pipe-{}.pcapng", std::process::id()));
    let pcap = pcap.to_str().unwrap().to_string();
    // Longer than a pipe's 64 KiB.
    let list: String = (0..3000).map(|i| format!("10.{}.{}.0/24\n", i / 256, i % 256)).collect();
    let file = std::env::temp_dir().join(format!("netray-pipe-test-{}.list", std::process::id()));
    std::fs::write(&file, list).unwrap();
    let file = file.to_str().unwrap().to_string();

    use Stderr::*;
    let table: Vec<(Vec<&str>, Stderr)> = vec![
        (vec!["--help"], Empty),
        (vec!["deny", "--help"], Empty),
        (vec!["firewall", "attach", "-i", &iface], Empty),
        (vec!["deny", "add", "--file", &file], Empty),
        (vec!["deny", "add", "192.0.2.0/24", "--json"], Empty),
        (vec!["deny", "list"], Empty),
        (vec!["deny", "list", "--json"], Empty),
        (vec!["deny", "del", "192.0.2.0/24"], Empty),
        (vec!["firewall", "status"], Empty),
        (vec!["firewall", "status", "--json"], Empty),
        (vec!["features"], Empty),
        (vec!["features", "--json"], Empty),
        (vec!["lab", "status"], Empty),
        (vec!["lab", "status", "--json"], Empty),
        (vec!["lab", "up", &other_lab], Empty),
        (vec!["lab", "down", &other_lab], Empty),
        (vec!["lab", "traffic", &lab, "--count", "4", "--timeout", "0.2"], Empty),
        (vec!["lab", "prune"], Empty),
        (vec!["monitor", "-i", &iface], Notes),
        (vec!["monitor", "-i", &iface, "--json"], Empty),
        (vec!["top", "-i", &iface, "--once", "--interval", "0"], Empty),
        (vec!["top", "-i", &iface, "--json", "--interval", "100ms"], Empty),
        (vec!["exec"], Empty),
        (vec!["exec", "--json"], Empty),
        (vec!["dump", "-i", &iface], Notes),
        (vec!["dump", "-i", &iface, "-w", "-"], Notes),
        (vec!["dump", "-r", &pcap], Notes),
        (vec!["bench", "--repeat", "100", "--rounds", "1", "--loads", "1", "--rules", "0"], Empty),
        (vec!["bench", "exec", "--execs", "20", "--rounds", "1", "--backend", "tracepoint"], Empty),
        (vec!["firewall", "detach", "-i", &iface], Empty),
        (vec!["demo"], Empty),
    ];
    // The offline read needs a capture file.
    let args = ["dump", "-i", &iface, "-c", "1", "-w", &pcap];
    let status = with_traffic(&env, &args, env.cmd(&args).stderr(Stdio::null()).spawn().unwrap());
    assert!(status.success(), "{status:?}");

    for (args, stderr_kind) in &table {
        let (read, write) = std::io::pipe().unwrap();
        drop(read); // the reader is gone before netray writes anything
        let mut child = env.cmd(args).stdout(write).stderr(Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let status = with_traffic(&env, args, child);
        let mut err = String::new();
        std::io::Read::read_to_string(&mut { stderr }, &mut err).unwrap();
        assert!(status.success(), "netray {args:?}: ended by the closed pipe, not by an error: {status:?}\n{err}");
        match stderr_kind {
            Empty => assert_eq!(err, "", "netray {args:?}: nothing on stderr"),
            Notes => assert!(!err.contains("netray: error") && !err.contains("panicked"), "netray {args:?}: {err}"),
        }
    }
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(&pcap);
    // The commands that attach left nothing behind.
    assert_eq!(env.json(&["firewall", "status", "--json"])["interfaces"], serde_json::json!([]));
}

/// Waits for `child` while giving the streaming commands something to print:
/// a packet, an exec.
fn with_traffic(env: &Env, args: &[&str], mut child: Child) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("netray {args:?} still runs after 60 s");
        }
        let _ = env.lab.ping(Family::V4, 1);
        let _ = Command::new("/bin/true").status();
    }
}

/// `lab up` in the table persists a lab: remove it even if the test fails.
struct RemoveLab(String);

impl Drop for RemoveLab {
    fn drop(&mut self) {
        let _ = netray_lab::remove(&self.0);
    }
}

/// `netray monitor --json | head -1`: the reader takes one line and goes while the
/// command runs; the next write finds the pipe closed and the command ends quietly
/// with status 0, having taken down what it attached.
#[test]
fn streaming_commands_end_quietly_when_the_reader_goes_after_one_line() {
    use std::io::{BufRead, BufReader};

    let env = Env::new("pipeh");
    let iface = env.iface().to_string();
    let table: [&[&str]; 7] = [
        &["monitor", "-i", &iface, "--json"],
        &["monitor", "-i", &iface],
        &["dump", "-i", &iface],
        &["dump", "-i", &iface, "--json"],
        &["top", "-i", &iface, "--json", "--interval", "100ms"],
        &["exec", "--json"],
        &["exec"],
    ];
    for args in table {
        let mut child = env.cmd(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        std::thread::scope(|s| {
            let reading = s.spawn(|| stdout.read_line(&mut first));
            while !reading.is_finished() {
                let _ = env.lab.ping(Family::V4, 1);
                let _ = Command::new("/bin/true").status();
            }
        });
        assert!(!first.is_empty(), "netray {args:?} printed a line");
        drop(stdout); // `head -1` has its line and exits
        let stderr = child.stderr.take().unwrap();
        let status = with_traffic(&env, args, child);
        let mut err = String::new();
        std::io::Read::read_to_string(&mut { stderr }, &mut err).unwrap();
        assert!(status.success(), "netray {args:?}: {status:?}\n{err}");
        assert!(!err.contains("error") && !err.contains("panicked"), "netray {args:?}: {err}");
    }
    assert_eq!(env.json(&["firewall", "status", "--json"])["interfaces"], serde_json::json!([]));
}
