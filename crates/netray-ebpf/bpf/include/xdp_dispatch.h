/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * The XDP dispatcher: the one program netray attaches to an interface. Which
 * features run is read per packet from if_config, so firewall, monitor and the
 * rest switch on and off without reattaching. A foreign program that was
 * attached before netray is kept in if_chain and tail-called last.
 */
#ifndef NETRAY_XDP_DISPATCH_H
#define NETRAY_XDP_DISPATCH_H

#include "parse.h"
#include "firewall.h"
#include "policy.h"
#include "limit.h"
#include "monitor.h"
#include "flows.h"

#ifndef unlikely
#define unlikely(x) __builtin_expect(!!(x), 0)
#endif

/* Set by the loader: the program is loaded with BPF_F_XDP_HAS_FRAGS. */
const volatile __u32 cfg_frags = 0;

/* Hands the packet and its verdict to the exit capture (netray dump --point
 * exit), which records it and returns the verdict itself. Returns only if no
 * capture program is installed. */
static __always_inline void nr_xdp_exit_capture(struct xdp_md *ctx, int verdict, __u32 rule)
{
	struct nr_capture_scratch *s;
	__u32 zero = 0;

	s = bpf_map_lookup_elem(&if_cap_scratch, &zero);
	if (!s)
		return;
	s->verdict = verdict;
	s->audit_rule = verdict == XDP_PASS && nr_fw_audits(rule) ? nr_fw_rule_id(rule) : 0;
	bpf_tail_call(ctx, &if_chain, NR_CHAIN_CAPTURE);
}

/* Features the short path below serves; with any other one on, every frame
 * takes the general path. */
#define NR_XDP_SHORT_FEATURES (NR_FEAT_FIREWALL | NR_FEAT_POLICY_DROP | NR_FEAT_CHAIN_NEXT)

/* The common frame (see nr_common_ipv4) when at most the firewall and the
 * foreign-program chain are on, on a CPU with rows in the global per-CPU
 * arrays: the same counters and verdict as the general path, with the source
 * address, protocol and port kept in registers instead of a struct nr_meta on
 * the stack. This is most of the traffic a firewall sees, and the general
 * path costs about 4 ns more per packet. */
static __always_inline int nr_xdp_short(struct xdp_md *ctx, void *data, void *data_end, __u32 proto,
					__u32 features, __u32 cpu, __u64 len)
{
	struct nr_if_stats *stats = &if_cpu_stats[NR_STATS_XDP][cpu];
	struct iphdr *ip = data + NR_COMMON_L3_OFF;
	__be16 *ports = data + NR_COMMON_L4_OFF;

	if ((void *)(ports + 2) > data_end)	/* checked by nr_common_ipv4; for the verifier */
		return XDP_PASS;
	stats->seen++;
	stats->bytes_seen += len;
	if (features & NR_FEAT_FIREWALL) {
		__u32 rule = nr_fw_decide_v4_in((const __u8 *)&ip->saddr, ip->saddr, proto, proto != IPPROTO_ICMP,
						 bpf_ntohs(ports[1]), len, &fw_pending[cpu], cpu);

		/* the drop policy decides what no rule decided (audit: left to it) */
		if (unlikely(features & NR_FEAT_POLICY_DROP) && !nr_fw_drops(rule) && !nr_fw_allows(rule)) {
			__u8 *l4 = (__u8 *)ports;
			__u32 key_ports = 0;

			if ((void *)(l4 + 8) > data_end)	/* checked by nr_common_ipv4; for the verifier */
				return XDP_PASS;
			if (!nr_policy_maybe_reply_v4(ip, l4, proto, &key_ports)) {
				/* no reply: dropped without building a key (most of what a drop policy sees) */
				fw_pending[cpu].policy_dropped++;
				rule = nr_fw_rule_id(rule) | NR_FW_POLICY;
			} else if (nr_policy_reply_v4(ip->saddr, ip->daddr, key_ports, proto)) {
				fw_pending[cpu].policy_replies++;
			} else {
				fw_pending[cpu].policy_dropped++;
				rule = nr_fw_rule_id(rule) | NR_FW_POLICY;
			}
		}
		if (!nr_fw_drops(rule))	/* rate limits apply to what passes */
			rule = nr_limit_v4(ctx, rule, ip->saddr, proto, bpf_ntohs(ports[1]), len,
					   proto == IPPROTO_TCP ? nr_common_tcp_flags(data, data_end) : 0);
		if (nr_fw_drops(rule)) {
			stats->dropped++;
			stats->bytes_dropped += len;
			return XDP_DROP;
		}
		if (unlikely(nr_fw_audits(rule)))
			stats->audited++;
	}
	if (features & NR_FEAT_CHAIN_NEXT)
		bpf_tail_call(ctx, &if_chain, NR_CHAIN_NEXT);
	return XDP_PASS;
}

/* Every other frame, or every frame while the monitor, flows or capture is
 * on: the full parser, then each feature in turn. */
static __always_inline int nr_xdp_general(struct xdp_md *ctx, void *data, void *data_end,
					  struct nr_if_stats *stats, __u32 features, __u32 len)
{
	struct nr_meta meta = {};
	__u32 rule = 0;
	int verdict = XDP_PASS;

	if (!nr_parse_fast(data, data_end, &meta))
		nr_parse(data, data_end, &meta);

	nr_count_packet(stats, &meta, len);

	if (features & NR_FEAT_FIREWALL) {
		rule = nr_fw_decide(data, data_end, &meta, 0, len);
		rule = nr_policy_xdp(ctx, rule, features, &meta);	/* the policy: what no rule decided */
		rule = nr_limit_xdp(ctx, rule, nr_limit_sel(&meta), (__u64)len << 16 | meta.dport, 0); /* limits: what passes */
		if (nr_fw_drops(rule)) {
			stats->dropped++;
			stats->bytes_dropped += len;
			verdict = XDP_DROP;
		} else if (unlikely(nr_fw_audits(rule))) {
			stats->audited++;
		}
	}

	if (features & NR_FEAT_FLOWS)
		nr_flow_account(data, data_end, &meta, if_config.ifindex, len, nr_fw_drops(rule) ? rule : 0,
				NR_FLOW_INGRESS);

	if ((features & NR_FEAT_MONITOR) || ((features & NR_FEAT_DROPS) && verdict == XDP_DROP)) {
		struct nr_packet_event ev = {};

		nr_meta_to_event(data, data_end, &meta, &ev);
		ev.ts_ns = bpf_ktime_get_ns();
		ev.ifindex = ctx->ingress_ifindex;
		ev.pkt_len = len;
		ev.hook = NR_HOOK_XDP;
		ev.verdict = nr_fw_event_verdict(rule);
		ev.rule_id = rule;	/* whole: userspace tells a rule, the policy and a limit apart */
		nr_monitor_emit(&ev, &if_config, stats);
	}

	if (unlikely(features & NR_FEAT_CAPTURE))
		nr_xdp_exit_capture(ctx, verdict, rule);

	if (verdict == XDP_PASS && (features & NR_FEAT_CHAIN_NEXT))
		bpf_tail_call(ctx, &if_chain, NR_CHAIN_NEXT);
	return verdict;
}

static __always_inline int nr_xdp_dispatch(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct nr_if_stats *stats;
	__u32 cpu = bpf_get_smp_processor_id(), features = if_config.features;
	/* 64-bit: the counters are, and a truncated length would cost two
	 * zero-extending shifts per use */
	__u64 len = cfg_frags ? bpf_xdp_get_buff_len(ctx) : data_end - data;

	if (!(features & ~NR_XDP_SHORT_FEATURES) && cpu < NR_DIRECT_CPUS) {
		__u32 proto = nr_common_ipv4(data, data_end);

		if (proto)
			return nr_xdp_short(ctx, data, data_end, proto, features, cpu, len);
	}
	stats = nr_if_stats_on(NR_STATS_XDP, cpu);
	if (!stats)
		return XDP_PASS;
	return nr_xdp_general(ctx, data, data_end, stats, features, len);
}

#endif /* NETRAY_XDP_DISPATCH_H */
