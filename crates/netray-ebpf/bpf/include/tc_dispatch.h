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
#include "parse_skb.h"
#include "firewall.h"
#include "policy.h"
#include "limit.h"
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
		/* the policy (what no rule decided) is "in" only: egress never has
		 * NR_FEAT_POLICY_DROP */
		rule = nr_policy_skb(skb, rule, features, &meta);
		if (!egress)	/* rate limits: received packets that pass */
			rule = nr_limit_skb(skb, rule, nr_limit_sel(&meta), (__u64)len << 16 | meta.dport, 0);
		if (nr_fw_drops(rule)) {
			stats->dropped++;
			stats->bytes_dropped += len;
			verdict = TC_ACT_SHOT;
		} else if (unlikely(nr_fw_audits(rule))) {
			stats->audited++;
		}
	}
	if ((features & NR_FEAT_REPLIES) && verdict != TC_ACT_SHOT)
		nr_policy_note_sent(data, data_end, &meta);

	if (features & NR_FEAT_FLOWS)
		nr_flow_account(data, data_end, &meta, skb->ifindex, len, nr_fw_drops(rule) ? rule : 0,
				egress ? NR_FLOW_EGRESS : NR_FLOW_INGRESS);

	if ((features & NR_FEAT_MONITOR) || ((features & NR_FEAT_DROPS) && verdict == TC_ACT_SHOT)) {
		struct nr_packet_event ev = {};

		nr_meta_to_event(data, data_end, &meta, &ev);
		ev.ts_ns = bpf_ktime_get_ns();
		ev.ifindex = skb->ifindex;
		ev.pkt_len = len;
		ev.hook = egress ? NR_HOOK_TC_EGRESS : NR_HOOK_TC_INGRESS;
		ev.direction = egress;
		ev.verdict = nr_fw_event_verdict(rule);
		ev.rule_id = rule;	/* whole: userspace tells a rule, the policy and a limit apart */
		nr_monitor_emit(&ev, cfg, stats);
	}

	if (unlikely(features & NR_FEAT_CAPTURE)) {
		struct nr_capture_scratch *s = bpf_map_lookup_elem(&if_cap_scratch, &zero);

		if (s) {
			s->verdict = verdict;
			s->audit_rule = verdict != TC_ACT_SHOT && nr_fw_audits(rule) ? nr_fw_rule_id(rule) : 0;
			bpf_tail_call(skb, &if_tc_chain,
				      egress ? NR_TC_CHAIN_CAPTURE_EGRESS : NR_TC_CHAIN_CAPTURE_INGRESS);
		}
	}
	return verdict;
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

	nr_sk_meta_to_event(skb, &meta, &ev);
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
