//! An interface's packet counters (struct nr_if_stats), one set per hook
//! (enum nr_stats_slot), as userspace reads them.
//!
//! The first NR_DIRECT_CPUS CPUs count in their rows of the global array
//! `if_cpu_stats`, which the programs address without a map lookup; any CPU
//! beyond counts in the per-CPU map `if_stats` (see bpf/include/maps.h). A
//! reader adds both.

use std::path::Path;

use libbpf_rs::{MapCore, MapHandle};
use netray_ebpf::abi::{nr_direct_cpus, nr_if_stats, nr_stats_slot, sum_counters};

use crate::{
    maps::{self, MmapArray},
    Result,
};

const DIRECT_CPUS: usize = nr_direct_cpus::NR_DIRECT_CPUS.0 as usize;
const SLOTS: usize = nr_stats_slot::NR_STATS_SLOTS.0 as usize;

/// The two maps holding one interface's counters.
#[derive(Debug)]
pub struct IfCounters {
    per_cpu: MapHandle,
    /// if_cpu_stats mapped, slot by slot; None for an instant while a first
    /// load is creating the maps (data sections are created after the others,
    /// see maps.h).
    direct: Option<MmapArray<nr_if_stats>>,
}

impl IfCounters {
    /// Opens the counters pinned in an interface's directory.
    pub fn open(if_dir: &Path) -> Result<IfCounters> {
        let per_cpu = maps::open_pinned(&if_dir.join(crate::map_names::IF_STATS))?;
        let direct_path = if_dir.join(crate::map_names::IF_CPU_STATS);
        let direct = match direct_path.exists() {
            // Its size is checked: state pinned by another version is refused.
            true => Some(MmapArray::of_global(&maps::open_pinned(&direct_path)?, SLOTS * DIRECT_CPUS)?),
            false => None,
        };
        Ok(IfCounters { per_cpu, direct })
    }

    /// One hook's counters summed over CPUs; zero for a slot the pinned maps
    /// predate.
    pub fn slot(&self, slot: u32) -> Result<nr_if_stats> {
        let mut rows: Vec<nr_if_stats> = if slot < self.per_cpu.max_entries() {
            maps::get_percpu(&self.per_cpu, slot)?
        } else {
            Vec::new()
        };
        if let Some(direct) = &self.direct {
            let first = slot as usize * DIRECT_CPUS;
            if first < direct.len() {
                rows.extend((first..first + DIRECT_CPUS).map(|i| direct.read(i)));
            }
        }
        Ok(sum_counters(&rows))
    }
}
