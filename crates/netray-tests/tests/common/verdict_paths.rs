//! The paths on which the dispatchers take a verdict, each with a harness
//! that feeds it frames through BPF_PROG_TEST_RUN: the XDP short path
//! (firewall alone), the XDP general path (with the monitor), TC ingress and
//! TC egress. Shared by the firewall-action, policy and rate-limit tests.

use netray_core::{Feature, Hook, PinDir};
use netray_ebpf::{abi::nr_verdict, decided::Decided};
use netray_firewall::Firewall;
use netray_tests::{RunResult, TcHarness, XdpHarness, TC_ACT_SHOT, TC_ACT_UNSPEC, XDP_DROP, XDP_PASS};

/// Where a verdict is taken.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Path {
    XdpShort,
    XdpGeneral,
    TcIngress,
    TcEgress,
}

impl Path {
    /// (drop, pass) return codes of the path's program.
    pub fn codes(self) -> (u32, u32) {
        match self {
            Path::XdpShort | Path::XdpGeneral => (XDP_DROP, XDP_PASS),
            Path::TcIngress | Path::TcEgress => (TC_ACT_SHOT, TC_ACT_UNSPEC),
        }
    }
}

pub enum Harness {
    Xdp(XdpHarness),
    Tc(TcHarness),
}

impl Harness {
    /// A harness for `path`, its pin dir tagged `tag`.
    pub fn new(tag: &str, path: Path) -> Harness {
        let tag = format!("{tag}-{path:?}").to_lowercase();
        match path {
            Path::XdpShort => {
                let h = XdpHarness::new(&tag);
                h.set_features(&[Feature::Firewall]);
                Harness::Xdp(h)
            }
            Path::XdpGeneral => Harness::Xdp(XdpHarness::new(&tag)),
            Path::TcIngress | Path::TcEgress => Harness::Tc(TcHarness::new(&tag)),
        }
    }

    /// A harness for `path` with the interface's policy `in drop` (or
    /// `pass`); at TC, egress notes the replies the policy lets in.
    pub fn with_policy(tag: &str, path: Path, policy_drop: bool) -> Harness {
        let h = Harness::new(&format!("{tag}-{policy_drop}"), path);
        let policy: &[Feature] = if policy_drop { &[Feature::PolicyDrop] } else { &[] };
        match &h {
            Harness::Xdp(x) => {
                let base: &[Feature] =
                    if path == Path::XdpShort { &[Feature::Firewall] } else { &[Feature::Firewall, Feature::Monitor] };
                x.set_features(&[base, policy].concat());
            }
            Harness::Tc(t) => {
                let all = [Feature::Firewall, Feature::Monitor];
                t.set_features(&[&all[..], policy].concat(), &[&all[..], &[Feature::Replies]].concat(), &[]);
            }
        }
        h
    }

    pub fn pin(&self) -> PinDir {
        match self {
            Harness::Xdp(h) => h.tmp.pin.clone(),
            Harness::Tc(h) => h.tmp.pin.clone(),
        }
    }

    pub fn firewall(&self) -> Firewall {
        Firewall::open(self.pin())
    }

    pub fn run(&self, path: Path, frame: &[u8]) -> RunResult {
        match (self, path) {
            (Harness::Xdp(h), _) => h.run(frame),
            (Harness::Tc(h), Path::TcEgress) => h.run(Hook::TcEgress, frame),
            (Harness::Tc(h), _) => h.run(Hook::TcIngress, frame),
        }
    }

    /// One frame through `path`: whether it was dropped, and the monitor
    /// event's verdict and what decided, where the path emits an event (all
    /// but the XDP short path). The decided rule must agree with the verdict.
    pub fn outcome(&self, path: Path, frame: &[u8]) -> (bool, Option<(nr_verdict, Decided)>) {
        let r = self.run(path, frame);
        let (drop, pass) = path.codes();
        assert!(r.verdict == drop || r.verdict == pass, "{path:?}: verdict {}", r.verdict);
        assert_eq!(r.event.is_some(), path != Path::XdpShort, "{path:?}: a monitor event iff the monitor is on");
        let event = r.event.map(|e| {
            let (v, d) = (nr_verdict(u32::from(e.verdict)), Decided::from_raw(e.rule_id));
            let agrees = match d {
                Decided::Nothing | Decided::Allow(_) => v == nr_verdict::NR_VERDICT_PASS,
                Decided::Deny(_) | Decided::Policy { .. } => v == nr_verdict::NR_VERDICT_DROP,
                Decided::Audit(_) => v == nr_verdict::NR_VERDICT_AUDIT,
                Decided::Limit(_) => v == nr_verdict::NR_VERDICT_LIMIT,
            };
            assert!(agrees, "{path:?}: the event's verdict {} and rule {d} disagree", v.0);
            (v, d)
        });
        (r.verdict == drop, event)
    }

    /// (packets dropped, bytes dropped) on the hook.
    pub fn dropped(&self, path: Path) -> (u64, u64) {
        let s = match (self, path) {
            (Harness::Xdp(h), _) => h.stats(),
            (Harness::Tc(h), Path::TcEgress) => h.stats(Hook::TcEgress),
            (Harness::Tc(h), _) => h.stats(Hook::TcIngress),
        };
        (s.dropped, s.bytes_dropped)
    }
}
