//! The kernel's walk of the compiled tables (nr_fw_match_id() and
//! nr_fw_decide() in firewall.h), step for step in Rust:
//! what the tests hold against the brute-force definition of the rules.

use netray_ebpf::abi::{bytes_of, from_bytes, nr_fw_isles, nr_fw_isles_half, nr_fw_isles_quarter, nr_fw_range, nr_fw_range_half, nr_fw_range_quarter};

use super::blocks::{part_offset, unpack_leaf, HALF_BYTES, QUARTER_BYTES};
use super::*;

/// The leaf of key k in the island block a wide range pointer `at` names:
/// the kernel's search (nr_fw_isle_leaf() in firewall.h), step for step.
pub(super) fn isles_pick(element: &nr_fw_range, at: u32, k: u16) -> u32 {
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

/// The entry of the run holding key k in the block a range pointer `at`
/// names (nr_fw_block_entry() in firewall.h).
pub(super) fn block_pick(element: &nr_fw_range, at: u32, k: u16) -> u32 {
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

    /// The rule that decides a packet in a direction: `out` matches sent
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
        dport.and_then(find).or_else(|| find(0)).unwrap_or(self.matches[mid as usize].any_rule)
    }
}
