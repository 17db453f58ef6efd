/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * Every map of the XDP dispatcher. Sizes here are placeholders: userspace sets
 * max_entries before load, and pins each map (global maps under <pin>/fw/, the
 * per-interface ones under <pin>/if/<ifindex>/) so later processes reuse them.
 */
#ifndef NETRAY_MAPS_H
#define NETRAY_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "netray_abi.h"
#include "capture_scratch.h"

/* ---- firewall: shared by every interface ---- */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 2 * 4096);
	__type(key, __u32);
	__type(value, struct nr_fw_chunk);
} fw_pool SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 2 * 4096);
	__type(key, __u32);
	__type(value, struct nr_fw_range);
} fw_ranges SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 2 * 4096);
	__type(key, __u32);
	__type(value, struct nr_fw_match);
} fw_matches SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, struct nr_fw_l4_key);
	__type(value, __u32);
} fw_l4 SEC(".maps");

/* The rules as written, by slot; the compiled maps above derive from it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct nr_fw_rule);
} fw_rules SEC(".maps");

/* Action and expiry by rule id (see struct nr_fw_rule_action). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 4097);
	__type(key, __u32);
	__type(value, struct nr_fw_rule_action);
} fw_rule_action SEC(".maps");

/* Hits per CPU and rule id, packed, and spilled (see struct nr_rule_counter). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 4097);
	__type(key, __u32);
	__type(value, struct nr_rule_hits);
} fw_rule_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 4097);
	__type(key, __u32);
	__type(value, struct nr_rule_counter);
} fw_rule_stats SEC(".maps");

/*
 * fw_state and if_config are read on every packet, so they are global
 * variables, each alone in a data section: libbpf makes such a section a
 * one-element array map (pinned and shared like the others, named after the
 * section), and the program addresses it directly instead of calling a
 * lookup, with no key on the stack and no null test (1-2 ns per packet).
 * Non-static on purpose: clang may fold reads of a static variable that this
 * file never writes.
 *
 * fw_pending (see struct nr_fw_pending) and if_cpu_stats are global arrays
 * with a row per CPU, for the same reason: indexed by the CPU number, they
 * replace a per-CPU map's lookup (key on the stack, bounds and null tests,
 * the per-CPU pointer) with one address computation.
 *
 * libbpf creates the data sections' maps after every .maps map, so once
 * fw_state is pinned every .maps firewall map is, and readers that test for
 * it (Firewall::list, status) never see a half-created set. Whether
 * fw_pending comes before or after fw_state depends on the order clang emits
 * the sections in, so readers take a missing fw_pending as "nothing pending".
 */
struct nr_fw_pending fw_pending[NR_DIRECT_CPUS] SEC(".data.fw_pending");
struct nr_fw_state fw_state SEC(".data.fw_state");

/* ---- per interface ---- */
struct nr_if_config if_config SEC(".data.if_config");	/* see fw_state above */

/* The interface's counters: a row per CPU for the first NR_DIRECT_CPUS CPUs
 * (see fw_state above), the per-CPU map for any CPU beyond. Readers add both. */
struct nr_if_stats if_cpu_stats[NR_STATS_SLOTS][NR_DIRECT_CPUS] SEC(".data.if_cpu_stats");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NR_STATS_SLOTS);
	__type(key, __u32);
	__type(value, struct nr_if_stats);
} if_stats SEC(".maps");

/* A hook's counters (slot: enum nr_stats_slot) on this CPU; NULL only if the
 * per-CPU map has no such slot. */
static __always_inline struct nr_if_stats *nr_if_stats_on(__u32 slot, __u32 cpu)
{
	if (cpu < NR_DIRECT_CPUS && slot < NR_STATS_SLOTS)
		return &if_cpu_stats[slot][cpu];
	return bpf_map_lookup_elem(&if_stats, &slot);
}

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} if_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, NR_CHAIN_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} if_chain SEC(".maps");

/* The TC programs' chain (a PROG_ARRAY holds programs of one type): the exit
 * capture of each TC hook (enum nr_tc_chain_slot). */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, NR_TC_CHAIN_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} if_tc_chain SEC(".maps");


/* The way of a set-associative table's set (fw_limit_src, fw_replies) that
 * a new entry takes: an empty one (tag 0), else the one whose age field is
 * least, the least recently used. */
#define NR_SET_VICTIM(set, ways, age_field)							\
	({											\
		__u64 __oldest = ~0ull;								\
		__u32 __v = 0;									\
		_Pragma("unroll") for (int __i = 0; __i < (ways); __i++) {			\
			__u64 __age = (set)->way[__i].tag ? (set)->way[__i].age_field : 0;	\
			if (__age < __oldest) {							\
				__oldest = __age;						\
				__v = __i;							\
			}									\
		}										\
		__v & ((ways) - 1);								\
	})

#endif /* NETRAY_MAPS_H */
