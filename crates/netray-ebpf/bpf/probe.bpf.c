// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * Tiny programs `netray features` loads to ask the kernel what it allows: each
 * probe loads one of them (the others' autoload off), so one refusal never hides
 * another. They carry BTF, which fexit and freplace on a program need.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* The target of the fexit and freplace probes (global: freplace replaces only
 * global functions). */
SEC("xdp")
int netray_probe_xdp(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/* Attached by userspace to the netray_probe_xdp just loaded. */
SEC("freplace")
int netray_probe_ext(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/* A function every kernel with BPF_PROG_TEST_RUN has (net/bpf/test_run.c). */
SEC("kprobe/bpf_fentry_test1")
int netray_probe_kprobe(void *ctx)
{
	return 0;
}

SEC("fentry/bpf_fentry_test1")
int netray_probe_fentry(void *ctx)
{
	return 0;
}

/* BPF_PROG_TYPE_TRACING too, but refused separately from fentry on some
 * kernels: netray drops prefers it and falls back to raw_tp. */
SEC("tp_btf/kfree_skb")
int netray_probe_tp_btf(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
