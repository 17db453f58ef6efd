//! What a dispatcher reports: its counters and where its programs are.

use netray_ebpf::abi::nr_if_stats;
use serde::Serialize;

use super::Dispatcher;
use super::users::process_alive;
use crate::{
    tc,
    xdp::{mode_name, prog_name, xdp_query},
    Feature, Hook, Result,
};

/// Per-interface counters, summed over CPUs.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct IfStats {
    pub seen: u64,
    pub passed: u64,
    pub dropped: u64,
    pub bytes_seen: u64,
    pub bytes_dropped: u64,
    pub events_sent: u64,
    pub events_lost: u64,
    pub non_ip: u64,
    pub truncated: u64,
    /// Passed only because the rule that matched audits (in `passed`).
    pub audited: u64,
}

impl From<nr_if_stats> for IfStats {
    fn from(c: nr_if_stats) -> IfStats {
        IfStats {
            seen: c.seen,
            passed: c.seen.saturating_sub(c.dropped),
            dropped: c.dropped,
            bytes_seen: c.bytes_seen,
            bytes_dropped: c.bytes_dropped,
            events_sent: c.events_sent,
            events_lost: c.events_lost,
            non_ip: c.non_ip,
            truncated: c.truncated,
            audited: c.audited,
        }
    }
}

/// One interface's dispatcher as seen from userspace.
#[derive(Debug, Clone, Serialize)]
pub struct DispatcherStatus {
    pub interface: String,
    pub ifindex: u32,
    /// "native", "generic", or "detached" when the interface is gone.
    pub mode: String,
    pub prog_id: u32,
    /// A `netray dump` capture program attached in front of the dispatcher
    /// (its id; `prog_id` is then that program's, too).
    pub capture_front: Option<u32>,
    pub features: Vec<&'static str>,
    pub monitor_pid: Option<u32>,
    pub stats: IfStats,
    /// The TC programs attached next to the XDP one (tc-ingress, tc-egress).
    pub tc: Vec<TcStatus>,
}

/// One TC program of a dispatcher.
#[derive(Debug, Clone, Serialize)]
pub struct TcStatus {
    /// "tc-ingress" or "tc-egress".
    pub hook: &'static str,
    /// "tcx" (a bpf_link) or "clsact" (a direct-action filter).
    pub backend: &'static str,
    pub prog_id: u32,
    pub features: Vec<&'static str>,
    pub stats: IfStats,
}

impl Dispatcher {
    pub fn stats(&self) -> Result<IfStats> {
        self.hook_stats(Hook::Xdp)
    }

    /// The counters of one hook (XDP's are `stats`). Zero when the pinned
    /// counters predate per-hook counters.
    pub fn hook_stats(&self, hook: Hook) -> Result<IfStats> {
        Ok(IfStats::from(self.stats.slot(hook.stats_slot())?))
    }

    /// The TC programs attached to this interface.
    pub fn tc_status(&self) -> Result<Vec<TcStatus>> {
        let mut out = Vec::new();
        for hook in Hook::TC {
            if let Some((backend, prog_id)) = tc::attached(&self.dir, hook) {
                out.push(TcStatus {
                    hook: hook.name(),
                    backend: backend.name(),
                    prog_id,
                    features: Feature::names(self.active_hook_features(hook)?),
                    stats: self.hook_stats(hook)?,
                });
            }
        }
        Ok(out)
    }

    pub fn status(&self) -> Result<DispatcherStatus> {
        let cfg = self.config()?;
        let query = xdp_query(self.iface.index)?;
        Ok(DispatcherStatus {
            interface: self.iface.name.clone(),
            ifindex: self.iface.index,
            mode: mode_name(query.attach_mode as u32).to_string(),
            prog_id: query.prog_id,
            capture_front: prog_name(query.prog_id).is_some_and(|n| n.starts_with("netray_cap")).then_some(query.prog_id),
            features: Feature::names(self.active_features()?),
            monitor_pid: (cfg.monitor_pid != 0 && process_alive(cfg.monitor_pid)).then_some(cfg.monitor_pid),
            stats: self.stats()?,
            tc: self.tc_status()?,
        })
    }
}
