//! End to end in the lab: `netray top --ipfix` exports the flows it counts to
//! real consumers on 127.0.0.1 — pmacct's nfacctd, whose per-flow totals must
//! equal what the lab sent, and tshark, which must decode every message
//! without a malformed-packet warning — over UDP and TCP; a long flow arrives
//! in several records whose deltas add up; a collector that is down never
//! stops netray, and what could not be sent is counted.
//!
//! The test's own collectors (a UDP or TCP listener on 127.0.0.1) keep the
//! messages as received; they are decoded here by a generic RFC 7011 reader
//! (templates learned from the stream, as a collector does) and written into
//! a pcap file as UDP datagrams for tshark, so nothing captures on the host's
//! loopback interface.

mod common;
#[path = "../../netray-tests/support/ipfix_collector.rs"]
mod ipfix_collector;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read},
    net::{IpAddr, SocketAddr, TcpListener, UdpSocket},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use common::{
    sizes::{ECHO, ETH, IP4, IP6, TCP, UDP},
    tcp_syns, Env,
};
use ipfix_collector::{decode, Listener, Rec};
use netray_lab::Family;
use serde_json::Value;

const FORWARDED: u8 = 0x40;
const DROPPED_ACL_DENY: u8 = 0x81;

// ---- netray top --ipfix in the background -------------------------------------

struct Top {
    child: Child,
    stderr: mpsc::Receiver<String>,
    /// stdout, read as it comes: a pipe nobody reads fills up and blocks
    /// netray top's output (slowly enough natively, within seconds on the
    /// matrix's emulated kernels).
    stdout: Option<std::thread::JoinHandle<String>>,
}

impl Top {
    fn spawn(env: &Env, collector: SocketAddr, extra: &[&str]) -> Top {
        let c = collector.to_string();
        let mut args = vec!["top", "-i", env.iface(), "--interval", "500ms", "--json", "--ipfix", &c];
        args.extend_from_slice(extra);
        let mut child = env.cmd(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("netray top");
        let err = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text);
            text
        });
        let mut top = Top { child, stderr: rx, stdout: Some(stdout) };
        // Generous: attaching takes 10-30x longer on the matrix's emulated kernels.
        let line = top.wait_stderr("exporting IPFIX to", Duration::from_secs(120));
        assert!(line.contains(&c), "{line}");
        top
    }

    fn wait_stderr(&mut self, what: &str, t: Duration) -> String {
        let deadline = Instant::now() + t;
        loop {
            match self.stderr.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) if l.contains(what) => return l,
                Ok(l) => assert!(!l.contains("error"), "netray top failed: {l}"),
                Err(_) => panic!("netray top never said '{what}'"),
            }
        }
    }

    /// SIGINT (the shutdown flush), then the exit status, the JSON lines and
    /// the summary line on stderr.
    fn stop(mut self) -> (Vec<Value>, String) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let summary = self.wait_stderr("netray: ipfix:", Duration::from_secs(90));
        let status = self.child.wait().unwrap();
        let out = self.stdout.take().unwrap().join().unwrap();
        assert!(status.success(), "netray top exited with {status}");
        let lines = out.lines().map(|l| serde_json::from_str(l).expect("JSON lines")).collect();
        (lines, summary)
    }
}

impl Drop for Top {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `{"type":"ipfix"}` summary of a stopped `top --json`.
fn summary(lines: &[Value]) -> &Value {
    let s = lines.last().expect("output");
    assert_eq!(s["type"], "ipfix", "{s}");
    s
}

// ---- the lab's traffic ------------------------------------------------------------

/// (src, dst, dport or ICMP type << 8 | code, proto) → (packets, bytes), as
/// the lab sends it.
type Totals = BTreeMap<(IpAddr, IpAddr, u16, u8), (u64, u64)>;

/// Known packets of known sizes: UDP, TCP and ICMP echo over IPv4 and IPv6
/// towards the host (ingress) and the echo replies back (egress), and a UDP
/// flow the firewall drops. Returns what was sent per flow.
fn send_known_traffic(env: &Env) -> Totals {
    let (peer4, peer6): (IpAddr, IpAddr) = (env.lab.peer_v4().into(), env.lab.peer_v6().into());
    let (host4, host6): (IpAddr, IpAddr) = (env.lab.host_v4().into(), env.lab.host_v6().into());
    assert_eq!(env.lab.udp_send(Family::V4, 9001, 100, 7).unwrap(), 7);
    assert_eq!(env.lab.udp_send(Family::V6, 9002, 200, 5).unwrap(), 5);
    assert_eq!(env.lab.udp_send(Family::V4, 9004, 30, 3).unwrap(), 3); // denied
    assert_eq!(env.lab.ping(Family::V4, 3).unwrap(), 3);
    assert_eq!(env.lab.ping(Family::V6, 2).unwrap(), 2);
    tcp_syns(env, false, 40001, 9003, 4);
    tcp_syns(env, true, 40002, 9003, 6);
    BTreeMap::from([
        ((peer4, host4, 9001, 17), (7, 7 * (ETH + IP4 + UDP + 100))),
        ((peer6, host6, 9002, 17), (5, 5 * (ETH + IP6 + UDP + 200))),
        ((peer4, host4, 9004, 17), (3, 3 * (ETH + IP4 + UDP + 30))),
        ((peer4, host4, 8 << 8, 1), (3, 3 * (ETH + IP4 + ECHO))),
        ((peer6, host6, 128 << 8, 58), (2, 2 * (ETH + IP6 + ECHO))),
        ((host4, peer4, 0, 1), (3, 3 * (ETH + IP4 + ECHO))),
        ((host6, peer6, 129 << 8, 58), (2, 2 * (ETH + IP6 + ECHO))),
        ((peer4, host4, 9003, 6), (4, 4 * (ETH + IP4 + TCP))),
        ((peer6, host6, 9003, 6), (6, 6 * (ETH + IP6 + TCP))),
    ])
}

/// The flows of `want` as some collector summed them.
fn only_wanted(got: &Totals, want: &Totals) -> Totals {
    want.keys().map(|k| (*k, got.get(k).copied().unwrap_or_default())).collect()
}

fn deny_9004(env: &Env) {
    env.ok(&["firewall", "attach", "-i", env.iface()]);
    env.ok(&["deny", "add", &env.lab.peer_v4().to_string(), "--proto", "udp", "--port", "9004"]);
}

// ---- pmacct's nfacctd ---------------------------------------------------------------

/// nfacctd listening for IPFIX on 127.0.0.1, writing its per-flow sums to a
/// CSV file every second; killed and its directory removed on drop.
struct Nfacctd {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Nfacctd {
    fn start(tag: &str) -> Nfacctd {
        let dir = std::env::temp_dir().join(format!("netray-nfacctd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // The configuration docs/ipfix.md shows.
        let conf = format!(
            "daemonize: false\n\
             nfacctd_ip: 127.0.0.1\n\
             nfacctd_port: {port}\n\
             plugins: print\n\
             aggregate: src_host, dst_host, src_port, dst_port, proto, in_iface, out_iface\n\
             print_output: csv\n\
             print_output_file: {}/flows.csv\n\
             print_output_file_append: true\n\
             print_refresh_time: 1\n",
            dir.display()
        );
        std::fs::write(dir.join("nfacctd.conf"), conf).unwrap();
        let log = std::fs::File::create(dir.join("nfacctd.log")).unwrap();
        let child = Command::new("nfacctd")
            .arg("-f")
            .arg(dir.join("nfacctd.conf"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("nfacctd (Debian package pmacct, installed by setup/deps.sh)");
        let n = Nfacctd { child, dir, addr: SocketAddr::from(([127, 0, 0, 1], port)) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !n.log().contains("waiting for NetFlow/IPFIX data") {
            assert!(Instant::now() < deadline, "nfacctd did not start: {}", n.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        n
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("nfacctd.log")).unwrap_or_default()
    }

    /// Its per-flow sums so far: the CSV's rows (one per flow and refresh
    /// interval), added up by (src, dst, dport, proto).
    fn totals(&self) -> Totals {
        let text = std::fs::read_to_string(self.dir.join("flows.csv")).unwrap_or_default();
        let mut out = Totals::new();
        for l in text.lines().filter(|l| !l.starts_with("IN_IFACE") && !l.is_empty()) {
            let c: Vec<&str> = l.split(',').collect();
            assert_eq!(c.len(), 9, "{l}");
            let proto = match c[6] {
                "tcp" => 6,
                "udp" => 17,
                "icmp" => 1,
                "ipv6-icmp" => 58,
                p => p.parse().unwrap_or_else(|_| panic!("protocol {p}")),
            };
            let key = (c[2].parse().unwrap(), c[3].parse().unwrap(), c[5].parse().unwrap(), proto);
            let e = out.entry(key).or_default();
            e.0 += c[7].parse::<u64>().unwrap();
            e.1 += c[8].parse::<u64>().unwrap();
        }
        out
    }
}

impl Drop for Nfacctd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---- the test's own collectors and an RFC 7011 reader -------------------------------

/// Per-flow sums of decoded records.
fn totals_of(recs: &[Rec]) -> Totals {
    let mut out = Totals::new();
    for r in recs {
        let e = out.entry(r.key()).or_default();
        e.0 += r.uint(2);
        e.1 += r.uint(1);
    }
    out
}

/// The messages as UDP datagrams to `port` in a pcap file, decoded by
/// tshark as IPFIX (`-d udp.port==PORT,cflow`): its verbose text, checked
/// for malformed packets and errors.
fn tshark_decodes(messages: &[Vec<u8>], port: u16, dir: &std::path::Path) -> String {
    let mut pcap = Vec::new();
    pcap.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    pcap.extend_from_slice(&2u16.to_le_bytes());
    pcap.extend_from_slice(&4u16.to_le_bytes());
    pcap.extend_from_slice(&[0; 8]);
    pcap.extend_from_slice(&65535u32.to_le_bytes());
    pcap.extend_from_slice(&228u32.to_le_bytes()); // LINKTYPE_IPV4
    for (i, m) in messages.iter().enumerate() {
        let len = 20 + 8 + m.len();
        let mut ip = vec![0x45, 0, (len >> 8) as u8, len as u8, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1];
        let sum = !ip.chunks(2).fold(0u32, |a, c| {
            let s = a + u32::from(u16::from_be_bytes([c[0], c[1]]));
            (s & 0xffff) + (s >> 16)
        }) as u16;
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        let udp_len = (8 + m.len()) as u16;
        let mut pkt = ip;
        pkt.extend_from_slice(&40000u16.to_be_bytes());
        pkt.extend_from_slice(&port.to_be_bytes());
        pkt.extend_from_slice(&udp_len.to_be_bytes());
        pkt.extend_from_slice(&[0, 0]);
        pkt.extend_from_slice(m);
        pcap.extend_from_slice(&(i as u32 + 1).to_le_bytes());
        pcap.extend_from_slice(&0u32.to_le_bytes());
        pcap.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
        pcap.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
        pcap.extend_from_slice(&pkt);
    }
    let file = dir.join("ipfix.pcap");
    std::fs::write(&file, pcap).unwrap();
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&file)
        .args(["-d", &format!("udp.port=={port},cflow"), "-V"])
        .output()
        .expect("tshark");
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("Malformed"), "tshark found a malformed message:\n{text}");
    assert!(!text.contains("[Expert Info (Error"), "tshark reports an error:\n{text}");
    assert_eq!(text.matches("Cisco NetFlow/IPFIX").count(), messages.len(), "every message decoded as IPFIX");
    text
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netray-ipfix-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn wait_until(t: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + t;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

// ---- the tests ----------------------------------------------------------------------

#[test]
fn ipfix_to_nfacctd_totals_equal_what_was_sent_per_flow() {
    let env = Env::new("ipfixnf");
    deny_9004(&env);
    let nf = Nfacctd::start("totals");
    let top = Top::spawn(&env, nf.addr, &["--idle-timeout", "1s"]);
    let want = send_known_traffic(&env);
    // Idle flows are exported after 1 s; SIGINT flushes anything left.
    std::thread::sleep(Duration::from_millis(1500));
    let (lines, _) = top.stop();
    let s = summary(&lines);
    assert_eq!(s["dropped_queue_full"], 0);
    assert_eq!(s["dropped_send_failed"], 0);
    assert!(s["records_sent"].as_u64().unwrap() >= want.len() as u64, "{s}");
    // nfacctd writes its sums every second.
    let ok = wait_until(Duration::from_secs(60), || only_wanted(&nf.totals(), &want) == want);
    assert!(ok, "nfacctd's totals {:#?}\ndiffer from what was sent {want:#?}\n{}", only_wanted(&nf.totals(), &want), nf.log());
}

#[test]
fn ipfix_over_udp_decodes_in_tshark_with_forwarding_status_and_interface_name() {
    let env = Env::new("ipfixts");
    deny_9004(&env);
    let l = Listener::udp();
    let top = Top::spawn(&env, l.addr, &["--ipfix-domain-id", "77"]);
    let want = send_known_traffic(&env);
    let (lines, _) = top.stop();
    let msgs = l.messages();
    assert_eq!(summary(&lines)["messages_sent"].as_u64().unwrap(), msgs.len() as u64);
    // The template set comes first, in the first message.
    assert_eq!(&msgs[0][16..18], &[0, 2], "template set first");
    assert_eq!(&msgs[0][12..16], &77u32.to_be_bytes(), "observation domain");
    let recs = decode(&msgs);
    assert_eq!(only_wanted(&totals_of(&recs), &want), want);
    for r in &recs {
        let k = r.key();
        let denied = k.2 == 9004 && k.3 == 17;
        if k.3 == 1 || k.3 == 58 {
            assert_eq!(r.uint(if k.3 == 1 { 32 } else { 139 }), u64::from(k.2), "icmpTypeCode {r:?}");
        }
        assert_eq!(r.uint(89) as u8, if denied { DROPPED_ACL_DENY } else { FORWARDED }, "{r:?}");
        assert_eq!(r.fields[&82], env.iface().as_bytes(), "interfaceName");
        let ingress = k.0 == IpAddr::from(env.lab.peer_v4()) || k.0 == IpAddr::from(env.lab.peer_v6());
        assert_eq!(r.uint(61), if ingress { 0 } else { 1 }, "flowDirection {r:?}");
        let ifindex = u64::from(env.lab.host_ifindex());
        assert_eq!((r.uint(10), r.uint(14)), if ingress { (ifindex, 0) } else { (0, ifindex) });
        assert!(r.uint(152) <= r.uint(153) && r.uint(152) > 1_700_000_000_000, "times {r:?}");
    }
    let dir = scratch("udp");
    let text = tshark_decodes(&msgs, l.addr.port(), &dir);
    assert!(text.contains("Drop"), "tshark shows the drop's forwarding status");
    assert!(text.contains(env.iface()), "tshark shows the interface name");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn ipfix_over_tcp_reconnects_when_the_collector_comes_up_and_loses_nothing() {
    let env = Env::new("ipfixtcp");
    deny_9004(&env);
    // The collector's port, with nobody listening yet.
    let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let top = Top::spawn(&env, addr, &["--ipfix-transport", "tcp", "--idle-timeout", "1s"]);
    let want = send_known_traffic(&env);
    // netray keeps counting while the collector is away (its JSON goes on).
    std::thread::sleep(Duration::from_millis(2500));
    let l = Listener::tcp(addr);
    // Backoff: 1 s, 2 s, 4 s between connects.
    assert!(wait_until(Duration::from_secs(60), || *l.connections.lock().unwrap() >= 1), "netray never connected");
    assert!(wait_until(Duration::from_secs(60), || only_wanted(&totals_of(&decode(&l.messages())), &want) == want));
    let (lines, _) = top.stop();
    let s = summary(&lines);
    assert!(s["connect_failures"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(s["connects"], 1, "{s}");
    assert_eq!(s["dropped_send_failed"], 0, "{s}");
    assert!(lines.iter().filter(|j| j["type"] == "flows").count() >= 4, "top went on while the collector was away");
    std::thread::sleep(Duration::from_millis(300));
    let msgs = l.messages();
    // On TCP the first message of the connection is the template set alone.
    assert_eq!(&msgs[0][16..18], &[0, 2]);
    assert_eq!(u16::from_be_bytes([msgs[0][18], msgs[0][19]]) as usize + 16, msgs[0].len());
    assert_eq!(only_wanted(&totals_of(&decode(&msgs)), &want), want);
    assert_eq!(s["records_sent"].as_u64().unwrap(), decode(&msgs).len() as u64);
    let dir = scratch("tcp");
    tshark_decodes(&msgs, addr.port(), &dir);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn ipfix_a_long_flow_arrives_in_several_records_that_add_up() {
    let env = Env::new("ipfixact");
    let l = Listener::udp();
    let top = Top::spawn(&env, l.addr, &["--active-timeout", "1s", "--idle-timeout", "30s"]);
    // One TCP flow (fixed ports), 2 SYNs every 250 ms for 4 s.
    let n = 16;
    for _ in 0..n {
        tcp_syns(&env, false, 41000, 9100, 2);
        std::thread::sleep(Duration::from_millis(250));
    }
    let (_, _) = top.stop();
    let key = (env.lab.peer_v4().into(), env.lab.host_v4().into(), 9100, 6);
    let recs: Vec<Rec> = decode(&l.messages()).into_iter().filter(|r| r.key() == key).collect();
    assert!(recs.len() >= 3, "{} records for a 4 s flow with a 1 s active timeout", recs.len());
    assert_eq!(recs.iter().map(|r| r.uint(2)).sum::<u64>(), 2 * n);
    assert_eq!(recs.iter().map(|r| r.uint(1)).sum::<u64>(), 2 * n * (ETH + IP4 + TCP));
    // Each record starts where the one before ended; sequence numbers rise.
    for w in recs.windows(2) {
        assert!(w[1].uint(152) >= w[0].uint(153), "{w:?}");
        assert!(w[1].sequence > w[0].sequence);
    }
}

#[test]
fn ipfix_with_the_collector_down_netray_keeps_running_and_counts_what_it_could_not_send() {
    let env = Env::new("ipfixdown");
    // A UDP port nobody listens on: the kernel answers port unreachable and
    // the sends fail.
    let addr = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let top = Top::spawn(&env, addr, &["--idle-timeout", "1s"]);
    for i in 0..4 {
        assert_eq!(env.lab.udp_send(Family::V4, 9200 + i, 10, 2).unwrap(), 2);
        std::thread::sleep(Duration::from_millis(800));
    }
    let (lines, summary_line) = top.stop();
    let s = summary(&lines);
    let lost = s["dropped_send_failed"].as_u64().unwrap();
    assert!(lost >= 3, "{s}");
    assert!(summary_line.contains(&format!("{lost} (send failed)")), "{summary_line}");
    assert!(lines.iter().filter(|j| j["type"] == "flows").count() >= 4, "top went on");
}
