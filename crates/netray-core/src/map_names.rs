//! The names of the dispatcher's pinned maps, as declared in
//! bpf/include/maps.h: the one place Rust spells them. A test
//! (tests/map_names.rs) opens the XDP and TC dispatcher skeletons and checks
//! that this list and theirs are the same, so a map renamed or added in C
//! fails there, not at run time.

/// The prefix of the maps shared by every interface, owned by the firewall.
pub const FW_PREFIX: &str = "fw_";
/// The prefix of the maps that belong to one interface.
pub const IF_PREFIX: &str = "if_";

// ---- shared by every interface, owned by the firewall (<pin>/fw/) ----
pub const FW_POOL: &str = "fw_pool";
pub const FW_RANGES: &str = "fw_ranges";
pub const FW_MATCHES: &str = "fw_matches";
pub const FW_L4: &str = "fw_l4";
pub const FW_RULES: &str = "fw_rules";
pub const FW_RULE_ACTION: &str = "fw_rule_action";
pub const FW_RULE_HITS: &str = "fw_rule_hits";
pub const FW_RULE_STATS: &str = "fw_rule_stats";
pub const FW_PENDING: &str = "fw_pending";
pub const FW_STATE: &str = "fw_state";
pub const FW_REPLIES: &str = "fw_replies";
pub const FW_REPLY_STATS: &str = "fw_reply_stats";
pub const FW_REPLY_SEEN: &str = "fw_reply_seen";
pub const FW_LIMITS: &str = "fw_limits";
pub const FW_LIMIT_STATS: &str = "fw_limit_stats";
pub const FW_LIMIT_COUNTS: &str = "fw_limit_counts";
pub const FW_LIMIT_SRC: &str = "fw_limit_src";
pub const FW_LIMIT_FILTER: &str = "fw_limit_filter";

// ---- one interface's (<pin>/if/<ifindex>/) ----
pub const IF_CONFIG: &str = "if_config";
pub const IF_CPU_STATS: &str = "if_cpu_stats";
pub const IF_STATS: &str = "if_stats";
pub const IF_EVENTS: &str = "if_events";
pub const IF_CHAIN: &str = "if_chain";
pub const IF_TC_CHAIN: &str = "if_tc_chain";
pub const IF_FLOWS: &str = "if_flows";
pub const IF_FLOW_STATS: &str = "if_flow_stats";
pub const IF_FLOW_CACHE: &str = "if_flow_cache";
pub const IF_CAP_SCRATCH: &str = "if_cap_scratch";

/// Every name above.
pub const ALL: &[&str] = &[
    FW_POOL,
    FW_RANGES,
    FW_MATCHES,
    FW_L4,
    FW_RULES,
    FW_RULE_ACTION,
    FW_RULE_HITS,
    FW_RULE_STATS,
    FW_PENDING,
    FW_STATE,
    FW_REPLIES,
    FW_REPLY_STATS,
    FW_REPLY_SEEN,
    FW_LIMITS,
    FW_LIMIT_STATS,
    FW_LIMIT_COUNTS,
    FW_LIMIT_SRC,
    FW_LIMIT_FILTER,
    IF_CONFIG,
    IF_CPU_STATS,
    IF_STATS,
    IF_EVENTS,
    IF_CHAIN,
    IF_TC_CHAIN,
    IF_FLOWS,
    IF_FLOW_STATS,
    IF_FLOW_CACHE,
    IF_CAP_SCRATCH,
];
