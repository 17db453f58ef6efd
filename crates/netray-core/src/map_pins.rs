//! Where each map of a dispatcher object is pinned, and how big the
//! per-interface ones are made.
//!
//! The C side names maps by owner (bpf/include/maps.h): `if_*` maps belong to
//! one interface and live under `<pin>/if/<ifindex>/`; `fw_*` maps are shared
//! by every interface and belong to the firewall (see [`crate::tables`]).
//! Every object that uses these maps (the XDP and TC dispatchers, the
//! benchmark's programs) is pointed at the same pins here, so they share them.

use std::{fs, path::PathBuf};

use libbpf_rs::{MapCore, OpenObject};

use crate::{map_names as M, maps, tables, Error, PinDir, Result};

/// Prefixes of the maps shared by every interface, each with a registered owner.
const SHARED: &[&str] = &[M::FW_PREFIX];

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

/// The name a map is pinned under: global variables (fw_state, fw_pending,
/// if_config, ...) each have their own data section ".data.<name>" (see
/// maps.h) and pin as <name>. Also says whether it is such a variable.
pub fn pin_name(section: &str) -> (&str, bool) {
    match section.strip_prefix(".data.") {
        Some(name) => (name, true),
        None => (section, false),
    }
}

/// Points every map of a dispatcher object at its pin: shared maps at their
/// owner's (created by it first if missing), `if_*` maps under the interface's
/// directory (not created when `ifindex` is None). A pinned map is reused, so
/// max_entries follows the pin.
pub fn configure_maps(obj: &mut OpenObject, pin: &PinDir, ifindex: Option<u32>) -> Result<()> {
    configure_maps_with(obj, pin, ifindex, &FlowCapacity::default())
}

/// `configure_maps` with the size of the interface's flow table (`if_flows`).
pub fn configure_maps_with(
    obj: &mut OpenObject,
    pin: &PinDir,
    ifindex: Option<u32>,
    flows: &FlowCapacity,
) -> Result<()> {
    if let Some(i) = ifindex {
        let dir = pin.if_dir(i);
        fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    }
    for mut map in obj.maps_mut() {
        let section = map.name().to_string_lossy().into_owned();
        let (name, is_data) = pin_name(&section);
        let path: PathBuf = if let Some(path) = tables::shared_pin(pin, name, SHARED)? {
            path
        } else if name.starts_with(M::IF_PREFIX) {
            match ifindex {
                Some(i) => pin.if_dir(i).join(name),
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
                return Err(Error::PlainMapPin(path));
            }
            pinned.max_entries()
        } else if name == M::IF_FLOWS {
            flows.max_flows
        } else {
            map.max_entries()
        };
        map.set_max_entries(entries).map_err(Error::bpf(format!("sizing map {name}")))?;
        map.set_pin_path(&path).map_err(Error::bpf(format!("pinning map {name}")))?;
    }
    Ok(())
}
