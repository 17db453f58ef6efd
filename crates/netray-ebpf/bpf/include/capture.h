/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * The capture recorder (netray dump). A capture session is a chain of two
 * programs per capture point:
 *
 *   filter program  -- generated in userspace: the pcap-filter expression,
 *                      translated from classic BPF, writes its result (snap
 *                      length or 0) into if_cap_scratch and tail-calls
 *   recorder        -- this file: counts, copies the packet into this CPU's
 *                      ring, then hands the packet on: at the entry point to
 *                      the program the capture sits in front of (cap_chain
 *                      NR_CAP_NEXT), at the exit point it returns the verdict
 *                      netray's dispatcher decided.
 *
 * capture_trace.bpf.c records through the same code from fentry/fexit on an
 * XDP program netray did not load, with the filter spliced in at load.
 *
 * Records go to one ring per CPU (an array of ring buffers) and are submitted
 * without a wakeup unless the ring fills past cfg_wakeup_bytes: userspace
 * polls on a timer, since a wakeup per record costs microseconds here.
 * bpf_ringbuf_reserve needs a constant size, so a record takes the smallest
 * size class its bytes fit in.
 */
#ifndef NETRAY_CAPTURE_H
#define NETRAY_CAPTURE_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "netray_abi.h"
#include "capture_scratch.h"

struct nr_cap_ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);	/* userspace sizes the template */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);		/* userspace: one per possible CPU */
	__type(key, __u32);
	__array(values, struct nr_cap_ring);
} cap_rings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NR_POINT_SLOTS);
	__type(key, __u32);
	__type(value, struct nr_capture_stats);
} cap_stats SEC(".maps");


struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, NR_CAP_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} cap_chain SEC(".maps");

/* Set by the loader. */
const volatile __u32 cfg_hook = NR_HOOK_XDP;		/* TC: ingress or egress */
const volatile __u32 cfg_wakeup_bytes = 1 << 20;

/* Where the recorder reads a packet's bytes from: the program type's load
 * helper, or a copy in memory (the fentry/fexit capture, capture_trace.bpf.c,
 * which has no packet helpers). */
enum nr_cap_source {
	NR_CAP_FROM_SKB = 0,
	NR_CAP_FROM_XDP = 1,
	NR_CAP_FROM_COPY = 2,
};

static __always_inline long nr_cap_load(void *ctx, void *dst, __u32 len, const int from)
{
	if (from == NR_CAP_FROM_COPY)
		return bpf_probe_read_kernel(dst, len, ctx);
	return from == NR_CAP_FROM_XDP ? bpf_xdp_load_bytes(ctx, 0, dst, len) : bpf_skb_load_bytes(ctx, 0, dst, len);
}

/*
 * At TC the stack has already taken an 802.1Q/802.1ad tag out of a received
 * frame into skb metadata (skb_vlan_untag, before tc ingress) and may carry a
 * tag to be sent there too. The record puts it back after the MAC addresses,
 * as it is on the wire (libpcap does the same for tcpdump). Returns the tag as
 * TPID << 16 | TCI, 0 for none.
 */
static __always_inline __u32 nr_cap_vlan_tag(void *ctx, const int from)
{
	struct __sk_buff *skb = ctx;

	if (from != NR_CAP_FROM_SKB || !skb->vlan_present)
		return 0;
	return (__u32)bpf_ntohs(skb->vlan_proto) << 16 | (skb->vlan_tci & 0xffff);
}

/* The first `cap` (>= 18) bytes of the frame with `tag` put back at offset 12. */
static __always_inline long nr_cap_load_tagged(void *ctx, __u8 *dst, __u64 cap, __u32 tag)
{
	/* Already true (the caller drops the tag below 18 bytes), but the verifier
	 * saw that test on another register: say it again here, on the tagged
	 * path only, so cap - 16 is known to be at least 2. */
	if (cap < 18)
		return -1;
	if (bpf_skb_load_bytes(ctx, 0, dst, 12))
		return -1;
	dst[12] = tag >> 24;
	dst[13] = tag >> 16;
	dst[14] = tag >> 8;
	dst[15] = tag;
	return bpf_skb_load_bytes(ctx, 12, dst + 16, cap - 16);
}

/* Reserve a record of the class SIZE and copy `len1 + 1` (1..SIZE) bytes into it. */
#define NR_CAP_CLASS(SIZE)                                                        \
	if (len1 < (SIZE)) {                                                      \
		rec = bpf_ringbuf_reserve(ring, sizeof(*rec) + (SIZE), 0);        \
		if (!rec)                                                         \
			goto lost;                                                \
		if (tag ? nr_cap_load_tagged(ctx, (__u8 *)(rec + 1), len1 + 1, tag) \
			: nr_cap_load(ctx, rec + 1, len1 + 1, from)) {             \
			bpf_ringbuf_discard(rec, BPF_RB_NO_WAKEUP);               \
			goto lost;                                                \
		}                                                                 \
		goto fill;                                                        \
	}

/* `readable`: the bytes a copy holds (NR_CAP_FROM_COPY), fewer than wire_len
 * when a multi-buffer frame's fragments could not be copied. */
static __always_inline void nr_cap_record(void *ctx, const int from, __u32 ifindex, __u32 wire_len, __u32 readable,
					  const struct nr_capture_scratch *s, struct nr_capture_stats *st)
{
	struct nr_capture_record *rec;
	__u32 cpu = bpf_get_smp_processor_id();
	__u64 cap = s->snaplen, len1, flags, avail;
	__u32 tag = nr_cap_vlan_tag(ctx, from);
	void *ring;

	if (tag)
		wire_len += 4;
	if (cap > wire_len)
		cap = wire_len;
	if (from == NR_CAP_FROM_COPY && cap > readable)
		cap = readable;
	if (cap < 18)
		tag = 0;	/* a snap length too short to hold the tag: bytes as they are */
	if (cap > NR_CAPTURE_MAX_BYTES) {
		cap = NR_CAPTURE_MAX_BYTES;
		st->clipped++;
	}
	/* The copy length must be known to be >= 1 at the load helpers. 6.1's
	 * verifier learns no lower bound from `cap != 0` (6.18's does), only from
	 * `<`/`>=`; so the classes test cap - 1, hidden from the compiler (which
	 * would fold it back into cap), and copy (cap - 1) + 1 bytes. cap == 0
	 * wraps around and fails every class, as the old `cap == 0` test did. */
	len1 = cap - 1;
	asm volatile("" : "+r"(len1));
	ring = bpf_map_lookup_elem(&cap_rings, &cpu);
	if (!ring)
		goto lost;

	NR_CAP_CLASS(128)
	NR_CAP_CLASS(256)
	NR_CAP_CLASS(512)
	NR_CAP_CLASS(1024)
	NR_CAP_CLASS(1536)
	NR_CAP_CLASS(2048)
	NR_CAP_CLASS(4096)
	NR_CAP_CLASS(9216)
	NR_CAP_CLASS(16384)
	NR_CAP_CLASS(NR_CAPTURE_MAX_BYTES)
	goto lost;

fill:
	rec->ts_ns = bpf_ktime_get_ns();
	rec->ifindex = ifindex;
	rec->wire_len = wire_len;
	rec->cap_len = cap;
	rec->verdict = s->point == NR_POINT_EXIT ? s->verdict : 0;
	rec->hook = cfg_hook;
	rec->point = s->point;
	rec->audit_rule = s->point == NR_POINT_EXIT ? s->audit_rule : 0;
	__builtin_memset(rec->_pad, 0, sizeof(rec->_pad));
	/* Wake the reader once, when this record makes the backlog cross the
	 * mark; waking on every record above it would send an interrupt per
	 * packet exactly when the reader is behind. */
	avail = bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA);
	flags = avail < cfg_wakeup_bytes && avail + sizeof(*rec) + cap + 8 >= cfg_wakeup_bytes ? BPF_RB_FORCE_WAKEUP
											   : BPF_RB_NO_WAKEUP;
	bpf_ringbuf_submit(rec, flags);
	st->captured++;
	return;
lost:
	st->lost++;
	st->lost_bytes += wire_len;
}

/* Counts the packet at the point `s` names and records it if the filter
 * matched (s->snaplen != 0). */
static __always_inline void nr_cap_count(void *ctx, const int from, __u32 ifindex, __u32 wire_len, __u32 readable,
					 const struct nr_capture_scratch *s)
{
	struct nr_capture_stats *st;
	__u32 point = s->point == NR_POINT_EXIT ? NR_POINT_EXIT : NR_POINT_ENTRY;

	st = bpf_map_lookup_elem(&cap_stats, &point);
	if (!st)
		return;
	st->seen++;
	if (s->snaplen) {
		st->matched++;
		nr_cap_record(ctx, from, ifindex, wire_len, readable, s, st);
	}
}

/* The recorder's part after a filter program: the filter left its result in
 * if_cap_scratch. Returns the scratch (never NULL in practice) so the caller
 * can hand the packet on. */
static __always_inline struct nr_capture_scratch *nr_cap_handle(void *ctx, const int from, __u32 ifindex,
								 __u32 wire_len)
{
	struct nr_capture_scratch *s;
	__u32 zero = 0;

	s = bpf_map_lookup_elem(&if_cap_scratch, &zero);
	if (!s)
		return 0;
	nr_cap_count(ctx, from, ifindex, wire_len, wire_len, s);
	return s;
}

#endif /* NETRAY_CAPTURE_H */
