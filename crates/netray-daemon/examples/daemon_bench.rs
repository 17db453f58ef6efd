//! Benchmark of the daemon's API against the real kernel (as root):
//! rule adds/s (one rule per request, and batched), reads/s, deletes/s, and
//! the time from a POSTed rule to the first packet it drops in a lab while
//! UDP flows. Every figure is measured in this run.
//!
//!     cargo run --release -p netray-daemon --example daemon_bench [-- N]

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use netray_core::PinDir;
use netray_daemon::{config::Config, Options};
use netray_firewall::Firewall;
use netray_lab::{Family, Lab};

const TOKEN: &str = "bench-token-0123456789abcdef";
/// Single-rule adds per second the daemon should sustain on the 2-core VM.
const TARGET_ADDS_PER_S: f64 = 500.0;

struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(p) = PinDir::resolve(Some(&self.0)) {
            let _ = Firewall::open(p).reset();
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let pin_path = std::path::PathBuf::from(format!("/sys/fs/bpf/netray-daemon-bench-{}", std::process::id()));
    let lab = Lab::up(&netray_lab::unique_name("dbench"))?;
    let _cleanup = Cleanup(pin_path.clone());
    let state = tempfile::tempdir()?;
    let opts = Options {
        pin: PinDir::resolve(Some(&pin_path))?,
        state_dir: state.path().to_path_buf(),
        token: TOKEN.into(),
        body_limit: 1 << 20,
        sse_queue: 1024,
        config: Config::default(),
    };
    let d = netray_daemon::spawn(opts, "127.0.0.1:0".parse()?)?;
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
    let url = |p: &str| format!("http://{}{p}", d.addr);
    let auth = format!("Bearer {TOKEN}");
    let post = |path: &str, body: &str| -> anyhow::Result<String> {
        Ok(agent.post(&url(path)).set("Authorization", &auth).send_string(body)?.into_string()?)
    };
    post("/v1/interfaces", &format!(r#"{{"name": "{}"}}"#, lab.host_if()))?;

    println!("netray daemon bench: {n} rules, loopback HTTP/1.1 keep-alive, 1 client");
    // Adds, one rule per request.
    let t = Instant::now();
    for i in 0..n {
        post("/v1/rules", &format!(r#"{{"cidr": "10.{}.{}.0/24"}}"#, i / 256, i % 256))?;
    }
    let add1 = n as f64 / t.elapsed().as_secs_f64();
    let verdict = if add1 >= TARGET_ADDS_PER_S { "met" } else { "MISSED" };
    println!(
        "  add, 1 rule/request:      {add1:>9.0} rules/s  ({:.2} ms/request; target >= {TARGET_ADDS_PER_S:.0}/s: {verdict})",
        1e3 / add1
    );

    // Adds, batched (one request with n rules, the table recompiled once).
    let batch: Vec<String> = (0..n).map(|i| format!(r#"{{"cidr": "172.{}.{}.0/24"}}"#, 16 + i / 256, i % 256)).collect();
    let body = format!("[{}]", batch.join(","));
    let t = Instant::now();
    post("/v1/rules", &body)?;
    let addb = n as f64 / t.elapsed().as_secs_f64();
    println!("  add, {n} rules/request: {addb:>9.0} rules/s");

    // Reads.
    let reads = 2000;
    let t = Instant::now();
    for _ in 0..reads {
        agent.get(&url("/healthz")).call()?.into_string()?;
    }
    println!("  GET /healthz:             {:>9.0} reads/s", reads as f64 / t.elapsed().as_secs_f64());
    let reads = 200;
    let t = Instant::now();
    for _ in 0..reads {
        agent.get(&url("/v1/rules")).call()?.into_string()?;
    }
    println!("  GET /v1/rules ({} rules): {:>9.0} reads/s", 2 * n, reads as f64 / t.elapsed().as_secs_f64());
    let t = Instant::now();
    for _ in 0..reads {
        agent.get(&url("/metrics")).call()?.into_string()?;
    }
    println!("  GET /metrics:             {:>9.0} scrapes/s", reads as f64 / t.elapsed().as_secs_f64());

    // Deletes.
    let t = Instant::now();
    for id in 1..=n {
        agent.delete(&url(&format!("/v1/rules/{id}"))).set("Authorization", &auth).call()?.into_string()?;
    }
    let del = n as f64 / t.elapsed().as_secs_f64();
    println!("  delete, 1 rule/request:   {del:>9.0} rules/s");

    // The same operations without HTTP (what the CLI does), for comparison.
    let fw = Firewall::open(PinDir::resolve(Some(&pin_path))?);
    let k = 50;
    let t = Instant::now();
    for i in 0..k {
        fw.add(&[netray_firewall::Rule::parse(&format!("10.200.{i}.0/24"), None, None, None)?])?;
    }
    println!("  Firewall::add (no HTTP):  {:>9.2} ms/rule   ({} rules in the table)", t.elapsed().as_secs_f64() * 1e3 / k as f64, n + k);
    let t = Instant::now();
    for _ in 0..k {
        fw.list()?;
    }
    println!("  Firewall::list (no HTTP): {:>9.2} ms/read", t.elapsed().as_secs_f64() * 1e3 / k as f64);
    let ids: Vec<u32> = fw.list()?.iter().map(|r| r.id).collect();
    fw.delete_ids(&ids)?;

    // POST to first drop, while the peer sends UDP as fast as it can.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let lab = Arc::new(lab);
    let sender = {
        let (stop, sent, lab) = (Arc::clone(&stop), Arc::clone(&sent), Arc::clone(&lab));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(k) = lab.udp_send(Family::V4, 9, 32, 200) {
                    sent.fetch_add(k, Ordering::Relaxed);
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let s0 = sent.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(500));
    let pps = (sent.load(Ordering::Relaxed) - s0) as f64 / t.elapsed().as_secs_f64();
    println!("  lab UDP load: {pps:.0} packets/s");
    let peer = lab.peer_v4();
    let mut posts = Vec::new();
    let mut drops = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let r = post("/v1/rules", &format!(r#"{{"cidr": "{peer}", "proto": "udp"}}"#))?;
        let posted = t.elapsed();
        let v: serde_json::Value = serde_json::from_str(&r)?;
        let id = v["added"][0]["id"].as_u64().unwrap_or(0) as u32;
        let first = loop {
            if fw.list()?.iter().any(|r| r.id == id && r.packets > 0) {
                break t.elapsed();
            }
            if t.elapsed() > Duration::from_secs(5) {
                anyhow::bail!("no drop within 5 s");
            }
        };
        posts.push(posted);
        drops.push(first);
        agent.delete(&url(&format!("/v1/rules/{id}"))).set("Authorization", &auth).call()?;
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sender.join();
    posts.sort();
    drops.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "  POST /v1/rules answered:  min {:.2} ms, median {:.2} ms, max {:.2} ms",
        ms(posts[0]), ms(posts[posts.len() / 2]), ms(posts[posts.len() - 1])
    );
    println!(
        "  POST sent -> first drop:  min {:.2} ms, median {:.2} ms, max {:.2} ms (7 runs; resolution ~{:.2} ms at the lab's rate)",
        ms(drops[0]), ms(drops[drops.len() / 2]), ms(drops[drops.len() - 1]), 1e3 / pps.max(1.0)
    );
    drop(d);
    Ok(())
}
