//! `netray bench drops`: the cost per kernel drop of tracing it. In a
//! throwaway lab, UDP datagrams go from the lab's namespace to a closed port
//! of the host end, each dropped by the host's stack (NO_SOCKET) on the
//! sending CPU before the send returns; rounds without and with a `netray
//! drops -i HOST_END` session alternate in one run, and the fastest round of
//! each counts (noise only adds time).

use std::{
    fmt,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::{DropsSession, DropsSpec};

const PORT: u16 = 9;

#[derive(Debug, Clone, Serialize)]
pub struct DropsBench {
    pub drops_per_round: u64,
    pub rounds: usize,
    /// How the tracer attached ("tp_btf/kfree_skb", ...).
    pub way: String,
    /// Best nanoseconds per dropped datagram (send + drop), without and with tracing.
    pub untraced_ns: f64,
    pub traced_ns: f64,
    /// Drops the traced rounds reported and the ring could not take.
    pub reported: u64,
    pub lost: u64,
}

/// Runs `rounds` rounds of each kind, `n` datagrams per round.
pub fn run(n: u64, rounds: usize) -> anyhow::Result<DropsBench> {
    anyhow::ensure!(n > 0 && rounds > 0, "drops and rounds must be positive");
    let lab = netray_lab::Lab::up(&netray_lab::unique_name("drb"))?;
    let dst = SocketAddrV4::new(lab.host_v4(), PORT);
    let send = |count: u64| -> anyhow::Result<Duration> {
        Ok(lab.in_netns(move || -> std::io::Result<Duration> {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
            let t = Instant::now();
            for _ in 0..count {
                s.send_to(b"bench", dst)?;
            }
            Ok(t.elapsed())
        })??)
    };
    send(n.min(10_000))?; // warm up: neighbour entry, caches
    let (mut untraced, mut traced) = (f64::INFINITY, f64::INFINITY);
    let (mut reported, mut lost, mut way) = (0, 0, String::new());
    for _ in 0..rounds {
        untraced = untraced.min(send(n)?.as_nanos() as f64 / n as f64);
        let tracer = Tracer::start(lab.host_if())?;
        way = tracer.way.clone();
        traced = traced.min(send(n)?.as_nanos() as f64 / n as f64);
        let (r, l) = tracer.stop()?;
        reported += r;
        lost += l;
    }
    Ok(DropsBench { drops_per_round: n, rounds, way, untraced_ns: untraced, traced_ns: traced, reported, lost })
}

/// A drops session on a thread of its own (its rings live there), reading
/// as `netray drops --stats` does, until stopped.
struct Tracer {
    stop: Arc<AtomicBool>,
    done: mpsc::Receiver<anyhow::Result<(u64, u64)>>,
    way: String,
}

impl Tracer {
    fn start(iface: &str) -> anyhow::Result<Tracer> {
        let spec = DropsSpec {
            iface: Some(iface.to_string()),
            expression: format!("udp port {PORT}"),
            snaplen: 128,
            ring_bytes: 8 << 20,
            ..Default::default()
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let (done_tx, done) = mpsc::sync_channel(1);
        let flag = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut session = match DropsSession::start(None, &spec) {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(s.attach_way().to_string()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let mut run = || -> anyhow::Result<(u64, u64)> {
                while !flag.load(Ordering::Relaxed) {
                    session.poll(Duration::from_millis(50), &mut |_| true)?;
                }
                session.poll(Duration::ZERO, &mut |_| true)?;
                let s = session.stats()?;
                Ok((s.kernel.reported, s.kernel.lost))
            };
            let _ = done_tx.send(run());
        });
        let way = ready_rx.recv().map_err(|_| anyhow::anyhow!("the drops thread ended before starting"))??;
        Ok(Tracer { stop, done, way })
    }

    fn stop(self) -> anyhow::Result<(u64, u64)> {
        // The last datagrams may still be on their way to the ring.
        std::thread::sleep(Duration::from_millis(100));
        self.stop.store(true, Ordering::Relaxed);
        self.done.recv().map_err(|_| anyhow::anyhow!("the drops thread ended early"))?
    }
}

impl fmt::Display for DropsBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "netray drops: cost per kernel drop (UDP to a closed port in a lab, {} per round, best of {} rounds)",
            self.drops_per_round, self.rounds
        )?;
        writeln!(f, "  without netray drops            {:>8.0} ns per drop (send + drop)", self.untraced_ns)?;
        writeln!(
            f,
            "  with netray drops ({:<16}) {:>8.0} ns per drop  (+{:.0} ns, {:.2}x)",
            self.way,
            self.traced_ns,
            self.traced_ns - self.untraced_ns,
            self.traced_ns / self.untraced_ns
        )?;
        writeln!(f, "  traced rounds: {} drops reported, {} lost (ring full)", self.reported, self.lost)
    }
}
