// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * TC benchmark programs, run only through BPF_PROG_TEST_RUN by `netray bench`:
 * the TC dispatcher as attached, against an empty TC program.
 */
#include "tc_dispatch.h"

SEC("tc")
int bench_tc_empty(struct __sk_buff *skb)
{
	return TC_ACT_UNSPEC;
}

SEC("tc")
int bench_tc_ingress(struct __sk_buff *skb)
{
	return nr_tc_dispatch(skb, 0);
}

SEC("tc")
int bench_tc_egress(struct __sk_buff *skb)
{
	return nr_tc_dispatch(skb, 1);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
