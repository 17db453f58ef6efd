// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * Never loaded: this object exists so that every ABI struct of netray_abi.h is
 * in its BTF, and the skeleton generator emits the Rust types userspace uses
 * (netray_ebpf::abi). Referencing a type from a global is what keeps it.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "netray_abi.h"
#include "exec_abi.h"

struct nr_packet_event *nr_abi_packet_event;
struct nr_if_config *nr_abi_if_config;
struct nr_if_stats *nr_abi_if_stats;
struct nr_fw_chunk *nr_abi_fw_chunk;
struct nr_fw_range *nr_abi_fw_range;
struct nr_fw_range_half *nr_abi_fw_range_half;
struct nr_fw_range_quarter *nr_abi_fw_range_quarter;
struct nr_fw_isles *nr_abi_fw_isles;
struct nr_fw_isles_half *nr_abi_fw_isles_half;
struct nr_fw_isles_quarter *nr_abi_fw_isles_quarter;
struct nr_fw_match *nr_abi_fw_match;
struct nr_fw_l4_key *nr_abi_fw_l4_key;
struct nr_fw_state *nr_abi_fw_state;
struct nr_fw_rule *nr_abi_fw_rule;
struct nr_fw_rule_action *nr_abi_fw_rule_action;
struct nr_rule_counter *nr_abi_rule_counter;
struct nr_rule_hits *nr_abi_rule_hits;
struct nr_fw_pending *nr_abi_fw_pending;
enum nr_hook nr_abi_hook;
enum nr_verdict nr_abi_verdict;
enum nr_family nr_abi_family;
enum nr_packet_flags nr_abi_packet_flags;
enum nr_parse_limits nr_abi_parse_limits;
enum nr_feature nr_abi_feature;
enum nr_chain_slot nr_abi_chain_slot;
enum nr_fw_match_flags nr_abi_fw_match_flags;
enum nr_fw_dir nr_abi_fw_dir;
enum nr_fw_action nr_abi_fw_action;
enum nr_fw_layout nr_abi_fw_layout;
enum nr_pkt_type nr_abi_pkt_type;
enum nr_stats_slot nr_abi_stats_slot;
enum nr_direct_cpus nr_abi_direct_cpus;
enum nr_fw_hits_layout nr_abi_fw_hits_layout;
enum nr_fw_isle_layout nr_abi_fw_isle_layout;
enum nr_fw_table_format nr_abi_fw_table_format;
enum nr_fw_decided_bit nr_abi_fw_decided_bit;
/* default-drop policy */
struct nr_reply_key *nr_abi_reply_key;
struct nr_reply_way *nr_abi_reply_way;
struct nr_reply_set *nr_abi_reply_set;
enum nr_reply_layout nr_abi_reply_layout;
struct nr_reply_stats *nr_abi_reply_stats;
enum nr_reply_seen_layout nr_abi_reply_seen_layout;
/* rate limits */
struct nr_limit *nr_abi_limit;
struct nr_limit_stats *nr_abi_limit_stats;
struct nr_limit_counts *nr_abi_limit_counts;
struct nr_limit_src_set *nr_abi_limit_src_set;
struct nr_limit_src *nr_abi_limit_src;
enum nr_limit_layout nr_abi_limit_layout;
enum nr_limit_flags nr_abi_limit_flags;
enum nr_limit_src_layout nr_abi_limit_src_layout;
/* capture */
struct nr_capture_scratch *nr_abi_capture_scratch;
struct nr_capture_record *nr_abi_capture_record;
struct nr_capture_stats *nr_abi_capture_stats;
enum nr_capture_point nr_abi_capture_point;
enum nr_capture_slot nr_abi_capture_slot;
enum nr_tc_chain_slot nr_abi_tc_chain_slot;
/* flows */
struct nr_flow_key *nr_abi_flow_key;
struct nr_flow_value *nr_abi_flow_value;
struct nr_flow_stats *nr_abi_flow_stats;
struct nr_flow_slot *nr_abi_flow_slot;
enum nr_flow_cache nr_abi_flow_cache;
enum nr_flow_dir nr_abi_flow_dir;
/* the kernel's program contexts (UAPI), for offsets in hand-assembled code */
struct xdp_md *nr_abi_xdp_md;
struct __sk_buff *nr_abi_sk_buff;
/* drops */
struct nr_drop_event *nr_abi_drop_event;
struct nr_drop_stats *nr_abi_drop_stats;
enum nr_drop_flags nr_abi_drop_flags;
/* exec (exec_abi.h) */
struct nr_exec_event *nr_abi_exec_event;
struct nr_exec_config *nr_abi_exec_config;
struct nr_exec_stats *nr_abi_exec_stats;
enum nr_exec_limits nr_abi_exec_limits;
enum nr_exec_flags nr_abi_exec_flags;
enum nr_exec_filter nr_abi_exec_filter;

char LICENSE[] SEC("license") = "Dual MIT/GPL";
