//! The benchmark's own BPF programs (bench_dump.bpf.c in netray-ebpf): the generator
//! and the receiving end's two counters, loaded once and kept as file descriptors
//! (the skeleton is dropped) so the generator and the sink each hold what they use.

use std::{
    mem::MaybeUninit,
    os::fd::{AsFd, OwnedFd},
};

use anyhow::Context as _;
use libbpf_rs::{
    skel::{OpenSkel, SkelBuilder},
    MapHandle,
};
use netray_ebpf::bench_dump::BenchDumpSkelBuilder;

pub(super) struct Programs {
    /// bench_dump_gen: redirects each frame out of its run's ingress interface.
    pub generator: OwnedFd,
    /// bench_dump_arrived: counts at XDP and passes.
    pub arrived: OwnedFd,
    /// bench_dump_delivered: counts at TC ingress and drops.
    pub delivered: OwnedFd,
    /// bench_dump_counts: one per-CPU u64 per enum bench_dump_count slot.
    pub counts: MapHandle,
}

impl Programs {
    pub fn load() -> anyhow::Result<Programs> {
        let mut storage = MaybeUninit::uninit();
        let open = BenchDumpSkelBuilder::default()
            .open(&mut storage)
            .context("opening the benchmark's programs (bench_dump.bpf.c)")?;
        let skel = open.load().context("loading the benchmark's programs (bench_dump.bpf.c)")?;
        let fd = |f: std::os::fd::BorrowedFd<'_>| f.try_clone_to_owned().context("duplicating a program's fd");
        Ok(Programs {
            generator: fd(skel.progs.bench_dump_gen.as_fd())?,
            arrived: fd(skel.progs.bench_dump_arrived.as_fd())?,
            delivered: fd(skel.progs.bench_dump_delivered.as_fd())?,
            counts: MapHandle::try_from(&skel.maps.bench_dump_counts).context("opening the counters")?,
        })
    }
}
