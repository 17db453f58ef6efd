// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * Benchmark programs, run only through BPF_PROG_TEST_RUN by `netray bench`.
 * The *_rand variants overwrite the frame's IPv4 source with the next address
 * of bench_sources before doing their work, so successive runs look up
 * different addresses (cache-cold, like real traffic); bench_rand_empty is the
 * baseline that pays for that rewrite and nothing else. bench_*hash and
 * bench_*lpm are reference points (see below).
 */
#include "xdp_dispatch.h"

const volatile __u32 bench_sources_mask = 0;	/* entries - 1, a power of two minus one */
__u32 bench_next = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} bench_sources SEC(".maps");

static __always_inline int bench_rewrite_source(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 i = bench_next++ & bench_sources_mask;
	__u32 *src = bpf_map_lookup_elem(&bench_sources, &i);

	/* Ethernet (14) + IPv4 source at offset 12 */
	if (!src || data + 14 + 16 > data_end)
		return -1;
	/* One 4-byte store (unaligned packet stores are allowed here), not the
	 * four byte stores memcpy() becomes: a program that then loads the
	 * address as one word (the dispatcher, the hash reference) would wait
	 * about 5 ns for the pieces to leave the store buffer, which a frame
	 * written by a NIC never costs. */
	*(__u32 *)(data + 14 + 12) = *src;
	return 0;
}

SEC("xdp")
int bench_empty(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int bench_rand_empty(struct xdp_md *ctx)
{
	if (bench_rewrite_source(ctx))
		return XDP_ABORTED;
	return XDP_PASS;
}

SEC("xdp")
int bench_dispatch(struct xdp_md *ctx)
{
	return nr_xdp_dispatch(ctx);
}

SEC("xdp")
int bench_rand_dispatch(struct xdp_md *ctx)
{
	if (bench_rewrite_source(ctx))
		return XDP_ABORTED;
	return nr_xdp_dispatch(ctx);
}

/*
 * Reference points, not netray code: one lookup of the frame's IPv4 source in
 * the kernel's own hash and LPM-trie maps, filled with the same rule set, as a
 * hash- or trie-based filter would do it. Measured beside the firewall, under
 * the same memory conditions, they say what its figure is worth.
 */
struct bench_lpm_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} bench_ref_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, struct bench_lpm_key);
	__type(value, __u32);
} bench_ref_lpm SEC(".maps");

static __always_inline int bench_ref_lookup(struct xdp_md *ctx, int lpm)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct bench_lpm_key key = { .prefixlen = 32 };
	__u32 *hit;

	if (data + 14 + 20 > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(key.addr, data + 14 + 12, 4);
	if (lpm)
		hit = bpf_map_lookup_elem(&bench_ref_lpm, &key);
	else
		hit = bpf_map_lookup_elem(&bench_ref_hash, key.addr);
	return hit ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int bench_hash(struct xdp_md *ctx)
{
	return bench_ref_lookup(ctx, 0);
}

SEC("xdp")
int bench_rand_hash(struct xdp_md *ctx)
{
	if (bench_rewrite_source(ctx))
		return XDP_ABORTED;
	return bench_ref_lookup(ctx, 0);
}

SEC("xdp")
int bench_lpm(struct xdp_md *ctx)
{
	return bench_ref_lookup(ctx, 1);
}

SEC("xdp")
int bench_rand_lpm(struct xdp_md *ctx)
{
	if (bench_rewrite_source(ctx))
		return XDP_ABORTED;
	return bench_ref_lookup(ctx, 1);
}

/*
 * Reference points in netray's own tables: finding the frame's bucket in the
 * per-source limits' table (its set's inlined array read and the tag
 * compares; the limit is the one in the active bank's first slot, an inlined
 * array read) and one lookup of its reply in the drop policy's reply table
 * (40-byte key), with nothing else done. Set beside "firewall + per-source
 * limit" and "+ policy drop, reply found", they say how much of those rows
 * is the lookup itself.
 */
static __always_inline int bench_src_lookup(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 slot = (fw_state.limit_set >> NR_LIMIT_BANK_SHIFT & 1) * NR_LIMIT_MAX;
	struct nr_limit *l = bpf_map_lookup_elem(&fw_limits, &slot);
	struct nr_limit_src_set *set;
	__u32 saddr;
	__u64 tag;

	if (!l || data + 14 + 20 > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(&saddr, data + 14 + 12, 4);
	tag = nr_limit_src_tag(l->id, NR_FAMILY_IPV4, saddr, 0, fw_state.limit_src_seed);
	set = nr_limit_src_set_of(tag);
	return set && nr_limit_src_find(set, tag, l->id, saddr, 0) >= 0 ? XDP_PASS : XDP_DROP;
}

SEC("xdp")
int bench_src(struct xdp_md *ctx)
{
	return bench_src_lookup(ctx);
}

SEC("xdp")
int bench_rand_src(struct xdp_md *ctx)
{
	if (bench_rewrite_source(ctx))
		return XDP_ABORTED;
	return bench_src_lookup(ctx);
}

SEC("xdp")
int bench_reply(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct nr_reply_key key __attribute__((aligned(8))) = { .family = NR_FAMILY_IPV4, .proto = IPPROTO_UDP };
	__u8 *ip = data + 14;

	if (data + 14 + 28 > data_end)
		return XDP_ABORTED;
	key.sport = bpf_ntohs(*(__be16 *)(ip + 20));
	key.dport = bpf_ntohs(*(__be16 *)(ip + 22));
	__builtin_memcpy(key.src, ip + 12, 4);
	__builtin_memcpy(key.dst, ip + 16, 4);
	return nr_reply_known(&key) ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
