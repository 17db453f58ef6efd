//! Shared pieces of the end-to-end tests: a lab and a private pin directory
//! per test (both removed on drop, also when the test panics), and a way to
//! run the real `netray` binary against them.

#![allow(dead_code)]

pub mod expected;

/// Header sizes of the frames the lab sends, in bytes.
pub mod sizes {
    pub const ETH: u64 = 14;
    pub const IP4: u64 = 20;
    pub const IP6: u64 = 40;
    pub const UDP: u64 = 8;
    pub const TCP: u64 = 20;
    /// ICMP echo header + the lab's default 64-byte payload.
    pub const ECHO: u64 = 8 + 64;
}

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Output},
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

use netray_lab::Lab;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{IpAddr, SocketAddr};

static N: AtomicU32 = AtomicU32::new(0);

pub struct Env {
    pub lab: Lab,
    pub pin: PathBuf,
}

impl Env {
    pub fn new(tag: &str) -> Env {
        assert_eq!(unsafe { libc::geteuid() }, 0, "end-to-end tests need root: run `make test` as root");
        let lab = Lab::up(&netray_lab::unique_name(tag)).expect("creating the lab");
        let pin = PathBuf::from(format!(
            "/sys/fs/bpf/netray-e2e-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        Env { lab, pin }
    }

    pub fn iface(&self) -> &str {
        self.lab.host_if()
    }

    /// Waits (30 s at most: emulated kernels) until `feature` is on at the
    /// lab's interface, as `firewall status --json` lists them.
    pub fn wait_for_feature(&self, feature: &str) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            let st = self.json(&["firewall", "status", "--json"]);
            if st["interfaces"][0]["features"].as_array().is_some_and(|f| f.iter().any(|x| x == feature)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{feature} never came up");
    }

    /// Sends `n` UDP echo requests of `family` from the lab's namespace (500
    /// a second); how many were answered.
    pub fn udp_answered(&self, family: netray_lab::Family, n: u64) -> u64 {
        use netray_lab::{Proto, TrafficSpec};
        let spec = TrafficSpec {
            duration: None,
            count: Some(n),
            pps: 500,
            protos: vec![Proto::Udp],
            family,
            timeout: std::time::Duration::from_millis(500),
            ..TrafficSpec::default()
        };
        self.lab.traffic(&spec).unwrap().answered(Proto::Udp, family)
    }

    /// `netray --pin-dir <pin> args...`
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_netray"));
        c.arg("--pin-dir").arg(&self.pin).args(args);
        c
    }

    /// `netray --pin-dir <pin> dump -i <the lab's interface> args...`
    pub fn dump(&self, args: &[&str]) -> Command {
        self.cmd(&[&["dump", "-i", self.iface()], args].concat())
    }

    /// Runs netray and insists it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().expect("running netray");
        assert!(
            out.status.success(),
            "netray {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs netray and insists it fails with exactly one error line.
    pub fn fails(&self, args: &[&str]) -> String {
        let out: Output = self.cmd(args).output().expect("running netray");
        assert!(!out.status.success(), "netray {args:?} should have failed");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.starts_with("netray: error: "), "unexpected stderr for {args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line expected for {args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        err
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).expect("valid JSON")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_netray"))
            .arg("--pin-dir")
            .arg(&self.pin)
            .args(["firewall", "detach", "--all"])
            .output();
        let _ = std::fs::remove_dir_all(&self.pin);
    }
}

/// A child's stderr (spawned with `Stdio::piped()`), collected by a thread as it comes,
/// so the test can look at it while the child runs and after it ended.
#[derive(Clone)]
pub struct StderrLog(Arc<Mutex<String>>);

impl StderrLog {
    pub fn collect(child: &mut Child) -> StderrLog {
        let log = StderrLog(Arc::default());
        let sink = Arc::clone(&log.0);
        let pipe = child.stderr.take().expect("stderr piped");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        log
    }

    pub fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    /// Waits (90 s at most) until `marker` shows, e.g. dump's "capturing" once its
    /// programs are in place; panics if the child exits first.
    pub fn wait_for(&self, child: &mut Child, marker: &str) {
        let t = Instant::now();
        while !self.text().contains(marker) {
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(50));
                panic!("netray exited early ({status}): {}", self.text());
            }
            // A bound, not a delay: attaching the monitor took over 20 s on emulated 6.1.
            assert!(t.elapsed() < Duration::from_secs(90), "no '{marker}' from netray within 90 s: {}", self.text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything, once the child has ended (the thread has read to the end).
    pub fn after_exit(&self) -> String {
        std::thread::sleep(Duration::from_millis(50));
        self.text()
    }
}

/// `netray args...` with no lab and the default pin directory: for what
/// needs neither (help, parse errors, exec).
/// `tshark -r path -T fields` with these fields: one row of values per packet.
pub fn tshark_fields(path: &std::path::Path, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(path).args(["-T", "fields", "-E", "separator=|"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("tshark is needed for this test (setup/deps.sh installs it)");
    assert!(out.status.success(), "tshark -r {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| l.split('|').map(str::to_string).collect()).collect()
}

pub fn netray(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netray")).args(args).output().expect("running netray")
}

/// `netray ARGS...` as user nobody (uid and gid 65534, no groups, `setpriv`).
/// It runs a copy in a directory of its own that anyone may enter: the
/// checkout may sit where nobody cannot (a `mktemp -d` clone is mode 0700).
pub fn netray_as_nobody(args: &[&str]) -> Output {
    use std::os::unix::fs::PermissionsExt;
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("netray-nobody-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).expect("a directory for nobody's copy of netray");
    // Removed on return, also when setpriv is missing and the test panics.
    struct Gone(std::path::PathBuf);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let gone = Gone(dir);
    std::fs::set_permissions(&gone.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = gone.0.join("netray");
    std::fs::copy(env!("CARGO_BIN_EXE_netray"), &bin).expect("copying netray for nobody");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(args)
        .output()
        .expect("setpriv (util-linux) runs netray as nobody")
}

/// Whether `netray features` found the capability `name` on this kernel (probed
/// once per test binary): tests expect what netray will choose, never a version.
pub fn kernel_has(name: &str) -> bool {
    static FEATURES: OnceLock<serde_json::Value> = OnceLock::new();
    let v = FEATURES.get_or_init(|| {
        let out = Command::new(env!("CARGO_BIN_EXE_netray")).args(["features", "--json"]).output().expect("running netray");
        assert!(out.status.success(), "netray features: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("netray features --json")
    });
    v["features"].as_array().expect("a feature list").iter().any(|f| f["name"] == name && f["available"] == true)
}

/// How netray attaches its TC programs here: a tcx link where the kernel has tcx, else a clsact filter.
pub fn tc_backend() -> &'static str {
    if kernel_has("tcx") {
        "tcx"
    } else {
        "clsact"
    }
}

/// A whole TCP connection from the lab's peer to the host on `port`: the
/// handshake, "hello" one way and "world" back (PSH), both ends closing (FIN).
pub fn tcp_exchange(env: &Env, port: u16) {
    use std::io::{Read, Write};
    let host = SocketAddr::new(env.lab.host_v4().into(), port);
    let listener = std::net::TcpListener::bind(host).expect("listening on the lab's host address");
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().expect("accepting the lab's connection");
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).unwrap();
        c.write_all(b"world").unwrap();
    });
    env.lab
        .in_netns(move || {
            let mut c = std::net::TcpStream::connect_timeout(&host, Duration::from_secs(60)).expect("connecting");
            c.write_all(b"hello").unwrap();
            let mut buf = Vec::new();
            c.read_to_end(&mut buf).unwrap();
            assert_eq!(buf, b"world");
        })
        .unwrap();
    server.join().unwrap();
}

/// Sends `n` bare TCP SYN segments (20-byte header, no options) from the
/// namespace to the host end, on a raw socket: exactly `n` packets of a
/// known size, whatever the host answers.
pub fn tcp_syns(env: &Env, v6: bool, sport: u16, dport: u16, n: u64) {
    let dst: IpAddr = if v6 { env.lab.host_v6().into() } else { env.lab.host_v4().into() };
    env.lab
        .in_netns(move || {
            let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
            let s = Socket::new(domain, Type::RAW, Some(Protocol::TCP)).expect("raw TCP socket");
            let mut seg = [0u8; 20];
            seg[0..2].copy_from_slice(&sport.to_be_bytes());
            seg[2..4].copy_from_slice(&dport.to_be_bytes());
            seg[4..8].copy_from_slice(&1u32.to_be_bytes());
            seg[12] = 5 << 4; // data offset: 5 words
            seg[13] = 0x02; // SYN
            seg[14..16].copy_from_slice(&1024u16.to_be_bytes());
            let to = SockAddr::from(SocketAddr::new(dst, 0));
            for _ in 0..n {
                assert_eq!(s.send_to(&seg, &to).expect("sending a SYN"), 20);
            }
        })
        .unwrap();
}
