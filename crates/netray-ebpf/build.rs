//! Compiles every `bpf/*.bpf.c` with clang-19 and generates its libbpf-rs
//! skeleton (with the ABI types taken from BTF) into OUT_DIR.
use std::{env, path::PathBuf};

use libbpf_cargo::SkeletonBuilder;

const PROGRAMS: &[&str] = &[
    "abi",
    "xdp_dispatch",
    "bench",
    "exec",
    "tc_dispatch",
    "bench_tc",
    "bench_dump",
    "capture",
    "capture_trace",
    "drops",
    "probe",
];

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let clang = env::var("NETRAY_CLANG").unwrap_or_else(|_| "clang-19".to_string());
    println!("cargo:rerun-if-env-changed=NETRAY_CLANG");
    println!("cargo:rerun-if-changed=bpf");

    // Debian keeps <asm/types.h> under the multiarch include directory, which
    // `clang -target bpf` does not search by itself.
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let multiarch = format!("-I/usr/include/{arch}-linux-gnu");

    for name in PROGRAMS {
        let src = format!("bpf/{name}.bpf.c");
        let skel = out.join(format!("{name}.skel.rs"));
        SkeletonBuilder::new()
            .source(&src)
            .clang(&clang)
            // BPF ISA v3 (kernel 5.1+): 32-bit ALU and jumps, so u32 arithmetic
            // needs no zero-extension pairs and the JIT emits fewer instructions.
            .clang_args([
                "-mcpu=v3",
                "-Ibpf/include",
                multiarch.as_str(),
                "-Wall",
                "-Werror",
                "-Wno-unused-function",
            ])
            .build_and_generate(&skel)
            .unwrap_or_else(|e| {
                panic!(
                    "building {src} failed: {e:#}\n\
                     netray's BPF programs need clang-19 and the kernel UAPI headers: \
                     run `make deps` (or `apt-get install clang-19 llvm-19 libelf-dev linux-libc-dev`)"
                )
            });
    }
}
