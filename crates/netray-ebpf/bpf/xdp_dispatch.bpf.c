// SPDX-License-Identifier: GPL-2.0-only OR MIT
/* The XDP program netray attaches: see include/xdp_dispatch.h. */
#include "xdp_dispatch.h"

SEC("xdp")
int netray_xdp(struct xdp_md *ctx)
{
	return nr_xdp_dispatch(ctx);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
