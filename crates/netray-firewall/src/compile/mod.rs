//! Compiles a rule set into the structure the XDP program walks.
//!
//! Layout (see netray_abi.h): a multibit trie with an 8-bit stride whose first
//! level is direct-indexed by the first two address bytes (256 root chunks per
//! family). Leaves are pushed down, so every entry holds either a child node
//! or the *match id* of the longest rule prefix covering it. Below the roots a
//! node is emitted as a range block (at most NR_FW_RANGE_KEYS runs, one cache
//! line; at most NR_FW_HALF_KEYS, half of one; at most three, a quarter) or,
//! when denser, as a 256-entry chunk. An IPv4 node right below a root covers
//! address bytes 2-3 at once, children included, as an island block: up to 8
//! key ranges with their own leaf on a background leaf, in a whole, half or
//! quarter element by their number. A match carries what applies
//! there, ancestors included: the most specific catch-all rule, or else the
//! protocol/port rules, which go to the fw_l4 hash. The per-packet lookup is
//! at most 3 (IPv4) or 15 (IPv6) inlined array loads, whatever the number of
//! rules.

use std::collections::{BTreeMap, HashMap};

use netray_ebpf::abi::{nr_fw_isle_layout, nr_fw_layout, nr_fw_match, nr_fw_match_flags, nr_fw_range};

use crate::rule::Rule;

mod blocks;
#[cfg(test)]
mod tests;
mod trie;
mod walk;

use blocks::*;
use trie::*;

pub const CHUNK_ENTRIES: usize = nr_fw_layout::NR_FW_CHUNK_ENTRIES.0 as usize;
pub const ROOT_V4: usize = nr_fw_layout::NR_FW_ROOT_V4.0 as usize;
pub const ROOT_V6: usize = nr_fw_layout::NR_FW_ROOT_V6.0 as usize;
pub const ROOT_CHUNKS: usize = nr_fw_layout::NR_FW_ROOT_CHUNKS.0 as usize;
pub const ROOT_OUT: usize = nr_fw_layout::NR_FW_ROOT_OUT.0 as usize;
pub const RANGE_KEYS: usize = nr_fw_layout::NR_FW_RANGE_KEYS.0 as usize;
pub const HALF_KEYS: usize = nr_fw_layout::NR_FW_HALF_KEYS.0 as usize;
pub const QUARTER_RUNS: usize = nr_fw_layout::NR_FW_QUARTER_RUNS.0 as usize;
pub const ISLES: usize = nr_fw_isle_layout::NR_FW_ISLES.0 as usize;
pub const ISLES_HALF: usize = nr_fw_isle_layout::NR_FW_ISLES_HALF.0 as usize;
pub const ISLES_QUARTER: usize = nr_fw_isle_layout::NR_FW_ISLES_QUARTER.0 as usize;
const ISLE_LEAF_BITS: u32 = nr_fw_isle_layout::NR_FW_ISLE_LEAF_BITS.0;
const ISLE_ID_BITS: u32 = nr_fw_isle_layout::NR_FW_ISLE_ID_BITS.0;
const ISLE_LEAVES_PER_WORD: usize = nr_fw_isle_layout::NR_FW_ISLE_LEAVES_PER_WORD.0 as usize;
/// The most rules a firewall holds: rule and match ids must fit the 20 bits
/// of a packed island leaf.
pub const MAX_RULES: u32 = nr_fw_isle_layout::NR_FW_MAX_RULES.0;
pub const PTR: u32 = 1 << nr_fw_layout::NR_FW_PTR_SHIFT.0;
pub const RANGE: u32 = 1 << nr_fw_layout::NR_FW_RANGE_SHIFT.0;
/// Range pointer flag: an island block over IPv4 bytes 2-3.
pub const WIDE: u32 = 1 << nr_fw_layout::NR_FW_WIDE_SHIFT.0;
/// Range pointer flag: a half block, of its element's first half...
pub const HALF: u32 = 1 << nr_fw_layout::NR_FW_HALF_SHIFT.0;
/// ...or, with this flag, of its second.
pub const SECOND: u32 = 1 << nr_fw_layout::NR_FW_SECOND_SHIFT.0;
/// Range pointer flag: a quarter block, in the half SECOND says...
pub const QUARTER: u32 = 1 << nr_fw_layout::NR_FW_QUARTER_SHIFT.0;
/// ...and, with this flag, that half's second quarter.
pub const ODD: u32 = 1 << nr_fw_layout::NR_FW_ODD_SHIFT.0;
/// A pointer's index: a chunk's, or a range element's.
pub const INDEX_MASK: u32 = ODD - 1;
/// Leaf flag: a match id whose protocol/port rules are in fw_l4.
pub const LEAF_L4: u32 = 1 << nr_fw_layout::NR_FW_LEAF_L4_SHIFT.0;

pub type Chunk = [u32; CHUNK_ENTRIES];

/// An entry of the fw_l4 hash: packets of `proto` to `port` (0 = any) in
/// match `match_id` are dropped by `rule_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct L4Entry {
    pub match_id: u32,
    pub proto: u8,
    pub port: u16,
    pub rule_id: u32,
}

/// A compiled rule set, ready to be written into one bank.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// Chunk i goes to pool index bank_base + i; 0..ROOT_CHUNKS are the roots.
    pub chunks: Vec<Chunk>,
    /// Range element i goes to fw_ranges index bank_base + i: one range
    /// block, or two half blocks.
    pub ranges: Vec<nr_fw_range>,
    /// Indexed by match id (leaves with LEAF_L4); entry 0 is unused.
    pub matches: Vec<nr_fw_match>,
    pub l4: Vec<L4Entry>,
    pub rules: usize,
    /// The ids of the rules compiled in: publish looks up which of them audit or expire.
    pub rule_ids: Vec<u32>,
}

/// Per-bank sizes of the compiled tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub chunks: usize,
    pub ranges: usize,
    pub matches: usize,
}

impl Capacity {
    /// No limit: to learn how much a rule set needs.
    pub const UNLIMITED: Capacity = Capacity {
        chunks: usize::MAX,
        ranges: usize::MAX,
        matches: usize::MAX,
    };
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error(
        "the rule set needs {needed} trie chunks but the firewall holds {capacity} per bank; remove all state \
         (`netray firewall detach --all`) and attach again with a larger --fw-chunks"
    )]
    ChunksFull { needed: usize, capacity: usize },
    #[error(
        "the rule set needs {needed} range slots but the firewall holds {capacity} per bank; remove all state \
         (`netray firewall detach --all`) and attach again with a larger --fw-ranges"
    )]
    RangesFull { needed: usize, capacity: usize },
    #[error("the rule set needs {needed} match entries but the firewall holds {capacity}; recreate it with a larger --max-rules")]
    MatchesFull { needed: usize, capacity: usize },
    #[error("rule id {id} is beyond the {MAX_RULES} rules a netray firewall holds; delete rules and add them again")]
    IdTooLarge { id: u32 },
}

/// A rule prefix in one direction's trie: direction (0 in, 1 out), family,
/// address bytes (masked) and length.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Prefix {
    out: bool,
    family: u8,
    len: u8,
    addr: [u8; 16],
}

impl Prefix {
    fn of(rule: &Rule, out: bool) -> Prefix {
        let mut addr = [0u8; 16];
        match rule.net.network() {
            std::net::IpAddr::V4(a) => addr[..4].copy_from_slice(&a.octets()),
            std::net::IpAddr::V6(a) => addr.copy_from_slice(&a.octets()),
        }
        Prefix {
            out,
            family: rule.family(),
            len: rule.net.prefix_len(),
            addr,
        }
    }

    /// The first root chunk of this prefix's trie.
    fn root(&self) -> usize {
        (if self.out { ROOT_OUT } else { 0 }) + if self.family == 6 { ROOT_V6 } else { ROOT_V4 }
    }

    /// This prefix cut to a shorter length.
    fn truncated(&self, len: u8) -> Prefix {
        let mut addr = [0u8; 16];
        for bit in 0..len as usize {
            addr[bit / 8] |= self.addr[bit / 8] & (0x80 >> (bit % 8));
        }
        Prefix {
            out: self.out,
            family: self.family,
            len,
            addr,
        }
    }
}

/// What one prefix contributes by itself.
#[derive(Debug, Default)]
struct Own {
    any_rule: Option<Pick>,
    /// (proto, port) -> rule; port 0 = every port of the protocol.
    l4: BTreeMap<(u8, u16), Pick>,
}

/// A rule competing for one prefix and protocol/port: a deny (or audit) rule
/// beats an allow rule, then the lowest id wins, so the result does not
/// depend on order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Pick {
    allow: bool,
    id: u32,
}

fn keep_best(slot: &mut Option<Pick>, new: Pick) {
    if slot.is_none_or(|old| new < old) {
        *slot = Some(new);
    }
}

/// How specific a rule is at one prefix length: a catch-all (0) loses to a
/// protocol rule (1), which loses to a port rule (2).
fn specificity(port: u16) -> u8 {
    if port == 0 {
        1
    } else {
        2
    }
}

/// Compiles `rules` (rule id, rule). Fails, changing nothing, when the
/// result would not fit `cap`.
///
/// Which rule decides a packet: the one with the longest prefix covering
/// its address; at the same prefix length a port rule beats a protocol rule,
/// which beats a catch-all; a deny (or audit) rule beats an allow rule of
/// the same prefix and specificity; then the lowest id.
pub fn compile(rules: &[(u32, Rule)], cap: Capacity) -> Result<Compiled, CompileError> {
    let mut own: HashMap<Prefix, Own> = HashMap::new();
    for (id, rule) in rules {
        let pick = Pick { allow: rule.allow, id: *id };
        for out in [false, true] {
            if (out && !rule.dir.has_out()) || (!out && !rule.dir.has_in()) {
                continue;
            }
            let entry = own.entry(Prefix::of(rule, out)).or_default();
            let protos = rule.proto_numbers();
            if protos.is_empty() {
                keep_best(&mut entry.any_rule, pick);
            }
            for proto in protos {
                let mut slot = entry.l4.get(&(proto, rule.port.unwrap_or(0))).copied();
                keep_best(&mut slot, pick);
                entry.l4.insert((proto, rule.port.unwrap_or(0)), slot.expect("just kept"));
            }
        }
    }

    // Lengths in use per trie, so ancestors are found with few probes.
    let mut lengths: BTreeMap<(bool, u8), Vec<u8>> = BTreeMap::new();
    for p in own.keys() {
        lengths.entry((p.out, p.family)).or_default().push(p.len);
    }
    for l in lengths.values_mut() {
        l.sort_unstable();
        l.dedup();
    }

    let mut prefixes: Vec<&Prefix> = own.keys().collect();
    prefixes.sort_by_key(|p| (p.len, p.out, p.family, p.addr));

    if let Some(&(id, _)) = rules.iter().find(|(id, _)| *id > MAX_RULES) {
        return Err(CompileError::IdTooLarge { id });
    }
    let needed_matches = prefixes.len() + 1;
    // Match ids are packed in 20 bits too, whatever the capacity.
    let match_capacity = cap.matches.min(MAX_RULES as usize + 1);
    if needed_matches > match_capacity {
        return Err(CompileError::MatchesFull {
            needed: needed_matches,
            capacity: match_capacity,
        });
    }

    let mut matches = vec![nr_fw_match::default(); needed_matches];
    let mut l4 = Vec::new();
    let mut builder = Builder::new();
    for (i, p) in prefixes.iter().enumerate() {
        let mid = i as u32 + 1;
        // Walk from the shortest ancestor to the prefix itself: a longer
        // prefix's rule replaces a shorter one's.
        let mut any_rule: Option<(u8, u32)> = None;
        let mut best_l4: BTreeMap<(u8, u16), (u8, u8, u32)> = BTreeMap::new();
        for &len in lengths[&(p.out, p.family)]
            .iter()
            .take_while(|&&l| l <= p.len)
        {
            if let Some(o) = own.get(&p.truncated(len)) {
                if let Some(pick) = o.any_rule {
                    any_rule = Some((len, pick.id));
                }
                for (&(proto, port), pick) in &o.l4 {
                    best_l4.insert((proto, port), (len, specificity(port), pick.id));
                }
            }
        }
        // Each protocol/port entry against the protocol's entry and the
        // catch-all: the most specific of them (see compile) decides.
        let eff_l4: Vec<((u8, u16), u32)> = best_l4
            .iter()
            .map(|(&(proto, port), &own_best)| {
                let mut best = own_best;
                if port != 0 {
                    if let Some(&whole) = best_l4.get(&(proto, 0)) {
                        best = best.max(whole);
                    }
                }
                if let Some((len, id)) = any_rule {
                    best = best.max((len, 0, id));
                }
                ((proto, port), best.2)
            })
            .collect();
        let any_id = any_rule.map(|(_, id)| id);
        let m = &mut matches[mid as usize];
        // A verdict for every protocol goes straight into the leaf.
        let leaf = match any_id {
            Some(r) if eff_l4.iter().all(|(_, id)| *id == r) => {
                m.any_rule = r;
                r
            }
            _ => {
                m.any_rule = any_id.unwrap_or(0);
                m.flags = nr_fw_match_flags::NR_FW_MATCH_L4.0;
                l4.extend(eff_l4.into_iter().map(|((proto, port), rule_id)| L4Entry {
                    match_id: mid,
                    proto,
                    port,
                    rule_id,
                }));
                LEAF_L4 | mid
            }
        };
        builder.insert(p, leaf);
    }
    let (chunks, ranges) = builder.emit(cap)?;
    Ok(Compiled {
        chunks,
        ranges,
        matches,
        l4,
        rules: rules.len(),
        rule_ids: rules.iter().map(|(id, _)| *id).collect(),
    })
}
