//! netray's kernel programs and their ABI.
//!
//! The C sources live in `bpf/`; `bpf/include/netray_abi.h` defines every
//! struct the kernel and userspace share. The skeletons generated from them
//! are re-exported here, and [`abi`] holds the Rust view of those structs,
//! generated from BTF, never copied by hand.

#![allow(clippy::all)]

macro_rules! skeleton {
    ($(#[$m:meta])* $name:ident, $file:literal) => {
        $(#[$m])*
        #[allow(non_camel_case_types, non_snake_case, non_upper_case_globals, dead_code, unused_imports)]
        pub mod $name {
            include!(concat!(env!("OUT_DIR"), "/", $file));
        }
    };
}

skeleton!(
    /// The XDP dispatcher attached to each interface.
    xdp_dispatch,
    "xdp_dispatch.skel.rs"
);
skeleton!(
    /// The TC dispatcher (ingress, egress) and the socket-filter monitor.
    tc_dispatch,
    "tc_dispatch.skel.rs"
);
skeleton!(
    /// TC benchmark programs run through BPF_PROG_TEST_RUN.
    bench_tc,
    "bench_tc.skel.rs"
);
skeleton!(
    /// Benchmark programs run through BPF_PROG_TEST_RUN.
    bench,
    "bench.skel.rs"
);
// SAFETY: the benchmark's LPM-trie key (bench.bpf.c) is a u32 and four
// bytes, no padding: every byte pattern is a valid value.
unsafe impl plain::Plain for bench::types::bench_lpm_key {}

skeleton!(
    /// The exec tracer (execve/execveat events), used by netray-exec.
    exec,
    "exec.skel.rs"
);
skeleton!(
    /// The capture recorders of `netray dump`.
    capture,
    "capture.skel.rs"
);
skeleton!(
    #[doc(hidden)]
    abi_skel,
    "abi.skel.rs"
);

/// The kernel/user ABI structs and constants (from `netray_abi.h`, via BTF).
pub mod abi {
    pub use super::abi_skel::types::*;

    // SAFETY: the ABI structs are plain old data with explicit padding
    // (see netray_abi.h): every byte pattern is a valid value.
    macro_rules! plain {
        ($($t:ty),*) => { $(unsafe impl plain::Plain for $t {})* };
    }
    plain!(
        nr_packet_event,
        nr_if_config,
        nr_if_stats,
        nr_fw_chunk,
        nr_fw_range,
        nr_fw_match,
        nr_fw_l4_key,
        nr_fw_state,
        nr_fw_rule,
        nr_rule_counter,
        nr_flow_key,
        nr_flow_value,
        nr_flow_stats,
        nr_flow_slot,
        nr_exec_event,
        nr_exec_config,
        nr_exec_stats,
        nr_capture_scratch,
        nr_capture_record,
        nr_capture_stats
    );

    /// The raw bytes of an ABI value, as the kernel stores it.
    pub fn bytes_of<T: plain::Plain>(v: &T) -> &[u8] {
        // SAFETY: T is Plain (no padding-dependent invariants), so viewing it
        // as bytes is sound.
        unsafe {
            std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>())
        }
    }

    /// Reads an ABI value from the kernel's bytes (which may be longer, e.g. a
    /// per-CPU slot). None when the buffer is too short.
    pub fn from_bytes<T: plain::Plain + Default>(b: &[u8]) -> Option<T> {
        let mut v = T::default();
        plain::copy_from_bytes(&mut v, b).ok()?;
        Some(v)
    }
}
