//! `netray dump -w FILE` leaves a complete, valid file however it ends: SIGINT,
//! SIGTERM, `-c`, and a disk that fills up (one clear error, the file readable up to
//! the last whole block). Every file ends with an Interface Statistics Block per
//! interface whose counts equal the summary printed. Read back by tcpdump, tshark,
//! capinfos and pcap-file, with the real binary in a lab.

mod common;

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{Env, StderrLog};
use netray_lab::Family;
use pcap_file::pcapng::{blocks::interface_statistics::InterfaceStatisticsOption, Block, PcapNgReader};

/// A running `netray dump`, ready once it says it is capturing; killed if dropped.
struct Dump {
    child: Child,
    stderr: StderrLog,
}

impl Dump {
    fn start(env: &Env, args: &[&str]) -> Dump {
        let mut child = env.dump(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("running netray dump");
        let stderr = StderrLog::collect(&mut child);
        let mut dump = Dump { child, stderr };
        dump.stderr.wait_for(&mut dump.child, "capturing");
        dump
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `sig` (0: none, for `-c` and a full disk), waits for the exit; returns
    /// whether it succeeded and its stderr.
    fn end(mut self, sig: i32) -> (bool, String) {
        if sig != 0 {
            // SAFETY: plain kill(2) on our child.
            unsafe { libc::kill(self.child.id() as i32, sig) };
        }
        let t = Instant::now();
        while self.running() {
            assert!(t.elapsed() < Duration::from_secs(30), "netray dump did not exit: {}", self.stderr.text());
            std::thread::sleep(Duration::from_millis(20));
        }
        let ok = self.child.wait().unwrap().success();
        let err = self.stderr.after_exit();
        assert!(!err.contains("panicked"), "{err}");
        (ok, err)
    }
}

impl Drop for Dump {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private directory for the test's files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("netray-dump-files-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A small tmpfs mounted on a private directory, unmounted on drop (also when the
/// test panics).
struct SmallDisk {
    dir: Scratch,
}

impl SmallDisk {
    fn mount(tag: &str, size: &str) -> SmallDisk {
        let dir = Scratch::new(tag);
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "netray-test"])
            .arg(&dir.0)
            .output()
            .expect("running mount");
        assert!(out.status.success(), "mounting a tmpfs on {}: {}", dir.0.display(), String::from_utf8_lossy(&out.stderr));
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir.0).status();
    }
}

/// The stderr summary's "N <what>".
fn summary(stderr: &str, what: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| l.strip_suffix(what))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no '{what}' in the summary: {stderr}"))
}

/// How many packets `tcpdump -r` and `tshark -r` read from the file (each must read
/// it without an error).
fn counts_by_tcpdump_and_tshark(path: &Path) -> (usize, usize) {
    let tcpdump = Command::new("tcpdump").args(["-nn", "-r"]).arg(path).output().expect("tcpdump is needed for this test");
    assert!(tcpdump.status.success(), "tcpdump -r {}: {}", path.display(), String::from_utf8_lossy(&tcpdump.stderr));
    let tshark = Command::new("tshark").arg("-r").arg(path).args(["-T", "fields", "-e", "frame.number"]).output();
    let tshark = tshark.expect("tshark is needed for this test");
    assert!(
        tshark.status.success(),
        "tshark -r {}: {}",
        path.display(),
        String::from_utf8_lossy(&tshark.stderr)
    );
    (String::from_utf8_lossy(&tcpdump.stdout).lines().count(), String::from_utf8_lossy(&tshark.stdout).lines().count())
}

/// What the file's Interface Statistics Blocks say, per interface id, read with pcap-file.
#[derive(Debug, Default, PartialEq)]
struct Isb {
    received: u64,
    dropped: u64,
    accepted: u64,
    start_ns: u128,
    end_ns: u128,
}

fn statistics_blocks(path: &Path) -> (Vec<Isb>, usize) {
    let mut reader = PcapNgReader::new(File::open(path).unwrap()).expect("a pcapng section header");
    let (mut isbs, mut packets) = (Vec::new(), 0);
    while let Some(block) = reader.next_block() {
        match block.expect("a valid pcapng block").0 {
            Block::EnhancedPacket(_) => {
                assert!(isbs.is_empty(), "a packet after the statistics: they end the file");
                packets += 1;
            }
            Block::InterfaceStatistics(b) => {
                let mut isb = Isb::default();
                for o in b.options {
                    match o {
                        InterfaceStatisticsOption::IsbIfRecv(n) => isb.received = n,
                        InterfaceStatisticsOption::IsbIfDrop(n) => isb.dropped = n,
                        InterfaceStatisticsOption::IsbFilterAccept(n) => isb.accepted = n,
                        InterfaceStatisticsOption::IsbStartTime(t) => isb.start_ns = t.as_nanos(),
                        InterfaceStatisticsOption::IsbEndTime(t) => isb.end_ns = t.as_nanos(),
                        _ => {}
                    }
                }
                assert_eq!(b.interface_id as usize, isbs.len(), "one block per interface, in order");
                isbs.push(isb);
            }
            _ => {}
        }
    }
    (isbs, packets)
}

/// The file holds exactly the packets the summary counts, every reader agrees, and
/// its statistics equal the summary's counts.
fn assert_complete(path: &Path, err: &str) {
    let captured = summary(err, "packets captured") as usize;
    assert!(captured > 0, "{err}");
    assert_eq!(counts_by_tcpdump_and_tshark(path), (captured, captured), "{err}");
    let (isbs, packets) = statistics_blocks(path);
    assert_eq!(packets, captured);
    assert_eq!(isbs.len(), 1, "one interface (xdp entry): {isbs:?}");
    let isb = &isbs[0];
    assert_eq!(isb.received, summary(err, "packets received by filter"), "isb_ifrecv: {err}");
    assert_eq!(isb.accepted, summary(err, "packets matched the filter"), "isb_filteraccept: {err}");
    assert_eq!(isb.dropped, summary(err, "packets dropped by kernel (ring buffer full)"), "isb_ifdrop: {err}");
    assert!(isb.start_ns > 0 && isb.start_ns < isb.end_ns, "{isb:?}");
    // capinfos reads the blocks too, and finds the packets it should.
    let capinfos = Command::new("capinfos").args(["-M"]).arg(path).output().expect("capinfos (tshark's package)");
    let text = String::from_utf8_lossy(&capinfos.stdout);
    assert!(capinfos.status.success(), "capinfos: {}", String::from_utf8_lossy(&capinfos.stderr));
    assert!(text.contains(&format!("Number of packets:   {captured}")), "{text}");
    assert!(text.contains("Number of stat entries = 1"), "capinfos finds the statistics block: {text}");
}

fn ends_with_a_signal_leaving_a_complete_file(tag: &str, sig: i32) {
    let env = Env::new(tag);
    let dir = Scratch::new(tag);
    let file = dir.file("signal.pcapng");
    let dump = Dump::start(&env, &["-w", file.to_str().unwrap()]);
    env.lab.udp_send(Family::V4, 5000, 1000, 300).unwrap();
    env.lab.udp_send(Family::V6, 5000, 64, 200).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let (ok, err) = dump.end(sig);
    assert!(ok, "{err}");
    assert!(summary(&err, "packets captured") >= 500, "{err}");
    assert_complete(&file, &err);
}

#[test]
fn sigint_leaves_a_complete_file_ending_with_interface_statistics() {
    ends_with_a_signal_leaving_a_complete_file("fint", libc::SIGINT);
}

#[test]
fn sigterm_leaves_a_complete_file_ending_with_interface_statistics() {
    ends_with_a_signal_leaving_a_complete_file("fterm", libc::SIGTERM);
}

#[test]
fn count_limit_leaves_exactly_that_many_packets_and_the_statistics() {
    let env = Env::new("fcnt");
    let dir = Scratch::new("fcnt");
    let file = dir.file("count.pcapng");
    let dump = Dump::start(&env, &["-w", file.to_str().unwrap(), "-c", "250", "udp"]);
    env.lab.udp_send(Family::V4, 5001, 700, 400).unwrap();
    let (ok, err) = dump.end(0);
    assert!(ok, "{err}");
    assert_eq!(summary(&err, "packets captured"), 250, "{err}");
    assert_complete(&file, &err);
}

#[test]
fn a_full_disk_is_one_clear_error_and_the_file_stays_readable() {
    let env = Env::new("ffull");
    let disk = SmallDisk::mount("ffull", "2m");
    let file = disk.dir.file("full.pcapng");
    let mut dump = Dump::start(&env, &["-w", file.to_str().unwrap()]);
    // Frames until the disk is full and netray stops (2 MiB take ~1,500 of them).
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) && dump.running() {
        env.lab.udp_send(Family::V4, 5002, 1400, 300).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let (ok, err) = dump.end(0);
    assert!(!ok, "a full disk is a failure: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("rror")).collect();
    assert_eq!(errors.len(), 1, "one error: {err}");
    assert!(errors[0].contains("is full") && errors[0].contains(file.to_str().unwrap()), "names the full disk and the file: {err}");
    let (by_tcpdump, by_tshark) = counts_by_tcpdump_and_tshark(&file);
    assert_eq!(by_tcpdump, by_tshark);
    assert!(by_tshark > 1000, "the file holds what fit: {by_tshark} packets");
    assert_eq!(summary(&err, "packets captured") as usize, by_tshark, "the summary counts what the file holds: {err}");
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size > 1_500_000 && size <= 2 << 20, "{size} bytes");
}

/// A live capture rotated by `-C` goes through the same batch writer as one file: every
/// file is a whole section that ends with the statistics since the capture started (as
/// dumpcap counts them), the last one after SIGINT too, and together the files hold each
/// packet sent exactly once.
#[test]
fn rotated_files_each_end_with_statistics_and_together_hold_every_packet() {
    let env = Env::new("frot");
    let dir = Scratch::new("frot");
    let base = dir.file("rot.pcapng");
    let dump = Dump::start(&env, &["-w", base.to_str().unwrap(), "-C", "1", "udp and dst port 5003"]);
    let mut sent = 0;
    for _ in 0..7 {
        sent += env.lab.udp_send(Family::V4, 5003, 1000, 500).unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    std::thread::sleep(Duration::from_millis(300));
    let (ok, err) = dump.end(libc::SIGINT);
    assert!(ok, "{err}");
    // rot.pcapng, rot.pcapng1, rot.pcapng2, ... as tcpdump names them.
    let mut files: Vec<(u32, PathBuf)> = std::fs::read_dir(&dir.0)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let n = name.strip_prefix("rot.pcapng")?;
            Some((if n.is_empty() { 0 } else { n.parse().unwrap() }, dir.file(&name)))
        })
        .collect();
    files.sort();
    assert!(files.len() >= 3, "3.5 MB of frames under -C 1: {files:?}\n{err}");
    let captured = summary(&err, "packets captured");
    assert_eq!(captured + summary(&err, "packets dropped by kernel (ring buffer full)"), sent, "{err}");
    let (mut total, mut last) = (0u64, Isb::default());
    for (_, file) in &files {
        let (by_tcpdump, by_tshark) = counts_by_tcpdump_and_tshark(file);
        let (isbs, packets) = statistics_blocks(file);
        assert_eq!((by_tcpdump, by_tshark), (packets, packets), "{}", file.display());
        assert_eq!(isbs.len(), 1, "{} ends with one statistics block: {isbs:?}", file.display());
        total += packets as u64;
        let isb = isbs.into_iter().next().unwrap();
        // Counted since the start, when the file was closed: after its packets were written.
        assert!(isb.accepted >= total && isb.received >= last.received, "{}: {isb:?} after {last:?}", file.display());
        let capinfos = Command::new("capinfos").args(["-M"]).arg(file).output().expect("capinfos (tshark's package)");
        let text = String::from_utf8_lossy(&capinfos.stdout);
        assert!(capinfos.status.success() && text.contains("Number of stat entries = 1"), "{}: {text}", file.display());
        last = isb;
    }
    assert_eq!(total, captured, "every packet in one file, none twice: {err}");
    assert_eq!(last.received, summary(&err, "packets received by filter"), "the last file's statistics are the summary's");
    assert_eq!(last.accepted, summary(&err, "packets matched the filter"), "{err}");
}
