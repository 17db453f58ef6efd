//! The translator against the classic interpreter, instruction class by class.

use super::*;
use crate::cbpf::*;
use crate::ebpf::emu::run_fragment;

fn s(code: u16, k: u32) -> CbpfInsn {
    CbpfInsn::stmt(code, k)
}

/// Translation and emulation agree with the classic interpreter on `pkts`.
fn check(prog: &[CbpfInsn], pkts: &[&[u8]]) {
    let frag = translate(prog).unwrap();
    for pkt in pkts {
        assert_eq!(
            run_fragment(&frag, pkt),
            u64::from(interpret(prog, pkt, pkt.len() as u32)),
            "{prog:?} on {pkt:?}"
        );
    }
}

#[test]
fn each_load_size_and_mode() {
    let pkt: Vec<u8> = (1..=40).collect();
    let pkts: Vec<&[u8]> = vec![&pkt, &pkt[..3], &pkt[..4], &pkt[..13], &[]];
    for size in [BPF_W, BPF_H, BPF_B] {
        check(
            &[s(BPF_LD | size | BPF_ABS, 0), s(BPF_RET | BPF_A, 0)],
            &pkts,
        );
        check(
            &[s(BPF_LD | size | BPF_ABS, 10), s(BPF_RET | BPF_A, 0)],
            &pkts,
        );
        check(
            &[s(BPF_LD | size | BPF_ABS, 70_000), s(BPF_RET | BPF_K, 1)],
            &pkts,
        );
        check(
            &[
                s(BPF_LDX | BPF_IMM, 9),
                s(BPF_LD | size | BPF_IND, 1),
                s(BPF_RET | BPF_A, 0),
            ],
            &pkts,
        );
        check(
            &[
                s(BPF_LDX | BPF_IMM, u32::MAX),
                s(BPF_LD | size | BPF_IND, 1),
                s(BPF_RET | BPF_K, 1),
            ],
            &pkts,
        );
    }
    check(
        &[s(BPF_LDX | BPF_B | BPF_MSH, 2), s(BPF_RET | BPF_X, 0)],
        &pkts,
    );
    check(
        &[s(BPF_LD | BPF_W | BPF_LEN, 0), s(BPF_RET | BPF_A, 0)],
        &pkts,
    );
    check(
        &[
            s(BPF_LDX | BPF_W | BPF_LEN, 0),
            s(BPF_MISC | BPF_TXA, 0),
            s(BPF_RET | BPF_A, 0),
        ],
        &pkts,
    );
}

#[test]
fn alu_division_and_shifts() {
    for op in [
        BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_MOD, BPF_AND, BPF_OR, BPF_XOR, BPF_LSH,
        BPF_RSH, BPF_NEG,
    ] {
        for (a, x) in [
            (0u32, 0u32),
            (7, 3),
            (u32::MAX, 31),
            (0x8000_0000, 32),
            (12345, 0),
            (5, 40),
        ] {
            let with_x = [
                s(BPF_LD | BPF_IMM, a),
                s(BPF_LDX | BPF_IMM, x),
                s(BPF_ALU | op | BPF_X, 0),
                s(BPF_RET | BPF_A, 0),
            ];
            check(&with_x, &[&[]]);
            let with_k = [
                s(BPF_LD | BPF_IMM, a),
                s(BPF_ALU | op | BPF_K, x),
                s(BPF_RET | BPF_A, 0),
            ];
            check(&with_k, &[&[]]);
        }
    }
}

#[test]
fn scratch_memory_is_zeroed_and_kept() {
    check(&[s(BPF_LD | BPF_MEM, 3), s(BPF_RET | BPF_A, 0)], &[&[]]);
    check(
        &[
            s(BPF_LD | BPF_IMM, 0xdead_beef),
            s(BPF_ST, 15),
            s(BPF_LDX | BPF_IMM, 5),
            s(BPF_STX, 0),
            s(BPF_LD | BPF_MEM, 15),
            s(BPF_LDX | BPF_MEM, 0),
            s(BPF_ALU | BPF_ADD | BPF_X, 0),
            s(BPF_RET | BPF_A, 0),
        ],
        &[&[]],
    );
}

#[test]
fn errors() {
    assert_eq!(translate(&[]), Err(TranslateError::Empty));
    assert_eq!(
        translate(&[s(0xffff, 0)]),
        Err(TranslateError::BadOpcode {
            pc: 0,
            code: 0xffff
        })
    );
    assert_eq!(
        translate(&[s(BPF_LD | BPF_IMM, 1)]),
        Err(TranslateError::FallsOffEnd { pc: 0 })
    );
    assert_eq!(
        translate(&[
            CbpfInsn::jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 5, 0),
            s(BPF_RET | BPF_K, 0)
        ]),
        Err(TranslateError::JumpOutOfRange { pc: 0 })
    );
    assert_eq!(
        translate(&[s(BPF_ST, 16), s(BPF_RET | BPF_K, 0)]),
        Err(TranslateError::BadMemIndex { pc: 0, k: 16 })
    );
    assert_eq!(
        translate(&[s(BPF_JMP | BPF_JA, u32::MAX - 1), s(BPF_RET | BPF_K, 0)]),
        Err(TranslateError::JumpOutOfRange { pc: 0 })
    );
    let prog = [s(BPF_RET | BPF_K, 0)];
    assert!(translate_with(&prog, TranslateOptions { stack_offset: -64 }).is_err());
    assert!(translate_with(&prog, TranslateOptions { stack_offset: -72 }).is_err());
    assert!(translate_with(&prog, TranslateOptions { stack_offset: -76 }).is_err());
    assert!(translate_with(&prog, TranslateOptions { stack_offset: -128 }).is_ok());
}

#[test]
fn unreachable_code_is_not_emitted_and_ret0_only_when_needed() {
    // `ret #1` alone: prologue, mov r0, 1 — no trailing jump, no ret0 block.
    let frag = translate(&[s(BPF_RET | BPF_K, 1)]).unwrap();
    assert_eq!(frag.last(), Some(&I::mov32_imm(R0, 1)));
    // A load that can never succeed makes the rest dead; the fragment must still be
    // free of unreachable instructions (the verifier rejects them).
    let prog = [
        s(BPF_LD | BPF_B | BPF_ABS, 0x10000),
        CbpfInsn::jump(BPF_JMP | BPF_JEQ | BPF_K, 1, 0, 1),
        s(BPF_RET | BPF_K, 1),
        s(BPF_RET | BPF_K, 0),
    ];
    let frag = translate(&prog).unwrap();
    assert!(reachable_all(&frag), "{frag:?}");
    assert_eq!(run_fragment(&frag, &[0; 20]), 0);
}

/// Every instruction reachable, every jump within [0, len] (backward ones only in
/// programs with loops).
fn reachable_all(frag: &[I]) -> bool {
    let mut seen = vec![false; frag.len()];
    let mut stack = vec![0usize];
    while let Some(pc) = stack.pop() {
        if pc >= frag.len() || seen[pc] {
            continue;
        }
        seen[pc] = true;
        let i = frag[pc];
        if i.is_jump() {
            let t = (pc + 1).checked_add_signed(isize::from(i.off)).unwrap();
            assert!(t <= frag.len());
            stack.push(t);
            if i.code != I::ja(0).code {
                stack.push(pc + 1);
            }
        } else {
            stack.push(pc + 1);
        }
    }
    seen.iter().all(|s| *s)
}

#[test]
fn fragment_respects_the_calling_convention() {
    let prog = crate::cbpf::tests_support::random_program(&mut 7, 40);
    let frag = translate(&prog).unwrap();
    for i in &frag {
        let class = i.code & 0x07;
        let writes_dst = matches!(class, e::ALU | e::ALU64 | e::LDX);
        if writes_dst {
            assert!(
                matches!(i.dst, R0 | R3 | R4 | R5),
                "writes r{}: {i:?}",
                i.dst
            );
        }
        if matches!(class, e::ST | e::STX) {
            assert_eq!(i.dst, R10);
            assert!(i.off >= -STACK_BYTES && i.off < 0);
        }
    }
}

/// Random valid classic programs (forward jumps, every opcode class) on random packets:
/// the emulated translation equals the classic interpreter.
#[test]
fn random_programs_agree_with_interpreter() {
    let mut seed = 0x1234_5678u64;
    let mut runs = 0;
    for _ in 0..2000 {
        let prog = crate::cbpf::tests_support::random_program(&mut seed, 30);
        let frag = translate(&prog).unwrap_or_else(|e| panic!("{e}: {prog:?}"));
        assert!(reachable_all(&frag));
        for _ in 0..8 {
            let pkt = crate::cbpf::tests_support::random_packet(&mut seed);
            assert_eq!(
                run_fragment(&frag, &pkt),
                u64::from(interpret(&prog, &pkt, pkt.len() as u32)),
                "{prog:?} on {pkt:?}"
            );
            runs += 1;
        }
    }
    assert_eq!(runs, 16_000);
}

/// A backward `ja` loops at most `MAX_BACKWARD_JUMPS` times, then the filter returns 0;
/// the translation counts the same way as the interpreter.
#[test]
fn backward_jumps_loop_with_a_bound() {
    // A += 1; if A > n return A; else jump back: returns n + 1 after n backward jumps.
    for n in [0u32, 1, MAX_BACKWARD_JUMPS - 1, MAX_BACKWARD_JUMPS, MAX_BACKWARD_JUMPS + 3] {
        let prog = [
            s(BPF_ALU | BPF_ADD | BPF_K, 1),
            CbpfInsn::jump(BPF_JMP | BPF_JGT | BPF_K, n, 1, 0),
            s(BPF_JMP | BPF_JA, (-3i32) as u32),
            s(BPF_RET | BPF_A, 0),
        ];
        let want = if n <= MAX_BACKWARD_JUMPS { n + 1 } else { 0 };
        assert_eq!(interpret(&prog, &[], 0), want, "n = {n}");
        check(&prog, &[&[], &[1, 2, 3]]);
        let frag = translate(&prog).unwrap();
        assert!(reachable_all(&frag));
    }
    // The loop head reachable only through the backward jump is still emitted.
    let prog = [
        s(BPF_LDX | BPF_IMM, 2),
        s(BPF_JMP | BPF_JA, 2),
        s(BPF_LD | BPF_B | BPF_IND, 0),
        s(BPF_RET | BPF_A, 0),
        s(BPF_JMP | BPF_JA, (-4i32) as u32),
    ];
    check(&prog, &[&[1, 2, 3], &[1]]);
}

/// libpcap's own `protochain` programs: the emulated translation equals the interpreter
/// over IPv6 extension-header chains of every length up to and past the bound.
#[test]
fn protochain_agrees_with_interpreter() {
    for expr in ["ip6 protochain 6", "protochain 17", "ip protochain 6", "protochain 58"] {
        let prog = crate::compile(expr, 65535).unwrap();
        let mut pkts = Vec::new();
        for n in 0..=MAX_BACKWARD_JUMPS as usize + 2 {
            for last in [6u8, 17, 58, 51] {
                let mut p = vec![0u8; 12];
                p.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 0]);
                let chain: Vec<u8> = [0u8, 43, 44, 60].iter().cycle().take(n).copied().collect();
                p.push(chain.first().copied().unwrap_or(last));
                p.push(64);
                p.extend_from_slice(&[0u8; 32]);
                for i in 0..n {
                    p.push(chain.get(i + 1).copied().unwrap_or(last));
                    p.extend_from_slice(&[0u8; 7]);
                }
                p.extend_from_slice(&[0u8; 20]);
                pkts.push(p);
            }
        }
        let mut v4 = vec![0u8; 12];
        v4.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 48, 0, 0, 0x40, 0, 64, 51, 0, 0]);
        v4.extend_from_slice(&[0u8; 8]);
        v4.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 1]);
        v4.extend_from_slice(&[0u8; 20]);
        pkts.push(v4);
        let refs: Vec<&[u8]> = pkts.iter().map(Vec::as_slice).collect();
        check(&prog, &refs);
        let hits = refs.iter().filter(|p| interpret(&prog, p, p.len() as u32) != 0).count();
        assert!(hits > 0 && hits < refs.len(), "{expr}: {hits} of {}", refs.len());
    }
}
