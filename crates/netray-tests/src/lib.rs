//! Test support: a private pin directory per test, frame builders, and the
//! XDP dispatcher loaded (not attached) so BPF_PROG_TEST_RUN can feed it
//! hand-built frames.

pub mod frames;

use std::{
    mem::MaybeUninit,
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

use libbpf_rs::{
    skel::{OpenSkel, SkelBuilder},
    MapHandle, ProgramInput, RingBufferBuilder,
};
use netray_core::{
    dispatcher::FlowCapacity,
    if_stats::IfCounters,
    map_pins::configure_maps_with,
    map_names as M,
    maps, Feature, Hook, PinDir,
};
use netray_ebpf::{
    abi::{from_bytes, nr_if_config, nr_if_stats, nr_packet_event},
    tc_dispatch::{TcDispatchSkel, TcDispatchSkelBuilder},
    xdp_dispatch::{XdpDispatchSkel, XdpDispatchSkelBuilder},
};
use netray_firewall::{tables::ensure_tables, Firewall, FwCapacity};

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// TC_ACT_UNSPEC (-1) as BPF_PROG_TEST_RUN reports it: "no verdict, go on".
pub const TC_ACT_UNSPEC: u32 = u32::MAX;
pub const TC_ACT_SHOT: u32 = 2;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique pin directory under /sys/fs/bpf, removed (with everything
/// pinned in it, and any program it attached) on drop — also on panic.
pub struct TempPin {
    pub pin: PinDir,
}

impl TempPin {
    pub fn new(tag: &str) -> TempPin {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = PathBuf::from(format!("/sys/fs/bpf/netray-test-{tag}-{}-{n}", std::process::id()));
        let pin = PinDir::resolve(Some(&path)).expect("creating a test pin dir (are we root?)");
        TempPin { pin }
    }

    pub fn path(&self) -> &std::path::Path {
        self.pin.root()
    }

    pub fn firewall(&self) -> Firewall {
        Firewall::open(self.pin.clone())
    }
}

impl Drop for TempPin {
    fn drop(&mut self) {
        // Detach whatever this test attached, then drop every pin.
        let _ = self.firewall().reset();
        let _ = self.pin.remove_all();
    }
}

/// The XDP dispatcher loaded into the kernel but attached nowhere, with its
/// maps pinned in a TempPin. `run` feeds it one frame.
pub struct XdpHarness {
    skel: XdpDispatchSkel<'static>,
    pub tmp: TempPin,
    maps: IfMaps,
}

/// What one BPF_PROG_TEST_RUN returned.
#[derive(Debug)]
pub struct RunResult {
    pub verdict: u32,
    /// The monitor record, when the monitor feature was on.
    pub event: Option<nr_packet_event>,
}

/// Fake ifindex for the harness's per-interface maps (no such interface).
pub const HARNESS_IFINDEX: u32 = 999_999;

impl XdpHarness {
    pub fn new(tag: &str) -> XdpHarness {
        Self::with_flow_capacity(tag, FlowCapacity::default())
    }

    /// A harness whose flow table holds `flows` entries.
    pub fn with_flow_capacity(tag: &str, flows: FlowCapacity) -> XdpHarness {
        Self::with_capacities(tag, &FwCapacity::default(), flows)
    }

    /// A harness whose firewall tables are sized `fw` and flow table `flows`.
    pub fn with_capacities(tag: &str, fw: &FwCapacity, flows: FlowCapacity) -> XdpHarness {
        let tmp = TempPin::new(tag);
        ensure_tables(&tmp.pin, fw).expect("creating firewall maps");
        // The skeleton borrows its object storage for its whole life; tests
        // are short processes, so leaking one per harness is fine.
        let storage = Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = XdpDispatchSkelBuilder::default().open(storage).expect("opening the dispatcher");
        configure_maps_with(open.open_object_mut(), &tmp.pin, Some(HARNESS_IFINDEX), &flows)
            .expect("configuring maps");
        let skel = open.load().expect("loading the dispatcher (verifier)");
        let maps = IfMaps::open(&tmp);
        let h = XdpHarness { skel, tmp, maps };
        h.set_features(&[Feature::Firewall, Feature::Monitor]);
        h
    }

    pub fn firewall(&self) -> Firewall {
        self.tmp.firewall()
    }

    /// The flow table (if_flows, its counters and the per-CPU flow caches),
    /// read as netray-flows reads it.
    pub fn flow_table(&self) -> netray_flows::FlowTable {
        let dir = self.tmp.pin.if_dir(HARNESS_IFINDEX);
        netray_flows::FlowTable::from_maps(
            maps::open_pinned(&dir.join(M::IF_FLOWS)).unwrap(),
            maps::open_pinned(&dir.join(M::IF_FLOW_STATS)).unwrap(),
            maps::open_pinned(&dir.join(M::IF_FLOW_CACHE)).unwrap(),
        )
        .expect("a flow table")
    }

    pub fn set_features(&self, features: &[Feature]) {
        let cfg = nr_if_config {
            features: features.iter().map(|f| f.bit()).fold(0, |a, b| a | b),
            ifindex: HARNESS_IFINDEX,
            monitor_wakeup_bytes: 1 << 30,
            monitor_pid: 0,
            ..Default::default()
        };
        maps::put(&self.maps.config, 0, &cfg).unwrap();
    }

    /// Runs the dispatcher once on `frame`.
    pub fn run(&self, frame: &[u8]) -> RunResult {
        let input = ProgramInput { data_in: Some(frame), ..Default::default() };
        let out = self.skel.progs.netray_xdp.test_run(input).expect("BPF_PROG_TEST_RUN");
        RunResult { verdict: out.return_value, event: self.maps.take_event() }
    }

    /// Per-CPU counters summed.
    pub fn stats(&self) -> nr_if_stats {
        self.maps.stats(0)
    }
}

/// The per-interface maps both harnesses read: configuration, counters and
/// the monitor's event ring.
struct IfMaps {
    config: MapHandle,
    stats: IfCounters,
    events: MapHandle,
}

impl IfMaps {
    fn open(tmp: &TempPin) -> IfMaps {
        let dir = tmp.pin.if_dir(HARNESS_IFINDEX);
        let open = |name: &str| maps::open_pinned(&dir.join(name)).unwrap();
        IfMaps { config: open(M::IF_CONFIG), stats: IfCounters::open(&dir).unwrap(), events: open(M::IF_EVENTS) }
    }

    /// The monitor event one program run wrote, if any (at most one).
    fn take_event(&self) -> Option<nr_packet_event> {
        let mut events = drain_events(&self.events);
        assert!(events.len() <= 1, "one frame produced {} events", events.len());
        events.pop()
    }

    /// One stats slot's per-CPU counters summed.
    fn stats(&self, slot: u32) -> nr_if_stats {
        self.stats.slot(slot).unwrap()
    }
}

/// Every monitor event waiting in the ring `events` (an IF_EVENTS map), consumed.
pub fn drain_events(events: &MapHandle) -> Vec<nr_packet_event> {
    let mut out = Vec::new();
    {
        let mut b = RingBufferBuilder::new();
        b.add(events, |d: &[u8]| {
            out.push(from_bytes::<nr_packet_event>(d).expect("short event"));
            0
        })
        .unwrap();
        b.build().unwrap().consume().unwrap();
    }
    out
}

/// Fails loudly unless the test runs as root: these tests need the kernel.
pub fn require_root() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "netray's kernel tests must run as root (they load BPF programs): run `make test` as root"
    );
}

/// The TC programs and the socket filter (bpf/tc_dispatch.bpf.c) loaded into
/// the kernel but attached nowhere, with their maps pinned in a TempPin, so
/// BPF_PROG_TEST_RUN can feed them frames (longer than ETH_HLEN: the kernel
/// refuses shorter skbs).
pub struct TcHarness {
    skel: TcDispatchSkel<'static>,
    pub tmp: TempPin,
    maps: IfMaps,
}

impl TcHarness {
    /// Every hook's firewall and monitor on.
    pub fn new(tag: &str) -> TcHarness {
        let tmp = TempPin::new(tag);
        ensure_tables(&tmp.pin, &FwCapacity::default()).expect("creating firewall maps");
        let storage = Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = TcDispatchSkelBuilder::default().open(storage).expect("opening the TC dispatcher");
        configure_maps_with(open.open_object_mut(), &tmp.pin, Some(HARNESS_IFINDEX), &FlowCapacity::default())
            .expect("configuring maps");
        let skel = open.load().expect("loading the TC dispatcher (verifier)");
        let maps = IfMaps::open(&tmp);
        let h = TcHarness { skel, tmp, maps };
        let all = [Feature::Firewall, Feature::Monitor];
        h.set_features(&all, &all, &[Feature::Monitor]);
        h
    }

    pub fn firewall(&self) -> Firewall {
        self.tmp.firewall()
    }

    pub fn set_features(&self, ingress: &[Feature], egress: &[Feature], socket: &[Feature]) {
        let bits = |f: &[Feature]| f.iter().map(|f| f.bit()).fold(0, |a, b| a | b);
        let cfg = nr_if_config {
            ifindex: HARNESS_IFINDEX,
            monitor_wakeup_bytes: 1 << 30,
            tc_ingress_features: bits(ingress),
            tc_egress_features: bits(egress),
            socket_features: bits(socket),
            ..Default::default()
        };
        maps::put(&self.maps.config, 0, &cfg).unwrap();
    }

    /// Runs the program of `hook` (tc-ingress, tc-egress or socket) once.
    pub fn run(&self, hook: Hook, frame: &[u8]) -> RunResult {
        self.try_run(hook, frame).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `run`, or the kernel's refusal of the frame (it refuses an skb whose
    /// ethertype says IPv4/IPv6 but that is shorter than the IP header).
    pub fn try_run(&self, hook: Hook, frame: &[u8]) -> Result<RunResult, String> {
        let input = ProgramInput { data_in: Some(frame), ..Default::default() };
        let p = &self.skel.progs;
        let prog = match hook {
            Hook::TcIngress => &p.netray_tc_ingress,
            Hook::TcEgress => &p.netray_tc_egress,
            Hook::Socket => &p.netray_socket,
            Hook::Xdp => panic!("TcHarness has no XDP program: use XdpHarness"),
        };
        let out = prog
            .test_run(input)
            .map_err(|e| format!("BPF_PROG_TEST_RUN of {} on a {}-byte frame: {e}", hook.name(), frame.len()))?;
        Ok(RunResult { verdict: out.return_value, event: self.maps.take_event() })
    }

    /// One hook's per-CPU counters summed.
    pub fn stats(&self, hook: Hook) -> nr_if_stats {
        self.maps.stats(hook.stats_slot())
    }
}
