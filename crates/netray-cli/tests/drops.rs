//! `netray drops` end to end in the lab, with the real binary: the kernel's
//! drop reason and location for UDP to a closed port and for a TCP segment
//! with a bad checksum, netray's own drop with its rule (or the drop policy), the kernel filter,
//! -w read back by tshark with the comments, --stats counts equal to what was
//! sent, and a flood with every drop reported or counted lost.
//!
//! The lab's host end (in this namespace) receives what the lab's namespace
//! sends; `drops -i HOST_IF` sees the drops of this namespace on it.

mod common;

use std::{
    io::{BufRead, BufReader},
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use common::{tshark_fields, Env};
use serde_json::Value;

/// A running `netray drops`, ready once it said what it traces.
struct Drops {
    child: Child,
    stderr: mpsc::Receiver<String>,
}

impl Drops {
    fn start(env: &Env, args: &[&str]) -> Drops {
        Self::start_with(env.cmd(&[&["drops"], args].concat()))
    }

    fn start_with(mut cmd: Command) -> Drops {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("running netray drops");
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        // Emulated kernels load and attach 10-30x slower than this host.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l.starts_with("netray: drops on") => break,
                Ok(l) if l.contains("error") => panic!("netray drops failed: {l}"),
                Ok(_) => {}
                Err(_) => panic!("netray drops did not start"),
            }
        }
        Drops { child, stderr: rx }
    }

    /// Stops it (Ctrl-C); its stdout and the rest of its stderr.
    fn stop(self) -> (String, String) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let out = self.child.wait_with_output().unwrap();
        let err: Vec<String> = self.stderr.try_iter().collect();
        assert!(out.status.success(), "netray drops failed: {}", err.join("\n"));
        (String::from_utf8(out.stdout).unwrap(), err.join("\n"))
    }

    /// Stops it and parses its --json lines.
    fn stop_json(self) -> Vec<Value> {
        let (out, _) = self.stop();
        out.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
    }
}

fn drops_of(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter(|l| l["type"] == "drop").collect()
}

fn last_stats(lines: &[Value]) -> &Value {
    lines.iter().rev().find(|l| l["type"] == "stats").expect("a stats line at exit")
}

/// Sends `n` UDP datagrams from the lab's namespace to the host end, port
/// `port`, at most `pps` a second (0: as fast as it goes); how many were sent.
fn send_udp(env: &Env, port: u16, n: u64, pps: u64) -> u64 {
    let dst = SocketAddrV4::new(env.lab.host_v4(), port);
    env.lab
        .in_netns(move || {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
            let start = Instant::now();
            let mut sent = 0;
            while sent < n {
                if pps > 0 {
                    let due = start + Duration::from_secs_f64(sent as f64 / pps as f64);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
                if s.send_to(b"drop me", dst).is_ok() {
                    sent += 1;
                }
            }
            sent
        })
        .unwrap()
}

/// Waits until the kernel has certainly freed what was sent (the receive path
/// runs in softirq right after the send, but emulated kernels are slow).
fn settle() {
    std::thread::sleep(Duration::from_millis(1500));
}

#[test]
fn drops_udp_to_a_closed_port_shows_no_socket_with_addresses_ports_and_location() {
    let env = Env::new("drops-udp");
    let d = Drops::start(&env, &["-i", env.iface(), "--json", "udp", "port", "9"]);
    assert_eq!(send_udp(&env, 9, 5, 200), 5);
    settle();
    let lines = d.stop_json();
    let drops = drops_of(&lines);
    assert_eq!(drops.len(), 5, "one drop per datagram: {lines:?}");
    for d in drops {
        assert_eq!(d["who"], "kernel");
        assert_eq!(d["reason"], "NO_SOCKET", "{d}");
        assert_eq!(d["ifname"], env.iface());
        assert_eq!(d["src"], env.lab.peer_v4().to_string());
        assert_eq!(d["dst"], env.lab.host_v4().to_string());
        assert_eq!(d["dport"], 9);
        assert_eq!(d["proto"], "udp");
        assert_eq!(d["len"], 14 + 20 + 8 + 7);
        let f = d["function"].as_str().expect("a function from kallsyms");
        assert!(f.contains("udp"), "the UDP receive path frees it: {f}");
        assert!(d["location"].as_str().unwrap().starts_with(&format!("{f}+0x")));
    }
    assert_eq!(last_stats(&lines)["kernel"]["lost"], 0);
}

#[test]
fn drops_text_line_names_the_reason_and_the_packet() {
    let env = Env::new("drops-line");
    let d = Drops::start(&env, &["-i", env.iface(), "udp", "port", "10"]);
    send_udp(&env, 10, 1, 0);
    settle();
    let (out, err) = d.stop();
    let line = out.lines().next().expect("one line");
    let (peer, host) = (env.lab.peer_v4(), env.lab.host_v4());
    let want = format!(" {} kernel NO_SOCKET ", env.iface());
    assert!(line.contains(&want), "{line}");
    assert!(line.contains(&format!(": IP {peer}.")), "{line}");
    assert!(line.ends_with(&format!(" > {host}.10: UDP, length 7")), "{line}");
    assert!(err.contains("1 drops reported"), "{err}");
}

#[test]
fn drops_every_way_to_the_tracepoint_reports_the_reason() {
    let env = Env::new("drops-ways");
    for way in ["raw_tp", "tracepoint"] {
        let mut cmd = env.cmd(&["drops", "-i", env.iface(), "--json", "udp", "port", "11"]);
        cmd.env("NETRAY_DROPS_WAY", way);
        let d = Drops::start_with(cmd);
        send_udp(&env, 11, 2, 100);
        settle();
        let lines = d.stop_json();
        let drops = drops_of(&lines);
        assert_eq!(drops.len(), 2, "{way}: {lines:?}");
        assert!(drops.iter().all(|d| d["reason"] == "NO_SOCKET"), "{way}: {drops:?}");
    }
}

#[test]
fn drops_a_netray_deny_rule_shows_the_rule_id_once() {
    let env = Env::new("drops-rule");
    env.ok(&["firewall", "attach", "-i", env.iface()]);
    let peer = format!("{}/32", env.lab.peer_v4());
    let added = env.ok(&["deny", "add", &peer, "--proto", "udp", "--port", "12"]);
    assert!(added.starts_with("added rule 1:"), "{added}");
    let d = Drops::start(&env, &["-i", env.iface(), "--json"]);
    send_udp(&env, 12, 3, 100);
    send_udp(&env, 13, 2, 100);
    settle();
    let lines = d.stop_json();
    let drops = drops_of(&lines);
    let by_rule: Vec<_> = drops.iter().filter(|d| d["who"] == "netray xdp rule 1").collect();
    assert_eq!(by_rule.len(), 3, "{drops:?}");
    for d in &by_rule {
        assert_eq!(d["rule"], 1);
        assert_eq!(d["dport"], 12);
        assert_eq!(d["src"], env.lab.peer_v4().to_string());
    }
    // The skb veth frees after netray's XDP_DROP is not shown a second time.
    assert!(drops.iter().all(|d| d["dport"] != 12 || d["who"] != "kernel"), "{drops:?}");
    let closed = drops.iter().filter(|d| d["dport"] == 13 && d["reason"] == "NO_SOCKET").count();
    assert_eq!(closed, 2, "{drops:?}");
    let stats = last_stats(&lines);
    assert_eq!(stats["netray_lost"], 0);
    // Where the kernel frees an skb after netray's XDP_DROP (veth), each of
    // the three frees was paired with netray's drop, across polls too.
    assert!(stats["folded"] == 0 || stats["folded"] == 3, "{stats}");
    assert_eq!(stats["hold_overflow"], 0, "{stats}");
}

#[test]
fn drops_by_the_drop_policy_say_policy() {
    let env = Env::new("drops-pol");
    env.ok(&["firewall", "attach", "-i", env.iface()]);
    env.ok(&["firewall", "policy", "-i", env.iface(), "in", "drop"]);
    let d = Drops::start(&env, &["-i", env.iface(), "--json", "udp"]);
    assert_eq!(send_udp(&env, 14, 3, 100), 3);
    settle();
    let lines = d.stop_json();
    let drops = drops_of(&lines);
    let by_policy: Vec<_> = drops.iter().filter(|d| d["who"] == "netray xdp policy").collect();
    assert_eq!(by_policy.len(), 3, "{drops:?}");
    for d in &by_policy {
        assert_eq!((d["reason"].as_str(), d["rule"].is_null(), &d["dport"]), (Some("policy in drop"), true, &Value::from(14)));
    }
    assert_eq!(last_stats(&lines)["netray_lost"], 0);
}

/// A TCP SYN from the lab's namespace through a raw socket with a checksum off by one.
fn send_bad_tcp(env: &Env, port: u16) {
    let (src, dst) = (env.lab.peer_v4(), env.lab.host_v4());
    env.lab
        .in_netns(move || {
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_TCP) };
            assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
            let mut tcp = [0u8; 20];
            tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
            tcp[2..4].copy_from_slice(&port.to_be_bytes());
            tcp[4..8].copy_from_slice(&1u32.to_be_bytes());
            tcp[12] = 5 << 4;
            tcp[13] = 0x02; // SYN
            tcp[14..16].copy_from_slice(&1024u16.to_be_bytes());
            let sum = tcp_checksum(src, dst, &tcp);
            tcp[16..18].copy_from_slice(&sum.wrapping_add(1).to_be_bytes());
            let sa = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: 0,
                sin_addr: libc::in_addr { s_addr: u32::from(dst).to_be() },
                sin_zero: [0; 8],
            };
            let n = unsafe {
                libc::sendto(
                    fd,
                    tcp.as_ptr().cast(),
                    tcp.len(),
                    0,
                    (&sa as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as u32,
                )
            };
            assert_eq!(n, 20, "sendto: {}", std::io::Error::last_os_error());
            unsafe { libc::close(fd) };
        })
        .unwrap();
}

fn tcp_checksum(src: Ipv4Addr, dst: Ipv4Addr, seg: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&[0, 6]);
    add(&(seg.len() as u16).to_be_bytes());
    add(seg);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[test]
fn drops_a_tcp_segment_with_a_bad_checksum_shows_tcp_csum() {
    let env = Env::new("drops-csum");
    let d = Drops::start(&env, &["-i", env.iface(), "--json", "tcp", "port", "14"]);
    send_bad_tcp(&env, 14);
    settle();
    let lines = d.stop_json();
    let drops = drops_of(&lines);
    assert_eq!(drops.len(), 1, "{lines:?}");
    assert_eq!(drops[0]["reason"], "TCP_CSUM");
    assert_eq!(drops[0]["proto"], "tcp");
    assert_eq!(drops[0]["dport"], 14);
    assert_eq!(drops[0]["sport"], 40000);
}

#[test]
fn drops_written_with_w_carry_the_cause_as_comment_in_tshark() {
    let env = Env::new("drops-pcap");
    env.ok(&["firewall", "attach", "-i", env.iface()]);
    let peer = format!("{}/32", env.lab.peer_v4());
    env.ok(&["deny", "add", &peer, "--proto", "udp", "--port", "15"]);
    let file = env.pin.with_extension("pcapng");
    let file = Path::new("/tmp").join(file.file_name().unwrap());
    let d = Drops::start(&env, &["-i", env.iface(), "-w", file.to_str().unwrap(), "udp"]);
    send_udp(&env, 15, 2, 100);
    send_udp(&env, 16, 2, 100);
    settle();
    d.stop();
    let rows = tshark_fields(&file, &["frame.comment", "udp.dstport", "ip.src"]);
    let _ = std::fs::remove_file(&file);
    let peer = env.lab.peer_v4().to_string();
    for r in &rows {
        assert_eq!(r[2], peer, "{rows:?}");
        match r[1].as_str() {
            "16" => assert!(r[0].starts_with("kernel NO_SOCKET at ") && r[0].contains("udp"), "{rows:?}"),
            "15" => assert_eq!(r[0], "netray xdp rule 1", "{rows:?}"),
            other => panic!("unexpected port {other}: {rows:?}"),
        }
    }
    assert_eq!(rows.iter().filter(|r| r[1] == "16").count(), 2, "{rows:?}");
    // netray's XDP drops carry bytes where the kernel frees an skb for them
    // (veth's native XDP runs on skbs): then they are in the file too.
    let own = rows.iter().filter(|r| r[1] == "15").count();
    assert!(own == 0 || own == 2, "{rows:?}");
}

#[test]
fn drops_stats_counts_equal_what_was_sent() {
    let env = Env::new("drops-stats");
    let d = Drops::start(&env, &["-i", env.iface(), "--stats", "--json", "udp", "port", "17"]);
    let sent = send_udp(&env, 17, 300, 300);
    settle();
    let lines = d.stop_json();
    let counts = lines.iter().rev().find(|l| l["type"] == "counts").expect("counts at exit");
    let rows = counts["drops"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["who"], "kernel");
    assert_eq!(rows[0]["reason"], "NO_SOCKET");
    assert_eq!(rows[0]["ifname"], env.iface());
    assert_eq!(rows[0]["packets"], sent);
    assert_eq!(rows[0]["bytes"], sent * (14 + 20 + 8 + 7));
}

/// Sends `n` copies of a UDP frame to port `port` from the lab's peer end
/// through a packet socket (no qdisc, no stack: the cheapest sender there is),
/// addressed to a MAC that is not the host end's, so that the host end's IP
/// layer drops each (OTHERHOST) without answering. How many were sent.
fn flood_otherhost(env: &Env, port: u16, n: u64) -> u64 {
    let (src, dst, peer_mac) = (env.lab.peer_v4(), env.lab.host_v4(), env.lab.peer_mac());
    let peer_if = env.lab.peer_if().to_string();
    env.lab
        .in_netns(move || {
            let mut f = vec![0u8; 14 + 20 + 8 + 7];
            f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
            f[6..12].copy_from_slice(&peer_mac);
            f[12..14].copy_from_slice(&[0x08, 0x00]);
            let ip = &mut f[14..34];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&35u16.to_be_bytes());
            ip[8] = 64;
            ip[9] = 17;
            ip[12..16].copy_from_slice(&src.octets());
            ip[16..20].copy_from_slice(&dst.octets());
            let mut sum: u32 = ip.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
            f[34..36].copy_from_slice(&40000u16.to_be_bytes());
            f[36..38].copy_from_slice(&port.to_be_bytes());
            f[38..40].copy_from_slice(&15u16.to_be_bytes());
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
            assert!(fd >= 0, "packet socket: {}", std::io::Error::last_os_error());
            let one: libc::c_int = 1;
            unsafe {
                libc::setsockopt(fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, (&one as *const libc::c_int).cast(), 4)
            };
            let name = std::ffi::CString::new(peer_if).unwrap();
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
            sll.sll_halen = 6;
            // Two senders (threads started here stay in the lab's namespace):
            // the host end's receive path runs on the sending CPU.
            let send = |count: u64| {
                let mut sent = 0;
                while sent < count {
                    let r = unsafe {
                        libc::sendto(
                            fd,
                            f.as_ptr().cast(),
                            f.len(),
                            0,
                            (&sll as *const libc::sockaddr_ll).cast(),
                            std::mem::size_of::<libc::sockaddr_ll>() as u32,
                        )
                    };
                    if r == f.len() as isize {
                        sent += 1;
                    }
                }
                sent
            };
            let sent = std::thread::scope(|s| {
                let other = s.spawn(|| send(n / 2));
                send(n - n / 2) + other.join().unwrap()
            });
            unsafe { libc::close(fd) };
            sent
        })
        .unwrap()
}

#[test]
fn drops_a_flood_is_reported_or_counted_lost_never_silently_missing() {
    let env = Env::new("drops-flood");
    // A small ring and no output but the counts: the reader may fall behind.
    let d = Drops::start(&env, &["-i", env.iface(), "--stats", "--json", "--buffer-mib", "1", "udp", "port", "18"]);
    let t = Instant::now();
    let sent = flood_otherhost(&env, 18, 200_000);
    let rate = sent as f64 / t.elapsed().as_secs_f64();
    settle();
    let lines = d.stop_json();
    let k = &last_stats(&lines)["kernel"];
    let (reported, lost) = (k["reported"].as_u64().unwrap(), k["lost"].as_u64().unwrap());
    let counts = lines.iter().rev().find(|l| l["type"] == "counts").expect("counts at exit");
    let rows = counts["drops"].as_array().unwrap();
    let shown: u64 = rows.iter().map(|r| r["packets"].as_u64().unwrap()).sum();
    eprintln!("flood: {sent} sent at {rate:.0}/s, {reported} reported, {lost} lost: {rows:?}");
    // Everything written to the ring reached the user: OTHERHOST, or the host
    // end's backlog full (CPU_BACKLOG) when the sender outruns its softirq.
    assert_eq!(shown, reported);
    assert!(rows.iter().all(|r| r["reason"] == "OTHERHOST" || r["reason"] == "CPU_BACKLOG"), "{rows:?}");
    assert!(rows.iter().any(|r| r["reason"] == "OTHERHOST"), "{rows:?}");
    // Every frame was reported or counted lost: the host end's backlog can
    // overflow too, but that is a drop as well (CPU_BACKLOG), filtered the same.
    assert!(reported + lost <= sent, "{reported} + {lost} > {sent}");
    assert!(reported + lost >= sent * 9 / 10, "{reported} + {lost} of {sent}");
}

#[test]
fn drops_counts_are_on_top_metrics() {
    use std::io::{Read, Write};
    let env = Env::new("drops-top");
    let mut child = env
        .cmd(&["top", "-i", env.iface(), "--json", "--metrics", "127.0.0.1:0", "--drops"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let mut lines = BufReader::new(err).lines().map_while(Result::ok);
    let (mut addr, mut counting) = (None, false);
    for l in lines.by_ref() {
        if let Some(rest) = l.strip_prefix("netray: serving Prometheus metrics at http://") {
            addr = Some(rest.trim_end_matches("/metrics").to_string());
        }
        counting |= l.starts_with("netray: counting drops on");
        if addr.is_some() && counting {
            break;
        }
    }
    let addr = addr.expect("the metrics address");
    std::thread::spawn(move || lines.for_each(drop));
    send_udp(&env, 20, 4, 100);
    let series = format!("netray_drops_total{{who=\"kernel\",reason=\"NO_SOCKET\",interface=\"{}\"}} 4", env.iface());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut body = String::new();
    while Instant::now() < deadline {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        body.clear();
        s.read_to_string(&mut body).unwrap();
        if body.contains(&series) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert!(child.wait().unwrap().success());
    assert!(body.contains(&series), "{series} not in: {body}");
    assert!(body.contains("netray_drops_lost_total 0"), "{body}");
}
