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
 * The parser itself is parse_body.h, compiled here for direct packet access
 * and in parse_skb.h for programs that must load bytes (socket filters).
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
	__u8 tcp_flags;		/* TCP: the flags byte (CWR ... FIN), 0 when cut off */
};

struct nr_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

/* The headers the parser reads, as it reads them. */
struct nr_l4_ports {	/* the first 4 bytes of TCP, UDP, UDP-Lite and SCTP */
	__be16 source;
	__be16 dest;
};

struct nr_tcp_flags {	/* byte 13 of the TCP header */
	__u8 bits;
};

struct nr_icmp_head {	/* ICMP and ICMPv6 alike */
	__u8 type;
	__u8 code;
	__be16 checksum;
};

struct nr_ipv6_opt {	/* the first 8 bytes of an IPv6 extension header */
	__u8 b[8];
};

struct nr_ipv4_addrs {
	__u8 src[4];
	__u8 dst[4];
};

struct nr_ipv6_addrs {
	__u8 src[16];
	__u8 dst[16];
};

/* The parser for direct packet access (XDP, TC): nr_parse(data, data_end,
 * meta) and nr_meta_to_event(data, data_end, meta, event). A header is read
 * in place once the pointer past it is checked against data_end; offsets are
 * kept as bounded scalars (not pointers) so the verifier can follow
 * variable-length headers. */
#define NR_PARSE_FN(name) nr_##name
#define NR_PARSE_PARAMS void *data, void *data_end
#define NR_PARSE_ARGS data, data_end
#define NR_PARSE_DECL(type, p) type *p
#define NR_PARSE_LOAD(p, off) ((p) = data + (off), (void *)((p) + 1) <= data_end)
#define NR_PARSE_HAVE(off, len) (data + (off) + (len) <= data_end)
#include "parse_body.h"

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

/* The TCP flags byte of a common frame (20 bytes of TCP header present). */
static __always_inline __u32 nr_common_tcp_flags(void *data, void *data_end)
{
	__u8 *l4 = data + NR_COMMON_L4_OFF;

	if ((void *)(l4 + 20) > data_end)	/* checked by nr_common_ipv4; for the verifier */
		return 0;
	return l4[13];
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
		if (proto == IPPROTO_TCP)
			m->tcp_flags = l4[13];
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

#endif /* NETRAY_PARSE_H */
