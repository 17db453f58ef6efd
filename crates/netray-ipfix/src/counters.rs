//! The exporter's counters, shared by the poller and the sender thread, as
//! the end-of-run summary and as Prometheus metrics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use netray_flows::metrics::{Labels, Scrape};
use serde::Serialize;

#[derive(Debug, Default)]
pub struct Counters {
    pub records_sent: AtomicU64,
    pub messages_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub templates_sent: AtomicU64,
    /// Records the queue had no room for (collector down or slow).
    pub dropped_queue_full: AtomicU64,
    /// Records in messages the transport failed to send.
    pub dropped_send_failed: AtomicU64,
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub connected: AtomicU64,
    pub queued: AtomicU64,
    pub evicted: AtomicU64,
    pub evicted_active: AtomicU64,
    pub evicted_recreated: AtomicU64,
    pub evicted_unread: AtomicU64,
}

/// The counters at one moment (the summary `netray top --ipfix` prints).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub records_sent: u64,
    pub messages_sent: u64,
    pub bytes_sent: u64,
    pub templates_sent: u64,
    pub dropped_queue_full: u64,
    pub dropped_send_failed: u64,
    /// Records still queued when the exporter stopped (never sent).
    pub dropped_at_exit: u64,
    pub connects: u64,
    pub connect_failures: u64,
    pub evicted: u64,
    pub evicted_active: u64,
    pub evicted_recreated: u64,
    pub evicted_unread: u64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    pub fn stats(&self) -> Stats {
        let g = |c: &AtomicU64| c.load(Relaxed);
        Stats {
            records_sent: g(&self.records_sent),
            messages_sent: g(&self.messages_sent),
            bytes_sent: g(&self.bytes_sent),
            templates_sent: g(&self.templates_sent),
            dropped_queue_full: g(&self.dropped_queue_full),
            dropped_send_failed: g(&self.dropped_send_failed),
            dropped_at_exit: 0,
            connects: g(&self.connects),
            connect_failures: g(&self.connect_failures),
            evicted: g(&self.evicted),
            evicted_active: g(&self.evicted_active),
            evicted_recreated: g(&self.evicted_recreated),
            evicted_unread: g(&self.evicted_unread),
        }
    }

    /// The `netray_ipfix_*` metrics, labelled with the collector.
    pub fn scrape(&self, s: &mut Scrape, collector: &str, transport: &str) {
        let st = self.stats();
        let l = |extra: Option<(&'static str, &'static str)>| -> Labels {
            let mut v: Labels = vec![("collector", collector.to_string()), ("transport", transport.to_string())];
            if let Some((k, x)) = extra {
                v.push((k, x.to_string()));
            }
            v
        };
        s.counter("netray_ipfix_records_sent", "IPFIX data records sent to the collector", vec![(l(None), st.records_sent)]);
        s.counter("netray_ipfix_messages_sent", "IPFIX messages sent to the collector", vec![(l(None), st.messages_sent)]);
        s.counter("netray_ipfix_bytes_sent", "Bytes of IPFIX messages sent", vec![(l(None), st.bytes_sent)]);
        s.counter("netray_ipfix_templates_sent", "Template sets sent (first, refresh, reconnect)", vec![(l(None), st.templates_sent)]);
        s.counter(
            "netray_ipfix_records_dropped",
            "IPFIX records not delivered: the queue was full, or the transport failed to send them",
            vec![
                (l(Some(("reason", "queue_full"))), st.dropped_queue_full),
                (l(Some(("reason", "send_failed"))), st.dropped_send_failed),
            ],
        );
        s.counter(
            "netray_ipfix_connects",
            "TCP connections to the collector, by result",
            vec![(l(Some(("result", "ok"))), st.connects), (l(Some(("result", "failed"))), st.connect_failures)],
        );
        s.gauge("netray_ipfix_connected", "1 while the transport to the collector is up", vec![(l(None), self.connected.load(Relaxed))]);
        s.gauge("netray_ipfix_queue_records", "Records waiting for the sender", vec![(l(None), self.queued.load(Relaxed))]);
        s.counter(
            "netray_ipfix_flow_evictions",
            "Flows evicted from the kernel table: exported as last read (read), with packets in the poll before (active), created again between reads (recreated), never read (unread)",
            vec![
                (l(Some(("kind", "read"))), st.evicted),
                (l(Some(("kind", "active"))), st.evicted_active),
                (l(Some(("kind", "recreated"))), st.evicted_recreated),
                (l(Some(("kind", "unread"))), st.evicted_unread),
            ],
        );
    }
}
