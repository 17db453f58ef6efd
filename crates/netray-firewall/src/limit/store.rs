//! The rate limits' pinned maps (limit.h) and publishing a set of limits.
//!
//! fw_limits holds two banks; a change writes the idle bank and its
//! fw_limit_filter bitmap, then flips nr_fw_state.limit_set (bank and
//! count in one word), so a packet sees the old set or the new one. The
//! active bank is the source of truth for `limit list`.

use std::collections::HashMap;

use libbpf_rs::{MapCore, MapFlags, MapHandle};
use netray_core::{
    map_names as M,
    maps::{self, MmapArray},
    Error, PinDir, Result,
};
use netray_ebpf::abi::{
    nr_fw_state, nr_limit, nr_limit_counts, nr_limit_layout, nr_limit_src_set, nr_limit_stats, sum_counters,
};

pub const MAX_LIMITS: u32 = nr_limit_layout::NR_LIMIT_MAX.0;
const BANK_SHIFT: u32 = nr_limit_layout::NR_LIMIT_BANK_SHIFT.0;
const COUNT_MASK: u32 = nr_limit_layout::NR_LIMIT_COUNT_MASK.0;
const FILTER_WORDS: usize = nr_limit_layout::NR_LIMIT_FILTER_WORDS.0 as usize;

/// Handles on the limits' pinned maps (and fw_state, which gates them).
pub struct LimitMaps {
    limits: MapHandle,
    stats: MapHandle,
    counts: MapHandle,
    sources: MapHandle,
    filter: MapHandle,
    state: MapHandle,
}

/// What the per-source table holds for one limit.
#[derive(Debug, Default, Clone, Copy)]
pub struct SourceCounts {
    pub tracked: u64,
    pub banned: u64,
}

impl LimitMaps {
    pub fn open(pin: &PinDir) -> Result<LimitMaps> {
        let dir = pin.fw_dir();
        let open = |name: &str| maps::open_pinned(&dir.join(name));
        Ok(LimitMaps {
            limits: open(M::FW_LIMITS)?,
            stats: open(M::FW_LIMIT_STATS)?,
            counts: open(M::FW_LIMIT_COUNTS)?,
            sources: open(M::FW_LIMIT_SRC)?,
            filter: open(M::FW_LIMIT_FILTER)?,
            state: open(M::FW_STATE)?,
        })
    }

    fn state(&self) -> Result<nr_fw_state> {
        Ok(maps::get(&self.state, 0)?.unwrap_or_default())
    }

    /// The limits in force (the active bank), in slot order.
    pub fn active(&self) -> Result<Vec<nr_limit>> {
        let set = self.state()?.limit_set;
        let bank = set >> BANK_SHIFT & 1;
        (0..(set & COUNT_MASK).min(MAX_LIMITS))
            .map(|i| Ok(maps::get::<nr_limit>(&self.limits, bank * MAX_LIMITS + i)?.unwrap_or_default()))
            .collect()
    }

    /// Makes `limits` the set in force: the idle bank and its filter first,
    /// then the flip.
    pub fn publish(&self, limits: &[nr_limit]) -> Result<()> {
        if limits.len() > MAX_LIMITS as usize {
            return Err(Error::BadRequest(format!("at most {MAX_LIMITS} rate limits exist at once: delete one first")));
        }
        let mut st = self.state()?;
        let idle = (st.limit_set >> BANK_SHIFT & 1) ^ 1;
        for (i, l) in limits.iter().enumerate() {
            maps::put(&self.limits, idle * MAX_LIMITS + i as u32, l)?;
        }
        self.write_filter(idle, limits)?;
        st.limit_set = if limits.is_empty() { 0 } else { idle << BANK_SHIFT | limits.len() as u32 };
        maps::put(&self.state, 0, &st)
    }

    /// Sets bank `bank` of fw_limit_filter to the first two address bytes
    /// the limits cover (the other bank, in force, is written unchanged).
    fn write_filter(&self, bank: u32, limits: &[nr_limit]) -> Result<()> {
        let what = || format!("writing map {}", M::FW_LIMIT_FILTER);
        let key = 0u32.to_ne_bytes();
        let mut raw = self
            .filter
            .lookup(&key, MapFlags::ANY)
            .map_err(Error::bpf(what()))?
            .unwrap_or_else(|| vec![0; self.filter.value_size() as usize]);
        if raw.len() != 2 * 2 * FILTER_WORDS * 8 {
            return Err(Error::WrongValueSize {
                map: M::FW_LIMIT_FILTER.into(),
                size: raw.len() as u32,
                want: 2 * 2 * FILTER_WORDS * 8,
            });
        }
        let mut words = vec![0u64; 2 * FILTER_WORDS];
        for l in limits {
            let fam = usize::from(l.family == 6);
            // The prefix's first 16 bits: all of them when it is /16 or longer.
            let first = u32::from(l.addr[0]) << 8 | u32::from(l.addr[1]);
            let span = 1u32 << (16 - u32::from(l.prefix_len.min(16)));
            for k in first..first + span {
                words[fam * FILTER_WORDS + k as usize / 64] |= 1 << (k % 64);
            }
        }
        let base = bank as usize * 2 * FILTER_WORDS * 8;
        for (i, w) in words.iter().enumerate() {
            raw[base + i * 8..][..8].copy_from_slice(&w.to_ne_bytes());
        }
        self.filter.update(&key, &raw, MapFlags::ANY).map_err(Error::bpf(what()))
    }

    pub fn stats(&self, id: u32) -> Result<nr_limit_stats> {
        Ok(maps::get(&self.stats, id)?.unwrap_or_default())
    }

    /// A limit's packet counters, summed over CPUs.
    pub fn counts(&self, id: u32) -> Result<nr_limit_counts> {
        Ok(sum_counters(&maps::get_percpu(&self.counts, id)?))
    }

    /// Zeroes a limit id's counters and bucket, and forgets its sources
    /// (before the id is given to a new limit).
    pub fn reset(&self, id: u32) -> Result<()> {
        maps::put(&self.stats, id, &nr_limit_stats::default())?;
        maps::zero_percpu::<nr_limit_counts>(&self.counts, id)?;
        self.forget_sources(id)
    }

    /// Empties the per-source buckets of limit `id`. Each way is emptied
    /// with one 8-byte store of its tag, after its bucket is cleared, as the
    /// programs claim ways with compare-and-swap on the tag.
    pub fn forget_sources(&self, id: u32) -> Result<()> {
        let mut sets = MmapArray::<nr_limit_src_set>::new(&self.sources)?;
        for set in sets.slice_mut() {
            for way in set.way.iter_mut() {
                // SAFETY: volatile access to a live mapping of plain data that
                // the kernel writes concurrently; aligned 8-byte stores.
                unsafe {
                    if std::ptr::read_volatile(&way.tag) != 0 && std::ptr::read_volatile(&way.id) == id {
                        std::ptr::write_volatile(&mut way.tat, 0);
                        std::ptr::write_volatile(&mut way.banned_until, 0);
                        std::ptr::write_volatile(&mut way.tag, 0);
                    }
                }
            }
        }
        Ok(())
    }

    /// Per limit id, the sources tracked now and those banned at `now_ns` (boot clock).
    pub fn source_counts(&self, now_ns: u64) -> Result<HashMap<u32, SourceCounts>> {
        let sets = MmapArray::<nr_limit_src_set>::new(&self.sources)?;
        let mut out: HashMap<u32, SourceCounts> = HashMap::new();
        for i in 0..sets.len() {
            for way in sets.read(i).way {
                if way.tag != 0 {
                    let c = out.entry(way.id).or_default();
                    c.tracked += 1;
                    c.banned += u64::from(way.banned_until > now_ns);
                }
            }
        }
        Ok(out)
    }

    /// Sources the per-source table holds at most.
    pub fn source_capacity(&self) -> u32 {
        self.sources.max_entries() * crate::tables::LIMIT_SRC_WAYS
    }
}
