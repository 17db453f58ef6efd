//! The firewall's tables: the `fw_*` maps every interface's programs share,
//! pinned under `<pin>/fw/`. This module sizes them from a [`FwCapacity`]
//! when it creates them, writes their layout into `fw_state` once, and
//! refuses tables another netray version laid out.
//!
//! The dispatcher's programs reference these tables, so a monitor or flow
//! session that loads a dispatcher first needs them too: [`register`] makes
//! the firewall their owner in netray-core's registry
//! ([`netray_core::tables`]), which asks it to create them (default sizes)
//! whenever their pins are missing. [`ensure_tables`] creates them with a
//! capacity of the caller's choosing.

use std::{fs, mem::MaybeUninit, path::PathBuf};

use libbpf_rs::{
    skel::{OpenSkel, SkelBuilder},
    MapCore,
};
use netray_core::{map_names as M, map_pins::pin_name, maps, tables::TableOwner, Error, PinDir, Result};
use netray_ebpf::{abi::nr_fw_state, xdp_dispatch::XdpDispatchSkelBuilder};

/// Sizes of the firewall's shared tables, fixed when they are first created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FwCapacity {
    /// Dense trie chunks (1 KiB each) per bank, 1024 of them roots; two banks.
    pub chunks_per_bank: u32,
    /// Range slots per bank (64 bytes: a block, or two halves, or four quarters); two banks.
    pub ranges_per_bank: u32,
    /// Rules the firewall can hold.
    pub max_rules: u32,
    /// Sources the rate limits' per-source buckets track at once (the
    /// set-associative table fw_limit_src, evicting the least recently used
    /// of a set), over all --per-source limits; rounded up to a power of two.
    pub limit_sources: u32,
    /// Replies the drop policy's reply table holds (the set-associative
    /// table fw_replies, shared by the interfaces); rounded up to a power of
    /// two.
    pub replies: u32,
}

impl Default for FwCapacity {
    fn default() -> Self {
        // 2 x (2 MiB + 8 MiB) of tables: room for ~65,000 typical rules.
        FwCapacity {
            chunks_per_bank: 2048,
            ranges_per_bank: 131_072,
            max_rules: 65536,
            limit_sources: 65536,
            // Twice the connections a busy host keeps (docs/limits.md on sets).
            replies: 131_072,
        }
    }
}

impl FwCapacity {
    /// max_entries of one of the firewall's maps, for `cpus` possible CPUs;
    /// None for a map whose size the C declaration fixes (fw_state, ...).
    pub fn entries(&self, map: &str, cpus: u32) -> Option<u32> {
        Some(match map {
            M::FW_POOL => 2 * self.chunks_per_bank,
            M::FW_RANGES => 2 * self.ranges_per_bank,
            M::FW_MATCHES => 2 * (self.max_rules + 1),
            M::FW_L4 => 4 * self.max_rules,
            M::FW_RULES => self.max_rules,
            M::FW_RULE_ACTION => self.max_rules + 1,
            M::FW_RULE_STATS => cpus * (self.max_rules + 1),
            M::FW_RULE_HITS => (cpus * (self.max_rules + 1)).div_ceil(HITS_PER_ELEM),
            M::FW_LIMIT_SRC => (self.limit_sources.next_power_of_two() / LIMIT_SRC_WAYS).max(1),
            M::FW_REPLIES => (self.replies.next_power_of_two() / REPLY_WAYS).max(1),
            _ => return None,
        })
    }
}

/// Packed rule counters per fw_rule_hits element (struct nr_rule_hits).
const HITS_PER_ELEM: u32 = netray_ebpf::abi::nr_fw_hits_layout::NR_FW_HITS_PER_ELEM.0;

/// Buckets per set of fw_limit_src (struct nr_limit_src_set).
pub const LIMIT_SRC_WAYS: u32 = netray_ebpf::abi::nr_limit_src_layout::NR_LIMIT_SRC_WAYS.0;

/// Replies per set of fw_replies (struct nr_reply_set).
pub const REPLY_WAYS: u32 = netray_ebpf::abi::nr_reply_layout::NR_REPLY_WAYS.0;

const TABLE_FORMAT: u32 = netray_ebpf::abi::nr_fw_table_format::NR_FW_TABLE_FORMAT.0;

/// The firewall as owner of the `fw_` tables in netray-core's registry.
struct FwTables;

impl TableOwner for FwTables {
    fn prefix(&self) -> &'static str {
        M::FW_PREFIX
    }

    fn dir(&self, pin: &PinDir) -> PathBuf {
        pin.fw_dir()
    }

    fn ensure(&self, pin: &PinDir) -> Result<()> {
        ensure_tables(pin, &FwCapacity::default())
    }
}

/// Makes the firewall the owner of its tables for every dispatcher this
/// process loads. Idempotent; programs that load dispatchers call it once
/// at start (`Firewall::new` and [`ensure_tables`] do too).
pub fn register() {
    static OWNER: FwTables = FwTables;
    netray_core::tables::register(&OWNER);
}

/// Creates the firewall's tables with `cap` if they do not exist yet,
/// without attaching anything (so rules can be added before any interface
/// is); checks the format of tables that exist. Call with the pin lock held.
pub fn ensure_tables(pin: &PinDir, cap: &FwCapacity) -> Result<()> {
    // A process that makes the tables owns them for its dispatchers, too.
    register();
    let dir = pin.fw_dir();
    if dir.join(M::FW_STATE).exists() {
        // Tables another netray version made are refused here, once for all callers.
        return init_state(pin);
    }
    fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    let cpus = counter_cpus()?;
    let mut storage = MaybeUninit::uninit();
    // The XDP dispatcher's object declares the tables; loading it with no
    // program creates and pins just its maps.
    let mut open = XdpDispatchSkelBuilder::default()
        .open(&mut storage)
        .map_err(Error::bpf("opening the XDP dispatcher"))?;
    for mut map in open.open_object_mut().maps_mut() {
        let section = map.name().to_string_lossy().into_owned();
        let (name, _) = pin_name(&section);
        if !name.starts_with(FwTables.prefix()) {
            // Other maps (one interface's, data sections) are not ours to make.
            map.set_autocreate(false).map_err(Error::bpf(format!("configuring map {name}")))?;
            continue;
        }
        if let Some(entries) = cap.entries(name, cpus) {
            map.set_max_entries(entries).map_err(Error::bpf(format!("sizing map {name}")))?;
        }
        map.set_pin_path(dir.join(name)).map_err(Error::bpf(format!("pinning map {name}")))?;
    }
    for mut prog in open.open_object_mut().progs_mut() {
        prog.set_autoload(false);
    }
    open.load().map_err(Error::bpf("creating the firewall maps"))?;
    init_state(pin)
}

/// Writes the firewall's layout into fw_state the first time; checks the
/// format of tables that exist.
fn init_state(pin: &PinDir) -> Result<()> {
    let dir = pin.fw_dir();
    let state_map = maps::open_pinned(&dir.join(M::FW_STATE))?;
    let state: nr_fw_state = maps::get(&state_map, 0)?.unwrap_or_default();
    if state.chunks_per_bank != 0 {
        return check_table_format(&state, pin);
    }
    let entries = |name: &str| maps::open_pinned(&dir.join(name)).map(|m| m.max_entries());
    let init = nr_fw_state {
        active_bank: 0,
        generation: 0,
        chunks_per_bank: entries(M::FW_POOL)? / 2,
        matches_per_bank: entries(M::FW_MATCHES)? / 2,
        ranges_per_bank: entries(M::FW_RANGES)? / 2,
        counter_slots: entries(M::FW_RULES)? + 1,
        chunks_used: 0,
        ranges_used: 0,
        rules: 0,
        table_format: TABLE_FORMAT,
        special_rules: [0; 2],
        limit_set: 0,
        // The sets are a power of two (FwCapacity::entries).
        limit_src_mask: entries(M::FW_LIMIT_SRC)?.next_power_of_two() - 1,
        limit_src_seed: rand::random(),
        // fw_replies' sets: a power of two (FwCapacity::entries).
        reply_mask: entries(M::FW_REPLIES)?.next_power_of_two() - 1,
        reply_seed: rand::random(),
        ..Default::default()
    };
    maps::put(&state_map, 0, &init)
}

/// Refuses rule tables compiled in another layout (by another netray
/// version): this one's programs would misread them.
pub fn check_table_format(state: &nr_fw_state, pin: &PinDir) -> Result<()> {
    if state.table_format == TABLE_FORMAT {
        return Ok(());
    }
    Err(Error::TableFormat { dir: pin.fw_dir(), found: state.table_format, want: TABLE_FORMAT })
}

/// CPUs the per-rule counters are laid out for: every possible CPU, so
/// bpf_get_smp_processor_id() always has a run of its own.
pub fn counter_cpus() -> Result<u32> {
    Ok(libbpf_rs::num_possible_cpus().map_err(Error::bpf("counting possible CPUs"))? as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_capacity_sizes_every_table() {
        let cap = FwCapacity::default();
        let sizes: Vec<_> =
            [M::FW_POOL, M::FW_RANGES, M::FW_MATCHES, M::FW_L4, M::FW_RULES, M::FW_RULE_STATS, M::FW_RULE_HITS, M::FW_RULE_ACTION]
                .iter()
                .map(|m| cap.entries(m, 4))
                .collect();
        let hits = (4 * 65537u32).div_ceil(HITS_PER_ELEM);
        assert_eq!(
            sizes,
            [Some(4096), Some(262_144), Some(131_074), Some(262_144), Some(65536), Some(262_148), Some(hits), Some(65537)]
        );
        // Fixed by their C declarations.
        assert_eq!(cap.entries(M::FW_STATE, 4), None);
        assert_eq!(cap.entries(M::FW_PENDING, 4), None);
    }

    #[test]
    fn another_table_format_is_refused_with_the_fix() {
        // Only names the path: resolving the bpffs root changes nothing there.
        let pin = PinDir::resolve(Some(std::path::Path::new("/sys/fs/bpf"))).expect("bpffs at /sys/fs/bpf");
        let old = nr_fw_state { table_format: TABLE_FORMAT + 1, ..Default::default() };
        let e = check_table_format(&old, &pin).unwrap_err();
        assert!(matches!(e, Error::TableFormat { found, want, .. } if found == TABLE_FORMAT + 1 && want == TABLE_FORMAT));
        assert_eq!(
            e.to_string(),
            format!(
                "the rule tables under /sys/fs/bpf/fw are in format {} and this netray reads format {TABLE_FORMAT}: \
                 they were made by another netray version — remove the old state with `netray firewall detach --all`, \
                 then attach again and re-add the rules",
                TABLE_FORMAT + 1
            )
        );
        let current = nr_fw_state { table_format: TABLE_FORMAT, ..Default::default() };
        assert!(check_table_format(&current, &pin).is_ok());
    }
}
