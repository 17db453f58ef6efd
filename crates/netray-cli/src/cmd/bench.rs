//! `netray bench`.

use std::{
    process::ExitCode,
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};

use clap::{Args, Subcommand};
use netray_bench::{
    capture::{self, DumpBenchOptions},
    tc,
    xdp::{self, XdpBenchOptions},
};

use crate::output::{json_line, outln};

#[derive(Args)]
#[command(
    after_help = "Examples:\n  netray bench\n  netray bench --rules 1000 --loads 3 --json\n\n\
    Measures with BPF_PROG_TEST_RUN, in one run, the per-packet cost of netray's XDP dispatcher\n\
    against an empty XDP program: the firewall with 0, 1,000 and 100,000 rules, flow accounting\n\
    alone and with the firewall, and firewall + monitor events, each for one repeated frame and\n\
    for frames whose sources are drawn at random across the rule set (cache-cold, as real\n\
    traffic is). For scale, the same frames are also looked up once in a kernel hash map and LPM\n\
    trie holding the same rules (rows \"ref:\"). Rate limits and the drop policy get rows too,\n\
    each beside one lookup in its own table alone. Every XDP figure is measured on --loads loads of\n\
    the programs (where the JIT places a program moves its cost): the median is shown with the\n\
    fastest and slowest load, and ratios are to the empty program's fastest load. See\n\
    docs/performance.md.\n\
    \n\
    Then the TC programs against an empty TC program: ingress and egress with every feature off,\n\
    and the egress firewall (\"out\" rules) with up to 1,000 rules. Nothing is attached to any\n\
    interface; the benchmark's pins are removed when it ends.\n\
    \n\
    `netray bench exec` measures the added cost per exec of `netray exec` instead;\n\
    `netray bench dump` the highest rate `netray dump -w` captures without loss, beside tcpdump;\n\
    `netray bench drops` the added cost per kernel drop of `netray drops`."
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: Option<BenchWhat>,
    /// Runs per measurement (one BPF_PROG_TEST_RUN call).
    #[arg(long, default_value_t = 500_000)]
    repeat: u32,
    /// Measurements per figure and load; the fastest counts (noise only adds time).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Loads of the XDP programs; each figure is the median over them, with
    /// the fastest and slowest load in brackets (where the JIT places a
    /// program moves its cost by up to ~15 ns).
    #[arg(long, default_value_t = 5)]
    loads: usize,
    /// Rule-set sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "0,1000,100000")]
    rules: Vec<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Added cost per exec with `netray exec` tracing, against none.
    Exec(super::exec::BenchArgs),
    /// Highest packet rate `netray dump -w` writes to a file with zero loss, beside tcpdump.
    Dump(DumpBenchArgs),
    /// Records/s the IPFIX exporter sustains and its CPU per 1,000 flows, beside a raw send.
    Ipfix(IpfixBenchArgs),
    /// Added cost per kernel drop with `netray drops` tracing, against none (one run, in a lab).
    Drops(DropsBenchArgs),
}


#[derive(Args)]
#[command(after_help = "Examples:\n  netray bench drops\n  netray bench drops --drops 200000 --rounds 5 --json\n\n\
    In a throwaway lab, UDP datagrams go from the lab's namespace to a closed port of the host end,\n\
    each dropped by the host's stack (NO_SOCKET) before the send returns. Rounds without and with a\n\
    `netray drops -i HOST_END udp port 9` session alternate in one run; the fastest round of each counts.\n\
    The difference is what tracing skb:kfree_skb costs per drop (tracer, filter, copy, ring).")]
pub struct DropsBenchArgs {
    /// Datagrams per round.
    #[arg(long, default_value_t = 100_000)]
    drops: u64,
    /// Rounds of each kind.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}


#[derive(Args)]
#[command(after_help = "Examples:\n  netray bench ipfix\n  netray bench ipfix --flows 1000,100000 --rounds 5 --json\n\n\
    In userspace, with no kernel program: for each flow count, a synthetic flow table whose every\n\
    flow has new packets each round and is due at once (1 ns active timeout), so each round\n\
    exports one record per flow through the exporter `netray top --ipfix` runs (meter, queue,\n\
    sender thread encoding and sending over UDP) to a receiver of the benchmark's own on\n\
    127.0.0.1. Reports the records/s from the first export to the last send, the exporter's CPU\n\
    time per 1,000 flows per export, and, measured in the same run, the CPU per record of\n\
    sending the same messages already encoded (the system calls alone).")]
pub struct IpfixBenchArgs {
    /// Flow counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    flows: Vec<usize>,
    /// Export rounds per flow count.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn run_ipfix(a: IpfixBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(a.rounds > 0 && a.flows.iter().all(|&n| n > 0), "--rounds and --flows must be at least 1");
    if !a.json {
        outln!("IPFIX export over UDP to 127.0.0.1, {} rounds, every flow exported each round", a.rounds)?;
    }
    let json = a.json;
    let mut closed: Option<std::io::Error> = None;
    let rows = netray_bench::ipfix::run(&a.flows, a.rounds, &mut |line: &str| {
        if !json && closed.is_none() {
            closed = outln!("  {line}").err();
        }
    })?;
    if let Some(e) = closed {
        return Err(e.into());
    }
    if json {
        json_line(&serde_json::json!({ "type": "bench_ipfix", "rows": rows }))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
#[command(after_help = "Examples:\n  netray bench dump\n  \
    netray bench dump --sizes 64 --rates 100000,400000,1000000 --seconds 3\n  \
    netray bench dump --json --dir /srv/scratch\n\n\
    In a throwaway lab (namespace + veth pair), an in-kernel generator (an XDP program run\n\
    with BPF_PROG_TEST_RUN and live frames, paced by a thread) sends UDP/IPv4 frames of each\n\
    size at each rate into the host end, where they are counted at XDP and dropped at tcx\n\
    ingress (a clsact filter on kernels without tcx), after the packet taps. At each rate, one after another: no capture (the receive\n\
    path's own limit), netray's capture into a pcapng file (what `netray dump -w FILE` runs:\n\
    XDP entry point, no filter), and `tcpdump -i IFACE -w FILE -s 262144 -n`, each for\n\
    --seconds. A step is lossless when every frame the generator sent is in the file and the\n\
    generator reached the offered rate (it shares its CPU with the receive path, so a costly\n\
    capture slows it down); rates it did not reach are never claimed. Each step also gives the CPU\n\
    time (user + system) per captured packet of netray's reader and writer threads and of the\n\
    tcpdump process; the kernel's share (the recorder, the packet tap) is in neither.\n\
    Capture files go to --dir (a disk, not tmpfs) and are deleted after each step. Needs root\n\
    and tcpdump; the lab, programs, pins (a private directory under /sys/fs/bpf) and files are\n\
    removed when it ends, also on Ctrl-C.")]
pub struct DumpBenchArgs {
    /// Frame sizes in bytes, Ethernet header included.
    #[arg(long, value_delimiter = ',', default_value = "64,1500")]
    sizes: Vec<usize>,
    /// Offered rates in packets per second. Stepping up stops where the generator cannot reach the
    /// rate, and for each tool after its second rate with loss.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "50000,100000,200000,300000,400000,600000,800000,1000000,1500000,2000000"
    )]
    rates: Vec<u64>,
    /// Seconds per step.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Most frames per BPF_PROG_TEST_RUN call of the generator.
    #[arg(long, default_value_t = 1024)]
    batch: u32,
    /// netray's ring buffer per CPU in KiB, as `netray dump -B` (a power of two).
    #[arg(short = 'B', long = "buffer-size", value_name = "KIB", default_value_t = netray_capture::CaptureSpec::DEFAULT_RING_BYTES / 1024)]
    buffer_kib: u32,
    /// Directory for the capture files (on a disk).
    #[arg(long, default_value = "/var/tmp")]
    dir: std::path::PathBuf,
    /// Skip the no-capture baseline at each rate.
    #[arg(long)]
    no_baseline: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    // The benchmarks load dispatchers: the firewall owns the tables they share.
    netray_firewall::tables::register();
    match args.what {
        Some(BenchWhat::Exec(a)) => {
            super::exec::run_bench(a)?;
            return Ok(ExitCode::SUCCESS);
        }
        Some(BenchWhat::Dump(a)) => return run_dump(a),
        Some(BenchWhat::Ipfix(a)) => return run_ipfix(a),
        Some(BenchWhat::Drops(a)) => {
            let report = netray_drops::bench::run(a.drops, a.rounds)?;
            if a.json {
                crate::output::json_line(&report)?;
            } else {
                crate::output::line(report.to_string().trim_end())?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        None => {}
    }
    anyhow::ensure!(
        args.repeat > 0 && args.rounds > 0 && args.loads > 0,
        "--repeat, --rounds and --loads must be at least 1"
    );
    let mut rules = args.rules.clone();
    rules.sort_unstable();
    let opts = XdpBenchOptions {
        repeat: args.repeat,
        rounds: args.rounds,
        loads: args.loads,
        rule_counts: rules,
    };
    if !args.json {
        outln!(
            "XDP per-packet cost, BPF_PROG_TEST_RUN, 60-byte UDP/IPv4 frame: on each of {} loads the fastest of {} x {} \
             runs; median over the loads (fastest-slowest)",
            opts.loads, opts.rounds, opts.repeat
        )?;
    }
    let json = args.json;
    // The progress callbacks cannot fail: keep a closed pipe's error for after the run.
    let mut closed: Option<std::io::Error> = None;
    let mut progress = |line: &str| {
        if !json && closed.is_none() {
            closed = outln!("  {line}").err();
        }
    };
    let report = xdp::run(&opts, &mut progress)?;
    if !json {
        outln!(
            "TC per-packet cost, BPF_PROG_TEST_RUN, same frame, fastest of {} x {} runs (\"out\" rules at egress)",
            opts.rounds, opts.repeat
        )?;
    }
    let tc_rules: Vec<usize> = opts
        .rule_counts
        .iter()
        .copied()
        .filter(|&n| n <= 1_000)
        .collect();
    let tc_report = tc::run(opts.repeat, opts.rounds, &tc_rules, &mut progress)?;
    if let Some(e) = closed {
        return Err(e.into());
    }
    if json {
        // The XDP report, with the TC figures under "tc".
        let mut v = serde_json::to_value(&report)?;
        v["tc"] = serde_json::to_value(&tc_report)?;
        json_line(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(r) = report.rows.iter().find(|r| r.name == "firewall + monitor") {
        outln!(
            "  monitor events: {} delivered to the reader, {} lost (ring full, counted)",
            r.events_delivered.unwrap_or(0),
            r.events_lost.unwrap_or(0)
        )?;
    }
    if let Some(big) = report.rows.iter().filter(|r| r.name == "firewall").max_by_key(|r| r.rules) {
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        outln!(
            "targets at {} rules: repeated {:.2}x (target <= 1.5x: {}), random {:.2}x (target <= 3x: {})",
            big.rules,
            big.repeated_ratio,
            verdict(big.repeated_ratio <= 1.5),
            big.random_ratio,
            verdict(big.random_ratio <= 3.0)
        )?;
        if let Some(turns) = &report.two_sources {
            outln!(
                "  the repeated frame is decided from the CPU's last source; two sources in turn walk the \
                 tables on every packet: {}, {:.2}x ({:.2}x the empty program with the same source rewrite)",
                turns.show(),
                turns.median / report.empty_ns,
                turns.median / report.empty_rewrite_ns
            )?;
        }
        let reference = |name: &str| report.rows.iter().find(|r| r.name == name && r.rules == big.rules);
        if let (Some(hash), Some(lpm)) =
            (reference("ref: hash lookup"), reference("ref: LPM trie lookup"))
        {
            outln!(
                "  same random sources, same run: one hash lookup {:.2}x, one LPM-trie lookup {:.2}x; \
                 the firewall costs {:.2}x a hash lookup",
                hash.random_ratio,
                lpm.random_ratio,
                big.random_ns / hash.random_ns
            )?;
        }
    }
    if let (Some(policy), Some(reply)) = (report.policy_added_ns, report.reply_added_ns) {
        let hash = report.hash_lookup_ns.unwrap_or(f64::NAN);
        outln!(
            "policy in drop with 100 allow rules adds {policy:.1} ns to a packet no rule matches (target <= 3 ns: {}); \
             a reply found in the reply table {reply:.1} ns more (target <= one hash lookup, {hash:.1} ns here: {})",
            if policy <= 3.0 { "met" } else { "MISSED" },
            if reply <= hash { "met" } else { "MISSED" }
        )?;
        if let Some(own) = report.reply_lookup_ns {
            outln!("  the reply table's own lookup alone (its set's array read, tag and key compares): {own:.1} ns")?;
        }
    }
    outln!(
        "flow accounting adds {:.1} ns/packet to the dispatcher (target <= 13 ns: {}); {:.1} ns with 65,536 random flows",
        report.flows_added_ns,
        if report.flows_added_ns <= 13.0 { "met" } else { "MISSED" },
        report.flows_added_random_ns
    )?;
    limit_targets(&report)?;
    outln!(
        "compiling {} rules in userspace took {:.0} ms",
        opts.rule_counts.last().unwrap_or(&0),
        report.compile_ms_largest
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The rate limits' targets, from rows of one run: a packet no limit
/// matches costs at most 3 ns more than the firewall alone; one under a
/// per-source limit at most one hash lookup more.
fn limit_targets(report: &xdp::XdpReport) -> anyhow::Result<()> {
    let at0 = |name: &str| report.rows.iter().find(|r| r.name == name && r.rules == 0);
    let hash = report.rows.iter().filter(|r| r.name == "ref: hash lookup").max_by_key(|r| r.rules);
    let (Some(fw), Some(none), Some(per), Some(hash)) =
        (at0("firewall"), at0("firewall + 16 limits, none match"), at0("firewall + per-source limit"), hash)
    else {
        return Ok(());
    };
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let none_added = none.repeated_ns - fw.repeated_ns;
    outln!(
        "limits: a packet no limit matches adds {none_added:.1} ns to the firewall (target <= 3 ns: {}; random {:.1} ns)",
        verdict(none_added <= 3.0),
        none.random_ns - fw.random_ns
    )?;
    let (per_added, per_added_random) = (per.repeated_ns - fw.repeated_ns, per.random_ns - fw.random_ns);
    let (lookup, lookup_random) = (hash.repeated_ns - report.empty_ns, hash.random_ns - report.empty_rewrite_ns);
    outln!(
        "  under a per-source limit: {per_added:.1} ns more (random {per_added_random:.1} ns); one hash lookup costs {lookup:.1} ns (random {lookup_random:.1} ns) (target <= one lookup: {}, random {})",
        verdict(per_added <= lookup),
        verdict(per_added_random <= lookup_random)
    )?;
    if let Some(own) = at0("ref: per-source bucket lookup") {
        outln!(
            "  the bucket's own lookup alone (its set's array read and tag compares): {:.1} ns (random {:.1} ns)",
            own.repeated_ns - report.empty_ns,
            own.random_ns - report.empty_rewrite_ns
        )?;
    }
    Ok(())
}

fn run_dump(args: DumpBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.seconds > 0.0 && args.seconds <= 60.0,
        "--seconds must be above 0 and at most 60"
    );
    let mut rates = args.rates.clone();
    rates.sort_unstable();
    rates.dedup();
    anyhow::ensure!(
        rates.first().is_some_and(|&r| r > 0),
        "--rates must be positive"
    );
    let abort = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&abort))?;
    }
    let opts = DumpBenchOptions {
        frame_sizes: args.sizes.clone(),
        rates,
        step: Duration::from_secs_f64(args.seconds),
        batch: args.batch,
        dir: args.dir.clone(),
        ring_bytes: {
            let bytes = (u64::from(args.buffer_kib.max(64)) * 1024).next_power_of_two();
            anyhow::ensure!(
                bytes <= 1 << 30,
                "-B {}: at most 1 GiB per CPU",
                args.buffer_kib
            );
            bytes as u32
        },
        baseline: !args.no_baseline,
        abort,
    };
    let json = args.json;
    if !json {
        outln!(
            "Capture to a file with zero loss, netray dump -w beside tcpdump -w, {} s per step, UDP/IPv4 frames from an \
             in-kernel generator (BPF_PROG_TEST_RUN live frames, <= {} per call) into a veth",
            args.seconds, args.batch
        )?;
        outln!(
            "  {:>5}  {:<7}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {:>7}  {:>8}  {:>7}",
            "bytes",
            "tool",
            "offered",
            "achieved",
            "generated",
            "arrived",
            "captured",
            "reported",
            "missing",
            "loss",
            "file MB",
            "CPU ns"
        )?;
    }
    let mut closed: Option<std::io::Error> = None;
    let report = capture::run(&opts, &mut |s| {
        if json || closed.is_some() {
            return;
        }
        let captured = if s.tool == capture::Tool::None {
            "-".to_string()
        } else {
            s.captured.to_string()
        };
        closed = outln!(
            "  {:>5}  {:<7}  {:>9}  {:>9.0}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {:>6.2}%  {:>8.1}  {:>7}{}",
            s.frame_len,
            s.tool.name(),
            s.offered_pps,
            s.achieved_pps,
            s.generated,
            s.arrived,
            captured,
            s.reported_lost,
            s.missing,
            s.missing_pct,
            s.file_bytes as f64 / 1e6,
            ns_per_packet(s.cpu_ns_per_packet),
            match (s.generator_limited, s.tool) {
                (false, _) => "",
                (true, capture::Tool::None) => "  (the generator's limit)",
                (true, _) => "  (rate not reached: the receive path was slower with this capture)",
            }
        )
        .err();
    })?;
    if let Some(e) = closed {
        return Err(e.into());
    }
    if json {
        json_line(&serde_json::to_value(&report)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!("  (arrived: reached the host end's XDP hook; captured: in the file; reported: what the tool says it dropped;")?;
    outln!("   missing: generated - captured, or for \"none\" generated - delivered past the taps. A step counts when nothing")?;
    outln!("   is missing and the generator reached 97% of the offered rate: it shares its CPU with the receive path;")?;
    outln!("   CPU ns: user + system time of the capturing threads or process per captured packet; the kernel's share,")?;
    outln!("   in the receive path's softirq, is in neither)")?;
    outln!(
        "Highest offered rate with zero loss ({}):",
        report.tcpdump_version
    )?;
    outln!(
        "  {:>5}  {:>12}  {:>12}  {:>12}  {:>14}  {:>13}  {:>14}",
        "bytes", "no capture", "netray", "tcpdump", "netray/tcpdump", "netray CPU ns", "tcpdump CPU ns"
    )?;
    let pps = |v: Option<u64>| v.map_or("none".to_string(), |v| v.to_string());
    for b in &report.best {
        outln!(
            "  {:>5}  {:>12}  {:>12}  {:>12}  {:>14}  {:>13}  {:>14}{}",
            b.frame_len,
            pps(b.baseline_pps),
            pps(b.netray_pps),
            pps(b.tcpdump_pps),
            b.ratio.map_or("-".to_string(), |r| format!("{r:.1}x")),
            ns_per_packet(b.netray_cpu_ns),
            ns_per_packet(b.tcpdump_cpu_ns),
            match (b.netray_lower_bound, b.tcpdump_lower_bound) {
                (true, true) => "  (neither lost anything: lower bounds)",
                (true, false) => "  (netray lost nothing at any rate measured: a lower bound)",
                (false, true) => "  (tcpdump lost nothing at any rate measured: a lower bound)",
                (false, false) => "",
            }
        )?;
    }
    outln!(
        "  ({}; netray ring {} KiB per CPU)",
        report.cpus,
        report.ring_bytes / 1024
    )?;
    Ok(ExitCode::SUCCESS)
}

/// CPU time per captured packet, "-" where nothing was captured.
fn ns_per_packet(ns: Option<f64>) -> String {
    ns.map_or("-".to_string(), |ns| format!("{ns:.0}"))
}
