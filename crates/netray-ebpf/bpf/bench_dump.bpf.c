// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * The traffic rig of `netray bench dump` (netray-bench's capture benchmark):
 * a generator run with BPF_F_TEST_XDP_LIVE_FRAMES on the lab's peer end, and
 * on the host end a counter at XDP and a counting drop at TC ingress, so the
 * benchmark tells frames that never arrived from frames a capture lost.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

/* Slots of bench_dump_counts. */
enum bench_dump_count {
	BENCH_DUMP_ARRIVED = 0,		/* frames that reached the host end's XDP hook */
	BENCH_DUMP_DELIVERED = 1,	/* frames that reached TC ingress, after the packet taps */
	BENCH_DUMP_COUNTS = 2,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BENCH_DUMP_COUNTS);
	__type(key, __u32);
	__type(value, __u64);
} bench_dump_counts SEC(".maps");

/* Keeps the enum in BTF, so userspace gets the slots from the skeleton. */
enum bench_dump_count bench_dump_count_slots;

static __always_inline void bench_dump_count(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&bench_dump_counts, &slot);

	if (n)
		(*n)++;
}

/* Each test run sends its frame out of the interface it names as ingress
 * (the peer end), towards the host end. */
SEC("xdp")
int bench_dump_gen(struct xdp_md *ctx)
{
	return bpf_redirect(ctx->ingress_ifindex, 0);
}

SEC("xdp")
int bench_dump_arrived(struct xdp_md *ctx)
{
	bench_dump_count(BENCH_DUMP_ARRIVED);
	return XDP_PASS;
}

/* Attached as a tcx link, or as a clsact filter where the kernel has no tcx. */
SEC("tcx/ingress")
int bench_dump_delivered(struct __sk_buff *skb)
{
	bench_dump_count(BENCH_DUMP_DELIVERED);
	return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
