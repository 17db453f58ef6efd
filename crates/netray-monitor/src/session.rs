//! A monitor session: switches the monitor feature on for one interface,
//! reads its event ring, and switches it off again — also when dropped, so a
//! panic or an early return never leaves the kernel writing events for
//! nobody. A SIGKILLed monitor leaves its pid behind; the next session (and
//! `firewall detach`) sees that the pid is dead and takes over.

use std::{cell::RefCell, collections::VecDeque, rc::Rc, time::Duration};

use libbpf_rs::{MapHandle, RingBuffer, RingBufferBuilder};
use netray_core::{
    dispatcher::{ensure_fw_maps, FwCapacity, IfStats},
    maps,
    time::MonotonicClock,
    AttachMode, Dispatcher, Error, Feature, Interface, PinDir, Result,
};
use netray_ebpf::abi::{from_bytes, nr_packet_event};
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
    start: IfStats,
    received: u64,
    clock: MonotonicClock,
    stopped: bool,
}

impl MonitorSession {
    /// Starts monitoring `ifname`, attaching the dispatcher if netray is not
    /// there yet (in `mode`).
    pub fn start(pin: &PinDir, ifname: &str, mode: AttachMode) -> Result<MonitorSession> {
        let iface = Interface::resolve(ifname)?;
        let _lock = pin.lock()?;
        let cap = FwCapacity::default();
        ensure_fw_maps(pin, &cap)?;
        let (d, _) = Dispatcher::attach(pin, &iface, mode, &cap)?;
        let mut cfg = d.config()?;
        if d.active_features()? & Feature::Monitor.bit() != 0 && cfg.monitor_pid != std::process::id() {
            return Err(Error::Refused(format!(
                "another monitor (pid {}) is already reading {}; stop it first",
                cfg.monitor_pid, iface.name
            )));
        }

        let ring_map = maps::open_pinned(&d.map_path("if_events"))?;
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

        let start = d.stats()?;
        cfg.monitor_pid = std::process::id();
        cfg.features |= Feature::Monitor.bit();
        d.set_config(&cfg)?;
        Ok(MonitorSession {
            ring,
            _ring_map: ring_map,
            queue,
            pin: pin.clone(),
            iface,
            start,
            received: 0,
            clock: MonotonicClock::new(),
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
        let now = d.stats()?;
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
            let mut cfg = d.config()?;
            if cfg.monitor_pid == std::process::id() {
                cfg.monitor_pid = 0;
                cfg.features &= !Feature::Monitor.bit();
                d.set_config(&cfg)?;
            }
            end = d.stats()?;
        }
        // No new records can come now: drain what is left.
        self.poll(Duration::ZERO, on_event)?;
        if let Some(d) = d {
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

    fn switch_off(&self) -> Result<()> {
        let _lock = self.pin.lock()?;
        let Some(d) = Dispatcher::open(&self.pin, &self.iface)? else { return Ok(()) };
        let mut cfg = d.config()?;
        if cfg.monitor_pid == std::process::id() {
            cfg.monitor_pid = 0;
            cfg.features &= !Feature::Monitor.bit();
            d.set_config(&cfg)?;
        }
        d.detach_if_idle()?;
        Ok(())
    }
}

impl Drop for MonitorSession {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.switch_off();
        }
    }
}
