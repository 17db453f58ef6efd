//! Pairing netray's own drops with the kernel's free of the same skb, across
//! polls. Where netray's XDP or TC program drops an skb (veth, generic XDP,
//! TC), the kernel frees it after the verdict and kfree_skb reports it too;
//! the two events arrive through two rings and may be read in different polls
//! (under emulation they often are). Every drop is held for a short window
//! after its time stamp so its partner can arrive; a pair becomes one drop (netray's,
//! with the kernel's bytes for -w). Drops are handed out in time order once
//! their window has passed: that window is the only latency added.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use crate::DropEvent;

/// How long a drop waits for its partner: well above the time between the
/// verdict and the free under a 30x slower emulated kernel, and short enough
/// that lines still appear at once to the eye.
pub const HOLD_WINDOW_NS: u64 = 40_000_000;
/// Largest distance in time between netray's drop and the kernel's free of
/// the same packet that still makes a pair: microseconds apart natively, but
/// a busy host can stop an emulated kernel's CPU for milliseconds in between.
const PAIR_WITHIN_NS: u64 = 20_000_000;
/// Drops held at most; beyond it the oldest go out before their window ends
/// (counted: such a drop may then be shown twice).
pub const HOLD_CAPACITY: usize = 65_536;

/// One packet's identity as both sources see it.
type FlowKey = (u32, Option<IpAddr>, Option<IpAddr>, Option<u16>, Option<u16>);

fn key(ev: &DropEvent) -> FlowKey {
    (ev.ifindex, ev.src, ev.dst, ev.sport, ev.dport)
}

/// Whether a kernel drop may be the free after one of netray's verdicts: an
/// XDP or TC verdict as the reason, or an XDP receive function as the place.
fn may_be_a_copy(k: &DropEvent) -> bool {
    matches!(k.reason.as_str(), "XDP" | "TC_INGRESS" | "TC_EGRESS")
        || k.function.as_deref().is_some_and(|f| f.contains("xdp"))
}

#[derive(Default)]
pub struct Pairing {
    /// Drops with nothing more to wait for, held only to keep time order.
    ready: Vec<DropEvent>,
    /// Kernel frees that may still meet netray's drop of the same packet.
    kernel_waiting: HashMap<FlowKey, VecDeque<DropEvent>>,
    /// netray's drops that may still meet the kernel's free.
    own_waiting: HashMap<FlowKey, VecDeque<DropEvent>>,
    held: usize,
    /// Kernel frees folded into netray's drops.
    pub folded: u64,
    /// Drops handed out before their window ended because the queue was full.
    pub overflowed: u64,
}

impl Pairing {
    /// Drops held now.
    pub fn held(&self) -> usize {
        self.held
    }

    /// The time stamp of the oldest drop held.
    pub fn oldest(&self) -> Option<u64> {
        let fronts = self.kernel_waiting.values().chain(self.own_waiting.values()).filter_map(|q| q.front());
        self.ready.iter().chain(fronts).map(|e| e.ts_ns).min()
    }

    pub fn add_kernel(&mut self, k: DropEvent) {
        self.held += 1;
        if !may_be_a_copy(&k) {
            self.ready.push(k);
            return;
        }
        let key = key(&k);
        match take_partner(&mut self.own_waiting, &key, k.ts_ns) {
            Some(own) => self.fold(own, k),
            None => self.kernel_waiting.entry(key).or_default().push_back(k),
        }
    }

    pub fn add_own(&mut self, own: DropEvent) {
        self.held += 1;
        let key = key(&own);
        match take_partner(&mut self.kernel_waiting, &key, own.ts_ns) {
            Some(k) => self.fold(own, k),
            None => self.own_waiting.entry(key).or_default().push_back(own),
        }
    }

    fn fold(&mut self, mut own: DropEvent, k: DropEvent) {
        // The skb's bytes make netray's drop writable with -w.
        own.cap_len = k.cap_len;
        own.data = k.data;
        self.folded += 1;
        self.held -= 1;
        self.ready.push(own);
    }

    /// The drops stamped at or before `cutoff_ns`, in time order; with a full
    /// queue also the oldest beyond it, counted in `overflowed`.
    pub fn release(&mut self, cutoff_ns: u64) -> Vec<DropEvent> {
        let mut out = self.release_until(cutoff_ns);
        if self.held > HOLD_CAPACITY {
            let mut rest = self.release_until(u64::MAX);
            self.overflowed += rest.len() as u64;
            out.append(&mut rest);
        }
        out
    }

    /// Everything held, in time order (at the end of a session).
    pub fn release_all(&mut self) -> Vec<DropEvent> {
        self.release_until(u64::MAX)
    }

    fn release_until(&mut self, cutoff_ns: u64) -> Vec<DropEvent> {
        let (mut out, keep): (Vec<_>, Vec<_>) = self.ready.drain(..).partition(|e| e.ts_ns <= cutoff_ns);
        self.ready = keep;
        for waiting in [&mut self.kernel_waiting, &mut self.own_waiting] {
            waiting.retain(|_, q| {
                while q.front().is_some_and(|e| e.ts_ns <= cutoff_ns) {
                    out.extend(q.pop_front());
                }
                !q.is_empty()
            });
        }
        self.held -= out.len();
        out.sort_by_key(|e| e.ts_ns);
        out
    }
}

/// The partner of a drop at `ts_ns` among those waiting under `key`: the
/// earliest within [`PAIR_WITHIN_NS`] (packets of one flow are freed in the
/// order they were dropped).
fn take_partner(waiting: &mut HashMap<FlowKey, VecDeque<DropEvent>>, key: &FlowKey, ts_ns: u64) -> Option<DropEvent> {
    let q = waiting.get_mut(key)?;
    let i = q.iter().position(|e| e.ts_ns.abs_diff(ts_ns) < PAIR_WITHIN_NS)?;
    let ev = q.remove(i);
    if q.is_empty() {
        waiting.remove(key);
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Who;
    use netray_core::Hook;

    fn drop_at(ts_ns: u64, sport: u16, who: Who, function: Option<&str>) -> DropEvent {
        DropEvent {
            kind: "drop",
            ts: String::new(),
            ts_ns,
            ifname: "veth0".into(),
            ifindex: 7,
            who,
            reason: if who == Who::Kernel { "NOT_SPECIFIED".into() } else { "rule 1".into() },
            reason_code: None,
            location: None,
            function: function.map(str::to_owned),
            rule: None,
            summary: String::new(),
            proto: Some("udp".into()),
            src: Some("198.18.0.2".parse().unwrap()),
            dst: Some("198.18.0.1".parse().unwrap()),
            sport: Some(sport),
            dport: Some(9),
            len: 60,
            cap_len: if who == Who::Kernel { 60 } else { 0 },
            data: if who == Who::Kernel { vec![0; 60] } else { Vec::new() },
            time: None,
        }
    }

    const NETRAY: Who = Who::Netray { hook: Hook::Xdp, by: netray_ebpf::decided::Decided::Deny(1) };

    #[test]
    fn a_pair_read_in_two_polls_is_one_drop_with_the_kernels_bytes() {
        let mut p = Pairing::default();
        p.add_own(drop_at(1_000_000, 40000, NETRAY, None));
        assert!(p.release(1_000_000 - HOLD_WINDOW_NS / 1000).is_empty(), "held for its window");
        // The next poll brings the kernel's free of the same skb.
        p.add_kernel(drop_at(1_030_000, 40000, Who::Kernel, Some("veth_xdp_rcv_skb")));
        let out = p.release(u64::MAX);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].who, NETRAY);
        assert_eq!(out[0].cap_len, 60);
        assert_eq!((p.folded, p.held()), (1, 0));
    }

    #[test]
    fn the_kernels_free_first_also_pairs_and_others_pass_in_time_order() {
        let mut p = Pairing::default();
        p.add_kernel(drop_at(2_000, 40000, Who::Kernel, Some("veth_xdp_rcv_skb")));
        p.add_kernel(drop_at(1_000, 50000, Who::Kernel, Some("__udp4_lib_rcv")));
        p.add_own(drop_at(1_500, 40000, NETRAY, None));
        let out = p.release(10_000);
        let order: Vec<_> = out.iter().map(|e| (e.ts_ns, e.who)).collect();
        assert_eq!(order, vec![(1_000, Who::Kernel), (1_500, NETRAY)]);
    }

    #[test]
    fn drops_too_far_apart_in_time_are_two_and_wait_only_their_window() {
        let mut p = Pairing::default();
        p.add_own(drop_at(1_000, 40000, NETRAY, None));
        p.add_kernel(drop_at(1_000 + PAIR_WITHIN_NS, 40000, Who::Kernel, Some("veth_xdp_rcv_skb")));
        assert_eq!(p.release(1_000).len(), 1);
        assert_eq!(p.oldest(), Some(1_000 + PAIR_WITHIN_NS));
        assert_eq!(p.release(u64::MAX).len(), 1);
        assert_eq!(p.folded, 0);
    }

    #[test]
    fn a_full_queue_lets_the_oldest_out_early_and_counts_them() {
        let mut p = Pairing::default();
        for i in 1..=HOLD_CAPACITY as u64 + 1 {
            p.add_own(drop_at(i, 40000, NETRAY, None));
        }
        let out = p.release(0);
        assert_eq!(out.len(), HOLD_CAPACITY + 1);
        assert_eq!(p.overflowed, HOLD_CAPACITY as u64 + 1);
        assert_eq!(p.held(), 0);
    }
}
