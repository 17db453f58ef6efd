//! What the exporter is told: the collector, the transport, the timeouts,
//! the observation domain and how often UDP repeats the templates. Shared by
//! `netray top --ipfix` and the daemon's `[ipfix]` section.

use std::{
    net::{SocketAddr, ToSocketAddrs},
    str::FromStr,
    time::Duration,
};

use serde::Deserialize;

use crate::{meter::Timeouts, IpfixError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

impl FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "udp" => Ok(Transport::Udp),
            "tcp" => Ok(Transport::Tcp),
            _ => Err(format!("unknown IPFIX transport '{s}': use udp or tcp")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ExportConfig {
    /// HOST:PORT of the collector.
    pub collector: String,
    pub transport: Transport,
    pub timeouts: Timeouts,
    pub domain_id: u32,
    /// UDP: the template set is sent again this often...
    pub template_refresh: Duration,
    /// ...and after this many data records.
    pub template_refresh_records: u64,
    /// Records the queue to the sender holds before it drops.
    pub queue_records: usize,
}

impl ExportConfig {
    pub fn new(collector: &str) -> ExportConfig {
        ExportConfig {
            collector: collector.to_string(),
            transport: Transport::Udp,
            timeouts: Timeouts::default(),
            domain_id: 0,
            template_refresh: Duration::from_secs(30),
            template_refresh_records: 4096,
            queue_records: 65536,
        }
    }

    /// The collector's address (the first the name resolves to).
    pub fn resolve(&self) -> Result<SocketAddr, IpfixError> {
        let bad = |why: String| IpfixError::Collector { collector: self.collector.clone(), why };
        let mut addrs = self.collector.to_socket_addrs().map_err(|e| bad(e.to_string()))?;
        addrs.next().ok_or_else(|| bad("the name resolves to no address".into()))
    }

    pub fn check(&self) -> Result<(), IpfixError> {
        let t = self.timeouts;
        if t.active.is_zero() || t.idle.is_zero() {
            return Err(IpfixError::Config("the active and idle timeouts must be above 0".into()));
        }
        if self.queue_records == 0 {
            return Err(IpfixError::Config("the queue must hold at least one record".into()));
        }
        Ok(())
    }

    /// How often the flow table is read for export: often enough for the
    /// shorter timeout (a quarter of it), at most every second.
    pub fn poll_interval(&self) -> Duration {
        let t = self.timeouts;
        (t.active.min(t.idle) / 4).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }
}
