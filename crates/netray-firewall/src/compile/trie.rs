//! The trie under construction: prefixes written shortest first into runs,
//! then each node placed as a chunk, a range block or an island block.

use std::collections::HashMap;

use netray_ebpf::abi::nr_fw_range;

use super::*;

/// A node below the roots while building: its 256 entries as sorted runs
/// (start, entry), so a sparse node costs a few words, not 1 KiB.
#[derive(Debug, Clone)]
pub(super) struct Runs(pub(super) Vec<(u16, u32)>);

impl Runs {
    pub(super) fn uniform(entry: u32) -> Runs {
        Runs(vec![(0, entry)])
    }

    pub(super) fn get(&self, k: u16) -> u32 {
        let i = self.0.partition_point(|&(start, _)| start <= k) - 1;
        self.0[i].1
    }

    /// Sets keys [lo, hi) to `entry`.
    pub(super) fn fill(&mut self, lo: u16, hi: u16, entry: u32) {
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
pub(super) struct Builder {
    roots: Vec<Chunk>,
    nodes: Vec<Runs>,
    /// Nodes right below an IPv4 root (they cover address bytes 2-3).
    v4_second: Vec<bool>,
}

impl Builder {
    pub(super) fn new() -> Builder {
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
    pub(super) fn insert(&mut self, p: &Prefix, value: u32) {
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
    pub(super) fn emit(self, cap: Capacity) -> Result<(Vec<Chunk>, Vec<nr_fw_range>), CompileError> {
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
