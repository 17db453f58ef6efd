//! pcap-filter expressions for `netray dump`.
//!
//! Pipeline: [`compile()`] hands the expression to libpcap (so the accepted syntax and its
//! error messages are exactly libpcap's), [`translate()`] turns the classic BPF program into a
//! position-independent eBPF fragment that a capture program splices in before it is loaded,
//! and [`FilterProgram`] wraps such a fragment into a standalone XDP program so the very same
//! code can be run over a pcap file with `BPF_PROG_TEST_RUN` (`dump -r FILE`, and the tests).
//!
//! [`interpret`] is a pure-Rust classic BPF interpreter with libpcap's `bpf_filter` semantics;
//! it is the reference for unit tests and the fallback for frames the kernel's XDP test run
//! refuses (see [`Filter::matches`]). Both take the packet's original (wire) length apart
//! from the captured bytes: `len`, `less` and `greater` judge the former, as in libpcap.

pub mod cbpf;
pub mod compile;
pub mod ebpf;
pub mod load;
pub mod translate;

pub use cbpf::{interpret, CbpfInsn};
pub use compile::{compile, FilterError};
pub use ebpf::EbpfInsn;
pub use load::{load_program, max_test_run_frame, xdp_prologue, Filter, FilterProgram, LengthSource, LoadError, ProgramSpec, ReturnMode};
pub use translate::{translate, translate_with, TranslateError, TranslateOptions};
