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

/* Shared by every interface (pinned under <pin>/fw/). Its size is set by
 * userspace before load; the LRU keeps the most recently used replies. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct nr_reply_key);
	__type(value, struct nr_reply_value);
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
 * one lookup and a store; a new one an update (counted, so evictions are
 * known: inserts - entries). */
static __always_inline void nr_policy_note_sent(void *data, void *data_end, const struct nr_meta *m)
{
	struct nr_reply_key k = {};
	struct nr_reply_value *v, nv;
	struct nr_reply_stats *st;

	if (!nr_policy_key(data, data_end, m, &k, 1))
		return;
	nv.last_sent_ns = bpf_ktime_get_coarse_ns();
	{
		__u32 bit = nr_reply_bit(&k);
		__u64 *w = &fw_reply_seen[(bit >> 6) & (NR_REPLY_SEEN_WORDS - 1)], m = 1ull << (bit & 63);

		if (!(*w & m))
			__sync_fetch_and_or(w, m);
	}
	v = bpf_map_lookup_elem(&fw_replies, &k);
	if (v) {
		v->last_sent_ns = nv.last_sent_ns;
		return;
	}
	st = nr_reply_stats();
	if (bpf_map_update_elem(&fw_replies, &k, &nv, BPF_ANY) == 0) {
		if (st)
			st->inserts++;
	} else if (st) {
		st->insert_failed++;
	}
}

/* Whether a received packet passes the drop policy although no rule allowed
 * it: ARP, ICMPv6 router/neighbour discovery (133-137), or a reply noted by
 * nr_policy_note_sent. Counted in fw_reply_stats. */
static __always_inline int nr_policy_passes(void *data, void *data_end, const struct nr_meta *m)
{
	struct nr_reply_stats *st = nr_reply_stats();
	struct nr_reply_key k = {};
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
			pass = bpf_map_lookup_elem(&fw_replies, &k) != NULL;
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
 * as they were. Counted as nr_policy_passes counts. */
__attribute__((noinline)) int nr_policy_reply_v4(__u32 saddr, __u32 daddr, __u32 ports, __u32 proto)
{
	struct nr_reply_key k = { .family = NR_FAMILY_IPV4, .proto = proto, .sport = ports >> 16, .dport = ports };

	__builtin_memcpy(k.src, &saddr, 4);
	__builtin_memcpy(k.dst, &daddr, 4);
	return nr_reply_count(nr_reply_stats(), bpf_map_lookup_elem(&fw_replies, &k) != NULL);
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
