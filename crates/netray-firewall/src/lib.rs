//! The firewall: deny and allow rules on IPv4/IPv6 prefixes (optionally narrowed to a
//! protocol and destination port), enforced by the XDP dispatcher.
//!
//! - [`rule`]: a rule as the user writes it, parsed and validated.
//! - [`action`]: what a matched rule does (deny, audit or allow) and until when (TTL).
//! - [`policy`]: what no rule decides (`firewall policy in drop|pass`), and the reply table.
//! - [`compile`]: the rule set compiled into the chunk trie the kernel walks
//!   (pure Rust, tested without a kernel).
//! - [`tables`]: the shared `fw_*` maps: their sizes, creation and layout.
//! - [`store`]: the pinned maps, and publishing a compiled set atomically.
//! - [`Firewall`]: the operations the CLI and the daemon offer.
//! - [`limit`]: rate limits on what the firewall lets pass.

pub mod action;
pub mod compile;
pub mod limit;
pub mod policy;
pub mod rule;
pub mod store;
pub mod tables;

mod firewall;

pub use firewall::{Firewall, FirewallStatus, RuleStatus, TableUsage};
pub use action::{Action, RuleOptions, Ttl};
pub use policy::{Policy, ReplyTableStatus};
pub use rule::{Direction, Proto, Rule, RuleError};
pub use limit::{Limit, LimitArgs, LimitStatus, Limits};
pub use tables::FwCapacity;
