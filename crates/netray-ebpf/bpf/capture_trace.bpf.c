// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * The capture of netray dump beside an XDP program netray did not load, the
 * xdpdump way: fentry (entry point) and fexit (exit point, with the verdict
 * the program returned) on that program's main function. Nothing is swapped:
 * the program stays attached as it was.
 *
 * Tracing programs have no packet helpers, so each run copies the frame's
 * linear bytes into this CPU's slot of cap_trace_copy, runs the pcap filter
 * over the copy and records from it through capture.h. The fragments of a
 * multi-buffer frame are out of reach here (bpf_xdp_load_bytes is XDP-only,
 * and the fragments' pages have no address to read from): such a record
 * holds the linear part, cap_len < wire_len, and the filter's loads see that
 * part, as they do at the XDP entry point, while its `len` is the whole frame's
 * (bpf_xdp_get_buff_len has a variant for tracing programs taking the
 * xdp_buff), as everywhere else.
 *
 * No vmlinux.h: the kernel structs read are declared below with
 * preserve_access_index and relocated by CO-RE at load.
 */
#include "capture.h"
#include <bpf/bpf_core_read.h>

struct net_device {
	int ifindex;
} __attribute__((preserve_access_index));

struct xdp_rxq_info {
	struct net_device *dev;
} __attribute__((preserve_access_index));

struct xdp_buff {
	void *data;
	void *data_end;
	struct xdp_rxq_info *rxq;
} __attribute__((preserve_access_index));

/* The filter's loads end at packet offset 0xffff at most (netray-pcapfilter's
 * MAX_PACKET_OFF), so with a copy this large every load it can make stays
 * inside the map value whatever the frame's length. */
#define NR_TRACE_COPY_BYTES 65536

struct nr_trace_copy {
	__u8 bytes[NR_TRACE_COPY_BYTES];
};

/* A plain array indexed by CPU: per-CPU values are limited to 32 KiB. A
 * tracing program runs with migration disabled and does not nest on a CPU
 * (the trampoline skips a recursive run), so the slot is this run's alone. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);		/* userspace: one per possible CPU */
	__type(key, __u32);
	__type(value, struct nr_trace_copy);
} cap_trace_copy SEC(".maps");

/* The foreign program may be attached to several interfaces: record this one's. */
const volatile __u32 cfg_ifindex = 0;

/*
 * The pcap filter. Its body is replaced at load by the fragment
 * netray-pcapfilter translated (trace_front.rs splices it in after libbpf's
 * relocations), which takes the packet in R1 .. R2 and the wire length in R3
 * and returns the snap length or 0. This placeholder only keeps the three
 * arguments live so that clang passes them in R1-R3.
 */
static __noinline __u64 nr_trace_filter(const __u8 *data, const __u8 *data_end, __u64 wire_len)
{
	__u64 snap = wire_len;

	asm volatile("" : "+r"(snap) : "r"(data), "r"(data_end));
	return snap;
}

static __always_inline int nr_trace(__u64 *ctx, __u32 point, __s32 verdict)
{
	struct xdp_buff *xdp = (void *)ctx[0];
	struct nr_capture_scratch s = { .point = point, .verdict = verdict };
	struct nr_trace_copy *copy;
	__u32 cpu = bpf_get_smp_processor_id(), wire_len;
	__u64 linear;
	void *data;

	if (BPF_CORE_READ(xdp, rxq, dev, ifindex) != cfg_ifindex)
		return 0;
	copy = bpf_map_lookup_elem(&cap_trace_copy, &cpu);
	if (!copy)
		return 0;
	data = BPF_CORE_READ(xdp, data);
	linear = (__u64)BPF_CORE_READ(xdp, data_end) - (__u64)data;
	if (linear > NR_TRACE_COPY_BYTES)
		linear = 0;	/* not a frame: record nothing rather than garbage */
	wire_len = bpf_xdp_get_buff_len((struct xdp_md *)xdp);
	if (bpf_probe_read_kernel(copy->bytes, linear, data))
		linear = 0;
	s.snaplen = nr_trace_filter(copy->bytes, copy->bytes + linear, wire_len);
	nr_cap_count(copy->bytes, NR_CAP_FROM_COPY, cfg_ifindex, wire_len, linear, &s);
	return 0;
}

/* The target (the foreign program's main function) is set by userspace. */
SEC("fentry")
int netray_cap_fentry(__u64 *ctx)
{
	return nr_trace(ctx, NR_POINT_ENTRY, 0);
}

/* fexit's arguments are the function's, then its return value: the verdict. */
SEC("fexit")
int netray_cap_fexit(__u64 *ctx)
{
	return nr_trace(ctx, NR_POINT_EXIT, (__s32)ctx[1]);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
