//! Per-packet cost of the XDP dispatcher, against an empty XDP program, all
//! measured in one run with BPF_PROG_TEST_RUN.
//!
//! Two kinds of traffic:
//! - *repeated*: one frame run over and over (everything stays in cache);
//! - *random*: before each run the frame's source is replaced by the next of
//!   65,536 addresses drawn at random from the rule set (cache-cold, like real
//!   traffic). Its baseline, `empty + rewrite`, pays for that rewrite too.
//!
//! The benchmark programs (bpf/bench.bpf.c) compile the same dispatcher code
//! the attached program runs, and reuse netray's own map pinning, so what is
//! measured is what runs on an interface.

use std::{
    mem::MaybeUninit,
    os::fd::AsFd,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Instant,
};

use anyhow::Context as _;
use libbpf_rs::{
    skel::{OpenSkel, SkelBuilder},
    MapCore, MapFlags, OpenObject, ProgramInput, ProgramMut, RingBufferBuilder,
};
use netray_core::{
    dispatcher::FlowCapacity,
    if_stats::IfCounters,
    map_names as M,
    map_pins::configure_maps_with,
    maps, Feature, PinDir,
};
use netray_ebpf::{
    abi::{nr_if_config, nr_if_stats},
    bench::{BenchSkel, BenchSkelBuilder},
};
use ipnet::IpNet;
use netray_firewall::{compile, tables::ensure_tables, Action, Firewall, FwCapacity, Rule, RuleOptions};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::Serialize;

use crate::rulegen;

const SOURCES: u32 = 65_536;
const FAKE_IFINDEX: u32 = 999_998;

#[derive(Debug, Clone)]
pub struct XdpBenchOptions {
    /// Runs per measurement (one BPF_PROG_TEST_RUN call).
    pub repeat: u32,
    /// Measurements per figure on each load; the fastest counts.
    pub rounds: usize,
    /// Times the programs are loaded (over the same maps); each figure is the
    /// median over the loads. Where the JIT places a program changes its cost
    /// by up to ~15 ns here, so one load is one draw of that lottery.
    pub loads: usize,
    /// Rule-set sizes to measure, ascending.
    pub rule_counts: Vec<usize>,
}

impl Default for XdpBenchOptions {
    fn default() -> Self {
        XdpBenchOptions {
            repeat: 500_000,
            rounds: 3,
            loads: 5,
            rule_counts: vec![0, 1_000, 100_000],
        }
    }
}

/// One measured configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    pub rules: usize,
    pub repeated_ns: f64,
    pub random_ns: f64,
    /// repeated_ns / empty program
    pub repeated_ratio: f64,
    /// random_ns / empty program
    pub random_ratio: f64,
    /// random_ns / (empty program + source rewrite)
    pub random_ratio_vs_rewrite: f64,
    /// The same figures with their fastest and slowest load.
    pub repeated_spread: Spread,
    pub random_spread: Spread,
    pub events_delivered: Option<u64>,
    pub events_lost: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct XdpReport {
    pub frame_bytes: usize,
    pub repeat: u32,
    pub rounds: usize,
    pub loads: usize,
    pub empty_ns: f64,
    pub empty_rewrite_ns: f64,
    pub rows: Vec<Row>,
    pub compile_ms_largest: f64,
    /// The dispatcher with every feature off (parse + counters), repeated frame.
    pub idle_ns: f64,
    /// The firewall at the largest rule set with two sources in turn: every
    /// packet walks the tables (the repeated frame is decided from the CPU's
    /// last source), everything in cache.
    pub two_sources: Option<Spread>,
    /// What flow accounting adds to it: repeated frame (one flow), and random
    /// sources (65,536 flows, against the idle dispatcher on the same sources).
    pub flows_added_ns: f64,
    pub flows_added_random_ns: f64,
    /// What `policy in drop` with allow rules adds to the firewall alone for
    /// a packet no rule matches (repeated frame; fastest loads), what a reply
    /// found in the reply table adds to that, and one hash lookup (the
    /// reference row's, over the empty program) to compare it with.
    pub policy_added_ns: Option<f64>,
    pub reply_added_ns: Option<f64>,
    pub hash_lookup_ns: Option<f64>,
    /// One lookup of the frame's reply in the reply table alone (a set of
    /// the set-associative table; over the empty program, fastest loads).
    pub reply_lookup_ns: Option<f64>,
}

/// Which benchmark program a figure runs.
#[derive(Debug, Clone, Copy)]
enum Prog {
    Empty,
    RandEmpty,
    Dispatch,
    RandDispatch,
    Hash,
    RandHash,
    Lpm,
    RandLpm,
    /// Reference lookups in netray's own tables (bench.bpf.c).
    Src,
    RandSrc,
    Reply,
}

/// A figure measured on every load of the programs: the median over the
/// loads, and the fastest and slowest of them.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    fn of(mut per_load: Vec<f64>) -> Spread {
        per_load.sort_by(f64::total_cmp);
        Spread {
            median: per_load[per_load.len() / 2],
            min: per_load[0],
            max: per_load[per_load.len() - 1],
        }
    }

    /// "37 ns (30-45)", or "37 ns" when every load agrees.
    pub fn show(&self) -> String {
        let (med, lo, hi) = (self.median.round(), self.min.round(), self.max.round());
        if lo == hi {
            format!("{med:.0} ns")
        } else {
            format!("{med:.0} ns ({lo:.0}-{hi:.0})")
        }
    }
}

/// A private pin dir for the benchmark, removed on drop.
struct BenchPin(PinDir);

impl Drop for BenchPin {
    fn drop(&mut self) {
        let _ = Firewall::open(self.0.clone()).reset();
        let _ = self.0.remove_all();
    }
}

/// Runs the XDP benchmark; `progress` receives a line per finished figure.
pub fn run(opts: &XdpBenchOptions, progress: &mut dyn FnMut(&str)) -> anyhow::Result<XdpReport> {
    netray_core::probe::require_bpf()?;
    pin_to_cpu(0);
    let pin = BenchPin(PinDir::resolve(Some(&PathBuf::from(format!(
        "/sys/fs/bpf/netray-bench-{}",
        std::process::id()
    ))))?);

    let largest = opts.rule_counts.iter().copied().max().unwrap_or(0);
    let all_rules = rulegen::blocklist(largest, 42);
    // Size the tables for the largest set (the compiler says how much it needs).
    let t0 = Instant::now();
    let indexed: Vec<(u32, Rule)> = all_rules
        .iter()
        .cloned()
        .zip(1..)
        .map(|(r, i)| (i, r))
        .collect();
    let needed =
        compile::compile(&indexed, compile::Capacity::UNLIMITED).map_err(anyhow::Error::msg)?;
    let compile_ms_largest = t0.elapsed().as_secs_f64() * 1e3;
    progress(&format!(
        "{largest} rules compile to {} trie chunks ({} KiB) and {} range slots ({} KiB)",
        needed.chunks.len(),
        needed.chunks.len() * std::mem::size_of::<compile::Chunk>() / 1024,
        needed.ranges.len(),
        needed.ranges.len() * std::mem::size_of::<netray_ebpf::abi::nr_fw_range>() / 1024
    ));
    let cap = FwCapacity {
        chunks_per_bank: (needed.chunks.len() as u32 + 1024)
            .max(FwCapacity::default().chunks_per_bank),
        ranges_per_bank: (needed.ranges.len() as u32 + 1024)
            .max(FwCapacity::default().ranges_per_bank),
        max_rules: (largest as u32 + 16 + 100).max(1024), // + the policy rows' allow rules
        // Room for every random source under the per-source limit row: no eviction while measuring.
        limit_sources: 4 * SOURCES,
        ..FwCapacity::default()
    };
    ensure_tables(&pin.0, &cap)?;
    let firewall = Firewall::new(pin.0.clone(), cap);

    // The programs, loaded opts.loads times over the same pinned maps (the
    // first load's source table is shared too).
    let mut storages: Vec<MaybeUninit<OpenObject>> = (0..opts.loads.max(1))
        .map(|_| MaybeUninit::uninit())
        .collect();
    let mut skels: Vec<BenchSkel<'_>> = Vec::with_capacity(storages.len());
    for storage in storages.iter_mut() {
        let mut open = BenchSkelBuilder::default()
            .open(storage)
            .context("opening the benchmark programs")?;
        // Room for the flows of both random runs (2 x SOURCES): no eviction while measuring.
        let flows_cap = FlowCapacity {
            max_flows: 2 * SOURCES,
        };
        configure_maps_with(
            open.open_object_mut(),
            &pin.0,
            Some(FAKE_IFINDEX),
            &flows_cap,
        )?;
        open.maps.bench_sources.set_max_entries(SOURCES)?;
        open.maps.bench_ref_hash.set_max_entries(largest.max(1) as u32)?;
        open.maps.bench_ref_lpm.set_max_entries(largest.max(1) as u32)?;
        if let Some(first) = skels.first() {
            open.maps.bench_sources.reuse_fd(first.maps.bench_sources.as_fd())?;
            open.maps.bench_ref_hash.reuse_fd(first.maps.bench_ref_hash.as_fd())?;
            open.maps.bench_ref_lpm.reuse_fd(first.maps.bench_ref_lpm.as_fd())?;
        }
        open.maps
            .rodata_data
            .as_deref_mut()
            .context("bench rodata")?
            .bench_sources_mask = SOURCES - 1;
        skels.push(open.load().context("loading the benchmark programs")?);
    }
    let skel = &skels[0];
    let progs = &skel.progs;

    let if_dir = pin.0.if_dir(FAKE_IFINDEX);
    let config = maps::open_pinned(&if_dir.join(M::IF_CONFIG))?;
    let stats = IfCounters::open(&if_dir)?;
    let set_features = |features: &[Feature]| -> anyhow::Result<()> {
        let cfg = nr_if_config {
            features: features.iter().fold(0, |a, f| a | f.bit()),
            ifindex: FAKE_IFINDEX,
            monitor_wakeup_bytes: netray_core::dispatcher::MONITOR_WAKEUP_BYTES,
            monitor_pid: 0,
            ..Default::default()
        };
        Ok(maps::put(&config, 0, &cfg)?)
    };

    let mut rng = StdRng::seed_from_u64(7);
    let base_frame = udp_frame([198, 51, 100, 1]);
    // A figure: the fastest of opts.rounds on every load, then the median
    // (and the spread) over the loads.
    let measure = |which: Prog, frame: &[u8]| -> anyhow::Result<Spread> {
        let mut per_load = Vec::with_capacity(skels.len());
        for s in &skels {
            let prog = match which {
                Prog::Empty => &s.progs.bench_empty,
                Prog::RandEmpty => &s.progs.bench_rand_empty,
                Prog::Dispatch => &s.progs.bench_dispatch,
                Prog::RandDispatch => &s.progs.bench_rand_dispatch,
                Prog::Hash => &s.progs.bench_hash,
                Prog::RandHash => &s.progs.bench_rand_hash,
                Prog::Lpm => &s.progs.bench_lpm,
                Prog::RandLpm => &s.progs.bench_rand_lpm,
                Prog::Src => &s.progs.bench_src,
                Prog::RandSrc => &s.progs.bench_rand_src,
                Prog::Reply => &s.progs.bench_reply,
            };
            per_load.push(crate::best_of(prog, frame, opts.repeat, opts.rounds)?);
        }
        Ok(Spread::of(per_load))
    };

    // Baselines.
    let fill_sources = |rules: &[Rule], rng: &mut StdRng| -> anyhow::Result<()> {
        for i in 0..SOURCES {
            let src = if rules.is_empty() {
                rng.random::<[u8; 4]>()
            } else {
                rulegen::address_in(&rules[rng.random_range(0..rules.len())], rng)
            };
            skel.maps
                .bench_sources
                .update(&i.to_ne_bytes(), &src, MapFlags::ANY)?;
        }
        Ok(())
    };
    fill_sources(&[], &mut rng)?;
    let empty = measure(Prog::Empty, &base_frame)?;
    let empty_rewrite = measure(Prog::RandEmpty, &base_frame)?;
    // Ratios are taken against the empty program's fastest load, so that an
    // unlucky baseline never flatters a figure.
    let (empty_ns, empty_rewrite_ns) = (empty.min, empty_rewrite.min);
    progress(&format!(
        "empty XDP program: {}; with the source rewrite of the random runs: {}; ratios are to the fastest \
         load of the empty program, {empty_ns:.0} ns",
        empty.show(),
        empty_rewrite.show()
    ));

    let mut rows = Vec::new();
    let mut installed = 0usize;
    let mut two_sources = None;
    set_features(&[])?;
    let idle = measure(Prog::Dispatch, &base_frame)?;
    let idle_rand = measure(Prog::RandDispatch, &base_frame)?;
    let idle_ns = idle.median;
    // Runs every random source through the program twice, so each is a flow
    // in the table before flows are measured.
    let warm_flows = |prog: &ProgramMut<'_>, frame: &[u8]| -> anyhow::Result<()> {
        let input = ProgramInput { data_in: Some(frame), repeat: 2 * SOURCES, ..Default::default() };
        prog.test_run(input).context("BPF_PROG_TEST_RUN")?;
        Ok(())
    };
    progress(&format!(
        "dispatcher with every feature off (parse + counters): {}, {:.2}x",
        idle.show(),
        idle_ns / empty_ns
    ));
    let mut row =
        |name: &str, rules: usize, repeated: Spread, random: Spread, ev: Option<(u64, u64)>| {
            let r = Row {
                name: name.to_string(),
                rules,
                repeated_ns: repeated.median,
                random_ns: random.median,
                repeated_ratio: repeated.median / empty_ns,
                random_ratio: random.median / empty_ns,
                random_ratio_vs_rewrite: random.median / empty_rewrite_ns,
                repeated_spread: repeated,
                random_spread: random,
                events_delivered: ev.map(|e| e.0),
                events_lost: ev.map(|e| e.1),
            };
            progress(&format!(
                "{:<34} repeated {:>15} {:>5.2}x   random {:>17} {:>5.2}x",
                format!("{name}, {rules} rules"),
                repeated.show(),
                r.repeated_ratio,
                random.show(),
                r.random_ratio
            ));
            rows.push(r);
        };

    // Flow accounting alone (firewall off): one flow for the repeated frame,
    // 65,536 for the random sources.
    set_features(&[Feature::Flows])?;
    warm_flows(&progs.bench_rand_dispatch, &base_frame)?;
    let flows_repeated = measure(Prog::Dispatch, &base_frame)?;
    let flows_random = measure(Prog::RandDispatch, &base_frame)?;
    row("flows", 0, flows_repeated, flows_random, None);

    for &n in &opts.rule_counts {
        if n > installed {
            firewall.add(&all_rules[installed..n])?;
            installed = n;
        }
        let rules = &all_rules[..n];
        // The repeated frame comes from the most specific rule there is (the
        // deepest walk), or an unmatched address when there are no rules.
        let mut frame = base_frame.clone();
        if let Some(host) = rules
            .iter()
            .find(|r| r.net.prefix_len() == 32)
            .or(rules.first())
        {
            frame[26..30].copy_from_slice(&rulegen::address_in(host, &mut rng));
        }
        fill_sources(rules, &mut rng)?;

        set_features(&[Feature::Firewall])?;
        let repeated = measure(Prog::Dispatch, &frame)?;
        let random = measure(Prog::RandDispatch, &frame)?;
        row("firewall", n, repeated, random, None);
        if n == largest && n > 0 {
            // The repeated frame is decided from the CPU's last source; two
            // sources in turn (in different /16s) walk the tables on every
            // packet, everything still in cache.
            let other = rules
                .iter()
                .filter(|r| r.net.prefix_len() == 32)
                .find(|r| matches!(r.net, IpNet::V4(v) if v.addr().octets()[..2] != frame[26..28]))
                .unwrap_or(&rules[0]);
            let pair = [<[u8; 4]>::try_from(&frame[26..30]).expect("4 bytes"), rulegen::address_in(other, &mut rng)];
            for i in 0..SOURCES {
                skel.maps.bench_sources.update(&i.to_ne_bytes(), &pair[(i % 2) as usize], MapFlags::ANY)?;
            }
            two_sources = Some(measure(Prog::RandDispatch, &frame)?);
            fill_sources(rules, &mut rng)?;
        }

        if n == 0 {
            // Limits apply to what the firewall passes: with no rules, every frame.
            let mut limit_row = |name: &str, progs: (Prog, Prog), prepare: &mut dyn FnMut() -> anyhow::Result<()>| {
                prepare()?;
                let repeated = measure(progs.0, &frame)?;
                let random = measure(progs.1, &frame)?;
                row(name, n, repeated, random, None);
                Ok(())
            };
            limit_rows(pin.0.clone(), cap, &mut limit_row, &progs.bench_rand_dispatch, &frame)?;
        }

        if n == largest {
            // The same frames with flow accounting too (every random source
            // is a flow: the table is filled first, then measured).
            set_features(&[Feature::Firewall, Feature::Flows])?;
            warm_flows(&progs.bench_rand_dispatch, &frame)?;
            let repeated = measure(Prog::Dispatch, &frame)?;
            let random = measure(Prog::RandDispatch, &frame)?;
            row("firewall + flows", n, repeated, random, None);

            // Reference points: the same sources looked up once in a kernel
            // hash map (exact match, as xdp-filter does) and LPM trie.
            fill_reference_maps(skel, rules)?;
            let repeated = measure(Prog::Hash, &frame)?;
            let random = measure(Prog::RandHash, &frame)?;
            row("ref: hash lookup", n, repeated, random, None);
            let repeated = measure(Prog::Lpm, &frame)?;
            let random = measure(Prog::RandLpm, &frame)?;
            row("ref: LPM trie lookup", n, repeated, random, None);
        }
    }

    // The drop policy at the largest rule set, beside the firewall alone, on
    // frames no rule matches: then with 100 allow rules elsewhere, then a
    // frame whose reply is in the table. The allow rules go again after.
    let (mut policy_added_ns, mut reply_added_ns, mut reply_lookup_ns) = (None, None, None);
    if installed > 0 {
        let allow: Vec<(Rule, RuleOptions)> = (0..100)
            .map(|i| (Rule::parse(&format!("100.64.{i}.0/24"), None, None, None).expect("a rule"), RuleOptions { action: Action::Allow, ttl: None }))
            .collect();
        let unmatched = |rng: &mut StdRng| loop {
            let a: [u8; 4] = rng.random();
            if needed.decide(&a, 17, Some(9)) == 0 && !(a[0] == 100 && a[1] & 0xc0 == 64) {
                return a;
            }
        };
        let frame = udp_frame(unmatched(&mut rng));
        for i in 0..SOURCES {
            skel.maps.bench_sources.update(&i.to_ne_bytes(), &unmatched(&mut rng), MapFlags::ANY)?;
        }
        set_features(&[Feature::Firewall])?;
        let alone = (measure(Prog::Dispatch, &frame)?, measure(Prog::RandDispatch, &frame)?);
        row("firewall, no rule matches", installed, alone.0, alone.1, None);
        let allow_ids = firewall.add_with(&allow)?;
        set_features(&[Feature::Firewall, Feature::PolicyDrop])?;
        let dropped = (measure(Prog::Dispatch, &frame)?, measure(Prog::RandDispatch, &frame)?);
        row("+ 100 allow, policy drop", installed + 100, dropped.0, dropped.1, None);
        let mut replies = netray_firewall::policy::Replies::open(&pin.0)?.context("the reply table")?;
        let mut key = netray_ebpf::abi::nr_reply_key { family: 4, proto: 17, sport: 40000, dport: 9, ..Default::default() };
        key.src[..4].copy_from_slice(&frame[26..30]);
        key.dst[..4].copy_from_slice(&frame[30..34]);
        anyhow::ensure!(replies.note(&key), "noting the benchmark's reply failed");
        // Both measure a reply found: each program passes the frame.
        for s in &skels {
            for prog in [&s.progs.bench_dispatch, &s.progs.bench_reply] {
                let out = prog.test_run(ProgramInput { data_in: Some(&frame), ..Default::default() })?;
                anyhow::ensure!(out.return_value == 2, "the benchmark's reply was not found (verdict {})", out.return_value);
            }
        }
        let reply = measure(Prog::Dispatch, &frame)?;
        row("+ policy drop, reply found", installed + 100, reply, dropped.1, None);
        // The reply table's lookup alone (one frame: the random column repeats it).
        let lookup = measure(Prog::Reply, &frame)?;
        row("ref: reply table lookup", installed + 100, lookup, lookup, None);
        reply_lookup_ns = Some((lookup.min - empty_ns).max(0.0));
        firewall.delete_ids(&allow_ids)?;
        set_features(&[])?;
        fill_sources(&all_rules[..installed], &mut rng)?;
        policy_added_ns = Some((dropped.0.min - alone.0.min).max(0.0));
        reply_added_ns = Some((reply.min - dropped.0.min).max(0.0));
    }

    // Firewall + monitor at the largest rule set, with a reader draining the
    // ring on the other CPU as `netray monitor` would.
    let before: nr_if_stats = sum_stats(&stats)?;
    set_features(&[Feature::Firewall, Feature::Monitor])?;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = Arc::clone(&stop);
        let path = if_dir.join(M::IF_EVENTS);
        std::thread::spawn(move || -> anyhow::Result<u64> {
            pin_to_cpu(1);
            let ring_map = maps::open_pinned(&path)?;
            let mut got = 0u64;
            let mut b = RingBufferBuilder::new();
            b.add(&ring_map, |_d: &[u8]| {
                got += 1;
                0
            })?;
            let ring = b.build()?;
            while !stop.load(Ordering::Relaxed) {
                ring.consume()?;
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            ring.consume()?;
            drop(ring);
            Ok(got)
        })
    };
    let mut frame = base_frame.clone();
    if let Some(r) = all_rules.iter().find(|r| r.net.prefix_len() == 32) {
        frame[26..30].copy_from_slice(&rulegen::address_in(r, &mut rng));
    }
    let repeated = measure(Prog::Dispatch, &frame)?;
    let random = measure(Prog::RandDispatch, &frame)?;
    stop.store(true, Ordering::Relaxed);
    let delivered = reader
        .join()
        .map_err(|_| anyhow::anyhow!("ring reader panicked"))??;
    let after = sum_stats(&stats)?;
    set_features(&[])?;
    row(
        "firewall + monitor",
        installed,
        repeated,
        random,
        Some((delivered, after.events_lost - before.events_lost)),
    );

    let hash_lookup_ns =
        rows.iter().find(|r| r.name == "ref: hash lookup").map(|r| (r.repeated_spread.min - empty_ns).max(0.0));
    Ok(XdpReport {
        frame_bytes: base_frame.len(),
        repeat: opts.repeat,
        rounds: opts.rounds,
        loads: skels.len(),
        empty_ns,
        empty_rewrite_ns,
        rows,
        compile_ms_largest,
        idle_ns,
        two_sources,
        // Differences of fastest loads (the steadiest figures), never below 0.
        flows_added_ns: (flows_repeated.min - idle.min).max(0.0),
        flows_added_random_ns: (flows_random.min - idle_rand.min).max(0.0),
        policy_added_ns,
        reply_added_ns,
        hash_lookup_ns,
        reply_lookup_ns,
    })
}

/// Measures one row: its name, the programs for the repeated and random
/// frames, and what to do first.
type MeasureRow<'a> = dyn FnMut(&str, (Prog, Prog), &mut dyn FnMut() -> anyhow::Result<()>) -> anyhow::Result<()> + 'a;

/// Rows with rate limits, beside "firewall" with no rules (same features,
/// same frames, all passed by the firewall): 16 limits no frame matches
/// (their prefixes, in 240.0.0.0/4, share no first two bytes with any
/// source, as most traffic a limited host sees), then one per-source limit
/// every frame matches (0.0.0.0/0, a rate nothing exceeds, each source's
/// bucket already in the table: one hash lookup). The limits are removed after.
fn limit_rows(
    pin: PinDir,
    cap: FwCapacity,
    measure_row: &mut MeasureRow<'_>,
    warm: &ProgramMut<'_>,
    frame: &[u8],
) -> anyhow::Result<()> {
    use netray_firewall::{Limit, LimitArgs, Limits};
    let limits = Limits::new(pin, cap);
    let parse = |cidr: &str, rate: &str, per_source: bool| {
        Limit::parse(&LimitArgs { cidr, rate, per_source, burst: Some(100_000_000), ..Default::default() })
    };
    let mut ids = Vec::new();
    for i in 0..16 {
        ids.push(limits.add(&parse(&format!("240.0.{i}.0/24"), "1000/s", false)?)?);
    }
    let dispatch = (Prog::Dispatch, Prog::RandDispatch);
    measure_row("firewall + 16 limits, none match", dispatch, &mut || Ok(()))?;
    for id in ids.drain(..) {
        limits.delete_id(id)?;
    }
    ids.push(limits.add(&parse("0.0.0.0/0", "100000000/s", true)?)?);
    measure_row("firewall + per-source limit", dispatch, &mut || {
        // Every random source gets its bucket before the measurement.
        let input = ProgramInput { data_in: Some(frame), repeat: 2 * SOURCES, ..Default::default() };
        warm.test_run(input).context("BPF_PROG_TEST_RUN")?;
        Ok(())
    })?;
    // The bucket's lookup alone, same sources, same table.
    measure_row("ref: per-source bucket lookup", (Prog::Src, Prog::RandSrc), &mut || Ok(()))?;
    for id in ids {
        limits.delete_id(id)?;
    }
    Ok(())
}

/// The reference maps hold every rule: its network address in the hash
/// map, its prefix in the LPM trie.
fn fill_reference_maps(skel: &BenchSkel<'_>, rules: &[Rule]) -> anyhow::Result<()> {
    use netray_ebpf::{abi::bytes_of, bench::types::bench_lpm_key};
    for (i, rule) in rules.iter().enumerate() {
        let IpNet::V4(net) = rule.net else { continue };
        let value = (i as u32 + 1).to_ne_bytes();
        let addr = net.network().octets();
        skel.maps.bench_ref_hash.update(&addr, &value, MapFlags::ANY)?;
        let key = bench_lpm_key { prefixlen: u32::from(net.prefix_len()), addr };
        skel.maps.bench_ref_lpm.update(bytes_of(&key), &value, MapFlags::ANY)?;
    }
    Ok(())
}

fn sum_stats(counters: &IfCounters) -> anyhow::Result<nr_if_stats> {
    Ok(counters.slot(0)?)
}

/// A 60-byte Ethernet/IPv4/UDP frame (the minimum frame without FCS).
fn udp_frame(src: [u8; 4]) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, [198, 18, 0, 1], 64)
        .udp(40000, 9);
    let mut v = Vec::new();
    b.write(&mut v, &[0u8; 18]).expect("frame");
    v
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, applied to this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(
            cpu % libc::sysconf(libc::_SC_NPROCESSORS_ONLN).max(1) as usize,
            &mut set,
        );
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}
