//! `netray bench ipfix`: what the IPFIX exporter sustains, in userspace.
//!
//! For each flow count, every flow of a synthetic table (the shape the kernel
//! table is read into) gets new packets each round and is due at once (a
//! 1 ns active timeout), so each round exports one record per flow: the meter
//! computes the deltas, the queue hands them to the sender thread, which
//! encodes them and sends them over UDP to a socket of the benchmark's on
//! 127.0.0.1. Measured: records/s from the first export to the last message
//! leaving, and the exporter's CPU time (process CPU less the receiver
//! thread's) per 1,000 flows per round. The baseline, in the same run: the
//! same messages, already encoded, sent by one thread in a loop — the cost
//! of the system calls alone.

use std::{
    net::{Ipv4Addr, UdpSocket},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use netray_flows::{Direction, Flow, FlowKey, Snapshot, TableCounters};
use netray_ipfix::{encode::Encoder, ExportConfig, Exporter, Timeouts};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct IpfixRow {
    pub flows: usize,
    pub rounds: usize,
    pub records: u64,
    pub records_per_sec: f64,
    /// Exporter CPU (meter + queue + encode + send) per 1,000 flows per round.
    pub cpu_us_per_1000_flows: f64,
    pub cpu_ns_per_record: f64,
    /// Baseline: sending the same messages pre-encoded, per record.
    pub raw_send_ns_per_record: f64,
    pub messages_received: u64,
    pub messages_sent: u64,
    pub dropped: u64,
}

fn cpu_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec to fill.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn flows(n: usize, round: u64, now: u64) -> Vec<Flow> {
    (0..n)
        .map(|i| Flow {
            key: FlowKey {
                ifindex: 2,
                direction: Direction::Ingress,
                proto: 17,
                src: Ipv4Addr::from(0x0a00_0000 + i as u32).into(),
                dst: Ipv4Addr::new(192, 0, 2, 1).into(),
                sport: 1024 + (i % 60000) as u16,
                dport: 53,
            },
            packets: round * 10,
            bytes: round * 1000,
            dropped: 0,
            bytes_dropped: 0,
            first_seen_ns: 1,
            last_seen_ns: now,
            last_dropped: false,
            last_rule: None,
        })
        .collect()
}

/// A receiver on 127.0.0.1 counting messages, and its thread's CPU time.
struct Receiver {
    socket_addr: std::net::SocketAddr,
    messages: Arc<AtomicU64>,
    cpu: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    fn start() -> anyhow::Result<Receiver> {
        let s = UdpSocket::bind("127.0.0.1:0")?;
        // A large receive buffer: the benchmark measures the sender, not
        // the loopback queue.
        let size: libc::c_int = 64 << 20;
        // SAFETY: a valid socket and a c_int option value.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&s),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                &size as *const _ as *const libc::c_void,
                size_of::<libc::c_int>() as u32,
            )
        };
        s.set_read_timeout(Some(Duration::from_millis(50)))?;
        let r = Receiver {
            socket_addr: s.local_addr()?,
            messages: Arc::default(),
            cpu: Arc::default(),
            stop: Arc::default(),
        };
        let (m, cpu, stop) = (Arc::clone(&r.messages), Arc::clone(&r.cpu), Arc::clone(&r.stop));
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                if s.recv(&mut buf).is_ok() {
                    m.fetch_add(1, Ordering::Relaxed);
                }
                cpu.store(cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID), Ordering::Relaxed);
            }
        });
        Ok(r)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub fn run(flow_counts: &[usize], rounds: usize, progress: &mut dyn FnMut(&str)) -> anyhow::Result<Vec<IpfixRow>> {
    let mut out = Vec::new();
    for &n in flow_counts {
        let rx = Receiver::start().context("the benchmark's UDP receiver")?;
        let mut cfg = ExportConfig::new(&rx.socket_addr.to_string());
        cfg.timeouts = Timeouts { active: Duration::from_nanos(1), idle: Duration::from_secs(3600) };
        cfg.queue_records = n * (rounds + 1);
        let exporter = Exporter::start(cfg)?;
        let mut meter = exporter.meter("bench0");
        let snap = |round: u64| Snapshot {
            interface: "bench0".into(),
            ifindex: 2,
            taken_ns: netray_core::clock::monotonic_ns(),
            totals: Default::default(),
            table: TableCounters::default(),
            flows: flows(n, round, netray_core::clock::monotonic_ns()),
        };
        // Round 0 makes the meter know every flow; it is not timed.
        exporter.export(&mut meter, &snap(1), false);
        let first = n as u64;
        while exporter.stats().records_sent + exporter.stats().dropped_send_failed < first {
            std::thread::sleep(Duration::from_millis(5));
        }
        let snaps: Vec<Snapshot> = (2..2 + rounds as u64).map(snap).collect();
        let (cpu0, rx0) = (cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID), rx.cpu.load(Ordering::Relaxed));
        let t0 = Instant::now();
        for s in &snaps {
            exporter.export(&mut meter, s, false);
        }
        let want = first + (n * rounds) as u64;
        let deadline = Instant::now() + Duration::from_secs(120);
        while exporter.stats().records_sent + exporter.stats().dropped_send_failed + exporter.stats().dropped_queue_full
            < want
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_micros(200));
        }
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID) - cpu0;
        let rx_cpu = rx.cpu.load(Ordering::Relaxed).saturating_sub(rx0);
        let st = exporter.finish(Duration::from_secs(5));
        let records = st.records_sent - first;
        let exporter_cpu = cpu.saturating_sub(rx_cpu) as f64;

        // Baseline: the same records' messages, encoded once, sent in a loop.
        let mut enc = Encoder::new(0, 1400);
        let mut sample = Vec::new();
        let mut m = exporter.meter("bench0");
        m.update(&snap(1), true, &mut sample);
        let messages = enc.messages(&sample, 0, false);
        let raw = UdpSocket::bind("127.0.0.1:0")?;
        raw.connect(rx.socket_addr)?;
        let c0 = cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID);
        for _ in 0..rounds {
            for msg in &messages {
                let _ = raw.send(msg);
            }
        }
        let raw_ns = (cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID) - c0) as f64 / (n * rounds) as f64;
        std::thread::sleep(Duration::from_millis(100));
        let row = IpfixRow {
            flows: n,
            rounds,
            records,
            records_per_sec: records as f64 / wall,
            cpu_us_per_1000_flows: exporter_cpu / 1e3 / rounds as f64 / (n as f64 / 1000.0),
            cpu_ns_per_record: exporter_cpu / records.max(1) as f64,
            raw_send_ns_per_record: raw_ns,
            messages_received: rx.messages.load(Ordering::Relaxed),
            messages_sent: st.messages_sent,
            dropped: st.dropped_queue_full + st.dropped_send_failed + st.dropped_at_exit,
        };
        progress(&format!(
            "{:>7} flows: {:>9.0} records/s, {:>7.1} us CPU per 1,000 flows per export ({:.0} ns/record; \
             raw send of the same messages {:.0} ns/record, {:.1}x); {} lost",
            row.flows,
            row.records_per_sec,
            row.cpu_us_per_1000_flows,
            row.cpu_ns_per_record,
            row.raw_send_ns_per_record,
            row.cpu_ns_per_record / row.raw_send_ns_per_record.max(1e-9),
            row.dropped
        ));
        out.push(row);
    }
    Ok(out)
}
