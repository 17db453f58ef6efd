//! Classic BPF instructions (as produced by libpcap) and a reference interpreter.

/// One classic BPF instruction, the layout of `struct bpf_insn` in `<pcap/bpf.h>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CbpfInsn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

impl CbpfInsn {
    pub const fn new(code: u16, jt: u8, jf: u8, k: u32) -> Self {
        Self { code, jt, jf, k }
    }
    /// A non-jump instruction (`jt = jf = 0`).
    pub const fn stmt(code: u16, k: u32) -> Self {
        Self {
            code,
            jt: 0,
            jf: 0,
            k,
        }
    }
    /// A conditional jump.
    pub const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Self {
        Self { code, jt, jf, k }
    }
}

// Opcode fields, values from <pcap/bpf.h>.
pub const BPF_LD: u16 = 0x00;
pub const BPF_LDX: u16 = 0x01;
pub const BPF_ST: u16 = 0x02;
pub const BPF_STX: u16 = 0x03;
pub const BPF_ALU: u16 = 0x04;
pub const BPF_JMP: u16 = 0x05;
pub const BPF_RET: u16 = 0x06;
pub const BPF_MISC: u16 = 0x07;

pub const BPF_W: u16 = 0x00;
pub const BPF_H: u16 = 0x08;
pub const BPF_B: u16 = 0x10;

pub const BPF_IMM: u16 = 0x00;
pub const BPF_ABS: u16 = 0x20;
pub const BPF_IND: u16 = 0x40;
pub const BPF_MEM: u16 = 0x60;
pub const BPF_LEN: u16 = 0x80;
pub const BPF_MSH: u16 = 0xa0;

pub const BPF_ADD: u16 = 0x00;
pub const BPF_SUB: u16 = 0x10;
pub const BPF_MUL: u16 = 0x20;
pub const BPF_DIV: u16 = 0x30;
pub const BPF_OR: u16 = 0x40;
pub const BPF_AND: u16 = 0x50;
pub const BPF_LSH: u16 = 0x60;
pub const BPF_RSH: u16 = 0x70;
pub const BPF_NEG: u16 = 0x80;
pub const BPF_MOD: u16 = 0x90;
pub const BPF_XOR: u16 = 0xa0;

pub const BPF_JA: u16 = 0x00;

/// Backward jumps a filter may take before it gives up with "no match" (0).
///
/// Classic BPF has no backward jumps, but libpcap compiles `protochain` to a loop (a `ja`
/// whose offset wraps around) that walks one IPv6 extension header (or IPv4 AH) per
/// iteration; an eBPF translation must bound it for the verifier. The bound is netray's
/// own: its packet parser walks at most `NR_IPV6_MAX_EXT` = 8 IPv6 extension headers
/// (crates/netray-ebpf/bpf/include/netray_abi.h), so `protochain` finds the protocol
/// behind a chain of up to 8 extension headers, exactly as libpcap does. Behind a longer
/// chain (no real stack sends one; RFC 8200 recommends each header at most once) the
/// filter says "no match", where libpcap's unbounded interpreter would keep walking:
/// a miss is the safe answer for a capture filter, and the verifier's cost stays small
/// (it walks the loop once per allowed iteration).
pub const MAX_BACKWARD_JUMPS: u32 = 8;
pub const BPF_JEQ: u16 = 0x10;
pub const BPF_JGT: u16 = 0x20;
pub const BPF_JGE: u16 = 0x30;
pub const BPF_JSET: u16 = 0x40;

pub const BPF_K: u16 = 0x00;
pub const BPF_X: u16 = 0x08;
/// `BPF_RET` return-value source A (K and X share the values above).
pub const BPF_A: u16 = 0x10;

pub const BPF_TAX: u16 = 0x00;
pub const BPF_TXA: u16 = 0x80;

/// Number of scratch memory words `M[]`.
pub const BPF_MEMWORDS: usize = 16;

pub const fn class(code: u16) -> u16 {
    code & 0x07
}
pub const fn size(code: u16) -> u16 {
    code & 0x18
}
pub const fn mode(code: u16) -> u16 {
    code & 0xe0
}
pub const fn op(code: u16) -> u16 {
    code & 0xf0
}
pub const fn src(code: u16) -> u16 {
    code & 0x08
}
pub const fn rval(code: u16) -> u16 {
    code & 0x18
}
pub const fn miscop(code: u16) -> u16 {
    code & 0xf8
}

/// Width in bytes of a `BPF_W`/`BPF_H`/`BPF_B` load, `None` for an invalid size field.
pub const fn size_bytes(code: u16) -> Option<u32> {
    match size(code) {
        BPF_W => Some(4),
        BPF_H => Some(2),
        BPF_B => Some(1),
        _ => None,
    }
}

/// Runs `prog` over `pkt` with libpcap's `bpf_filter` semantics, returning the filter's
/// result: 0 = reject, otherwise the number of bytes to capture. Loads see the captured
/// bytes `pkt`; `BPF_LEN` (`len`, `less`, `greater`) is `wire_len`, the packet's original
/// length, which is more than `pkt.len()` for a record cut short by a snap length.
///
/// Rules shared with the eBPF translation: A, X and `M[]` start at 0; an out-of-bounds
/// packet load, a division or modulo by zero, an invalid opcode and a jump or fall-through
/// past the end all make the filter return 0; shifts by 32 or more yield 0 (as libpcap's
/// `bpf_filter` does for `X`; libpcap never emits a constant shift that large).
///
/// A `ja` whose offset, read as signed (as libpcap's `bpf_filter` does), points backwards
/// is a loop (libpcap's `protochain`); after [`MAX_BACKWARD_JUMPS`] of them the filter
/// returns 0 ("no match"), as the eBPF translation does (see there why).
pub fn interpret(prog: &[CbpfInsn], pkt: &[u8], wire_len: u32) -> u32 {
    let buflen = pkt.len() as u64;
    let mut a: u32 = 0;
    let mut x: u32 = 0;
    let mut mem = [0u32; BPF_MEMWORDS];
    let mut pc = 0usize;
    let mut backward = 0u32;

    // Loads `n` bytes big-endian at `off`, `None` when out of bounds.
    let load = |off: u64, n: u32| -> Option<u32> {
        let n = u64::from(n);
        if off > buflen || n > buflen - off {
            return None;
        }
        let s = &pkt[off as usize..(off + n) as usize];
        Some(s.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
    };

    loop {
        let Some(insn) = prog.get(pc) else { return 0 };
        let k = insn.k;
        pc += 1;
        match class(insn.code) {
            BPF_RET => {
                return match rval(insn.code) {
                    BPF_K => k,
                    BPF_A => a,
                    BPF_X => x,
                    _ => 0,
                }
            }
            BPF_LD | BPF_LDX => {
                let is_x = class(insn.code) == BPF_LDX;
                let v = match (mode(insn.code), is_x) {
                    (BPF_IMM, _) => k,
                    (BPF_LEN, _) => wire_len,
                    (BPF_MEM, _) => match mem.get(k as usize) {
                        Some(v) => *v,
                        None => return 0,
                    },
                    (BPF_ABS, false) | (BPF_IND, false) => {
                        let Some(n) = size_bytes(insn.code) else {
                            return 0;
                        };
                        let off = if mode(insn.code) == BPF_IND {
                            u64::from(x) + u64::from(k)
                        } else {
                            u64::from(k)
                        };
                        match load(off, n) {
                            Some(v) => v,
                            None => return 0,
                        }
                    }
                    (BPF_MSH, true) if size(insn.code) == BPF_B => match load(u64::from(k), 1) {
                        Some(v) => (v & 0xf) << 2,
                        None => return 0,
                    },
                    _ => return 0,
                };
                if is_x {
                    x = v;
                } else {
                    a = v;
                }
            }
            BPF_ST | BPF_STX => {
                let v = if class(insn.code) == BPF_ST { a } else { x };
                match mem.get_mut(k as usize) {
                    Some(m) => *m = v,
                    None => return 0,
                }
            }
            BPF_ALU => {
                let operand = if src(insn.code) == BPF_X { x } else { k };
                a = match op(insn.code) {
                    BPF_ADD => a.wrapping_add(operand),
                    BPF_SUB => a.wrapping_sub(operand),
                    BPF_MUL => a.wrapping_mul(operand),
                    BPF_DIV if operand == 0 => return 0,
                    BPF_DIV => a / operand,
                    BPF_MOD if operand == 0 => return 0,
                    BPF_MOD => a % operand,
                    BPF_AND => a & operand,
                    BPF_OR => a | operand,
                    BPF_XOR => a ^ operand,
                    BPF_LSH => a.checked_shl(operand).unwrap_or(0),
                    BPF_RSH => a.checked_shr(operand).unwrap_or(0),
                    BPF_NEG => a.wrapping_neg(),
                    _ => return 0,
                };
            }
            BPF_JMP => {
                if op(insn.code) == BPF_JA {
                    if k >= 0x8000_0000 {
                        backward += 1;
                        if backward > MAX_BACKWARD_JUMPS {
                            return 0;
                        }
                        // Before the first instruction: out of the program, returns 0.
                        pc = pc.checked_add_signed(k as i32 as isize).unwrap_or(usize::MAX);
                    } else {
                        pc = pc.saturating_add(k as usize);
                    }
                    continue;
                }
                let operand = if src(insn.code) == BPF_X { x } else { k };
                let taken = match op(insn.code) {
                    BPF_JEQ => a == operand,
                    BPF_JGT => a > operand,
                    BPF_JGE => a >= operand,
                    BPF_JSET => a & operand != 0,
                    _ => return 0,
                };
                pc += usize::from(if taken { insn.jt } else { insn.jf });
            }
            BPF_MISC => match miscop(insn.code) {
                BPF_TAX => x = a,
                BPF_TXA => a = x,
                _ => return 0,
            },
            _ => return 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LD_W_ABS: u16 = BPF_LD | BPF_W | BPF_ABS;
    const LD_H_ABS: u16 = BPF_LD | BPF_H | BPF_ABS;
    const LD_B_ABS: u16 = BPF_LD | BPF_B | BPF_ABS;
    const RET_A: u16 = BPF_RET | BPF_A;
    const RET_K: u16 = BPF_RET | BPF_K;

    fn s(code: u16, k: u32) -> CbpfInsn {
        CbpfInsn::stmt(code, k)
    }
    fn run(prog: &[CbpfInsn], pkt: &[u8]) -> u32 {
        interpret(prog, pkt, pkt.len() as u32)
    }

    #[test]
    fn loads_are_big_endian_and_sized() {
        let pkt = [0x12, 0x34, 0x56, 0x78, 0x9a];
        assert_eq!(run(&[s(LD_W_ABS, 1), s(RET_A, 0)], &pkt), 0x3456_789a);
        assert_eq!(run(&[s(LD_H_ABS, 3), s(RET_A, 0)], &pkt), 0x789a);
        assert_eq!(run(&[s(LD_B_ABS, 4), s(RET_A, 0)], &pkt), 0x9a);
    }

    #[test]
    fn out_of_bounds_loads_return_zero() {
        let pkt = [1u8; 6];
        // Ends exactly at the last byte: fine; one past: filter returns 0.
        assert_eq!(run(&[s(LD_W_ABS, 2), s(RET_K, 7)], &pkt), 7);
        assert_eq!(run(&[s(LD_W_ABS, 3), s(RET_K, 7)], &pkt), 0);
        assert_eq!(run(&[s(LD_B_ABS, 6), s(RET_K, 7)], &pkt), 0);
        assert_eq!(run(&[s(LD_H_ABS, u32::MAX), s(RET_K, 7)], &pkt), 0);
        // IND: X + k must not wrap around.
        let ind = [
            s(BPF_LDX | BPF_IMM, u32::MAX),
            s(BPF_LD | BPF_B | BPF_IND, 1),
            s(RET_K, 7),
        ];
        assert_eq!(run(&ind, &pkt), 0);
        assert_eq!(
            run(&[s(BPF_LDX | BPF_B | BPF_MSH, 6), s(RET_K, 7)], &pkt),
            0
        );
    }

    #[test]
    fn indirect_and_msh_loads() {
        // IP header length nibble 5 -> X = 20; load the byte at X + 1.
        let mut pkt = vec![0u8; 30];
        pkt[0] = 0x45;
        pkt[21] = 0xab;
        let prog = [
            s(BPF_LDX | BPF_B | BPF_MSH, 0),
            s(BPF_LD | BPF_B | BPF_IND, 1),
            s(RET_A, 0),
        ];
        assert_eq!(run(&prog, &pkt), 0xab);
        let prog = [
            s(BPF_LDX | BPF_B | BPF_MSH, 0),
            s(BPF_MISC | BPF_TXA, 0),
            s(RET_A, 0),
        ];
        assert_eq!(run(&prog, &pkt), 20);
    }

    #[test]
    fn alu_ops_are_32_bit() {
        let alu = |op: u16, a: u32, k: u32| {
            run(
                &[
                    s(BPF_LD | BPF_IMM, a),
                    s(BPF_ALU | op | BPF_K, k),
                    s(RET_A, 0),
                ],
                &[],
            )
        };
        assert_eq!(alu(BPF_ADD, u32::MAX, 2), 1);
        assert_eq!(alu(BPF_SUB, 1, 2), u32::MAX);
        assert_eq!(alu(BPF_MUL, 0x8000_0000, 2), 0);
        assert_eq!(alu(BPF_DIV, 7, 2), 3);
        assert_eq!(alu(BPF_MOD, 7, 4), 3);
        assert_eq!(alu(BPF_AND, 0xf0f0, 0xff00), 0xf000);
        assert_eq!(alu(BPF_OR, 0xf0, 0x0f), 0xff);
        assert_eq!(alu(BPF_XOR, 0xff, 0x0f), 0xf0);
        assert_eq!(alu(BPF_LSH, 1, 31), 0x8000_0000);
        assert_eq!(alu(BPF_RSH, 0x8000_0000, 31), 1);
        assert_eq!(alu(BPF_LSH, 1, 32), 0);
        assert_eq!(alu(BPF_NEG, 1, 0), u32::MAX);
        // With X.
        let prog = [
            s(BPF_LDX | BPF_IMM, 3),
            s(BPF_LD | BPF_IMM, 10),
            s(BPF_ALU | BPF_SUB | BPF_X, 0),
            s(RET_A, 0),
        ];
        assert_eq!(run(&prog, &[]), 7);
    }

    #[test]
    fn division_by_zero_returns_zero() {
        assert_eq!(
            run(
                &[
                    s(BPF_LD | BPF_IMM, 9),
                    s(BPF_ALU | BPF_DIV | BPF_K, 0),
                    s(RET_K, 5)
                ],
                &[]
            ),
            0
        );
        for op in [BPF_DIV, BPF_MOD] {
            let prog = [
                s(BPF_LD | BPF_IMM, 9),
                s(BPF_ALU | op | BPF_X, 0),
                s(RET_K, 5),
            ];
            assert_eq!(run(&prog, &[]), 0);
        }
    }

    #[test]
    fn scratch_memory_and_transfers() {
        let prog = [
            s(BPF_LD | BPF_IMM, 11),
            s(BPF_ST, 15),
            s(BPF_LDX | BPF_IMM, 22),
            s(BPF_STX, 0),
            s(BPF_LD | BPF_MEM, 0),
            s(BPF_MISC | BPF_TAX, 0),
            s(BPF_LD | BPF_MEM, 15),
            s(BPF_ALU | BPF_ADD | BPF_X, 0),
            s(RET_A, 0),
        ];
        assert_eq!(run(&prog, &[]), 33);
        // Unwritten scratch memory reads as 0.
        assert_eq!(
            run(&[s(BPF_LDX | BPF_MEM, 7), s(BPF_RET | BPF_X, 0)], &[]),
            0
        );
    }

    #[test]
    fn jumps_and_len() {
        let pkt = [0u8; 42];
        // if len > 40 ret 1 else ret 2
        let prog = [
            s(BPF_LD | BPF_W | BPF_LEN, 0),
            CbpfInsn::jump(BPF_JMP | BPF_JGT | BPF_K, 40, 0, 1),
            s(RET_K, 1),
            s(RET_K, 2),
        ];
        assert_eq!(run(&prog, &pkt), 1);
        assert_eq!(run(&prog, &pkt[..40]), 2);
        // A record cut short: len is the wire length, not the bytes at hand.
        assert_eq!(interpret(&prog, &pkt[..20], 42), 1);
        assert_eq!(interpret(&prog, &pkt, 40), 2);
        let jset = [
            s(BPF_LD | BPF_IMM, 0b1010),
            s(BPF_LDX | BPF_IMM, 0b0100),
            CbpfInsn::jump(BPF_JMP | BPF_JSET | BPF_X, 0, 0, 2),
            s(BPF_JMP | BPF_JA, 1),
            s(RET_K, 1),
            s(RET_K, 2),
        ];
        assert_eq!(run(&jset, &[]), 2);
        let jge = [
            s(BPF_LD | BPF_IMM, 5),
            CbpfInsn::jump(BPF_JMP | BPF_JGE | BPF_K, 5, 0, 1),
            s(RET_K, 1),
            s(RET_K, 2),
        ];
        assert_eq!(run(&jge, &[]), 1);
        let jeq = [
            s(BPF_LD | BPF_IMM, 5),
            CbpfInsn::jump(BPF_JMP | BPF_JEQ | BPF_K, 6, 0, 1),
            s(RET_K, 1),
            s(RET_K, 2),
        ];
        assert_eq!(run(&jeq, &[]), 2);
    }

    #[test]
    fn running_off_the_end_or_bad_opcode_returns_zero() {
        assert_eq!(run(&[s(BPF_LD | BPF_IMM, 1)], &[]), 0);
        assert_eq!(run(&[s(0xffff, 0), s(RET_K, 1)], &[]), 0);
        assert_eq!(run(&[s(BPF_JMP | BPF_JA, 5), s(RET_K, 1)], &[]), 0);
    }
}

/// Random valid classic programs and packets, for tests (here and in `tests/`).
#[doc(hidden)]
pub mod tests_support {
    use super::*;

    fn next(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }
    pub fn below(seed: &mut u64, n: u64) -> u64 {
        next(seed) % n
    }

    /// A program of up to `max_len` instructions: forward jumps only, ending in `ret`,
    /// covering every opcode class with operands biased towards edge cases (offsets at
    /// and past the packet end, division by zero, shift counts around 32).
    pub fn random_program(seed: &mut u64, max_len: u64) -> Vec<CbpfInsn> {
        let n = 2 + below(seed, max_len - 1) as usize;
        let mut prog = Vec::with_capacity(n);
        for pc in 0..n - 1 {
            let room = (n - 2 - pc) as u64; // max jump offset staying inside
            let small = |seed: &mut u64| {
                [
                    0u32,
                    1,
                    2,
                    3,
                    12,
                    13,
                    14,
                    20,
                    23,
                    31,
                    32,
                    33,
                    40,
                    63,
                    64,
                    100,
                    0xffff,
                    0x8000_0000,
                    u32::MAX,
                ][below(seed, 19) as usize]
            };
            let size = [BPF_W, BPF_H, BPF_B][below(seed, 3) as usize];
            let insn = match below(seed, 16) {
                0 | 1 => CbpfInsn::stmt(
                    BPF_LD | size | BPF_ABS,
                    if below(seed, 8) == 0 {
                        small(seed)
                    } else {
                        below(seed, 70) as u32
                    },
                ),
                2 => CbpfInsn::stmt(BPF_LD | size | BPF_IND, below(seed, 40) as u32),
                3 => CbpfInsn::stmt(BPF_LDX | BPF_B | BPF_MSH, below(seed, 66) as u32),
                4 => CbpfInsn::stmt(
                    [BPF_LD, BPF_LDX][below(seed, 2) as usize] | BPF_IMM,
                    if below(seed, 2) == 0 {
                        below(seed, 64) as u32
                    } else {
                        small(seed)
                    },
                ),
                5 => CbpfInsn::stmt(
                    [BPF_LD, BPF_LDX][below(seed, 2) as usize] | BPF_W | BPF_LEN,
                    0,
                ),
                6 => CbpfInsn::stmt(
                    [BPF_LD, BPF_LDX][below(seed, 2) as usize] | BPF_MEM,
                    below(seed, 16) as u32,
                ),
                7 => CbpfInsn::stmt(
                    [BPF_ST, BPF_STX][below(seed, 2) as usize],
                    below(seed, 16) as u32,
                ),
                8 | 9 => {
                    let ops = [
                        BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_MOD, BPF_AND, BPF_OR, BPF_XOR,
                        BPF_LSH, BPF_RSH, BPF_NEG,
                    ];
                    let op = ops[below(seed, ops.len() as u64) as usize];
                    let srcf = if op != BPF_NEG && below(seed, 2) == 0 {
                        BPF_X
                    } else {
                        BPF_K
                    };
                    let mut k = small(seed);
                    if (op == BPF_LSH || op == BPF_RSH) && srcf == BPF_K {
                        k %= 32; // libpcap never emits constant shifts >= 32
                    }
                    CbpfInsn::stmt(
                        BPF_ALU | op | srcf,
                        if srcf == BPF_X || op == BPF_NEG { 0 } else { k },
                    )
                }
                10..=12 => {
                    let op = [BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET][below(seed, 4) as usize];
                    let srcf = [BPF_K, BPF_X][below(seed, 2) as usize];
                    let jt = below(seed, room.min(255) + 1) as u8;
                    let jf = below(seed, room.min(255) + 1) as u8;
                    CbpfInsn::jump(
                        BPF_JMP | op | srcf,
                        if srcf == BPF_X { 0 } else { small(seed) },
                        jt,
                        jf,
                    )
                }
                13 => CbpfInsn::stmt(BPF_JMP | BPF_JA, below(seed, room + 1) as u32),
                14 => CbpfInsn::stmt(BPF_MISC | [BPF_TAX, BPF_TXA][below(seed, 2) as usize], 0),
                _ => CbpfInsn::stmt(
                    BPF_RET | [BPF_K, BPF_A, BPF_X][below(seed, 3) as usize],
                    [0, 1, 96, 65535][below(seed, 4) as usize],
                ),
            };
            prog.push(insn);
        }
        prog.push(CbpfInsn::stmt(
            BPF_RET | [BPF_K, BPF_A][below(seed, 2) as usize],
            65535,
        ));
        prog
    }

    /// A packet of 0..=80 bytes (at least `min` when given), mostly small byte values so
    /// MSH/IND offsets land inside it.
    pub fn random_packet_min(seed: &mut u64, min: usize) -> Vec<u8> {
        let len = min + below(seed, (81 - min) as u64) as usize;
        (0..len)
            .map(|_| {
                if below(seed, 3) == 0 {
                    next(seed) as u8
                } else {
                    below(seed, 24) as u8
                }
            })
            .collect()
    }

    pub fn random_packet(seed: &mut u64) -> Vec<u8> {
        random_packet_min(seed, 0)
    }
}
