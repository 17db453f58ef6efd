//! A capture session: the programs of `netray dump` put in place on one
//! interface, the rings they write, and taking it all down again.

use std::{
    collections::BTreeMap,
    os::fd::{AsFd, AsRawFd, OwnedFd},
};

use libbpf_rs::{ErrorKind, MapCore, MapFlags, MapHandle};
use netray_core::{
    dispatcher::{AttachOutcome, FlowCapacity},
    map_names as M,
    maps, tc, AttachMode, Dispatcher, Error, Feature, Hook, Interface, PinDir, Result,
};
use netray_ebpf::abi::{nr_capture_slot, nr_capture_stats, nr_chain_slot, nr_tc_chain_slot};
use netray_pcapfilter::EbpfInsn;
use serde::Serialize;

use crate::{
    front::{self, Kind, Variant},
    recorder::{Recorder, RecorderSpec},
    trace_front,
    xdp_front::{self, Front, Occupant},
    CaptureIf, Point,
};

/// What to capture.
#[derive(Debug, Clone)]
pub struct CaptureSpec {
    pub iface: String,
    pub hooks: Vec<Hook>,
    pub points: Vec<Point>,
    pub snaplen: u32,
    /// The pcap-filter expression ("" = every packet).
    pub filter: String,
    /// Bytes per CPU ring.
    pub ring_bytes: u32,
    pub mode: AttachMode,
    /// Beside an XDP program netray did not load: chain in front of it even
    /// where fentry/fexit on it would do (`--mode chain`).
    pub chain_only: bool,
}

impl CaptureSpec {
    pub const DEFAULT_SNAPLEN: u32 = 262_144;
    pub const DEFAULT_RING_BYTES: u32 = 16 << 20;
}

/// Counters of one (hook, point), summed over CPUs.
#[derive(Debug, Clone, Serialize)]
pub struct PointStats {
    pub hook: Hook,
    pub point: Point,
    /// Packets the filter ran on.
    pub seen: u64,
    pub matched: u64,
    /// Records written to the rings.
    pub captured: u64,
    /// Matched but not written: the ring was full.
    pub lost: u64,
    pub lost_bytes: u64,
    /// Written shorter than the snap length asked (64 KiB record limit).
    pub clipped: u64,
}

/// The programs of a running capture; [`Capture::stop`] takes them down.
/// The per-point counters of a running capture.
#[derive(Debug)]
pub struct StatsReader {
    maps: Vec<(Hook, MapHandle)>,
    points: Vec<Point>,
}

impl StatsReader {
    pub fn read(&self) -> Result<Vec<PointStats>> {
        let mut out = Vec::new();
        for (hook, map) in &self.maps {
            for &point in &self.points {
                let s: nr_capture_stats = crate::recorder::read_stats(map, point)?;
                out.push(PointStats {
                    hook: *hook,
                    point,
                    seen: s.seen,
                    matched: s.matched,
                    captured: s.captured,
                    lost: s.lost,
                    lost_bytes: s.lost_bytes,
                    clipped: s.clipped,
                });
            }
        }
        Ok(out)
    }
}

pub struct Capture {
    pin: PinDir,
    iface: Interface,
    recorders: Vec<(Hook, Recorder)>,
    undo: Vec<Undo>,
    interfaces: BTreeMap<(u8, u8), CaptureIf>,
    points: Vec<Point>,
    pub notes: Vec<String>,
    /// How the capture stands beside an XDP program netray did not load, if
    /// there is one.
    pub foreign_xdp: Option<ForeignXdp>,
}

/// The way taken beside an XDP program netray did not load, and why.
#[derive(Debug, Clone, Serialize)]
pub struct ForeignXdp {
    pub prog_id: u32,
    /// "fentry/fexit" (watched, nothing swapped) or "chain" (in front of it).
    pub way: &'static str,
    /// One sentence, also among the notes.
    pub why: String,
    /// Why chaining was chosen (empty for fentry/fexit), for errors.
    #[serde(skip)]
    reason: String,
}

enum Undo {
    XdpFront(Front),
    /// fentry/fexit on a foreign XDP program: dropping the links detaches them.
    Trace(#[allow(dead_code)] crate::trace_front::TraceFront),
    TcEntry(#[allow(dead_code)] OwnedFd),
    /// The entry capture as a clsact filter, where the kernel has no tcx.
    TcEntryClsact(crate::tc_front::ClsactEntry),
    /// An exit capture through netray's own program at `hook`.
    Exit { hook: Hook, user: String },
    /// netray attached its dispatcher for this capture: detach it when idle.
    Dispatcher,
}

impl Capture {
    /// Compiles the filter, loads the programs and puts them in place.
    pub fn start(pin: &PinDir, spec: &CaptureSpec) -> Result<Capture> {
        let iface = Interface::resolve(&spec.iface)?;
        let cbpf = netray_pcapfilter::compile(&spec.filter, spec.snaplen)
            .map_err(|e| Error::BadRequest(format!("filter expression: {e}")))?;
        let fragment = netray_pcapfilter::translate(&cbpf)
            .map_err(|e| Error::BadRequest(format!("filter expression '{}': {e}", spec.filter)))?;

        let mut capture = Capture {
            pin: pin.clone(),
            iface: iface.clone(),
            recorders: Vec::new(),
            undo: Vec::new(),
            interfaces: BTreeMap::new(),
            points: spec.points.clone(),
            notes: Vec::new(),
            foreign_xdp: None,
        };
        let lock = pin.lock()?;
        let started = capture.install_all(spec, &fragment);
        drop(lock);
        if let Err(e) = started {
            let _ = capture.take_down();
            return Err(e);
        }
        for &hook in &spec.hooks {
            for &point in &spec.points {
                capture.interfaces.insert(
                    (hook_code(hook), point as u8),
                    CaptureIf { ifindex: iface.index, ifname: iface.name.clone(), hook: Some(hook), point, snaplen: spec.snaplen },
                );
            }
        }
        Ok(capture)
    }

    fn install_all(&mut self, spec: &CaptureSpec, fragment: &[EbpfInsn]) -> Result<()> {
        if let Some(d) = Dispatcher::open(&self.pin, &self.iface)? {
            if d.clear_stale_capture()? {
                self.notes.push(format!(
                    "an exit capture on {} was killed before it could clean up: its hook is switched off",
                    self.iface.name
                ));
            }
        }
        let entry = spec.points.contains(&Point::Entry);
        let exit = spec.points.contains(&Point::Exit);
        for &hook in &spec.hooks {
            match hook {
                Hook::Xdp => self.install_xdp(spec, fragment, entry, exit)?,
                Hook::TcIngress | Hook::TcEgress => self.install_tc(spec, hook, fragment, entry, exit)?,
                Hook::Socket => {
                    return Err(Error::BadRequest(
                        "dump captures at xdp, tc-ingress and tc-egress; the socket hook carries no packet bodies"
                            .into(),
                    ))
                }
            }
        }
        Ok(())
    }

    /// netray's dispatcher on the interface, attached now if needed (exit
    /// points need netray's own program: it is what decides).
    fn dispatcher(&mut self, spec: &CaptureSpec, hook: Hook) -> Result<Dispatcher> {
        let attached = Dispatcher::attach_with(&self.pin, &self.iface, spec.mode, &FlowCapacity::default());
        let foreign = self.foreign_xdp.as_ref().filter(|_| hook == Hook::Xdp);
        let (d, outcome) = attached.map_err(|e| {
            let fexit = match foreign {
                Some(f) => format!(" (not here: {})", f.reason),
                None => String::new(),
            };
            Error::KernelRefused(format!(
                "--point exit at {} needs netray's own program on {}, and attaching it failed: {e}. The exit point \
                 of a program netray did not load is captured through fexit on it, where the kernel allows it{fexit}",
                hook.name(),
                self.iface.name
            ))
        })?;
        if let AttachOutcome::Attached { note: Some(n), .. } = &outcome {
            self.notes.push(n.clone());
        }
        if matches!(outcome, AttachOutcome::Attached { .. }) {
            self.undo.push(Undo::Dispatcher);
        }
        Ok(d)
    }

    fn install_xdp(&mut self, spec: &CaptureSpec, fragment: &[EbpfInsn], entry: bool, exit: bool) -> Result<()> {
        if let Some(note) = xdp_front::recover(&self.pin, &self.iface)? {
            self.notes.push(note);
        }
        let found = Occupant::find(self.iface.index)?;
        let foreign = found.prog().is_some()
            && !xdp_front::is_capture_front(found.prog_id())
            && Dispatcher::open(&self.pin, &self.iface)?.is_none();
        if foreign {
            if self.install_trace(spec, fragment, &found)? {
                return Ok(());
            }
        }
        drop(found);
        let dispatcher = if exit {
            let d = self.dispatcher(spec, Hook::Xdp)?;
            if !d.users(Feature::Capture).is_empty() {
                return Err(Error::CaptureBusy {
                    what: format!("is capturing at the XDP exit point on {}", self.iface.name),
                });
            }
            Some(d)
        } else {
            None
        };
        let occupant = if entry { Occupant::find(self.iface.index)? } else { Occupant::Empty };
        if xdp_front::is_capture_front(occupant.prog_id()) {
            return Err(Error::CaptureBusy {
                what: format!(
                    "is capturing at the XDP entry point on {} (program id {})",
                    self.iface.name,
                    occupant.prog_id()
                ),
            });
        }
        let scratch = match &dispatcher {
            Some(d) => Some(maps::open_pinned(&d.map_path(M::IF_CAP_SCRATCH))?),
            None => None,
        };
        let if_chain = match &dispatcher {
            Some(d) => Some(maps::open_pinned(&d.map_path(M::IF_CHAIN))?),
            None => None,
        };

        let mut refusals = Vec::new();
        for variant in Variant::XDP {
            let mut recorder = Recorder::load(&RecorderSpec {
                hook: Hook::Xdp,
                variant,
                wakeup_bytes: spec.ring_bytes / 4,
                scratch: scratch.as_ref().map(|m| m.as_fd()),
            })?;
            let entry_front = entry
                .then(|| load_front(Kind::Xdp, Point::Entry, variant, fragment, &recorder))
                .transpose()?;
            let exit_front = exit
                .then(|| load_front(Kind::Xdp, Point::Exit, variant, fragment, &recorder))
                .transpose()?;
            if let Some(original) = occupant.prog() {
                match prog_array_put(&recorder.chain, nr_capture_slot::NR_CAP_NEXT.0, original.as_raw_fd()) {
                    Err(e) if e.kind() == ErrorKind::InvalidInput => {
                        refusals.push(variant);
                        continue;
                    }
                    r => r.map_err(Error::bpf("chaining the original XDP program"))?,
                }
            }
            if let (Some(front), Some(chain)) = (&exit_front, &if_chain) {
                match prog_array_put(chain, nr_chain_slot::NR_CHAIN_CAPTURE.0, front.as_raw_fd()) {
                    Err(e) if e.kind() == ErrorKind::InvalidInput => {
                        refusals.push(variant);
                        continue;
                    }
                    r => r.map_err(Error::bpf("installing the exit capture"))?,
                }
            }
            recorder.add_rings(spec.ring_bytes)?;
            if let (Some(d), true) = (&dispatcher, exit) {
                let user = d.add_user(Feature::Capture)?;
                d.set_feature(Feature::Capture, true)?;
                self.undo.push(Undo::Exit { hook: Hook::Xdp, user });
            }
            if entry_front.is_some() && occupant.prog().is_some() && self.foreign_xdp.is_none() {
                self.notes.push(format!(
                    "capturing by chaining in front of netray's own XDP program (id {}), which keeps deciding",
                    occupant.prog_id()
                ));
            }
            if let Some(front) = entry_front {
                let installed = Front::install(&self.pin, &self.iface, occupant, front, recorder.chain.as_fd(), spec.mode)?;
                self.undo.push(Undo::XdpFront(installed));
            }
            self.recorders.push((Hook::Xdp, recorder));
            return Ok(());
        }
        Err(Error::KernelRefused(format!(
            "the kernel refused every way of chaining a capture to the XDP program on {} (tried {} variants of \
             frags support and attach type: {:?})",
            self.iface.name,
            refusals.len(),
            refusals
        )))
    }

    /// Beside a foreign XDP program: fentry/fexit on it where the kernel
    /// allows it (true: installed), else records why chaining is used
    /// (false: the caller chains).
    fn install_trace(&mut self, spec: &CaptureSpec, fragment: &[EbpfInsn], foreign: &Occupant) -> Result<bool> {
        let id = foreign.prog_id();
        let loaded = if spec.chain_only {
            Err("--mode chain".to_string())
        } else {
            let prog = foreign.prog().expect("a foreign program is attached");
            match trace_front::Target::of(prog, id) {
                // Where the kernel refuses fexit altogether, that is the reason to give.
                Err(no_btf) => Err(match netray_core::probe::fexit_on_xdp() {
                    Err(refused) => format!("this kernel refuses fexit on XDP programs ({refused})"),
                    Ok(_) => no_btf,
                }),
                Ok(target) => {
                    let points = &spec.points;
                    match trace_front::load(&target, self.iface.index, points, fragment, spec.ring_bytes / 4) {
                        Ok(loaded) => Ok((target, loaded)),
                        Err(e) => Err(format!(
                            "the kernel refused fentry/fexit on XDP program id {id} (function {}): {e}",
                            target.func
                        )),
                    }
                }
            }
        };
        let (target, mut loaded) = match loaded {
            Ok(l) => l,
            Err(reason) => {
                let why = format!("{reason}: capturing by chaining in front of XDP program id {id}, which keeps deciding");
                self.notes.push(why.clone());
                self.foreign_xdp = Some(ForeignXdp { prog_id: id, way: "chain", why, reason });
                return Ok(false);
            }
        };
        loaded.recorder.add_rings(spec.ring_bytes)?;
        let front = loaded.attach()?;
        let how = match (spec.points.contains(&Point::Entry), spec.points.contains(&Point::Exit)) {
            (true, true) => "fentry and fexit",
            (true, false) => "fentry",
            _ => "fexit",
        };
        let why = format!(
            "capturing through {how} on XDP program id {id} (function {}), which netray did not load: it stays \
             attached untouched{}",
            target.func,
            if how == "fentry" { "" } else { ", and exit records carry its verdicts" }
        );
        self.notes.push(why.clone());
        self.foreign_xdp = Some(ForeignXdp { prog_id: id, way: "fentry/fexit", why, reason: String::new() });
        self.undo.push(Undo::Trace(front));
        self.recorders.push((Hook::Xdp, loaded.recorder));
        Ok(true)
    }

    fn install_tc(&mut self, spec: &CaptureSpec, hook: Hook, fragment: &[EbpfInsn], entry: bool, exit: bool) -> Result<()> {
        let dispatcher = if exit { Some(self.dispatcher(spec, hook)?) } else { None };
        let scratch = match &dispatcher {
            Some(d) => Some(maps::open_pinned(&d.map_path(M::IF_CAP_SCRATCH))?),
            None => None,
        };
        let mut recorder = Recorder::load(&RecorderSpec {
            hook,
            variant: Variant::TC,
            wakeup_bytes: spec.ring_bytes / 4,
            scratch: scratch.as_ref().map(|m| m.as_fd()),
        })?;
        recorder.add_rings(spec.ring_bytes)?;
        if let Some(d) = &dispatcher {
            let front = load_front(Kind::Tc, Point::Exit, Variant::TC, fragment, &recorder)?;
            let chain = maps::open_pinned(&d.map_path(M::IF_TC_CHAIN))?;
            let slot = match hook {
                Hook::TcIngress => nr_tc_chain_slot::NR_TC_CHAIN_CAPTURE_INGRESS.0,
                _ => nr_tc_chain_slot::NR_TC_CHAIN_CAPTURE_EGRESS.0,
            };
            prog_array_put(&chain, slot, front.as_raw_fd()).map_err(Error::bpf("installing the TC exit capture"))?;
            let user = d.add_user(Feature::Capture)?;
            d.set_hook_feature(hook, Feature::Capture, true)?;
            self.undo.push(Undo::Exit { hook, user });
            self.notes.extend(d.sync_tc(&self.pin)?);
        }
        if entry {
            let front = load_front(Kind::Tc, Point::Entry, Variant::TC, fragment, &recorder)?;
            // NETRAY_TC_LEGACY=1 forces clsact here as it does for the firewall.
            let legacy = std::env::var(tc::TC_LEGACY_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
            let tcx = if legacy { Err(libc::EOPNOTSUPP) } else { tc::tcx_attach_first(front.as_fd(), self.iface.index, hook) };
            match tcx {
                Ok(link) => self.undo.push(Undo::TcEntry(link)),
                // No tcx (before Linux 6.6): the first clsact filter instead, and say so.
                Err(tcx) => {
                    let filter = crate::tc_front::attach(front.as_fd(), self.iface.index, hook).map_err(|e| {
                        Error::KernelRefused(format!(
                            "the kernel refused to attach the capture at {} on {} through tcx ({}) and as a clsact \
                             filter ({})",
                            hook.name(),
                            self.iface.name,
                            std::io::Error::from_raw_os_error(tcx),
                            std::io::Error::from_raw_os_error(e)
                        ))
                    })?;
                    let why = if legacy {
                        format!("{}=1", tc::TC_LEGACY_ENV)
                    } else {
                        format!("no tcx on this kernel: {}", std::io::Error::from_raw_os_error(tcx))
                    };
                    self.notes.push(format!(
                        "{why}: capturing at {} through a clsact filter at priority 1, before every other filter",
                        hook.name()
                    ));
                    self.undo.push(Undo::TcEntryClsact(filter));
                }
            }
        }
        self.recorders.push((hook, recorder));
        Ok(())
    }

    /// The rings to read, one per CPU and hook.
    pub fn rings(&self) -> Result<Vec<MapHandle>> {
        let mut out = Vec::new();
        for (_, r) in &self.recorders {
            for ring in &r.rings {
                out.push(MapHandle::try_from(ring).map_err(Error::bpf("sharing a capture ring"))?);
            }
        }
        Ok(out)
    }

    /// The capture interface of each (enum nr_hook code, enum nr_capture_point)
    /// a record can carry.
    pub fn interface_table(&self) -> &BTreeMap<(u8, u8), CaptureIf> {
        &self.interfaces
    }

    /// Every (hook, point) captured, for a writer that declares them up front.
    pub fn interfaces(&self) -> impl Iterator<Item = &CaptureIf> {
        self.interfaces.values()
    }

    pub fn stats(&self) -> Result<Vec<PointStats>> {
        self.stats_reader()?.read()
    }

    /// The capture's counters, readable from another thread while it runs (the writer
    /// of rotated files ends each file with them).
    pub fn stats_reader(&self) -> Result<StatsReader> {
        let maps = self
            .recorders
            .iter()
            .map(|(hook, r)| Ok((*hook, MapHandle::try_from(&r.stats).map_err(Error::bpf("sharing the capture counters"))?)))
            .collect::<Result<_>>()?;
        Ok(StatsReader { maps, points: self.points.clone() })
    }

    /// Takes the programs down and puts back what was there. The rings stay
    /// readable (call [`crate::reader::Readers::finish`] after this).
    pub fn stop(mut self) -> Result<Vec<String>> {
        let _lock = self.pin.lock()?;
        self.take_down()?;
        Ok(std::mem::take(&mut self.notes))
    }

    fn take_down(&mut self) -> Result<()> {
        let mut first_error = None;
        while let Some(undo) = self.undo.pop() {
            if let Err(e) = self.undo_one(undo) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn undo_one(&mut self, undo: Undo) -> Result<()> {
        match undo {
            Undo::XdpFront(front) => front.restore(),
            Undo::Trace(front) => {
                drop(front);
                Ok(())
            }
            Undo::TcEntry(link) => {
                drop(link);
                Ok(())
            }
            Undo::TcEntryClsact(filter) => {
                filter.detach();
                Ok(())
            }
            Undo::Exit { hook, user } => {
                let Some(d) = Dispatcher::open(&self.pin, &self.iface)? else { return Ok(()) };
                d.remove_user(Feature::Capture, Some(&user))?;
                if d.users(Feature::Capture).is_empty() {
                    if hook == Hook::Xdp {
                        d.set_feature(Feature::Capture, false)?;
                        prog_array_delete(&maps::open_pinned(&d.map_path(M::IF_CHAIN))?, nr_chain_slot::NR_CHAIN_CAPTURE.0);
                    } else {
                        d.set_hook_feature(hook, Feature::Capture, false)?;
                        let slot = match hook {
                            Hook::TcIngress => nr_tc_chain_slot::NR_TC_CHAIN_CAPTURE_INGRESS.0,
                            _ => nr_tc_chain_slot::NR_TC_CHAIN_CAPTURE_EGRESS.0,
                        };
                        prog_array_delete(&maps::open_pinned(&d.map_path(M::IF_TC_CHAIN))?, slot);
                        d.sync_tc(&self.pin)?;
                    }
                }
                Ok(())
            }
            Undo::Dispatcher => {
                if let Some(d) = Dispatcher::open(&self.pin, &self.iface)? {
                    d.detach_if_idle()?;
                }
                Ok(())
            }
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if !self.undo.is_empty() {
            if let Ok(_lock) = self.pin.lock() {
                let _ = self.take_down();
            }
        }
    }
}

fn load_front(kind: Kind, point: Point, variant: Variant, fragment: &[EbpfInsn], r: &Recorder) -> Result<OwnedFd> {
    front::load(kind, point, variant, fragment, r.scratch.as_fd(), r.chain.as_fd())
        .map_err(|e| Error::KernelRefused(format!("loading the capture filter program: {e}")))
}

fn prog_array_put(map: &MapHandle, slot: u32, prog_fd: i32) -> libbpf_rs::Result<()> {
    map.update(&slot.to_ne_bytes(), &(prog_fd as u32).to_ne_bytes(), MapFlags::ANY)
}

fn prog_array_delete(map: &MapHandle, slot: u32) {
    let _ = map.delete(&slot.to_ne_bytes());
}

/// enum nr_hook code of a hook, as records carry it.
pub fn hook_code(hook: Hook) -> u8 {
    use netray_ebpf::abi::nr_hook as H;
    (match hook {
        Hook::Xdp => H::NR_HOOK_XDP,
        Hook::TcIngress => H::NR_HOOK_TC_INGRESS,
        Hook::TcEgress => H::NR_HOOK_TC_EGRESS,
        Hook::Socket => H::NR_HOOK_SOCKET,
    })
    .0 as u8
}
