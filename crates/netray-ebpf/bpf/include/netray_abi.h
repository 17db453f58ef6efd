/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * netray kernel/user ABI: the single source of truth for every struct and
 * constant shared between the BPF programs and userspace. Rust never copies
 * these by hand: it gets them from the skeleton's BTF (netray_ebpf::types).
 *
 * Every struct is laid out with explicit padding so C and Rust agree byte for
 * byte, and so BPF_PROG_TEST_RUN tests can compare raw records.
 */
#ifndef NETRAY_ABI_H
#define NETRAY_ABI_H

#include <linux/types.h>

/* ---- where a packet was seen ---------------------------------------------- */
enum nr_hook {
	NR_HOOK_NONE = 0,
	NR_HOOK_XDP = 1,
	NR_HOOK_TC_INGRESS = 2,
	NR_HOOK_TC_EGRESS = 3,
	NR_HOOK_SOCKET = 4,
};

enum nr_verdict {
	NR_VERDICT_PASS = 0,
	NR_VERDICT_DROP = 1,
	NR_VERDICT_AUDIT = 2,	/* an audit rule matched: passed, and counted as its hit */
	NR_VERDICT_LIMIT = 3,	/* a rate limit dropped it (rule_id: the limit's id) */
};

/* Address family of a parsed packet (0: not IP). */
enum nr_family {
	NR_FAMILY_NONE = 0,
	NR_FAMILY_IPV4 = 4,
	NR_FAMILY_IPV6 = 6,
};

/* nr_packet_event.flags */
enum nr_packet_flags {
	NR_PKT_TRUNCATED = 1 << 0,	/* frame ended inside a header we needed */
	NR_PKT_FRAGMENT = 1 << 1,	/* IPv4 MF/offset or IPv6 fragment header */
	NR_PKT_LATER_FRAGMENT = 1 << 2, /* not the first fragment: no L4 header */
	NR_PKT_IP_OPTIONS = 1 << 3,	/* IPv4 IHL > 5 */
	NR_PKT_IPV6_EXT = 1 << 4,	/* IPv6 extension headers were walked */
	NR_PKT_HAS_PORTS = 1 << 5,	/* sport/dport are valid */
	NR_PKT_HAS_ICMP = 1 << 6,	/* icmp_type/icmp_code are valid */
};

/* How far the parser (parse_body.h) walks: past these it stops and sets
 * NR_PKT_TRUNCATED, so they decide the flags userspace sees. */
enum nr_parse_limits {
	NR_IPV6_MAX_EXT = 8,		/* IPv6 extension headers walked */
	NR_PARSE_MAX_OFF = 4096,	/* largest header offset followed; keeps pointer arithmetic verifiable */
};

/* One record per packet on the per-interface event ring (monitor). */
struct nr_packet_event {
	__u64 ts_ns;		/* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 ifindex;
	__u32 pkt_len;		/* bytes on the wire (linear + frags) */
	__u32 rule_id;		/* what decided: a rule id, or the limit's id (verdict LIMIT), with the bits of enum nr_fw_decided_bit; 0 = none */
	__u16 ethertype;	/* innermost, after VLAN tags (host order) */
	__u16 vlan_outer;	/* VLAN ID of the outer tag, valid if vlan_depth >= 1 */
	__u16 vlan_inner;	/* VLAN ID of the inner tag, valid if vlan_depth == 2 */
	__u16 sport;		/* host order, valid with NR_PKT_HAS_PORTS */
	__u16 dport;
	__u8 hook;		/* enum nr_hook */
	__u8 verdict;		/* enum nr_verdict */
	__u8 family;		/* enum nr_family */
	__u8 l4_proto;		/* IPPROTO_* after extension headers */
	__u8 flags;		/* enum nr_packet_flags */
	__u8 vlan_depth;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 direction;		/* 0 ingress, 1 egress */
	__u8 pkt_type;		/* socket hook: skb->pkt_type (enum nr_pkt_type); 0 elsewhere */
	__u8 _pad[2];
	__u8 src[16];		/* IPv4 in the first 4 bytes, network order */
	__u8 dst[16];
};

/* ---- per-interface dispatcher --------------------------------------------- */

/* nr_if_config.features: what the dispatcher on one interface does. */
enum nr_feature {
	NR_FEAT_FIREWALL = 1 << 0,
	NR_FEAT_MONITOR = 1 << 1,
	NR_FEAT_FLOWS = 1 << 2,
	NR_FEAT_CAPTURE = 1 << 3,	/* exit capture (if_chain / if_tc_chain) */
	NR_FEAT_CHAIN_NEXT = 1 << 4,	/* tail-call the kept foreign program */
	NR_FEAT_DROPS = 1 << 5,		/* an event for each packet the firewall drops (netray drops) */
	/* `firewall policy in drop` (XDP, TC ingress): drop what no rule
	 * decides, except ARP, IPv6 neighbour/router discovery and replies
	 * found in fw_replies (policy.h) */
	NR_FEAT_POLICY_DROP = 1 << 6,
	/* TC egress: note what this host sends in fw_replies, so its replies
	 * pass a drop policy */
	NR_FEAT_REPLIES = 1 << 7,
};

struct nr_if_config {
	__u32 features;		/* enum nr_feature bits */
	__u32 ifindex;
	/* Wake the monitor reader once this many bytes wait in the ring;
	 * below it the reader polls on a timer (wakeups cost µs per record). */
	__u32 monitor_wakeup_bytes;
	__u32 monitor_pid;	/* process reading if_events, 0 = none */
	/* What the TC programs do (enum nr_feature bits: NR_FEAT_FIREWALL and
	 * NR_FEAT_MONITOR); `features` above is the XDP program's. At TC egress
	 * the firewall applies "out" rules (destination), at TC ingress "in"
	 * rules (source). */
	__u32 tc_ingress_features;
	__u32 tc_egress_features;
	__u32 socket_features;	/* socket filter: NR_FEAT_MONITOR */
	__u32 _pad;
};

/* nr_packet_event.pkt_type at the socket hook (linux/if_packet.h PACKET_*). */
enum nr_pkt_type {
	NR_PKT_HOST = 0,
	NR_PKT_BROADCAST = 1,
	NR_PKT_MULTICAST = 2,
	NR_PKT_OTHERHOST = 3,
	NR_PKT_OUTGOING = 4,
};

/* Counter sets of an interface: one per hook. XDP keeps slot 0. */
enum nr_stats_slot {
	NR_STATS_XDP = 0,
	NR_STATS_TC_INGRESS = 1,
	NR_STATS_TC_EGRESS = 2,
	NR_STATS_SOCKET = 3,
	NR_STATS_SLOTS = 4,
};

/* Slots of the per-interface PROG_ARRAY. */
enum nr_chain_slot {
	NR_CHAIN_NEXT = 0,	/* foreign program kept behind netray */
	NR_CHAIN_CAPTURE = 1,	/* exit capture: tail-called with the verdict */
	NR_CHAIN_SLOTS = 4,
};

/* Slots of the per-interface TC PROG_ARRAY (if_tc_chain). */
enum nr_tc_chain_slot {
	NR_TC_CHAIN_CAPTURE_INGRESS = 0,
	NR_TC_CHAIN_CAPTURE_EGRESS = 1,
	NR_TC_CHAIN_SLOTS = 2,
};

/* CPUs whose per-CPU state is a row of a global array, addressed without a
 * map lookup (if_cpu_stats, fw_pending: see maps.h). A CPU beyond keeps its
 * interface counters in the per-CPU map if_stats and counts firewall hits
 * at once. */
enum nr_direct_cpus {
	NR_DIRECT_CPUS = 256,
};

/* Per-interface per-CPU counters, one set per hook (enum nr_stats_slot),
 * summed over CPUs: if_cpu_stats[slot][cpu] for the first NR_DIRECT_CPUS
 * CPUs, if_stats[slot] (per-CPU) for any beyond. */
struct nr_if_stats {
	__u64 seen;		/* passed = seen - dropped */
	__u64 dropped;
	__u64 bytes_seen;
	__u64 bytes_dropped;
	__u64 events_sent;
	__u64 events_lost;	/* event ring full: the record was not written */
	__u64 non_ip;
	__u64 truncated;
	__u64 audited;		/* passed only because the rule that matched audits (counted in seen, not dropped) */
};

/* ---- firewall ------------------------------------------------------------- */
/*
 * The rule set is compiled in userspace into a multibit trie with an 8-bit
 * stride whose first level is direct-indexed by the first two address bytes
 * (256 root chunks per family), so the per-packet source lookup is a handful
 * of verifier-inlined array loads instead of an LPM-trie or hash helper call.
 * Below the roots, a node is either a chunk (256 direct entries, 1 KiB) or,
 * when its 256 entries form at most NR_FW_RANGE_KEYS runs, a range block: the
 * runs' start keys and entries in one 64-byte cache line (DXR-style), or in
 * half of one when there are at most NR_FW_HALF_KEYS runs. An IPv4 node right
 * below a root covers address bytes 2-3 at once, children included, as an
 * island block (struct nr_fw_isles). Real rule sets are sparse, so nearly
 * every node is a block of a quarter or half of a cache line and the
 * structure stays small enough for the CPU caches even with 100,000 rules.
 *
 * An entry points to a chunk (NR_FW_PTR) or a range block (NR_FW_RANGE: an
 * element of fw_ranges, or with NR_FW_HALF one half of it, the second with
 * NR_FW_SECOND, or with NR_FW_QUARTER one quarter; with NR_FW_WIDE an island
 * block of the same size), by index within its
 * bank, or is a leaf for the longest rule prefix covering the
 * address, ancestors folded in: 0 (no rule), the id of the rule that drops
 * everything there, or NR_FW_LEAF_L4 | a match id when only protocol/port
 * rules apply (see nr_fw_match and fw_l4). Catch-all verdicts thus need no
 * load beyond the trie.
 *
 * Two banks of every compiled map exist; userspace fills the idle bank and then
 * flips nr_fw_state.active_bank, so a change takes effect on the next packet
 * and no packet ever sees a half-written table.
 */
enum nr_fw_layout {
	NR_FW_CHUNK_ENTRIES = 256,
	NR_FW_PTR_SHIFT = 31,	/* entry bit 31: a chunk index (low 30 bits) */
	NR_FW_RANGE_SHIFT = 30,	/* entry bit 30: a range block index (low 30 bits) */
	NR_FW_LEAF_L4_SHIFT = 29, /* leaf bit 29: a match id with protocol/port rules */
	NR_FW_WIDE_SHIFT = 29,	/* range pointer bit 29: an island block over IPv4 bytes 2-3 */
	NR_FW_HALF_SHIFT = 28,	/* range pointer bit 28: a half block (struct nr_fw_range_half) */
	NR_FW_SECOND_SHIFT = 27, /* range pointer bit 27: in the element's second half */
	NR_FW_QUARTER_SHIFT = 26, /* range pointer bit 26: a quarter block (struct nr_fw_range_quarter) */
	NR_FW_ODD_SHIFT = 25,	/* range pointer bit 25: the half's second quarter */
	NR_FW_RANGE_KEYS = 10,	/* runs per range block */
	NR_FW_HALF_KEYS = 5,	/* runs per half block */
	NR_FW_QUARTER_RUNS = 3,	/* runs per quarter block */
	/* Root chunks of a bank, by direction and family (256 each, by first byte).
	 * "in" rules match the source of received packets, "out" rules the
	 * destination of sent ones. */
	NR_FW_ROOT_V4 = 0,
	NR_FW_ROOT_V6 = 256,
	NR_FW_ROOT_OUT = 512,	/* added to the above for "out" rules */
	NR_FW_ROOT_CHUNKS = 1024,
};
#define NR_FW_PTR (1u << NR_FW_PTR_SHIFT)
#define NR_FW_RANGE (1u << NR_FW_RANGE_SHIFT)
#define NR_FW_WIDE (1u << NR_FW_WIDE_SHIFT)
#define NR_FW_HALF (1u << NR_FW_HALF_SHIFT)
#define NR_FW_SECOND (1u << NR_FW_SECOND_SHIFT)
#define NR_FW_QUARTER (1u << NR_FW_QUARTER_SHIFT)
#define NR_FW_ODD (1u << NR_FW_ODD_SHIFT)
#define NR_FW_INDEX_MASK (NR_FW_ODD - 1)
#define NR_FW_LEAF_L4 (1u << NR_FW_LEAF_L4_SHIFT)

struct nr_fw_chunk {
	__u32 entry[NR_FW_CHUNK_ENTRIES];
};

/* A node whose entries form few runs: run i covers keys [key[i], key[i+1])
 * and holds entry[i]. key[0] is 0; unused slots repeat the last run's key and
 * entry, so counting the keys <= k finds the run. Keys are one address byte. */
struct nr_fw_range {
	__u16 key[NR_FW_RANGE_KEYS];
	__u32 entry[NR_FW_RANGE_KEYS];
	__u32 _pad;
};

/* A range block of at most NR_FW_HALF_KEYS runs, the same way, in either
 * half of a struct nr_fw_range (a range pointer with NR_FW_HALF). */
struct nr_fw_range_half {
	__u16 key[NR_FW_HALF_KEYS];
	__u16 _pad;
	__u32 entry[NR_FW_HALF_KEYS];
};

/* A range block of at most NR_FW_QUARTER_RUNS runs in a quarter of a struct
 * nr_fw_range (a range pointer with NR_FW_QUARTER; NR_FW_SECOND and
 * NR_FW_ODD say which): run i + 1 starts at key[i] (run 0 at 0). */
struct nr_fw_range_quarter {
	__u16 key[NR_FW_QUARTER_RUNS - 1];
	__u32 entry[NR_FW_QUARTER_RUNS];
};

/*
 * An IPv4 /16 below its root entry (range pointer with NR_FW_WIDE), keyed by
 * address bytes 2-3: a background leaf and up to NR_FW_ISLES islands, the
 * key ranges [start[i], last[i]] (sorted, disjoint, possibly touching) that
 * hold another leaf. A prefix alone in its /16 is one island, so a block
 * holds as many prefixes as islands, about twice what runs would.
 * Leaves are packed in NR_FW_ISLE_LEAF_BITS, three to a word: leaf 0 (bits
 * 0-20 of leaves[0]) is the background, leaf i + 1 island i's. Unused
 * islands at the end start at 0xffff and repeat the last island when it
 * reaches 0xffff (else they end at 0xfffe, empty), so counting the starts
 * <= k and testing the last of those islands finds the leaf.
 * Whole (64 bytes), half (NR_FW_HALF) and quarter (NR_FW_QUARTER) blocks
 * share elements of fw_ranges as run blocks do.
 */
enum nr_fw_isle_layout {
	NR_FW_ISLES = 8,
	NR_FW_ISLES_HALF = 4,
	NR_FW_ISLES_QUARTER = 2,
	NR_FW_ISLE_LEAF_BITS = 21,	/* a leaf id in bits 0-19, NR_FW_LEAF_L4 as bit 20 */
	NR_FW_ISLE_ID_BITS = 20,
	NR_FW_ISLE_LEAVES_PER_WORD = 3,
	/* Rule and match ids must fit a packed leaf: the most rules a firewall holds. */
	NR_FW_MAX_RULES = (1 << NR_FW_ISLE_ID_BITS) - 1,
};

struct nr_fw_isles {
	__u16 start[NR_FW_ISLES];
	__u16 last[NR_FW_ISLES];
	__u64 leaves[3];
	__u64 _pad;
};

struct nr_fw_isles_half {
	__u16 start[NR_FW_ISLES_HALF];
	__u16 last[NR_FW_ISLES_HALF];
	__u64 leaves[2];
};

struct nr_fw_isles_quarter {
	__u16 start[NR_FW_ISLES_QUARTER];
	__u16 last[NR_FW_ISLES_QUARTER];
	__u64 leaves;
};
_Static_assert(sizeof(struct nr_fw_isles) == sizeof(struct nr_fw_range), "an element");
_Static_assert(sizeof(struct nr_fw_isles_half) == sizeof(struct nr_fw_range_half), "half an element");
_Static_assert(sizeof(struct nr_fw_isles_quarter) == sizeof(struct nr_fw_range_quarter), "a quarter");

enum nr_fw_match_flags {
	NR_FW_MATCH_L4 = 1 << 0, /* protocol/port rules apply: consult fw_l4 */
};

struct nr_fw_match {
	/* rule (slot+1) that decides all traffic here, or with NR_FW_MATCH_L4
	 * the traffic of protocols/ports no fw_l4 entry names; 0 = none */
	__u32 any_rule;
	__u32 flags;		/* enum nr_fw_match_flags */
};

/* Protocol/port rules of one match id. port 0 = every port of the protocol. */
struct nr_fw_l4_key {
	__u32 match_id;
	__u8 bank;
	__u8 proto;
	__u16 port;		/* host order */
};

struct nr_fw_state {
	__u32 active_bank;	/* 0 or 1 */
	__u32 generation;	/* bumped on every published change */
	__u32 chunks_per_bank;	/* pool layout, fixed at creation */
	__u32 matches_per_bank;
	__u32 ranges_per_bank;
	__u32 counter_slots;	/* fw_rule_hits/fw_rule_stats entries per CPU (max rules + 1) */
	__u32 chunks_used;	/* by the active bank, roots included */
	__u32 ranges_used;
	__u32 rules;		/* rules compiled into the active bank */
	__u32 table_format;	/* NR_FW_TABLE_FORMAT of the netray that created the tables */
	/* Rules of each bank that audit or expire; 0: a match drops without reading
	 * fw_rule_action. Written before the bank is made active. */
	__u32 special_rules[2];
	/* Rate limits (limit.h): the active bank of fw_limits in bit 31, the
	 * number of limits in it below; 0: none, and packets skip limit.h. */
	__u32 limit_set;
	/* The per-source buckets (fw_limit_src): its sets less one (a power of
	 * two less one), and the seed of the hash that picks a source's set,
	 * random per table so that nobody outside can aim sources at one set. */
	__u32 limit_src_mask;
	__u64 limit_src_seed;
	/* The reply table (fw_replies, policy.h): its sets less one, and the
	 * seed of the hash that picks a reply's set (random, as the above). */
	__u32 reply_mask;
	__u32 _pad;
	__u64 reply_seed;
};

/* Bumped whenever the compiled tables' layout changes: pinned tables of
 * another format are refused rather than misread. */
enum nr_fw_table_format {
	NR_FW_TABLE_FORMAT = 7,	/* 3: fw_rule_action (audit, expiry); 4: rate limits; 5: allow rules, nr_fw_match.any_rule behind fw_l4;
				 * 6: per-source buckets in a set-associative array; 7: the reply table too,
				 * limit counters per CPU */
};

enum nr_fw_dir {
	NR_DIR_IN = 1,		/* match the source of received packets */
	NR_DIR_OUT = 2,		/* match the destination of sent packets */
};

enum nr_fw_action {
	NR_ACTION_DENY = 1,
	NR_ACTION_AUDIT = 2,	/* count the hit, let the packet pass */
	NR_ACTION_ALLOW = 3,	/* let the packet pass; the interface's policy does not apply */
};

/* A decided rule (firewall.h's nr_fw_decide and after it the policy and the
 * limits) is a rule or limit id with these bits above it; the monitor event's
 * rule_id and a flow's last_rule carry it whole, and userspace decodes it in
 * one place (netray_ebpf::decided). Bit numbers, not masks: an enum holds an
 * int, and bit 31 is not one. */
enum nr_fw_decided_bit {
	NR_FW_POLICY_BIT = 28,	/* the interface's drop policy dropped it (the id: an audit rule that matched, or 0) */
	NR_FW_ALLOW_BIT = 29,	/* an allow rule decided (with NR_FW_PASSES_BIT) */
	NR_FW_LIMITED_BIT = 30,	/* a rate limit dropped it; the id is the limit's */
	NR_FW_PASSES_BIT = 31,	/* the rule lets it pass: audit, or allow with NR_FW_ALLOW_BIT */
};

/* A rule as the user wrote it; stored in the pinned fw_rules map by slot. */
struct nr_fw_rule {
	__u8 addr[16];		/* network order, IPv4 in the first 4 bytes */
	__u8 family;		/* 4 or 6 */
	__u8 prefix_len;
	__u8 proto;		/* 0 = any */
	__u8 dir;		/* enum nr_fw_dir */
	__u16 port;		/* 0 = any, host order */
	__u8 action;		/* enum nr_fw_action */
	__u8 _pad;
	__u64 created_ns;	/* CLOCK_REALTIME when added */
};

/* What a matched rule does, and until when, by rule id (fw_rule_action, an
 * array the dispatcher reads only after a packet matched, so packets that
 * match no rule never pay for it); written before the rule is published,
 * read back by `deny list`. nr_fw_rule.action says the same. Expiry is on
 * the kernel's boot clock (bpf_ktime_get_boot_ns, CLOCK_BOOTTIME in
 * userspace): it counts suspended time, so a rule expires at its wall-clock
 * moment after a suspend too, with no netray process running. An expired
 * rule matches nothing and counts nothing. */
struct nr_fw_rule_action {
	__u64 expires_ns;	/* CLOCK_BOOTTIME, 0 = never */
	__u32 action;		/* enum nr_fw_action */
	__u32 _pad;
};

/* Hits of one rule on one CPU. fw_rule_hits and fw_rule_stats hold one run
 * of counter_slots counters per possible CPU (index cpu * counter_slots +
 * rule id): contiguous arrays instead of per-CPU maps, whose elements are
 * allocated one by one and cost a TLB miss per hit when traffic is spread
 * over many rules. Each CPU writes only its own run, so no atomics are needed.
 *
 * A packet of fewer than NR_FW_HITS_BIG bytes is added to a packed word of
 * fw_rule_hits: bytes in the low NR_FW_HITS_BYTE_BITS bits, packets above.
 * At 4 bytes instead of 16, the counters of 100,000 rules take 0.4 MB per
 * CPU, and the counter of a random packet's rule is more often in cache.
 * Before either field can overflow (its top bit set) the
 * word is added to the rule's struct nr_rule_counter in fw_rule_stats and
 * zeroed, between two increments of the CPU's nr_fw_pending.spill_seq: a
 * reader that sees the same even value before and after reading a CPU's
 * counters saw no half-done spill. A CPU beyond NR_DIRECT_CPUS (no pending
 * slot) counts in fw_rule_stats directly, as does a bigger packet (a jumbo
 * frame would fill the bytes field within a few hundred packets). Readers
 * add both. */
enum nr_fw_hits_layout {
	NR_FW_HITS_BYTE_BITS = 20,
	NR_FW_HITS_BIG = 2048,
	NR_FW_HITS_PER_ELEM = 16,	/* an array map strides its values by 8 bytes at least */
};

/* An element of fw_rule_hits: packed counter i is word[i % 16] of element
 * i / 16. */
struct nr_rule_hits {
	__u32 word[NR_FW_HITS_PER_ELEM];
};

struct nr_rule_counter {
	__u64 packets;
	__u64 bytes;
};

/* A hit the dispatcher's short path has not added to fw_rule_stats yet: it
 * is added when the next packet on the same CPU is decided, so that the
 * counter's cache line is fetched while that packet walks the tables instead
 * of after its own walk (random traffic: 10-20% less per packet). Readers
 * add the pending hits to the counters. One per CPU (fw_pending[cpu], for
 * NR_DIRECT_CPUS of them), a cache line each, so CPUs never share one. */
struct nr_fw_pending {
	__u32 rule;		/* rule id, 0 = none */
	__u32 len;		/* bytes of that packet */
	__u32 spill_seq;	/* odd while a packed hit counter is being spilled (see nr_rule_counter) */
	/* The last IPv4 source this CPU walked the "in" tables for (network
	 * order, low half) under fw_state.generation (high half), and the leaf
	 * it found: a burst from one source is decided without the walk until
	 * the rules change. */
	__u32 last_leaf;
	__u64 last_src;
	/* Packets the drop policy dropped on the short path (policy.h; the
	 * general path counts in fw_reply_stats) */
	__u64 policy_dropped;
	/* Replies the drop policy passed on the short path (likewise) */
	__u64 policy_replies;
	__u8 _pad[24];
};
_Static_assert(sizeof(struct nr_fw_pending) == 64, "one cache line per CPU");

/* ---- default-drop policy: replies to what this host sent (policy.h) ---- */
/*
 * fw_replies, pinned and shared by every interface, holds the reply each
 * packet this host sent at TC egress would get: its 5-tuple reversed (ICMP
 * echo: the echo id in both ports). Under NR_FEAT_POLICY_DROP a received
 * packet no rule decides passes when its own tuple is there.
 *
 * A set-associative table, as fw_limit_src is (see there): an array of sets
 * of NR_REPLY_WAYS ways; a seeded hash of the key picks the set and is the
 * way's tag. Finding a reply reads one set with no helper call (the verifier
 * inlines array lookups) and compares tags, then the key of the way whose
 * tag matches; an LRU hash map's lookup is a call that hashes the 40-byte key
 * and touches its LRU state. A new reply takes an empty way of its set, else
 * the one whose last packet was sent longest ago (counted as evicted).
 */
struct nr_reply_key {
	__u8 family;		/* 4 or 6 */
	__u8 proto;		/* IPPROTO_TCP, _UDP, _ICMP or _ICMPV6 */
	__u16 _pad;
	__u16 sport;		/* the reply's (host order); ICMP echo: the id */
	__u16 dport;		/* ICMP echo: the id */
	__u8 src[16];		/* the reply's source: where this host sent to */
	__u8 dst[16];		/* the reply's destination: this host */
} __attribute__((aligned(8)));	/* compared as five 8-byte words (policy.h) */

enum nr_reply_layout {
	NR_REPLY_WAYS = 4,
};

/* One reply: a way of a set. */
struct nr_reply_way {
	__u64 tag;		/* 0: empty; else the key's hash with bit 0 set. Claimed with compare-and-swap */
	__u64 last_sent_ns;	/* bpf_ktime_get_coarse_ns() of the last packet sent */
	struct nr_reply_key key;
};

struct nr_reply_set {
	struct nr_reply_way way[NR_REPLY_WAYS];
};
_Static_assert(sizeof(struct nr_reply_way) == 56, "the key at offset 16, no padding");

/* fw_reply_seen: a bit per hash of a reply's (source, ports), set by TC egress
 * with its entry and never cleared, read before fw_replies is: a packet whose
 * bit is clear is no reply, known without a hash lookup (a drop policy then
 * costs what the firewall alone does). Set bits only send a lookup to
 * fw_replies, so a stale bit costs time, never a wrong verdict. */
enum nr_reply_seen_layout {
	NR_REPLY_SEEN_SHIFT = 20,	/* 2^20 bits (128 KiB): ~12% set by a full table of 131,072 replies */
	NR_REPLY_SEEN_WORDS = 1 << (NR_REPLY_SEEN_SHIFT - 6),
};

/* Per-CPU counters of fw_replies (fw_reply_stats). */
struct nr_reply_stats {
	__u64 inserts;		/* new entries */
	__u64 insert_failed;	/* a sent packet whose reply could not be noted */
	__u64 replies;		/* received packets passed as replies (general path; see nr_fw_pending) */
	__u64 neighbour;	/* received ARP/ND packets passed under a drop policy */
	__u64 dropped;		/* received packets the drop policy dropped */
	__u64 evicted;		/* entries a new one took the place of */
	__u64 _pad[2];
};

/* ---- rate limits (limit.h) ----------------------------------------------- */
/*
 * A limit is a token bucket on received packets from a source prefix
 * (optionally narrowed to a protocol, port or TCP SYNs), applied to what the
 * firewall lets pass. Kept as GCRA: one "theoretical arrival time" (TAT) per
 * bucket, in NR_LIMIT_TICK_SHIFT fractions of a nanosecond since boot;
 * a packet passes when TAT - now <= tolerance ((burst - 1) x interval), and
 * then moves TAT on by one interval (1 / rate). One 64-bit word per bucket,
 * updated with compare-and-swap, so it is exact on any number of CPUs. "now"
 * is the kernel's tick count (jiffies, read without a helper call) for a
 * limit whose tolerance covers a tick, so the tick's steps never hold back
 * its rate; else the boot clock (a helper call, ~40 ns with return-thunk
 * mitigations). A ban moves TAT past its end, so a banned source costs no
 * clock read of its own either.
 *
 * Limits are compiled into two banks of fw_limits (dense slots) plus, per
 * bank, a bitmap over the first two address bytes (fw_limit_filter) that says
 * whether any limit of that family covers them: a packet from elsewhere pays
 * one bit test. Limits never overlap (userspace refuses it), so the first
 * match is the only one.
 */
enum nr_limit_layout {
	NR_LIMIT_MAX = 64,		/* limits at once; ids 1..NR_LIMIT_MAX */
	NR_LIMIT_FILTER_WORDS = 1024,	/* 65536 bits: one per first two address bytes */
	NR_LIMIT_TICK_SHIFT = 4,	/* TAT unit: 1/16 ns (2^64 of them: 36 years of uptime) */
	NR_LIMIT_BANK_SHIFT = 31,	/* nr_fw_state.limit_set: the active bank */
	NR_LIMIT_COUNT_MASK = 0xff,	/* nr_fw_state.limit_set: limits in it */
};

enum nr_limit_flags {
	NR_LIMIT_PER_SOURCE = 1 << 0,	/* a bucket per source address (fw_limit_src) */
	NR_LIMIT_SYN = 1 << 1,		/* only TCP segments with SYN set and ACK clear */
};

/* A limit as the kernel applies it and `limit list` shows it. */
struct nr_limit {
	__u8 addr[16];		/* network order, IPv4 in the first 4 bytes, host bits clear */
	__u8 mask[16];		/* the prefix's mask, same layout */
	__u32 id;		/* 1..NR_LIMIT_MAX */
	__u8 family;		/* 4 or 6 */
	__u8 prefix_len;
	__u8 proto;		/* IPPROTO_*, 0 = any */
	__u8 flags;		/* enum nr_limit_flags */
	__u16 port;		/* destination port, host order, 0 = any */
	__u8 dir;		/* enum nr_fw_dir: NR_DIR_IN */
	__u8 _pad;
	__u32 rate;		/* packets per period, as written */
	__u32 period_s;		/* the rate's period in seconds (1, 60, 3600) */
	__u32 burst;		/* packets a full bucket lets through at once */
	__u32 tick_ns;		/* the kernel's tick (1 s / CONFIG_HZ) when the limit's clock is the
				 * tick (jiffies, no helper call: its tolerance covers a tick), else 0
				 * (the boot clock, per nanosecond) */
	__u64 interval;		/* ticks per packet: (period << NR_LIMIT_TICK_SHIFT) / rate */
	__u64 tolerance;	/* ticks: (burst - 1) x interval */
	__u64 ban_ns;		/* per-source: drop a source this long once it exceeds the rate; 0 = no ban */
	__u64 created_ns;	/* CLOCK_REALTIME when added */
};

/* Counters and the whole-prefix bucket of a limit, by id (fw_limit_stats).
 * Updated with atomic adds; zeroed when the id is given to a new limit. */
struct nr_limit_stats {
	__u64 tat;		/* whole-prefix bucket (ticks); unused with NR_LIMIT_PER_SOURCE */
	__u64 bans;		/* times a source was banned */
	__u64 sources_added;	/* per-source entries this limit inserted into fw_limit_src */
	__u64 _pad[5];		/* a cache line per limit: CPUs on two limits' buckets share none */
};

/* A limit's per-packet counters, per CPU (fw_limit_counts): added with plain
 * stores, where shared counters took a locked add each. Readers sum the CPUs. */
struct nr_limit_counts {
	__u64 passed;		/* packets (and bytes below) the limit let through */
	__u64 passed_bytes;
	__u64 dropped;		/* packets over the rate, or from a banned source */
	__u64 dropped_bytes;
	__u64 banned_drops;	/* of dropped: from a source while banned */
};

/*
 * The per-source buckets, fw_limit_src: a set-associative table (as a CPU
 * cache is), an array of sets of NR_LIMIT_SRC_WAYS buckets. A source's set
 * comes from a seeded hash of its tag; finding it reads that one set with no
 * helper call (the verifier inlines array lookups), where a hash table's
 * lookup is a call and a hash of the whole key. A new source takes an empty
 * way of its set, else the least recently used one: the way whose TAT is
 * furthest in the past (a banned source's is past its ban's end, so it stays).
 * Bounded like an LRU table, and its evictions are counted the same way:
 * sources_added less the sources the table holds.
 */
enum nr_limit_src_layout {
	NR_LIMIT_SRC_WAYS = 4,
};

/* One source's bucket: a way of a set. */
struct nr_limit_src {
	__u64 tag;		/* 0: empty. IPv4: 1 << 63 | id << 32 | address (memory order), the whole
				 * key; IPv6: 3 << 62 | a hash of id and address, with id and addr
				 * compared too. Claimed with compare-and-swap. */
	__u64 tat;		/* ticks */
	__u64 banned_until;	/* boot-clock ns; 0 or past = not banned. Set when a ban starts
				 * (with TAT moved past its end), cleared by the first packet after it */
	__u32 id;		/* the limit's */
	__u32 family;		/* 4 or 6 */
	__u8 addr[16];		/* the source, network order, IPv4 in the first 4 bytes */
};

struct nr_limit_src_set {
	struct nr_limit_src way[NR_LIMIT_SRC_WAYS];
};

/* ---- flows ---------------------------------------------------------------- */
/*
 * Per-flow counters (flows.h): one entry per flow in the per-interface LRU
 * per-CPU hash if_flows, summed over CPUs by userspace. Every field is in host
 * order except the addresses.
 */
enum nr_flow_dir {
	NR_FLOW_INGRESS = 0,
	NR_FLOW_EGRESS = 1,
};

struct nr_flow_key {
	__u32 ifindex;
	__u8 direction;		/* enum nr_flow_dir */
	__u8 family;		/* enum nr_family: 4 or 6 */
	__u8 proto;		/* IPPROTO_* after IPv6 extension headers */
	__u8 _pad;
	__u16 sport;		/* TCP/UDP/UDP-Lite/SCTP; 0 otherwise */
	__u16 dport;		/* ICMP/ICMPv6: type << 8 | code (as IPFIX does) */
	__u8 src[16];		/* network order, IPv4 in the first 4 bytes, rest 0 */
	__u8 dst[16];
};

/* One CPU's share of a flow. The CPU that created the entry holds
 * first_seen_ns; on the others it stays 0 (userspace takes the smallest
 * non-zero one). Times are bpf_ktime_get_coarse_ns() (CLOCK_MONOTONIC_COARSE,
 * a few ms of resolution, cheap enough for every packet). */
struct nr_flow_value {
	__u64 packets;
	__u64 bytes;		/* on the wire, as nr_if_stats.bytes_seen */
	__u64 dropped;		/* packets the firewall dropped */
	__u64 bytes_dropped;
	__u64 first_seen_ns;
	__u64 last_seen_ns;
	__u32 last_rule;	/* what dropped the last packet (a decided rule: enum nr_fw_decided_bit), 0 = none */
	__u8 last_verdict;	/* enum nr_verdict of the last packet */
	__u8 tcp_flags;		/* TCP: the flags of every packet ORed (IPFIX tcpControlBits) */
	__u8 _pad[2];
};

/* Per-interface per-CPU counters of the flow table (if_flow_stats). An LRU map
 * evicts silently; counting each successful insert makes evictions exact:
 * evicted = inserts - entries present (userspace never deletes while the
 * feature is on, and zeroes both when it clears the table). */
struct nr_flow_stats {
	__u64 inserts;		/* new entries created in if_flows */
	__u64 insert_failed;	/* packets of a new flow that could not be stored */
	/* The same instant on both clocks, refreshed whenever this CPU leaves
	 * the fast path: converts nr_flow_slot.last_seen_jiffies to ns. */
	__u64 ref_ns;		/* bpf_ktime_get_coarse_ns() */
	__u64 ref_jiffies;	/* bpf_jiffies64() */
};

/* The per-CPU flow cache (if_flow_cache, NR_FLOW_CACHE_SLOTS entries per CPU,
 * direct-mapped by a hash of the key) in front of if_flows. A hash map lookup
 * costs tens of ns; a packet whose flow holds its CPU's slot is counted in the
 * slot instead, with a few inlined loads and stores. The slot's counts are
 * added to if_flows when another flow takes the slot; until then they are
 * "pending", and userspace adds them to the table's counts. A flow's first
 * packet on a CPU always goes to if_flows (so inserts and evictions are
 * counted there). */
enum nr_flow_cache {
	NR_FLOW_CACHE_SLOTS = 2048,	/* a power of two */
};

struct nr_flow_slot {
	struct nr_flow_key key;
	__u32 used;		/* 1 when key is a flow */
	__u64 packets;		/* pending: counted here, not yet in if_flows */
	__u64 bytes;
	__u64 dropped;
	__u64 bytes_dropped;
	__u64 last_seen_jiffies; /* bpf_jiffies64() of the last pending packet */
	__u32 last_rule;
	__u8 last_verdict;
	__u8 tcp_flags;		/* pending: ORed here, not yet in if_flows */
	__u8 _pad[2];
};

/* ---- capture (netray dump) ------------------------------------------------ */

/* Where on a hook a packet was captured. */
enum nr_capture_point {
	NR_POINT_ENTRY = 0,	/* before any program on the hook decided */
	NR_POINT_EXIT = 1,	/* after netray's program decided: carries the verdict */
	NR_POINT_SLOTS = 2,
};

/* Slots of a capture session's PROG_ARRAY (cap_chain). */
enum nr_capture_slot {
	NR_CAP_NEXT = 0,	/* the program the capture sits in front of */
	NR_CAP_RECORD = 1,	/* the recorder, reached from the filter program */
	NR_CAP_SLOTS = 2,
};

/* Largest packet body one record carries (the largest size class). */
#define NR_CAPTURE_MAX_BYTES 65536

/*
 * Per-CPU handoff between the programs of one packet's path: the filter
 * program writes the snap length its filter returned and the capture point,
 * netray's dispatcher writes its verdict before tail-calling the exit capture.
 */
struct nr_capture_scratch {
	__u32 snaplen;		/* filter result: 0 = no match, else bytes to keep */
	__u32 point;		/* enum nr_capture_point */
	__s32 verdict;		/* return code decided at the exit point */
	__u32 audit_rule;	/* exit point: the audit rule that matched (it passed), 0 = none */
};

/* One record on a capture ring; cap_len packet bytes follow. */
struct nr_capture_record {
	__u64 ts_ns;		/* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 ifindex;
	__u32 wire_len;		/* bytes on the wire, all fragments */
	__u32 cap_len;		/* bytes that follow this header */
	__s32 verdict;		/* exit point: XDP/TC return code; entry: 0 */
	__u8 hook;		/* enum nr_hook */
	__u8 point;		/* enum nr_capture_point */
	__u8 _pad[2];
	__u32 audit_rule;	/* exit point: the audit rule that matched, 0 = none */
};

/* Per-CPU counters of a capture session, one entry per capture point. */
struct nr_capture_stats {
	__u64 seen;		/* packets the filter ran on */
	__u64 matched;		/* packets the filter accepted */
	__u64 captured;		/* records written to a ring */
	__u64 lost;		/* matched, but the ring was full: not written */
	__u64 lost_bytes;	/* wire bytes of the lost packets */
	__u64 clipped;		/* written shorter than the snap length asked (record size limit) */
};

/* ---- drops (netray drops, drops.bpf.c) ---------------------------------- */

/* One record per packet the kernel dropped (skb:kfree_skb with a drop reason),
 * followed by cap_len bytes of the packet as an Ethernet frame starting at
 * its MAC header (or, with NR_DROP_SYNTH_ETH, at a made-up Ethernet header
 * carrying skb->protocol, when the skb had no MAC header yet). */
struct nr_drop_event {
	__u64 ts_ns;		/* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 location;		/* kernel address that freed the skb (kallsyms symbolises it) */
	__u32 reason;		/* enum skb_drop_reason of the running kernel (names from its BTF) */
	__u32 ifindex;		/* skb->dev's, else skb->skb_iif; 0 unknown */
	__u32 netns;		/* inode of the device's network namespace, 0 unknown */
	__u32 wire_len;		/* bytes of the packet from the frame's start */
	__u32 cap_len;		/* bytes that follow this header */
	__u16 protocol;		/* skb->protocol, host order (ETH_P_*) */
	__u8 flags;		/* enum nr_drop_flags */
	__u8 _pad[1];
};

enum nr_drop_flags {
	NR_DROP_SYNTH_ETH = 1 << 0,	/* the first 14 bytes were made up (no MAC header) */
	NR_DROP_NO_REASON = 1 << 1,	/* the kernel's tracepoint has no reason field */
};

/* Largest packet part a drop record carries (the pcap filter's loads reach
 * offset 0xffff at most, so the copy it reads is this big). */
#define NR_DROP_COPY_BYTES 65536

/* Per-CPU counters of the kernel drop tracer. */
struct nr_drop_stats {
	__u64 freed;		/* kfree_skb calls seen */
	__u64 not_drops;	/* of those, not a drop (SKB_CONSUMED / NOT_DROPPED_YET) */
	__u64 other_scope;	/* drops on another interface or network namespace */
	__u64 filtered;		/* drops the pcap filter rejected */
	__u64 reported;		/* records written to the ring */
	__u64 lost;		/* matched, but the ring was full: not written */
};

#endif /* NETRAY_ABI_H */
