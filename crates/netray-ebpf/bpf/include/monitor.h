/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * Monitor: copy a packet's metadata record to the interface's event ring.
 * Records are submitted without a wakeup (a wakeup costs microseconds); the
 * reader polls on a short timer and is woken early only when the ring crosses
 * the configured fill level. A full ring is counted in events_lost.
 */
#ifndef NETRAY_MONITOR_H
#define NETRAY_MONITOR_H

#include "maps.h"

static __always_inline void nr_monitor_emit(const struct nr_packet_event *ev,
					    const struct nr_if_config *cfg,
					    struct nr_if_stats *stats)
{
	__u64 avail = bpf_ringbuf_query(&if_events, BPF_RB_AVAIL_DATA);
	__u64 flags = BPF_RB_NO_WAKEUP;

	/* Wake once, when this record makes the backlog cross the threshold. */
	if (avail < cfg->monitor_wakeup_bytes &&
	    avail + sizeof(*ev) + 8 >= cfg->monitor_wakeup_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	if (bpf_ringbuf_output(&if_events, (void *)ev, sizeof(*ev), flags))
		stats->events_lost++;
	else
		stats->events_sent++;
}

#endif /* NETRAY_MONITOR_H */
