/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * Firewall decision: walk the compiled chunk trie with the packet's address,
 * then apply the match's catch-all rule or its protocol/port rules.
 * Costs a few inlined array loads per packet; see netray_abi.h for the layout.
 */
#ifndef NETRAY_FIREWALL_H
#define NETRAY_FIREWALL_H

#include "maps.h"

/* Longest-prefix match of an address of nbytes (4 or 16, a constant so the
 * walk unrolls) in the given bank: the match id, or 0 when no rule prefix
 * covers the address. */
static __always_inline __u32 nr_fw_match_id(const struct nr_fw_state *st, __u32 bank,
					    const __u8 *addr, __u32 root, const __u32 nbytes)
{
	__u32 base = bank * st->chunks_per_bank;
	__u32 idx = base + root + addr[0];

#pragma unroll
	for (__u32 i = 1; i < nbytes; i++) {
		struct nr_fw_chunk *chunk;
		__u32 entry;

		chunk = bpf_map_lookup_elem(&fw_pool, &idx);
		if (!chunk)
			return 0;
		entry = chunk->entry[addr[i]];
		if (!(entry & NR_FW_PTR))
			return entry;
		idx = base + (entry & ~NR_FW_PTR);
	}
	return 0;
}

/* The rule id (slot + 1) that denies this packet, or 0. */
static __always_inline __u32 nr_fw_decide(const struct nr_packet_event *ev, const __u8 *addr)
{
	__u32 zero = 0, bank, mid, mkey, *rule;
	struct nr_fw_state *st;
	struct nr_fw_match *m;
	struct nr_fw_l4_key key;

	if (!ev->family)
		return 0;
	st = bpf_map_lookup_elem(&fw_state, &zero);
	if (!st)
		return 0;
	bank = st->active_bank & 1;
	if (ev->family == NR_FAMILY_IPV6)
		mid = nr_fw_match_id(st, bank, addr, NR_FW_ROOT_V6, 16);
	else
		mid = nr_fw_match_id(st, bank, addr, NR_FW_ROOT_V4, 4);
	if (!mid)
		return 0;
	mkey = bank * st->matches_per_bank + mid;
	m = bpf_map_lookup_elem(&fw_matches, &mkey);
	if (!m)
		return 0;
	if (m->any_rule)
		return m->any_rule;
	if (!(m->flags & NR_FW_MATCH_L4))
		return 0;

	key.match_id = mid;
	key.bank = bank;
	key.proto = ev->l4_proto;
	if (ev->flags & NR_PKT_HAS_PORTS) {
		key.port = ev->dport;
		rule = bpf_map_lookup_elem(&fw_l4, &key);
		if (rule)
			return *rule;
	}
	key.port = 0;
	rule = bpf_map_lookup_elem(&fw_l4, &key);
	return rule ? *rule : 0;
}

static __always_inline void nr_fw_count(__u32 rule_id, __u32 len)
{
	struct nr_rule_counter *c = bpf_map_lookup_elem(&fw_rule_stats, &rule_id);

	if (c) {
		c->packets++;
		c->bytes += len;
	}
}

#endif /* NETRAY_FIREWALL_H */
