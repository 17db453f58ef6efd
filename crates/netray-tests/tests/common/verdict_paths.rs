//! The paths on which the dispatchers take a verdict, each with a harness
//! that feeds it frames through BPF_PROG_TEST_RUN: the XDP short path
//! (firewall alone), the XDP general path (with the monitor), TC ingress and
//! TC egress. Shared by the firewall-action and rate-limit tests.

use netray_core::{Feature, Hook, PinDir};
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
