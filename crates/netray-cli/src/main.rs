//! `netray`: see, filter and steer Linux network traffic in the kernel.
//!
//! This crate only parses arguments and prints; the work is in the library
//! crates (netray-firewall, netray-monitor, ...).

mod cmd;
mod output;

use std::{path::PathBuf, process::ExitCode};

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "netray",
    version,
    about = "See and steer network traffic in the kernel with eBPF",
    long_about = "netray attaches eBPF programs to network interfaces to filter traffic (firewall), stream \
                  per-packet metadata (monitor) and more. Its state is pinned under /sys/fs/bpf/netray, so an \
                  attached firewall keeps enforcing after netray exits.",
    after_help = "Examples:\n  netray firewall attach -i eth1\n  netray deny add 203.0.113.0/24\n  netray monitor -i eth1 -c 10\n  netray dump -i eth1 -w capture.pcapng tcp port 80\n  netray top -i eth1\n  netray features\n  netray demo"
)]
struct Cli {
    /// Where pinned state lives (default /sys/fs/bpf/netray; env NETRAY_PIN_DIR).
    #[arg(long, global = true, value_name = "DIR")]
    pin_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attach, detach and inspect the XDP firewall.
    #[command(subcommand)]
    Firewall(cmd::firewall::FirewallCommand),
    /// Add, delete and list deny rules.
    #[command(subcommand)]
    Deny(cmd::deny::DenyCommand),
    /// Add, delete and list allow rules (they beat wider deny rules and a drop policy).
    #[command(subcommand)]
    Allow(cmd::allow::AllowCommand),
    /// Add, delete and list rate limits on what the firewall lets pass.
    #[command(subcommand)]
    Limit(cmd::limit::LimitCommand),
    /// Print one line per packet seen on an interface.
    Monitor(cmd::monitor::MonitorArgs),
    /// Capture whole packets at XDP or TC into pcapng, filtered in the kernel (tcpdump syntax).
    Dump(cmd::dump::DumpArgs),
    /// The flows on an interface, live: per-flow counters and rates, Prometheus metrics.
    Top(cmd::top::TopArgs),
    /// Why packets were dropped: the kernel's drop reasons and netray's own verdicts.
    Drops(cmd::drops::DropsArgs),
    /// Measure the per-packet cost of netray's kernel programs.
    Bench(cmd::bench::BenchArgs),
    /// Print one line per process exec (execve/execveat), from the kernel.
    Exec(cmd::exec::ExecArgs),
    /// Manage the built-in lab: a namespace joined by a veth pair, and traffic.
    #[command(subcommand)]
    Lab(cmd::lab::LabCommand),
    /// Run the main job end to end against the built-in lab, then clean up.
    Demo(cmd::demo::DemoArgs),
    /// What this kernel allows that netray uses, tried for real, and which way each command goes.
    Features(cmd::features::FeaturesArgs),
    /// Serve netray over a REST API: rules, interfaces, stats, flows, live events, metrics.
    Daemon(netray_daemon::cli::DaemonArgs),
    /// Print the completion script for bash, zsh or fish.
    Completions(cmd::completions::CompletionsArgs),
    /// Print a manual page (roff), or write them all with --out-dir.
    Man(cmd::man::ManArgs),
}

fn main() -> ExitCode {
    // SIGPIPE stays ignored (Rust's default) for every command: a write to a
    // closed pipe returns an error, the command unwinds (detaching what it
    // attached, finishing a capture file) and ends quietly below. The daemon
    // writes to sockets, where a peer that goes must never kill it.
    let cli = Cli::parse();
    let is_daemon = matches!(cli.command, Command::Daemon(_));
    let ctx = cmd::Context { pin_dir: cli.pin_dir };
    let result = match cli.command {
        Command::Firewall(c) => cmd::firewall::run(&ctx, c),
        Command::Deny(c) => cmd::deny::run(&ctx, c),
        Command::Allow(c) => cmd::allow::run(&ctx, c),
        Command::Limit(c) => cmd::limit::run(&ctx, c),
        Command::Monitor(a) => cmd::monitor::run(&ctx, a),
        Command::Top(a) => cmd::top::run(&ctx, a),
        Command::Dump(a) => cmd::dump::run(&ctx, a),
        Command::Drops(a) => cmd::drops::run(&ctx, a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Exec(a) => cmd::exec::run(a),
        Command::Lab(c) => cmd::lab::run(c),
        Command::Demo(a) => cmd::demo::run(a),
        Command::Features(a) => cmd::features::run(a),
        Command::Completions(a) => cmd::completions::run(a, Cli::command()),
        Command::Man(a) => cmd::man::run(a, Cli::command()),
        Command::Daemon(mut a) => {
            a.pin_dir = ctx.pin_dir.clone();
            netray_daemon::cli::run(a).map(|()| ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        // `netray deny list | head -1`: the reader has all it wanted.
        Err(e) if !is_daemon && output::is_closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netray: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
