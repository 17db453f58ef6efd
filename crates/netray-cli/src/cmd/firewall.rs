//! `netray firewall attach|detach|policy|status`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use netray_core::AttachMode;
use netray_firewall::{FwCapacity, Policy};

use super::Context;
use crate::output::{json_line, outln, table};

#[derive(Subcommand)]
pub enum FirewallCommand {
    /// Start enforcing the deny rules on an interface (XDP ingress, TC egress).
    #[command(after_help = "Examples:\n  \
        netray firewall attach -i eth1\n  \
        netray firewall attach -i veth0 --mode generic\n\
        \n\
        \"in\" rules are enforced by the XDP program, \"out\" rules (--dir out) by a TC egress program, which\n\
        is always attached with it: through a tcx link where the kernel has tcx (Linux 6.6+), else as a\n\
        direct-action filter on a clsact qdisc (NETRAY_TC_LEGACY=1 forces that). Filters of other tools on\n\
        the interface are left alone. The firewall keeps enforcing after netray exits: its program and\n\
        maps are pinned under the pin directory. --fw-chunks and --max-rules size the shared rule tables\n\
        when they are first created.")]
    Attach {
        /// Interface to protect.
        #[arg(short, long = "interface", value_name = "IFACE")]
        iface: String,
        /// XDP attach mode: auto (native, else generic), native or generic.
        #[arg(long, default_value = "auto", value_parser = parse_mode)]
        mode: AttachMode,
        #[command(flatten)]
        cap: CapacityArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop enforcing on an interface (or everywhere, removing all state).
    #[command(after_help = "Examples:\n  netray firewall detach -i eth1\n  netray firewall detach --all   # also deletes every rule\n  netray firewall detach --all --json")]
    Detach {
        /// Interface to stop protecting.
        #[arg(short, long = "interface", value_name = "IFACE", required_unless_present = "all")]
        iface: Option<String>,
        /// Detach from every interface and remove all pinned state, rules included.
        #[arg(long, conflicts_with = "iface")]
        all: bool,
        /// Print what was done as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Drop or pass received packets no rule decides, on one interface (default: pass).
    #[command(after_help = "Examples:\n  \
        netray firewall policy -i eth1 in drop\n  \
        netray allow add 192.0.2.0/24 --proto tcp --port 22\n  \
        netray firewall policy -i eth1 in pass\n\
        \n\
        Under `in drop` only what an allow rule matches passes, and always: ARP, IPv6 neighbour and\n\
        router discovery, and the replies to what this host sends (TCP, UDP, ICMP echo), which its TC\n\
        egress program notes in a bounded reply table shared by the interfaces (`firewall status`\n\
        shows its size and evictions). The host's connected sockets are noted first, so an SSH session\n\
        to the host survives the policy being turned on. An audit rule's match is left to the policy.")]
    Policy {
        /// Interface the firewall is attached to.
        #[arg(short, long = "interface", value_name = "IFACE")]
        iface: String,
        /// The direction: only `in` (received packets).
        #[arg(value_name = "DIR", value_parser = ["in"])]
        dir: String,
        /// drop or pass.
        #[arg(value_name = "POLICY", value_parser = parse_policy)]
        policy: Policy,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show where netray is attached, with packet counters and rule-table usage.
    #[command(after_help = "Example:\n  netray firewall status --json")]
    Status {
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Sizes of the rule tables (used only when they are created).
#[derive(Args, Clone, Copy)]
pub struct CapacityArgs {
    /// Dense trie chunks per bank (1 KiB each, 1024 of them roots; two banks).
    #[arg(long, default_value_t = FwCapacity::default().chunks_per_bank, value_name = "N")]
    pub fw_chunks: u32,
    /// Range slots per bank (64 bytes: an IPv4 /16 of up to 8 prefixes or another sparse trie node; smaller ones share a slot; two banks).
    #[arg(long, default_value_t = FwCapacity::default().ranges_per_bank, value_name = "N")]
    pub fw_ranges: u32,
    /// Maximum number of rules (at most 1048575).
    #[arg(long, default_value_t = FwCapacity::default().max_rules, value_name = "N")]
    pub max_rules: u32,
    /// Sources the --per-source rate limits track at once, rounded up to a power of two (sets of 4
    /// buckets; a new source evicts, and counts, the least recently used of its set, so evictions
    /// start before the table is full: size it at twice the sources you expect).
    #[arg(long, default_value_t = FwCapacity::default().limit_sources, value_name = "N")]
    pub limit_sources: u32,
    /// Replies the drop policy's reply table holds (connections this host takes part in), rounded
    /// up to a power of two (sets of 4; a new reply evicts, and counts, the one of its set sent on
    /// longest ago: size it at twice the connections you expect).
    #[arg(long, default_value_t = FwCapacity::default().replies, value_name = "N")]
    pub replies: u32,
}

impl CapacityArgs {
    pub fn capacity(self) -> anyhow::Result<FwCapacity> {
        anyhow::ensure!(self.fw_chunks >= 1536, "--fw-chunks must be at least 1536 (1024 are roots)");
        anyhow::ensure!(self.fw_ranges >= 1, "--fw-ranges must be at least 1");
        anyhow::ensure!(self.max_rules >= 1, "--max-rules must be at least 1");
        anyhow::ensure!(
            self.max_rules <= netray_firewall::compile::MAX_RULES,
            "--max-rules must be at most {} (rule ids are packed in 20 bits in the kernel's tables)",
            netray_firewall::compile::MAX_RULES
        );
        anyhow::ensure!(
            (16..=1 << 24).contains(&self.limit_sources),
            "--limit-sources must be between 16 and 16777216"
        );
        anyhow::ensure!((16..=1 << 24).contains(&self.replies), "--replies must be between 16 and 16777216");
        Ok(FwCapacity {
            chunks_per_bank: self.fw_chunks,
            ranges_per_bank: self.fw_ranges,
            max_rules: self.max_rules,
            limit_sources: self.limit_sources,
            replies: self.replies,
        })
    }
}

pub fn parse_mode(s: &str) -> Result<AttachMode, String> {
    s.parse()
}

fn parse_policy(s: &str) -> Result<Policy, String> {
    s.parse()
}

pub fn run(ctx: &Context, cmd: FirewallCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        FirewallCommand::Attach { iface, mode, cap, json } => {
            let fw = ctx.sized_firewall(cap.capacity()?)?;
            let r = fw.attach(&iface, mode)?;
            if json {
                json_line(&r)?;
            } else {
                if let Some(note) = &r.note {
                    eprintln!("netray: note: {note}");
                }
                let verb = if r.already_attached { "enabled on already attached" } else { "attached to" };
                let tc = r.tc_egress.as_deref().map(|b| format!(", TC egress via {b}")).unwrap_or_default();
                outln!("firewall {verb} {} (ifindex {}, {} XDP{tc})", r.interface, r.ifindex, r.mode)?;
            }
        }
        FirewallCommand::Detach { iface, all, json } => {
            let fw = ctx.firewall()?;
            if all {
                let detached = fw.reset()?;
                if json {
                    json_line(&serde_json::json!({ "all": true, "detached": detached, "state_removed": true }))?;
                } else {
                    outln!("detached from every interface; all netray state removed")?;
                }
            } else if let Some(iface) = iface {
                let program_removed = fw.detach(&iface)?;
                if json {
                    json_line(&serde_json::json!({
                        "interface": iface, "firewall": "off", "program_removed": program_removed,
                    }))?;
                } else if program_removed {
                    outln!("firewall detached from {iface}; no netray program left on it")?;
                } else {
                    outln!("firewall off on {iface}; the netray program stays for the other features running there")?;
                }
            }
        }
        FirewallCommand::Policy { iface, dir, policy, json } => {
            let seeded = ctx.firewall()?.set_policy(&iface, policy)?;
            if json {
                json_line(&serde_json::json!({ "interface": iface, dir.as_str(): policy, "connections_noted": seeded }))?;
            } else if policy == Policy::Drop {
                outln!(
                    "policy {dir} drop on {iface}: only allowed traffic, ARP/ND and replies pass ({seeded} open connections noted)"
                )?;
            } else {
                outln!("policy {dir} pass on {iface}: what no rule decides passes")?;
            }
        }
        FirewallCommand::Status { json } => {
            let fw = ctx.read_only_firewall()?;
            let st = fw.status()?;
            if json {
                json_line(&st)?;
                return Ok(ExitCode::SUCCESS);
            }
            if st.interfaces.is_empty() {
                outln!("netray is not attached to any interface")?;
            } else {
                let rows: Vec<Vec<String>> = st
                    .interfaces
                    .iter()
                    .map(|i| {
                        vec![
                            i.interface.clone(),
                            i.ifindex.to_string(),
                            i.mode.clone(),
                            if i.tc.is_empty() {
                                "-".into()
                            } else {
                                i.tc.iter().map(|t| format!("{}:{}", t.hook, t.backend)).collect::<Vec<_>>().join(",")
                            },
                            i.prog_id.to_string(),
                            if i.features.is_empty() { "-".into() } else { i.features.join(",") },
                            st.policies.iter().find(|p| p.interface == i.interface).map_or("-".into(), |p| p.policy_in.to_string()),
                            i.stats.seen.to_string(),
                            i.stats.passed.to_string(),
                            i.stats.dropped.to_string(),
                            i.stats.audited.to_string(),
                        ]
                    })
                    .collect();
                table(
                    &["INTERFACE", "IFINDEX", "MODE", "TC", "PROG", "FEATURES", "POLICY IN", "SEEN", "PASSED", "DROPPED", "AUDITED"],
                    &rows,
                )?;
                for i in st.interfaces.iter().filter(|i| i.capture_front.is_some()) {
                    outln!(
                        "{}: PROG is a `netray dump` capture in front of netray's program, which it reaches by tail call",
                        i.interface
                    )?;
                }
            }
            let t = &st.table;
            outln!(
                "rules: {} of {} · trie: {} of {} chunks, {} of {} range slots per bank · generation {}",
                t.rules, t.max_rules, t.chunks_used, t.chunks_per_bank, t.ranges_used, t.ranges_per_bank, t.generation
            )?;
            if let Some(r) = &st.replies {
                outln!(
                    "replies: {} of {} entries, {} evicted, {} lost to a race · passed {} replies, {} ARP/ND; policy dropped {}",
                    r.entries, r.capacity, r.evicted, r.insert_failed, r.replies_passed, r.neighbour_passed, r.policy_dropped
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
