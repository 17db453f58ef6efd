//! tcpdump's flags on `netray dump`, checked against tcpdump itself: the same capture file
//! printed by both with the same flags gives the same text (netray's interface name aside);
//! `--count`, `-F` and `-D` say what tcpdump says; rotated files are named as tcpdump names
//! them and each reads in tshark; `-Q` picks the hooks; `-l`/`-U` hand each packet on at once.

mod common;

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use common::{netray, Env, StderrLog};

/// A live `netray dump` whose programs are in place (its "capturing" line came), killed on drop.
struct LiveDump {
    child: Child,
    stderr: StderrLog,
}

impl LiveDump {
    fn start(env: &Env, args: &[&str]) -> LiveDump {
        let mut child = env.dump(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("running netray dump");
        let stderr = StderrLog::collect(&mut child);
        let mut dump = LiveDump { child, stderr };
        dump.stderr.wait_for(&mut dump.child, "capturing");
        dump
    }

    fn stdout(&mut self) -> &mut ChildStdout {
        self.child.stdout.as_mut().expect("stdout not handed elsewhere")
    }

    /// SIGINT, then everything it printed: (stdout, stderr).
    fn stop(self) -> (String, String) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.finish()
    }

    /// Waits (20 s at most) for it to end by itself: (stdout, stderr).
    fn finish(mut self) -> (String, String) {
        let t = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(t.elapsed() < Duration::from_secs(20), "netray dump did not end");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut out = String::new();
        if let Some(stdout) = self.child.stdout.as_mut() {
            stdout.read_to_string(&mut out).unwrap();
        }
        let err = self.stderr.after_exit();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "netray dump failed ({status}): {err}");
        (out, err)
    }
}

impl Drop for LiveDump {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory of the test's own under /tmp, removed on drop (also when the test fails).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("netray-dump-flags-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `netray lab traffic`: ICMP, UDP and TCP over IPv4 and IPv6 from the namespace, answered.
fn traffic(env: &Env, args: &[&str]) {
    env.ok(&[&["lab", "traffic", env.lab.name()], args].concat());
}

/// A lab, and a file of its real traffic both ways: ICMP, UDP and TCP (handshakes, data,
/// teardown) over IPv4 and IPv6, at XDP and TC egress.
fn lab_capture(tag: &str) -> (Env, Scratch, PathBuf) {
    let env = Env::new(tag);
    let dir = Scratch::new(tag);
    let file = dir.join("lab.pcapng");
    let dump = LiveDump::start(&env, &["--hook", "xdp,tc-egress", "-w", file.to_str().unwrap()]);
    traffic(&env, &["--count", "12"]);
    dump.stop();
    (env, dir, file)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("running the command (tcpdump and tshark come with setup/deps.sh)");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn tcpdump(args: &[&str]) -> String {
    run(Command::new("tcpdump").args(args))
}

/// `netray dump -r FILE flags`, with the interface name netray prints after the time taken out
/// (tcpdump prints none when reading a file).
fn netray_read(file: &Path, iface: &str, flags: &[&str]) -> String {
    let out = netray(&[&["dump", "-r", file.to_str().unwrap()], flags].concat());
    assert!(out.status.success(), "netray dump -r {flags:?}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let with_name = format!(" {iface} ");
    let lines = text.lines().map(|l| {
        if let Some(rest) = l.strip_prefix(&format!("{iface} ")) {
            rest.to_string()
        } else if l.starts_with('\t') || l.starts_with("    ") {
            l.to_string()
        } else {
            l.replacen(&with_name, " ", 1)
        }
    });
    lines.map(|l| l + "\n").collect()
}

#[test]
fn the_same_file_prints_as_tcpdump_prints_it_flag_by_flag() {
    let (env, _dir, file) = lab_capture("dflg");
    let f = file.to_str().unwrap();
    // What tcpdump sees in it: every kind of packet the comparison is meant to cover.
    let plain = tcpdump(&["-r", f, "-nn", "-S"]);
    for kind in ["ICMP echo request", "ICMP6, echo reply", "IP6 ", "UDP, length 64", "Flags [S]", "Flags [P.]"] {
        assert!(plain.contains(kind), "the lab capture lacks {kind}:\n{plain}");
    }
    // netray prints absolute TCP sequence numbers and nanoseconds: tcpdump's -S and nano precision.
    // Under -v both find the TCP and UDP checksums the veth offloads "incorrect", alike.
    let same: &[&[&str]] = &[
        &[],
        &["-x"],
        &["-xx"],
        &["-X"],
        &["-XX"],
        &["-A"],
        &["-AA"],
        &["-e"],
        &["-q"],
        &["-e", "-q"],
        &["-t"],
        &["-tt"],
        &["-ttt"],
        &["-tttt"],
        &["-ttttt"],
        &["-v"],
        &["-vv"],
        &["-v", "-K"],
        &["-e", "-vv", "-X"],
    ];
    let mut cases: Vec<(&[&str], &[&str])> = same.iter().map(|flags| (*flags, *flags)).collect();
    // The flags netray only accepts change nothing.
    cases.push((&["-nn", "-S", "-p", "-e", "-X", "-ttt"], &["-e", "-X", "-ttt"]));
    for (ours, theirs) in cases {
        let expected = tcpdump(&[&["-r", f, "-nn", "-S", "--time-stamp-precision=nano"][..], theirs].concat());
        let got = netray_read(&file, env.iface(), ours);
        assert!(!expected.is_empty());
        assert_eq!(got, expected, "netray dump -r {ours:?} against tcpdump -r {theirs:?}");
    }
}

#[test]
fn count_filter_files_and_their_mistakes_say_what_tcpdump_says() {
    let (env, dir, file) = lab_capture("dcnt");
    let f = file.to_str().unwrap();
    for expr in [&["udp"][..], &["tcp", "and", "port", "7"], &["icmp6"], &[]] {
        let theirs = tcpdump(&[&["-r", f, "--count"], expr].concat());
        let ours = netray(&[&["dump", "-r", f, "--count"], expr].concat());
        assert!(ours.status.success(), "{}", String::from_utf8_lossy(&ours.stderr));
        assert_eq!(String::from_utf8(ours.stdout).unwrap(), theirs, "--count {expr:?}");
    }
    assert_ne!(tcpdump(&["-r", f, "--count", "udp"]), tcpdump(&["-r", f, "--count"]), "a filter that selects");

    // -F: the expression from a file, '#' comments included, as tcpdump reads it.
    let filter = dir.join("filter");
    std::fs::write(&filter, "# only the echo service\nudp # datagrams\n  and port 7\n").unwrap();
    let filter = filter.to_str().unwrap();
    let ours = netray(&["dump", "-r", f, "-F", filter, "--count"]);
    assert_eq!(String::from_utf8(ours.stdout).unwrap(), tcpdump(&["-r", f, "-F", filter, "--count"]));

    let err = env.fails(&["dump", "-r", f, "-F", "/nonexistent/filter"]);
    assert!(err.contains("/nonexistent/filter") && err.contains("No such file"), "{err}");
    let err = env.fails(&["dump", "-r", f, "-F", filter, "icmp"]);
    assert!(err.contains("-F") && err.contains("icmp"), "{err}");

    // Live: the number once -c is reached, nothing else on stdout.
    // The lab's traffic is round-robin over 6 kinds: 24 packets hold 4 ICMP echo requests.
    let dump = LiveDump::start(&env, &["--count", "-c", "3", "icmp"]);
    traffic(&env, &["--count", "24"]);
    let (out, err) = dump.finish();
    assert_eq!(out, "3 packets\n", "{err}");
}

#[test]
fn direction_picks_the_hooks_tcpdump_q_means() {
    let env = Env::new("dque");
    // 24 packets of the lab's traffic hold 4 ICMP echo requests, each answered.
    for (q, hook) in [("in", "xdp-entry In "), ("out", "tc-egress-entry Out")] {
        let dump = LiveDump::start(&env, &["-Q", q, "-c", "2", "icmp"]);
        traffic(&env, &["--count", "24"]);
        let (out, _) = dump.finish();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "-Q {q}: {out}");
        assert!(lines.iter().all(|l| l.contains(hook) && l.contains("ICMP echo")), "-Q {q}: {out}");
        let want = if q == "in" { "echo request" } else { "echo reply" };
        assert!(lines.iter().all(|l| l.contains(want)), "-Q {q}: {out}");
    }
    let dump = LiveDump::start(&env, &["-Q", "inout", "-c", "4", "icmp"]);
    traffic(&env, &["--count", "24"]);
    let (out, _) = dump.finish();
    assert!(out.contains("xdp-entry In ") && out.contains("tc-egress-entry Out"), "-Q inout: {out}");
    // clap's usage error, like every conflicting pair of options.
    let refused = netray(&["dump", "-i", env.iface(), "-Q", "out", "--hook", "xdp"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("--direction") && err.contains("--hook"), "{err}");
}

#[test]
fn list_interfaces_shows_the_lab_interface_with_tcpdumps_state_and_no_loopback() {
    let env = Env::new("dlst");
    let ours = netray(&["dump", "-D"]);
    assert!(ours.status.success(), "{}", String::from_utf8_lossy(&ours.stderr));
    let ours = String::from_utf8(ours.stdout).unwrap();
    let theirs = tcpdump(&["-D"]);
    // "N.name [state]": numbers differ (tcpdump lists more), name and state agree.
    let entry = |text: &str, name: &str| {
        text.lines().find_map(|l| l.split_once('.').filter(|(_, rest)| rest.starts_with(&format!("{name} ["))))
            .map(|(_, rest)| rest.to_string())
    };
    let lab = env.iface();
    assert_eq!(entry(&ours, lab), entry(&theirs, lab), "netray:\n{ours}tcpdump:\n{theirs}");
    assert!(entry(&ours, lab).unwrap().contains("Up"), "{ours}");
    assert!(entry(&ours, "lo").is_none(), "lo is not an Ethernet interface netray captures on: {ours}");
    let numbers: Vec<usize> = ours.lines().map(|l| l.split('.').next().unwrap().parse().unwrap()).collect();
    assert_eq!(numbers, (1..=numbers.len()).collect::<Vec<_>>(), "{ours}");

    let json: serde_json::Value = serde_json::from_slice(&netray(&["dump", "-D", "--json"]).stdout).unwrap();
    let lab_entry = json.as_array().unwrap().iter().find(|i| i["name"] == lab).expect("the lab interface in --json");
    assert_eq!(lab_entry["up"], true);
    assert_eq!(lab_entry["ifindex"], env.lab.host_ifindex());
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Packets tshark reads in `file` (it fails on a file that is not whole pcapng or pcap).
fn tshark_count(file: &Path) -> usize {
    run(Command::new("tshark").arg("-r").arg(file)).lines().count()
}

/// A pcap file of `frames`, written by hand (a 24-byte header, 16 bytes before each record),
/// the n-th stamped n/100 s after the first.
fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut out = Vec::new();
    for word in [0xa1b2c3d4u32.to_le_bytes().as_slice(), &2u16.to_le_bytes(), &4u16.to_le_bytes()] {
        out.extend_from_slice(word);
    }
    for v in [0u32, 0, 65535, 1] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for (i, frame) in (0u32..).zip(frames) {
        let len = frame.len() as u32;
        for v in [1_700_000_000 + i / 100, (i % 100) * 10_000, len, len] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(frame);
    }
    std::fs::write(path, out).unwrap();
}

/// Ethernet from 02:00:00:00:00:01 to 02:00:00:00:00:02, after `tags` 802.1Q tags, of `ether_type`.
fn ethernet(tags: &[u16], ether_type: u16, body: &[u8]) -> Vec<u8> {
    let mut frame = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    for vid in tags {
        frame.extend_from_slice(&[0x81, 0]);
        frame.extend_from_slice(&vid.to_be_bytes());
    }
    frame.extend_from_slice(&ether_type.to_be_bytes());
    frame.extend_from_slice(body);
    frame
}

/// 10.0.0.1:40000 > 10.0.0.2:9 over UDP, `payload` bytes of 0x6e (IPv4 checksum left 0).
fn udp_ipv4(payload: usize) -> Vec<u8> {
    let total = (20 + 8 + payload) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0x9c, 0x40, 0, 9]);
    ip.extend_from_slice(&(total - 20).to_be_bytes());
    ip.extend_from_slice(&[0, 0]);
    ip.resize(usize::from(total), 0x6e);
    ip
}

#[test]
fn link_headers_of_vlan_tagged_and_unknown_frames_print_as_tcpdump_prints_them() {
    let dir = Scratch::new("link");
    let file = dir.join("link.pcap");
    let frames = [
        ethernet(&[10], 0x0800, &udp_ipv4(5)),
        ethernet(&[10, 20], 0x0800, &udp_ipv4(5)),
        ethernet(&[], 0x88b5, b"abcdefgh"),
    ];
    write_pcap(&file, &frames);
    let f = file.to_str().unwrap();
    // Without -e, netray names the VLAN tags and tcpdump does not: only -e lines compare.
    for flags in [&["-e"][..], &["-e", "-q"], &["-e", "-X"], &["-e", "-xx"]] {
        let expected = tcpdump(&[&["-r", f, "-nn", "--time-stamp-precision=nano"], flags].concat());
        // tcpdump hex-dumps a frame of an unknown ethertype even without -x: only the header line compares.
        let expected: String = if flags == ["-e"] {
            expected.lines().filter(|l| !l.starts_with('\t')).map(|l| format!("{l}\n")).collect()
        } else {
            expected
        };
        assert_eq!(netray_read(&file, "if0", flags), expected, "{flags:?}");
    }
}

#[test]
fn size_rotation_names_files_as_tcpdump_does_and_each_reads_in_tshark() {
    let dir = Scratch::new("rotate");
    let input = dir.join("in.pcap");
    write_pcap(&input, &vec![ethernet(&[], 0x0800, &udp_ipv4(958)); 3500]);
    let input = input.to_str().unwrap();
    // The name is a strftime pattern under -G only; within the hour, -G 3600 leaves the naming to -C.
    let rotations: [&[&str]; 6] = [
        &["-C", "1"],
        &["-C", "1", "-W", "3"],
        &["-C", "1", "-W", "11"],
        &["-C", "1", "-W", "10"],
        &["-C", "1", "-G", "3600"],
        &["-C", "1", "-G", "3600", "-W", "3"],
    ];
    for flags in rotations {
        let (ours, theirs) = (Scratch::new("ours"), Scratch::new("theirs"));
        let out = netray(&[&["dump", "-r", input, "-w", ours.join("f-%Y").to_str().unwrap()], flags].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // -Z root: tcpdump would otherwise write as user tcpdump, into a directory of root's.
        tcpdump(&[&["-Z", "root", "-r", input, "-w", theirs.join("f-%Y").to_str().unwrap()], flags].concat());
        let names = names(&ours);
        assert_eq!(names, self::names(&theirs), "file names for {flags:?}");
        assert!(names.len() >= 3, "{flags:?}: {names:?}");
        let counts: Vec<usize> = names.iter().map(|n| tshark_count(&ours.join(n))).collect();
        // Each a whole section: all full (958 packets of 1000 bytes) but the one written last.
        let full = counts.iter().filter(|&&c| c == 958).count();
        assert!(counts.iter().all(|&c| c > 0) && full == counts.len() - 1, "{flags:?}: {counts:?}");
        if !flags.contains(&"-W") {
            assert_eq!(counts.iter().sum::<usize>(), 3500, "every packet in one of the files: {counts:?}");
        }
        for n in &names {
            let size = std::fs::metadata(ours.join(n)).unwrap().len();
            assert!(size <= 1_000_000 + 1100, "{n}: {size} bytes, over -C 1 by more than a packet");
        }
    }
    // Each mistake is one error naming the flag.
    let scratch = Scratch::new("mistakes");
    let out = scratch.join("x").to_str().unwrap().to_string();
    let bad_pattern = scratch.join("x-%Q").to_str().unwrap().to_string();
    for (args, says) in [
        (&["-w", "-", "-C", "1"][..], "give -w a file name"),
        (&["-w", &out, "-W", "3"], "-W 3 needs -C SIZE or -G SECONDS"),
        (&["-w", &bad_pattern, "-G", "1"], "strftime pattern"),
        (&["-w", "/nonexistent/x", "-C", "1"], "cannot create /nonexistent/x"),
        (&["-w", &out, "-C", "0"], "'0': give a whole number of 1 or more"),
    ] {
        let refused = netray(&[&["dump", "-r", input], args].concat());
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success() && err.contains(says) && !err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn time_rotation_names_files_by_strftime_and_stops_after_w_files() {
    let env = Env::new("dgro");
    let dir = Scratch::new("time");
    let pattern = dir.join("t-%s.pcapng");
    let pinger = std::thread::spawn({
        let args = ["lab", "traffic", env.lab.name(), "--duration", "8", "--pps", "30"].map(String::from);
        let pin = env.pin.clone();
        move || Command::new(env!("CARGO_BIN_EXE_netray")).arg("--pin-dir").arg(pin).args(args).output()
    });
    let dump = LiveDump::start(&env, &["-w", pattern.to_str().unwrap(), "-G", "1", "-W", "3", "icmp"]);
    // It stops by itself (no -c, no signal) after the third file, as tcpdump -G 1 -W 3 does,
    // while the traffic still flows.
    let (_, err) = dump.finish();
    assert!(!pinger.is_finished(), "-W 3 should end the capture after 3 files, in about 3 s: {err}");
    assert!(err.contains("maximum file limit reached: 3"), "{err}");
    let _ = pinger.join();
    let names = names(&dir);
    assert_eq!(names.len(), 3, "{names:?}");
    let seconds: Vec<u64> = names
        .iter()
        .map(|n| n.strip_prefix("t-").and_then(|n| n.strip_suffix(".pcapng")).unwrap().parse().unwrap())
        .collect();
    assert!(seconds.windows(2).all(|w| w[1] > w[0]), "one file per period, named by its start: {names:?}");
    // Periods end on whole seconds of the clock (tcpdump's time(NULL)): the first file
    // holds only the rest of the second the capture started in, and may be empty; each
    // later one opened for a packet. All read in tshark.
    let counts: Vec<usize> = names.iter().map(|n| tshark_count(&dir.join(n))).collect();
    assert!(counts[1..].iter().all(|&c| c > 0), "{names:?}: {counts:?}");
}

#[test]
fn line_and_packet_buffering_hand_each_packet_on_while_the_capture_runs() {
    let env = Env::new("dbuf");
    let mut dump = LiveDump::start(&env, &["-l", "icmp"]);
    traffic(&env, &["--count", "1"]);
    let mut first = String::new();
    BufReader::new(dump.stdout()).read_line(&mut first).unwrap();
    assert!(first.contains("ICMP echo request"), "{first}");
    assert!(dump.child.try_wait().unwrap().is_none(), "the line came while the capture runs");
    dump.stop();

    // -U -w - into tcpdump: tcpdump prints the packet before netray ends.
    let mut dump = LiveDump::start(&env, &["-U", "-w", "-", "icmp"]);
    let mut reader = Command::new("tcpdump")
        .args(["-nn", "-l", "-r", "-"])
        .stdin(dump.child.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    traffic(&env, &["--count", "1"]);
    let mut first = String::new();
    BufReader::new(reader.stdout.as_mut().unwrap()).read_line(&mut first).unwrap();
    assert!(first.contains("ICMP echo request"), "{first}");
    assert!(dump.child.try_wait().unwrap().is_none(), "tcpdump had the packet while the capture runs");
    dump.stop();
    let _ = reader.wait();
}

/// A capture that cannot start (no such interface) creates no output file, rotated or
/// not: an empty pcapng left behind would look like a capture that saw nothing.
#[test]
fn a_capture_that_cannot_start_leaves_no_file() {
    let dir = Scratch::new("nofile");
    let pin = format!("/sys/fs/bpf/netray-e2e-nofile-{}", std::process::id());
    let (single, rotated) = (dir.join("x.pcapng"), dir.join("r.pcapng"));
    let (single, rotated) = (single.to_str().unwrap(), rotated.to_str().unwrap());
    for args in [&["-w", single][..], &["-w", rotated, "-C", "1"], &["-w", rotated, "-G", "60"]] {
        let out = netray(&[&["--pin-dir", &pin, "dump", "-i", "nope0"], args].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("nope0") && !err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(names(&dir), Vec::<String>::new(), "{args:?} left a file: {err}");
    }
    let _ = std::fs::remove_dir_all(&pin);
}
