/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * The parser for programs without direct packet access (socket filters):
 * parse_body.h compiled with bpf_skb_load_bytes_relative() from the MAC header
 * (which works both on a packet socket and under BPF_PROG_TEST_RUN), as
 * nr_sk_parse(skb, meta) and nr_sk_meta_to_event(skb, meta, event). Each
 * header is copied to the stack; a load that fails means the frame ends
 * inside it. Same fields, same flags as parse.h's nr_parse.
 */
#ifndef NETRAY_PARSE_SKB_H
#define NETRAY_PARSE_SKB_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "parse.h"

#define NR_SK_LOAD(skb, off, buf, n) \
	bpf_skb_load_bytes_relative(skb, (off), (buf), (n), BPF_HDR_START_MAC)

#define NR_PARSE_FN(name) nr_sk_##name
#define NR_PARSE_PARAMS struct __sk_buff *skb
#define NR_PARSE_ARGS skb
#define NR_PARSE_DECL(type, p) type p##_copy, *p = &p##_copy
#define NR_PARSE_LOAD(p, off) (!NR_SK_LOAD(skb, (off), (p), sizeof(*(p))))
/* The last byte is there: one byte loaded, not the whole range. */
#define NR_PARSE_HAVE(off, len) ({ __u8 __last; !NR_SK_LOAD(skb, (off) + (len) - 1, &__last, 1); })
#include "parse_body.h"

#endif /* NETRAY_PARSE_SKB_H */
