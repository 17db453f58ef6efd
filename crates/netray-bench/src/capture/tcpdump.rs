//! tcpdump, the tool netray is measured against: started on the interface,
//! stopped with SIGINT, its closing counts read back.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

#[derive(Debug, Default)]
pub(super) struct TcpdumpSummary {
    pub(super) captured: u64,
    pub(super) received_by_filter: u64,
    pub(super) dropped_by_kernel: u64,
    pub(super) dropped_by_interface: u64,
    pub(super) lines: Vec<String>,
    /// User + system CPU time of the tcpdump process, from wait4.
    pub(super) cpu_time: Duration,
}

/// A running `tcpdump -w`; killed if dropped before [`Tcpdump::stop`].
pub(super) struct Tcpdump {
    child: Option<Child>,
    stderr: mpsc::Receiver<String>,
}

pub(super) fn tcpdump_version() -> anyhow::Result<String> {
    let out = Command::new("tcpdump").arg("--version").output().map_err(|e| {
        anyhow::anyhow!("tcpdump is needed to compare against ({e}); install it (setup/deps.sh, or apt-get install tcpdump)")
    })?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    Ok(text.lines().next().unwrap_or("tcpdump").trim().to_string())
}

impl Tcpdump {
    pub(super) fn start(iface: &str, path: &Path) -> anyhow::Result<Tcpdump> {
        let mut child = Command::new("tcpdump")
            .args(["-i", iface, "-w"])
            .arg(path)
            .args(["-s", "262144", "-n"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting tcpdump")?;
        let stderr = child.stderr.take().context("tcpdump's stderr")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let td = Tcpdump {
            child: Some(child),
            stderr: rx,
        };
        // Wait for "listening on ...": only then is the socket bound.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match td
                .stderr
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) if line.contains("listening on") => return Ok(td),
                Ok(_) => {}
                Err(_) => bail!("tcpdump did not start listening on {iface} within 10 s"),
            }
        }
    }

    pub(super) fn stop(&mut self) -> anyhow::Result<TcpdumpSummary> {
        let child = self.child.take().context("tcpdump already stopped")?;
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let (status, cpu_time) = wait_with_rusage(&child).context("waiting for tcpdump")?;
        let mut s = TcpdumpSummary { cpu_time, ..TcpdumpSummary::default() };
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(2)) {
            let n = || {
                line.split_whitespace()
                    .next()
                    .and_then(|w| w.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            if line.ends_with("packets captured") || line.ends_with("packet captured") {
                s.captured = n();
            } else if line.contains("received by filter") {
                s.received_by_filter = n();
            } else if line.contains("dropped by kernel") {
                s.dropped_by_kernel = n();
            } else if line.contains("dropped by interface") {
                s.dropped_by_interface = n();
            } else {
                continue;
            }
            s.lines.push(line);
        }
        if s.lines.is_empty() {
            bail!("tcpdump exited ({status}) without its packet counts");
        }
        Ok(s)
    }
}

/// Waits for the child and returns its exit status and the CPU time it used.
fn wait_with_rusage(child: &Child) -> std::io::Result<(i32, Duration)> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: status and usage are valid for wait4 to write.
        let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
        if r >= 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok((status, tv(usage.ru_utime) + tv(usage.ru_stime)))
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
