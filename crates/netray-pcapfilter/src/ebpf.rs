//! eBPF instruction encoding (the subset the translator and the loader emit).

/// One 8-byte eBPF instruction (`struct bpf_insn` in `<linux/bpf.h>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EbpfInsn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

// Classes.
pub const LDX: u8 = 0x01;
pub const ST: u8 = 0x02;
pub const STX: u8 = 0x03;
pub const ALU: u8 = 0x04;
pub const JMP: u8 = 0x05;
pub const JMP32: u8 = 0x06;
pub const ALU64: u8 = 0x07;
// Sizes and modes.
pub const W: u8 = 0x00;
pub const H: u8 = 0x08;
pub const B: u8 = 0x10;
pub const DW: u8 = 0x18;
pub const MEM: u8 = 0x60;
// Source.
pub const K: u8 = 0x00;
pub const X: u8 = 0x08;
// ALU ops.
pub const ADD: u8 = 0x00;
pub const SUB: u8 = 0x10;
pub const MUL: u8 = 0x20;
pub const DIV: u8 = 0x30;
pub const OR: u8 = 0x40;
pub const AND: u8 = 0x50;
pub const LSH: u8 = 0x60;
pub const RSH: u8 = 0x70;
pub const NEG: u8 = 0x80;
pub const MOD: u8 = 0x90;
pub const XOR: u8 = 0xa0;
pub const MOV: u8 = 0xb0;
pub const END: u8 = 0xd0;
pub const TO_BE: u8 = 0x08;
// Jump ops.
pub const JA: u8 = 0x00;
pub const JEQ: u8 = 0x10;
pub const JGT: u8 = 0x20;
pub const JGE: u8 = 0x30;
pub const JSET: u8 = 0x40;
pub const JNE: u8 = 0x50;
pub const CALL: u8 = 0x80;
pub const EXIT: u8 = 0x90;
pub const JLT: u8 = 0xa0;
pub const JLE: u8 = 0xb0;

/// Registers by name, for readability of the emitters.
pub const R0: u8 = 0;
pub const R1: u8 = 1;
pub const R2: u8 = 2;
pub const R3: u8 = 3;
pub const R4: u8 = 4;
pub const R5: u8 = 5;
pub const R6: u8 = 6;
pub const R7: u8 = 7;
pub const R8: u8 = 8;
pub const R10: u8 = 10;

impl EbpfInsn {
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Self {
            code,
            dst,
            src,
            off,
            imm,
        }
    }
    /// 32-bit ALU op with an immediate (zero-extends `dst`).
    pub const fn alu32_imm(op: u8, dst: u8, imm: i32) -> Self {
        Self::new(ALU | op | K, dst, 0, 0, imm)
    }
    /// 32-bit ALU op with a register (zero-extends `dst`).
    pub const fn alu32_reg(op: u8, dst: u8, src: u8) -> Self {
        Self::new(ALU | op | X, dst, src, 0, 0)
    }
    pub const fn alu64_imm(op: u8, dst: u8, imm: i32) -> Self {
        Self::new(ALU64 | op | K, dst, 0, 0, imm)
    }
    pub const fn alu64_reg(op: u8, dst: u8, src: u8) -> Self {
        Self::new(ALU64 | op | X, dst, src, 0, 0)
    }
    pub const fn mov32_imm(dst: u8, imm: i32) -> Self {
        Self::alu32_imm(MOV, dst, imm)
    }
    pub const fn mov32_reg(dst: u8, src: u8) -> Self {
        Self::alu32_reg(MOV, dst, src)
    }
    pub const fn mov64_reg(dst: u8, src: u8) -> Self {
        Self::alu64_reg(MOV, dst, src)
    }
    /// Converts the low `bits` (16 or 32) of `dst` from host to big-endian order
    /// and zero-extends; on a big-endian host it only zero-extends.
    pub const fn to_be(dst: u8, bits: i32) -> Self {
        Self::new(ALU | END | TO_BE, dst, 0, 0, bits)
    }
    /// `dst = *(size *)(src + off)`
    pub const fn ldx(size: u8, dst: u8, src: u8, off: i16) -> Self {
        Self::new(LDX | MEM | size, dst, src, off, 0)
    }
    /// `*(size *)(dst + off) = src`
    pub const fn stx(size: u8, dst: u8, off: i16, src: u8) -> Self {
        Self::new(STX | MEM | size, dst, src, off, 0)
    }
    /// `*(size *)(dst + off) = imm`
    pub const fn st_imm(size: u8, dst: u8, off: i16, imm: i32) -> Self {
        Self::new(ST | MEM | size, dst, 0, off, imm)
    }
    pub const fn ja(off: i16) -> Self {
        Self::new(JMP | JA, 0, 0, off, 0)
    }
    /// 64-bit compare of `dst` with an immediate.
    pub const fn jmp_imm(op: u8, dst: u8, imm: i32, off: i16) -> Self {
        Self::new(JMP | op | K, dst, 0, off, imm)
    }
    /// 64-bit compare of two registers.
    pub const fn jmp_reg(op: u8, dst: u8, src: u8, off: i16) -> Self {
        Self::new(JMP | op | X, dst, src, off, 0)
    }
    /// 32-bit compare (low halves) of `dst` with an immediate.
    pub const fn jmp32_imm(op: u8, dst: u8, imm: i32, off: i16) -> Self {
        Self::new(JMP32 | op | K, dst, 0, off, imm)
    }
    /// 32-bit compare (low halves) of two registers.
    pub const fn jmp32_reg(op: u8, dst: u8, src: u8, off: i16) -> Self {
        Self::new(JMP32 | op | X, dst, src, off, 0)
    }
    pub const fn call(helper: i32) -> Self {
        Self::new(JMP | CALL, 0, 0, 0, helper)
    }
    pub const fn exit() -> Self {
        Self::new(JMP | EXIT, 0, 0, 0, 0)
    }
    /// `dst = map` by file descriptor (the two-slot `ld_imm64` with BPF_PSEUDO_MAP_FD,
    /// which the kernel resolves to the map at load time).
    pub const fn ld_map_fd(dst: u8, fd: i32) -> [Self; 2] {
        const LD_IMM64: u8 = 0x18;
        const PSEUDO_MAP_FD: u8 = 1;
        [Self::new(LD_IMM64, dst, PSEUDO_MAP_FD, 0, fd), Self::new(0, 0, 0, 0, 0)]
    }

    /// Is this a jump whose `off` is relative (not call/exit)?
    pub const fn is_jump(&self) -> bool {
        let class = self.code & 0x07;
        let op = self.code & 0xf0;
        (class == JMP || class == JMP32) && op != CALL && op != EXIT
    }

    /// The kernel's byte layout (registers packed as on a little-endian host: dst in the
    /// low nibble; big-endian hosts swap the nibbles).
    pub fn to_bytes(&self) -> [u8; 8] {
        let regs = if cfg!(target_endian = "little") {
            (self.src << 4) | (self.dst & 0x0f)
        } else {
            (self.dst << 4) | (self.src & 0x0f)
        };
        let off = self.off.to_ne_bytes();
        let imm = self.imm.to_ne_bytes();
        [
            self.code, regs, off[0], off[1], imm[0], imm[1], imm[2], imm[3],
        ]
    }
}

/// A minimal eBPF emulator for the instruction subset the translator emits, so the
/// translation can be unit-tested against the classic interpreter without a kernel.
#[cfg(test)]
pub(crate) mod emu {
    use super::*;

    const PKT: u64 = 0x1000_0000;
    const STACK_TOP: u64 = 0x2000_0000;

    /// Runs a translated fragment under the module-level calling convention and returns
    /// `R0` when control falls off its end. Panics on anything the verifier would reject
    /// at run time (reads outside packet/stack, uninitialised stack, jumps out of the fragment,
    /// runaway loops).
    pub fn run_fragment(prog: &[EbpfInsn], pkt: &[u8]) -> u64 {
        let mut r = [0u64; 11];
        r[1] = PKT;
        r[2] = PKT + pkt.len() as u64;
        r[3] = pkt.len() as u64 | 0xdead_0000_0000_0000; // upper half must be ignored
        r[6] = 0x6666;
        r[10] = STACK_TOP;
        let mut stack = [None::<u8>; 512];
        let mut pc = 0usize;
        let mut steps = 0;
        while pc < prog.len() {
            steps += 1;
            assert!(steps < 100_000, "runaway");
            let i = prog[pc];
            pc += 1;
            let class = i.code & 0x07;
            let srcv = if i.code & X != 0 {
                r[i.src as usize]
            } else {
                i.imm as i64 as u64
            };
            match class {
                ALU | ALU64 => {
                    let op = i.code & 0xf0;
                    let d = r[i.dst as usize];
                    if class == ALU {
                        let (a, b) = (d as u32, srcv as u32);
                        let v = match op {
                            ADD => a.wrapping_add(b),
                            SUB => a.wrapping_sub(b),
                            MUL => a.wrapping_mul(b),
                            DIV => a.checked_div(b).unwrap_or(0),
                            MOD => a.checked_rem(b).unwrap_or(a),
                            AND => a & b,
                            OR => a | b,
                            XOR => a ^ b,
                            LSH => a.wrapping_shl(b & 31),
                            RSH => a.wrapping_shr(b & 31),
                            NEG => a.wrapping_neg(),
                            MOV => b,
                            END => {
                                assert_eq!(i.code & TO_BE, TO_BE);
                                match i.imm {
                                    16 => u32::from((a as u16).to_be()),
                                    32 => a.to_be(),
                                    _ => panic!("bad END width"),
                                }
                            }
                            _ => panic!("unsupported alu32 op {op:#x}"),
                        };
                        r[i.dst as usize] = u64::from(v);
                    } else {
                        r[i.dst as usize] = match op {
                            ADD => d.wrapping_add(srcv),
                            MOV => srcv,
                            _ => panic!("unsupported alu64 op {op:#x}"),
                        };
                    }
                    assert!(i.dst != 10, "writes frame pointer");
                }
                LDX | STX | ST => {
                    let n = match i.code & 0x18 {
                        W => 4,
                        H => 2,
                        B => 1,
                        _ => 8,
                    };
                    let base = r[if class == LDX { i.src } else { i.dst } as usize];
                    let addr = base.wrapping_add(i.off as i64 as u64);
                    if class == LDX {
                        let mut bytes = [0u8; 8];
                        for (k, b) in bytes.iter_mut().take(n).enumerate() {
                            let a = addr + k as u64;
                            *b = if (PKT..PKT + pkt.len() as u64).contains(&a) {
                                pkt[(a - PKT) as usize]
                            } else if (STACK_TOP - 512..STACK_TOP).contains(&a) {
                                stack[(a - (STACK_TOP - 512)) as usize]
                                    .expect("uninitialised stack read")
                            } else {
                                panic!("load outside packet/stack at {a:#x}")
                            };
                        }
                        // Memory is little-endian here, as on the hosts we run on.
                        r[i.dst as usize] = u64::from_le_bytes(bytes);
                    } else {
                        let v = if class == STX {
                            r[i.src as usize]
                        } else {
                            i.imm as i64 as u64
                        };
                        let bytes = v.to_le_bytes();
                        for (k, b) in bytes.iter().take(n).enumerate() {
                            let a = addr + k as u64;
                            assert!(
                                (STACK_TOP - 512..STACK_TOP).contains(&a),
                                "store outside stack"
                            );
                            stack[(a - (STACK_TOP - 512)) as usize] = Some(*b);
                        }
                    }
                }
                JMP | JMP32 => {
                    let op = i.code & 0xf0;
                    assert!(op != CALL && op != EXIT, "fragment must not call or exit");
                    let (a, b) = if class == JMP32 {
                        (u64::from(r[i.dst as usize] as u32), u64::from(srcv as u32))
                    } else {
                        (r[i.dst as usize], srcv)
                    };
                    let taken = match op {
                        JA => true,
                        JEQ => a == b,
                        JNE => a != b,
                        JGT => a > b,
                        JGE => a >= b,
                        JLT => a < b,
                        JLE => a <= b,
                        JSET => a & b != 0,
                        _ => panic!("unsupported jump op {op:#x}"),
                    };
                    if taken {
                        pc = pc
                            .checked_add_signed(isize::from(i.off))
                            .expect("jump before the fragment");
                        assert!(pc <= prog.len(), "jump past the exit label");
                    }
                }
                _ => panic!("unsupported class {class}"),
            }
        }
        assert_eq!(r[1], PKT, "R1 clobbered");
        assert_eq!(r[2], PKT + pkt.len() as u64, "R2 clobbered");
        assert_eq!(r[6], 0x6666, "R6 clobbered");
        assert_eq!(r[0] >> 32, 0, "R0 not zero-extended");
        r[0]
    }
}
