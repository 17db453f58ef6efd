//! Classic BPF → eBPF fragment for splicing into an XDP/TC capture program.
//!
//! # Calling convention of the generated fragment
//!
//! On entry (the fragment's first instruction):
//! - `R1` = pointer to the first packet byte (`xdp_md->data` / `__sk_buff->data`),
//! - `R2` = packet end pointer (`data_end`), so loads are bounded by `[R1, R2)`,
//! - `R3` = packet length as classic `BPF_LEN` reports it (low 32 bits used): the wire
//!   length, e.g. `bpf_xdp_get_buff_len()` or `skb->len`. For a linear packet it equals
//!   `R2 - R1`.
//! - The stack bytes `[R10 + stack_offset, R10 + stack_offset + 80)` are the fragment's
//!   (scratch memory `M[0..15]`, the saved length, and the loop counter for backward
//!   jumps); default `stack_offset = -80` ([`STACK_BYTES`]).
//!
//! The fragment never calls helpers and never writes `R1`, `R2` or `R6`–`R9`; it clobbers
//! `R0`, `R3`, `R4`, `R5` and its stack area. Control leaves it only by falling off its end
//! (all internal "return" paths jump to the instruction just past the last one), with
//! `R0` = the classic filter's return value, zero-extended: 0 = no match, otherwise the
//! number of bytes to capture (the snap length). There is no `exit`: the capture program
//! continues right after the fragment.
//!
//! Classic semantics kept: A (`R0`) and X (`R3`) are 32-bit; A, X and `M[]` start at 0;
//! packet loads are big-endian; an out-of-bounds load, a division or modulo by zero makes
//! the filter return 0; shifts by >= 32 give 0. Loads at offsets whose end would exceed
//! 65535 always fail (return 0): the verifier tracks packet offsets only up to
//! `MAX_PACKET_OFF` = 0xffff, and no linear XDP/TC packet area is that large.
//!
//! `R1`/`R2` must be what the verifier knows as packet / packet-end pointers (loaded from
//! the context, unmodified); the caller needs no bounds check of its own: every load is
//! checked against `R2` inside the fragment. All jumps are relative and stay inside the
//! fragment (or land exactly on its end), so it is position independent: splice it
//! verbatim, with no relocation. It uses `JMP32` (Linux >= 5.1).
//!
//! cBPF jumps are forward only; libpcap's output satisfies that by construction, except
//! `protochain`, which libpcap compiles to a loop: a `ja` whose offset wraps around, which
//! libpcap's interpreter reads as signed. Such a backward jump becomes a bounded loop
//! (Linux >= 5.3): it counts in an 8-byte stack slot (a full, 8-aligned spill, so the
//! verifier knows the counter's exact value and walks each iteration), and once more than
//! [`cbpf::MAX_BACKWARD_JUMPS`] backward jumps were taken the filter returns 0, "no
//! match" (see that constant for why the bound and why a miss). The classic interpreter
//! ([`cbpf::interpret`]) applies the same bound.

use crate::cbpf::{self, CbpfInsn};
use crate::ebpf::{self as e, EbpfInsn as I, R0, R1, R10, R2, R3, R4, R5};

/// Largest packet offset (exclusive end of a load) the verifier can track.
const MAX_PACKET_OFF: u64 = 0xffff;
/// Bytes of stack the fragment uses: 16 scratch words, the saved length + padding, and
/// the 8-byte backward-jump counter.
pub const STACK_BYTES: i16 = 80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TranslateOptions {
    /// Offset from `R10` of the fragment's [`STACK_BYTES`]-byte stack area; 8-byte
    /// aligned, `<= -STACK_BYTES`.
    pub stack_offset: i16,
}

impl Default for TranslateOptions {
    fn default() -> Self {
        Self {
            stack_offset: -STACK_BYTES,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TranslateError {
    #[error("empty classic BPF program")]
    Empty,
    #[error("instruction {pc}: unsupported or invalid opcode {code:#06x}")]
    BadOpcode { pc: usize, code: u16 },
    #[error("instruction {pc}: jump target out of the program")]
    JumpOutOfRange { pc: usize },
    #[error("instruction {pc}: falls off the end of the program")]
    FallsOffEnd { pc: usize },
    #[error("instruction {pc}: scratch memory index {k} out of range")]
    BadMemIndex { pc: usize, k: u32 },
    #[error("translated program too long for 16-bit jump offsets")]
    TooLong,
    #[error("stack_offset {0} must be 8-byte aligned and <= -80")]
    BadStackOffset(i16),
}

/// Translates with the default options (stack area at `R10 - 80`).
pub fn translate(prog: &[CbpfInsn]) -> Result<Vec<I>, TranslateError> {
    translate_with(prog, TranslateOptions::default())
}

/// Where a jump goes, resolved once the whole fragment is laid out.
#[derive(Clone, Copy)]
enum Target {
    Insn(usize),
    Ret0,
    Exit,
}

/// What happens after an instruction, for reachability.
enum Flow {
    Next,
    Jumps(Vec<usize>),
    Stops,
}

struct Emitter {
    out: Vec<I>,
    fixups: Vec<(usize, Target)>,
    mem: i16,
    len_slot: i16,
    loop_slot: i16,
}

impl Emitter {
    fn push(&mut self, insn: I) {
        self.out.push(insn);
    }
    fn jump(&mut self, insn: I, to: Target) {
        self.fixups.push((self.out.len(), to));
        self.out.push(insn);
    }
    fn ret0(&mut self) {
        self.jump(I::ja(0), Target::Ret0);
    }
    /// Bounds-checked big-endian load of `n` bytes at constant offset `k` into `dst`.
    fn load_abs(&mut self, dst: u8, k: u32, n: u32) {
        self.push(I::mov64_reg(R4, R1));
        self.push(I::alu64_imm(e::ADD, R4, k as i32));
        self.load_at_r4(dst, n);
    }
    /// Bounds-checked load at `X + k`: the variable part is capped first so the verifier
    /// sees a bounded packet offset.
    fn load_ind(&mut self, k: u32, n: u32) {
        self.push(I::mov64_reg(R4, R3));
        self.push(I::alu64_imm(e::ADD, R4, k as i32));
        self.jump(
            I::jmp_imm(e::JGT, R4, (MAX_PACKET_OFF - u64::from(n)) as i32, 0),
            Target::Ret0,
        );
        self.push(I::alu64_reg(e::ADD, R4, R1));
        self.load_at_r4(R0, n);
    }
    /// `R4` = packet pointer to load from; checks `R4 + n <= data_end` and loads.
    fn load_at_r4(&mut self, dst: u8, n: u32) {
        self.push(I::mov64_reg(R5, R4));
        self.push(I::alu64_imm(e::ADD, R5, n as i32));
        self.jump(I::jmp_reg(e::JGT, R5, R2, 0), Target::Ret0);
        let size = match n {
            4 => e::W,
            2 => e::H,
            _ => e::B,
        };
        self.push(I::ldx(size, dst, R4, 0));
        if n > 1 {
            self.push(I::to_be(dst, (n * 8) as i32));
        }
    }
}

/// Translates a classic BPF program into a fragment following the calling convention in
/// the module documentation.
pub fn translate_with(prog: &[CbpfInsn], opts: TranslateOptions) -> Result<Vec<I>, TranslateError> {
    if prog.is_empty() {
        return Err(TranslateError::Empty);
    }
    if opts.stack_offset > -STACK_BYTES || opts.stack_offset % 8 != 0 {
        return Err(TranslateError::BadStackOffset(opts.stack_offset));
    }

    // Pass 1: validate and find reachable instructions. Unreachable code must not be
    // emitted: the verifier rejects programs with unreachable instructions, and loads that
    // can never succeed turn the rest of their block dead.
    // A worklist, since a backward jump may be the only way to an instruction.
    let mut reachable = vec![false; prog.len()];
    reachable[0] = true;
    let mut work = vec![0usize];
    let mut loops = false;
    while let Some(pc) = work.pop() {
        loops |= backward_target(&prog[pc], pc).is_some();
        let succ = match flow(prog, pc)? {
            Flow::Next => vec![pc + 1],
            Flow::Jumps(t) => t,
            Flow::Stops => vec![],
        };
        for t in succ {
            if t >= prog.len() {
                return Err(if t == pc + 1 {
                    TranslateError::FallsOffEnd { pc }
                } else {
                    TranslateError::JumpOutOfRange { pc }
                });
            }
            if !reachable[t] {
                reachable[t] = true;
                work.push(t);
            }
        }
    }

    // Pass 2: emit.
    let mem = opts.stack_offset;
    let mut em = Emitter {
        out: Vec::new(),
        fixups: Vec::new(),
        mem,
        len_slot: mem + 64,
        loop_slot: mem + 72,
    };
    // Prologue: save the length, zero M[] (classic BPF programs may read M before writing
    // it; libpcap's interpreter then sees zeroes in practice, and the verifier demands
    // initialised stack), zero A and X.
    for i in 0..8 {
        em.push(I::st_imm(e::DW, R10, mem + 8 * i, 0));
    }
    em.push(I::stx(e::W, R10, em.len_slot, R3));
    if loops {
        // Stored from a register so the verifier knows the slot holds exactly 0 (6.1
        // marks an immediate store to the stack as unknown bytes).
        em.push(I::mov32_imm(R4, 0));
        em.push(I::stx(e::DW, R10, em.loop_slot, R4));
    }
    em.push(I::mov32_imm(R0, 0));
    em.push(I::mov32_imm(R3, 0));

    let mut start = vec![usize::MAX; prog.len()];
    for (pc, insn) in prog.iter().enumerate() {
        if !reachable[pc] {
            continue;
        }
        start[pc] = em.out.len();
        emit(&mut em, pc, insn)?;
    }

    // If nothing needs the shared "return 0" block and the fragment ends with a jump to the
    // exit label, that jump is a no-op: drop it (any jump to it now lands on the exit label,
    // which is the same place).
    let uses_ret0 = em.fixups.iter().any(|(_, t)| matches!(t, Target::Ret0));
    if !uses_ret0 {
        if let Some(&(idx, Target::Exit)) = em.fixups.last() {
            if idx == em.out.len() - 1 {
                em.fixups.pop();
                em.out.pop();
            }
        }
    }
    let ret0 = em.out.len();
    if uses_ret0 {
        em.push(I::mov32_imm(R0, 0));
    }
    let exit = em.out.len();

    for &(idx, target) in &em.fixups {
        let to = match target {
            Target::Insn(pc) => start[pc],
            Target::Ret0 => ret0,
            Target::Exit => exit,
        };
        let off = to as i64 - idx as i64 - 1;
        em.out[idx].off = i16::try_from(off).map_err(|_| TranslateError::TooLong)?;
    }
    Ok(em.out)
}

/// Where a backward `ja` at `pc` goes (libpcap reads its offset as signed); `None` for
/// any other instruction. `Some(Err(()))` when it lands before the program.
fn backward_target(insn: &CbpfInsn, pc: usize) -> Option<Result<usize, ()>> {
    use cbpf::*;
    if class(insn.code) != BPF_JMP || op(insn.code) != BPF_JA || insn.k < 0x8000_0000 {
        return None;
    }
    Some((pc + 1).checked_add_signed(insn.k as i32 as isize).ok_or(()))
}

/// Validates instruction `pc` and tells where control goes next.
fn flow(prog: &[CbpfInsn], pc: usize) -> Result<Flow, TranslateError> {
    use cbpf::*;
    let insn = prog[pc];
    let bad = || TranslateError::BadOpcode {
        pc,
        code: insn.code,
    };
    let k = u64::from(insn.k);
    Ok(match class(insn.code) {
        BPF_RET => match rval(insn.code) {
            BPF_K | BPF_A | BPF_X => Flow::Stops,
            _ => return Err(bad()),
        },
        BPF_LD | BPF_LDX => {
            let is_x = class(insn.code) == BPF_LDX;
            match (mode(insn.code), is_x) {
                (BPF_IMM, _) | (BPF_LEN, _) => Flow::Next,
                (BPF_MEM, _) => {
                    if insn.k as usize >= BPF_MEMWORDS {
                        return Err(TranslateError::BadMemIndex { pc, k: insn.k });
                    }
                    Flow::Next
                }
                (BPF_ABS | BPF_IND, false) => {
                    let n = size_bytes(insn.code).ok_or_else(bad)?;
                    if k + u64::from(n) > MAX_PACKET_OFF {
                        Flow::Stops
                    } else {
                        Flow::Next
                    }
                }
                (BPF_MSH, true) if size(insn.code) == BPF_B => {
                    if k + 1 > MAX_PACKET_OFF {
                        Flow::Stops
                    } else {
                        Flow::Next
                    }
                }
                _ => return Err(bad()),
            }
        }
        BPF_ST | BPF_STX => {
            if insn.k as usize >= BPF_MEMWORDS {
                return Err(TranslateError::BadMemIndex { pc, k: insn.k });
            }
            Flow::Next
        }
        BPF_ALU => match op(insn.code) {
            BPF_DIV | BPF_MOD if src(insn.code) == BPF_K && insn.k == 0 => Flow::Stops,
            BPF_ADD | BPF_SUB | BPF_MUL | BPF_DIV | BPF_MOD | BPF_AND | BPF_OR | BPF_XOR
            | BPF_LSH | BPF_RSH | BPF_NEG => Flow::Next,
            _ => return Err(bad()),
        },
        BPF_JMP => match op(insn.code) {
            BPF_JA if insn.k >= 0x8000_0000 => match backward_target(&insn, pc) {
                Some(Ok(t)) => Flow::Jumps(vec![t]),
                _ => return Err(TranslateError::JumpOutOfRange { pc }),
            },
            BPF_JA => Flow::Jumps(vec![pc + 1 + insn.k as usize]),
            BPF_JEQ | BPF_JGT | BPF_JGE | BPF_JSET => Flow::Jumps(vec![
                pc + 1 + usize::from(insn.jt),
                pc + 1 + usize::from(insn.jf),
            ]),
            _ => return Err(bad()),
        },
        BPF_MISC => match miscop(insn.code) {
            BPF_TAX | BPF_TXA => Flow::Next,
            _ => return Err(bad()),
        },
        _ => return Err(bad()),
    })
}

/// Emits the eBPF for one (validated, reachable) classic instruction.
fn emit(em: &mut Emitter, pc: usize, insn: &CbpfInsn) -> Result<(), TranslateError> {
    use cbpf::*;
    let k = insn.k;
    let kk = k as i32; // same bit pattern; 32-bit ALU/JMP32 ops use the low 32 bits
    let slot = |m: &Emitter| m.mem + 4 * (k as i16);
    match class(insn.code) {
        BPF_RET => {
            match rval(insn.code) {
                BPF_K => em.push(I::mov32_imm(R0, kk)),
                BPF_X => em.push(I::mov32_reg(R0, R3)),
                _ => {} // BPF_A: A already lives in R0
            }
            em.jump(I::ja(0), Target::Exit);
        }
        BPF_LD | BPF_LDX => {
            let dst = if class(insn.code) == BPF_LDX { R3 } else { R0 };
            match mode(insn.code) {
                BPF_IMM => em.push(I::mov32_imm(dst, kk)),
                BPF_LEN => em.push(I::ldx(e::W, dst, R10, em.len_slot)),
                BPF_MEM => em.push(I::ldx(e::W, dst, R10, slot(em))),
                BPF_ABS | BPF_IND | BPF_MSH => {
                    let n = size_bytes(insn.code).unwrap_or(1);
                    if u64::from(k) + u64::from(n) > MAX_PACKET_OFF {
                        em.ret0();
                    } else if mode(insn.code) == BPF_ABS {
                        em.load_abs(R0, k, n);
                    } else if mode(insn.code) == BPF_IND {
                        em.load_ind(k, n);
                    } else {
                        em.load_abs(R3, k, 1);
                        em.push(I::alu32_imm(e::AND, R3, 0xf));
                        em.push(I::alu32_imm(e::LSH, R3, 2));
                    }
                }
                _ => unreachable!("validated in flow()"),
            }
        }
        BPF_ST => em.push(I::stx(e::W, R10, slot(em), R0)),
        BPF_STX => em.push(I::stx(e::W, R10, slot(em), R3)),
        BPF_ALU => {
            let o = op(insn.code);
            let eop = match o {
                BPF_ADD => e::ADD,
                BPF_SUB => e::SUB,
                BPF_MUL => e::MUL,
                BPF_DIV => e::DIV,
                BPF_MOD => e::MOD,
                BPF_AND => e::AND,
                BPF_OR => e::OR,
                BPF_XOR => e::XOR,
                BPF_LSH => e::LSH,
                BPF_RSH => e::RSH,
                _ => e::NEG,
            };
            if o == BPF_NEG {
                em.push(I::alu32_imm(e::NEG, R0, 0));
            } else if src(insn.code) == BPF_K {
                if (o == BPF_DIV || o == BPF_MOD) && k == 0 {
                    em.ret0();
                } else if (o == BPF_LSH || o == BPF_RSH) && k >= 32 {
                    em.push(I::mov32_imm(R0, 0));
                } else {
                    em.push(I::alu32_imm(eop, R0, kk));
                }
            } else if o == BPF_DIV || o == BPF_MOD {
                // eBPF would yield 0 / A; classic BPF aborts the filter with 0.
                em.jump(I::jmp32_imm(e::JEQ, R3, 0, 0), Target::Ret0);
                em.push(I::alu32_reg(eop, R0, R3));
            } else if o == BPF_LSH || o == BPF_RSH {
                // eBPF masks the shift count to 5 bits; classic (libpcap) gives 0 for >= 32.
                em.push(I::jmp32_imm(e::JGT, R3, 31, 2));
                em.push(I::alu32_reg(eop, R0, R3));
                em.push(I::ja(1));
                em.push(I::mov32_imm(R0, 0));
            } else {
                em.push(I::alu32_reg(eop, R0, R3));
            }
        }
        BPF_JMP => {
            let o = op(insn.code);
            if o == BPF_JA {
                if let Some(Ok(to)) = backward_target(insn, pc) {
                    // Count, and give up with "no match" past the bound.
                    em.push(I::ldx(e::DW, R4, R10, em.loop_slot));
                    em.push(I::alu64_imm(e::ADD, R4, 1));
                    em.push(I::stx(e::DW, R10, em.loop_slot, R4));
                    em.jump(
                        I::jmp_imm(e::JGT, R4, cbpf::MAX_BACKWARD_JUMPS as i32, 0),
                        Target::Ret0,
                    );
                    em.jump(I::ja(0), Target::Insn(to));
                } else if k != 0 {
                    em.jump(I::ja(0), Target::Insn(pc + 1 + k as usize));
                }
                return Ok(());
            }
            let t = pc + 1 + usize::from(insn.jt);
            let f = pc + 1 + usize::from(insn.jf);
            let (cond, neg) = match o {
                BPF_JEQ => (e::JEQ, Some(e::JNE)),
                BPF_JGT => (e::JGT, Some(e::JLE)),
                BPF_JGE => (e::JGE, Some(e::JLT)),
                _ => (e::JSET, None),
            };
            let cmp = |op: u8| {
                if src(insn.code) == BPF_X {
                    I::jmp32_reg(op, R0, R3, 0)
                } else {
                    I::jmp32_imm(op, R0, kk, 0)
                }
            };
            if t == f {
                if insn.jt != 0 {
                    em.jump(I::ja(0), Target::Insn(t));
                }
            } else if insn.jf == 0 {
                em.jump(cmp(cond), Target::Insn(t));
            } else if let (0, Some(n)) = (insn.jt, neg) {
                em.jump(cmp(n), Target::Insn(f));
            } else {
                em.jump(cmp(cond), Target::Insn(t));
                if insn.jf != 0 {
                    em.jump(I::ja(0), Target::Insn(f));
                }
            }
        }
        BPF_MISC => {
            if miscop(insn.code) == BPF_TAX {
                em.push(I::mov32_reg(R3, R0));
            } else {
                em.push(I::mov32_reg(R0, R3));
            }
        }
        _ => unreachable!("validated in flow()"),
    }
    Ok(())
}

#[cfg(test)]
mod tests;
