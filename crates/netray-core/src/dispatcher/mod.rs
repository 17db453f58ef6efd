//! The per-interface XDP dispatcher.
//!
//! An interface holds one XDP program and this kernel has no freplace, so
//! netray attaches a single program of its own (bpf/xdp_dispatch.bpf.c) and
//! composes its features inside it: each feature is a bit in the interface's
//! `if_config` map, read on every packet, so features switch on and off with
//! one map write — no reattach, no window without a program.
//!
//! The program is attached through a bpf_link pinned at `<pin>/if/<ifindex>/link`;
//! the pin keeps it (and so the firewall) enforcing after netray exits or is
//! killed. The firewall's maps are pinned once under `<pin>/fw/` and shared by
//! every interface's dispatcher.
//!
//! Next to the XDP program, TC ingress/egress programs (see [`crate::tc`]) are
//! attached on demand, when a hook has features on (`sync_tc`): they share the
//! interface's maps, read their own feature words in if_config, count in their
//! own counter slot ([`crate::if_stats`]), and are removed with the dispatcher.
//!
//! The handle is split by job: [`status`] (what it reports) and [`users`]
//! (which processes run a shared feature); the XDP attach is [`crate::xdp`],
//! where maps are pinned [`crate::map_pins`].

mod status;
mod users;

use std::{
    fs,
    mem::MaybeUninit,
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use libbpf_rs::{
    skel::{OpenSkel, SkelBuilder},
    MapCore, MapHandle,
};
use netray_ebpf::{abi::nr_if_config, xdp_dispatch::XdpDispatchSkelBuilder};

pub use crate::map_pins::FlowCapacity;
pub use status::{DispatcherStatus, IfStats, TcStatus};
pub use users::process_alive;

use crate::{
    if_stats::IfCounters,
    link::{self, PinnedLink},
    map_names as M,
    map_pins::configure_maps_with,
    maps,
    pin::remove_pins,
    tc,
    xdp::{create_xdp_link, prog_name, xdp_query, AttachMode},
    Error, Feature, Hook, Interface, PinDir, Result,
};

/// What `attach` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachOutcome {
    Attached { mode: &'static str, note: Option<String> },
    AlreadyAttached,
}

/// netray's dispatcher on one interface, opened from its pins.
#[derive(Debug)]
pub struct Dispatcher {
    iface: Interface,
    dir: PathBuf,
    config: MapHandle,
    stats: IfCounters,
}

/// The pin of the XDP bpf_link in an interface's directory.
pub const LINK_PIN: &str = "link";

/// Default fill level (bytes) at which the kernel wakes the monitor early.
pub const MONITOR_WAKEUP_BYTES: u32 = 256 * 1024;

impl Dispatcher {
    /// The dispatcher attached to `iface`, or None if netray is not attached
    /// there. Stale pins (the link detached, e.g. the interface was deleted
    /// and its index reused) are removed. Call with the pin lock held.
    pub fn open(pin: &PinDir, iface: &Interface) -> Result<Option<Dispatcher>> {
        let dir = pin.if_dir(iface.index);
        let link_path = dir.join(LINK_PIN);
        if !link_path.exists() {
            if dir.exists() {
                remove_pins(&dir)?;
            }
            return Ok(None);
        }
        if link_ifindex(&link_path) != Some(iface.index) {
            remove_pins(&dir)?;
            return Ok(None);
        }
        Ok(Some(Dispatcher {
            iface: iface.clone(),
            config: maps::open_pinned(&dir.join(M::IF_CONFIG))?,
            stats: IfCounters::open(&dir)?,
            dir,
        }))
    }

    /// Attaches the dispatcher to `iface` unless it is there already. Call
    /// with the pin lock held.
    pub fn attach(
        pin: &PinDir,
        iface: &Interface,
        mode: AttachMode,
    ) -> Result<(Dispatcher, AttachOutcome)> {
        Self::attach_with(pin, iface, mode, &FlowCapacity::default())
    }

    /// `attach`, with the size of the flow table created if netray attaches
    /// now (an attached dispatcher keeps the table it has).
    pub fn attach_with(
        pin: &PinDir,
        iface: &Interface,
        mode: AttachMode,
        flows: &FlowCapacity,
    ) -> Result<(Dispatcher, AttachOutcome)> {
        if let Some(d) = Dispatcher::open(pin, iface)? {
            return Ok((d, AttachOutcome::AlreadyAttached));
        }
        let query = xdp_query(iface.index)?;
        let name = prog_name(query.prog_id).unwrap_or_default();
        if query.prog_id != 0 && name.starts_with("netray_cap") {
            return Err(Error::CaptureInFront { iface: iface.name.clone(), prog_id: query.prog_id });
        }
        if query.prog_id != 0 {
            return Err(Error::ForeignXdp { iface: iface.name.clone(), prog_id: query.prog_id, name });
        }

        let dir = pin.if_dir(iface.index);
        fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        let attached = Self::load_and_attach(pin, iface, &dir, mode, flows);
        match attached {
            Ok(outcome) => Ok((
                Dispatcher::open(pin, iface)?.ok_or_else(|| Error::DispatcherVanished(iface.name.clone()))?,
                outcome,
            )),
            Err(e) => {
                let _ = detach_link(&dir.join(LINK_PIN));
                let _ = remove_pins(&dir);
                Err(e)
            }
        }
    }

    fn load_and_attach(
        pin: &PinDir,
        iface: &Interface,
        dir: &Path,
        mode: AttachMode,
        flows: &FlowCapacity,
    ) -> Result<AttachOutcome> {
        let mut storage = MaybeUninit::uninit();
        let mut open = XdpDispatchSkelBuilder::default()
            .open(&mut storage)
            .map_err(Error::bpf("opening the XDP dispatcher"))?;
        // The shared tables' owner creates them here if they are missing.
        configure_maps_with(open.open_object_mut(), pin, Some(iface.index), flows)?;
        let skel = open.load().map_err(Error::bpf("loading the XDP dispatcher into the kernel"))?;

        let prog = &skel.progs.netray_xdp;
        let (link, mode_name, note) = create_xdp_link(prog.as_fd(), iface, mode)?;
        link::pin_fd(link.as_fd(), &dir.join(LINK_PIN))?;
        link::pin_fd(prog.as_fd(), &dir.join("prog"))?;

        let config = nr_if_config {
            features: 0,
            ifindex: iface.index,
            monitor_wakeup_bytes: MONITOR_WAKEUP_BYTES,
            monitor_pid: 0,
            ..Default::default()
        };
        maps::put(&maps::open_pinned(&dir.join(M::IF_CONFIG))?, 0, &config)?;
        Ok(AttachOutcome::Attached { mode: mode_name, note })
    }

    pub fn interface(&self) -> &Interface {
        &self.iface
    }

    /// Path of one of this dispatcher's pinned maps (one of [`crate::map_names`]).
    pub fn map_path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn config(&self) -> Result<nr_if_config> {
        Ok(maps::get(&self.config, 0)?.unwrap_or_default())
    }

    pub fn set_config(&self, cfg: &nr_if_config) -> Result<()> {
        maps::put(&self.config, 0, cfg)
    }

    /// Switches a feature on or off; effective from the next packet.
    pub fn set_feature(&self, feature: Feature, on: bool) -> Result<()> {
        let mut cfg = self.config()?;
        if on {
            cfg.features |= feature.bit();
        } else {
            cfg.features &= !feature.bit();
        }
        self.set_config(&cfg)
    }

    /// Features in effect; a monitor whose process died, or flows or captures
    /// whose sessions all died, no longer count.
    pub fn active_features(&self) -> Result<u32> {
        self.active_hook_features(Hook::Xdp)
    }

    /// The feature bits of one hook as configured (a dead monitor included).
    pub fn hook_features(cfg: &nr_if_config, hook: Hook) -> u32 {
        match hook {
            Hook::Xdp => cfg.features,
            Hook::TcIngress => cfg.tc_ingress_features,
            Hook::TcEgress => cfg.tc_egress_features,
            Hook::Socket => cfg.socket_features,
        }
    }

    fn hook_features_mut(cfg: &mut nr_if_config, hook: Hook) -> &mut u32 {
        match hook {
            Hook::Xdp => &mut cfg.features,
            Hook::TcIngress => &mut cfg.tc_ingress_features,
            Hook::TcEgress => &mut cfg.tc_egress_features,
            Hook::Socket => &mut cfg.socket_features,
        }
    }

    /// Sets or clears feature bits of one hook in `cfg` (not written).
    pub fn set_hook_bits(cfg: &mut nr_if_config, hook: Hook, bits: u32, on: bool) {
        let f = Self::hook_features_mut(cfg, hook);
        if on {
            *f |= bits;
        } else {
            *f &= !bits;
        }
    }

    /// Switches a feature of one hook on or off (TC hooks: see `sync_tc`).
    pub fn set_hook_feature(&self, hook: Hook, feature: Feature, on: bool) -> Result<()> {
        let mut cfg = self.config()?;
        Self::set_hook_bits(&mut cfg, hook, feature.bit(), on);
        self.set_config(&cfg)
    }

    /// The features in effect at a hook (see `active_features`).
    pub fn active_hook_features(&self, hook: Hook) -> Result<u32> {
        let cfg = self.config()?;
        let mut bits = Self::hook_features(&cfg, hook);
        // The monitor and drops both read the event ring, owned by monitor_pid.
        let ring_readers = Feature::Monitor.bit() | Feature::Drops.bit();
        if bits & ring_readers != 0 && !process_alive(cfg.monitor_pid) {
            bits &= !ring_readers;
        }
        for shared in [Feature::Flows, Feature::Capture] {
            if bits & shared.bit() != 0 && self.users(shared).is_empty() {
                bits &= !shared.bit();
            }
        }
        Ok(bits)
    }

    /// Attaches the TC program of every TC hook that has features on, and
    /// detaches those that have none. Returns notes for the user (e.g. tcx
    /// refused, clsact used). Call with the pin lock held.
    pub fn sync_tc(&self, pin: &PinDir) -> Result<Vec<String>> {
        let mut notes = Vec::new();
        for hook in Hook::TC {
            let want = self.active_hook_features(hook)? != 0;
            let have = tc::attached(&self.dir, hook).is_some();
            if want && !have {
                let (_, note) = tc::attach(pin, &self.iface, &self.dir, hook)?;
                notes.extend(note);
            } else if !want && have {
                tc::detach(&self.dir, self.iface.index, hook)?;
            }
        }
        Ok(notes)
    }
    /// (killed before they could clean up): their filter programs keep every
    /// verdict, but should not stay in the path. Returns whether it did.
    pub fn clear_stale_capture(&self) -> Result<bool> {
        self.remove_user(Feature::Capture, None)?;
        if !self.users(Feature::Capture).is_empty() {
            return Ok(false);
        }
        let mut cfg = self.config()?;
        let bit = Feature::Capture.bit();
        let stale = (cfg.features | cfg.tc_ingress_features | cfg.tc_egress_features) & bit != 0;
        if !stale {
            return Ok(false);
        }
        cfg.features &= !bit;
        cfg.tc_ingress_features &= !bit;
        cfg.tc_egress_features &= !bit;
        self.set_config(&cfg)?;
        use netray_ebpf::abi::{nr_chain_slot, nr_tc_chain_slot};
        let clear = |map: &str, slots: &[u32]| -> Result<()> {
            let path = self.map_path(map);
            if path.exists() {
                let m = maps::open_pinned(&path)?;
                for slot in slots {
                    let _ = m.delete(&slot.to_ne_bytes());
                }
            }
            Ok(())
        };
        clear(M::IF_CHAIN, &[nr_chain_slot::NR_CHAIN_CAPTURE.0])?;
        clear(
            M::IF_TC_CHAIN,
            &[nr_tc_chain_slot::NR_TC_CHAIN_CAPTURE_INGRESS.0, nr_tc_chain_slot::NR_TC_CHAIN_CAPTURE_EGRESS.0],
        )?;
        Ok(true)
    }

    /// Removes the program from the interface and every pin of it.
    pub fn detach(self) -> Result<()> {
        for hook in Hook::TC {
            tc::detach(&self.dir, self.iface.index, hook)?;
        }
        detach_link(&self.dir.join(LINK_PIN))?;
        remove_pins(&self.dir)
    }

    /// Detaches when no feature is left running on the interface.
    pub fn detach_if_idle(self) -> Result<bool> {
        let mut tc_bits = 0;
        for hook in [Hook::TcIngress, Hook::TcEgress, Hook::Socket] {
            tc_bits |= self.active_hook_features(hook)?;
        }
        if self.active_features()? & !Feature::ChainNext.bit() == 0 && tc_bits == 0 {
            self.detach()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Every interface netray is attached to (stale pins are cleaned up).
    pub fn list(pin: &PinDir) -> Result<Vec<Dispatcher>> {
        let mut out = Vec::new();
        let dir = pin.ifaces_dir();
        let Ok(entries) = fs::read_dir(&dir) else { return Ok(out) };
        for entry in entries.flatten() {
            let Some(index) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            match Interface::name_of(index) {
                Some(name) => {
                    if let Some(d) = Dispatcher::open(pin, &Interface { name, index })? {
                        out.push(d);
                    }
                }
                None => remove_pins(&entry.path())?,
            }
        }
        out.sort_by_key(|d| d.iface.index);
        Ok(out)
    }
}

/// The ifindex a pinned XDP link is attached to, None if it is defunct.
fn link_ifindex(path: &Path) -> Option<u32> {
    PinnedLink::open(path).ok()?.xdp_ifindex()
}

fn detach_link(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let link = PinnedLink::open(path).map_err(Error::io(path))?;
    // A link whose interface vanished is already detached: that is fine.
    let _ = link.detach();
    Ok(())
}
