//! Drop counts per (who, reason, interface): what `--stats` prints and
//! /metrics exports. Labels stay bounded: who is "kernel" or "netray HOOK",
//! reasons are the kernel's enum or a rule id, interfaces those of the host.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::DropEvent;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct DropKey {
    pub who: String,
    pub reason: String,
    pub ifname: String,
}

#[derive(Debug, Clone, Default)]
pub struct DropCounts {
    counts: BTreeMap<DropKey, (u64, u64)>,
}

/// One row of the counts, for --json and /metrics.
#[derive(Debug, Clone, Serialize)]
pub struct DropRow {
    pub who: String,
    pub reason: String,
    pub ifname: String,
    pub packets: u64,
    pub bytes: u64,
}

impl DropCounts {
    pub fn add(&mut self, ev: &DropEvent) {
        let key = DropKey { who: ev.who.label(), reason: ev.reason.clone(), ifname: ev.ifname.clone() };
        let c = self.counts.entry(key).or_default();
        c.0 += 1;
        c.1 += u64::from(ev.len);
    }

    pub fn rows(&self) -> Vec<DropRow> {
        self.counts
            .iter()
            .map(|(k, &(packets, bytes))| DropRow {
                who: k.who.clone(),
                reason: k.reason.clone(),
                ifname: k.ifname.clone(),
                packets,
                bytes,
            })
            .collect()
    }

    pub fn total(&self) -> u64 {
        self.counts.values().map(|c| c.0).sum()
    }

    /// The counts as metric series (labels who, reason, interface; packets or
    /// bytes): netray_drops and netray_drop_bytes on /metrics.
    pub fn series(&self) -> (Vec<(Vec<(&'static str, String)>, u64)>, Vec<(Vec<(&'static str, String)>, u64)>) {
        let labels = |k: &DropKey| vec![("who", k.who.clone()), ("reason", k.reason.clone()), ("interface", k.ifname.clone())];
        let packets = self.counts.iter().map(|(k, c)| (labels(k), c.0)).collect();
        let bytes = self.counts.iter().map(|(k, c)| (labels(k), c.1)).collect();
        (packets, bytes)
    }

    /// Adds another session's counts (the daemon's streams, summed for /metrics).
    pub fn merge(&mut self, other: &DropCounts) {
        for (k, c) in &other.counts {
            let e = self.counts.entry(k.clone()).or_default();
            e.0 += c.0;
            e.1 += c.1;
        }
    }
}
