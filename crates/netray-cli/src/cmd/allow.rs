//! `netray allow add|del|list`: allow rules, in the deny rules' table.

use std::process::ExitCode;

use clap::Subcommand;
use netray_firewall::Action;

use super::{
    deny::{self, DelArgs, RuleArgs},
    firewall::CapacityArgs,
    Context,
};

#[derive(Subcommand)]
pub enum AllowCommand {
    /// Let traffic from a prefix pass, past a wider deny rule and a drop policy.
    #[command(after_help = "Examples:\n  netray allow add 10.0.0.0/8\n  netray allow add 192.0.2.0/24 --proto tcp --port 22\n  \
        netray allow add 2001:db8::/32 --ttl 1h\n  \
        netray deny add 10.0.0.0/8 && netray allow add 10.1.0.0/16   # all of 10/8 but 10.1/16\n\n\
        Allow and deny rules share one longest-prefix table: the rule with the longest prefix that\n\
        covers the address decides; at the same prefix a --port rule beats a --proto rule, which beats\n\
        a rule for every protocol, and a deny rule beats an allow rule of the same match. What no rule\n\
        decides, the interface's policy does (`netray firewall policy -i IFACE in drop|pass`).")]
    Add {
        #[command(flatten)]
        spec: RuleArgs,
        /// Let the rule expire DURATION from now (30s, 10m, 2h, 1h30m, 2days).
        #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
        ttl: Option<String>,
        #[command(flatten)]
        cap: CapacityArgs,
        /// Print the new rule ids as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete allow rules, given exactly as added or by id.
    #[command(alias = "delete", after_help = "Examples:\n  netray allow del 10.0.0.0/8\n  netray allow del --id 3")]
    Del(DelArgs),
    /// List the allow rules with their time left and hit counters (packets they let pass).
    #[command(after_help = "Example:\n  netray allow list --json")]
    List {
        /// Print one JSON array of rules.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(ctx: &Context, cmd: AllowCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AllowCommand::Add { spec, ttl, cap, json } => deny::add(ctx, &spec, Action::Allow, ttl.as_deref(), cap, json),
        AllowCommand::Del(d) => deny::del(ctx, &d, true),
        AllowCommand::List { json } => deny::list(ctx, true, json),
    }
}
