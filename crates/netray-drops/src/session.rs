//! A `netray drops` session: the kernel's drops and netray's own, read
//! together, decoded into [`DropEvent`]s, filtered by reason and counted.

use std::{collections::HashMap, time::Duration};

use netray_core::{clock::MonotonicClock, Error, Interface, PinDir, Result};
use netray_ebpf::abi::{nr_drop_event, nr_drop_flags, from_bytes};
use netray_monitor::{MonitorSession, MonitorStats};
use serde::Serialize;

use crate::{
    kallsyms::Kallsyms,
    kernel::{current_netns, KernelDrops, KernelSpec, KernelStats, Scope},
    own, reasons::Reasons, DropCounts, DropEvent,
};

/// What to watch.
#[derive(Debug, Clone, Default)]
pub struct DropsSpec {
    /// Only this interface (of the current network namespace); netray's own
    /// drops are read from its firewall when it runs there.
    pub iface: Option<String>,
    /// Every network namespace, not only the current one (without `iface`).
    pub all_namespaces: bool,
    /// pcap-filter expression, run in the kernel over each kernel drop.
    pub expression: String,
    /// Bytes kept of each kernel drop.
    pub snaplen: u32,
    /// Only these reasons (kernel names, or "rule N"); empty: all.
    pub reasons: Vec<String>,
    /// Kernel ring size in bytes (a power of two).
    pub ring_bytes: u32,
}

/// Counters of a session.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SessionStats {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Drops handed out (after --reason).
    pub reported: u64,
    /// Kernel drops that were netray's own XDP/TC drops freeing the skb (veth's
    /// native XDP, generic XDP, TC): shown once, as netray's.
    pub folded: u64,
    pub kernel: KernelStats,
    /// netray's own drops: events read and lost (ring full).
    pub netray_received: u64,
    pub netray_lost: u64,
}

pub struct DropsSession {
    kernel: KernelDrops,
    own: Option<MonitorSession>,
    reasons: Option<Reasons>,
    only: Vec<String>,
    kallsyms: Kallsyms,
    clock: MonotonicClock,
    netns: u32,
    names: HashMap<(u32, u32), String>,
    notes: Vec<String>,
    counts: DropCounts,
    reported: u64,
    folded: u64,
    /// The filter expression, compiled, for netray's own drops (None: no expression).
    own_filter: Option<Vec<netray_pcapfilter::CbpfInsn>>,
}

impl DropsSession {
    pub fn start(pin: Option<&PinDir>, spec: &DropsSpec) -> Result<DropsSession> {
        let mut notes = Vec::new();
        let reasons = match Reasons::load() {
            Ok(r) => Some(r),
            Err(why) => {
                notes.push(format!("{why}: drops are shown with the kernel function that freed them only"));
                None
            }
        };
        for r in &spec.reasons {
            let known = r.starts_with("rule ") || reasons.as_ref().is_none_or(|k| k.code(r).is_some());
            if !known {
                return Err(Error::BadRequest(format!(
                    "--reason {r}: this kernel has no drop reason of that name (see `netray drops --list-reasons`)"
                )));
            }
        }
        let only = spec
            .reasons
            .iter()
            .map(|r| if r.starts_with("rule ") { r.clone() } else { r.trim().to_ascii_uppercase().trim_start_matches("SKB_DROP_REASON_").to_string() })
            .collect();
        let netns = current_netns()?;
        let iface = spec.iface.as_deref().map(Interface::resolve).transpose()?;
        let scope = Scope {
            netns: if spec.all_namespaces && iface.is_none() { 0 } else { netns },
            ifindex: iface.as_ref().map_or(0, |i| i.index),
        };
        let cbpf = netray_pcapfilter::compile(&spec.expression, spec.snaplen)
            .map_err(|e| Error::BadRequest(format!("filter expression: {e}")))?;
        let fragment = netray_pcapfilter::translate(&cbpf)
            .map_err(|e| Error::BadRequest(format!("filter expression '{}': {e}", spec.expression)))?;
        let kernel = KernelDrops::start(&KernelSpec {
            scope,
            fragment,
            ring_bytes: spec.ring_bytes,
            consumed: reasons.as_ref().and_then(Reasons::consumed),
            not_dropped_yet: reasons.as_ref().and_then(Reasons::not_dropped_yet),
        })?;
        notes.extend(kernel.refused().iter().map(|r| format!("refused {r}")));
        let own = match (pin, &iface) {
            (Some(pin), Some(i)) => match own::start(pin, i)? {
                Ok(s) => Some(s),
                Err(why) => {
                    notes.push(format!("{why}: only the kernel's drops are shown"));
                    None
                }
            },
            _ => None,
        };
        Ok(DropsSession {
            kernel,
            own,
            reasons,
            only,
            kallsyms: Kallsyms::load(),
            clock: MonotonicClock::new(),
            netns,
            names: HashMap::new(),
            notes,
            counts: DropCounts::default(),
            reported: 0,
            folded: 0,
            own_filter: (!spec.expression.trim().is_empty()).then_some(cbpf),
        })
    }

    /// "tp_btf/kfree_skb", "raw_tp/kfree_skb" or "tracepoint/skb/kfree_skb".
    pub fn attach_way(&self) -> &'static str {
        self.kernel.way().name()
    }

    /// Whether netray's own drops are read too.
    pub fn reads_own(&self) -> bool {
        self.own.is_some()
    }

    /// What the user should know: fallbacks and what is missing.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    pub fn counts(&self) -> &DropCounts {
        &self.counts
    }

    /// Waits up to `timeout` and hands each drop to `each` until it returns false.
    pub fn poll(&mut self, timeout: Duration, each: &mut dyn FnMut(DropEvent) -> bool) -> Result<bool> {
        let mut raw = Vec::new();
        self.kernel.poll(timeout, &mut |rec| {
            raw.push(rec.to_vec());
            true
        })?;
        let mut own = Vec::new();
        if let Some(s) = &mut self.own {
            s.poll(Duration::ZERO, &mut |ev| {
                own.push(DropEvent::netray(&ev));
                true
            })?;
        }
        let mut kernel: Vec<DropEvent> = raw.iter().filter_map(|rec| self.decode(rec)).collect();
        for ev in &mut own {
            if let Some(i) = kernel.iter().position(|k| is_kernel_copy(k, ev)) {
                // The skb's bytes make netray's drop writable with -w.
                let k = kernel.remove(i);
                ev.cap_len = k.cap_len;
                ev.data = k.data;
                self.folded += 1;
            }
        }
        if let Some(prog) = &self.own_filter {
            own.retain(|ev| crate::own_filter::matches(prog, ev));
        }
        kernel.extend(own);
        kernel.sort_by_key(|e| e.ts_ns);
        for ev in kernel {
            if !self.hand_out(ev, each) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn hand_out(&mut self, ev: DropEvent, each: &mut dyn FnMut(DropEvent) -> bool) -> bool {
        if !self.only.is_empty() && !self.only.contains(&ev.reason) {
            return true;
        }
        self.counts.add(&ev);
        self.reported += 1;
        each(ev)
    }

    fn decode(&mut self, rec: &[u8]) -> Option<DropEvent> {
        let hdr: nr_drop_event = from_bytes(rec)?;
        let body = rec.get(std::mem::size_of::<nr_drop_event>()..)?;
        let data = body.get(..hdr.cap_len as usize).unwrap_or(body).to_vec();
        let no_reason = u32::from(hdr.flags) & nr_drop_flags::NR_DROP_NO_REASON.0 != 0;
        let (reason, code) = match (&self.reasons, no_reason) {
            (_, true) => ("UNKNOWN".to_string(), None),
            (Some(r), false) => (r.name(hdr.reason), Some(hdr.reason)),
            (None, false) => (format!("REASON_{}", hdr.reason), Some(hdr.reason)),
        };
        let ifname = self.ifname(hdr.netns, hdr.ifindex);
        Some(DropEvent::kernel(
            self.clock.to_system(hdr.ts_ns),
            ifname,
            hdr.ifindex,
            reason,
            code,
            self.kallsyms.symbolise(hdr.location),
            self.kallsyms.function(hdr.location).map(str::to_owned),
            hdr.wire_len,
            data,
        ))
    }

    /// An interface's name in this namespace; "ifN@nsINODE" in another.
    fn ifname(&mut self, netns: u32, ifindex: u32) -> String {
        let here = self.netns;
        self.names
            .entry((netns, ifindex))
            .or_insert_with(|| {
                if ifindex == 0 {
                    return "?".into();
                }
                match (netns == here).then(|| Interface::name_of(ifindex)).flatten() {
                    Some(n) => n,
                    None => format!("if{ifindex}@ns{netns}"),
                }
            })
            .clone()
    }

    pub fn stats(&self) -> Result<SessionStats> {
        let own = match &self.own {
            Some(s) => s.stats()?,
            None => MonitorStats::default(),
        };
        Ok(self.stats_with(own)?)
    }

    fn stats_with(&self, own: MonitorStats) -> Result<SessionStats> {
        Ok(SessionStats {
            kind: "stats",
            reported: self.reported,
            folded: self.folded,
            kernel: self.kernel.stats()?,
            netray_received: own.received,
            netray_lost: own.lost,
        })
    }

    /// Stops: hands out what is still in the rings and returns the final counts.
    pub fn finish(mut self, each: &mut dyn FnMut(DropEvent) -> bool) -> Result<SessionStats> {
        self.poll(Duration::ZERO, each)?;
        let own = match self.own.take() {
            Some(s) => {
                let mut rest = Vec::new();
                let st = s.finish(&mut |ev| {
                    rest.push(DropEvent::netray(&ev));
                    true
                })?;
                for ev in rest {
                    if !self.hand_out(ev, each) {
                        break;
                    }
                }
                st
            }
            None => MonitorStats::default(),
        };
        self.stats_with(own)
    }

    /// The reason names of the running kernel.
    pub fn reason_names() -> std::result::Result<Vec<String>, String> {
        Ok(Reasons::load()?.all().into_iter().map(str::to_owned).collect())
    }
}

/// Whether the kernel drop `k` is the skb freed because netray's firewall
/// dropped `own` (same interface and packet, an XDP or TC verdict as the
/// reason or an XDP receive function as the place, within a millisecond).
fn is_kernel_copy(k: &DropEvent, own: &DropEvent) -> bool {
    let by_verdict = matches!(k.reason.as_str(), "XDP" | "TC_INGRESS" | "TC_EGRESS")
        || k.function.as_deref().is_some_and(|f| f.contains("xdp"));
    by_verdict
        && k.ifindex == own.ifindex
        && k.src == own.src
        && k.dst == own.dst
        && k.sport == own.sport
        && k.dport == own.dport
        && k.ts_ns.abs_diff(own.ts_ns) < 1_000_000
}
