//! `netray limit add|del|list`: rate limits on what the firewall lets pass.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use netray_firewall::{action::time_left, Limit, LimitArgs, Limits};

use super::{firewall::CapacityArgs, Context};
use crate::output::{json_line, outln, table};

#[derive(Subcommand)]
pub enum LimitCommand {
    /// Limit the packets received from a prefix to a rate (a token bucket in the kernel).
    #[command(after_help = "Examples:\n  netray limit add 203.0.113.0/24 --rate 1000/s\n  \
        netray limit add 0.0.0.0/0 --rate 20/s --burst 40 --per-source --syn   # per client\n  \
        netray limit add 10.0.0.0/8 --rate 100/s --per-source --proto udp --port 53 --ban 60s\n  \
        netray limit add 2001:db8::/32 --rate 6000/m --proto icmp\n\n\
        A limit applies to received packets the firewall lets pass (after deny rules), on every\n\
        interface the firewall is attached to, and keeps enforcing with no netray process running.\n\
        It matches the source prefix (and --proto/--port/--syn); limits may not overlap. Without\n\
        --per-source the whole prefix shares one bucket; with it every source address gets its own,\n\
        in a table of --limit-sources entries (when full, the least recently seen source is evicted,\n\
        and counted). --ban drops everything from a source that exceeded its rate, for that long.")]
    Add {
        #[command(flatten)]
        spec: LimitSpecArgs,
        #[command(flatten)]
        cap: CapacityArgs,
        /// Print the new limit's id as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a limit, given exactly as added or by id.
    #[command(alias = "delete", after_help = "Examples:\n  netray limit del --id 2\n  netray limit del 203.0.113.0/24 --rate 1000/s")]
    Del {
        /// The limit's prefix (with the options it was added with).
        #[arg(value_name = "CIDR", required_unless_present = "id", conflicts_with = "id")]
        cidr: Option<String>,
        /// The limit's rate, as added.
        #[arg(long, value_name = "N/s", required_unless_present = "id")]
        rate: Option<String>,
        #[command(flatten)]
        opts: LimitOptions,
        /// Delete by id (as shown by `netray limit list`).
        #[arg(long, value_name = "ID")]
        id: Option<u32>,
        /// Print the deleted id as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the limits: packets passed and dropped, sources tracked and banned now.
    #[command(after_help = "Example:\n  netray limit list --json\n\n\
        DROPPED counts packets over the rate and, with --ban, packets from a banned source.\n\
        SOURCES is the sources with a bucket now, BANNED those banned now, EVICTED the buckets the\n\
        full per-source table evicted.")]
    List {
        /// Print one JSON array of limits.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct LimitSpecArgs {
    /// Source address or CIDR prefix (IPv4 or IPv6).
    #[arg(value_name = "CIDR")]
    cidr: String,
    /// Packets per second, minute or hour: 100/s, 6000/m, 10/h.
    #[arg(long, value_name = "N/s")]
    rate: String,
    #[command(flatten)]
    opts: LimitOptions,
}

#[derive(Args)]
pub struct LimitOptions {
    /// Packets a full bucket lets through at once (default: the rate's N).
    #[arg(long, value_name = "M")]
    burst: Option<u32>,
    /// One bucket per source address instead of one for the whole prefix.
    #[arg(long)]
    per_source: bool,
    /// Only this protocol: tcp, udp, icmp, sctp or a number.
    #[arg(long, value_name = "PROTO")]
    proto: Option<String>,
    /// Only this destination port.
    #[arg(long, value_name = "PORT")]
    port: Option<u16>,
    /// Only TCP SYNs without ACK (connection attempts); implies --proto tcp.
    #[arg(long)]
    syn: bool,
    /// With --per-source: drop everything from a source that exceeds the rate, for DURATION (60s, 10m).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    ban: Option<String>,
    /// Direction: in (received packets, by source); the only one limits support.
    #[arg(long, value_name = "DIR", default_value = "in")]
    dir: String,
}

impl LimitOptions {
    fn parse(&self, cidr: &str, rate: &str) -> anyhow::Result<Limit> {
        Ok(Limit::parse(&LimitArgs {
            cidr,
            rate,
            burst: self.burst,
            per_source: self.per_source,
            proto: self.proto.as_deref(),
            port: self.port,
            syn: self.syn,
            ban: self.ban.as_deref(),
            dir: Some(&self.dir),
        })?)
    }
}

pub fn run(ctx: &Context, cmd: LimitCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LimitCommand::Add { spec, cap, json } => {
            let limit = spec.opts.parse(&spec.cidr, &spec.rate)?;
            let id = Limits::new(ctx.pin()?, cap.capacity()?).add(&limit)?;
            if json {
                json_line(&serde_json::json!({ "added": id }))?;
            } else {
                outln!("added limit {id}: {limit}")?;
            }
        }
        LimitCommand::Del { cidr, rate, opts, id, json } => {
            let limits = Limits::open(ctx.pin()?);
            let id = match (id, cidr, rate) {
                (Some(id), _, _) => limits.delete_id(id)?,
                (None, Some(cidr), Some(rate)) => limits.delete(&opts.parse(&cidr, &rate)?)?,
                _ => anyhow::bail!("give the limit's CIDR and options as added, or --id N"),
            };
            if json {
                json_line(&serde_json::json!({ "deleted": id }))?;
            } else {
                outln!("deleted limit {id}")?;
            }
        }
        LimitCommand::List { json } => {
            let list = Limits::open(ctx.pin()?).list()?;
            if json {
                json_line(&list)?;
            } else if list.is_empty() {
                outln!("no limits")?;
            } else {
                let any = |v: Option<String>| v.unwrap_or_else(|| "any".into());
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|s| {
                        let l = &s.limit;
                        let per = if l.per_source { "source" } else { "prefix" };
                        let proto = if l.syn { "tcp syn".into() } else { any(l.proto.map(|p| p.to_string())) };
                        let ban = l.ban.map_or("-".into(), |b| time_left(b.as_nanos() as u64));
                        let src = |n: u64| if l.per_source { n.to_string() } else { "-".into() };
                        vec![
                            s.id.to_string(),
                            l.net.to_string(),
                            l.rate.to_string(),
                            l.burst.to_string(),
                            per.into(),
                            proto,
                            any(l.port.map(|p| p.to_string())),
                            ban,
                            s.passed.to_string(),
                            s.dropped.to_string(),
                            src(s.sources_tracked),
                            src(s.sources_banned),
                            src(s.sources_evicted),
                        ]
                    })
                    .collect();
                table(
                    &["ID", "PREFIX", "RATE", "BURST", "PER", "PROTO", "PORT", "BAN", "PASSED", "DROPPED", "SOURCES", "BANNED", "EVICTED"],
                    &rows,
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
