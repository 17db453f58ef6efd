/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * Rate limits (`netray limit`): token buckets on received packets that the
 * firewall lets pass, for a whole source prefix or per source address. See
 * netray_abi.h ("rate limits") for the layout and the bucket (GCRA).
 *
 * The dispatchers call one function where they have decided that a packet
 * passes: nr_limit_drops_v4 (XDP short path), nr_limit_drops_xdp (XDP
 * general path) or nr_limit_drops_skb (TC ingress). With no limit configured
 * that costs one test of fw_state, which the firewall has just read. With
 * limits, the short path lets a source whose first two bytes no limit covers
 * go after one bit test; the rest happens in a global function per program
 * type, which the verifier checks once (NR_LIMIT_DECIDE).
 */
#ifndef NETRAY_LIMIT_H
#define NETRAY_LIMIT_H

#include "maps.h"
#include "parse.h"
#include "firewall.h"

/* The limits, compiled: bank b holds its limit_set count in slots
 * b * NR_LIMIT_MAX + i. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * NR_LIMIT_MAX);
	__type(key, __u32);
	__type(value, struct nr_limit);
} fw_limits SEC(".maps");

/* Counters and whole-prefix buckets by limit id. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, NR_LIMIT_MAX + 1);
	__type(key, __u32);
	__type(value, struct nr_limit_stats);
} fw_limit_stats SEC(".maps");

/* Per-packet counters by limit id, per CPU (struct nr_limit_counts). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NR_LIMIT_MAX + 1);
	__type(key, __u32);
	__type(value, struct nr_limit_counts);
} fw_limit_counts SEC(".maps");

/* Per-source buckets of every --per-source limit, NR_LIMIT_SRC_WAYS to a set
 * (netray_abi.h); userspace sizes it (FwCapacity::limit_sources) and maps it
 * to count and forget sources. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct nr_limit_src_set);
} fw_limit_src SEC(".maps");

/* [bank][family: 0 IPv4, 1 IPv6][word]: bit (a0 << 8 | a1) is set when a
 * limit covers addresses starting with bytes a0, a1. A global (see maps.h on
 * fw_state): one load, no lookup. */
__u64 fw_limit_filter[2][2][NR_LIMIT_FILTER_WORDS] SEC(".data.fw_limit_filter");

#define NR_TCP_SYN 0x02
#define NR_TCP_ACK 0x10

/* Whether the bucket at *tat (ticks) lets one more packet through at `now`,
 * taking it. Compare-and-swap keeps it exact across CPUs; after four lost
 * races in a row (two CPUs on one bucket make that all but impossible) the
 * packet's interval is added unconditionally, so it is still paid for. */
static __always_inline int nr_limit_take(__u64 *tat, __u64 now, __u64 interval, __u64 tolerance)
{
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__u64 old = *(volatile __u64 *)tat;
		__u64 base = old > now ? old : now;

		if (base - now > tolerance)
			return 0;
		if (__sync_val_compare_and_swap(tat, old, base + interval) == old)
			return 1;
	}
	__sync_fetch_and_add(tat, interval);
	return 1;
}

/* A source's tag (struct nr_limit_src): for IPv4 the whole key. */
static __always_inline __u64 nr_limit_src_tag(__u32 id, __u32 family, __u64 hi, __u64 lo, __u64 seed)
{
	__u64 h;

	if (family == NR_FAMILY_IPV4)
		return 1ull << 63 | (__u64)id << 32 | (__u32)hi;
	h = (hi ^ seed) * 0x9e3779b97f4a7c15ull;
	h = (h ^ h >> 29 ^ lo) * 0xbf58476d1ce4e5b9ull;
	return 3ull << 62 | ((h ^ h >> 32) >> 2 ^ id);
}

/* The set of fw_limit_src a tag lives in: the high half of a seeded
 * multiplicative hash (its best-mixed bits). */
static __always_inline struct nr_limit_src_set *nr_limit_src_set_of(__u64 tag)
{
	__u32 idx = (__u32)(((tag ^ fw_state.limit_src_seed) * 0x9e3779b97f4a7c15ull) >> 32) & fw_state.limit_src_mask;

	return bpf_map_lookup_elem(&fw_limit_src, &idx);
}

/* Whether way w holds the source (tag, id, hi, lo). */
static __always_inline int nr_limit_src_is(const struct nr_limit_src *w, __u64 tag, __u32 id, __u64 hi, __u64 lo)
{
	__u64 whi, wlo;

	if (*(volatile const __u64 *)&w->tag != tag)
		return 0;
	if (!(tag & 1ull << 62))
		return 1;	/* IPv4: the tag is the whole key */
	__builtin_memcpy(&whi, w->addr, 8);
	__builtin_memcpy(&wlo, w->addr + 8, 8);
	return w->id == id && whi == hi && wlo == lo;
}

/* The way of set that holds the source, or -1. */
static __always_inline int nr_limit_src_find(const struct nr_limit_src_set *set, __u64 tag, __u32 id, __u64 hi,
					     __u64 lo)
{
#pragma unroll
	for (int i = 0; i < NR_LIMIT_SRC_WAYS; i++)
		if (nr_limit_src_is(&set->way[i], tag, id, hi, lo))
			return i;
	return -1;
}

/* The bucket of one source under limit `id`: found, or created full in the
 * way of its set that was used least recently. NULL only when another CPU
 * took that way for another source at the same moment (counted as passed).
 * A packet racing the creation of its own source on another CPU may see the
 * way's previous bucket, or (IPv6) add the source twice for a while. */
static __always_inline struct nr_limit_src *nr_limit_source(struct nr_limit_stats *st, __u32 id, __u32 family,
							     __u64 hi, __u64 lo, __u64 now)
{
	__u64 tag = nr_limit_src_tag(id, family, hi, lo, fw_state.limit_src_seed), old;
	struct nr_limit_src_set *set = nr_limit_src_set_of(tag);
	struct nr_limit_src *w;
	int found;

	if (!set)
		return NULL;
	found = nr_limit_src_find(set, tag, id, hi, lo);
	if (found >= 0)
		return &set->way[found & (NR_LIMIT_SRC_WAYS - 1)];
	/* an empty way, else the one whose TAT is furthest in the past */
	w = &set->way[NR_SET_VICTIM(set, NR_LIMIT_SRC_WAYS, tat)];
	old = *(volatile __u64 *)&w->tag;
	if (__sync_val_compare_and_swap(&w->tag, old, tag) != old) {
		/* another CPU took the way first, perhaps for this very source */
		found = nr_limit_src_find(set, tag, id, hi, lo);
		return found >= 0 ? &set->way[found & (NR_LIMIT_SRC_WAYS - 1)] : NULL;
	}
	w->tat = now;
	w->banned_until = 0;
	w->id = id;
	w->family = family;
	__builtin_memcpy(w->addr, &hi, 8);
	__builtin_memcpy(w->addr + 8, &lo, 8);
	__sync_fetch_and_add(&st->sources_added, 1);
	return w;
}

/* A limit's clock in ns since boot (see netray_abi.h, "rate limits"): the
 * tick count when the limit has tick_ns, else the boot clock. jiffies_64
 * starts at INITIAL_JIFFIES, 2^32 ticks less 300 s, on 64-bit kernels. */
static __always_inline __u64 nr_limit_now_ns(const struct nr_limit *l)
{
	__u64 tick = l->tick_ns;

	if (tick)
		return bpf_jiffies64() * tick + 300ull * 1000000000 - (tick << 32);
	return bpf_ktime_get_boot_ns();
}

/* Applies the limit in slot `slot` of `bank` to a packet it matches: 1 when
 * the packet is dropped. */
static __always_inline int nr_limit_apply(const struct nr_limit *l, __u32 family, __u64 hi, __u64 lo, __u32 len)
{
	__u32 id = l->id;
	struct nr_limit_stats *st = bpf_map_lookup_elem(&fw_limit_stats, &id);
	struct nr_limit_counts *c = bpf_map_lookup_elem(&fw_limit_counts, &id);
	__u64 now = nr_limit_now_ns(l) << NR_LIMIT_TICK_SHIFT;

	if (!st || !c)
		return 0;
	if (l->flags & NR_LIMIT_PER_SOURCE) {
		struct nr_limit_src *src = nr_limit_source(st, id, family, hi, lo, now);

		if (!src)
			goto pass;	/* cannot be tracked: not limited (counted as passed) */
		if (nr_limit_take(&src->tat, now, l->interval, l->tolerance)) {
			if (__builtin_expect(src->banned_until != 0, 0)) {
				/* the first packet after a ban: back with a full bucket */
				src->tat = now + l->interval;
				src->banned_until = 0;
			}
			goto pass;
		}
		if (src->banned_until) {	/* TAT is past the ban's end until it ends */
			c->banned_drops++;
			goto drop;
		}
		if (l->ban_ns) {
			/* held out by the bucket itself until the ban's end: no clock read per
			 * banned packet; banned_until (boot clock) is for userspace */
			src->tat = now + (l->ban_ns << NR_LIMIT_TICK_SHIFT) + l->tolerance;
			src->banned_until = bpf_ktime_get_boot_ns() + l->ban_ns;
			__sync_fetch_and_add(&st->bans, 1);
		}
		goto drop;
	}
	if (nr_limit_take(&st->tat, now, l->interval, l->tolerance))
		goto pass;
drop:
	c->dropped++;
	c->dropped_bytes += len;
	return 1;
pass:
	c->passed++;
	c->passed_bytes += len;
	return 0;
}

/* The limit a packet matches and what it does to it: the id of the limit
 * that drops it, or 0. The source address arrives as two scalars (its 16
 * bytes in memory order, IPv4 in the low 4 bytes of hi); tcp_flags is the
 * TCP header's flags byte. */
static __always_inline __u32 nr_limit_scan(__u64 hi, __u64 lo, __u32 family, __u32 proto, __u32 tcp_flags,
					   __u32 has_ports, __u32 dport, __u32 len)
{
	__u32 set = fw_state.limit_set, bank = set >> NR_LIMIT_BANK_SHIFT, count = set & NR_LIMIT_COUNT_MASK;

	for (__u32 i = 0; i < NR_LIMIT_MAX; i++) {
		__u32 slot = (bank & 1) * NR_LIMIT_MAX + i;
		struct nr_limit *l;
		__u64 ahi, alo, mhi, mlo;

		if (i >= count)
			break;
		l = bpf_map_lookup_elem(&fw_limits, &slot);
		if (!l)
			break;
		if (l->family != family || (l->proto && l->proto != proto))
			continue;
		if (l->port && (!has_ports || l->port != dport))
			continue;
		if ((l->flags & NR_LIMIT_SYN) && (tcp_flags & (NR_TCP_SYN | NR_TCP_ACK)) != NR_TCP_SYN)
			continue;
		__builtin_memcpy(&ahi, l->addr, 8);
		__builtin_memcpy(&alo, l->addr + 8, 8);
		__builtin_memcpy(&mhi, l->mask, 8);
		__builtin_memcpy(&mlo, l->mask + 8, 8);
		if ((hi & mhi) != ahi || (lo & mlo) != alo)
			continue;
		/* limits never overlap: this is the packet's only one */
		return nr_limit_apply(l, family, hi, lo, len) ? l->id : 0;
	}
	return 0;
}

/* Whether any limit may cover a source whose first 8 bytes are hi (memory
 * order): the gate every packet passes. fam: 0 IPv4, 1 IPv6. */
static __always_inline int nr_limit_may_match(__u32 set, __u32 fam, __u64 hi)
{
	__u32 key = (__u32)(hi & 0xff) << 8 | (__u32)(hi >> 8 & 0xff);

	return fw_limit_filter[set >> NR_LIMIT_BANK_SHIFT & 1][fam & 1][key / 64] >> (key % 64) & 1;
}

/* What the dispatchers pass to the global functions below (at most five
 * arguments): sel = proto | has_ports << 8 | IPv6 << 9 | IPv6 extension
 * headers << 10 | IP << 11 | IP header offset << 16, len_port = packet
 * length << 16 | destination port, and given_v4 = 0, or from the XDP short
 * path NR_LIMIT_GIVEN | TCP flags << 32 | the IPv4 source (memory order),
 * which it has in registers. */
#define NR_LIMIT_GIVEN (1ull << 40)
#define NR_LIMIT_SEL_PORTS (1u << 8)
#define NR_LIMIT_SEL_V6 (1u << 9)
#define NR_LIMIT_SEL_EXT (1u << 10)
#define NR_LIMIT_SEL_IP (1u << 11)
#define NR_LIMIT_SEL_L3_SHIFT 16

/* Set in a decided rule (firewall.h) when a rate limit, not a rule, drops
 * the packet: the rest is the limit's id. */
_Static_assert(NR_FW_LIMITED == 1u << 30, "see firewall.h");

/*
 * The whole decision as a global function per program type, verified once on
 * its own and called with no branch around it: the dispatcher's own states
 * stay what they were (inlined, the limits took the XDP dispatcher past the
 * 6.1 verifier's budget). It takes the firewall's decided rule and returns
 * it, or NR_FW_LIMITED | the id of the limit that drops the packet. It reads
 * what it needs with the load-bytes helper of its context: the source
 * address, and for TCP the flags byte (the header's offset is known for IPv4
 * and for IPv6 without extension headers; behind IPv6 extension headers the
 * segment counts as a SYN, so --syn limits cannot be dodged that way).
 */
#define NR_LIMIT_DECIDE(name, ctx_type, load)							\
__attribute__((noinline)) __u32 name(ctx_type *ctx, __u32 rule, __u32 sel, __u64 len_port,	\
				     __u64 given_v4)						\
{												\
	__u32 l3 = sel >> NR_LIMIT_SEL_L3_SHIFT & (NR_PARSE_MAX_OFF - 1), proto = sel & 0xff;	\
	__u32 v6 = !!(sel & NR_LIMIT_SEL_V6), l4 = 0, tcp_flags = 0, id;			\
	__u64 addr[2] = {};									\
	__u8 b = 0;										\
												\
	if (nr_fw_drops(rule) || !fw_state.limit_set || !(sel & NR_LIMIT_SEL_IP))		\
		return rule;									\
	if (given_v4 & NR_LIMIT_GIVEN) {							\
		/* the XDP short path's: no helper call */					\
		addr[0] = (__u32)given_v4;							\
		tcp_flags = given_v4 >> 32 & 0xff;						\
		goto scan;									\
	}											\
	if (load(ctx, l3 + (v6 ? 8 : 12), addr, v6 ? 16 : 4))					\
		return rule;									\
	if (!nr_limit_may_match(fw_state.limit_set, v6, addr[0]))				\
		return rule;									\
	if (proto == IPPROTO_TCP) {								\
		if (!v6 && !load(ctx, l3, &b, 1))						\
			l4 = l3 + (b & 0xf) * 4;						\
		else if (v6 && !(sel & NR_LIMIT_SEL_EXT))					\
			l4 = l3 + 40;								\
		if (!l4 || load(ctx, l4 + 13, &b, 1))						\
			b = NR_TCP_SYN;								\
		tcp_flags = b;									\
	}											\
scan:												\
	id = nr_limit_scan(addr[0], addr[1], v6 ? NR_FAMILY_IPV6 : NR_FAMILY_IPV4, proto,	\
			   tcp_flags, !!(sel & NR_LIMIT_SEL_PORTS), len_port & 0xffff,		\
			   len_port >> 16);							\
	return id ? NR_FW_LIMITED | id : rule;							\
}

NR_LIMIT_DECIDE(nr_limit_xdp, struct xdp_md, bpf_xdp_load_bytes)
NR_LIMIT_DECIDE(nr_limit_skb, struct __sk_buff, bpf_skb_load_bytes)

/* The selectors of a parsed packet (see NR_LIMIT_SEL_*), as bit arithmetic
 * (no branches for the verifier to follow). */
static __always_inline __u32 nr_limit_sel(const struct nr_meta *m)
{
	return m->l4_proto | (__u32)(m->flags & NR_PKT_HAS_PORTS) << (8 - 5) |
	       (__u32)(m->family == NR_FAMILY_IPV6) << 9 | (__u32)(m->flags & NR_PKT_IPV6_EXT) << (10 - 4) |
	       (__u32)(m->family != 0) << 11 | (__u32)(m->l3_off & (NR_PARSE_MAX_OFF - 1)) << NR_LIMIT_SEL_L3_SHIFT;
}
_Static_assert(NR_PKT_HAS_PORTS == 1 << 5 && NR_PKT_IPV6_EXT == 1 << 4, "nr_limit_sel's shifts");

/* The XDP short path's entry (the common IPv4 frame, see nr_xdp_short,
 * whose source, protocol, port and TCP flags are in registers): the decided
 * rule after the limits. With limits, a source whose first two bytes no limit covers
 * is let go after one bit test. */
static __always_inline __u32 nr_limit_v4(struct xdp_md *ctx, __u32 rule, __u32 src, __u32 proto, __u32 dport,
					 __u64 len, __u32 tcp_flags)
{
	__u32 set = fw_state.limit_set;

	if (__builtin_expect(!set, 1) || !nr_limit_may_match(set, 0, src))
		return rule;
	return nr_limit_xdp(ctx, rule, proto | (proto != IPPROTO_ICMP ? NR_LIMIT_SEL_PORTS : 0) | NR_LIMIT_SEL_IP |
					    NR_COMMON_L3_OFF << NR_LIMIT_SEL_L3_SHIFT, len << 16 | dport,
			    NR_LIMIT_GIVEN | (__u64)tcp_flags << 32 | src);
}

#endif /* NETRAY_LIMIT_H */
