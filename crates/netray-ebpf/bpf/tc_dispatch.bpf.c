// SPDX-License-Identifier: GPL-2.0-only OR MIT
/* The TC programs netray attaches (ingress, egress) and its socket-filter
 * monitor: see include/tc_dispatch.h. */
#include "tc_dispatch.h"

SEC("tc")
int netray_tc_ingress(struct __sk_buff *skb)
{
	return nr_tc_dispatch(skb, 0);
}

SEC("tc")
int netray_tc_egress(struct __sk_buff *skb)
{
	return nr_tc_dispatch(skb, 1);
}

SEC("socket")
int netray_socket(struct __sk_buff *skb)
{
	return nr_socket_monitor(skb);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
