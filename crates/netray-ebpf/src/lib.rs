//! netray's kernel programs and their ABI.
//!
//! The C sources live in `bpf/`; `bpf/include/netray_abi.h` defines every
//! struct the kernel and userspace share. The skeletons generated from them
//! are re-exported here, and [`abi`] holds the Rust view of those structs,
//! generated from BTF, never copied by hand.

#![allow(clippy::all)]

pub mod decided;

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
    /// The traffic generator and receive counters of `netray bench dump`.
    bench_dump,
    "bench_dump.skel.rs"
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
    /// fentry/fexit capture on an XDP program netray did not load (filter spliced in at load).
    capture_trace,
    "capture_trace.skel.rs"
);
skeleton!(
    /// The kernel drop tracer of `netray drops` (skb:kfree_skb, filter spliced in at load).
    drops,
    "drops.skel.rs"
);
skeleton!(
    /// Tiny programs `netray features` loads to ask the kernel what it allows.
    probe,
    "probe.skel.rs"
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
        nr_fw_range_half,
        nr_fw_range_quarter,
        nr_fw_isles,
        nr_fw_isles_half,
        nr_fw_isles_quarter,
        nr_fw_match,
        nr_fw_l4_key,
        nr_fw_state,
        nr_fw_rule,
        nr_fw_rule_action,
        nr_rule_counter,
        nr_rule_hits,
        nr_fw_pending,
        nr_reply_key,
        nr_reply_way,
        nr_reply_set,
        nr_reply_stats,
        nr_limit,
        nr_limit_stats,
        nr_limit_counts,
        nr_limit_src_set,
        nr_limit_src,
        nr_flow_key,
        nr_flow_value,
        nr_flow_stats,
        nr_flow_slot,
        nr_exec_event,
        nr_exec_config,
        nr_exec_stats,
        nr_capture_scratch,
        nr_capture_record,
        nr_capture_stats,
        nr_drop_event,
        nr_drop_stats,
        xdp_md
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

    /// Per-CPU counter structs made of nothing but `__u64` counters (see
    /// netray_abi.h and exec_abi.h): their CPU copies add up word by word, so a
    /// counter added to the header is summed without being listed here.
    pub trait Counters: plain::Plain + Default {}
    impl Counters for nr_if_stats {}
    impl Counters for nr_capture_stats {}
    impl Counters for nr_reply_stats {}
    impl Counters for nr_limit_counts {}
    impl Counters for nr_exec_stats {}
    impl Counters for nr_drop_stats {}

    /// The per-CPU copies of a counter struct added up.
    pub fn sum_counters<T: Counters>(per_cpu: &[T]) -> T {
        const { assert!(std::mem::size_of::<T>() % 8 == 0, "counter structs are whole u64 words") };
        let mut total = vec![0u64; std::mem::size_of::<T>() / 8];
        for c in per_cpu {
            for (t, word) in total.iter_mut().zip(bytes_of(c).chunks_exact(8)) {
                *t = t.wrapping_add(u64::from_ne_bytes(word.try_into().expect("8-byte chunk")));
            }
        }
        let bytes: Vec<u8> = total.iter().flat_map(|w| w.to_ne_bytes()).collect();
        from_bytes(&bytes).expect("the words of a T fill a T")
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn counters_add_up_field_by_field() {
            let a = nr_capture_stats { seen: 1, matched: 2, captured: 3, lost: 4, lost_bytes: 5, clipped: 6 };
            let b = nr_capture_stats { seen: 10, matched: 20, captured: 30, lost: 40, lost_bytes: 50, clipped: 60 };
            let t = sum_counters(&[a, b]);
            assert_eq!(
                (t.seen, t.matched, t.captured, t.lost, t.lost_bytes, t.clipped),
                (11, 22, 33, 44, 55, 66)
            );
            let e = sum_counters(&[nr_exec_stats { entered: 1, sent: 2, lost: 3, pending_full: u64::MAX }; 2]);
            assert_eq!((e.entered, e.sent, e.lost, e.pending_full), (2, 4, 6, u64::MAX - 1));
            assert_eq!(sum_counters::<nr_if_stats>(&[]).seen, 0);
        }
    }
}
