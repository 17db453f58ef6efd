/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * The default-drop policy (`netray firewall policy in drop`) and the reply
 * table it trusts. TC egress notes the reply every packet this host sends
 * would get (nr_policy_note_sent); the ingress dispatchers call
 * nr_policy_xdp / nr_policy_skb for a packet no rule decided. ARP and IPv6 neighbour and
 * router discovery always pass, so the host keeps its neighbours; a reply
 * passes so sessions the host takes part in (an SSH login included) survive
 * the policy being turned on. See struct nr_reply_key in netray_abi.h.
 */
#ifndef NETRAY_POLICY_H
#define NETRAY_POLICY_H

#include <linux/if_ether.h>
#include "maps.h"
#include "parse.h"
#include "firewall.h"

#ifndef IPPROTO_ICMPV6
#define IPPROTO_ICMPV6 58
#endif
/* Echo request/reply types (written out: linux/icmp.h pulls in libc headers) */
#define NR_ICMP_ECHO_REPLY 0
#define NR_ICMP_ECHO 8
#define NR_ICMPV6_ECHO 128
#define NR_ICMPV6_ECHO_REPLY 129
/* ICMPv6 router solicitation .. redirect (RFC 4861: 133-137) */
#define NR_ND_FIRST 133
#define NR_ND_LAST 137

/* Shared by every interface (pinned under <pin>/fw/): sets of
 * NR_REPLY_WAYS replies (netray_abi.h); userspace sizes it
 * (FwCapacity::replies, a power of two: fw_state.reply_mask) and maps it to
 * count and seed replies. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, struct nr_reply_set);
} fw_replies SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nr_reply_stats);
} fw_reply_stats SEC(".maps");

/* See enum nr_reply_seen_layout; a global array, addressed without a lookup
 * (as fw_state, maps.h). */
__u64 fw_reply_seen[NR_REPLY_SEEN_WORDS] SEC(".data.fw_reply_seen");

/* The fw_reply_seen bit of a reply key: a multiplicative hash of its source
 * address (folded to 32 bits) and ports. */
static __always_inline __u32 nr_reply_bit(const struct nr_reply_key *k)
{
	__u32 a0, a1, a2, a3, h;

	__builtin_memcpy(&a0, k->src, 4);
	__builtin_memcpy(&a1, k->src + 4, 4);
	__builtin_memcpy(&a2, k->src + 8, 4);
	__builtin_memcpy(&a3, k->src + 12, 4);
	h = (a0 ^ a1 ^ a2 ^ a3) * 0x9e3779b1u ^ ((__u32)k->sport << 16 | k->dport) * 0x85ebca6bu ^ k->proto;
	return (h * 0xc2b2ae35u) >> (32 - NR_REPLY_SEEN_SHIFT);
}

/* A reply key's hash, from its five 8-byte words w and a seed
 * (fw_state.reply_seed): each word in turn mixed in by a multiply. Its high
 * half picks the set; the whole of it with bit 0 set is the way's tag. */
#define NR_REPLY_HASH_MUL 0x9e3779b97f4a7c15ull
static __always_inline __u64 nr_reply_hash_words(__u64 seed, __u64 w0, __u64 w1, __u64 w2, __u64 w3, __u64 w4)
{
	__u64 h = (seed ^ w0) * NR_REPLY_HASH_MUL;

	h = (h ^ w1) * NR_REPLY_HASH_MUL;
	h = (h ^ w2) * NR_REPLY_HASH_MUL;
	h = (h ^ w3) * NR_REPLY_HASH_MUL;
	return (h ^ w4) * NR_REPLY_HASH_MUL;
}

static __always_inline __u64 nr_reply_hash(const struct nr_reply_key *k, __u64 seed)
{
	__u64 w[5];

	__builtin_memcpy(w, k, sizeof(w));
	return nr_reply_hash_words(seed, w[0], w[1], w[2], w[3], w[4]);
}

static __always_inline struct nr_reply_set *nr_reply_set_of(__u64 hash)
{
	__u32 idx = (__u32)(hash >> 32) & fw_state.reply_mask;

	return bpf_map_lookup_elem(&fw_replies, &idx);
}

/* Whether way w holds the key of words w0..w4 (its tag given). */
static __always_inline int nr_reply_way_is(const struct nr_reply_way *w, __u64 tag, __u64 w0, __u64 w1, __u64 w2,
					   __u64 w3, __u64 w4)
{
	__u64 x[5];

	if (*(volatile const __u64 *)&w->tag != tag)
		return 0;
	__builtin_memcpy(x, &w->key, sizeof(x));
	return x[0] == w0 && x[1] == w1 && x[2] == w2 && x[3] == w3 && x[4] == w4;
}

/* The way of set that holds key k (its tag given), or -1. */
static __always_inline int nr_reply_find(const struct nr_reply_set *set, __u64 tag, const struct nr_reply_key *k)
{
	__u64 w[5];

	__builtin_memcpy(w, k, sizeof(w));
#pragma unroll
	for (int i = 0; i < NR_REPLY_WAYS; i++)
		if (nr_reply_way_is(&set->way[i], tag, w[0], w[1], w[2], w[3], w[4]))
			return i;
	return -1;
}

/* Whether the reply whose key has the words w0..w4 is in fw_replies. */
static __always_inline int nr_reply_known_words(__u64 w0, __u64 w1, __u64 w2, __u64 w3, __u64 w4)
{
	__u64 h = nr_reply_hash_words(fw_state.reply_seed, w0, w1, w2, w3, w4);
	struct nr_reply_set *set = nr_reply_set_of(h);

	if (!set)
		return 0;
#pragma unroll
	for (int i = 0; i < NR_REPLY_WAYS; i++)
		if (nr_reply_way_is(&set->way[i], h | 1, w0, w1, w2, w3, w4))
			return 1;
	return 0;
}

/* Whether the reply k is in fw_replies. */
static __always_inline int nr_reply_known(const struct nr_reply_key *k)
{
	__u64 w[5];

	__builtin_memcpy(w, k, sizeof(w));
	return nr_reply_known_words(w[0], w[1], w[2], w[3], w[4]);
}

static __always_inline struct nr_reply_stats *nr_reply_stats(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&fw_reply_stats, &zero);
}

/* Counts a received packet the drop policy looked up: passed as a reply, or
 * dropped. Returns pass. */
static __always_inline int nr_reply_count(struct nr_reply_stats *st, int pass)
{
	if (st) {
		if (pass)
			st->replies++;
		else
			st->dropped++;
	}
	return pass;
}

/* The ICMP echo id of a packet whose ICMP header starts at l4 (IPv4 with its
 * header length, IPv6 without extension headers); -1 when it is not an echo
 * request (want_request) or reply, or cannot be read. */
static __always_inline int nr_policy_echo_id(void *data, void *data_end, const struct nr_meta *m, int want_request)
{
	__u32 off = m->l3_off & (NR_PARSE_MAX_OFF - 1);
	__u8 *l4, type;

	if (!(m->flags & NR_PKT_HAS_ICMP) || (m->flags & NR_PKT_LATER_FRAGMENT))
		return -1;
	if (m->family == NR_FAMILY_IPV4) {
		__u8 *ip = data + off;

		if ((void *)(ip + 1) > data_end)
			return -1;
		off += (*ip & 0x0f) * 4;
		type = want_request ? NR_ICMP_ECHO : NR_ICMP_ECHO_REPLY;
	} else {
		if (m->flags & NR_PKT_IPV6_EXT)
			return -1;	/* rare for echo; the id's offset is not kept */
		off += sizeof(struct ipv6hdr);
		type = want_request ? NR_ICMPV6_ECHO : NR_ICMPV6_ECHO_REPLY;
	}
	l4 = data + (off & (NR_PARSE_MAX_OFF - 1));
	if ((void *)(l4 + 6) > data_end || l4[0] != type)
		return -1;
	return bpf_ntohs(*(__be16 *)(l4 + 4));
}

/* The reply key of a packet: its own tuple (received: reversed = 0), or the
 * tuple of the reply it would get (sent: reversed = 1). 0 when the packet
 * has none (not TCP, UDP or an ICMP echo). */
static __always_inline int nr_policy_key(void *data, void *data_end, const struct nr_meta *m,
					 struct nr_reply_key *k, const int reversed)
{
	__u32 off = m->l3_off & (NR_PARSE_MAX_OFF - 1);
	__u8 *ip = data + off;
	int id;

	k->family = m->family;
	k->proto = m->l4_proto;
	if (m->l4_proto == IPPROTO_TCP || m->l4_proto == IPPROTO_UDP) {
		if (!(m->flags & NR_PKT_HAS_PORTS))
			return 0;
		k->sport = reversed ? m->dport : m->sport;
		k->dport = reversed ? m->sport : m->dport;
	} else if (m->l4_proto == IPPROTO_ICMP || m->l4_proto == IPPROTO_ICMPV6) {
		id = nr_policy_echo_id(data, data_end, m, reversed);
		if (id < 0)
			return 0;
		k->sport = id;
		k->dport = id;
	} else {
		return 0;
	}
	if (m->family == NR_FAMILY_IPV4) {
		if ((void *)(ip + 20) > data_end)
			return 0;
		__builtin_memcpy(k->src, ip + (reversed ? 16 : 12), 4);
		__builtin_memcpy(k->dst, ip + (reversed ? 12 : 16), 4);
	} else if (m->family == NR_FAMILY_IPV6) {
		if ((void *)(ip + 40) > data_end)
			return 0;
		__builtin_memcpy(k->src, ip + (reversed ? 24 : 8), 16);
		__builtin_memcpy(k->dst, ip + (reversed ? 8 : 24), 16);
	} else {
		return 0;
	}
	return 1;
}

/* TC egress: note the reply this sent packet would get. A known reply costs
 * a set's read (and a store when the coarse clock moved); a new one takes an
 * empty way, else the one whose packet was sent longest ago (counted as
 * evicted). A CPU racing another for one way, or noting one reply twice at
 * the same moment, may leave that reply in two ways for a while: it costs a
 * way, never a verdict. */
static __always_inline void nr_policy_note_sent(void *data, void *data_end, const struct nr_meta *m)
{
	struct nr_reply_key k __attribute__((aligned(8))) = {};
	__u64 now, h, tag, old;
	struct nr_reply_stats *st;
	struct nr_reply_set *set;
	struct nr_reply_way *w;
	int found;

	if (!nr_policy_key(data, data_end, m, &k, 1))
		return;
	now = bpf_ktime_get_coarse_ns();
	{
		__u32 bit = nr_reply_bit(&k);
		__u64 *word = &fw_reply_seen[(bit >> 6) & (NR_REPLY_SEEN_WORDS - 1)], mask = 1ull << (bit & 63);

		if (!(*word & mask))
			__sync_fetch_and_or(word, mask);
	}
	h = nr_reply_hash(&k, fw_state.reply_seed);
	tag = h | 1;
	set = nr_reply_set_of(h);
	if (!set)
		return;
	found = nr_reply_find(set, tag, &k);
	if (found >= 0) {
		w = &set->way[found & (NR_REPLY_WAYS - 1)];
		if (w->last_sent_ns != now)	/* the coarse clock moves once a tick */
			w->last_sent_ns = now;
		return;
	}
	/* an empty way, else the one sent on longest ago */
	w = &set->way[NR_SET_VICTIM(set, NR_REPLY_WAYS, last_sent_ns)];
	st = nr_reply_stats();
	old = *(volatile __u64 *)&w->tag;
	if (__sync_val_compare_and_swap(&w->tag, old, tag) != old) {
		/* another CPU took the way first, perhaps for this very reply */
		if (st && nr_reply_find(set, tag, &k) < 0)
			st->insert_failed++;
		return;
	}
	__builtin_memcpy(&w->key, &k, sizeof(k));
	w->last_sent_ns = now;
	if (st) {
		st->inserts++;
		if (old)
			st->evicted++;
	}
}

/* Whether a received packet passes the drop policy although no rule allowed
 * it: ARP, ICMPv6 router/neighbour discovery (133-137), or a reply noted by
 * nr_policy_note_sent. Counted in fw_reply_stats. */
static __always_inline int nr_policy_passes(void *data, void *data_end, const struct nr_meta *m)
{
	struct nr_reply_stats *st = nr_reply_stats();
	struct nr_reply_key k __attribute__((aligned(8))) = {};
	int pass;

	if (m->ethertype == ETH_P_ARP ||
	    (m->l4_proto == IPPROTO_ICMPV6 && m->family == NR_FAMILY_IPV6 && (m->flags & NR_PKT_HAS_ICMP) &&
	     m->icmp_type >= NR_ND_FIRST && m->icmp_type <= NR_ND_LAST)) {
		if (st)
			st->neighbour++;
		return 1;
	}
	pass = 0;
	if (nr_policy_key(data, data_end, m, &k, 0)) {
		__u32 bit = nr_reply_bit(&k);

		if (fw_reply_seen[(bit >> 6) & (NR_REPLY_SEEN_WORDS - 1)] & (1ull << (bit & 63)))
			pass = nr_reply_known(&k);
	}
	return nr_reply_count(st, pass);
}

/* The XDP short path's policy check (struct nr_meta is not built there):
 * whether an IPv4 TCP/UDP/ICMP packet, its header at ip and L4 header at l4
 * (8 bytes in bounds), may be a reply, from its fw_reply_seen bit alone, as
 * nr_reply_bit computes it for the key nr_policy_key would build; *ports_out
 * gets the key's ports for nr_policy_reply_v4. */
static __always_inline int nr_policy_maybe_reply_v4(const struct iphdr *ip, const __u8 *l4, __u32 proto,
						    __u32 *ports_out)
{
	__u32 ports, h, bit;

	if (proto == IPPROTO_ICMP) {
		if (l4[0] != NR_ICMP_ECHO_REPLY)
			return 0;
		ports = (__u32)bpf_ntohs(*(__be16 *)(l4 + 4)) * 0x10001u;	/* the id in both */
	} else {
		ports = (__u32)bpf_ntohs(*(__be16 *)l4) << 16 | bpf_ntohs(*(__be16 *)(l4 + 2));
	}
	*ports_out = ports;
	h = ip->saddr * 0x9e3779b1u ^ ports * 0x85ebca6bu ^ proto;
	bit = (h * 0xc2b2ae35u) >> (32 - NR_REPLY_SEEN_SHIFT);
	return (fw_reply_seen[(bit >> 6) & (NR_REPLY_SEEN_WORDS - 1)] >> (bit & 63)) & 1;
}

/* The XDP short path's reply lookup, for a packet whose fw_reply_seen bit is
 * set: the key from its addresses (memory order), ports (sport << 16 |
 * dport, host order; an ICMP echo's id in both) and protocol, kept in
 * registers, so no struct nr_meta is parsed and no key read from the packet.
 * A global function (one call, verified once): the dispatcher's states stay
 * as they were. The caller counts (in its CPU's fw_pending row). */
__attribute__((noinline)) int nr_policy_reply_v4(__u32 saddr, __u32 daddr, __u32 ports, __u32 proto)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	/* struct nr_reply_key's words as they lie in memory, built in registers:
	 * family, proto, _pad, sport, dport; src (4 bytes, then zeros); dst */
	__u64 w0 = NR_FAMILY_IPV4 | (__u64)(proto & 0xff) << 8 | (__u64)(ports >> 16) << 32 |
		   (__u64)(ports & 0xffff) << 48;

	return nr_reply_known_words(w0, saddr, 0, daddr, 0);
#else
	struct nr_reply_key k __attribute__((aligned(8))) = {
		.family = NR_FAMILY_IPV4, .proto = proto, .sport = ports >> 16, .dport = ports
	};

	__builtin_memcpy(k.src, &saddr, 4);
	__builtin_memcpy(k.dst, &daddr, 4);
	return nr_reply_known(&k);
#endif
}

/*
 * The dispatchers' one call at their pass/drop decision, as a global function
 * per program type: verified once on its own and called with no branch
 * around it, so the dispatcher's own verifier states stay as they were
 * (inlined, or as a static subprogram re-verified at each call, the policy
 * took the XDP dispatcher past the 6.1 verifier's 1M-instruction budget).
 * It takes the firewall's decided rule (nr_fw_decide) and returns it, or
 * NR_FW_POLICY (with the id of an audit rule that matched, for the monitor
 * event) when the interface's drop policy drops the packet: no rule dropped
 * or allowed it (an audit rule leaves it to the policy) and it is neither
 * ARP/ND nor a reply. m: the packet's nr_meta (a global function's
 * pointer argument may be NULL for the verifier, so it is checked).
 */
#define NR_POLICY_DECIDE(name, ctx_type)								\
__attribute__((noinline)) __u32 name(ctx_type *ctx, __u32 rule, __u32 features, const struct nr_meta *m)	\
{													\
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;			\
													\
	if (!(features & NR_FEAT_POLICY_DROP) || nr_fw_drops(rule) || nr_fw_allows(rule) || !m)	\
		return rule;										\
	return nr_policy_passes(data, data_end, m) ? rule : nr_fw_rule_id(rule) | NR_FW_POLICY;		\
}

NR_POLICY_DECIDE(nr_policy_xdp, struct xdp_md)
NR_POLICY_DECIDE(nr_policy_skb, struct __sk_buff)

#endif /* NETRAY_POLICY_H */
