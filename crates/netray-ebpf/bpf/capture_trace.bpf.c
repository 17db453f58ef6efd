// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * The capture of netray dump beside an XDP program netray did not load, the
 * xdpdump way: fentry (entry point) and fexit (exit point, with the verdict
 * the program returned) on that program's main function. Nothing is swapped:
 * the program stays attached as it was.
 *
 * Tracing programs have no packet helpers, so each run copies the frame into
 * this CPU's slot of cap_trace_copy, runs the pcap filter over the copy and
 * records from it through capture.h. A multi-buffer (jumbo) frame is copied
 * whole: its linear part from xdp->data, then each fragment listed in the
 * skb_shared_info at the end of the buffer, read through the kernel's direct
 * map (what page_address() does on x86-64: vmemmap_base and page_offset_base
 * are exported variables, read as typeless ksyms). Where those symbols are
 * missing, the record holds the linear part only (cap_len < wire_len) and says
 * so by its lengths. The record's original length is the whole frame's in any
 * case (bpf_xdp_get_buff_len has a variant for tracing programs taking the
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
	void *data_hard_start;
	struct xdp_rxq_info *rxq;
	__u32 frame_sz;
	__u32 flags;
} __attribute__((preserve_access_index));

/* enum xdp_buff_flags */
#define NR_XDP_FLAGS_HAS_FRAGS 1

/* One fragment: 6.1's skb_frag_t is struct bio_vec { page *, len, offset }, 6.12's
 * struct skb_frag { netmem_ref, len, offset }: the same layout, a netmem_ref
 * being the page pointer (with bit 0 set for memory that is no page). */
struct nr_frag {
	__u64 page;
	__u32 len;
	__u32 offset;
};

/* frags is an array of structs in every kernel; CO-RE matches any struct there
 * (only its offset is used). */
struct skb_shared_info {
	__u8 nr_frags;
	struct nr_frag frags[0];
} __attribute__((preserve_access_index));

struct page {
	unsigned long flags;
} __attribute__((preserve_access_index));


/* Page size and cache line of x86-64 (skb_shared_info starts SKB_DATA_ALIGN'ed
 * before the end of the buffer); MAX_SKB_FRAGS' default. */
#define NR_PAGE_SHIFT 12
#define NR_CACHE_BYTES 64
#define NR_MAX_FRAGS 17

extern const void vmemmap_base __ksym __weak;
extern const void page_offset_base __ksym __weak;

/* The filter's loads end at packet offset 0xffff at most (netray-pcapfilter's
 * MAX_PACKET_OFF), so with a copy this large every load it can make stays
 * inside the map value whatever the frame's length. Frames are copied up to
 * NR_TRACE_COPY_BYTES; the value is twice that so that a fragment's copy at an
 * offset below it, of a length below it, is inside the value by bounds the
 * verifier tracks separately. */
#define NR_TRACE_COPY_BYTES 65536

struct nr_trace_copy {
	__u8 bytes[2 * NR_TRACE_COPY_BYTES];
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

/* Appends the fragments of a multi-buffer frame to the copy, which holds `off`
 * bytes; returns the bytes it holds then. Stops at the first fragment it cannot
 * read, so the copy is always a prefix of the frame. */
static __always_inline __u64 nr_trace_copy_frags(struct xdp_buff *xdp, struct nr_trace_copy *copy, __u64 off)
{
	__u64 vmemmap = 0, direct = 0, page_size = bpf_core_type_size(struct page);
	__u64 shinfo, frags;
	__u8 nr = 0;

	if (!bpf_core_field_exists(xdp->flags) || !(BPF_CORE_READ(xdp, flags) & NR_XDP_FLAGS_HAS_FRAGS))
		return off;
	if (!&vmemmap_base || !&page_offset_base || !page_size)
		return off;
	if (bpf_probe_read_kernel(&vmemmap, sizeof(vmemmap), &vmemmap_base) ||
	    bpf_probe_read_kernel(&direct, sizeof(direct), &page_offset_base))
		return off;
	/* xdp_get_shared_info_from_buff() */
	shinfo = (__u64)BPF_CORE_READ(xdp, data_hard_start) + BPF_CORE_READ(xdp, frame_sz) -
		 ((bpf_core_type_size(struct skb_shared_info) + NR_CACHE_BYTES - 1) & ~(__u64)(NR_CACHE_BYTES - 1));
	if (bpf_probe_read_kernel(&nr, sizeof(nr), (void *)(shinfo + bpf_core_field_offset(struct skb_shared_info, nr_frags))))
		return off;
	frags = shinfo + bpf_core_field_offset(struct skb_shared_info, frags);
	for (int i = 0; i < NR_MAX_FRAGS && i < nr; i++) {
		struct nr_frag f;
		__u64 len, addr;

		if (off >= NR_TRACE_COPY_BYTES)
			break;
		if (bpf_probe_read_kernel(&f, sizeof(f), (void *)(frags + i * sizeof(f))) || (f.page & 1) || f.page < vmemmap)
			break;
		addr = direct + (((f.page - vmemmap) / page_size) << NR_PAGE_SHIFT) + f.offset;
		len = f.len;
		if (len > NR_TRACE_COPY_BYTES - off)
			len = NR_TRACE_COPY_BYTES - off;
		/* Both already below NR_TRACE_COPY_BYTES; say it in a way the verifier keeps. */
		off &= NR_TRACE_COPY_BYTES - 1;
		len &= NR_TRACE_COPY_BYTES - 1;
		if (bpf_probe_read_kernel(copy->bytes + off, len, (void *)addr))
			break;
		off += len;
	}
	return off;
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
	else if (linear && linear < wire_len)
		linear = nr_trace_copy_frags(xdp, copy, linear);
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
