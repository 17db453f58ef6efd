//! How a node is packed into a fw_ranges element (struct nr_fw_range and
//! its half, quarter and island forms in netray_abi.h): which part of
//! which element it takes, and the bytes written there.

use netray_ebpf::abi::{
    bytes_of, from_bytes, nr_fw_isles, nr_fw_isles_half, nr_fw_isles_quarter, nr_fw_range, nr_fw_range_half,
    nr_fw_range_quarter,
};

use super::*;

/// Hands out fw_ranges elements: a block takes one, two half blocks or four
/// quarter blocks share one.
#[derive(Default)]
pub(super) struct RangeUnits {
    pub(super) elements: u32,
    /// The element whose second half is free.
    free_half: Option<u32>,
    /// The element with free quarters, and the next of them (1-3).
    free_quarter: Option<(u32, u32)>,
}

impl RangeUnits {
    /// The range pointer (RANGE, HALF/QUARTER, SECOND, ODD, element) of a
    /// new block of `size`.
    pub(super) fn place(&mut self, size: BlockSize) -> u32 {
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
pub(super) enum BlockSize {
    Quarter,
    Half,
    Whole,
}

impl BlockSize {
    /// The smallest run block for `runs` runs, if any.
    pub(super) fn for_runs(runs: usize) -> Option<BlockSize> {
        BlockSize::smallest(runs, [QUARTER_RUNS, HALF_KEYS, RANGE_KEYS])
    }

    /// The smallest island block for `islands` islands, if any.
    pub(super) fn for_islands(islands: usize) -> Option<BlockSize> {
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
pub(super) struct Isles {
    pub(super) background: u32,
    pub(super) islands: Vec<(u16, u16, u32)>,
}

impl Isles {
    /// The islands of a node's runs over 16-bit keys. The background is the
    /// leaf of the most runs (the first run's on a tie), which leaves the
    /// fewest islands.
    pub(super) fn of(runs: &[(u16, u32)]) -> Isles {
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
    pub(super) fn layout<const N: usize, const W: usize>(&self) -> ([u16; N], [u16; N], [u64; W]) {
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
pub(super) fn pack_leaf(leaf: u32) -> u64 {
    let id = leaf & !LEAF_L4;
    assert!(id < 1 << ISLE_ID_BITS, "leaf ids are checked against MAX_RULES before compiling");
    u64::from(id | if leaf & LEAF_L4 != 0 { 1 << ISLE_ID_BITS } else { 0 })
}

pub(super) fn unpack_leaf(packed: u64) -> u32 {
    let id = (packed & ((1 << ISLE_ID_BITS) - 1)) as u32;
    id | if packed >> ISLE_ID_BITS & 1 != 0 { LEAF_L4 } else { 0 }
}

/// Writes the island block a wide range pointer `at` names into its element.
pub(super) fn write_isles(element: &mut nr_fw_range, at: u32, isles: &Isles) {
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

/// Keys and entries of a block from its runs; unused slots repeat the last
/// run, so counting the keys <= k still lands on it.
pub(super) fn fill_block<const N: usize>(keys: &mut [u16; N], entries: &mut [u32; N], runs: impl Iterator<Item = (u16, u32)>) {
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
pub(super) fn write_block(element: &mut nr_fw_range, at: u32, runs: impl Iterator<Item = (u16, u32)>) {
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

pub(super) const HALF_BYTES: usize = std::mem::size_of::<nr_fw_range_half>();
pub(super) const QUARTER_BYTES: usize = std::mem::size_of::<nr_fw_range_quarter>();
const _: () = assert!(2 * HALF_BYTES == std::mem::size_of::<nr_fw_range>());
const _: () = assert!(4 * QUARTER_BYTES == std::mem::size_of::<nr_fw_range>());

/// Where in its element the half or quarter block of a range pointer starts.
pub(super) fn part_offset(at: u32) -> usize {
    (if at & SECOND != 0 { HALF_BYTES } else { 0 }) + (if at & ODD != 0 { QUARTER_BYTES } else { 0 })
}
