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

use std::{
    ffi::CString,
    fmt, fs,
    mem::MaybeUninit,
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
    path::{Path, PathBuf},
    str::FromStr,
};

use libbpf_rs::{
    skel::{OpenSkel, SkelBuilder},
    MapCore, MapHandle, OpenObject,
};
use netray_ebpf::{
    abi::{nr_fw_state, nr_if_config, nr_if_stats},
    xdp_dispatch::XdpDispatchSkelBuilder,
};
use serde::Serialize;

use crate::{if_stats::IfCounters, link::PinnedLink, maps, tc, tc::Hook, Error, Interface, PinDir, Result};

/// How the XDP program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttachMode {
    /// Native if the driver supports it, else generic (said so).
    #[default]
    Auto,
    /// In the driver (XDP_FLAGS_DRV_MODE); refused if the driver lacks XDP.
    Native,
    /// In the generic network stack path (XDP_FLAGS_SKB_MODE); works everywhere, slower.
    Generic,
}

impl FromStr for AttachMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(AttachMode::Auto),
            "native" | "drv" => Ok(AttachMode::Native),
            "generic" | "skb" => Ok(AttachMode::Generic),
            _ => Err(format!("unknown XDP mode '{s}': use auto, native or generic")),
        }
    }
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachMode::Auto => "auto",
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        })
    }
}

/// A feature the dispatcher can run (a bit of nr_if_config.features).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    Firewall,
    Monitor,
    Flows,
    Capture,
    ChainNext,
}

impl Feature {
    pub const ALL: [Feature; 5] =
        [Feature::Firewall, Feature::Monitor, Feature::Flows, Feature::Capture, Feature::ChainNext];

    pub fn bit(self) -> u32 {
        use netray_ebpf::abi::nr_feature as F;
        (match self {
            Feature::Firewall => F::NR_FEAT_FIREWALL,
            Feature::Monitor => F::NR_FEAT_MONITOR,
            Feature::Flows => F::NR_FEAT_FLOWS,
            Feature::Capture => F::NR_FEAT_CAPTURE,
            Feature::ChainNext => F::NR_FEAT_CHAIN_NEXT,
        })
        .0
    }

    pub fn name(self) -> &'static str {
        match self {
            Feature::Firewall => "firewall",
            Feature::Monitor => "monitor",
            Feature::Flows => "flows",
            Feature::Capture => "capture",
            Feature::ChainNext => "chain",
        }
    }

    pub fn names(bits: u32) -> Vec<&'static str> {
        Feature::ALL.iter().filter(|f| bits & f.bit() != 0).map(|f| f.name()).collect()
    }
}

/// Sizes of the firewall's shared tables, fixed when they are first created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FwCapacity {
    /// Dense trie chunks (1 KiB each) per bank, 1024 of them roots; two banks.
    pub chunks_per_bank: u32,
    /// Range slots per bank (64 bytes: a block, or two halves, or four quarters); two banks.
    pub ranges_per_bank: u32,
    /// Rules the firewall can hold.
    pub max_rules: u32,
}

impl Default for FwCapacity {
    fn default() -> Self {
        // 2 x (2 MiB + 8 MiB) of tables: room for ~65,000 typical rules.
        FwCapacity { chunks_per_bank: 2048, ranges_per_bank: 131_072, max_rules: 65536 }
    }
}

/// Size of an interface's flow table (the LRU map `if_flows`), fixed when
/// netray attaches to the interface. Each entry costs about
/// 44 + 56 x (possible CPUs) bytes plus the map's own overhead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowCapacity {
    /// Flows the table holds before the least recently used are evicted.
    pub max_flows: u32,
}

impl Default for FlowCapacity {
    fn default() -> Self {
        FlowCapacity { max_flows: 65536 }
    }
}

/// What `attach` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachOutcome {
    Attached { mode: &'static str, note: Option<String> },
    AlreadyAttached,
}

/// Per-interface counters, summed over CPUs.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct IfStats {
    pub seen: u64,
    pub passed: u64,
    pub dropped: u64,
    pub bytes_seen: u64,
    pub bytes_dropped: u64,
    pub events_sent: u64,
    pub events_lost: u64,
    pub non_ip: u64,
    pub truncated: u64,
}

impl From<nr_if_stats> for IfStats {
    fn from(c: nr_if_stats) -> IfStats {
        IfStats {
            seen: c.seen,
            passed: c.seen.saturating_sub(c.dropped),
            dropped: c.dropped,
            bytes_seen: c.bytes_seen,
            bytes_dropped: c.bytes_dropped,
            events_sent: c.events_sent,
            events_lost: c.events_lost,
            non_ip: c.non_ip,
            truncated: c.truncated,
        }
    }
}

/// One interface's dispatcher as seen from userspace.
#[derive(Debug, Clone, Serialize)]
pub struct DispatcherStatus {
    pub interface: String,
    pub ifindex: u32,
    /// "native", "generic", or "detached" when the interface is gone.
    pub mode: String,
    pub prog_id: u32,
    /// A `netray dump` capture program attached in front of the dispatcher
    /// (its id; `prog_id` is then that program's, too).
    pub capture_front: Option<u32>,
    pub features: Vec<&'static str>,
    pub monitor_pid: Option<u32>,
    pub stats: IfStats,
    /// The TC programs attached next to the XDP one (tc-ingress, tc-egress).
    pub tc: Vec<TcStatus>,
}

/// One TC program of a dispatcher.
#[derive(Debug, Clone, Serialize)]
pub struct TcStatus {
    /// "tc-ingress" or "tc-egress".
    pub hook: &'static str,
    /// "tcx" (a bpf_link) or "clsact" (a direct-action filter).
    pub backend: &'static str,
    pub prog_id: u32,
    pub features: Vec<&'static str>,
    pub stats: IfStats,
}

/// netray's dispatcher on one interface, opened from its pins.
#[derive(Debug)]
pub struct Dispatcher {
    iface: Interface,
    dir: PathBuf,
    config: MapHandle,
    stats: IfCounters,
}

/// Default fill level (bytes) at which the kernel wakes the monitor early.
pub const MONITOR_WAKEUP_BYTES: u32 = 256 * 1024;

impl Dispatcher {
    /// The dispatcher attached to `iface`, or None if netray is not attached
    /// there. Stale pins (the link detached, e.g. the interface was deleted
    /// and its index reused) are removed. Call with the pin lock held.
    pub fn open(pin: &PinDir, iface: &Interface) -> Result<Option<Dispatcher>> {
        let dir = pin.if_dir(iface.index);
        let link_path = dir.join("link");
        if !link_path.exists() {
            if dir.exists() {
                remove_dir(&dir)?;
            }
            return Ok(None);
        }
        if link_ifindex(&link_path) != Some(iface.index) {
            remove_dir(&dir)?;
            return Ok(None);
        }
        Ok(Some(Dispatcher {
            iface: iface.clone(),
            config: maps::open_pinned(&dir.join("if_config"))?,
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
        cap: &FwCapacity,
    ) -> Result<(Dispatcher, AttachOutcome)> {
        Self::attach_with(pin, iface, mode, cap, &FlowCapacity::default())
    }

    /// `attach`, with the size of the flow table created if netray attaches
    /// now (an attached dispatcher keeps the table it has).
    pub fn attach_with(
        pin: &PinDir,
        iface: &Interface,
        mode: AttachMode,
        cap: &FwCapacity,
        flows: &FlowCapacity,
    ) -> Result<(Dispatcher, AttachOutcome)> {
        if let Some(d) = Dispatcher::open(pin, iface)? {
            return Ok((d, AttachOutcome::AlreadyAttached));
        }
        let query = xdp_query(iface.index)?;
        let name = prog_name(query.prog_id).unwrap_or_default();
        if query.prog_id != 0 && name.starts_with("netray_cap") {
            return Err(Error::Refused(format!(
                "a `netray dump` is capturing on {} with its own program (id {}); stop it, then attach",
                iface.name, query.prog_id
            )));
        }
        if query.prog_id != 0 {
            return Err(Error::Refused(format!(
                "{} already has an XDP program that netray did not load (id {}, '{}'); netray will not replace it. \
                 Remove it first (`ip link set dev {} xdp off`) if it is not needed",
                iface.name,
                query.prog_id,
                name,
                iface.name
            )));
        }

        let dir = pin.if_dir(iface.index);
        fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        let attached = Self::load_and_attach(pin, iface, &dir, mode, cap, flows);
        match attached {
            Ok(outcome) => Ok((
                Dispatcher::open(pin, iface)?.ok_or_else(|| {
                    Error::Refused(format!("the dispatcher on {} vanished while attaching", iface.name))
                })?,
                outcome,
            )),
            Err(e) => {
                let _ = detach_link(&dir.join("link"));
                let _ = remove_dir(&dir);
                Err(e)
            }
        }
    }

    fn load_and_attach(
        pin: &PinDir,
        iface: &Interface,
        dir: &Path,
        mode: AttachMode,
        cap: &FwCapacity,
        flows: &FlowCapacity,
    ) -> Result<AttachOutcome> {
        let mut storage = MaybeUninit::uninit();
        let mut open = XdpDispatchSkelBuilder::default()
            .open(&mut storage)
            .map_err(Error::bpf("opening the XDP dispatcher"))?;
        configure_maps_with(open.open_object_mut(), pin, Some(iface.index), cap, flows)?;
        let skel = open.load().map_err(Error::bpf("loading the XDP dispatcher into the kernel"))?;
        init_fw_state(pin)?;

        let prog = &skel.progs.netray_xdp;
        let (link, mode_name, note) = create_xdp_link(prog.as_fd(), iface, mode)?;
        bpf_pin(link.as_fd(), &dir.join("link"))?;
        bpf_pin(prog.as_fd(), &dir.join("prog"))?;

        let config = nr_if_config {
            features: 0,
            ifindex: iface.index,
            monitor_wakeup_bytes: MONITOR_WAKEUP_BYTES,
            monitor_pid: 0,
            ..Default::default()
        };
        maps::put(&maps::open_pinned(&dir.join("if_config"))?, 0, &config)?;
        Ok(AttachOutcome::Attached { mode: mode_name, note })
    }

    pub fn interface(&self) -> &Interface {
        &self.iface
    }

    /// Path of one of this dispatcher's pinned maps (e.g. "if_events").
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

    /// Records this process as a user of a feature that several processes
    /// can run at once on the interface (flows): an empty directory
    /// `<if dir>/<feature>-users/<pid>-<n>` (bpffs refuses dots in names),
    /// removed with the dispatcher's pins. Returns the record's name, for
    /// `remove_user`.
    pub fn add_user(&self, feature: Feature) -> Result<String> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let record = format!("{}-{n}", std::process::id());
        let dir = self.users_dir(feature).join(&record);
        fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        Ok(record)
    }

    /// Removes a user record (None: none), and those of processes that are gone.
    pub fn remove_user(&self, feature: Feature, record: Option<&str>) -> Result<()> {
        let Ok(entries) = fs::read_dir(self.users_dir(feature)) else { return Ok(()) };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if Some(name.as_str()) == record || !user_pid(&name).is_some_and(process_alive) {
                remove_dir(&e.path())?;
            }
        }
        Ok(())
    }

    /// The live processes recorded as users of `feature` (one per record).
    pub fn users(&self, feature: Feature) -> Vec<u32> {
        let Ok(entries) = fs::read_dir(self.users_dir(feature)) else { return Vec::new() };
        let mut pids: Vec<u32> = entries
            .flatten()
            .filter_map(|e| user_pid(e.file_name().to_str()?))
            .filter(|&p| process_alive(p))
            .collect();
        pids.sort_unstable();
        pids
    }

    fn users_dir(&self, feature: Feature) -> PathBuf {
        self.dir.join(format!("{}-users", feature.name()))
    }

    pub fn stats(&self) -> Result<IfStats> {
        self.hook_stats(Hook::Xdp)
    }

    /// The counters of one hook (XDP's are `stats`). Zero when the pinned
    /// counters predate per-hook counters.
    pub fn hook_stats(&self, hook: Hook) -> Result<IfStats> {
        Ok(IfStats::from(self.stats.slot(hook.stats_slot())?))
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
        if bits & Feature::Monitor.bit() != 0 && !process_alive(cfg.monitor_pid) {
            bits &= !Feature::Monitor.bit();
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

    /// The TC programs attached to this interface.
    pub fn tc_status(&self) -> Result<Vec<TcStatus>> {
        let mut out = Vec::new();
        for hook in Hook::TC {
            if let Some((backend, prog_id)) = tc::attached(&self.dir, hook) {
                out.push(TcStatus {
                    hook: hook.name(),
                    backend: backend.name(),
                    prog_id,
                    features: Feature::names(self.active_hook_features(hook)?),
                    stats: self.hook_stats(hook)?,
                });
            }
        }
        Ok(out)
    }

    pub fn status(&self) -> Result<DispatcherStatus> {
        let cfg = self.config()?;
        let query = xdp_query(self.iface.index)?;
        Ok(DispatcherStatus {
            interface: self.iface.name.clone(),
            ifindex: self.iface.index,
            mode: mode_name(query.attach_mode as u32).to_string(),
            prog_id: query.prog_id,
            capture_front: prog_name(query.prog_id).is_some_and(|n| n.starts_with("netray_cap")).then_some(query.prog_id),
            features: Feature::names(self.active_features()?),
            monitor_pid: (cfg.monitor_pid != 0 && process_alive(cfg.monitor_pid)).then_some(cfg.monitor_pid),
            stats: self.stats()?,
            tc: self.tc_status()?,
        })
    }

    /// Switches off the exit-capture hook of captures whose process is gone
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
        clear("if_chain", &[nr_chain_slot::NR_CHAIN_CAPTURE.0])?;
        clear(
            "if_tc_chain",
            &[nr_tc_chain_slot::NR_TC_CHAIN_CAPTURE_INGRESS.0, nr_tc_chain_slot::NR_TC_CHAIN_CAPTURE_EGRESS.0],
        )?;
        Ok(true)
    }

    /// Removes the program from the interface and every pin of it.
    pub fn detach(self) -> Result<()> {
        for hook in Hook::TC {
            tc::detach(&self.dir, self.iface.index, hook)?;
        }
        detach_link(&self.dir.join("link"))?;
        remove_dir(&self.dir)
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
                None => remove_dir(&entry.path())?,
            }
        }
        out.sort_by_key(|d| d.iface.index);
        Ok(out)
    }
}

/// Creates the firewall's shared maps if they do not exist yet, without
/// attaching anything (so rules can be added before any interface is).
pub fn ensure_fw_maps(pin: &PinDir, cap: &FwCapacity) -> Result<()> {
    if pin.fw_dir().join("fw_state").exists() {
        // Tables another netray version made are refused here, once for all callers.
        return init_fw_state(pin);
    }
    let mut storage = MaybeUninit::uninit();
    let mut open = XdpDispatchSkelBuilder::default()
        .open(&mut storage)
        .map_err(Error::bpf("opening the XDP dispatcher"))?;
    configure_maps(open.open_object_mut(), pin, None, cap)?;
    for mut prog in open.open_object_mut().progs_mut() {
        prog.set_autoload(false);
    }
    open.load().map_err(Error::bpf("creating the firewall maps"))?;
    init_fw_state(pin)
}

/// Points every map of a dispatcher object at its pin: `fw_*` maps under
/// `<pin>/fw/`, `if_*` maps under the interface's directory (not created when
/// `ifindex` is None). A pinned map is reused, so max_entries follows the pin.
/// Shared with the benchmark object, whose maps have the same names.
pub fn configure_maps(obj: &mut OpenObject, pin: &PinDir, ifindex: Option<u32>, cap: &FwCapacity) -> Result<()> {
    configure_maps_with(obj, pin, ifindex, cap, &FlowCapacity::default())
}

/// `configure_maps` with the size of the interface's flow table (`if_flows`).
pub fn configure_maps_with(
    obj: &mut OpenObject,
    pin: &PinDir,
    ifindex: Option<u32>,
    cap: &FwCapacity,
    flows: &FlowCapacity,
) -> Result<()> {
    let fw_dir = pin.fw_dir();
    fs::create_dir_all(&fw_dir).map_err(Error::io(&fw_dir))?;
    if let Some(i) = ifindex {
        let dir = pin.if_dir(i);
        fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    }
    for mut map in obj.maps_mut() {
        let section = map.name().to_string_lossy().into_owned();
        // fw_state, fw_pending and if_config are global variables, each in its
        // own data section ".data.<name>" (see maps.h); they pin as <name>.
        let is_data = section.starts_with(".data.");
        let name = section.strip_prefix(".data.").unwrap_or(&section).to_string();
        let path = if name.starts_with("fw_") {
            fw_dir.join(&name)
        } else if name.starts_with("if_") {
            match ifindex {
                Some(i) => pin.if_dir(i).join(&name),
                None => {
                    map.set_autocreate(false).map_err(Error::bpf(format!("configuring map {name}")))?;
                    continue;
                }
            }
        } else {
            continue;
        };
        let entries = if path.exists() {
            let pinned = maps::open_pinned(&path)?;
            let flags = pinned.info().map_err(Error::bpf("reading a pinned map"))?.info.map_flags;
            if is_data && flags & libbpf_sys::BPF_F_MMAPABLE == 0 {
                return Err(Error::Refused(format!(
                    "{} was pinned by an older netray (a plain map, not a global variable's): \
                     remove the old state with `netray firewall detach --all`, then attach again",
                    path.display()
                )));
            }
            pinned.max_entries()
        } else {
            match name.as_str() {
                "fw_pool" => 2 * cap.chunks_per_bank,
                "fw_ranges" => 2 * cap.ranges_per_bank,
                "fw_matches" => 2 * (cap.max_rules + 1),
                "fw_l4" => 4 * cap.max_rules,
                "fw_rules" => cap.max_rules,
                "fw_rule_stats" => counter_cpus()? * (cap.max_rules + 1),
                "fw_rule_hits" => (counter_cpus()? * (cap.max_rules + 1)).div_ceil(HITS_PER_ELEM),
                "if_flows" => flows.max_flows,
                _ => map.max_entries(),
            }
        };
        map.set_max_entries(entries).map_err(Error::bpf(format!("sizing map {name}")))?;
        map.set_pin_path(&path).map_err(Error::bpf(format!("pinning map {name}")))?;
    }
    Ok(())
}

/// Writes the firewall's layout into fw_state the first time; checks the
/// format of tables that exist.
fn init_fw_state(pin: &PinDir) -> Result<()> {
    let state_map = maps::open_pinned(&pin.fw_dir().join("fw_state"))?;
    let state: nr_fw_state = maps::get(&state_map, 0)?.unwrap_or_default();
    if state.chunks_per_bank != 0 {
        return check_table_format(&state, pin);
    }
    let pool = maps::open_pinned(&pin.fw_dir().join("fw_pool"))?;
    let matches = maps::open_pinned(&pin.fw_dir().join("fw_matches"))?;
    let ranges = maps::open_pinned(&pin.fw_dir().join("fw_ranges"))?;
    let init = nr_fw_state {
        active_bank: 0,
        generation: 0,
        chunks_per_bank: pool.max_entries() / 2,
        matches_per_bank: matches.max_entries() / 2,
        ranges_per_bank: ranges.max_entries() / 2,
        counter_slots: maps::open_pinned(&pin.fw_dir().join("fw_rules"))?.max_entries() + 1,
        chunks_used: 0,
        ranges_used: 0,
        rules: 0,
        table_format: TABLE_FORMAT,
    };
    maps::put(&state_map, 0, &init)
}

const TABLE_FORMAT: u32 = netray_ebpf::abi::nr_fw_table_format::NR_FW_TABLE_FORMAT.0;

/// Refuses rule tables compiled in another layout (by another netray
/// version): this one's programs would misread them.
pub fn check_table_format(state: &nr_fw_state, pin: &PinDir) -> Result<()> {
    if state.table_format == TABLE_FORMAT {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "the rule tables under {} are in format {} and this netray reads format {TABLE_FORMAT}: \
         they were made by another netray version — remove the old state with `netray firewall detach --all`, \
         then attach again and re-add the rules",
        pin.fw_dir().display(),
        state.table_format
    )))
}

/// Packed rule counters per fw_rule_hits element (struct nr_rule_hits).
const HITS_PER_ELEM: u32 = netray_ebpf::abi::nr_fw_hits_layout::NR_FW_HITS_PER_ELEM.0;

/// CPUs the per-rule counters are laid out for: every possible CPU, so
/// bpf_get_smp_processor_id() always has a run of its own.
pub fn counter_cpus() -> Result<u32> {
    Ok(libbpf_rs::num_possible_cpus().map_err(Error::bpf("counting possible CPUs"))? as u32)
}

fn create_xdp_link(
    prog: BorrowedFd<'_>,
    iface: &Interface,
    mode: AttachMode,
) -> Result<(OwnedFd, &'static str, Option<String>)> {
    let errstr = |e: i32| std::io::Error::from_raw_os_error(e).to_string();
    let generic = |note: Option<String>| {
        crate::link::create(prog, iface.index, libbpf_sys::BPF_XDP, libbpf_sys::XDP_FLAGS_SKB_MODE)
            .map(|fd| (fd, "generic", note))
            .map_err(|e| {
                Error::Refused(format!(
                    "the kernel refused to attach XDP to {} in generic mode: {}",
                    iface.name,
                    errstr(e)
                ))
            })
    };
    match mode {
        AttachMode::Generic => generic(None),
        AttachMode::Native | AttachMode::Auto => match crate::link::create(prog, iface.index, libbpf_sys::BPF_XDP, libbpf_sys::XDP_FLAGS_DRV_MODE) {
            Ok(fd) => Ok((fd, "native", None)),
            Err(e) => {
                // bpf_link_create gives only an errno; the kernel's own reason
                // comes back on the netlink path, so ask it there.
                let reason = match native_refusal_reason(prog, iface.index) {
                    Some(r) => format!("{}: {r}", errstr(e)),
                    None => errstr(e),
                };
                if mode == AttachMode::Auto {
                    return generic(Some(format!(
                        "native XDP refused on {} ({reason}): attached in generic mode",
                        iface.name
                    )));
                }
                Err(Error::Refused(format!(
                    "native XDP refused on {}: {reason} — use --mode generic, or --mode auto to fall back",
                    iface.name
                )))
            }
        },
    }
}

static LIBBPF_LOG: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn capture_libbpf(_level: libbpf_rs::PrintLevel, msg: String) {
    if let Ok(mut log) = LIBBPF_LOG.lock() {
        log.push(msg);
    }
}

/// The kernel's extack message for a refused native XDP attach, obtained by
/// trying the same attach over netlink (which returns it; libbpf logs it).
/// An attach that unexpectedly succeeds there is undone at once.
fn native_refusal_reason(prog: BorrowedFd<'_>, ifindex: u32) -> Option<String> {
    LIBBPF_LOG.lock().ok()?.clear();
    let previous = libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Warn, capture_libbpf)));
    let flags = libbpf_sys::XDP_FLAGS_DRV_MODE | libbpf_sys::XDP_FLAGS_UPDATE_IF_NOEXIST;
    // SAFETY: prog is a valid program fd; no opts.
    let rc = unsafe { libbpf_sys::bpf_xdp_attach(ifindex as i32, prog.as_raw_fd(), flags, std::ptr::null()) };
    if rc == 0 {
        // SAFETY: removes the program just attached in native mode.
        unsafe { libbpf_sys::bpf_xdp_detach(ifindex as i32, libbpf_sys::XDP_FLAGS_DRV_MODE, std::ptr::null()) };
    }
    libbpf_rs::set_print(previous);
    let log = std::mem::take(&mut *LIBBPF_LOG.lock().ok()?);
    log.iter().find_map(|l| {
        l.split_once("Kernel error message:").map(|(_, m)| m.trim().to_string()).filter(|m| !m.is_empty())
    })
}


pub fn bpf_pin(fd: BorrowedFd<'_>, path: &Path) -> Result<()> {
    let cpath = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
        Error::Refused(format!("pin path {} contains a NUL byte", path.display()))
    })?;
    // SAFETY: fd is valid, cpath is NUL-terminated.
    let rc = unsafe { libbpf_sys::bpf_obj_pin(fd.as_raw_fd(), cpath.as_ptr()) };
    if rc < 0 {
        return Err(Error::io(path)(std::io::Error::from_raw_os_error(-rc)));
    }
    Ok(())
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

fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(dir)(e)),
        _ => Ok(()),
    }
}

/// The pid of a feature user record ("<pid>-<n>").
fn user_pid(record: &str) -> Option<u32> {
    record.split('-').next()?.parse().ok()
}

pub fn process_alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence.
    pid != 0 && (unsafe { libc::kill(pid as i32, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// What the kernel says is attached to an interface.
pub fn xdp_query(ifindex: u32) -> Result<libbpf_sys::bpf_xdp_query_opts> {
    let mut opts = libbpf_sys::bpf_xdp_query_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_xdp_query_opts>() as _,
        ..Default::default()
    };
    // SAFETY: opts is initialised with its size.
    let rc = unsafe { libbpf_sys::bpf_xdp_query(ifindex as i32, 0, &mut opts) };
    if rc < 0 {
        return Err(Error::Refused(format!(
            "querying XDP on ifindex {ifindex}: {}",
            std::io::Error::from_raw_os_error(-rc)
        )));
    }
    Ok(opts)
}

fn mode_name(attach_mode: u32) -> &'static str {
    match attach_mode {
        libbpf_sys::XDP_ATTACHED_DRV => "native",
        libbpf_sys::XDP_ATTACHED_SKB => "generic",
        libbpf_sys::XDP_ATTACHED_HW => "offload",
        libbpf_sys::XDP_ATTACHED_MULTI => "multi",
        _ => "detached",
    }
}

/// The name of a loaded program, by id.
pub fn prog_name(id: u32) -> Option<String> {
    let fd = crate::link::prog_by_id(id).ok()?;
    let info = crate::link::prog_info(fd.as_fd()).ok()?;
    // SAFETY: the kernel NUL-terminates name within its 16 bytes.
    let name = unsafe { std::ffi::CStr::from_ptr(info.name.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}
