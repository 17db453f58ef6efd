//! `netray bench`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use netray_bench::{
    tc,
    xdp::{self, XdpBenchOptions},
};

use crate::output::json_line;

#[derive(Args)]
#[command(after_help = "Examples:\n  netray bench\n  netray bench --rounds 3 --repeat 200000 --json\n\n\
    Measures with BPF_PROG_TEST_RUN, in one run, the per-packet cost of netray's XDP dispatcher against an empty XDP\n\
    program: the firewall with 0, 1,000 and 100,000 rules, flow accounting alone and with the firewall, and firewall +\n\
    monitor events, each for one repeated frame and for frames whose sources are drawn at random across the rule set\n\
    (cache-cold, as real traffic is).\n\
    Then the TC programs against an empty TC program: ingress and egress with every feature off, and the egress\n\
    firewall (\"out\" rules) with up to 1,000 rules.\n\
    Nothing is attached to any interface; the benchmark's pins are removed when it ends.\n\n\
    `netray bench exec` measures the added cost per exec of `netray exec` instead.")]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: Option<BenchWhat>,
    /// Runs per measurement.
    #[arg(long, default_value_t = 1_000_000)]
    repeat: u32,
    /// Measurements per figure (the median is reported).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
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
    Exec(netray_exec::cli::BenchArgs),
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if let Some(BenchWhat::Exec(a)) = args.what {
        netray_exec::cli::run_bench(a)?;
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::ensure!(args.repeat > 0 && args.rounds > 0, "--repeat and --rounds must be at least 1");
    let mut rules = args.rules.clone();
    rules.sort_unstable();
    let opts = XdpBenchOptions { repeat: args.repeat, rounds: args.rounds, rule_counts: rules };
    if !args.json {
        println!(
            "XDP per-packet cost, BPF_PROG_TEST_RUN, 60-byte UDP/IPv4 frame, median of {} x {} runs",
            opts.rounds, opts.repeat
        );
    }
    let json = args.json;
    let report = xdp::run(&opts, &mut |line| {
        if !json {
            println!("  {line}");
        }
    })?;
    if !json {
        println!(
            "TC per-packet cost, BPF_PROG_TEST_RUN, same frame, median of {} x {} runs (\"out\" rules at egress)",
            opts.rounds, opts.repeat
        );
    }
    let tc_rules: Vec<usize> = opts.rule_counts.iter().copied().filter(|&n| n <= 1_000).collect();
    let tc_report = tc::run(opts.repeat, opts.rounds, &tc_rules, &mut |line| {
        if !json {
            println!("  {line}");
        }
    })?;
    if json {
        // The XDP report, with the TC figures under "tc".
        let mut v = serde_json::to_value(&report)?;
        v["tc"] = serde_json::to_value(&tc_report)?;
        json_line(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(r) = report.rows.iter().find(|r| r.name == "firewall + monitor") {
        println!(
            "  monitor events: {} delivered to the reader, {} lost (ring full, counted)",
            r.events_delivered.unwrap_or(0),
            r.events_lost.unwrap_or(0)
        );
    }
    if let Some(big) = report.rows.iter().filter(|r| r.name == "firewall").max_by_key(|r| r.rules) {
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        println!(
            "targets at {} rules: repeated {:.2}x (target <= 1.5x: {}), random {:.2}x (target <= 3x: {})",
            big.rules,
            big.repeated_ratio,
            verdict(big.repeated_ratio <= 1.5),
            big.random_ratio,
            verdict(big.random_ratio <= 3.0)
        );
    }
    println!(
        "flow accounting adds {:.1} ns/packet to the dispatcher (target <= 13 ns: {}); {:.1} ns with 65,536 random flows",
        report.flows_added_ns,
        if report.flows_added_ns <= 13.0 { "met" } else { "MISSED" },
        report.flows_added_random_ns
    );
    println!("compiling {} rules in userspace took {:.0} ms", opts.rule_counts.last().unwrap_or(&0), report.compile_ms_largest);
    Ok(ExitCode::SUCCESS)
}
