//! A monitor session: switches the monitor feature on for one interface,
//! reads its event ring, and switches it off again — also when dropped, so a
//! panic or an early return never leaves the kernel writing events for
//! nobody. A SIGKILLed monitor leaves its pid behind; the next session (and
//! `firewall detach`) sees that the pid is dead and takes over.

use std::{
    cell::RefCell,
    collections::VecDeque,
    mem::MaybeUninit,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
    rc::Rc,
    time::Duration,
};

use libbpf_rs::{
    skel::{OpenSkel, SkelBuilder},
    MapHandle, RingBuffer, RingBufferBuilder,
};
use netray_core::{
    dispatcher::IfStats,
    map_names as M,
    map_pins::configure_maps,
    maps,
    clock::MonotonicClock,
    AttachMode, Dispatcher, Error, Feature, Hook, Interface, PinDir, Result,
};
use netray_ebpf::{
    abi::{from_bytes, nr_packet_event},
    tc_dispatch::TcDispatchSkelBuilder,
};
use serde::Serialize;

use crate::PacketEvent;

/// What a session has seen so far.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct MonitorStats {
    #[serde(rename = "type")]
    #[serde(skip_deserializing)]
    kind: StatsKind,
    /// Events read from the ring.
    pub received: u64,
    /// Events the kernel could not write because the ring was full.
    pub lost: u64,
    /// Packets the dispatcher saw on the interface meanwhile.
    pub packets_seen: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum StatsKind {
    #[default]
    Stats,
}

pub struct MonitorSession {
    // Field order is drop order: the ring goes before the map it reads.
    ring: RingBuffer<'static>,
    _ring_map: MapHandle,
    queue: Rc<RefCell<VecDeque<nr_packet_event>>>,
    pin: PinDir,
    iface: Interface,
    hooks: Vec<Hook>,
    /// The packet socket carrying the socket-filter program (socket hook).
    socket: Option<OwnedFd>,
    start: IfStats,
    received: u64,
    clock: MonotonicClock,
    /// The feature bit this session sets: Monitor (every packet) or Drops
    /// (only packets the firewall dropped); both read the one event ring.
    feature: Feature,
    stopped: bool,
}

impl MonitorSession {
    /// Starts monitoring `ifname`, attaching the dispatcher if netray is not
    /// there yet (in `mode`).
    pub fn start(pin: &PinDir, ifname: &str, mode: AttachMode) -> Result<MonitorSession> {
        Self::start_hooks(pin, ifname, mode, &[Hook::Xdp])
    }

    /// Starts monitoring `ifname` at each of `hooks` (one event ring for all:
    /// each event names its hook). TC hooks attach netray's TC program if it
    /// is not there; the socket hook opens a packet socket bound to the
    /// interface with netray's socket filter on it, for this session only.
    pub fn start_hooks(pin: &PinDir, ifname: &str, mode: AttachMode, hooks: &[Hook]) -> Result<MonitorSession> {
        Self::start_feature(pin, ifname, mode, hooks, Feature::Monitor)
    }

    /// As [`Self::start_hooks`], with the feature bit that decides which
    /// packets make an event: Monitor (all) or Drops (those the firewall dropped).
    pub fn start_feature(
        pin: &PinDir,
        ifname: &str,
        mode: AttachMode,
        hooks: &[Hook],
        feature: Feature,
    ) -> Result<MonitorSession> {
        let iface = Interface::resolve(ifname)?;
        if hooks.is_empty() {
            return Err(Error::BadRequest(
                "no hook to monitor: give at least one of xdp, tc-ingress, tc-egress, socket".into(),
            ));
        }
        let mut hooks = hooks.to_vec();
        hooks.sort_by_key(|h| h.stats_slot());
        hooks.dedup();
        let _lock = pin.lock()?;
        let (d, _) = Dispatcher::attach(pin, &iface, mode)?;
        let mut cfg = d.config()?;
        let mut busy = false;
        for h in Hook::ALL {
            busy |= d.active_hook_features(h)? & (Feature::Monitor.bit() | Feature::Drops.bit()) != 0;
        }
        if busy && cfg.monitor_pid != std::process::id() {
            let _ = d.detach_if_idle();
            return Err(Error::MonitorBusy { pid: cfg.monitor_pid, iface: iface.name.clone() });
        }

        let ring_map = maps::open_pinned(&d.map_path(M::IF_EVENTS))?;
        let queue: Rc<RefCell<VecDeque<nr_packet_event>>> = Rc::default();
        let sink = Rc::clone(&queue);
        let mut builder = RingBufferBuilder::new();
        builder
            .add(&ring_map, move |data: &[u8]| {
                if let Some(ev) = from_bytes::<nr_packet_event>(data) {
                    sink.borrow_mut().push_back(ev);
                }
                0
            })
            .map_err(Error::bpf("opening the event ring"))?;
        let ring = builder.build().map_err(Error::bpf("opening the event ring"))?;
        // Whatever a previous, killed monitor left in the ring is not ours.
        let _ = ring.consume();
        queue.borrow_mut().clear();

        let socket = if hooks.contains(&Hook::Socket) {
            match open_socket_filter(pin, &iface) {
                Ok(s) => Some(s),
                Err(e) => {
                    let _ = d.detach_if_idle();
                    return Err(e);
                }
            }
        } else {
            None
        };
        cfg.monitor_pid = std::process::id();
        for h in &hooks {
            Dispatcher::set_hook_bits(&mut cfg, *h, feature.bit(), true);
        }
        d.set_config(&cfg)?;
        if let Err(e) = d.sync_tc(pin) {
            for h in &hooks {
                Dispatcher::set_hook_bits(&mut cfg, *h, feature.bit(), false);
            }
            cfg.monitor_pid = 0;
            let _ = d.set_config(&cfg);
            let _ = d.sync_tc(pin);
            let _ = d.detach_if_idle();
            return Err(e);
        }
        let start = sum_stats(&d, &hooks)?;
        Ok(MonitorSession {
            ring,
            _ring_map: ring_map,
            queue,
            pin: pin.clone(),
            iface,
            hooks,
            socket,
            start,
            received: 0,
            clock: MonotonicClock::new(),
            feature,
            stopped: false,
        })
    }

    pub fn interface(&self) -> &Interface {
        &self.iface
    }

    /// Waits up to `timeout` for events and hands each to `on_event` until it
    /// returns false. Records are submitted without wakeups, so this returns
    /// after the timeout (or earlier when the ring fills up).
    pub fn poll(&mut self, timeout: Duration, on_event: &mut dyn FnMut(PacketEvent) -> bool) -> Result<bool> {
        let _ = self.ring.poll(timeout);
        self.ring.consume().map_err(Error::bpf("reading the event ring"))?;
        loop {
            let Some(raw) = self.queue.borrow_mut().pop_front() else { return Ok(true) };
            self.received += 1;
            if !on_event(PacketEvent::decode(&raw, &self.iface.name, &self.clock)) {
                return Ok(false);
            }
        }
    }

    /// Counters since the session started.
    pub fn stats(&self) -> Result<MonitorStats> {
        let d = Dispatcher::open(&self.pin, &self.iface)?.ok_or_else(|| Error::NotAttached(self.iface.name.clone()))?;
        let now = sum_stats(&d, &self.hooks)?;
        Ok(MonitorStats {
            kind: StatsKind::Stats,
            received: self.received,
            lost: now.events_lost.saturating_sub(self.start.events_lost),
            packets_seen: now.seen.saturating_sub(self.start.seen),
        })
    }

    /// Stops the session: the monitor feature goes off, the events still in
    /// the ring are handed to `on_event` (until it returns false), and, if
    /// nothing else uses it, the dispatcher is detached. Returns the final
    /// counters, so received + lost accounts for every event the kernel made.
    pub fn finish(mut self, on_event: &mut dyn FnMut(PacketEvent) -> bool) -> Result<MonitorStats> {
        self.stopped = true;
        let _lock = self.pin.lock()?;
        let d = Dispatcher::open(&self.pin, &self.iface)?;
        let mut end = self.start.clone();
        if let Some(d) = &d {
            self.monitor_off(d)?;
            end = sum_stats(d, &self.hooks)?;
        }
        self.socket = None;
        // No new records can come now: drain what is left.
        self.poll(Duration::ZERO, on_event)?;
        if let Some(d) = d {
            d.sync_tc(&self.pin)?;
            d.detach_if_idle()?;
        }
        Ok(MonitorStats {
            kind: StatsKind::Stats,
            received: self.received,
            lost: end.events_lost.saturating_sub(self.start.events_lost),
            packets_seen: end.seen.saturating_sub(self.start.seen),
        })
    }

    /// Stops the session, discarding events still in the ring.
    pub fn stop(self) -> Result<MonitorStats> {
        self.finish(&mut |_| true)
    }

    /// Clears the monitor bit of every hook, if this process owns the monitor.
    fn monitor_off(&self, d: &Dispatcher) -> Result<()> {
        let mut cfg = d.config()?;
        if cfg.monitor_pid == std::process::id() {
            cfg.monitor_pid = 0;
            for h in Hook::ALL {
                Dispatcher::set_hook_bits(&mut cfg, h, self.feature.bit(), false);
            }
            d.set_config(&cfg)?;
        }
        Ok(())
    }

    fn switch_off(&mut self) -> Result<()> {
        self.socket = None;
        let _lock = self.pin.lock()?;
        let Some(d) = Dispatcher::open(&self.pin, &self.iface)? else { return Ok(()) };
        self.monitor_off(&d)?;
        d.sync_tc(&self.pin)?;
        d.detach_if_idle()?;
        Ok(())
    }

    /// The hooks this session reads.
    pub fn hooks(&self) -> &[Hook] {
        &self.hooks
    }
}

/// The counters of `hooks`, added up (packets seen at several hooks count
/// once per hook, as they produce one event per hook).
fn sum_stats(d: &Dispatcher, hooks: &[Hook]) -> Result<IfStats> {
    let mut t = IfStats::default();
    for h in hooks {
        let s = d.hook_stats(*h)?;
        t.seen += s.seen;
        t.passed += s.passed;
        t.dropped += s.dropped;
        t.bytes_seen += s.bytes_seen;
        t.bytes_dropped += s.bytes_dropped;
        t.non_ip += s.non_ip;
        t.truncated += s.truncated;
    }
    // One ring for every hook: its counters are written by whichever hook emits.
    let mut sent = 0;
    let mut lost = 0;
    for h in Hook::ALL {
        let s = d.hook_stats(h)?;
        sent += s.events_sent;
        lost += s.events_lost;
    }
    t.events_sent = sent;
    t.events_lost = lost;
    Ok(t)
}

/// A packet socket (AF_PACKET, raw, every protocol) bound to `iface`, with
/// netray's socket filter attached before it is bound. The filter writes an
/// event per packet and accepts none, so nothing ever queues on the socket.
fn open_socket_filter(pin: &PinDir, iface: &Interface) -> Result<OwnedFd> {
    let mut storage = MaybeUninit::uninit();
    let mut open = TcDispatchSkelBuilder::default()
        .open(&mut storage)
        .map_err(Error::bpf("opening the socket filter"))?;
    configure_maps(open.open_object_mut(), pin, Some(iface.index))?;
    open.progs.netray_tc_ingress.set_autoload(false);
    open.progs.netray_tc_egress.set_autoload(false);
    let skel = open.load().map_err(Error::bpf("loading the socket filter into the kernel"))?;
    let sys = |what: &str| Error::last_os(format!("{what} on {}", iface.name));
    // SAFETY: plain socket call; the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(sys("opening a packet socket"));
    }
    // SAFETY: fd is a fresh descriptor we own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let prog_fd: libc::c_int = skel.progs.netray_socket.as_fd().as_raw_fd();
    // SAFETY: SO_ATTACH_BPF takes an int program fd.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_BPF,
            (&prog_fd as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as _,
        )
    };
    if rc != 0 {
        return Err(sys("attaching the socket filter"));
    }
    // SAFETY: sockaddr_ll is plain data; zero is a valid start.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = iface.index as i32;
    // SAFETY: sll is a valid sockaddr_ll of the given size.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as _,
        )
    };
    if rc != 0 {
        return Err(sys("binding the packet socket"));
    }
    Ok(sock)
}

impl Drop for MonitorSession {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.switch_off();
        }
    }
}
