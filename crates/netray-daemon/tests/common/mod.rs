//! Shared pieces of the daemon's tests: a lab, a private pin directory
//! (/sys/fs/bpf/netray-daemon-test-<pid>-<n>), a state directory in a
//! tempdir and a daemon on a free loopback port — all removed on drop, also
//! when the test panics — and a small blocking HTTP client.

#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use netray_core::PinDir;
use netray_daemon::{config::Config, DaemonHandle, Options};
use netray_firewall::Firewall;
use netray_lab::Lab;
use serde_json::Value;

static N: AtomicU32 = AtomicU32::new(0);

pub const TOKEN: &str = "test-token-0123456789abcdef";

/// A private pin directory, removed (with everything attached from it) on drop.
pub struct Pins {
    pub path: PathBuf,
}

impl Pins {
    pub fn new() -> Pins {
        assert_eq!(unsafe { libc::geteuid() }, 0, "the daemon's tests need root: run them as root");
        let path = PathBuf::from(format!(
            "/sys/fs/bpf/netray-daemon-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        Pins { path }
    }

    pub fn pin(&self) -> PinDir {
        PinDir::resolve(Some(&self.path)).expect("pin dir")
    }

    pub fn firewall(&self) -> Firewall {
        Firewall::open(self.pin())
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        if let Ok(p) = PinDir::resolve(Some(&self.path)) {
            let _ = Firewall::open(p).reset();
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

pub struct Env {
    // Drop order: the daemon, then the pins, then the lab.
    pub daemon: Option<DaemonHandle>,
    pub pins: Pins,
    pub state: tempfile::TempDir,
    pub lab: Lab,
}

impl Env {
    pub fn new(tag: &str) -> Env {
        Env::with_config(tag, Config::default())
    }

    pub fn with_config(tag: &str, config: Config) -> Env {
        let pins = Pins::new();
        let lab = Lab::up(&netray_lab::unique_name(tag)).expect("creating the lab");
        let state = tempfile::tempdir().expect("tempdir");
        let mut env = Env { daemon: None, pins, state, lab };
        env.start(config);
        env
    }

    pub fn options(&self, config: Config) -> Options {
        Options {
            pin: self.pins.pin(),
            state_dir: self.state.path().to_path_buf(),
            token: TOKEN.to_string(),
            body_limit: config.body_limit.unwrap_or(64 * 1024),
            sse_queue: config.sse_queue.unwrap_or(1024),
            config,
        }
    }

    pub fn start(&mut self, config: Config) {
        self.start_on(config, "127.0.0.1:0".parse().unwrap());
    }

    pub fn start_on(&mut self, config: Config, listen: std::net::SocketAddr) {
        let opts = self.options(config);
        self.daemon = Some(netray_daemon::spawn(opts, listen).expect("starting the daemon"));
    }

    pub fn stop(&mut self) {
        if let Some(d) = self.daemon.take() {
            d.stop();
        }
    }

    pub fn iface(&self) -> &str {
        self.lab.host_if()
    }

    pub fn client(&self) -> Client {
        Client { base: format!("http://{}", self.daemon.as_ref().expect("running").addr) }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub etag: Option<String>,
    pub content_type: String,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// Asserts a JSON error with this status, and returns its message.
    pub fn error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "expected {status}: {}", self.text);
        assert!(self.content_type.starts_with("application/json"), "error not JSON: {self:?}");
        let v = self.json();
        let e = v["error"].as_str().unwrap_or_else(|| panic!("no error field: {v}")).to_string();
        assert!(!e.is_empty());
        e
    }

    pub fn revision(&self) -> u64 {
        let v = self.json();
        let rev = v["revision"].as_u64().unwrap_or_else(|| panic!("no revision: {v}"));
        assert_eq!(self.etag.as_deref(), Some(format!("\"{rev}\"").as_str()), "ETag must carry the revision");
        rev
    }
}

pub struct Client {
    pub base: String,
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build()
}

impl Client {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn request(&self, method: &str, path: &str, auth: Option<&str>, if_match: Option<&str>, body: Option<&str>) -> Resp {
        let mut req = agent().request(method, &self.url(path));
        if let Some(t) = auth {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        if let Some(m) = if_match {
            req = req.set("If-Match", m);
        }
        let res = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(b),
            None => req.call(),
        };
        let resp = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        Resp {
            status: resp.status(),
            etag: resp.header("etag").map(str::to_string),
            content_type: resp.content_type().to_string(),
            text: resp.into_string().unwrap_or_default(),
        }
    }

    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, None, None, None)
    }

    /// A GET with the token.
    pub fn get_auth(&self, path: &str) -> Resp {
        self.request("GET", path, Some(TOKEN), None, None)
    }

    pub fn post(&self, path: &str, body: &str) -> Resp {
        self.request("POST", path, Some(TOKEN), None, Some(body))
    }

    pub fn delete(&self, path: &str) -> Resp {
        self.request("DELETE", path, Some(TOKEN), None, None)
    }

    /// Opens an event stream (with the token); events are read with [`Sse::next`].
    pub fn sse(&self, path: &str) -> Sse {
        let resp = ureq::AgentBuilder::new()
            .timeout_read(Duration::from_secs(20))
            .build()
            .get(&self.url(path))
            .set("Authorization", &format!("Bearer {TOKEN}"))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(resp.content_type(), "text/event-stream");
        Sse { reader: BufReader::new(Box::new(resp.into_reader())) }
    }
}

pub struct Sse {
    reader: BufReader<Box<dyn Read + Send + Sync>>,
}

impl Sse {
    /// The next event as (event name, data); None when the stream ends.
    pub fn next(&mut self) -> Option<(String, String)> {
        let (mut event, mut data) = (String::new(), String::new());
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if !data.is_empty() || !event.is_empty() {
                    return Some((event, data));
                }
                continue;
            }
            if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
    }
}

/// Polls `f` until it returns Some, for at most `timeout`.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The daemon as a process of its own (netray-daemon-test-bin), for tests
/// that kill it or limit its resources; killed on drop.
pub struct Proc {
    pub child: Child,
    pub client: Client,
}

impl Proc {
    pub fn start(pins: &Pins, state: &Path) -> Proc {
        Proc::start_with(pins, state, &[])
    }

    /// Starts it behind `wrapper` (e.g. `prlimit --nofile=256`).
    pub fn start_with(pins: &Pins, state: &Path, wrapper: &[&str]) -> Proc {
        Proc::start_env(pins, state, wrapper, &[])
    }

    /// ... with environment variables set.
    pub fn start_env(pins: &Pins, state: &Path, wrapper: &[&str], env: &[(&str, &str)]) -> Proc {
        let bin = env!("CARGO_BIN_EXE_netray-daemon-test-bin");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = cmd
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--pin-dir")
            .arg(&pins.path)
            .arg("--state-dir")
            .arg(state)
            .arg("--token-file")
            .arg(state.join("token"))
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the daemon");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
        Proc { client: Client { base: format!("http://{addr}") }, child }
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }

    /// Open file descriptors and resident memory (KiB) of the daemon now.
    pub fn fds_and_rss(&self) -> (usize, u64) {
        let pid = self.child.id();
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("/proc/PID/fd").count();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
        let rss = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        (fds, rss)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A state directory holding the test token (mode 0600).
pub fn state_dir_with_token() -> tempfile::TempDir {
    let state = tempfile::tempdir().expect("tempdir");
    let path = state.path().join("token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    state
}
