//! The interface goes away while a command watches it (`ip link del` in the
//! middle of `monitor`, `top`, `dump`, `drops -i`): each notices, says
//! "interface X went away", flushes what it had, prints its stats and exits
//! with status 3, leaving no pins of the interface behind.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use common::{Env, StderrLog};
use netray_lab::Family;

/// The documented exit status of a command whose interface went away.
const EXIT_IFACE_GONE: i32 = 3;

/// A netray command running against the lab's interface, its stdout in a file.
struct Running {
    child: Child,
    stderr: StderrLog,
    stdout: PathBuf,
}

impl Running {
    /// Starts `netray --pin-dir P ARGS...`, ready once `marker` shows on stderr.
    fn start(env: &Env, args: &[&str], marker: &str) -> Running {
        let stdout = std::env::temp_dir().join(format!("netray-gone-{}-{}.out", std::process::id(), env.iface()));
        let file = std::fs::File::create(&stdout).unwrap();
        let mut child = env.cmd(args).stdout(file).stderr(Stdio::piped()).spawn().expect("running netray");
        let stderr = StderrLog::collect(&mut child);
        let mut running = Running { child, stderr, stdout };
        running.stderr.wait_for(&mut running.child, marker);
        running
    }

    /// Waits for the exit after the interface was deleted; the status, stderr
    /// and how long the exit took. Emulated kernels are slow to tear down, so
    /// the bound is generous; the notice itself comes every 200 ms.
    fn wait(&mut self) -> (ExitStatus, String, Duration) {
        let t = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let err = self.stderr.after_exit();
                assert!(!err.contains("panicked"), "{err}");
                return (status, err, t.elapsed());
            }
            assert!(t.elapsed() < Duration::from_secs(30), "netray did not exit: {}", self.stderr.text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stdout);
    }
}

/// Deletes the lab's veth pair (the host end takes the peer with it).
fn delete_interface(env: &Env) {
    let out = Command::new("ip").args(["link", "del", "dev", env.iface()]).output().expect("running ip");
    assert!(out.status.success(), "ip link del {}: {}", env.iface(), String::from_utf8_lossy(&out.stderr));
}

/// The status, the message and its place: after the loop, before the stats.
fn assert_went_away(env: &Env, status: ExitStatus, err: &str, stats_line: &str) {
    assert_eq!(status.code(), Some(EXIT_IFACE_GONE), "exit status: {status}; stderr: {err}");
    let msg = format!("netray: interface {} went away", env.iface());
    let at = err.find(&msg).unwrap_or_else(|| panic!("no '{msg}' on stderr: {err}"));
    let stats = err.find(stats_line).unwrap_or_else(|| panic!("no '{stats_line}' on stderr: {err}"));
    assert!(at < stats, "the message comes before the stats: {err}");
    assert!(!err.contains("netray: error"), "{err}");
}

/// Nothing of the interface is left pinned: its dispatcher and capture state.
fn assert_no_pins_of(pin: &Path, ifindex: u32) {
    for dir in [pin.join("if").join(ifindex.to_string()), pin.join("capture").join(ifindex.to_string())] {
        assert!(!dir.exists(), "{} is left behind: {:?}", dir.display(), std::fs::read_dir(&dir).map(|d| d.count()));
    }
}

#[test]
fn interface_gone_ends_monitor_with_every_line_and_status_3() {
    let env = Env::new("gonemon");
    let ifindex = env.lab.host_ifindex();
    let mut mon = Running::start(&env, &["monitor", "-i", env.iface()], "monitoring");
    env.udp_answered(Family::V4, 20);
    delete_interface(&env);
    let (status, err, took) = mon.wait();
    eprintln!("monitor exited {took:?} after the interface was deleted");
    assert_went_away(&env, status, &err, "packets printed");
    let lines = mon.stdout();
    let udp = lines.lines().filter(|l| l.contains("UDP") || l.contains("udp")).count();
    assert!(udp >= 20, "every packet printed before the exit (20 sent, {udp} UDP lines): {lines}");
    let printed: usize = err.lines().find_map(|l| l.strip_suffix(" packets printed")?.parse().ok()).unwrap();
    assert_eq!(printed, lines.lines().count(), "the count matches the lines: {err}");
    assert_no_pins_of(&env.pin, ifindex);
}

#[test]
fn interface_gone_ends_top_json_with_a_last_snapshot_and_status_3() {
    let env = Env::new("gonetop");
    let ifindex = env.lab.host_ifindex();
    // An interval longer than the test: the only report is the last one.
    let mut top = Running::start(&env, &["top", "-i", env.iface(), "--json", "--interval", "600"], "");
    // Ready once flow accounting is on at the interface.
    wait_until(|| {
        let st = env.json(&["firewall", "status", "--json"]);
        st["interfaces"].as_array().unwrap().iter().any(|i| i["features"].as_array().unwrap().iter().any(|f| f == "flows"))
    });
    env.udp_answered(Family::V4, 20);
    delete_interface(&env);
    let (status, err, took) = top.wait();
    eprintln!("top exited {took:?} after the interface was deleted");
    assert_eq!(status.code(), Some(EXIT_IFACE_GONE), "exit status: {status}; stderr: {err}");
    assert!(err.contains(&format!("netray: interface {} went away", env.iface())), "{err}");
    let out = top.stdout();
    let last: serde_json::Value = serde_json::from_str(out.lines().last().expect("a last snapshot")).unwrap();
    assert_eq!(last["type"], "flows", "{out}");
    let udp_packets: u64 = last["flows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["proto"] == "udp")
        .map(|f| f["packets"].as_u64().unwrap())
        .sum();
    assert!(udp_packets >= 20, "the last snapshot holds the UDP flow's 20 packets: {out}");
    assert_no_pins_of(&env.pin, ifindex);
}

#[test]
fn interface_gone_ends_dump_with_a_complete_pcapng_and_status_3() {
    let env = Env::new("gonedump");
    let ifindex = env.lab.host_ifindex();
    // The firewall's program on the interface: the capture goes in front of it and would put it back.
    env.ok(&["firewall", "attach", "-i", env.iface()]);
    let file = std::env::temp_dir().join(format!("netray-gone-{}.pcapng", std::process::id()));
    let mut dump = Running::start(&env, &["dump", "-i", env.iface(), "-w", file.to_str().unwrap(), "udp"], "capturing");
    env.udp_answered(Family::V4, 20);
    delete_interface(&env);
    let (status, err, took) = dump.wait();
    eprintln!("dump exited {took:?} after the interface was deleted");
    assert_went_away(&env, status, &err, "packets captured");
    assert!(!err.contains("could not put"), "the program went with the interface: {err}");
    let captured: usize = err.lines().find_map(|l| l.strip_suffix(" packets captured")?.parse().ok()).unwrap();
    assert!(captured >= 20, "{err}");
    let out = Command::new("tcpdump").args(["-nn", "-r"]).arg(&file).output().expect("tcpdump (setup/deps.sh)");
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "tcpdump reads the file: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), captured, "every packet captured is in the file");
    assert_no_pins_of(&env.pin, ifindex);
}

#[test]
fn interface_gone_ends_drops_with_status_3() {
    let env = Env::new("gonedrops");
    let ifindex = env.lab.host_ifindex();
    let mut drops = Running::start(&env, &["drops", "-i", env.iface()], "Ctrl-C to stop");
    delete_interface(&env);
    let (status, err, took) = drops.wait();
    eprintln!("drops exited {took:?} after the interface was deleted");
    assert_went_away(&env, status, &err, "drops reported");
    assert_no_pins_of(&env.pin, ifindex);
}

fn wait_until(cond: impl Fn() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < Duration::from_secs(30), "timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
}
