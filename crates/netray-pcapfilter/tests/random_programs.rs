//! Random classic BPF programs through the real kernel: the verifier must accept every
//! translation, and the in-kernel result must equal both this crate's interpreter and
//! libpcap's own `bpf_filter` (called directly), on whole packets and on records whose
//! original length exceeds the bytes kept (a replay program, as `dump -r` loads). Needs
//! root; fails without it.

use netray_pcapfilter::cbpf::{self, tests_support, CbpfInsn};
use netray_pcapfilter::{interpret, translate, FilterProgram, ReturnMode};

/// `struct bpf_insn` from <pcap/bpf.h>.
#[repr(C)]
struct PcapInsn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

#[link(name = "pcap")]
extern "C" {
    fn bpf_filter(pc: *const PcapInsn, p: *const u8, wirelen: u32, buflen: u32) -> u32;
    fn bpf_validate(f: *const PcapInsn, len: i32) -> i32;
}

fn to_pcap(prog: &[CbpfInsn]) -> Vec<PcapInsn> {
    prog.iter()
        .map(|i| PcapInsn {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect()
}

/// libpcap's interpreter, for programs it can run without aborting (its `bpf_filter`
/// calls abort() on opcodes it does not know, and traps on a constant division by 0).
fn libpcap_result(prog: &[CbpfInsn], pkt: &[u8], wire_len: u32) -> Option<u32> {
    let unsafe_for_libpcap = prog.iter().any(|i| {
        i.code == cbpf::BPF_RET | cbpf::BPF_X
            || (cbpf::class(i.code) == cbpf::BPF_ALU
                && matches!(cbpf::op(i.code), cbpf::BPF_DIV | cbpf::BPF_MOD)
                && cbpf::src(i.code) == cbpf::BPF_K
                && i.k == 0)
    });
    if unsafe_for_libpcap {
        return None;
    }
    let raw = to_pcap(prog);
    // SAFETY: raw is a valid array of prog.len() bpf_insn structs for the whole call.
    if unsafe { bpf_validate(raw.as_ptr(), raw.len() as i32) } == 0 {
        return None;
    }
    // SAFETY: the program was validated by libpcap itself (forward jumps in range, valid
    // opcodes, memory indices < 16); pkt is valid for pkt.len() bytes.
    Some(unsafe {
        bpf_filter(
            raw.as_ptr(),
            pkt.as_ptr(),
            wire_len,
            pkt.len() as u32,
        )
    })
}

fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "random_programs needs root to load BPF programs; run as root"
    );
}

#[test]
fn random_programs_in_kernel_agree_with_interpreter_and_libpcap() {
    require_root();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let (mut kernel_runs, mut libpcap_runs, mut nonzero) = (0, 0, 0);
    for n in 0..400 {
        let body = tests_support::random_program(&mut seed, 40);
        // Zero M[] explicitly: libpcap's interpreter leaves scratch memory uninitialised.
        let mut prog: Vec<CbpfInsn> = vec![CbpfInsn::stmt(cbpf::BPF_LD | cbpf::BPF_IMM, 0)];
        prog.extend((0..16).map(|m| CbpfInsn::stmt(cbpf::BPF_ST, m)));
        prog.extend(body);
        let frag = translate(&prog).unwrap_or_else(|e| panic!("program {n}: {e}: {prog:?}"));
        let loaded = FilterProgram::load_replay(&frag, ReturnMode::Snaplen)
            .unwrap_or_else(|e| panic!("program {n}: {e}\n{prog:?}"));
        for run in 0..10 {
            let pkt = tests_support::random_packet_min(&mut seed, 14);
            // Every other record was cut short: its original length is up to 2000 more.
            let wire_len = pkt.len() as u32 + if run % 2 == 1 { (tests_support::below(&mut seed, 2000) + 1) as u32 } else { 0 };
            let want = interpret(&prog, &pkt, wire_len);
            let got = loaded.run_record(&pkt, wire_len).unwrap();
            assert_eq!(got, want, "program {n} {prog:?} on {pkt:?}, original length {wire_len}");
            kernel_runs += 1;
            nonzero += usize::from(want != 0);
            if let Some(lp) = libpcap_result(&prog, &pkt, wire_len) {
                assert_eq!(
                    lp, want,
                    "libpcap vs interpreter: program {n} {prog:?} on {pkt:?}"
                );
                libpcap_runs += 1;
            }
        }
    }
    println!("{kernel_runs} kernel runs ({nonzero} non-zero results), {libpcap_runs} also checked against libpcap's bpf_filter");
    assert!(nonzero > kernel_runs / 10);
    assert!(libpcap_runs > kernel_runs / 2);
}
