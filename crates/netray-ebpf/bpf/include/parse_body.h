/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * The packet parser's one body, compiled once per way of reading a packet
 * (xdp-tools' way: a few #defines, then this file). No include guard: it is
 * included once by parse.h (direct packet access: XDP, TC) and once by
 * parse_skb.h (bpf_skb_load_bytes_relative: socket filters). The includer
 * defines:
 *
 *   NR_PARSE_FN(name)       the name of each function of this variant
 *   NR_PARSE_PARAMS         the packet as a parameter list; NR_PARSE_ARGS passes it on
 *   NR_PARSE_DECL(T, p)     declares p, a pointer to a header of type T
 *   NR_PARSE_LOAD(p, off)   true when the frame holds *p at offset off; p then
 *                           reads it (points into the packet, or at a copy)
 *   NR_PARSE_HAVE(off, len) true when the frame holds [off, off + len)
 *
 * A header the frame ends inside marks it NR_PKT_TRUNCATED, with every field
 * parsed up to that point; see parse.h for struct nr_meta.
 */

static __always_inline void NR_PARSE_FN(parse_l4)(NR_PARSE_PARAMS, __u32 off, struct nr_meta *ev)
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
		NR_PARSE_DECL(struct nr_l4_ports, ports);

		if (!NR_PARSE_LOAD(ports, off)) {
			ev->flags |= NR_PKT_TRUNCATED;
			return;
		}
		ev->sport = bpf_ntohs(ports->source);
		ev->dport = bpf_ntohs(ports->dest);
		ev->flags |= NR_PKT_HAS_PORTS;
		if (!NR_PARSE_HAVE(off, hdr)) {
			ev->flags |= NR_PKT_TRUNCATED;
			return;
		}
		if (ev->l4_proto == IPPROTO_TCP) {
			NR_PARSE_DECL(struct nr_tcp_flags, tcp);

			if (NR_PARSE_LOAD(tcp, off + 13))
				ev->tcp_flags = tcp->bits;
		}
		return;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		NR_PARSE_DECL(struct nr_icmp_head, icmp);

		if (!NR_PARSE_LOAD(icmp, off)) {
			ev->flags |= NR_PKT_TRUNCATED;
			return;
		}
		ev->icmp_type = icmp->type;
		ev->icmp_code = icmp->code;
		ev->flags |= NR_PKT_HAS_ICMP;
		return;
	}
	default:
		return;
	}
}

static __always_inline void NR_PARSE_FN(parse_ipv4)(NR_PARSE_PARAMS, __u32 off, struct nr_meta *ev)
{
	NR_PARSE_DECL(struct iphdr, ip);
	__u32 hlen;

	if (!NR_PARSE_LOAD(ip, off)) {
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
	if (!NR_PARSE_HAVE(off, hlen)) {
		ev->flags |= NR_PKT_TRUNCATED;
		return;
	}
	NR_PARSE_FN(parse_l4)(NR_PARSE_ARGS, off + hlen, ev);
}

static __always_inline void NR_PARSE_FN(parse_ipv6)(NR_PARSE_PARAMS, __u32 off, struct nr_meta *ev)
{
	NR_PARSE_DECL(struct ipv6hdr, ip6);
	__u8 next;

	if (!NR_PARSE_LOAD(ip6, off)) {
		ev->flags |= NR_PKT_TRUNCATED;
		return;
	}
	ev->family = NR_FAMILY_IPV6;
	ev->l3_off = off;
	next = ip6->nexthdr;
	off += sizeof(*ip6);

#pragma unroll
	for (int i = 0; i < NR_IPV6_MAX_EXT; i++) {
		NR_PARSE_DECL(struct nr_ipv6_opt, ext);
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
		if (!NR_PARSE_LOAD(ext, off)) {
			ev->l4_proto = next;
			ev->flags |= NR_PKT_TRUNCATED;
			return;
		}
		if (next == NR_NEXTHDR_FRAGMENT) {
			ev->flags |= NR_PKT_FRAGMENT;
			/* offset field: bytes 2-3, top 13 bits */
			if ((ext->b[2] << 8 | ext->b[3]) & 0xfff8) {
				ev->l4_proto = ext->b[0];
				ev->flags |= NR_PKT_LATER_FRAGMENT;
				return;
			}
			len = 8;
		} else if (next == NR_NEXTHDR_AUTH) {
			len = (ext->b[1] + 2) * 4;
		} else {
			len = (ext->b[1] + 1) * 8;
		}
		next = ext->b[0];
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
	NR_PARSE_FN(parse_l4)(NR_PARSE_ARGS, off, ev);
}

/* Parse one frame into ev (which the caller zeroed).
 *
 * A subprogram on purpose: inlined, its many paths (VLAN tags, IPv6
 * extension headers, protocols) leave exact but different values in the
 * caller's registers, the verifier cannot merge them, and the dispatcher
 * exceeds its budget. Returning through memory costs one call per packet. */
static __attribute__((noinline)) void NR_PARSE_FN(parse)(NR_PARSE_PARAMS, struct nr_meta *ev)
{
	NR_PARSE_DECL(struct ethhdr, eth);
	__u32 off = sizeof(*eth);
	__be16 proto;

	if (!NR_PARSE_LOAD(eth, 0)) {
		ev->flags |= NR_PKT_TRUNCATED;
		return;
	}
	proto = eth->h_proto;

#pragma unroll
	for (int i = 0; i < 2; i++) {
		NR_PARSE_DECL(struct nr_vlan_hdr, vh);

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if (!NR_PARSE_LOAD(vh, off)) {
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
		NR_PARSE_FN(parse_ipv4)(NR_PARSE_ARGS, off, ev);
	else if (proto == bpf_htons(ETH_P_IPV6))
		NR_PARSE_FN(parse_ipv6)(NR_PARSE_ARGS, off, ev);
}

/* The monitor record of a parsed frame (addresses copied out of the packet;
 * left zero when the frame does not hold them). */
static __always_inline void NR_PARSE_FN(meta_to_event)(NR_PARSE_PARAMS, const struct nr_meta *m,
						       struct nr_packet_event *ev)
{
	__u32 off = m->l3_off & (NR_PARSE_MAX_OFF - 1);

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
		NR_PARSE_DECL(struct nr_ipv4_addrs, a);

		if (NR_PARSE_LOAD(a, off + 12)) {
			__builtin_memcpy(ev->src, a->src, 4);
			__builtin_memcpy(ev->dst, a->dst, 4);
		}
	} else if (m->family == NR_FAMILY_IPV6) {
		NR_PARSE_DECL(struct nr_ipv6_addrs, a);

		if (NR_PARSE_LOAD(a, off + 8)) {
			__builtin_memcpy(ev->src, a->src, 16);
			__builtin_memcpy(ev->dst, a->dst, 16);
		}
	}
}

#undef NR_PARSE_FN
#undef NR_PARSE_PARAMS
#undef NR_PARSE_ARGS
#undef NR_PARSE_DECL
#undef NR_PARSE_LOAD
#undef NR_PARSE_HAVE
