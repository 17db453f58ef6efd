/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * The per-CPU handoff between a dispatcher and the capture programs (struct
 * nr_capture_scratch). Defined once, included by the dispatchers' maps.h and
 * by capture.h: an exit capture reuses the dispatcher's map (same name).
 */
#ifndef NETRAY_CAPTURE_SCRATCH_H
#define NETRAY_CAPTURE_SCRATCH_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "netray_abi.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nr_capture_scratch);
} if_cap_scratch SEC(".maps");

#endif /* NETRAY_CAPTURE_SCRATCH_H */
