//! `netray deny add|del|list`, and the rule operations `netray allow` shares.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use netray_firewall::{action::time_left, Action, Rule, RuleOptions, Ttl};

use super::{firewall::CapacityArgs, Context};
use crate::output::{json_line, outln, table};

#[derive(Subcommand)]
pub enum DenyCommand {
    /// Drop traffic from a prefix (--audit: only count it; --ttl: for a while).
    #[command(after_help = "Examples:\n  netray deny add 203.0.113.0/24\n  netray deny add 10.0.0.0/8 --proto udp --port 53\n  \
        netray deny add 2001:db8::/32 --proto icmpv6\n  netray deny add 192.0.2.1 192.0.2.9      # several at once\n  \
        netray deny add --file drop.txt          # a blocklist, compiled once\n  \
        netray deny add 198.51.100.7 --ttl 10m   # stops matching 10 minutes from now\n  \
        netray deny add 10.0.0.0/8 --audit       # counts what it would drop, drops nothing\n\n\
        A rule matches the source address of received packets (--dir in, the default), or the\n\
        destination of sent packets (--dir out), or both. --port is the destination port; without\n\
        --proto it means tcp, udp and sctp. The change takes effect on the next packet, on every\n\
        interface the firewall is attached to. An expiring rule stops matching in the kernel on\n\
        time, whether or not netray runs; `netray deny list` then removes it.")]
    Add {
        #[command(flatten)]
        spec: RuleArgs,
        /// Let the rule expire DURATION from now (30s, 10m, 2h, 1h30m, 2days): it stops matching then.
        // Hyphen values reach the TTL parser, which says why `-3s` is wrong.
        #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
        ttl: Option<String>,
        /// Only count the packets the rule matches (its would-drop hits) and let them pass.
        #[arg(long)]
        audit: bool,
        #[command(flatten)]
        cap: CapacityArgs,
        /// Print the new rule ids as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete rules, given exactly as added or by id.
    #[command(alias = "delete", after_help = "Examples:\n  netray deny del 203.0.113.0/24\n  netray deny del 10.0.0.0/8 --proto udp --port 53\n  netray deny del --id 3")]
    Del(DelArgs),
    /// List the rules with their action, time left and hit counters; removes expired rules.
    #[command(after_help = "Example:\n  netray deny list --json\n\n\
        An audit rule's hits are the packets it would have dropped. Rules whose --ttl has run out\n\
        matched nothing since; listing removes them.")]
    List {
        /// Print one JSON array of rules.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct RuleArgs {
    /// Address or CIDR prefix (IPv4 or IPv6); several allowed.
    #[arg(required_unless_present = "file", value_name = "CIDR")]
    cidr: Vec<String>,
    /// Also read prefixes from FILE ('-' for stdin): one per line; blank lines and text after
    /// '#' or ';' are ignored (blocklists such as Spamhaus DROP read as they are).
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    #[command(flatten)]
    filter: FilterArgs,
}

/// `deny del` and `allow del`.
#[derive(Args)]
pub struct DelArgs {
    #[command(flatten)]
    spec: RuleArgsOptional,
    /// Delete by rule id (as the command's `list` shows it).
    #[arg(long = "id", value_name = "ID", conflicts_with = "cidr")]
    ids: Vec<u32>,
    /// Print the deleted rule ids as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct RuleArgsOptional {
    /// Address or CIDR prefix (IPv4 or IPv6); several allowed.
    #[arg(value_name = "CIDR", required_unless_present_any = ["ids", "file"])]
    cidr: Vec<String>,
    /// Also read prefixes from FILE ('-' for stdin), as `deny add --file`.
    #[arg(long, value_name = "FILE", conflicts_with = "ids")]
    file: Option<PathBuf>,
    #[command(flatten)]
    filter: FilterArgs,
}

#[derive(Args)]
struct FilterArgs {
    /// Only this protocol: tcp, udp, sctp, icmp (IPv4), icmpv6 (IPv6), or a number.
    #[arg(long, value_name = "PROTO")]
    proto: Option<String>,
    /// Only this destination port (without --proto: tcp, udp and sctp).
    #[arg(long, value_name = "PORT")]
    port: Option<u16>,
    /// Direction: in (received packets, matched on their source; XDP), out (sent packets, matched on their
    /// destination; TC egress) or both.
    #[arg(long, value_name = "DIR", default_value = "in")]
    dir: String,
}

/// The rules named on the command line, then those of the file (each with
/// the same protocol, port and direction).
fn parse_rules(cidrs: &[String], file: Option<&Path>, f: &FilterArgs, allow: bool) -> anyhow::Result<Vec<Rule>> {
    let parse = |c: &str| Rule::parse(c, f.proto.as_deref(), f.port, Some(&f.dir)).map(|r| if allow { r.allowing() } else { r });
    let mut rules = cidrs.iter().map(|c| parse(c)).collect::<Result<Vec<_>, _>>()?;
    if let Some(path) = file {
        let name = path.display().to_string();
        let text = if name == "-" {
            std::io::read_to_string(std::io::stdin()).context("reading prefixes from stdin")?
        } else {
            std::fs::read_to_string(path).with_context(|| format!("reading prefixes from {name}"))?
        };
        for (n, line) in text.lines().enumerate() {
            let line = line.split(['#', ';']).next().unwrap_or("").trim();
            let mut words = line.split_whitespace();
            let Some(cidr) = words.next() else { continue };
            if let Some(extra) = words.next() {
                anyhow::bail!(
                    "{name}:{}: unexpected '{extra}' after the prefix: one prefix per line (--proto, --port \
                     and --dir apply to the whole file)",
                    n + 1
                );
            }
            rules.push(parse(cidr).with_context(|| format!("{name}:{}", n + 1))?);
        }
    }
    Ok(rules)
}

/// "added rule 3: deny 192.0.2.0/24" per rule, or one line for many.
fn report(verb: &str, ids: &[u32], rules: Option<(&[Rule], RuleOptions)>) -> std::io::Result<()> {
    match rules {
        Some((rules, opts)) if ids.len() <= 20 => {
            let ttl = opts.ttl.map(|t| format!(" (expires in {})", time_left(t.as_nanos() as u64))).unwrap_or_default();
            for (id, r) in ids.iter().zip(rules) {
                // An allow rule says "allow" itself.
                let action = if r.allow { String::new() } else { format!("{} ", opts.action) };
                outln!("{verb} rule {id}: {action}{r}{ttl}")?;
            }
        }
        _ if ids.len() <= 20 => {
            for id in ids {
                outln!("{verb} rule {id}")?;
            }
        }
        _ => outln!("{verb} {} rules (ids {}-{})", ids.len(), ids.iter().min().unwrap_or(&0), ids.iter().max().unwrap_or(&0))?,
    }
    Ok(())
}

pub fn run(ctx: &Context, cmd: DenyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DenyCommand::Add { spec, ttl, audit, cap, json } => {
            let action = if audit { Action::Audit } else { Action::Deny };
            add(ctx, &spec, action, ttl.as_deref(), cap, json)
        }
        DenyCommand::Del(d) => del(ctx, &d, false),
        DenyCommand::List { json } => list(ctx, false, json),
    }
}

/// `deny add` / `allow add` (action Allow).
pub(super) fn add(
    ctx: &Context,
    spec: &RuleArgs,
    action: Action,
    ttl: Option<&str>,
    cap: CapacityArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let ttl = ttl.map(str::parse::<Ttl>).transpose()?.map(|t| t.0);
    let opts = RuleOptions { action, ttl };
    let rules = parse_rules(&spec.cidr, spec.file.as_deref(), &spec.filter, action == Action::Allow)?;
    let with: Vec<(Rule, RuleOptions)> = rules.iter().map(|r| (r.clone(), opts)).collect();
    let ids = ctx.sized_firewall(cap.capacity()?)?.add_with(&with)?;
    if json {
        json_line(&serde_json::json!({ "added": ids }))?;
    } else {
        report("added", &ids, Some((&rules, opts)))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `deny del` / `allow del`: rules of the other kind are not theirs to delete.
pub(super) fn del(ctx: &Context, d: &DelArgs, allow: bool) -> anyhow::Result<ExitCode> {
    let (spec, ids, json) = (&d.spec, &d.ids, d.json);
    let fw = ctx.firewall()?;
    let deleted = if ids.is_empty() {
        fw.delete(&parse_rules(&spec.cidr, spec.file.as_deref(), &spec.filter, allow)?)?
    } else {
        let rules = fw.list()?;
        for id in ids {
            if let Some(r) = rules.iter().find(|r| r.id == *id && r.rule.allow != allow) {
                let (is, cmd) = if r.rule.allow { ("an allow", "allow") } else { ("a deny", "deny") };
                anyhow::bail!("rule {id} is {is} rule ({}): delete it with `netray {cmd} del --id {id}`; nothing deleted", r.rule);
            }
        }
        fw.delete_ids(ids)?
    };
    if json {
        json_line(&serde_json::json!({ "deleted": deleted }))?;
    } else {
        report("deleted", &deleted, None)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `deny list` (deny and audit rules) / `allow list`.
pub(super) fn list(ctx: &Context, allow: bool, json: bool) -> anyhow::Result<ExitCode> {
    let mut rules = ctx.read_only_firewall()?.list()?;
    rules.retain(|r| r.rule.allow == allow);
    if json {
        json_line(&rules)?;
    } else if rules.is_empty() {
        outln!("no rules")?;
    } else {
        let rows: Vec<Vec<String>> = rules
            .iter()
            .map(|r| {
                vec![
                    r.id.to_string(),
                    r.rule.net.to_string(),
                    proto_cell(r.rule.proto, r.rule.port),
                    r.rule.port.map_or("any".into(), |p| p.to_string()),
                    r.rule.dir.to_string(),
                    r.action.to_string(),
                    r.time_left().map_or("never".into(), |t| format!("in {t}")),
                    r.packets.to_string(),
                    r.bytes.to_string(),
                ]
            })
            .collect();
        table(&["ID", "CIDR", "PROTO", "PORT", "DIR", "ACTION", "EXPIRES", "PACKETS", "BYTES"], &rows)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The PROTO column: a bare --port matches tcp, udp and sctp, so it says so.
pub fn proto_cell(proto: Option<netray_firewall::Proto>, port: Option<u16>) -> String {
    match (proto, port) {
        (Some(p), _) => p.to_string(),
        (None, Some(_)) => "tcp/udp/sctp".into(),
        (None, None) => "any".into(),
    }
}
