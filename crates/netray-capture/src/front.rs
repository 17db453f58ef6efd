//! The filter program: the first program of a capture point, generated here
//! because the pcap-filter expression is only known at run time.
//!
//! ```text
//! r6 = ctx
//! r3 = wire length; r1 = data; r2 = data_end     (per program type)
//! <fragment>                                      r0 = snap length or 0
//! scratch.snaplen = r0; scratch.point = POINT
//! tail_call(cap_chain, NR_CAP_RECORD)             the recorder (capture.bpf.c)
//! -- only if that slot is empty (e.g. netray was killed) --
//! entry, XDP: tail_call(cap_chain, NR_CAP_NEXT); return XDP_PASS
//! entry, TC:  return TC_ACT_UNSPEC (= TCX_NEXT)
//! exit:       return scratch.verdict               the dispatcher's decision stands
//! ```
//!
//! The fallbacks matter after a crash: a capture left in front of a firewall
//! must keep handing packets on, and an exit capture must keep the verdict.
//!
//! The wire length (classic `BPF_LEN`: `len`, `less`, `greater`) is the whole
//! packet's, as libpcap means it, never the linear part the fragment's loads
//! reach: at XDP `bpf_xdp_get_buff_len()`, which counts a multi-buffer (jumbo)
//! frame's fragments (Linux 5.18, so on every kernel netray supports); at TC
//! `skb->len`, which counts paged data and, at both hooks, the Ethernet header.
//! At TC ingress a VLAN tag the kernel moved into the skb's metadata is not
//! counted, consistently with the bytes the filter sees there (the recorder puts
//! the tag back, and the record's original length with it). A `dump -r` of the
//! records judges their original length the same way (netray-pcapfilter's load.rs).

use std::{
    mem::offset_of,
    os::fd::{AsRawFd, BorrowedFd, OwnedFd},
};

use netray_ebpf::abi::{__sk_buff, nr_capture_point, nr_capture_scratch, nr_capture_slot};
use netray_pcapfilter::{
    ebpf::{self as e, EbpfInsn as I, R0, R1, R10, R2, R3, R6, R7, R8},
    load_program, xdp_prologue, LoadError, ProgramSpec,
};

use crate::Point;

/// The program type a capture point runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Xdp,
    Tc,
}

/// The load-time properties a program must share with every program it
/// tail-calls or is tail-called from (the kernel refuses mixed PROG_ARRAYs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    /// BPF_F_XDP_HAS_FRAGS: the program may see multi-buffer frames.
    pub frags: bool,
    /// expected_attach_type: BPF_XDP, or 0 as older loaders (iproute2) set it.
    pub attach_type: libbpf_sys::bpf_attach_type,
}

impl Variant {
    /// Every XDP variant, the most capable first.
    pub const XDP: [Variant; 4] = [
        Variant { frags: true, attach_type: libbpf_sys::BPF_XDP },
        Variant { frags: false, attach_type: libbpf_sys::BPF_XDP },
        Variant { frags: true, attach_type: 0 },
        Variant { frags: false, attach_type: 0 },
    ];
    pub const TC: Variant = Variant { frags: false, attach_type: 0 };

    pub fn flags(self) -> u32 {
        if self.frags {
            libbpf_sys::BPF_F_XDP_HAS_FRAGS
        } else {
            0
        }
    }
}

const XDP_PASS: i32 = libbpf_sys::XDP_PASS as i32;
/// <linux/pkt_cls.h>, which libbpf-sys does not carry.
const TC_ACT_UNSPEC: i32 = -1;
/// A field's offset as an instruction's 16-bit displacement (context and scratch
/// structs are far smaller than 32 KiB).
const fn field(offset: usize) -> i16 {
    assert!(offset < i16::MAX as usize);
    offset as i16
}
const SKB_LEN: i16 = field(offset_of!(__sk_buff, len));
const SKB_DATA: i16 = field(offset_of!(__sk_buff, data));
const SKB_DATA_END: i16 = field(offset_of!(__sk_buff, data_end));
const SCRATCH_SNAPLEN: i16 = field(offset_of!(nr_capture_scratch, snaplen));
const SCRATCH_POINT: i16 = field(offset_of!(nr_capture_scratch, point));
const SCRATCH_VERDICT: i16 = field(offset_of!(nr_capture_scratch, verdict));
/// Stack slot of the map key, below the fragment's stack area (default offset).
const KEY_SLOT: i16 = -netray_pcapfilter::translate::STACK_BYTES - 8;

/// Assembles the filter program around `fragment` (see the module docs).
pub fn assemble(kind: Kind, point: Point, fragment: &[I], scratch: BorrowedFd<'_>, chain: BorrowedFd<'_>) -> Vec<I> {
    let mut p = match kind {
        Kind::Xdp => xdp_prologue().to_vec(),
        Kind::Tc => vec![
            I::mov64_reg(R6, R1),
            I::ldx(e::W, R3, R6, SKB_LEN),
            I::ldx(e::W, R1, R6, SKB_DATA),
            I::ldx(e::W, R2, R6, SKB_DATA_END),
        ],
    };
    p.extend_from_slice(fragment);
    p.push(I::mov64_reg(R7, R0));
    // r8 = &scratch (a per-CPU array: the lookup of key 0 cannot fail, but
    // the verifier wants the check).
    p.push(I::st_imm(e::W, R10, KEY_SLOT, 0));
    p.push(I::mov64_reg(R2, R10));
    p.push(I::alu64_imm(e::ADD, R2, KEY_SLOT as i32));
    p.extend(I::ld_map_fd(R1, scratch.as_raw_fd()));
    p.push(I::call(libbpf_sys::BPF_FUNC_map_lookup_elem as i32));
    p.push(I::mov64_reg(R8, R0));
    let no_scratch = p.len();
    p.push(I::ja(0)); // patched below: if r8 == 0 goto pass
    p.push(I::stx(e::W, R8, SCRATCH_SNAPLEN, R7));
    let point_code = match point {
        Point::Entry => nr_capture_point::NR_POINT_ENTRY.0,
        Point::Exit => nr_capture_point::NR_POINT_EXIT.0,
    };
    p.push(I::st_imm(e::W, R8, SCRATCH_POINT, point_code as i32));
    tail_call(&mut p, chain, nr_capture_slot::NR_CAP_RECORD.0);
    // Only reached when the recorder is gone.
    if point == Point::Exit {
        p.push(I::ldx(e::W, R0, R8, SCRATCH_VERDICT));
        p.push(I::exit());
    } else if kind == Kind::Xdp {
        tail_call(&mut p, chain, nr_capture_slot::NR_CAP_NEXT.0);
    }
    let pass = p.len();
    p[no_scratch] = I::jmp_imm(e::JEQ, R8, 0, (pass - no_scratch - 1) as i16);
    p.push(match kind {
        Kind::Xdp => I::mov32_imm(R0, XDP_PASS),
        // TC's return value is a signed int: -1 needs all 64 bits.
        Kind::Tc => I::alu64_imm(e::MOV, R0, TC_ACT_UNSPEC),
    });
    p.push(I::exit());
    p
}

fn tail_call(p: &mut Vec<I>, chain: BorrowedFd<'_>, slot: u32) {
    p.push(I::mov64_reg(R1, R6));
    p.extend(I::ld_map_fd(R2, chain.as_raw_fd()));
    p.push(I::mov32_imm(R3, slot as i32));
    p.push(I::call(libbpf_sys::BPF_FUNC_tail_call as i32));
}

/// Loads the filter program.
pub fn load(
    kind: Kind,
    point: Point,
    variant: Variant,
    fragment: &[I],
    scratch: BorrowedFd<'_>,
    chain: BorrowedFd<'_>,
) -> Result<OwnedFd, LoadError> {
    let insns = assemble(kind, point, fragment, scratch, chain);
    let spec = ProgramSpec {
        name: match point {
            Point::Entry => "netray_cap_in",
            Point::Exit => "netray_cap_out",
        },
        prog_type: match kind {
            Kind::Xdp => libbpf_sys::BPF_PROG_TYPE_XDP,
            Kind::Tc => libbpf_sys::BPF_PROG_TYPE_SCHED_CLS,
        },
        expected_attach_type: variant.attach_type,
        flags: variant.flags(),
        attach_target: None,
        btf_func: false,
    };
    load_program(&insns, &spec)
}
