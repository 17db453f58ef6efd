//! `netray features`: what this kernel allows that netray uses, tried for real,
//! and which way each command goes on it.

use std::process::ExitCode;

use clap::Args;
use netray_core::probe::{self, Capability};
use serde::Serialize;

use crate::output::{json_line, outln, table};

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    netray features\n  \
    netray features --json | jq -r '.features[] | select(.available | not) | .name'\n\
    \n\
    Each capability is tried by loading and attaching a tiny program (attachments on a veth pair in a\n\
    network namespace of their own, removed at once), never guessed from the kernel version:\n\
    distributions backport. Needs root, like every command that loads programs.")]
pub struct FeaturesArgs {
    /// One JSON object: {kernel, features: [{name, what, available, detail}], commands: [{command, way}]}.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Way {
    command: &'static str,
    way: String,
}

#[derive(Serialize)]
struct Report {
    kernel: String,
    features: Vec<Capability>,
    commands: Vec<Way>,
}

pub fn run(args: FeaturesArgs) -> anyhow::Result<ExitCode> {
    probe::require_bpf()?;
    let features = probe::capabilities();
    let report = Report { kernel: kernel_release(), commands: ways(&features), features };
    if args.json {
        json_line(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!("kernel {}", report.kernel)?;
    let rows: Vec<Vec<String>> = report
        .features
        .iter()
        .map(|c| vec![c.name.into(), if c.available { "yes" } else { "NO" }.into(), c.what.into(), c.detail.clone()])
        .collect();
    table(&["FEATURE", "OK", "WHAT", "HOW IT WAS TRIED / WHY NOT"], &rows)?;
    outln!()?;
    let rows: Vec<Vec<String>> = report.commands.iter().map(|w| vec![w.command.into(), w.way.clone()]).collect();
    table(&["COMMAND", "ON THIS KERNEL"], &rows)?;
    Ok(ExitCode::SUCCESS)
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(|_| "unknown".into(), |s| s.trim().to_string())
}

/// Which way each command goes, from the capabilities: the same choices the
/// commands make when they run.
fn ways(caps: &[Capability]) -> Vec<Way> {
    let has = |name: &str| caps.iter().any(|c| c.name == name && c.available);
    let why = |name: &str| caps.iter().find(|c| c.name == name).map(|c| c.detail.clone()).unwrap_or_default();
    let xdp = if has("xdp_native") {
        "native XDP (generic where a driver refuses native)".to_string()
    } else if has("xdp_generic") {
        format!("generic XDP (native refused: {})", why("xdp_native"))
    } else {
        format!("unavailable: XDP refused ({})", why("xdp_generic"))
    };
    let tc = if has("tcx") {
        "tcx links".to_string()
    } else if has("clsact") {
        format!("clsact filters (no tcx: {})", why("tcx"))
    } else {
        format!("unavailable: neither tcx nor clsact ({})", why("clsact"))
    };
    let ring = |what: &str| if has("ringbuf") { what.to_string() } else { "unavailable: no ring buffers".into() };
    let foreign = if has("fexit_xdp") {
        "fentry/fexit on it, which stays untouched, its exit point included (chaining in front of it if it has no BTF, or with --mode chain)".to_string()
    } else {
        format!("chaining in front of it (fexit refused: {})", why("fexit_xdp"))
    };
    let jumbo = if has("xdp_frags") {
        "whole, through xdp.frags programs".to_string()
    } else {
        "refused at XDP on MTUs past one page (no xdp.frags); capture them at TC".to_string()
    };
    let mut exec: Vec<&str> = vec!["tracepoint (syscalls:sys_enter_execve[at]) first"];
    for (cap, backend) in [("fentry", "fentry"), ("kprobe", "kprobe"), ("raw_tracepoint", "raw-tracepoint")] {
        if has(cap) {
            exec.push(backend);
        }
    }
    let exec = if exec.len() > 1 {
        format!("{}; also available: {}", exec[0], exec[1..].join(", "))
    } else {
        format!("{}; no other backend here", exec[0])
    };
    let generator = if has("live_frames") {
        "in-kernel generator (BPF_PROG_TEST_RUN live frames)".to_string()
    } else {
        format!("unavailable: no live frames ({})", why("live_frames"))
    };
    let drops = if has("tp_btf") {
        "tp_btf/kfree_skb (BTF-typed raw tracepoint)".to_string()
    } else if has("raw_tracepoint") {
        format!("raw_tp/kfree_skb (tp_btf refused: {})", why("tp_btf"))
    } else {
        "tracepoint skb/kfree_skb (no raw tracepoints)".to_string()
    };
    let drops = if has("btf") { drops } else { format!("{drops}; reasons as numbers (no BTF)") };
    vec![
        Way { command: "firewall attach, top, daemon (XDP)", way: xdp.clone() },
        Way { command: "firewall out rules, monitor/dump at TC", way: tc },
        Way { command: "monitor", way: ring("ring buffers, no wakeup per event") },
        Way { command: "dump (XDP), jumbo frames", way: jumbo },
        Way { command: "dump beside a foreign XDP program", way: foreign },
        Way { command: "exec", way: exec },
        Way { command: "drops (kernel drops)", way: drops },
        Way { command: "bench dump (traffic)", way: generator },
    ]
}
