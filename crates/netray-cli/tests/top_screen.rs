//! `netray top` as a user sees it: the live view running in tmux at 80x24
//! and 120x40 while the lab sends known traffic (IPv4 and IPv6, TCP and UDP,
//! both directions, one flow received only, one sent only). The panes are
//! captured with `tmux capture-pane -p` and compared, normalised, with the
//! reviewed screens in tests/expected/ (NETRAY_BLESS=1 writes them).
//!
//! What varies between runs is normalised: the lab's interface and
//! addresses, the TCP byte and packet counts (segmentation and ACKs vary),
//! the rate history. The capture waits until the traffic is over and a full
//! interval has passed, so every rate is exactly 0 and the order (by
//! cumulative bytes, `--sort bytes`) is fixed by the sizes sent.
//! Neighbours are made permanent and router solicitations switched off on the
//! lab's veth, so no ARP or ICMPv6 of the kernel's own shows up as a row.

mod common;

use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    process::Command,
    time::{Duration, Instant},
};

use common::{
    expected::{assert_expected, Normalise},
    Env,
};
use serde_json::Value;
use socket2::{Domain, Socket, Type};

/// A private tmux server (its own socket), its sessions ended with `q` and
/// the server killed when dropped, also when the test fails.
struct Tmux {
    socket: String,
    sessions: Vec<String>,
}

impl Tmux {
    fn new(name: &str) -> Tmux {
        Tmux { socket: format!("netray-{name}"), sessions: Vec::new() }
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux (setup/deps.sh installs it)");
        assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `command` in a new detached session of `width` x `height` (no
    /// status line); the pane stays after it exits, showing its status.
    fn start(&mut self, session: &str, width: u16, height: u16, command: &str) {
        let shell = format!("{command}; echo \"exited with $?\"; sleep 3600");
        let (w, h) = (width.to_string(), height.to_string());
        self.run(&["new-session", "-d", "-s", session, "-x", &w, "-y", &h, &shell, ";", "set-option", "-g", "status", "off"]);
        self.sessions.push(session.to_string());
    }

    fn capture(&self, session: &str) -> String {
        self.run(&["capture-pane", "-p", "-t", session])
    }

    fn keys(&self, session: &str, keys: &str) {
        self.run(&["send-keys", "-t", session, keys]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        for s in &self.sessions {
            let _ = Command::new("tmux").args(["-L", &self.socket, "send-keys", "-t", s, "q"]).output();
        }
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end
            && self.sessions.iter().any(|s| {
                let out = Command::new("tmux").args(["-L", &self.socket, "capture-pane", "-p", "-t", s]).output();
                out.is_ok_and(|o| o.status.success() && !String::from_utf8_lossy(&o.stdout).contains("exited with"))
            })
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        // The server leaves its socket file behind: removed with it.
        let path = Command::new("tmux").args(["-L", &self.socket, "display-message", "-p", "#{socket_path}"]).output();
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).output();
        if let Ok(p) = path {
            let p = String::from_utf8_lossy(&p.stdout).trim().to_string();
            if p.ends_with(&self.socket) {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

fn mac(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn sysctl(netns: Option<&str>, key: &str, value: &str) {
    let setting = format!("{key}={value}");
    let mut c = Command::new("ip");
    match netns {
        Some(ns) => c.args(["netns", "exec", ns, "sysctl", "-qw", &setting]),
        None => c.args(["netns", "exec", "-"]),
    };
    let out = match netns {
        Some(_) => c.output(),
        None => Command::new("sysctl").args(["-qw", &setting]).output(),
    }
    .expect("sysctl");
    assert!(out.status.success(), "sysctl {setting}: {}", String::from_utf8_lossy(&out.stderr));
}

/// No ARP, neighbour discovery or router solicitation on the lab's link
/// while the screen is watched: the only rows are the test's traffic.
fn quiet_link(env: &Env) {
    let lab = &env.lab;
    let (host_if, peer_if, ns) = (lab.host_if(), lab.peer_if(), lab.netns());
    sysctl(None, &format!("net.ipv6.conf.{host_if}.router_solicitations"), "0");
    sysctl(Some(ns), &format!("net.ipv6.conf.{peer_if}.router_solicitations"), "0");
    let (pm, hm) = (mac(lab.peer_mac()), mac(lab.host_mac()));
    for peer in [lab.peer_v4().to_string(), lab.peer_v6().to_string()] {
        ip(&["neigh", "replace", &peer, "lladdr", &pm, "dev", host_if, "nud", "permanent"]);
    }
    for host in [lab.host_v4().to_string(), lab.host_v6().to_string()] {
        ip(&["-n", ns, "neigh", "replace", &host, "lladdr", &hm, "dev", peer_if, "nud", "permanent"]);
    }
}

/// A socket of the lab's namespace bound to `addr`.
fn peer_socket(env: &Env, addr: SocketAddr, ty: Type) -> Socket {
    env.lab
        .in_netns(move || {
            let s = Socket::new(Domain::for_address(addr), ty, None).expect("socket");
            s.set_reuse_address(true).unwrap();
            s.bind(&addr.into()).expect("binding in the lab");
            s
        })
        .unwrap()
}

/// `up` bytes from the peer to the host over TCP, then `down` bytes back.
fn tcp_exchange(env: &Env, host: IpAddr, peer: IpAddr, port: u16, peer_port: u16, up: usize, down: usize) {
    let listener = TcpListener::bind((host, port)).expect("listening on the lab's host address");
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        s.write_all(&vec![7u8; down]).unwrap();
        got.len()
    });
    let client = peer_socket(env, SocketAddr::new(peer, peer_port), Type::STREAM);
    client.connect(&SocketAddr::new(host, port).into()).expect("connecting from the lab");
    let mut c: TcpStream = client.into();
    c.write_all(&vec![1u8; up]).unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    assert_eq!((server.join().unwrap(), back.len()), (up, down));
}

/// The known traffic: by cumulative bytes, TCP/IPv4 > TCP/IPv6 > UDP/IPv4 >
/// UDP/IPv6 > UDP/IPv4 received only > UDP/IPv6 sent only.
fn traffic(env: &Env) {
    let lab = &env.lab;
    let (h4, p4): (IpAddr, IpAddr) = (lab.host_v4().into(), lab.peer_v4().into());
    let (h6, p6): (IpAddr, IpAddr) = (lab.host_v6().into(), lab.peer_v6().into());
    tcp_exchange(env, h4, p4, 7003, 40003, 100_000, 20_000);
    tcp_exchange(env, h6, p6, 7004, 40004, 50_000, 10_000);
    let host_udp4 = UdpSocket::bind((h4, 7001)).unwrap();
    let host_udp6 = UdpSocket::bind((h6, 7002)).unwrap();
    let _host_in_only = UdpSocket::bind((h4, 7005)).unwrap();
    let peer_udp4: UdpSocket = peer_socket(env, SocketAddr::new(p4, 40001), Type::DGRAM).into();
    let peer_udp6: UdpSocket = peer_socket(env, SocketAddr::new(p6, 40002), Type::DGRAM).into();
    let _peer_out_only: UdpSocket = peer_socket(env, SocketAddr::new(p6, 40006), Type::DGRAM).into();
    for _ in 0..10 {
        peer_udp4.send_to(&[4; 1200], (h4, 7001)).unwrap();
        host_udp4.send_to(&[4; 1200], (p4, 40001)).unwrap();
        peer_udp6.send_to(&[6; 600], (h6, 7002)).unwrap();
        host_udp6.send_to(&[6; 600], (p6, 40002)).unwrap();
    }
    for _ in 0..5 {
        peer_udp4.send_to(&[5; 100], (h4, 7005)).unwrap();
    }
    for _ in 0..3 {
        host_udp6.send_to(&[3; 100], (p6, 40006)).unwrap();
    }
}

fn normalise(env: &Env) -> Normalise {
    let lab = &env.lab;
    Normalise::default()
        .literal(lab.host_if(), "<IFACE>")
        // TC egress is tcx where the kernel has it (6.6+), clsact before.
        .pattern(r"\b(tcx|clsact) egress", "<TC> egress")
        .literal(&lab.host_v4().to_string(), "<HOST4>")
        .literal(&lab.peer_v4().to_string(), "<PEER4>")
        // Whole or shortened in the middle (how much depends on the lab's slot).
        .pattern(r"\[[0-9a-f:…]+\]", "[<V6>]")
        .pattern(r"\b\d+(\.\d+)?[kMGTPE]?B\b", "<BYTES>")
        .pattern(r"\S+ pkts\b", "<N> pkts")
        .pattern(r"peak \S+b/s", "peak <RATE>")
        // TCP's packet counts (UDP's are exact and stay).
        .pattern(r"(?m)^(tcp .*<BYTES>\s+)\d+(\.\d+)?[kM]?", "${1}<N>")
        // The rate history's bars.
        .pattern(r"[▁▂▃▄▅▆▇█]+", "")
        .pattern(r"(?m)^\s*\n", "")
        .fold_padding()
}

/// The screen once it shows the traffic's six rows at rest (every rate 0)
/// twice in a row.
fn settled(tmux: &Tmux, session: &str, norm: &Normalise, rows: usize) -> String {
    // Generous: emulated kernels run this 10-30x slower.
    let end = Instant::now() + Duration::from_secs(180);
    let mut last = String::new();
    loop {
        let screen = norm.apply(&tmux.capture(session));
        let shown = screen.lines().filter(|l| l.starts_with("tcp ") || l.starts_with("udp ")).count();
        let at_rest = screen.contains("in 0pkt/s 0b/s  out 0pkt/s 0b/s");
        if shown == rows && at_rest && screen == last {
            return screen;
        }
        assert!(!screen.contains("exited with"), "netray top ended:\n{screen}");
        assert!(Instant::now() < end, "the screen never settled on {rows} rows:\n{screen}");
        last = screen;
        std::thread::sleep(Duration::from_millis(700));
    }
}

fn wait_for_flows(env: &Env) {
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let st = env.json(&["firewall", "status", "--json"]);
        if st["interfaces"][0]["features"].as_array().is_some_and(|f| f.iter().any(|f| f == "flows")) {
            return;
        }
        assert!(Instant::now() < end, "flow accounting never came up: {st}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn top_screens_at_80x24_and_120x40_read_as_reviewed() {
    let env = Env::new("topscr");
    quiet_link(&env);
    // The link's own start-up chatter (DAD, MLD reports) is over by now.
    std::thread::sleep(Duration::from_secs(3));
    let mut tmux = Tmux::new(env.lab.name());
    let top = format!(
        "{} --pin-dir {} top -i {} --sort bytes --interval 500ms",
        env!("CARGO_BIN_EXE_netray"),
        env.pin.display(),
        env.iface()
    );
    tmux.start("narrow", 80, 24, &top);
    wait_for_flows(&env);
    tmux.start("wide", 120, 40, &top);
    // The second view joins the first one's table: nothing to wait for but its start.
    std::thread::sleep(Duration::from_secs(2));
    traffic(&env);
    let norm = normalise(&env);
    let narrow = settled(&tmux, "narrow", &norm, 6);
    let wide = settled(&tmux, "wide", &norm, 6);

    // The script's view of the same table: flows per direction, and paired.
    let j: Value = env.json(&["top", "-i", env.iface(), "--once", "--json", "--interval", "0", "--sort", "bytes"]);
    let dirs: Vec<&str> = j["conversations"].as_array().unwrap().iter().map(|c| c["direction"].as_str().unwrap()).collect();
    assert_eq!(dirs, ["in/out", "in/out", "in/out", "in/out", "in", "out"], "{j:#}");
    let udp4 = &j["conversations"][2];
    assert_eq!((udp4["local_port"].as_u64(), udp4["remote_port"].as_u64()), (Some(7001), Some(40001)), "{udp4}");
    let frame4 = 14 + 20 + 8 + 1200;
    assert_eq!((udp4["tx"]["packets"].as_u64(), udp4["tx"]["bytes"].as_u64()), (Some(10), Some(10 * frame4)));
    assert_eq!((udp4["rx"]["packets"].as_u64(), udp4["rx"]["bytes"].as_u64()), (Some(10), Some(10 * frame4)));
    assert_eq!(j["flows"].as_array().unwrap().len(), 10, "{j:#}");

    // g groups by service port.
    tmux.keys("narrow", "g");
    let end = Instant::now() + Duration::from_secs(60);
    let ports = loop {
        let s = norm.apply(&tmux.capture("narrow"));
        if s.contains(" ports by bytes") {
            break s;
        }
        assert!(Instant::now() < end, "g did not switch to ports:\n{s}");
        std::thread::sleep(Duration::from_millis(200));
    };

    assert_expected("top-screen-80x24", &narrow);
    assert_expected("top-screen-120x40", &wide);
    assert_expected("top-screen-80x24-ports", &ports);
    for s in ["narrow", "wide"] {
        tmux.keys(s, "q");
    }
    let end = Instant::now() + Duration::from_secs(60);
    for s in ["narrow", "wide"] {
        loop {
            let screen = tmux.capture(s);
            if screen.contains("exited with") {
                assert!(screen.contains("exited with 0"), "{screen}");
                break;
            }
            assert!(Instant::now() < end, "q did not end netray top:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
