/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * Packet parser shared by every hook: Ethernet, up to two VLAN tags
 * (802.1Q/802.1ad), IPv4 (with options and fragments), IPv6 (with extension
 * headers) and the first bytes of TCP/UDP/SCTP/ICMP. It fills a struct nr_meta
 * and never reads past data_end: a frame that ends inside a header is marked
 * NR_PKT_TRUNCATED with every field parsed up to that point.
 *
 * nr_meta is small and only ever used through inlined functions, so the
 * compiler keeps it in registers; addresses stay in the packet (at l3_off)
 * and are read from there only by what needs them. Every instruction here
 * runs for every packet.
 *
 * Offsets are kept as bounded scalars (not pointers) so the verifier can follow
 * variable-length headers.
 */
#ifndef NETRAY_PARSE_H
#define NETRAY_PARSE_H

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include "netray_abi.h"

/* <linux/stddef.h>, reached through the UAPI headers before bpf_helpers.h,
 * defines __always_inline as a plain `inline`: clang then outlines the parser
 * into a BPF subprogram, which costs a call per packet and makes verification
 * explode. Insist on real inlining. */
#undef __always_inline
#define __always_inline inline __attribute__((always_inline))

#define NR_IPV6_MAX_EXT 8
/* Largest offset the parser follows; keeps pointer arithmetic verifiable. */
#define NR_PARSE_MAX_OFF 4096

#ifndef IPPROTO_ICMPV6
#define IPPROTO_ICMPV6 58
#endif
#define NR_NEXTHDR_HOP 0
#define NR_NEXTHDR_ROUTING 43
#define NR_NEXTHDR_FRAGMENT 44
#define NR_NEXTHDR_AUTH 51
#define NR_NEXTHDR_DEST 60

/* What the parser learned about one frame. */
struct nr_meta {
	__u16 l3_off;		/* offset of the IP header, valid when family != 0 */
	__u16 ethertype;
	__u16 vlan_outer;
	__u16 vlan_inner;
	__u16 sport;
	__u16 dport;
	__u8 family;
	__u8 l4_proto;
	__u8 flags;
	__u8 vlan_depth;
	__u8 icmp_type;
	__u8 icmp_code;
};

struct nr_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

/* True when [off, off+len) lies inside the packet. */
#define NR_HAVE(data, data_end, off, len) ((data) + (off) + (len) <= (data_end))

static __always_inline void nr_parse_l4(void *data, void *data_end, __u32 off,
					struct nr_meta *ev)
{
	off &= NR_PARSE_MAX_OFF * 2 - 1;
	switch (ev->l4_proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE:
	case IPPROTO_SCTP: {
		/* Ports are the first 4 bytes of all four; take them even when the
		 * rest of the header is cut, so a port rule cannot be dodged. */
		__u32 hdr = ev->l4_proto == IPPROTO_TCP ? 20 : ev->l4_proto == IPPROTO_SCTP ? 12 : 8;
		__be16 *ports = data + off;

		if ((void *)(ports + 2) > data_end) {
			ev->flags |= NR_PKT_TRUNCATED;
			return;
		}
		ev->sport = bpf_ntohs(ports[0]);
		ev->dport = bpf_ntohs(ports[1]);
		ev->flags |= NR_PKT_HAS_PORTS;
		if (!NR_HAVE(data, data_end, off, hdr))
			ev->flags |= NR_PKT_TRUNCATED;
		return;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		__u8 *icmp = data + off;

		if ((void *)(icmp + 4) > data_end) {
			ev->flags |= NR_PKT_TRUNCATED;
			return;
		}
		ev->icmp_type = icmp[0];
		ev->icmp_code = icmp[1];
		ev->flags |= NR_PKT_HAS_ICMP;
		return;
	}
	default:
		return;
	}
}

static __always_inline void nr_parse_ipv4(void *data, void *data_end, __u32 off,
					  struct nr_meta *ev)
{
	struct iphdr *ip = data + off;
	__u32 hlen;

	if ((void *)(ip + 1) > data_end) {
		ev->flags |= NR_PKT_TRUNCATED;
		return;
	}
	ev->family = NR_FAMILY_IPV4;
	ev->l3_off = off;
	ev->l4_proto = ip->protocol;

	hlen = (ip->ihl & 0xf) * 4;
	if (hlen < sizeof(*ip)) {
		/* IHL < 5 is malformed: keep the addresses and protocol, no ports. */
		ev->flags |= NR_PKT_TRUNCATED;
		return;
	}
	if (hlen > sizeof(*ip))
		ev->flags |= NR_PKT_IP_OPTIONS;
	if (ip->frag_off & bpf_htons(0x3fff)) { /* MF or a fragment offset */
		ev->flags |= NR_PKT_FRAGMENT;
		if (ip->frag_off & bpf_htons(0x1fff)) {
			ev->flags |= NR_PKT_LATER_FRAGMENT;
			return;
		}
	}
	if (!NR_HAVE(data, data_end, off, hlen)) {
		ev->flags |= NR_PKT_TRUNCATED;
		return;
	}
	nr_parse_l4(data, data_end, off + hlen, ev);
}

static __always_inline void nr_parse_ipv6(void *data, void *data_end, __u32 off,
					  struct nr_meta *ev)
{
	struct ipv6hdr *ip6 = data + off;
	__u8 next;

	if ((void *)(ip6 + 1) > data_end) {
		ev->flags |= NR_PKT_TRUNCATED;
		return;
	}
	ev->family = NR_FAMILY_IPV6;
	ev->l3_off = off;
	next = ip6->nexthdr;
	off += sizeof(*ip6);

#pragma unroll
	for (int i = 0; i < NR_IPV6_MAX_EXT; i++) {
		__u8 *ext;
		__u32 len;

		if (next != NR_NEXTHDR_HOP && next != NR_NEXTHDR_ROUTING &&
		    next != NR_NEXTHDR_DEST && next != NR_NEXTHDR_FRAGMENT &&
		    next != NR_NEXTHDR_AUTH)
			break;
		ev->flags |= NR_PKT_IPV6_EXT;
		if (off >= NR_PARSE_MAX_OFF) {
			/* Past any frame we parse: stop, never wrap. */
			ev->l4_proto = next;
			ev->flags |= NR_PKT_TRUNCATED;
			return;
		}
		off &= NR_PARSE_MAX_OFF - 1; /* a no-op now; tells the verifier the bound */
		ext = data + off;
		if ((void *)(ext + 8) > data_end) {
			ev->l4_proto = next;
			ev->flags |= NR_PKT_TRUNCATED;
			return;
		}
		if (next == NR_NEXTHDR_FRAGMENT) {
			ev->flags |= NR_PKT_FRAGMENT;
			/* offset field: bytes 2-3, top 13 bits */
			if ((ext[2] << 8 | ext[3]) & 0xfff8) {
				ev->l4_proto = ext[0];
				ev->flags |= NR_PKT_LATER_FRAGMENT;
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
	ev->l4_proto = next;
	if (next == NR_NEXTHDR_HOP || next == NR_NEXTHDR_ROUTING || next == NR_NEXTHDR_DEST ||
	    next == NR_NEXTHDR_FRAGMENT || next == NR_NEXTHDR_AUTH) {
		/* More extension headers than we walk: the transport header was
		 * not reached, so say so (port rules cannot apply, and a packet
		 * padded to hide its ports must not look complete). */
		ev->flags |= NR_PKT_TRUNCATED;
		return;
	}
	if (off >= NR_PARSE_MAX_OFF) {
		ev->flags |= NR_PKT_TRUNCATED;
		return;
	}
	nr_parse_l4(data, data_end, off, ev);
}

/* Parse one frame into ev (which the caller zeroed).
 *
 * A subprogram on purpose: inlined, its many paths (VLAN tags, IPv6
 * extension headers, protocols) leave exact but different values in the
 * caller's registers, the verifier cannot merge them, and the dispatcher
 * exceeds its budget. Returning through memory costs one call per packet. */
static __attribute__((noinline)) void nr_parse(void *data, void *data_end, struct nr_meta *ev)
{
	struct ethhdr *eth = data;
	__u32 off = sizeof(*eth);
	__be16 proto;

	if ((void *)(eth + 1) > data_end) {
		ev->flags |= NR_PKT_TRUNCATED;
		return;
	}
	proto = eth->h_proto;

#pragma unroll
	for (int i = 0; i < 2; i++) {
		struct nr_vlan_hdr *vh;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		vh = data + off;
		if ((void *)(vh + 1) > data_end) {
			ev->ethertype = bpf_ntohs(proto);
			ev->flags |= NR_PKT_TRUNCATED;
			return;
		}
		if (i == 0)
			ev->vlan_outer = bpf_ntohs(vh->tci) & 0x0fff;
		else
			ev->vlan_inner = bpf_ntohs(vh->tci) & 0x0fff;
		ev->vlan_depth = i + 1;
		proto = vh->proto;
		off += sizeof(*vh);
	}
	ev->ethertype = bpf_ntohs(proto);

	if (proto == bpf_htons(ETH_P_IP))
		nr_parse_ipv4(data, data_end, off, ev);
	else if (proto == bpf_htons(ETH_P_IPV6))
		nr_parse_ipv6(data, data_end, off, ev);
}

/* The common frame: untagged IPv4 without options, not a fragment, TCP, UDP
 * or ICMP with at least 20 bytes of it present. Returns its IP protocol, or
 * 0 for any other frame (which the full parser handles). */
#define NR_COMMON_L3_OFF sizeof(struct ethhdr)
#define NR_COMMON_L4_OFF (NR_COMMON_L3_OFF + sizeof(struct iphdr))
static __always_inline __u32 nr_common_ipv4(void *data, void *data_end)
{
	struct iphdr *ip = data + NR_COMMON_L3_OFF;
	__u32 proto;

	if (data + NR_COMMON_L4_OFF + 20 > data_end)
		return 0;
	/* ethertype as one 16-bit load (struct ethhdr is packed: byte loads) */
	if (*(__be16 *)(data + 12) != bpf_htons(ETH_P_IP) || *(__u8 *)ip != 0x45 ||
	    (ip->frag_off & bpf_htons(0x3fff)))
		return 0;
	proto = ip->protocol;
	/* TCP, UDP or ICMP, as one bit test (clang turns three compares into a
	 * dozen instructions of flag arithmetic) */
	if (proto >= 32 || !((1u << IPPROTO_TCP | 1u << IPPROTO_UDP | 1u << IPPROTO_ICMP) >> proto & 1))
		return 0;
	return proto;
}

/* The common frame parsed inline in a few instructions. Returns 0 for
 * anything else, which the full parser then handles; for the frames it
 * accepts, the result is exactly the full parser's. */
static __always_inline int nr_parse_fast(void *data, void *data_end, struct nr_meta *m)
{
	__u32 proto = nr_common_ipv4(data, data_end);
	__u8 *l4 = data + NR_COMMON_L4_OFF;

	if (!proto || (void *)(l4 + 20) > data_end)	/* the second test is for the verifier */
		return 0;
	if (proto == IPPROTO_ICMP) {
		m->icmp_type = l4[0];
		m->icmp_code = l4[1];
		m->flags = NR_PKT_HAS_ICMP;
	} else {
		m->sport = bpf_ntohs(*(__be16 *)l4);
		m->dport = bpf_ntohs(*(__be16 *)(l4 + 2));
		m->flags = NR_PKT_HAS_PORTS;
	}
	m->ethertype = ETH_P_IP;
	m->family = NR_FAMILY_IPV4;
	m->l4_proto = proto;
	m->l3_off = NR_COMMON_L3_OFF;
	return 1;
}

/* The counters every hook keeps for each packet it parses. */
static __always_inline void nr_count_packet(struct nr_if_stats *stats, const struct nr_meta *m, __u32 len)
{
	stats->seen++;
	stats->bytes_seen += len;
	if (__builtin_expect(!m->family, 0))
		stats->non_ip++;
	if (__builtin_expect(m->flags & NR_PKT_TRUNCATED, 0))
		stats->truncated++;
}

/* The monitor record of a parsed frame (addresses copied out of the packet). */
static __always_inline void nr_meta_to_event(void *data, void *data_end, const struct nr_meta *m,
					     struct nr_packet_event *ev)
{
	__u32 off = m->l3_off & (NR_PARSE_MAX_OFF - 1);
	const __u8 *a;

	ev->ethertype = m->ethertype;
	ev->vlan_outer = m->vlan_outer;
	ev->vlan_inner = m->vlan_inner;
	ev->vlan_depth = m->vlan_depth;
	ev->sport = m->sport;
	ev->dport = m->dport;
	ev->family = m->family;
	ev->l4_proto = m->l4_proto;
	ev->flags = m->flags;
	ev->icmp_type = m->icmp_type;
	ev->icmp_code = m->icmp_code;
	/* Pointer derived and checked in the branch that uses it (see firewall.h). */
	if (m->family == NR_FAMILY_IPV4) {
		a = data + off + 12;
		if ((void *)(a + 8) <= data_end) {
			__builtin_memcpy(ev->src, a, 4);
			__builtin_memcpy(ev->dst, a + 4, 4);
		}
	} else if (m->family == NR_FAMILY_IPV6) {
		a = data + off + 8;
		if ((void *)(a + 32) <= data_end) {
			__builtin_memcpy(ev->src, a, 16);
			__builtin_memcpy(ev->dst, a + 16, 16);
		}
	}
}

#endif /* NETRAY_PARSE_H */
