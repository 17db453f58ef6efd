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

use netray_ebpf::abi::{
    bytes_of, from_bytes, nr_fw_isle_layout, nr_fw_isles, nr_fw_isles_half, nr_fw_isles_quarter, nr_fw_layout,
    nr_fw_match, nr_fw_match_flags, nr_fw_range, nr_fw_range_half, nr_fw_range_quarter,
};

use crate::rule::Rule;

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
    any_rule: Option<u32>,
    /// (proto, port) -> rule id; port 0 = every port of the protocol.
    l4: BTreeMap<(u8, u16), u32>,
}

/// Compiles `rules` (rule id, rule). Fails, changing nothing, when the
/// result would not fit `cap`.
pub fn compile(rules: &[(u32, Rule)], cap: Capacity) -> Result<Compiled, CompileError> {
    let mut own: HashMap<Prefix, Own> = HashMap::new();
    for (id, rule) in rules {
        for out in [false, true] {
            if (out && !rule.dir.has_out()) || (!out && !rule.dir.has_in()) {
                continue;
            }
            let entry = own.entry(Prefix::of(rule, out)).or_default();
            let protos = rule.proto_numbers();
            if protos.is_empty() {
                // Keep the lowest id so the result does not depend on order.
                entry.any_rule = Some(entry.any_rule.map_or(*id, |old| old.min(*id)));
            }
            for proto in protos {
                let slot = entry
                    .l4
                    .entry((proto, rule.port.unwrap_or(0)))
                    .or_insert(*id);
                *slot = (*slot).min(*id);
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
        // Walk from the shortest ancestor to the prefix itself, so the most
        // specific rule wins the attribution of a hit.
        let mut any_rule = None;
        let mut eff_l4: BTreeMap<(u8, u16), u32> = BTreeMap::new();
        for &len in lengths[&(p.out, p.family)]
            .iter()
            .take_while(|&&l| l <= p.len)
        {
            if let Some(o) = own.get(&p.truncated(len)) {
                if o.any_rule.is_some() {
                    any_rule = o.any_rule;
                }
                eff_l4.extend(o.l4.iter().map(|(k, v)| (*k, *v)));
            }
        }
        let m = &mut matches[mid as usize];
        // A catch-all verdict goes straight into the leaf.
        let leaf = if let Some(r) = any_rule {
            m.any_rule = r;
            r
        } else {
            m.flags = nr_fw_match_flags::NR_FW_MATCH_L4.0;
            l4.extend(eff_l4.into_iter().map(|((proto, port), rule_id)| L4Entry {
                match_id: mid,
                proto,
                port,
                rule_id,
            }));
            LEAF_L4 | mid
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
    })
}

/// A node below the roots while building: its 256 entries as sorted runs
/// (start, entry), so a sparse node costs a few words, not 1 KiB.
#[derive(Debug, Clone)]
struct Runs(Vec<(u16, u32)>);

impl Runs {
    fn uniform(entry: u32) -> Runs {
        Runs(vec![(0, entry)])
    }

    fn get(&self, k: u16) -> u32 {
        let i = self.0.partition_point(|&(start, _)| start <= k) - 1;
        self.0[i].1
    }

    /// Sets keys [lo, hi) to `entry`.
    fn fill(&mut self, lo: u16, hi: u16, entry: u32) {
        let after = if hi < 256 { Some(self.get(hi)) } else { None };
        self.0.retain(|&(start, _)| start < lo || start >= hi);
        let at = self.0.partition_point(|&(start, _)| start < lo);
        self.0.insert(at, (lo, entry));
        if let Some(after) = after {
            if self.0.get(at + 1).is_none_or(|&(start, _)| start != hi) {
                self.0.insert(at + 1, (hi, after));
            }
        }
        // Merge neighbours that hold the same entry.
        self.0.dedup_by(|next, prev| next.1 == prev.1);
    }
}

/// Builds the trie with pointer entries (PTR | node index) between roots
/// and nodes, then emits each node as a range block or a chunk.
struct Builder {
    roots: Vec<Chunk>,
    nodes: Vec<Runs>,
    /// Nodes right below an IPv4 root (they cover address bytes 2-3).
    v4_second: Vec<bool>,
}

impl Builder {
    fn new() -> Builder {
        Builder {
            roots: vec![[0u32; CHUNK_ENTRIES]; ROOT_CHUNKS],
            nodes: Vec::new(),
            v4_second: Vec::new(),
        }
    }

    fn new_node(&mut self, entry: u32, v4_second: bool) -> usize {
        self.nodes.push(Runs::uniform(entry));
        self.v4_second.push(v4_second);
        self.nodes.len() - 1
    }

    /// The runs of an IPv4 second-level node and its children, over 16-bit
    /// keys (address bytes 2-3).
    fn wide_runs(&self, node: usize) -> Vec<(u16, u32)> {
        let mut out: Vec<(u16, u32)> = Vec::new();
        for &(start, e) in &self.nodes[node].0 {
            if e & PTR != 0 {
                // A child hangs off exactly one key.
                for &(cs, ce) in &self.nodes[(e & INDEX_MASK) as usize].0 {
                    out.push((start << 8 | cs, ce));
                }
            } else {
                out.push((start << 8, e));
            }
        }
        out.dedup_by(|next, prev| next.1 == prev.1);
        out
    }

    /// Writes `value` over the prefix's range. Prefixes arrive shortest
    /// first, so the entries a prefix ends on are leaves (only longer
    /// prefixes make child nodes) and longer prefixes overwrite shorter ones:
    /// longest match wins.
    fn insert(&mut self, p: &Prefix, value: u32) {
        let root = p.root();
        let len = p.len as usize;
        let first = root + p.addr[0] as usize;
        if len <= 8 {
            for c in &mut self.roots[first..first + (1 << (8 - len))] {
                c.fill(value);
            }
            return;
        }
        let idx = p.addr[1] as usize;
        if len <= 16 {
            self.roots[first][idx..idx + (1 << (16 - len))].fill(value);
            return;
        }
        let mut node = match self.roots[first][idx] {
            e if e & PTR != 0 => (e & INDEX_MASK) as usize,
            e => {
                let n = self.new_node(e, p.family == 4);
                self.roots[first][idx] = PTR | n as u32;
                n
            }
        };
        let mut byte = 2;
        loop {
            let level_end = 8 * (byte + 1);
            let k = p.addr[byte] as u16;
            if len <= level_end {
                self.nodes[node].fill(k, k + (1 << (level_end - len)), value);
                return;
            }
            node = match self.nodes[node].get(k) {
                e if e & PTR != 0 => (e & INDEX_MASK) as usize,
                e => {
                    let child = self.new_node(e, false);
                    self.nodes[node].fill(k, k + 1, PTR | child as u32);
                    child
                }
            };
            byte += 1;
        }
    }

    /// Final chunks (roots first) and range slots, pointers renumbered.
    fn emit(self, cap: Capacity) -> Result<(Vec<Chunk>, Vec<nr_fw_range>), CompileError> {
        const ABSORBED: u32 = u32::MAX;
        // Where each node goes: a wide range block (an IPv4 second-level node
        // with its children, when they fit one), a range block, or a chunk.
        // Children always come after their parent, so a parent decides first.
        let mut placed = vec![0u32; self.nodes.len()];
        let mut wide: HashMap<usize, Isles> = HashMap::new();
        let mut n_chunks = ROOT_CHUNKS as u32;
        let mut units = RangeUnits::default();
        for (i, node) in self.nodes.iter().enumerate() {
            if placed[i] == ABSORBED {
                continue;
            }
            if self.v4_second[i] {
                let isles = Isles::of(&self.wide_runs(i));
                if let Some(size) = BlockSize::for_islands(isles.islands.len()) {
                    for &(_, e) in &node.0 {
                        if e & PTR != 0 {
                            placed[(e & INDEX_MASK) as usize] = ABSORBED;
                        }
                    }
                    placed[i] = WIDE | units.place(size);
                    wide.insert(i, isles);
                    continue;
                }
            }
            if let Some(size) = BlockSize::for_runs(node.0.len()) {
                placed[i] = units.place(size);
            } else {
                placed[i] = PTR | n_chunks;
                n_chunks += 1;
            }
        }
        let n_ranges = units.elements;
        if n_chunks as usize > cap.chunks {
            return Err(CompileError::ChunksFull {
                needed: n_chunks as usize,
                capacity: cap.chunks,
            });
        }
        if n_ranges as usize > cap.ranges {
            return Err(CompileError::RangesFull {
                needed: n_ranges as usize,
                capacity: cap.ranges,
            });
        }
        let fix = |e: u32| {
            if e & PTR != 0 {
                placed[(e & INDEX_MASK) as usize]
            } else {
                e
            }
        };

        let mut chunks = self.roots;
        for c in &mut chunks {
            for e in c.iter_mut() {
                *e = fix(*e);
            }
        }
        let mut ranges = vec![nr_fw_range::default(); n_ranges as usize];
        for (i, node) in self.nodes.iter().enumerate() {
            let at = placed[i];
            if at == ABSORBED {
                continue;
            }
            if at & RANGE != 0 {
                let element = &mut ranges[(at & INDEX_MASK) as usize];
                match wide.get(&i) {
                    // Their leaves are leaves: children were folded in.
                    Some(isles) => write_isles(element, at, isles),
                    None => write_block(element, at, node.0.iter().map(|&(k, e)| (k, fix(e)))),
                }
            } else {
                let mut c = [0u32; CHUNK_ENTRIES];
                for (j, &(start, e)) in node.0.iter().enumerate() {
                    let end = node.0.get(j + 1).map_or(CHUNK_ENTRIES, |n| n.0 as usize);
                    c[start as usize..end].fill(fix(e));
                }
                chunks.push(c);
            }
        }
        Ok((chunks, ranges))
    }
}

/// Hands out fw_ranges elements: a block takes one, two half blocks or four
/// quarter blocks share one.
#[derive(Default)]
struct RangeUnits {
    elements: u32,
    /// The element whose second half is free.
    free_half: Option<u32>,
    /// The element with free quarters, and the next of them (1-3).
    free_quarter: Option<(u32, u32)>,
}

impl RangeUnits {
    /// The range pointer (RANGE, HALF/QUARTER, SECOND, ODD, element) of a
    /// new block of `size`.
    fn place(&mut self, size: BlockSize) -> u32 {
        if size == BlockSize::Quarter {
            let (e, q) = self.free_quarter.take().unwrap_or_else(|| (self.new_element(), 0));
            if q < 3 {
                self.free_quarter = Some((e, q + 1));
            }
            return RANGE | QUARTER | if q & 2 != 0 { SECOND } else { 0 } | if q & 1 != 0 { ODD } else { 0 } | e;
        }
        if size == BlockSize::Half {
            if let Some(e) = self.free_half.take() {
                return RANGE | HALF | SECOND | e;
            }
            let e = self.new_element();
            self.free_half = Some(e);
            return RANGE | HALF | e;
        }
        RANGE | self.new_element()
    }

    fn new_element(&mut self) -> u32 {
        self.elements += 1;
        self.elements - 1
    }
}

/// How much of a fw_ranges element a block takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockSize {
    Quarter,
    Half,
    Whole,
}

impl BlockSize {
    /// The smallest run block for `runs` runs, if any.
    fn for_runs(runs: usize) -> Option<BlockSize> {
        BlockSize::smallest(runs, [QUARTER_RUNS, HALF_KEYS, RANGE_KEYS])
    }

    /// The smallest island block for `islands` islands, if any.
    fn for_islands(islands: usize) -> Option<BlockSize> {
        BlockSize::smallest(islands, [ISLES_QUARTER, ISLES_HALF, ISLES])
    }

    /// The smallest size whose capacity (quarter, half, whole) holds `n`.
    fn smallest(n: usize, capacity: [usize; 3]) -> Option<BlockSize> {
        [BlockSize::Quarter, BlockSize::Half, BlockSize::Whole]
            .into_iter()
            .zip(capacity)
            .find(|&(_, c)| n <= c)
            .map(|(size, _)| size)
    }
}

/// An IPv4 /16 as islands (struct nr_fw_isles): key ranges (start, last
/// key, leaf) over address bytes 2-3, sorted and disjoint, on a background
/// leaf that holds everywhere else.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Isles {
    background: u32,
    islands: Vec<(u16, u16, u32)>,
}

impl Isles {
    /// The islands of a node's runs over 16-bit keys. The background is the
    /// leaf of the most runs (the first run's on a tie), which leaves the
    /// fewest islands.
    fn of(runs: &[(u16, u32)]) -> Isles {
        let mut counts: Vec<(u32, usize)> = Vec::new();
        for &(_, leaf) in runs {
            match counts.iter_mut().find(|(l, _)| *l == leaf) {
                Some((_, n)) => *n += 1,
                None => counts.push((leaf, 1)),
            }
        }
        // max_by_key keeps the last maximum: search reversed for the first.
        let background = counts.iter().rev().max_by_key(|(_, n)| *n).map_or(0, |(l, _)| *l);
        let islands = runs
            .iter()
            .enumerate()
            .filter(|(_, (_, leaf))| *leaf != background)
            .map(|(j, &(start, leaf))| (start, runs.get(j + 1).map_or(u16::MAX, |next| next.0 - 1), leaf))
            .collect();
        Isles { background, islands }
    }

    /// start, last and the packed leaves (background first) of a block of
    /// N islands, unused ones padded as netray_abi.h says.
    fn layout<const N: usize, const W: usize>(&self) -> ([u16; N], [u16; N], [u64; W]) {
        let pad = match self.islands.last() {
            Some(&(_, u16::MAX, leaf)) => (u16::MAX, u16::MAX, leaf),
            _ => (u16::MAX, u16::MAX - 1, self.background),
        };
        let (mut start, mut last, mut leaves) = ([0u16; N], [0u16; N], [0u64; W]);
        let mut put = |i: usize, leaf: u32| {
            leaves[i / ISLE_LEAVES_PER_WORD] |= pack_leaf(leaf) << (ISLE_LEAF_BITS as usize * (i % ISLE_LEAVES_PER_WORD));
        };
        put(0, self.background);
        for i in 0..N {
            let (s, l, leaf) = self.islands.get(i).copied().unwrap_or(pad);
            start[i] = s;
            last[i] = l;
            put(i + 1, leaf);
        }
        (start, last, leaves)
    }
}

/// A leaf in the 21 bits of an island block: the id, and LEAF_L4 as bit 20.
fn pack_leaf(leaf: u32) -> u64 {
    let id = leaf & !LEAF_L4;
    assert!(id < 1 << ISLE_ID_BITS, "leaf ids are checked against MAX_RULES before compiling");
    u64::from(id | if leaf & LEAF_L4 != 0 { 1 << ISLE_ID_BITS } else { 0 })
}

fn unpack_leaf(packed: u64) -> u32 {
    let id = (packed & ((1 << ISLE_ID_BITS) - 1)) as u32;
    id | if packed >> ISLE_ID_BITS & 1 != 0 { LEAF_L4 } else { 0 }
}

/// Writes the island block a wide range pointer `at` names into its element.
fn write_isles(element: &mut nr_fw_range, at: u32, isles: &Isles) {
    let mut bytes = bytes_of(element).to_vec();
    let off = part_offset(at);
    let part: Vec<u8> = if at & QUARTER != 0 {
        let (start, last, [leaves]) = isles.layout::<ISLES_QUARTER, 1>();
        bytes_of(&nr_fw_isles_quarter { start, last, leaves }).to_vec()
    } else if at & HALF != 0 {
        let (start, last, leaves) = isles.layout::<ISLES_HALF, 2>();
        bytes_of(&nr_fw_isles_half { start, last, leaves }).to_vec()
    } else {
        let (start, last, leaves) = isles.layout::<ISLES, 3>();
        bytes_of(&nr_fw_isles { start, last, leaves, _pad: 0 }).to_vec()
    };
    bytes[off..off + part.len()].copy_from_slice(&part);
    *element = from_bytes(&bytes).expect("a whole element");
}

/// The leaf of key k in the island block a wide range pointer `at` names:
/// the kernel's search (nr_fw_isle_leaf() in firewall.h), step for step.
fn isles_pick(element: &nr_fw_range, at: u32, k: u16) -> u32 {
    fn pick(start: &[u16], last: &[u16], leaves: &[u64], k: u16) -> u32 {
        let count = start.iter().filter(|&&s| s <= k).count();
        let candidate = count.wrapping_sub(1) & (start.len() - 1);
        let pos = if k <= last[candidate] { count } else { 0 };
        unpack_leaf(leaves[pos / ISLE_LEAVES_PER_WORD] >> (ISLE_LEAF_BITS as usize * (pos % ISLE_LEAVES_PER_WORD)))
    }
    let bytes = &bytes_of(element)[part_offset(at)..];
    if at & QUARTER != 0 {
        let q: nr_fw_isles_quarter = from_bytes(bytes).expect("a quarter");
        return pick(&q.start, &q.last, &[q.leaves], k);
    }
    if at & HALF != 0 {
        let h: nr_fw_isles_half = from_bytes(bytes).expect("a half");
        return pick(&h.start, &h.last, &h.leaves, k);
    }
    let w: nr_fw_isles = from_bytes(bytes).expect("a whole element");
    pick(&w.start, &w.last, &w.leaves, k)
}

/// Keys and entries of a block from its runs; unused slots repeat the last
/// run, so counting the keys <= k still lands on it.
fn fill_block<const N: usize>(keys: &mut [u16; N], entries: &mut [u32; N], runs: impl Iterator<Item = (u16, u32)>) {
    let mut n = 0;
    for (k, e) in runs {
        keys[n] = k;
        entries[n] = e;
        n += 1;
    }
    for i in n..N {
        keys[i] = keys[n - 1];
        entries[i] = entries[n - 1];
    }
}

/// Writes the block a range pointer `at` names into its element.
fn write_block(element: &mut nr_fw_range, at: u32, runs: impl Iterator<Item = (u16, u32)>) {
    let mut bytes = bytes_of(element).to_vec();
    let off = part_offset(at);
    if at & QUARTER != 0 {
        // Keys of runs 1 and 2 (run 0 starts at 0), from the padded runs.
        let (mut keys, mut entries) = ([0u16; QUARTER_RUNS], [0u32; QUARTER_RUNS]);
        fill_block(&mut keys, &mut entries, runs);
        let q = nr_fw_range_quarter { key: [keys[1], keys[2]], entry: entries };
        bytes[off..off + QUARTER_BYTES].copy_from_slice(bytes_of(&q));
    } else if at & HALF != 0 {
        let mut half = nr_fw_range_half::default();
        fill_block(&mut half.key, &mut half.entry, runs);
        bytes[off..off + HALF_BYTES].copy_from_slice(bytes_of(&half));
    } else {
        fill_block(&mut element.key, &mut element.entry, runs);
        return;
    }
    *element = from_bytes(&bytes).expect("a whole element");
}

const HALF_BYTES: usize = std::mem::size_of::<nr_fw_range_half>();
const QUARTER_BYTES: usize = std::mem::size_of::<nr_fw_range_quarter>();
const _: () = assert!(2 * HALF_BYTES == std::mem::size_of::<nr_fw_range>());
const _: () = assert!(4 * QUARTER_BYTES == std::mem::size_of::<nr_fw_range>());

/// Where in its element the half or quarter block of a range pointer starts.
fn part_offset(at: u32) -> usize {
    (if at & SECOND != 0 { HALF_BYTES } else { 0 }) + (if at & ODD != 0 { QUARTER_BYTES } else { 0 })
}

/// The entry of the run holding key k in the block a range pointer `at`
/// names (nr_fw_block_entry() in firewall.h).
fn block_pick(element: &nr_fw_range, at: u32, k: u16) -> u32 {
    let off = part_offset(at);
    if at & QUARTER != 0 {
        let q: nr_fw_range_quarter =
            from_bytes(&bytes_of(element)[off..off + QUARTER_BYTES]).expect("a whole quarter");
        return q.entry[q.key.iter().filter(|&&key| key <= k).count()];
    }
    if at & HALF == 0 {
        return element.entry[element.key[1..].iter().filter(|&&key| key <= k).count()];
    }
    let h: nr_fw_range_half = from_bytes(&bytes_of(element)[off..off + HALF_BYTES]).expect("a whole half");
    h.entry[h.key[1..].iter().filter(|&&key| key <= k).count()]
}

impl Compiled {
    /// The leaf the kernel's walk finds for an address (4 or 16 bytes): the
    /// same algorithm as nr_fw_match_id() in firewall.h.
    pub fn lookup_match(&self, addr: &[u8]) -> u32 {
        self.lookup_match_dir(addr, false)
    }

    /// Like `lookup_match`, in the "in" (false) or "out" (true) trie.
    pub fn lookup_match_dir(&self, addr: &[u8], out: bool) -> u32 {
        let v4 = addr.len() == 4;
        let root = if out { ROOT_OUT } else { 0 } + if v4 { ROOT_V4 } else { ROOT_V6 };
        let mut entry = self.chunks[root + addr[0] as usize][addr[1] as usize];
        for &b in &addr[2..] {
            let idx = (entry & INDEX_MASK) as usize;
            entry = if entry & PTR != 0 {
                self.chunks[idx][b as usize]
            } else if entry & RANGE != 0 {
                let element = &self.ranges[idx];
                if entry & WIDE != 0 {
                    return isles_pick(element, entry, u16::from_be_bytes([addr[2], addr[3]]));
                }
                block_pick(element, entry, b as u16)
            } else {
                return entry;
            };
        }
        if entry & (PTR | RANGE) != 0 {
            0
        } else {
            entry
        }
    }

    /// The rule that denies a received packet from `addr`, as nr_fw_decide()
    /// computes it.
    pub fn decide(&self, addr: &[u8], proto: u8, dport: Option<u16>) -> u32 {
        self.decide_dir(addr, proto, dport, false)
    }

    /// The rule that denies a packet in a direction: `out` matches sent
    /// packets by destination `addr`.
    pub fn decide_dir(&self, addr: &[u8], proto: u8, dport: Option<u16>, out: bool) -> u32 {
        let leaf = self.lookup_match_dir(addr, out);
        if leaf & LEAF_L4 == 0 {
            return leaf;
        }
        let mid = leaf & !LEAF_L4;
        let find = |port: u16| {
            self.l4
                .iter()
                .find(|e| e.match_id == mid && e.proto == proto && e.port == port)
                .map(|e| e.rule_id)
        };
        dport.and_then(find).or_else(|| find(0)).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use rand::{rngs::StdRng, Rng, SeedableRng};

    use super::*;

    fn rule(s: &str, proto: Option<&str>, port: Option<u16>) -> Rule {
        Rule::parse(s, proto, port, None).unwrap()
    }

    fn bytes(a: &str) -> Vec<u8> {
        match a.parse::<IpAddr>().unwrap() {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        }
    }

    /// The obvious, slow definition: any matching rule denies; the hit is
    /// attributed to the most specific catch-all, else the most specific
    /// (then lowest-id) protocol/port rule.
    fn brute(rules: &[(u32, Rule)], addr: &[u8], proto: u8, dport: Option<u16>) -> u32 {
        let ip: IpAddr = if addr.len() == 4 {
            IpAddr::from(<[u8; 4]>::try_from(addr).unwrap())
        } else {
            IpAddr::from(<[u8; 16]>::try_from(addr).unwrap())
        };
        let covering = rules.iter().filter(|(_, r)| r.net.contains(&ip));
        let any = covering
            .clone()
            .filter(|(_, r)| r.proto_numbers().is_empty())
            .max_by_key(|(id, r)| (r.net.prefix_len(), std::cmp::Reverse(*id)));
        if let Some((id, _)) = any {
            return *id;
        }
        let l4 = |port: u16| {
            covering
                .clone()
                .filter(|(_, r)| r.proto_numbers().contains(&proto) && r.port.unwrap_or(0) == port)
                .max_by_key(|(id, r)| (r.net.prefix_len(), std::cmp::Reverse(*id)))
                .map(|(id, _)| *id)
        };
        dport.and_then(l4).or_else(|| l4(0)).unwrap_or(0)
    }

    #[test]
    fn longest_prefix_and_protocol_rules() {
        let rules = vec![
            (1, rule("10.0.0.0/8", Some("udp"), Some(53))),
            (2, rule("10.1.0.0/16", None, None)),
            (3, rule("10.1.2.128/25", Some("tcp"), None)),
            (4, rule("192.0.2.7", None, None)),
            (5, rule("2001:db8::/32", Some("icmp"), None)),
            (6, rule("2001:db8:1::/48", None, Some(22))),
        ];
        let c = compile(&rules, Capacity::UNLIMITED).unwrap();
        assert_eq!(c.decide(&bytes("10.9.9.9"), 17, Some(53)), 1);
        assert_eq!(c.decide(&bytes("10.9.9.9"), 17, Some(54)), 0);
        assert_eq!(c.decide(&bytes("10.9.9.9"), 6, Some(53)), 0);
        assert_eq!(c.decide(&bytes("10.1.2.3"), 6, Some(80)), 2);
        assert_eq!(
            c.decide(&bytes("10.1.2.200"), 6, Some(80)),
            2,
            "a catch-all on an ancestor still applies"
        );
        assert_eq!(c.decide(&bytes("192.0.2.7"), 1, None), 4);
        assert_eq!(c.decide(&bytes("192.0.2.8"), 1, None), 0);
        assert_eq!(c.decide(&bytes("2001:db8:5::1"), 58, None), 5);
        assert_eq!(
            c.decide(&bytes("2001:db8:1::1"), 58, None),
            5,
            "inherited from the /32"
        );
        assert_eq!(c.decide(&bytes("2001:db8:1::1"), 6, Some(22)), 6);
        assert_eq!(c.decide(&bytes("2001:db8:1::1"), 6, Some(23)), 0);
        assert_eq!(c.decide(&bytes("2001:db9::1"), 58, None), 0);
    }

    #[test]
    fn default_routes_and_host_routes() {
        let rules = vec![
            (1, rule("0.0.0.0/0", Some("tcp"), Some(23))),
            (2, rule("::/0", None, None)),
            (3, rule("1.2.3.4", None, None)),
        ];
        let c = compile(&rules, Capacity::UNLIMITED).unwrap();
        assert_eq!(c.decide(&bytes("8.8.8.8"), 6, Some(23)), 1);
        assert_eq!(c.decide(&bytes("1.2.3.4"), 6, Some(23)), 3);
        assert_eq!(c.decide(&bytes("1.2.3.5"), 17, Some(23)), 0);
        assert_eq!(c.decide(&bytes("fe80::1"), 17, None), 2);
    }

    #[test]
    fn matches_brute_force_on_random_rule_sets() {
        let mut rng = StdRng::seed_from_u64(7);
        for round in 0..20 {
            let mut rules = Vec::new();
            let mut seen = std::collections::HashSet::new();
            while rules.len() < 200 {
                let v6 = rng.random_bool(0.3);
                // Addresses from a small space so prefixes nest and collide.
                let len = if v6 {
                    rng.random_range(0..=128u8)
                } else {
                    rng.random_range(0..=32u8)
                };
                let base = if v6 {
                    let mut o = [0u8; 16];
                    o[0] = 0x20;
                    o[1] = rng.random_range(0..4);
                    o[15] = rng.random_range(0..8);
                    IpAddr::from(o)
                } else {
                    IpAddr::from([
                        10,
                        rng.random_range(0..4),
                        rng.random_range(0..4),
                        rng.random_range(0..8),
                    ])
                };
                let net = ipnet::IpNet::new(base, len).unwrap().trunc();
                let (proto, port) = match rng.random_range(0..4) {
                    0 => (None, None),
                    1 => (Some("udp"), Some(rng.random_range(1..4u16))),
                    2 => (Some("icmp"), None),
                    _ => (None, Some(rng.random_range(1..4u16))),
                };
                let r = Rule::parse(&net.to_string(), proto, port, None).unwrap();
                if seen.insert(r.clone()) {
                    rules.push((rules.len() as u32 + 1, r));
                }
            }
            let c = compile(&rules, Capacity::UNLIMITED).unwrap();
            for _ in 0..2000 {
                let addr: Vec<u8> = if rng.random_bool(0.3) {
                    let mut o = vec![0u8; 16];
                    o[0] = 0x20;
                    o[1] = rng.random_range(0..4);
                    o[15] = rng.random_range(0..8);
                    o
                } else {
                    vec![
                        10,
                        rng.random_range(0..4),
                        rng.random_range(0..4),
                        rng.random_range(0..8),
                    ]
                };
                let proto = [6u8, 17, 1, 58, 132][rng.random_range(0..5)];
                let dport =
                    (proto == 6 || proto == 17 || proto == 132).then(|| rng.random_range(1..4u16));
                assert_eq!(
                    c.decide(&addr, proto, dport),
                    brute(&rules, &addr, proto, dport),
                    "round {round}: addr {addr:?} proto {proto} dport {dport:?}"
                );
            }
        }
    }

    #[test]
    fn directions_have_their_own_tries() {
        let r = |s: &str, dir: &str| Rule::parse(s, None, None, Some(dir)).unwrap();
        let rules = vec![
            (1, r("10.0.0.0/8", "in")),
            (2, r("10.1.0.0/16", "out")),
            (3, r("2001:db8::/32", "both")),
        ];
        let c = compile(&rules, Capacity::UNLIMITED).unwrap();
        assert_eq!(c.decide_dir(&bytes("10.1.2.3"), 6, Some(1), false), 1);
        assert_eq!(c.decide_dir(&bytes("10.1.2.3"), 6, Some(1), true), 2);
        assert_eq!(c.decide_dir(&bytes("10.2.2.3"), 6, Some(1), true), 0);
        assert_eq!(c.decide_dir(&bytes("2001:db8::1"), 17, Some(1), false), 3);
        assert_eq!(c.decide_dir(&bytes("2001:db8::1"), 17, Some(1), true), 3);
    }

    #[test]
    fn capacity_is_enforced() {
        let rules: Vec<_> = (0..10u32)
            .map(|i| (i + 1, rule(&format!("10.{i}.0.1"), None, None)))
            .collect();
        let c = compile(&rules, Capacity::UNLIMITED).unwrap();
        // Each /32 alone in its /16: one wide quarter block (3 runs) each,
        // four to an element.
        assert_eq!((c.chunks.len(), c.ranges.len()), (ROOT_CHUNKS, 3));
        let cap = |chunks, ranges, matches| Capacity {
            chunks,
            ranges,
            matches,
        };
        assert!(matches!(
            compile(&rules, cap(10_000, 2, 100)),
            Err(CompileError::RangesFull { needed: 3, .. })
        ));
        assert!(matches!(
            compile(&rules, cap(10_000, 100, 5)),
            Err(CompileError::MatchesFull { .. })
        ));
        // 20 hosts in one /24 make 41 runs: a dense chunk under a byte-wide
        // range block (the /16 node has 3 runs, its subtree too many).
        let dense: Vec<_> = (0..20u32)
            .map(|i| (i + 1, rule(&format!("10.0.0.{}", i * 2 + 1), None, None)))
            .collect();
        let c = compile(&dense, Capacity::UNLIMITED).unwrap();
        assert_eq!((c.chunks.len(), c.ranges.len()), (ROOT_CHUNKS + 1, 1));
        assert!(matches!(
            compile(&dense, cap(ROOT_CHUNKS, 100, 100)),
            Err(CompileError::ChunksFull { .. })
        ));
        for i in 0..40u8 {
            assert_eq!(
                c.decide(&[10, 0, 0, i], 17, None) != 0,
                i % 2 == 1,
                "10.0.0.{i}"
            );
        }
    }

    #[test]
    fn small_blocks_share_an_element_and_whole_blocks_take_their_own() {
        let mut u = RangeUnits::default();
        let size = |runs| BlockSize::for_runs(runs).unwrap();
        assert_eq!(u.place(size(3)), RANGE | QUARTER);
        assert_eq!(u.place(size(HALF_KEYS)), RANGE | HALF | 1);
        assert_eq!(u.place(size(2)), RANGE | QUARTER | ODD);
        assert_eq!(u.place(size(HALF_KEYS + 1)), RANGE | 2);
        assert_eq!(u.place(size(1)), RANGE | QUARTER | SECOND);
        assert_eq!(u.place(size(4)), RANGE | HALF | SECOND | 1);
        assert_eq!(u.place(size(3)), RANGE | QUARTER | SECOND | ODD);
        assert_eq!(u.place(size(3)), RANGE | QUARTER | 3);
        assert_eq!(BlockSize::for_runs(RANGE_KEYS + 1), None);
        assert_eq!(u.elements, 4);

        // Both halves of one element, four quarters of another and a whole
        // block, looked up.
        let mut halves = nr_fw_range::default();
        write_block(&mut halves, RANGE | HALF, [(0, 0), (100, 7), (200, 0)].into_iter());
        write_block(&mut halves, RANGE | HALF | SECOND, [(0, 9), (50, 8)].into_iter());
        for (k, lo, hi) in [(0, 0, 9), (99, 0, 8), (100, 7, 8), (199, 7, 8), (200, 0, 8), (65535, 0, 8)] {
            assert_eq!(block_pick(&halves, RANGE | HALF, k), lo, "first half, key {k}");
            assert_eq!(block_pick(&halves, RANGE | HALF | SECOND, k), hi, "second half, key {k}");
        }
        let mut quarters = nr_fw_range::default();
        let parts = [0, ODD, SECOND, SECOND | ODD];
        for (q, &part) in parts.iter().enumerate() {
            let q = q as u32;
            let runs: Vec<(u16, u32)> = [(0, q), (10 * q as u16 + 10, q + 10), (20 * q as u16 + 30, q + 20)]
                .into_iter()
                .take(q as usize % 3 + 1)
                .collect();
            write_block(&mut quarters, RANGE | QUARTER | part, runs.iter().copied());
        }
        for (q, &part) in parts.iter().enumerate() {
            let q = q as u32;
            let at = RANGE | QUARTER | part;
            let (k1, k2) = (10 * q as u16 + 10, 20 * q as u16 + 30);
            let runs = q % 3 + 1;
            assert_eq!(block_pick(&quarters, at, 0), q, "quarter {q}, key 0");
            assert_eq!(block_pick(&quarters, at, k1 - 1), q, "quarter {q}, before its second run");
            let second = if runs > 1 { q + 10 } else { q };
            assert_eq!(block_pick(&quarters, at, k1), second, "quarter {q}, its second run");
            let third = if runs > 2 { q + 20 } else { second };
            assert_eq!(block_pick(&quarters, at, k2), third, "quarter {q}, its third run");
            assert_eq!(block_pick(&quarters, at, 65535), third, "quarter {q}, key 65535");
        }
        let mut whole = nr_fw_range::default();
        let runs: Vec<(u16, u32)> = (0..RANGE_KEYS as u16).map(|i| (i * 10, u32::from(i) + 1)).collect();
        write_block(&mut whole, RANGE, runs.iter().copied());
        for &(k, e) in &runs {
            assert_eq!(block_pick(&whole, RANGE, k), e);
            assert_eq!(block_pick(&whole, RANGE, k + 9), e);
        }
    }

    #[test]
    fn island_blocks_find_every_key() {
        // Background, islands touching each other and both ends of the key
        // space, an L4 leaf and the largest id, in every block size.
        let big = MAX_RULES;
        let cases: Vec<Vec<(u16, u32)>> = vec![
            vec![(0, 0)],
            vec![(0, 5)],
            vec![(0, 0), (256, 7), (512, 0)],
            vec![(0, 9), (65535, 4)],
            vec![(0, 3), (10, 0)],
            vec![(0, 0), (100, 1), (200, 2), (300, 0)],
            vec![(0, 2), (1, LEAF_L4 | 6), (2, 2), (40000, big), (40001, 2), (65535, 8)],
            (0..16u16).map(|i| (i * 4000, if i % 2 == 1 { u32::from(i) } else { 77 })).collect(),
            (0..9u16).map(|i| (i * 7000, u32::from(i) + 100)).collect(),
        ];
        for runs in cases {
            let isles = Isles::of(&runs);
            let Some(size) = BlockSize::for_islands(isles.islands.len()) else {
                assert!(isles.islands.len() > ISLES, "{runs:?}");
                continue;
            };
            let mut u = RangeUnits::default();
            // Place a block of each smaller size first, so this one lands in
            // a second half or a last quarter (offsets are exercised).
            let at = match size {
                BlockSize::Quarter => {
                    for _ in 0..3 {
                        u.place(BlockSize::Quarter);
                    }
                    WIDE | u.place(size)
                }
                BlockSize::Half => {
                    u.place(BlockSize::Half);
                    WIDE | u.place(size)
                }
                BlockSize::Whole => WIDE | u.place(size),
            };
            let mut element = nr_fw_range::default();
            write_isles(&mut element, at, &isles);
            let want = |k: u16| runs[runs.partition_point(|&(s, _)| s <= k) - 1].1;
            let mut keys: Vec<u16> = vec![0, 1, 65534, 65535];
            for &(s, _) in &runs {
                keys.extend([s.saturating_sub(1), s, s.saturating_add(1)]);
            }
            for k in keys {
                assert_eq!(isles_pick(&element, at, k), want(k), "{runs:?} in {size:?}: key {k}");
            }
        }
    }

    #[test]
    fn ids_beyond_a_packed_leaf_are_refused() {
        let rules = vec![(MAX_RULES + 1, rule("10.0.0.1", None, None))];
        assert_eq!(
            compile(&rules, Capacity::UNLIMITED).unwrap_err(),
            CompileError::IdTooLarge { id: MAX_RULES + 1 }
        );
    }

    #[test]
    fn runs_fill_splits_and_merges() {
        let mut r = Runs::uniform(0);
        r.fill(10, 20, 5);
        assert_eq!(r.0, vec![(0, 0), (10, 5), (20, 0)]);
        r.fill(15, 256, 7);
        assert_eq!(r.0, vec![(0, 0), (10, 5), (15, 7)]);
        r.fill(0, 15, 7);
        assert_eq!(r.0, vec![(0, 7)]);
        r.fill(255, 256, 1);
        assert_eq!((r.get(254), r.get(255)), (7, 1));
    }
}
