//! IPFIX export (RFC 7011) of the kernel's per-flow counters, so a fleet of
//! netray agents feeds the flow collectors operators already run (pmacct's
//! nfacctd, nfdump, goflow2, Akvorado, ElastiFlow, ...).
//!
//! - [`template`]: the two templates (IPv4, IPv6) and their elements;
//! - [`record`]: one data record;
//! - [`encode`]: messages, sets and records in bytes, with sequence numbers;
//! - [`meter`]: delta counts, active and idle timeouts, evictions;
//! - [`queue`] and [`transport`]: the bounded queue and the sender thread
//!   (UDP with template refresh, TCP with reconnect and backoff);
//! - [`exporter`]: ties them together for `netray top --ipfix` and the daemon;
//! - [`counters`]: what was sent and lost, as a summary and as metrics.
//!
//! docs/ipfix.md describes the template and how to feed collectors.

pub mod config;
pub mod counters;
pub mod encode;
pub mod exporter;
pub mod meter;
pub mod queue;
pub mod record;
pub mod template;
pub mod transport;

pub use config::{ExportConfig, Transport};
pub use counters::Stats;
pub use exporter::{Exporter, ExporterMetrics};
pub use meter::{Meter, Timeouts};

#[derive(Debug, thiserror::Error)]
pub enum IpfixError {
    #[error("IPFIX collector '{collector}': {why} (give HOST:PORT, e.g. 127.0.0.1:4739)")]
    Collector { collector: String, why: String },
    #[error("IPFIX export: {0}")]
    Config(String),
}
