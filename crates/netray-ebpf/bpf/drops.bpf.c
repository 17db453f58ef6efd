// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * netray drops, kernel side: every skb the kernel frees through kfree_skb
 * with a drop reason (the skb:kfree_skb tracepoint), filtered by interface,
 * network namespace and the pcap filter, written to a ring buffer with the
 * reason, the freeing address and the packet's first bytes.
 *
 * One body, three ways in, whichever the running kernel accepts
 * (netray-drops tries them in this order and says which it uses):
 *   tp_btf/kfree_skb          BTF-typed raw tracepoint
 *   raw_tp/kfree_skb          classic raw tracepoint: the same u64 arguments
 *   tracepoint/skb/kfree_skb  the trace event record (reason absent before 5.17)
 * The skb is read with bpf_probe_read_kernel + CO-RE in every case.
 *
 * Tracing programs have no packet helpers: the packet is copied into this
 * CPU's slot of drop_copy (an Ethernet frame: from the MAC header, or from the
 * network header behind a made-up Ethernet header when there is no MAC header
 * yet, e.g. on output) and the pcap filter runs over the copy. Its body is
 * spliced in at load by netray-drops, as for capture_trace.bpf.c.
 *
 * No vmlinux.h: the kernel structs read are declared below with
 * preserve_access_index and relocated by CO-RE at load.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "netray_abi.h"

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} possible_net_t;

struct net_device {
	int ifindex;
	possible_net_t nd_net;
} __attribute__((preserve_access_index));

struct sk_buff {
	struct net_device *dev;
	unsigned int len;
	__u16 mac_header;
	__u16 network_header;
	__u32 tail;		/* an offset from head on 64-bit kernels */
	unsigned char *head;
	unsigned char *data;
	__be16 protocol;
	int skb_iif;
} __attribute__((preserve_access_index));

/* CO-RE matches an enum field only with an enum of the same name. */
enum skb_drop_reason {
	SKB_NOT_DROPPED_YET = 0,
};

/* The trace event record of skb:kfree_skb (tracefs format). */
struct trace_event_raw_kfree_skb {
	void *skbaddr;
	void *location;
	unsigned short protocol;
	enum skb_drop_reason reason;
} __attribute__((preserve_access_index));

struct nr_drop_copy {
	struct nr_drop_event ev;
	__u8 bytes[NR_DROP_COPY_BYTES];
};

/* A plain array indexed by CPU (per-CPU values are limited to 32 KiB). A
 * tracing program does not nest on a CPU (the kernel skips a recursive run
 * and counts it as a miss), so the slot is this run's alone. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);		/* userspace: one per possible CPU */
	__type(key, __u32);
	__type(value, struct nr_drop_copy);
} drop_copy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 23);	/* userspace sizes it */
} drop_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nr_drop_stats);
} drop_stats SEC(".maps");

/* Set by the loader from the running kernel's BTF (enum skb_drop_reason);
 * ~0: the kernel has no such value. */
const volatile __u32 cfg_reason_consumed = ~0u;
const volatile __u32 cfg_reason_not_dropped = 0;
/* Scope: 0 = any. */
const volatile __u32 cfg_netns = 0;
const volatile __u32 cfg_ifindex = 0;
const volatile __u32 cfg_wakeup_bytes = 1 << 20;

#define ETH_HLEN 14
#define NO_HEADER 0xffff

/*
 * The pcap filter. Its body is replaced at load by the fragment
 * netray-pcapfilter translated, which takes the packet in R1 .. R2 and the
 * wire length in R3 and returns the snap length or 0. This placeholder only
 * keeps the three arguments live so that clang passes them in R1-R3.
 */
static __noinline __u64 nr_drop_filter(const __u8 *data, const __u8 *data_end, __u64 wire_len)
{
	__u64 snap = wire_len;

	asm volatile("" : "+r"(snap) : "r"(data), "r"(data_end));
	return snap;
}

static __always_inline int nr_drop(struct sk_buff *skb, __u64 location, __u32 reason, __u8 flags)
{
	struct nr_drop_stats *st;
	struct nr_drop_copy *c;
	struct net_device *dev;
	__u32 zero = 0, cpu = bpf_get_smp_processor_id(), ifindex, netns = 0;
	__u64 start, data_off, tail, copied, wire, snap, avail;
	__u16 mac, nh;
	unsigned char *head;
	long wire_signed;

	st = bpf_map_lookup_elem(&drop_stats, &zero);
	if (!st)
		return 0;
	st->freed++;
	if (!(flags & NR_DROP_NO_REASON) && (reason == cfg_reason_consumed || reason == cfg_reason_not_dropped)) {
		st->not_drops++;
		return 0;
	}
	dev = BPF_CORE_READ(skb, dev);
	ifindex = dev ? BPF_CORE_READ(dev, ifindex) : BPF_CORE_READ(skb, skb_iif);
	if (dev)
		netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	if ((cfg_netns && netns != cfg_netns) || (cfg_ifindex && ifindex != cfg_ifindex)) {
		st->other_scope++;
		return 0;
	}
	c = bpf_map_lookup_elem(&drop_copy, &cpu);
	if (!c)
		return 0;

	head = BPF_CORE_READ(skb, head);
	mac = BPF_CORE_READ(skb, mac_header);
	nh = BPF_CORE_READ(skb, network_header);
	tail = BPF_CORE_READ(skb, tail);
	data_off = (__u64)BPF_CORE_READ(skb, data) - (__u64)head;
	c->ev.flags = flags;
	/* The frame starts at the MAC header when there is one before the
	 * network header; else at the network header (or the data) behind a
	 * made-up Ethernet header. */
	if (mac != NO_HEADER && mac < nh) {
		start = mac;
		copied = 0;
	} else {
		start = nh ? nh : data_off;
		c->ev.flags |= NR_DROP_SYNTH_ETH;
		__builtin_memset(c->bytes, 0, 12);
		*(__be16 *)&c->bytes[12] = BPF_CORE_READ(skb, protocol);
		copied = ETH_HLEN;
	}
	/* skb->len counts from skb->data. */
	wire_signed = (long)BPF_CORE_READ(skb, len) + (long)data_off - (long)start;
	wire = wire_signed > 0 ? wire_signed + copied : copied;
	avail = tail > start ? tail - start : 0;
	if (avail > NR_DROP_COPY_BYTES - ETH_HLEN)
		avail = NR_DROP_COPY_BYTES - ETH_HLEN;
	if (avail && bpf_probe_read_kernel(&c->bytes[copied], avail, head + start))
		avail = 0;
	copied += avail;
	if (wire < copied)
		wire = copied;

	snap = nr_drop_filter(c->bytes, c->bytes + copied, wire);
	if (!snap) {
		st->filtered++;
		return 0;
	}
	if (snap > copied)
		snap = copied;
	if (snap > NR_DROP_COPY_BYTES)
		snap = NR_DROP_COPY_BYTES;
	c->ev.ts_ns = bpf_ktime_get_ns();
	c->ev.location = location;
	c->ev.reason = reason;
	c->ev.ifindex = ifindex;
	c->ev.netns = netns;
	c->ev.wire_len = wire;
	c->ev.cap_len = snap;
	c->ev.protocol = bpf_ntohs(BPF_CORE_READ(skb, protocol));
	c->ev._pad[0] = 0;
	/* Wake the reader once, when this record makes the backlog cross the mark. */
	avail = bpf_ringbuf_query(&drop_events, BPF_RB_AVAIL_DATA);
	if (bpf_ringbuf_output(&drop_events, c, sizeof(c->ev) + snap,
			       avail < cfg_wakeup_bytes && avail + sizeof(c->ev) + snap + 8 >= cfg_wakeup_bytes
				       ? BPF_RB_FORCE_WAKEUP
				       : BPF_RB_NO_WAKEUP))
		st->lost++;
	else
		st->reported++;
	return 0;
}

/* Arguments of kfree_skb: skb, location, reason (since 5.17), rx_sk (6.11). */
SEC("?tp_btf/kfree_skb")
int netray_drops_btf(__u64 *ctx)
{
	return nr_drop((void *)ctx[0], ctx[1], (__u32)ctx[2], 0);
}

SEC("?raw_tp/kfree_skb")
int netray_drops_raw(__u64 *ctx)
{
	return nr_drop((void *)ctx[0], ctx[1], (__u32)ctx[2], 0);
}

SEC("?tracepoint/skb/kfree_skb")
int netray_drops_tp(struct trace_event_raw_kfree_skb *ctx)
{
	/* Without the reason field every free looks like a drop: the location
	 * is all there is. (One call of nr_drop: the filter is spliced into
	 * the one call of its placeholder.) */
	int has_reason = bpf_core_field_exists(ctx->reason);

	return nr_drop(ctx->skbaddr, (__u64)ctx->location, has_reason ? ctx->reason : 0,
		       has_reason ? 0 : NR_DROP_NO_REASON);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
