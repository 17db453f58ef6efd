/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * Flow accounting: per-flow packet and byte counters in an LRU per-CPU hash,
 * one per interface (if_flows, pinned with the interface's dispatcher). The
 * key is the interface, direction, protocol, addresses and ports (struct
 * nr_flow_key); each CPU updates its own copy of the value, so there are no
 * atomics anywhere.
 *
 * Fast path: a hash map lookup costs tens of ns (a helper call, jhash of the
 * 44-byte key, memcmp — and on CPUs with return-stack mitigations every
 * kernel return is expensive). So each CPU keeps a small direct-mapped cache
 * of flows (if_flow_cache, see struct nr_flow_slot): a packet whose flow holds
 * its slot is counted there with inlined array accesses and no helper call.
 * When another flow needs the slot, and every NR_FLOW_FLUSH_PACKETS packets,
 * the pending counts are added to if_flows.
 * Userspace reads if_flows and then the caches, and adds the pending counts:
 * at any quiet moment the sum is exact (while packets flow, a flush between
 * the two reads can leave a packet out of one snapshot, never count it twice).
 *
 * An LRU map evicts silently when it is full. To keep totals honest, a new
 * entry is created with BPF_NOEXIST and every successful creation is counted
 * per CPU in if_flow_stats.inserts: userspace, which never deletes entries
 * while the feature runs, knows that evicted = inserts - entries present.
 * A flow whose entry was evicted while it had pending counts is created again
 * (and counted as an insert) when they are flushed. A packet that could not
 * be stored at all (update failed) is counted in insert_failed.
 *
 * TCP flows also OR the flags of every packet (tcp_flags: SYN, ACK, FIN, ...),
 * in the slot while pending and in the entry when flushed, as IPFIX's
 * tcpControlBits.
 *
 * Non-IP frames are not flows: they are counted in nr_if_stats.non_ip only.
 * An IP packet whose L4 header is missing (truncated, later fragment) is
 * counted in the flow of its addresses and protocol with ports 0.
 */
#ifndef NETRAY_FLOWS_H
#define NETRAY_FLOWS_H

#include "maps.h"
#include "parse.h"

#define NR_EEXIST 17
/* A slot's pending counts go to if_flows at least every this many packets, so
 * the table entry of a busy flow stays recently used for the LRU (and close to
 * date); the cost is one lookup per NR_FLOW_FLUSH_PACKETS packets. */
#define NR_FLOW_FLUSH_PACKETS 64

/* The kernel's tick rate (libbpf reads it from the kernel config; 0 if it
 * cannot), to turn a slot's jiffies into ns when it is flushed. */
extern unsigned int CONFIG_HZ __kconfig __weak;

/* Userspace sets max_entries before load (the flow table size). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct nr_flow_key);
	__type(value, struct nr_flow_value);
} if_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nr_flow_stats);
} if_flow_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NR_FLOW_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct nr_flow_slot);
} if_flow_cache SEC(".maps");

static __always_inline void nr_flow_add(struct nr_flow_value *v, __u64 packets, __u64 bytes, __u64 dropped,
					__u64 bytes_dropped, __u32 rule, __u64 last_ns, __u8 tcp_flags)
{
	v->packets += packets;
	v->tcp_flags |= tcp_flags;
	v->bytes += bytes;
	v->dropped += dropped;
	v->bytes_dropped += bytes_dropped;
	if (last_ns >= v->last_seen_ns) {
		v->last_seen_ns = last_ns;
		v->last_rule = rule;
		v->last_verdict = rule ? NR_VERDICT_DROP : NR_VERDICT_PASS;
	}
}

/* Adds counts to a flow's entry, creating it (and counting the insert) when
 * it is not in the table. */
static __always_inline void nr_flow_store(const struct nr_flow_key *key, struct nr_flow_stats *fs, __u64 packets,
					  __u64 bytes, __u64 dropped, __u64 bytes_dropped, __u32 rule, __u64 last_ns,
					  __u64 now, __u8 tcp_flags)
{
	struct nr_flow_value nv = {};
	struct nr_flow_value *v;
	long err;

	v = bpf_map_lookup_elem(&if_flows, key);
	if (v) {
		nr_flow_add(v, packets, bytes, dropped, bytes_dropped, rule, last_ns, tcp_flags);
		return;
	}
	nv.first_seen_ns = now;
	nr_flow_add(&nv, packets, bytes, dropped, bytes_dropped, rule, last_ns, tcp_flags);
	err = bpf_map_update_elem(&if_flows, key, &nv, BPF_NOEXIST);
	if (!err) {
		fs->inserts++;
		return;
	}
	if (err == -NR_EEXIST) {
		/* Another CPU created it since our lookup: count the packets in
		 * this CPU's share (its first_seen_ns stays 0, see netray_abi.h). */
		v = bpf_map_lookup_elem(&if_flows, key);
		if (v) {
			nr_flow_add(v, packets, bytes, dropped, bytes_dropped, rule, last_ns, tcp_flags);
			return;
		}
	}
	fs->insert_failed += packets;
}

/* Moves a slot's pending counts to if_flows. */
static __always_inline void nr_flow_flush(struct nr_flow_slot *slot, struct nr_flow_stats *fs, __u64 now,
					  __u64 jiffies)
{
	__u64 last = now, tick = CONFIG_HZ ? 1000000000 / CONFIG_HZ : 0;

	if (!slot->used || !slot->packets)
		return;
	/* The last pending packet's time: jiffies ago, in ns. */
	if (tick && jiffies >= slot->last_seen_jiffies && (jiffies - slot->last_seen_jiffies) * tick <= now)
		last = now - (jiffies - slot->last_seen_jiffies) * tick;
	nr_flow_store(&slot->key, fs, slot->packets, slot->bytes, slot->dropped, slot->bytes_dropped,
		      slot->last_rule, last, now, slot->tcp_flags);
	slot->packets = 0;
	slot->tcp_flags = 0;
	slot->bytes = 0;
	slot->dropped = 0;
	slot->bytes_dropped = 0;
}

/* The CPU's flow stats, with its clock reference pair refreshed. */
static __always_inline struct nr_flow_stats *nr_flow_stats_now(__u64 now, __u64 jiffies)
{
	__u32 zero = 0;
	struct nr_flow_stats *fs = bpf_map_lookup_elem(&if_flow_stats, &zero);

	if (fs) {
		fs->ref_ns = now;
		fs->ref_jiffies = jiffies;
	}
	return fs;
}

/* A busy slot's periodic flush (see NR_FLOW_FLUSH_PACKETS). */
static __attribute__((noinline)) void nr_flow_flush_busy(struct nr_flow_slot *slot)
{
	__u64 now = bpf_ktime_get_coarse_ns(), jiffies = bpf_jiffies64();
	struct nr_flow_stats *fs = nr_flow_stats_now(now, jiffies);

	if (fs)
		nr_flow_flush(slot, fs, now, jiffies);
}

/* Off the fast path: the packet's flow does not hold its slot. Flush the
 * slot's pending counts, count the packet in if_flows, and give the slot to
 * the packet's flow. Out of line, so its stack and code stay off the fast
 * path. */
static __attribute__((noinline)) void nr_flow_miss(const struct nr_flow_key *key, struct nr_flow_slot *slot,
						   __u32 len, __u32 rule, __u8 tcp_flags)
{
	__u64 now = bpf_ktime_get_coarse_ns(), jiffies = bpf_jiffies64();
	struct nr_flow_stats *fs = nr_flow_stats_now(now, jiffies);

	if (!fs)
		return;
	nr_flow_flush(slot, fs, now, jiffies);
	nr_flow_store(key, fs, 1, len, rule ? 1 : 0, rule ? len : 0, rule, now, now, tcp_flags);

	__builtin_memcpy(&slot->key, key, sizeof(*key));
	slot->used = 1;
	slot->packets = 0;
	slot->bytes = 0;
	slot->dropped = 0;
	slot->bytes_dropped = 0;
	slot->tcp_flags = 0;
	slot->last_seen_jiffies = jiffies;
	slot->last_rule = rule;
	slot->last_verdict = rule ? NR_VERDICT_DROP : NR_VERDICT_PASS;
}

/* Counts one packet in its flow. direction: NR_FLOW_INGRESS (XDP) or
 * NR_FLOW_EGRESS (TC egress). rule: the firewall rule that dropped it, 0
 * when it passes. The address pointer is derived and checked in the branch
 * of its family (see nr_meta_to_event). */
static __always_inline void nr_flow_account(void *data, void *data_end, const struct nr_meta *m,
					    __u32 ifindex, __u32 len, __u32 rule, const __u8 direction)
{
	struct nr_flow_key key __attribute__((aligned(8)));
	struct nr_flow_slot *slot;
	__u32 off = m->l3_off & (NR_PARSE_MAX_OFF - 1), idx, tail;
	const __u32 *a;
	const __u64 *k = (const __u64 *)&key, *s;

	__builtin_memset(&key, 0, sizeof(key));
	if (m->family == NR_FAMILY_IPV4) {
		a = data + off + 12;
		if ((void *)(a + 2) > data_end)
			return;
		__builtin_memcpy(key.src, a, 4);
		__builtin_memcpy(key.dst, a + 1, 4);
	} else if (m->family == NR_FAMILY_IPV6) {
		a = data + off + 8;
		if ((void *)(a + 8) > data_end)
			return;
		__builtin_memcpy(key.src, a, 16);
		__builtin_memcpy(key.dst, a + 4, 16);
	} else {
		return;
	}
	key.ifindex = ifindex;
	key.direction = direction;
	key.family = m->family;
	key.proto = m->l4_proto;
	if (m->flags & NR_PKT_HAS_PORTS) {
		key.sport = m->sport;
		key.dport = m->dport;
	} else if (m->flags & NR_PKT_HAS_ICMP) {
		key.dport = (__u16)m->icmp_type << 8 | m->icmp_code;
	}

	/* The 44-byte key as five u64 and a u32, hashed multiplicatively. */
	tail = *(const __u32 *)(k + 5);
	idx = ((k[0] ^ k[1] ^ k[2] ^ k[3] ^ k[4] ^ tail) * 0x9E3779B97F4A7C15ULL) >> 32;
	idx &= NR_FLOW_CACHE_SLOTS - 1;
	slot = bpf_map_lookup_elem(&if_flow_cache, &idx);
	if (!slot)
		return;
	s = (const __u64 *)&slot->key;
	if (slot->used && s[0] == k[0] && s[1] == k[1] && s[2] == k[2] && s[3] == k[3] && s[4] == k[4] &&
	    *(const __u32 *)(s + 5) == tail) {
		slot->packets++;
		slot->bytes += len;
		slot->tcp_flags |= m->tcp_flags;
		slot->last_seen_jiffies = bpf_jiffies64();
		slot->last_rule = rule;
		slot->last_verdict = rule ? NR_VERDICT_DROP : NR_VERDICT_PASS;
		if (rule) {
			slot->dropped++;
			slot->bytes_dropped += len;
		}
		if (slot->packets >= NR_FLOW_FLUSH_PACKETS)
			nr_flow_flush_busy(slot);
		return;
	}
	nr_flow_miss(&key, slot, len, rule, m->tcp_flags);
}

#endif /* NETRAY_FLOWS_H */
