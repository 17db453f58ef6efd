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

    /// Prometheus text: netray_drops_total and netray_drop_bytes_total by who, reason, interface.
    pub fn prometheus(&self) -> String {
        let mut out = String::from(
            "# HELP netray_drops_total Packets dropped, by who dropped them, the reason and the interface.\n\
             # TYPE netray_drops_total counter\n",
        );
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        for r in self.rows() {
            out.push_str(&format!(
                "netray_drops_total{{who=\"{}\",reason=\"{}\",interface=\"{}\"}} {}\n",
                esc(&r.who),
                esc(&r.reason),
                esc(&r.ifname),
                r.packets
            ));
        }
        out
    }
}
