//! Per-packet cost of the TC programs (bpf/tc_dispatch.h), against an empty
//! TC program, all measured in one run with BPF_PROG_TEST_RUN on the same
//! 60-byte UDP/IPv4 frame as the XDP benchmark.
//!
//! The egress program enforces "out" rules (destination), so the rule sets
//! here are the XDP benchmark's block lists turned into "out" rules, and the
//! frame's destination is an address inside the most specific rule.

use std::{mem::MaybeUninit, path::PathBuf};

use anyhow::Context as _;
use libbpf_rs::{
    skel::{OpenSkel, SkelBuilder},
    ProgramMut,
};
use netray_core::{
    map_names as M,
    map_pins::configure_maps,
    maps, Feature, PinDir,
};
use netray_ebpf::{abi::nr_if_config, bench_tc::BenchTcSkelBuilder};
use netray_firewall::{rule::Direction, tables::ensure_tables, Firewall, FwCapacity, Rule};
use rand::{rngs::StdRng, SeedableRng};
use serde::Serialize;

use crate::rulegen;

const FAKE_IFINDEX: u32 = 999_997;

#[derive(Debug, Clone, Serialize)]
pub struct TcRow {
    pub name: String,
    pub rules: usize,
    pub ns: f64,
    /// ns / empty TC program
    pub ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TcReport {
    pub frame_bytes: usize,
    pub repeat: u32,
    pub rounds: usize,
    pub empty_ns: f64,
    pub rows: Vec<TcRow>,
}

/// Removes the benchmark's pins on drop.
struct BenchPin(PinDir);

impl Drop for BenchPin {
    fn drop(&mut self) {
        let _ = self.0.remove_all();
    }
}

/// Runs the TC benchmark; `progress` receives a line per figure.
pub fn run(
    repeat: u32,
    rounds: usize,
    rule_counts: &[usize],
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<TcReport> {
    netray_core::probe::require_bpf()?;
    let pin = BenchPin(PinDir::resolve(Some(&PathBuf::from(format!(
        "/sys/fs/bpf/netray-bench-tc-{}",
        std::process::id()
    ))))?);
    let largest = rule_counts.iter().copied().max().unwrap_or(0);
    let all_rules: Vec<Rule> = rulegen::blocklist(largest, 42)
        .into_iter()
        .map(|r| Rule {
            dir: Direction::Out,
            ..r
        })
        .collect();
    let cap = FwCapacity {
        max_rules: (largest as u32 + 16).max(FwCapacity::default().max_rules),
        ranges_per_bank: FwCapacity::default()
            .ranges_per_bank
            .max(largest as u32 * 2),
        ..FwCapacity::default()
    };
    ensure_tables(&pin.0, &cap)?;
    let firewall = Firewall::new(pin.0.clone(), cap);

    let mut storage = MaybeUninit::uninit();
    let mut open = BenchTcSkelBuilder::default()
        .open(&mut storage)
        .context("opening the TC benchmark programs")?;
    configure_maps(open.open_object_mut(), &pin.0, Some(FAKE_IFINDEX))?;
    let skel = open.load().context("loading the TC benchmark programs")?;
    let progs = &skel.progs;
    let config = maps::open_pinned(&pin.0.if_dir(FAKE_IFINDEX).join(M::IF_CONFIG))?;
    let set = |ingress: &[Feature], egress: &[Feature]| -> anyhow::Result<()> {
        let bits = |f: &[Feature]| f.iter().fold(0, |a, f| a | f.bit());
        let cfg = nr_if_config {
            ifindex: FAKE_IFINDEX,
            monitor_wakeup_bytes: u32::MAX,
            tc_ingress_features: bits(ingress),
            tc_egress_features: bits(egress),
            ..Default::default()
        };
        Ok(maps::put(&config, 0, &cfg)?)
    };

    let measure = |prog: &ProgramMut<'_>, frame: &[u8]| crate::best_of(prog, frame, repeat, rounds);

    let base = udp_frame([198, 18, 0, 1]);
    let empty_ns = measure(&progs.bench_tc_empty, &base)?;
    progress(&format!("empty TC program: {empty_ns:.0} ns/packet"));
    let mut rows = Vec::new();
    let mut row = |name: &str, rules: usize, ns: f64| {
        progress(&format!(
            "{:<34} {:>5.0} ns {:>5.2}x",
            format!("{name}, {rules} rules"),
            ns,
            ns / empty_ns
        ));
        rows.push(TcRow {
            name: name.into(),
            rules,
            ns,
            ratio: ns / empty_ns,
        });
    };
    set(&[], &[])?;
    row(
        "tc-ingress idle",
        0,
        measure(&progs.bench_tc_ingress, &base)?,
    );
    row("tc-egress idle", 0, measure(&progs.bench_tc_egress, &base)?);

    let mut rng = StdRng::seed_from_u64(7);
    let mut installed = 0;
    for &n in rule_counts {
        if n > installed {
            firewall.add(&all_rules[installed..n])?;
            installed = n;
        }
        let rules = &all_rules[..n];
        let mut frame = base.clone();
        // The destination of a sent packet: inside the most specific rule.
        if let Some(host) = rules
            .iter()
            .find(|r| r.net.prefix_len() == 32)
            .or(rules.first())
        {
            frame[30..34].copy_from_slice(&rulegen::address_in(host, &mut rng));
        }
        set(&[], &[Feature::Firewall])?;
        row(
            "tc-egress firewall",
            n,
            measure(&progs.bench_tc_egress, &frame)?,
        );
    }
    set(&[], &[])?;
    Ok(TcReport {
        frame_bytes: base.len(),
        repeat,
        rounds,
        empty_ns,
        rows,
    })
}

/// A 60-byte Ethernet/IPv4/UDP frame to `dst`.
fn udp_frame(dst: [u8; 4]) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([198, 51, 100, 1], dst, 64)
        .udp(40000, 9);
    let mut v = Vec::new();
    b.write(&mut v, &[0u8; 18]).expect("frame");
    v
}
