/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * The TC dispatcher (ingress and egress) and the socket-filter monitor.
 *
 * They share the interface's maps with the XDP dispatcher (same names, same
 * pins): if_config says what each hook does (tc_ingress_features,
 * tc_egress_features; `features` stays the XDP program's), every hook keeps
 * its own set of counters (enum nr_stats_slot) and writes its monitor
 * records to the one if_events ring.
 *
 * TC programs pass with TC_ACT_UNSPEC (tcx: TCX_NEXT), never TC_ACT_OK, so
 * the programs and filters behind netray's — another tool's tcx program or a
 * classic tc filter — still run. A drop is TC_ACT_SHOT.
 */
#ifndef NETRAY_TC_DISPATCH_H
#define NETRAY_TC_DISPATCH_H

#include <linux/pkt_cls.h>
#include "parse.h"
#include "firewall.h"
#include "monitor.h"
#include "flows.h"

#ifndef unlikely
#define unlikely(x) __builtin_expect(!!(x), 0)
#endif

/* Linear bytes the TC programs want before parsing (headers of any frame the
 * parser handles in practice). */
#define NR_TC_PULL 128

/* By TC the stack has moved the outer 802.1Q/802.1ad tag of a frame into skb
 * metadata: count it as the outer tag, as XDP sees it in the frame. Returns
 * whether there was one. */
static __always_inline int nr_tc_vlan_from_metadata(struct __sk_buff *skb, struct nr_meta *m)
{
	if (!skb->vlan_present)
		return 0;
	m->vlan_inner = m->vlan_outer;
	m->vlan_outer = skb->vlan_tci & 0x0fff;
	if (m->vlan_depth < 2)
		m->vlan_depth++;
	return 1;
}

static __always_inline int nr_tc_dispatch(struct __sk_buff *skb, const int egress)
{
	void *data, *data_end;
	struct nr_meta meta = {};
	struct nr_if_config *cfg;
	struct nr_if_stats *stats;
	__u32 zero = 0, slot = egress ? NR_STATS_TC_EGRESS : NR_STATS_TC_INGRESS;
	__u32 features, rule = 0, len = skb->len;
	int verdict = TC_ACT_UNSPEC;

	cfg = &if_config;
	stats = nr_if_stats_on(slot, bpf_get_smp_processor_id());
	if (!stats)
		return TC_ACT_UNSPEC;
	features = egress ? cfg->tc_egress_features : cfg->tc_ingress_features;

	/* Headers in paged data (rare) are pulled into the linear area. */
	if (unlikely(skb->data_end - skb->data < NR_TC_PULL && skb->data_end - skb->data < len))
		bpf_skb_pull_data(skb, len < NR_TC_PULL ? len : NR_TC_PULL);
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;

	if (!nr_parse_fast(data, data_end, &meta))
		nr_parse(data, data_end, &meta);
	if (nr_tc_vlan_from_metadata(skb, &meta))
		len += 4;	/* the tag is part of the frame on the wire */

	nr_count_packet(stats, &meta, len);

	if (features & NR_FEAT_FIREWALL) {
		/* egress: "out" rules on the destination; ingress: "in" rules. */
		rule = nr_fw_decide(data, data_end, &meta, egress, len);
		if (rule) {
			stats->dropped++;
			stats->bytes_dropped += len;
			verdict = TC_ACT_SHOT;
		}
	}

	if (features & NR_FEAT_FLOWS)
		nr_flow_account(data, data_end, &meta, skb->ifindex, len, rule,
				egress ? NR_FLOW_EGRESS : NR_FLOW_INGRESS);

	if (features & NR_FEAT_MONITOR) {
		struct nr_packet_event ev = {};

		nr_meta_to_event(data, data_end, &meta, &ev);
		ev.ts_ns = bpf_ktime_get_ns();
		ev.ifindex = skb->ifindex;
		ev.pkt_len = len;
		ev.hook = egress ? NR_HOOK_TC_EGRESS : NR_HOOK_TC_INGRESS;
		ev.direction = egress;
		ev.verdict = verdict == TC_ACT_SHOT ? NR_VERDICT_DROP : NR_VERDICT_PASS;
		ev.rule_id = rule;
		nr_monitor_emit(&ev, cfg, stats);
	}

	if (unlikely(features & NR_FEAT_CAPTURE)) {
		struct nr_capture_scratch *s = bpf_map_lookup_elem(&if_cap_scratch, &zero);

		if (s) {
			s->verdict = verdict;
			bpf_tail_call(skb, &if_tc_chain,
				      egress ? NR_TC_CHAIN_CAPTURE_EGRESS : NR_TC_CHAIN_CAPTURE_INGRESS);
		}
	}
	return verdict;
}

/* ---- socket filter --------------------------------------------------------
 * Socket filters have no direct packet access: the same parse as parse.h,
 * with the same flag semantics, done with bpf_skb_load_bytes_relative() from
 * the MAC header (which works both on a packet socket and under
 * BPF_PROG_TEST_RUN). A load that fails means the frame ends inside it.
 */

#define NR_SK_LOAD(skb, off, buf, n) \
	bpf_skb_load_bytes_relative(skb, (off), (buf), (n), BPF_HDR_START_MAC)

static __always_inline void nr_sk_parse_l4(struct __sk_buff *skb, __u32 off, struct nr_meta *m)
{
	__u8 b[4];
	__u8 tmp;

	switch (m->l4_proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE:
	case IPPROTO_SCTP: {
		__u32 hdr = m->l4_proto == IPPROTO_TCP ? 20 : m->l4_proto == IPPROTO_SCTP ? 12 : 8;

		if (NR_SK_LOAD(skb, off, b, 4)) {
			m->flags |= NR_PKT_TRUNCATED;
			return;
		}
		m->sport = (__u16)b[0] << 8 | b[1];
		m->dport = (__u16)b[2] << 8 | b[3];
		m->flags |= NR_PKT_HAS_PORTS;
		if (NR_SK_LOAD(skb, off + hdr - 1, &tmp, 1))
			m->flags |= NR_PKT_TRUNCATED;
		return;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		if (NR_SK_LOAD(skb, off, b, 4)) {
			m->flags |= NR_PKT_TRUNCATED;
			return;
		}
		m->icmp_type = b[0];
		m->icmp_code = b[1];
		m->flags |= NR_PKT_HAS_ICMP;
		return;
	default:
		return;
	}
}

static __always_inline void nr_sk_parse_ipv4(struct __sk_buff *skb, __u32 off, struct nr_meta *m)
{
	struct iphdr ip;
	__u32 hlen;
	__u8 tmp;

	if (NR_SK_LOAD(skb, off, &ip, sizeof(ip))) {
		m->flags |= NR_PKT_TRUNCATED;
		return;
	}
	m->family = NR_FAMILY_IPV4;
	m->l3_off = off;
	m->l4_proto = ip.protocol;
	hlen = (ip.ihl & 0xf) * 4;
	if (hlen < sizeof(ip)) {
		m->flags |= NR_PKT_TRUNCATED;
		return;
	}
	if (hlen > sizeof(ip))
		m->flags |= NR_PKT_IP_OPTIONS;
	if (ip.frag_off & bpf_htons(0x3fff)) {
		m->flags |= NR_PKT_FRAGMENT;
		if (ip.frag_off & bpf_htons(0x1fff)) {
			m->flags |= NR_PKT_LATER_FRAGMENT;
			return;
		}
	}
	if (NR_SK_LOAD(skb, off + hlen - 1, &tmp, 1)) {
		m->flags |= NR_PKT_TRUNCATED;
		return;
	}
	nr_sk_parse_l4(skb, off + hlen, m);
}

static __always_inline void nr_sk_parse_ipv6(struct __sk_buff *skb, __u32 off, struct nr_meta *m)
{
	__u8 next, tmp;

	/* The whole 40-byte header must be there, as parse.h requires. */
	if (NR_SK_LOAD(skb, off + 6, &next, 1) || NR_SK_LOAD(skb, off + 39, &tmp, 1)) {
		m->flags |= NR_PKT_TRUNCATED;
		return;
	}
	m->family = NR_FAMILY_IPV6;
	m->l3_off = off;
	off += 40;

#pragma unroll
	for (int i = 0; i < NR_IPV6_MAX_EXT; i++) {
		__u8 ext[8];
		__u32 len;

		if (next != NR_NEXTHDR_HOP && next != NR_NEXTHDR_ROUTING &&
		    next != NR_NEXTHDR_DEST && next != NR_NEXTHDR_FRAGMENT &&
		    next != NR_NEXTHDR_AUTH)
			break;
		m->flags |= NR_PKT_IPV6_EXT;
		if (off >= NR_PARSE_MAX_OFF) {
			m->l4_proto = next;
			m->flags |= NR_PKT_TRUNCATED;
			return;
		}
		if (NR_SK_LOAD(skb, off, ext, 8)) {
			m->l4_proto = next;
			m->flags |= NR_PKT_TRUNCATED;
			return;
		}
		if (next == NR_NEXTHDR_FRAGMENT) {
			m->flags |= NR_PKT_FRAGMENT;
			if ((ext[2] << 8 | ext[3]) & 0xfff8) {
				m->l4_proto = ext[0];
				m->flags |= NR_PKT_LATER_FRAGMENT;
				return;
			}
			len = 8;
		} else if (next == NR_NEXTHDR_AUTH) {
			len = (ext[1] + 2) * 4;
		} else {
			len = (ext[1] + 1) * 8;
		}
		next = ext[0];
		off += len;
	}
	m->l4_proto = next;
	if (next == NR_NEXTHDR_HOP || next == NR_NEXTHDR_ROUTING || next == NR_NEXTHDR_DEST ||
	    next == NR_NEXTHDR_FRAGMENT || next == NR_NEXTHDR_AUTH) {
		/* More extension headers than parse.h walks: as there, truncated. */
		m->flags |= NR_PKT_TRUNCATED;
		return;
	}
	if (off >= NR_PARSE_MAX_OFF) {
		m->flags |= NR_PKT_TRUNCATED;
		return;
	}
	nr_sk_parse_l4(skb, off, m);
}

/* A subprogram, like nr_parse, to keep the verifier's work per path small. */
static __attribute__((noinline)) void nr_sk_parse(struct __sk_buff *skb, struct nr_meta *m)
{
	__u32 off = ETH_HLEN;
	__be16 proto;

	if (NR_SK_LOAD(skb, 12, &proto, 2)) {
		m->flags |= NR_PKT_TRUNCATED;
		return;
	}

#pragma unroll
	for (int i = 0; i < 2; i++) {
		struct nr_vlan_hdr vh;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if (NR_SK_LOAD(skb, off, &vh, sizeof(vh))) {
			m->ethertype = bpf_ntohs(proto);
			m->flags |= NR_PKT_TRUNCATED;
			return;
		}
		if (i == 0)
			m->vlan_outer = bpf_ntohs(vh.tci) & 0x0fff;
		else
			m->vlan_inner = bpf_ntohs(vh.tci) & 0x0fff;
		m->vlan_depth = i + 1;
		proto = vh.proto;
		off += sizeof(vh);
	}
	m->ethertype = bpf_ntohs(proto);

	if (proto == bpf_htons(ETH_P_IP))
		nr_sk_parse_ipv4(skb, off, m);
	else if (proto == bpf_htons(ETH_P_IPV6))
		nr_sk_parse_ipv6(skb, off, m);
}

/* Emits one monitor record per packet the socket sees; returns 0 so the
 * socket itself never queues anything. */
static __always_inline int nr_socket_monitor(struct __sk_buff *skb)
{
	struct nr_packet_event ev = {};
	struct nr_meta meta = {};
	struct nr_if_config *cfg;
	struct nr_if_stats *stats;
	__u32 slot = NR_STATS_SOCKET, len = skb->len;

	cfg = &if_config;
	stats = nr_if_stats_on(slot, bpf_get_smp_processor_id());
	if (!stats)
		return 0;

	nr_sk_parse(skb, &meta);
	if (nr_tc_vlan_from_metadata(skb, &meta))
		len += 4;
	nr_count_packet(stats, &meta, len);
	if (!(cfg->socket_features & NR_FEAT_MONITOR))
		return 0;

	ev.ethertype = meta.ethertype;
	ev.vlan_outer = meta.vlan_outer;
	ev.vlan_inner = meta.vlan_inner;
	ev.vlan_depth = meta.vlan_depth;
	ev.sport = meta.sport;
	ev.dport = meta.dport;
	ev.family = meta.family;
	ev.l4_proto = meta.l4_proto;
	ev.flags = meta.flags;
	ev.icmp_type = meta.icmp_type;
	ev.icmp_code = meta.icmp_code;
	if (meta.family == NR_FAMILY_IPV4) {
		if (NR_SK_LOAD(skb, meta.l3_off + 12, ev.src, 4) ||
		    NR_SK_LOAD(skb, meta.l3_off + 16, ev.dst, 4)) {
			__builtin_memset(ev.src, 0, sizeof(ev.src));
			__builtin_memset(ev.dst, 0, sizeof(ev.dst));
		}
	} else if (meta.family == NR_FAMILY_IPV6) {
		if (NR_SK_LOAD(skb, meta.l3_off + 8, ev.src, 16) ||
		    NR_SK_LOAD(skb, meta.l3_off + 24, ev.dst, 16)) {
			__builtin_memset(ev.src, 0, sizeof(ev.src));
			__builtin_memset(ev.dst, 0, sizeof(ev.dst));
		}
	}
	ev.ts_ns = bpf_ktime_get_ns();
	ev.ifindex = skb->ifindex;
	ev.pkt_len = len;
	ev.hook = NR_HOOK_SOCKET;
	ev.pkt_type = skb->pkt_type;
	ev.direction = skb->pkt_type == NR_PKT_OUTGOING;
	ev.verdict = NR_VERDICT_PASS;
	nr_monitor_emit(&ev, cfg, stats);
	return 0;
}

#endif /* NETRAY_TC_DISPATCH_H */
