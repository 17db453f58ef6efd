//! The firewall's pinned maps, and publishing a compiled rule set.
//!
//! `fw_rules` is the source of truth (the rules as written, by id). Every
//! change recompiles the whole set into the idle bank of fw_pool/fw_matches/
//! fw_l4 and then flips fw_state.active_bank: one map write, so the next
//! packet sees either the old set or the new one, never a mix.

use std::{
    sync::atomic::{fence, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use libbpf_rs::{MapCore, MapFlags, MapHandle};
use netray_core::{
    map_names as M,
    maps::{self, MmapArray},
    Error, PinDir, Result,
};
use netray_ebpf::abi::{
    bytes_of, from_bytes, nr_direct_cpus, nr_fw_chunk, nr_fw_hits_layout, nr_fw_l4_key, nr_fw_match,
    nr_fw_pending, nr_fw_range, nr_fw_rule, nr_fw_rule_action, nr_fw_state, nr_rule_counter, nr_rule_hits,
};

use crate::{
    action::{boot_clock_ns, RuleOptions},
    compile::{self, Capacity, Compiled},
    rule::Rule,
};

/// Handles on the firewall's pinned maps.
pub struct FwMaps {
    pub rules: MapHandle,
    /// What each rule does and until when (struct nr_fw_rule_action).
    pub rule_action: MapHandle,
    pub rule_hits: MapHandle,
    pub rule_stats: MapHandle,
    pub state: MapHandle,
    pub l4: MapHandle,
    pool: MapHandle,
    ranges: MapHandle,
    matches: MapHandle,
    pending: Option<MapHandle>,
    /// The arrays mapped into this process, each on first use: a mapping
    /// costs a page-table entry per page, so a long-lived FwMaps (the
    /// daemon's) maps them once.
    mapped: Mapped,
    /// The rules as this FwMaps left them, with the generation its publish
    /// made: while fw_state still says that generation, nobody changed them.
    known_rules: Option<(u32, Vec<(u32, Rule)>)>,
    /// Per bank, the protocol/port keys this FwMaps wrote there and the
    /// generation that publish made (so the next publish into the bank
    /// deletes them without walking the whole hash table).
    known_l4: [Option<(u32, Vec<nr_fw_l4_key>)>; 2],
}

#[derive(Default)]
struct Mapped {
    hits: Option<MmapArray<nr_rule_hits>>,
    wide: Option<MmapArray<nr_rule_counter>>,
    spills: Option<MmapArray<nr_fw_pending>>,
    pool: Option<MmapArray<nr_fw_chunk>>,
    ranges: Option<MmapArray<nr_fw_range>>,
    matches: Option<MmapArray<nr_fw_match>>,
    actions: Option<MmapArray<nr_fw_rule_action>>,
}

/// The mapping of `map` in `slot`, made on first use.
fn mapped<'a, T: plain::Plain>(slot: &'a mut Option<MmapArray<T>>, map: &MapHandle) -> Result<&'a mut MmapArray<T>> {
    if slot.is_none() {
        *slot = Some(MmapArray::new(map)?);
    }
    Ok(slot.as_mut().expect("just mapped"))
}

/// The mapped per-CPU runs of rule counters (see struct nr_rule_counter):
/// packed words, and the wide counters they spill into.
pub struct RuleCounters<'a> {
    hits: &'a mut MmapArray<nr_rule_hits>,
    wide: &'a mut MmapArray<nr_rule_counter>,
    /// fw_pending, for each CPU's spill_seq; None for an instant while a
    /// first load creates the maps (nothing spills then).
    spills: Option<&'a MmapArray<nr_fw_pending>>,
    slots: usize,
    /// Hits the kernel has not added yet (struct nr_fw_pending): (rule, bytes).
    pending: Vec<(u32, u64)>,
}

const HIT_BYTE_BITS: u32 = nr_fw_hits_layout::NR_FW_HITS_BYTE_BITS.0;
const HITS_PER_ELEM: usize = nr_fw_hits_layout::NR_FW_HITS_PER_ELEM.0 as usize;

impl RuleCounters<'_> {
    /// (packets, bytes) of a rule, summed over CPUs, pending hits included.
    pub fn get(&self, id: u32) -> (u64, u64) {
        let slots = self.slots.max(1);
        let counted = (id as usize..self.wide.len())
            .step_by(slots)
            .map(|i| self.on_cpu(i / slots, i))
            .fold((0, 0), |(p, b), (cp, cb)| (p + cp, b + cb));
        self.pending
            .iter()
            .filter(|(rule, _)| *rule == id)
            .fold(counted, |(p, b), (_, len)| (p + 1, b + len))
    }

    /// Counter i (of CPU `cpu`): the wide counter plus the packed word, read
    /// again if that CPU was spilling the one into the other meanwhile.
    fn on_cpu(&self, cpu: usize, i: usize) -> (u64, u64) {
        let seq = || self.spills.as_ref().filter(|s| cpu < s.len()).map(|s| s.read(cpu).spill_seq);
        loop {
            let before = seq();
            if before.is_some_and(|s| s % 2 == 1) {
                std::hint::spin_loop();
                continue;
            }
            fence(Ordering::Acquire);
            let (wide, hits) = (self.wide.read(i), self.hits.read(i / HITS_PER_ELEM).word[i % HITS_PER_ELEM]);
            fence(Ordering::Acquire);
            if seq() == before {
                let (packets, bytes) = (hits >> HIT_BYTE_BITS, hits & ((1 << HIT_BYTE_BITS) - 1));
                return (wide.packets + u64::from(packets), wide.bytes + u64::from(bytes));
            }
        }
    }

    pub fn reset(&mut self, id: u32) {
        let slots = self.slots.max(1);
        let (hits, wide) = (self.hits.slice_mut(), self.wide.slice_mut());
        for i in (id as usize..wide.len()).step_by(slots) {
            hits[i / HITS_PER_ELEM].word[i % HITS_PER_ELEM] = 0;
            wide[i] = nr_rule_counter::default();
        }
    }
}

/// The pending hits in a mapped fw_pending: (rule id, bytes).
fn pending_hits(slots: &MmapArray<nr_fw_pending>) -> Vec<(u32, u64)> {
    (0..slots.len())
        .map(|cpu| slots.read(cpu))
        .filter(|p| p.rule != 0)
        .map(|p| (p.rule, u64::from(p.len)))
        .collect()
}

impl FwMaps {
    /// Opens the maps under `<pin>/fw/` (they must exist).
    pub fn open(pin: &PinDir) -> Result<FwMaps> {
        let dir = pin.fw_dir();
        let open = |name: &str| maps::open_pinned(&dir.join(name));
        FwMaps {
            rules: open(M::FW_RULES)?,
            rule_action: open(M::FW_RULE_ACTION)?,
            // Only a missing map means older state: any other failure (out of
            // fds, say) is reported as itself, never as advice to wipe it.
            rule_hits: open(M::FW_RULE_HITS).map_err(|e| {
                if dir.exists() && !dir.join(M::FW_RULE_HITS).exists() {
                    Error::NoRuleHits(dir.clone())
                } else {
                    e
                }
            })?,
            rule_stats: open(M::FW_RULE_STATS)?,
            state: open(M::FW_STATE)?,
            l4: open(M::FW_L4)?,
            pool: open(M::FW_POOL)?,
            ranges: open(M::FW_RANGES)?,
            matches: open(M::FW_MATCHES)?,
            pending: maps::open_pinned(&dir.join(M::FW_PENDING)).ok(),
            mapped: Mapped::default(),
            known_rules: None,
            known_l4: [None, None],
        }
        .checked(pin)
    }

    /// Refuses tables another netray version compiled (see check_table_format).
    fn checked(self, pin: &PinDir) -> Result<FwMaps> {
        let state = self.state()?;
        if state.chunks_per_bank != 0 {
            crate::tables::check_table_format(&state, pin)?;
        }
        Ok(self)
    }

    pub fn state(&self) -> Result<nr_fw_state> {
        Ok(maps::get(&self.state, 0)?.unwrap_or_default())
    }

    pub fn max_rules(&self) -> u32 {
        self.rules.max_entries()
    }

    /// Every stored rule with its id, sorted by id.
    pub fn load_rules(&self) -> Result<Vec<(u32, Rule)>> {
        if let Some((generation, rules)) = &self.known_rules {
            if self.state()?.generation == *generation {
                return Ok(rules.clone());
            }
        }
        let mut out: Vec<(u32, Rule)> = maps::dump::<u32, nr_fw_rule>(&self.rules)?
            .into_iter()
            .filter_map(|(id, raw)| Some((id, Rule::from_abi(&raw)?)))
            .collect();
        out.sort_by_key(|(id, _)| *id);
        Ok(out)
    }

    /// Records `rules` as the stored set after this FwMaps published it (the
    /// caller holds the pin lock, so nobody else changed them meanwhile).
    pub fn remember_rules(&mut self, rules: Vec<(u32, Rule)>) -> Result<()> {
        self.known_rules = Some((self.state()?.generation, rules));
        Ok(())
    }

    /// Stores new rules under their ids, with their action and expiry (TTLs
    /// count from now), their hit counters at zero.
    pub fn store_rules<'a>(&mut self, new: impl IntoIterator<Item = (u32, &'a Rule, RuleOptions)>) -> Result<()> {
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        let boot_now = boot_clock_ns();
        let actions = mapped(&mut self.mapped.actions, &self.rule_action)?;
        let mut ids = Vec::new();
        for (id, rule, opts) in new {
            let mut record = rule.to_abi(created);
            record.action = opts.action.code();
            let slots = actions.len() as u32;
            *actions.slice_mut().get_mut(id as usize).ok_or(Error::TooManyRules(slots.saturating_sub(1)))? =
                opts.to_abi(boot_now);
            maps::put(&self.rules, id, &record)?;
            ids.push(id);
        }
        self.reset_hits(&ids)
    }

    /// What each rule id does and until when (struct nr_fw_rule_action).
    pub fn actions(&mut self) -> Result<&MmapArray<nr_fw_rule_action>> {
        Ok(mapped(&mut self.mapped.actions, &self.rule_action)?)
    }

    pub fn remove_rule(&self, id: u32) -> Result<()> {
        self.rules
            .delete(&id.to_ne_bytes())
            .map_err(Error::bpf(format!("deleting rule {id}")))
    }

    /// The hit counters of every CPU (see struct nr_rule_counter), with the
    /// hits still pending (struct nr_fw_pending).
    pub fn counters(&mut self) -> Result<RuleCounters<'_>> {
        let mut counters = self.counters_to_reset()?;
        counters.pending = counters.spills.map(pending_hits).unwrap_or_default();
        Ok(counters)
    }

    /// The counters mapped for zeroing: pending hits are not read.
    fn counters_to_reset(&mut self) -> Result<RuleCounters<'_>> {
        let slots = self.state()?.counter_slots as usize;
        self.map_pending_slots()?;
        let m = &mut self.mapped;
        Ok(RuleCounters {
            hits: mapped(&mut m.hits, &self.rule_hits)?,
            wide: mapped(&mut m.wide, &self.rule_stats)?,
            spills: m.spills.as_ref(),
            slots,
            pending: Vec::new(),
        })
    }

    /// Maps fw_pending: each CPU's pending hit and spill sequence. Not there
    /// for an instant while a first load is creating the maps (it may come
    /// after fw_state, see maps.h).
    fn map_pending_slots(&mut self) -> Result<Option<&MmapArray<nr_fw_pending>>> {
        if let (None, Some(map)) = (&self.mapped.spills, &self.pending) {
            self.mapped.spills = Some(MmapArray::of_global(map, nr_direct_cpus::NR_DIRECT_CPUS.0 as usize)?);
        }
        Ok(self.mapped.spills.as_ref())
    }

    /// Each CPU's hit not yet added to the counters (rule id, bytes).
    pub fn pending(&mut self) -> Result<Vec<(u32, u64)>> {
        Ok(self.map_pending_slots()?.map(pending_hits).unwrap_or_default())
    }

    /// Zeroes the hit counters of these rule ids.
    pub fn reset_hits(&mut self, ids: &[u32]) -> Result<()> {
        let mut counters = self.counters_to_reset()?;
        for id in ids {
            counters.reset(*id);
        }
        Ok(())
    }

    /// Compiles `rules` for this firewall's capacities.
    pub fn compile(&self, rules: &[(u32, Rule)]) -> Result<Compiled> {
        let st = self.state()?;
        let cap = Capacity {
            chunks: st.chunks_per_bank as usize,
            ranges: st.ranges_per_bank as usize,
            matches: st.matches_per_bank as usize,
        };
        compile::compile(rules, cap).map_err(|e| Error::TablesFull(e.to_string()))
    }

    /// Writes `c` into the idle bank, then makes it the active one.
    pub fn publish(&mut self, c: &Compiled) -> Result<()> {
        let mut st = self.state()?;
        let target = 1 - (st.active_bank & 1);

        let pool = mapped(&mut self.mapped.pool, &self.pool)?;
        let base = (target * st.chunks_per_bank) as usize;
        for (dst, src) in pool.slice_mut()[base..base + c.chunks.len()]
            .iter_mut()
            .zip(&c.chunks)
        {
            dst.entry = *src;
        }
        let ranges = mapped(&mut self.mapped.ranges, &self.ranges)?;
        let base = (target * st.ranges_per_bank) as usize;
        ranges.slice_mut()[base..base + c.ranges.len()].copy_from_slice(&c.ranges);
        let matches = mapped(&mut self.mapped.matches, &self.matches)?;
        let base = (target * st.matches_per_bank) as usize;
        matches.slice_mut()[base..base + c.matches.len()].copy_from_slice(&c.matches);

        self.replace_l4(target as u8, st.generation, c)?;

        // How many of the bank's rules audit, allow or expire, stored before the bank goes
        // live: with none, the dispatcher skips the per-rule action lookup (a cache
        // miss per matched packet) and a match simply drops.
        let actions = mapped(&mut self.mapped.actions, &self.rule_action)?;
        let special = c.rule_ids.iter().filter(|&&id| actions.slice().get(id as usize).is_some_and(audits_or_expires)).count();
        st.special_rules[target as usize] = special as u32;
        maps::put(&self.state, 0, &st)?;

        st.active_bank = target;
        st.generation = st.generation.wrapping_add(1);
        st.chunks_used = c.chunks.len() as u32;
        st.ranges_used = c.ranges.len() as u32;
        st.rules = c.rules as u32;
        maps::put(&self.state, 0, &st)
    }

    /// Replaces the protocol/port entries of one bank; `generation` is the
    /// one being replaced.
    fn replace_l4(&mut self, bank: u8, generation: u32, c: &Compiled) -> Result<()> {
        let slot = &mut self.known_l4[usize::from(bank & 1)];
        // Banks alternate: if the only publish since ours into this bank went
        // to the other bank, what is here is exactly what we wrote.
        let stale: Vec<nr_fw_l4_key> = match slot.take() {
            Some((ours, keys)) if generation == ours.wrapping_add(1) => keys,
            _ => self.l4.keys().filter_map(|k| from_bytes::<nr_fw_l4_key>(&k)).filter(|k| k.bank == bank).collect(),
        };
        for k in &stale {
            let _ = self.l4.delete(bytes_of(k));
        }
        let mut written = Vec::with_capacity(c.l4.len());
        for e in &c.l4 {
            let key = nr_fw_l4_key {
                match_id: e.match_id,
                bank,
                proto: e.proto,
                port: e.port,
            };
            if let Err(err) = self.l4.update(bytes_of(&key), &e.rule_id.to_ne_bytes(), MapFlags::ANY) {
                // Leave the idle bank without this failed set's keys, so that
                // whoever publishes next finds only what it expects there.
                for k in &written {
                    let _ = self.l4.delete(bytes_of(k));
                }
                return Err(Error::L4TableFull { entries: self.l4.max_entries(), reason: err.to_string() });
            }
            written.push(key);
        }
        self.known_l4[usize::from(bank & 1)] = Some((generation.wrapping_add(1), written));
        Ok(())
    }
}

/// Whether the dispatcher must read a matched rule's action slot (nr_fw_apply).
fn audits_or_expires(a: &nr_fw_rule_action) -> bool {
    use netray_ebpf::abi::nr_fw_action as A;
    a.action == A::NR_ACTION_AUDIT.0 || a.action == A::NR_ACTION_ALLOW.0 || a.expires_ns != 0
}
