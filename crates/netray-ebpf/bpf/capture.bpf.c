// SPDX-License-Identifier: GPL-2.0-only OR MIT
/* The capture recorders of netray dump: see include/capture.h. */
#include "capture.h"

SEC("xdp")
int netray_cap_xdp(struct xdp_md *ctx)
{
	struct nr_capture_scratch *s;

	s = nr_cap_handle(ctx, NR_CAP_FROM_XDP, ctx->ingress_ifindex, bpf_xdp_get_buff_len(ctx));
	if (s && s->point == NR_POINT_EXIT) {
		__s32 verdict = s->verdict;

		/* Only the actions XDP defines; anything else would be ABORTED. */
		return verdict >= XDP_ABORTED && verdict <= XDP_REDIRECT ? verdict : XDP_ABORTED;
	}
	bpf_tail_call(ctx, &cap_chain, NR_CAP_NEXT);
	return XDP_PASS;
}

SEC("tc")
int netray_cap_tc(struct __sk_buff *skb)
{
	struct nr_capture_scratch *s;

	s = nr_cap_handle(skb, NR_CAP_FROM_SKB, skb->ifindex, skb->len);
	if (s && s->point == NR_POINT_EXIT)
		return s->verdict;
	/* TC_ACT_UNSPEC is TCX_NEXT: the next program on the hook runs (the entry
	 * capture is placed first). */
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
