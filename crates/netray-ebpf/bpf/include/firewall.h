/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * Firewall decision: walk the compiled trie with the packet's address, then
 * apply the match's catch-all rule or its protocol/port rules.
 * A few inlined array loads per packet; see netray_abi.h for the layout.
 */
#ifndef NETRAY_FIREWALL_H
#define NETRAY_FIREWALL_H

#include "maps.h"
#include "parse.h"

/* The entry of the run containing key k: count the run starts <= k, without
 * branches (keys and k are < 2^16, so k - key underflows exactly when k < key).
 * The empty asm hides that range from clang, which would otherwise turn each
 * step back into a compare and jump: BPF has no setcc, and a data-dependent
 * branch per key mispredicts on real (varied) traffic. */
static __always_inline __u32 nr_fw_range_entry(const struct nr_fw_range *r, __u32 k)
{
	__u32 above[NR_FW_RANGE_KEYS], n;

#pragma unroll
	for (int i = 1; i < NR_FW_RANGE_KEYS; i++) {
		__u32 d = k - (__u32)r->key[i];

		asm volatile("" : "+r"(d));
		above[i] = d >> 31;
	}
	/* Summed as a tree, not a chain: this is on every lookup's critical path. */
	_Static_assert(NR_FW_RANGE_KEYS == 10, "the sum below adds keys 1-9");
	n = ((above[1] + above[2]) + (above[3] + above[4])) + ((above[5] + above[6]) + (above[7] + above[8])) + above[9];
	n = NR_FW_RANGE_KEYS - 1 - n;
	if (n >= NR_FW_RANGE_KEYS)
		return 0;
	return r->entry[n];
}

/* nr_fw_range_entry for a half block. Written out rather than shared with it
 * through a key-count parameter: the shared form costs two instructions per
 * lookup (clang folds the constant into the address and sign-extends, or keeps
 * the bounds test), and this is on every packet's path. */
static __always_inline __u32 nr_fw_half_entry(const struct nr_fw_range_half *h, __u32 k)
{
	__u32 above[NR_FW_HALF_KEYS], n;

#pragma unroll
	for (int i = 1; i < NR_FW_HALF_KEYS; i++) {
		__u32 d = k - (__u32)h->key[i];

		asm volatile("" : "+r"(d));
		above[i] = d >> 31;
	}
	_Static_assert(NR_FW_HALF_KEYS == 5, "the sum below adds keys 1-4");
	n = NR_FW_HALF_KEYS - 1 - ((above[1] + above[2]) + (above[3] + above[4]));
	if (n >= NR_FW_HALF_KEYS)
		return 0;
	return h->entry[n];
}

_Static_assert(2 * sizeof(struct nr_fw_range_half) == sizeof(struct nr_fw_range), "two halves make a block");

/* The half block a range pointer with NR_FW_HALF selects in its element
 * (NR_FW_SECOND: +32 bytes). */
static __always_inline const void *nr_fw_half_of(const struct nr_fw_range *r, __u32 entry)
{
	_Static_assert(NR_FW_SECOND >> (NR_FW_SECOND_SHIFT - 5) == sizeof(struct nr_fw_range_half), "offset by shift");
	return (const void *)r + ((entry & NR_FW_SECOND) >> (NR_FW_SECOND_SHIFT - 5));
}

/* The quarter block a range pointer with NR_FW_QUARTER selects (NR_FW_ODD:
 * +16 bytes more). Apart from nr_fw_half_of so the verifier sees a half
 * within its element. */
static __always_inline const void *nr_fw_quarter_of(const struct nr_fw_range *r, __u32 entry)
{
	_Static_assert(4 * sizeof(struct nr_fw_range_quarter) == sizeof(struct nr_fw_range), "four quarters make a block");
	_Static_assert(NR_FW_ODD >> (NR_FW_ODD_SHIFT - 4) == sizeof(struct nr_fw_range_quarter), "offset by shift");
	return nr_fw_half_of(r, entry) + ((entry & NR_FW_ODD) >> (NR_FW_ODD_SHIFT - 4));
}

/* nr_fw_range_entry for a quarter block. */
static __always_inline __u32 nr_fw_quarter_entry(const struct nr_fw_range *r, __u32 entry, __u32 k)
{
	const struct nr_fw_range_quarter *q = nr_fw_quarter_of(r, entry);
	__u32 d0, d1, n;

	d0 = k - (__u32)q->key[0];
	d1 = k - (__u32)q->key[1];
	asm volatile("" : "+r"(d0), "+r"(d1));	/* no branches (see nr_fw_range_entry) */
	n = 2 - (d0 >> 31) - (d1 >> 31);
	if (n >= NR_FW_QUARTER_RUNS)
		return 0;
	return q->entry[n];
}

/* The entry for key k of the block a range pointer selects in its element r. */
static __always_inline __u32 nr_fw_block_entry(const struct nr_fw_range *r, __u32 entry, __u32 k)
{
	if (entry & NR_FW_QUARTER)
		return nr_fw_quarter_entry(r, entry, k);
	if (entry & NR_FW_HALF)
		return nr_fw_half_entry(nr_fw_half_of(r, entry), k);
	return nr_fw_range_entry(r, k);
}

/* The leaf of key k in an island block of n islands (struct nr_fw_isles):
 * count the island starts <= k without branches (as in nr_fw_range_entry),
 * then k is in the last of those islands or on the background. One function
 * for the three sizes: n is a constant, so each use unrolls on its own. */
static __always_inline __u32 nr_fw_isle_leaf(const __u16 *start, const __u16 *last, const __u64 *leaves,
					     const __u32 n, __u32 k)
{
	__u32 before[NR_FW_ISLES], count, in, pos, word, packed;
	__s32 d;

#pragma unroll
	for (__u32 i = 0; i < n; i++) {
		__u32 diff = k - (__u32)start[i];

		asm volatile("" : "+r"(diff));
		before[i] = diff >> 31;	/* k < start[i] */
	}
	/* Summed as a tree, not a chain: this is on every lookup's critical path. */
#pragma unroll
	for (__u32 w = 1; w < n; w *= 2)
#pragma unroll
		for (__u32 i = 0; i + w < n; i += 2 * w)
			before[i] += before[i + w];
	count = n - before[0];
	/* inside island count - 1 when k <= its last key; count 0: background */
	d = (__s32)last[(count - 1) & (n - 1)] - (__s32)k;
	asm volatile("" : "+r"(d));
	in = 1 - ((__u32)d >> 31);
	pos = count & -in;
	/* pos / 3 for pos <= 8, and the leaf's bit offset in its word */
	_Static_assert(NR_FW_ISLE_LEAVES_PER_WORD == 3 && NR_FW_ISLES <= 8, "the division below");
	word = (pos * 11) >> 5;
	if (word > n / 3)
		return 0;
	packed = leaves[word] >> (NR_FW_ISLE_LEAF_BITS * (pos - 3 * word));
	return (packed & ((1u << NR_FW_ISLE_ID_BITS) - 1)) |
	       (packed >> NR_FW_ISLE_ID_BITS & 1) << NR_FW_LEAF_L4_SHIFT;
}

/* The leaf of key k (IPv4 bytes 2-3) in the island block a wide range
 * pointer selects in its element r. */
static __always_inline __u32 nr_fw_isles_leaf(const struct nr_fw_range *r, __u32 entry, __u32 k)
{
	if (entry & NR_FW_QUARTER) {
		const struct nr_fw_isles_quarter *q = nr_fw_quarter_of(r, entry);

		return nr_fw_isle_leaf(q->start, q->last, &q->leaves, NR_FW_ISLES_QUARTER, k);
	}
	if (entry & NR_FW_HALF) {
		const struct nr_fw_isles_half *h = nr_fw_half_of(r, entry);

		return nr_fw_isle_leaf(h->start, h->last, h->leaves, NR_FW_ISLES_HALF, k);
	}
	const struct nr_fw_isles *w = (const void *)r;

	return nr_fw_isle_leaf(w->start, w->last, w->leaves, NR_FW_ISLES, k);
}

/* The IPv4 walk: the root chunk (bytes 0-1), then an island block (bytes
 * 2-3 at once) or up to two byte-wide nodes. */
static __always_inline __u32 nr_fw_match_v4(__u32 bank, const __u8 *addr, __u32 root)
{
	__u32 chunk_base = bank * fw_state.chunks_per_bank;
	__u32 range_base = bank * fw_state.ranges_per_bank;
	__u32 idx = chunk_base + root + addr[0];
	struct nr_fw_chunk *chunk;
	struct nr_fw_range *range;
	__u32 entry;

	chunk = bpf_map_lookup_elem(&fw_pool, &idx);
	if (!chunk)
		return 0;
	entry = chunk->entry[addr[1]];

#pragma unroll
	for (int i = 2; i < 4; i++) {
		if (entry & NR_FW_PTR) {
			idx = chunk_base + (entry & NR_FW_INDEX_MASK);
			chunk = bpf_map_lookup_elem(&fw_pool, &idx);
			if (!chunk)
				return 0;
			entry = chunk->entry[addr[i]];
		} else if (entry & NR_FW_RANGE) {
			idx = range_base + (entry & NR_FW_INDEX_MASK);
			range = bpf_map_lookup_elem(&fw_ranges, &idx);
			if (!range)
				return 0;
			if (entry & NR_FW_WIDE)
				return nr_fw_isles_leaf(range, entry, (__u32)addr[2] << 8 | addr[3]);
			entry = nr_fw_block_entry(range, entry, addr[i]);
		} else {
			return entry;
		}
	}
	return (entry & (NR_FW_PTR | NR_FW_RANGE)) ? 0 : entry;
}

/* Longest-prefix match of an address of nbytes (4 or 16, a constant so the
 * walk unrolls) in one bank: the leaf (see netray_abi.h), 0 when no rule
 * prefix covers the address. */
static __always_inline __u32 nr_fw_match_id(__u32 bank, const __u8 *addr, __u32 root, const __u32 nbytes)
{
	__u32 chunk_base = bank * fw_state.chunks_per_bank;
	__u32 range_base = bank * fw_state.ranges_per_bank;
	__u32 entry = NR_FW_PTR | (root + addr[0]);

#pragma unroll
	for (__u32 i = 1; i < nbytes; i++) {
		__u32 idx = chunk_base + (entry & NR_FW_INDEX_MASK);

		if (entry & NR_FW_PTR) {
			struct nr_fw_chunk *chunk = bpf_map_lookup_elem(&fw_pool, &idx);

			if (!chunk)
				return 0;
			entry = chunk->entry[addr[i]];
		} else if (entry & NR_FW_RANGE) {
			struct nr_fw_range *range;

			idx = range_base + (entry & NR_FW_INDEX_MASK);
			range = bpf_map_lookup_elem(&fw_ranges, &idx);
			if (!range)
				return 0;
			entry = nr_fw_block_entry(range, entry, addr[i]);
		} else {
			return entry;
		}
	}
	return (entry & (NR_FW_PTR | NR_FW_RANGE)) ? 0 : entry;
}

/* The IPv6 walk, as a global function: the verifier checks it once on its
 * own, instead of multiplying its 15 levels into every state of the caller's
 * parser (which exceeds the verifier's budget). The address arrives as two
 * scalars holding its 16 bytes in memory order. */
__attribute__((noinline)) __u32 nr_fw_match_v6(__u64 hi, __u64 lo, __u32 bank, __u32 out)
{
	__u64 addr[2] = { hi, lo };

	return nr_fw_match_id(bank & 1, (const __u8 *)addr, NR_FW_ROOT_V6 + (out ? NR_FW_ROOT_OUT : 0), 16);
}

/* The packed hit counter (see struct nr_rule_counter). A word stored with
 * neither top bit set takes one more packet of fewer than NR_FW_HITS_BIG
 * bytes without overflowing either field. */
#define NR_FW_HIT_PACKET (1u << NR_FW_HITS_BYTE_BITS)
#define NR_FW_HIT_BYTES (NR_FW_HIT_PACKET - 1)
#define NR_FW_HIT_SPILL (1u << 31 | 1u << (NR_FW_HITS_BYTE_BITS - 1))
_Static_assert(NR_FW_HITS_BIG <= 1u << (NR_FW_HITS_BYTE_BITS - 1), "a packet fits the bytes field's spare half");

/* Moves a packed counter's value v (with a top bit set) to the rule's wide
 * counter, inside the CPU's spill_seq window (see struct nr_rule_counter). */
static __always_inline void nr_fw_spill(struct nr_fw_pending *p, __u32 idx, __u32 *hits, __u32 v)
{
	struct nr_rule_counter *wide = bpf_map_lookup_elem(&fw_rule_stats, &idx);
	__u32 seq;

	if (!wide)
		return;		/* sized like fw_rule_hits: never */
	/* Atomic (full barriers on every JIT), so a reader on another CPU sees
	 * the odd value before the counters change and the even one after. */
	seq = __sync_fetch_and_add(&p->spill_seq, 1);
	wide->packets += v >> NR_FW_HITS_BYTE_BITS;
	wide->bytes += v & NR_FW_HIT_BYTES;
	*hits = 0;
	seq = __sync_fetch_and_add(&p->spill_seq, 1);
	(void)seq;
}

/* Adds one packet of `bytes` to a rule's counter on this CPU. */
static __always_inline void nr_fw_count_on(__u32 cpu, __u32 rule_id, __u64 bytes)
{
	__u32 idx = cpu * fw_state.counter_slots + rule_id;
	struct nr_rule_counter *wide;

	if (cpu < NR_DIRECT_CPUS && bytes < NR_FW_HITS_BIG) {
		__u32 elem = idx / NR_FW_HITS_PER_ELEM, *hits, v;
		struct nr_rule_hits *h = bpf_map_lookup_elem(&fw_rule_hits, &elem);

		if (!h)
			return;
		hits = &h->word[idx % NR_FW_HITS_PER_ELEM];
		v = *hits + NR_FW_HIT_PACKET + (__u32)bytes;
		if (__builtin_expect(v & NR_FW_HIT_SPILL, 0))
			nr_fw_spill(&fw_pending[cpu], idx, hits, v);
		else
			*hits = v;
		return;
	}
	wide = bpf_map_lookup_elem(&fw_rule_stats, &idx);
	if (wide) {
		wide->packets++;
		wide->bytes += bytes;
	}
}

static __always_inline void nr_fw_count(__u32 rule_id, __u64 len)
{
	nr_fw_count_on(bpf_get_smp_processor_id(), rule_id, len);
}

/* Adds this CPU's pending hit (struct nr_fw_pending) to its counter. */
static __always_inline void nr_fw_take_pending(struct nr_fw_pending *p, __u32 cpu)
{
	if (p->rule)
		nr_fw_count_on(cpu, p->rule, p->len);
}

/* The rule a leaf of the walk (nonzero) stands for, given the packet's
 * protocol and destination port: the catch-all rule, or the match's
 * protocol/port rule (exact port first, then the whole protocol), or 0. */
static __always_inline __u32 nr_fw_leaf_rule(__u32 bank, __u32 leaf,
					     __u32 proto, int has_ports, __u32 dport)
{
	struct nr_fw_match *match;
	struct nr_fw_l4_key key;
	__u32 mkey, *rule;

	if (!(leaf & NR_FW_LEAF_L4))
		return leaf;		/* the rule dropping everything here */
	leaf &= ~NR_FW_LEAF_L4;
	mkey = bank * fw_state.matches_per_bank + leaf;
	match = bpf_map_lookup_elem(&fw_matches, &mkey);
	if (!match || !(match->flags & NR_FW_MATCH_L4))
		return 0;

	key.match_id = leaf;
	key.bank = bank;
	key.proto = proto;
	if (has_ports) {
		key.port = dport;
		rule = bpf_map_lookup_elem(&fw_l4, &key);
		if (rule)
			return *rule;
	}
	key.port = 0;
	rule = bpf_map_lookup_elem(&fw_l4, &key);
	/* any_rule: a shorter prefix's catch-all rule that still applies to
	 * the match's other protocols (0 when none does) */
	return rule ? *rule : match->any_rule;
}

/* Set in a decided rule id when the rule lets the packet pass (audit or
 * allow); NR_FW_ALLOW is set with it for an allow rule. Rule ids fit
 * NR_FW_ISLE_ID_BITS, so both bits are free (bit 30 is NR_FW_LIMITED). */
#define NR_FW_PASSES (1u << NR_FW_PASSES_BIT)
#define NR_FW_ALLOW (1u << NR_FW_ALLOW_BIT)
_Static_assert(NR_FW_PASSES == 1u << 31, "nr_fw_drops tests the sign bit");
_Static_assert(NR_FW_MAX_RULES < NR_FW_ALLOW, "the verdict bits are above every rule id");

/* A matched rule as it applies now (struct nr_fw_rule_action): the rule id
 * (deny), NR_FW_PASSES | the id (audit), NR_FW_PASSES | NR_FW_ALLOW | the id
 * (allow), or 0 once it has expired. Called only after a match, so traffic
 * no rule matches never pays for it. */
static __always_inline __u32 nr_fw_apply(__u32 bank, __u32 rule)
{
	struct nr_fw_rule_action *a;

	/* A bank of plain deny rules (the usual case) needs no lookup. */
	if (!fw_state.special_rules[bank & 1])
		return rule;
	a = bpf_map_lookup_elem(&fw_rule_action, &rule);
	if (!a)
		return rule;
	if (a->expires_ns && bpf_ktime_get_boot_ns() >= a->expires_ns)
		return 0;
	if (a->action == NR_ACTION_AUDIT)
		return rule | NR_FW_PASSES;
	return a->action == NR_ACTION_ALLOW ? rule | NR_FW_PASSES | NR_FW_ALLOW : rule;
}

/* Whether a decided rule (nr_fw_decide) drops the packet: a rule id without
 * the pass bit. One signed compare, as cheap as the test for 0 it replaces. */
static __always_inline int nr_fw_drops(__u32 rule)
{
	return (__s32)rule > 0;
}

/* Whether an audit rule decided the packet (it passes, as a would-drop hit). */
static __always_inline int nr_fw_audits(__u32 rule)
{
	return (rule & (NR_FW_PASSES | NR_FW_ALLOW)) == NR_FW_PASSES;
}

/* Whether an allow rule decided the packet: the interface's policy does not
 * apply to it. */
static __always_inline int nr_fw_allows(__u32 rule)
{
	return rule & NR_FW_ALLOW;
}

/* Set in a decided rule when a rate limit (limit.h), not a rule, drops the
 * packet: the rest is the limit's id. Verdicts: see nr_fw_event_verdict. */
#define NR_FW_LIMITED (1u << NR_FW_LIMITED_BIT)
_Static_assert(NR_FW_LIMITED > NR_FW_ALLOW && NR_FW_ALLOW == 1u << 29, "nr_fw_event_verdict tests bit 29");

/* Set in the decided rule of a packet the interface's drop policy drops
 * (policy.h), with the id of an audit rule that matched or none: it drops
 * (positive) and its monitor verdict is a drop. */
#define NR_FW_POLICY (1u << NR_FW_POLICY_BIT)
_Static_assert(NR_FW_MAX_RULES < NR_FW_POLICY && NR_FW_POLICY < NR_FW_ALLOW, "a bit of its own");

/* The rule id of a decided rule (or the limit's), without the verdict,
 * limit and policy bits. */
static __always_inline __u32 nr_fw_rule_id(__u32 rule)
{
	return rule & ~(NR_FW_PASSES | NR_FW_ALLOW | NR_FW_LIMITED | NR_FW_POLICY);
}

_Static_assert(NR_VERDICT_AUDIT == NR_VERDICT_DROP + 1 && NR_VERDICT_LIMIT == NR_VERDICT_DROP + 2 &&
	       NR_VERDICT_PASS == 0, "nr_fw_event_verdict's arithmetic");

/* The monitor event's verdict (enum nr_verdict) for a decided rule. */
static __always_inline __u8 nr_fw_event_verdict(__u32 rule)
{
	/* drop 1 (a rule or the policy), audit 2, limit 3, pass 0 (no rule
	 * or an allow rule), without branches (a rule has at most one of the
	 * two upper bits) */
	__u32 counts = ((rule | (0u - rule)) >> 31) & ~(rule >> 29) & 1;

	return counts * (NR_VERDICT_DROP + (rule >> 31) + 2 * (rule >> 30 & 1));
}

/* Each family's address pointer is derived and checked in its own branch,
 * so the verifier sees it in bounds. */
static __always_inline __u32 nr_fw_rule(void *data, void *data_end, const struct nr_meta *m, int dst)
{
	__u32 bank, leaf, off = m->l3_off & (NR_PARSE_MAX_OFF - 1);
	const __u8 *addr;

	if (!m->family)
		return 0;
	bank = fw_state.active_bank & 1;
	if (m->family == NR_FAMILY_IPV6) {
		__u64 hi, lo;

		addr = data + off + 8 + (dst ? 16 : 0);
		if ((void *)(addr + 16) > data_end)
			return 0;
		__builtin_memcpy(&hi, addr, 8);
		__builtin_memcpy(&lo, addr + 8, 8);
		leaf = nr_fw_match_v6(hi, lo, bank, dst);
	} else {
		addr = data + off + 12 + (dst ? 4 : 0);
		if ((void *)(addr + 4) > data_end)
			return 0;
		leaf = nr_fw_match_v4(bank, addr, NR_FW_ROOT_V4 + (dst ? NR_FW_ROOT_OUT : 0));
	}
	if (!leaf)
		return 0;
	leaf = nr_fw_leaf_rule(bank, leaf, m->l4_proto, m->flags & NR_PKT_HAS_PORTS, m->dport);
	return leaf ? nr_fw_apply(bank, leaf) : 0;
}

/* The rule id (slot + 1) that decides this packet, with NR_FW_PASSES (and
 * NR_FW_ALLOW) if that rule audits (allows), or 0; counts the hit (see nr_fw_drops).
 * dst = 0: an "in" verdict on the source address (received packets);
 * dst = 1: an "out" verdict on the destination address (sent packets). */
static __always_inline __u32 nr_fw_decide(void *data, void *data_end, const struct nr_meta *m, int dst, __u32 len)
{
	__u32 rule = nr_fw_rule(data, data_end, m, dst);

	if (rule)
		nr_fw_count(nr_fw_rule_id(rule), len);
	return rule;
}

/* nr_fw_decide (verdict bits included) for a received IPv4 packet whose source address (4 bytes,
 * in bounds, and as one word), protocol and destination port the caller
 * already holds in registers: the dispatcher's short path (see
 * xdp_dispatch.h), on a CPU with a pending slot p. The hit is counted when
 * this CPU decides its next packet (struct nr_fw_pending). */
static __always_inline __u32 nr_fw_decide_v4_in(const __u8 *saddr, __u32 src, __u32 proto, int has_ports,
						__u32 dport, __u64 len, struct nr_fw_pending *p, __u32 cpu)
{
	__u32 bank = fw_state.active_bank & 1, leaf, rule = 0;
	__u64 key = (__u64)fw_state.generation << 32 | src;

	/* first, so the previous hit's counter is fetched during this walk */
	nr_fw_take_pending(p, cpu);
	if (p->last_src == key) {
		leaf = p->last_leaf;
	} else {
		p->last_src = key;
		leaf = nr_fw_match_v4(bank, saddr, NR_FW_ROOT_V4);
		p->last_leaf = leaf;
	}
	if (leaf) {
		rule = nr_fw_leaf_rule(bank, leaf, proto, has_ports, dport);
		if (rule) {
			rule = nr_fw_apply(bank, rule);
			p->rule = nr_fw_rule_id(rule);
			p->len = len;
			return rule;
		}
	}
	/* no rule: the same two stores as before audit and expiry existed */
	p->rule = 0;
	p->len = len;
	return 0;
}

#endif /* NETRAY_FIREWALL_H */
