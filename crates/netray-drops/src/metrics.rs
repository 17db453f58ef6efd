//! The drop counts as Prometheus series, the same for the daemon's /metrics
//! and `netray top --metrics --drops`: labels who ("kernel", "netray xdp"),
//! reason (the kernel's names, or "rule N") and interface, all bounded.

use netray_flows::metrics::Scrape;

use crate::DropCounts;

/// Adds netray_drops_total, netray_drop_bytes_total and netray_drops_lost_total.
pub fn scrape(s: &mut Scrape, counts: &DropCounts, lost: u64) {
    let (packets, bytes) = counts.series();
    s.counter("netray_drops", "Packets dropped, by who dropped them, the reason and the interface", packets);
    s.counter("netray_drop_bytes", "Bytes of the dropped packets, by who, reason and interface", bytes);
    s.counter("netray_drops_lost", "Drops the kernel could not report (ring buffer full)", vec![(Vec::new(), lost)]);
}
