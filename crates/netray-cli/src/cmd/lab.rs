//! `netray lab ...`: the built-in lab's subcommands over netray-lab. Every
//! subcommand prints for people by default and JSON with `--json`.

use std::{io, process::ExitCode, time::Duration};

use anyhow::{bail, Context};
use clap::Subcommand;
use netray_lab::{list, prune, remove, Family, Lab, LabStatus, Proto, TrafficReport, TrafficSpec, V4_PREFIX, V6_PREFIX};

use crate::output::{json_line, json_pretty, outln};

#[derive(Debug, Clone, PartialEq, Subcommand)]
pub enum LabCommand {
    /// Create a lab: a network namespace joined to this one by a veth pair.
    ///
    /// The namespace is `nrlab-NAME`, the veth end here `nr-NAME` and the one
    /// inside `nrp-NAME`; both get an IPv4 address from 198.18.0.0/15 and an
    /// IPv6 address from fd6e:7261::/32. The lab stays until `netray lab down`.
    #[command(
        after_help = "Examples:\n  netray lab up                 # lab 'netray'\n  netray lab up test1 --json\n  ip netns exec nrlab-netray ip addr   # look inside"
    )]
    Up {
        /// Lab name (letters, digits, '-', '_'; at most 11 characters).
        #[arg(default_value = "netray")]
        name: String,
        /// Print the lab as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a lab: its namespace and both veth ends.
    #[command(
        after_help = "Example:\n  netray lab down              # lab 'netray'\n  netray lab down test1 --json"
    )]
    Down {
        #[arg(default_value = "netray")]
        name: String,
        /// Print what was removed as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the labs that exist, with their interfaces, addresses and owner.
    #[command(
        after_help = "Example:\n  netray lab status\n  netray lab status --json | jq '.[].host_v4'"
    )]
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send ICMP echo, UDP and TCP from the lab namespace to the host end and
    /// count the answers.
    ///
    /// Packets go round-robin over the protocols and address families at
    /// --pps in total, for --duration seconds or --count packets (whichever
    /// comes first). UDP and TCP are answered by echo responders this command
    /// runs on the host end; ICMP by the kernel. Useful to watch a firewall
    /// at work: dropped traffic shows up as unanswered.
    #[command(
        after_help = "Examples:\n  netray lab traffic                          # 3 s, 100 pkt/s, all protocols\n  netray lab traffic --proto udp --count 10 --family v4\n  netray lab traffic test1 --duration 10 --pps 1000 --json"
    )]
    Traffic {
        #[arg(default_value = "netray")]
        name: String,
        /// How long to send, in seconds.
        #[arg(long, value_name = "SECS", default_value_t = 3.0)]
        duration: f64,
        /// Packets per second, over all protocols and families together.
        #[arg(long, value_name = "N", default_value_t = 100)]
        pps: u32,
        /// Stop after this many packets in total.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Protocols to send, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "icmp,udp,tcp")]
        proto: Vec<Proto>,
        /// Address family.
        #[arg(long, default_value = "both")]
        family: Family,
        /// Payload bytes per packet (at least 12 with ICMP or UDP).
        #[arg(long, value_name = "BYTES", default_value_t = 64)]
        payload_len: usize,
        /// UDP echo port on the host end.
        #[arg(long, value_name = "PORT", default_value_t = 7)]
        udp_port: u16,
        /// TCP echo port on the host end.
        #[arg(long, value_name = "PORT", default_value_t = 7)]
        tcp_port: u16,
        /// How long to wait for late answers after the last packet, in seconds.
        #[arg(long, value_name = "SECS", default_value_t = 1.0)]
        timeout: f64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete labs left behind by processes that no longer run (killed test
    /// runs). Labs made by `netray lab up` are kept.
    #[command(after_help = "Example:\n  netray lab prune")]
    Prune {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs one `netray lab` subcommand.
pub fn run(cmd: LabCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LabCommand::Up { name, json } => {
            let lab = Lab::up(&name)?;
            let status = lab.status()?;
            lab.persist();
            if json {
                json_pretty(&status)?;
            } else {
                print_up(&status)?;
            }
        }
        LabCommand::Down { name, json } => {
            remove(&name)?;
            if json {
                json_line(&serde_json::json!({ "name": name, "removed": true }))?;
            } else {
                outln!("lab '{name}' removed")?;
            }
        }
        LabCommand::Status { json } => {
            let labs = list()?;
            if json {
                json_pretty(&labs)?;
            } else {
                print_status(&labs)?;
            }
        }
        LabCommand::Traffic {
            name,
            duration,
            pps,
            count,
            proto,
            family,
            payload_len,
            udp_port,
            tcp_port,
            timeout,
            json,
        } => {
            let spec = TrafficSpec {
                duration: Some(seconds("--duration", duration)?),
                pps,
                count,
                protos: proto,
                family,
                udp_port,
                tcp_port,
                payload_len,
                timeout: seconds("--timeout", timeout)?,
            };
            let lab = Lab::open(&name)?;
            let report = lab
                .traffic(&spec)
                .with_context(|| format!("generating traffic in lab '{name}'"))?;
            if json {
                json_pretty(&report)?;
            } else {
                print_report(&report)?;
            }
        }
        LabCommand::Prune { json } => {
            let pruned = prune()?;
            if json {
                json_pretty(&pruned)?;
            } else if pruned.is_empty() {
                outln!("no stale labs")?;
            } else {
                outln!("removed stale labs: {}", pruned.join(", "))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn seconds(flag: &str, secs: f64) -> anyhow::Result<Duration> {
    match Duration::try_from_secs_f64(secs) {
        Ok(d) => Ok(d),
        Err(_) => bail!("{flag} must be a number of seconds, 0 or more (got {secs})"),
    }
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_string(), T::to_string)
}

fn print_up(s: &LabStatus) -> io::Result<()> {
    outln!(
        "lab '{}' is up; it stays until `netray lab down {}`",
        s.name, s.name
    )?;
    outln!(
        "  namespace  {}   (look inside: ip netns exec {} ip addr)",
        s.netns, s.netns
    )?;
    outln!(
        "  host end   {:<15} ifindex {:<5} {}  {}/{V4_PREFIX}  {}/{V6_PREFIX}",
        s.host_if,
        opt(&s.host_ifindex),
        opt(&s.host_mac),
        opt(&s.host_v4),
        opt(&s.host_v6)
    )?;
    outln!(
        "  peer end   {:<15} (in {})  {}  {}/{V4_PREFIX}  {}/{V6_PREFIX}",
        s.peer_if,
        s.netns,
        opt(&s.peer_mac),
        opt(&s.peer_v4),
        opt(&s.peer_v6)
    )?;
    Ok(())
}

fn print_status(labs: &[LabStatus]) -> io::Result<()> {
    if labs.is_empty() {
        return outln!("no labs (create one with `netray lab up`)");
    }
    outln!(
        "{:<12} {:<15} {:<15} {:<22} {:<6} OWNER",
        "NAME", "HOST IF", "HOST IPv4", "HOST IPv6", "STATE"
    )?;
    for s in labs {
        let owner = if s.persistent {
            "persistent".to_string()
        } else {
            match s.owner_pid {
                Some(pid) if s.stale => format!("pid {pid} (gone: `netray lab prune`)"),
                Some(pid) => format!("pid {pid}"),
                None => "-".to_string(),
            }
        };
        outln!(
            "{:<12} {:<15} {:<15} {:<22} {:<6} {}",
            s.name,
            s.host_if,
            opt(&s.host_v4),
            opt(&s.host_v6),
            s.state.as_deref().unwrap_or("-"),
            owner
        )?;
        if let Some(problem) = &s.problem {
            outln!(
                "  broken: {problem} — remove it with `netray lab down {}`",
                s.name
            )?;
        }
    }
    Ok(())
}

fn print_report(r: &TrafficReport) -> io::Result<()> {
    outln!("traffic in lab '{}' ({:.1}s):", r.lab, r.elapsed_secs)?;
    outln!(
        "{:<5} {:<5} {:<28} {:>8} {:>9} {:>7} {:>10} {:>7}",
        "PROTO", "FAM", "DESTINATION", "SENT", "ANSWERED", "LOSS", "BYTES", "ERRORS"
    )?;
    for f in &r.flows {
        let dst = match (f.port, f.dst) {
            (Some(p), std::net::IpAddr::V6(a)) => format!("[{a}]:{p}"),
            (Some(p), a) => format!("{a}:{p}"),
            (None, a) => a.to_string(),
        };
        let loss = if f.sent == 0 {
            0.0
        } else {
            100.0 * (f.sent - f.answered.min(f.sent)) as f64 / f.sent as f64
        };
        outln!(
            "{:<5} {:<5} {:<28} {:>8} {:>9} {:>6.1}% {:>10} {:>7}",
            f.proto.to_string(),
            f.family.to_string(),
            dst,
            f.sent,
            f.answered,
            loss,
            f.bytes,
            f.errors
        )?;
    }
    Ok(())
}
