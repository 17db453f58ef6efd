//! The receiving end, on the lab's host end: bench_dump_arrived counts at XDP (before
//! any capture) and bench_dump_delivered counts at TC ingress, after the packet taps,
//! and drops, so the host stack never becomes the bottleneck.

use std::{
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use libbpf_rs::{MapCore, MapFlags, MapHandle};
use netray_ebpf::bench_dump::types::bench_dump_count;
use netray_lab::Lab;

use super::programs::Programs;

/// What the receiving end counted, summed over CPUs.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Counts {
    pub arrived: u64,
    pub delivered: u64,
}

/// Programs on the host end, detached when dropped (their links are not pinned).
pub(super) struct Sink {
    /// bench_dump_counts.
    counts: MapHandle,
    _xdp: OwnedFd,
    _drop: DropAttach,
}

/// How the drop program is attached: a tcx link, or where the kernel has no tcx (before
/// 6.6) the first clsact filter. Either goes when dropped.
enum DropAttach {
    Tcx(#[allow(dead_code)] OwnedFd),
    Clsact(#[allow(dead_code)] netray_capture::tc_front::ClsactEntry),
}

impl Sink {
    pub fn attach(lab: &Lab, programs: &Programs) -> anyhow::Result<Sink> {
        let ifindex = lab.host_ifindex();
        let xdp_prog = programs.arrived.as_fd();
        let tc_prog = programs.delivered.as_fd();
        // A native XDP program on the host end also makes the veth accept redirected frames.
        let xdp = link_create(
            xdp_prog,
            ifindex,
            libbpf_sys::BPF_XDP,
            libbpf_sys::XDP_FLAGS_DRV_MODE,
        )
        .with_context(|| {
            format!(
                "attaching the receive counter to {} in native XDP mode",
                lab.host_if()
            )
        })?;
        let drop = match link_create(tc_prog, ifindex, libbpf_sys::BPF_TCX_INGRESS, 0) {
            Ok(link) => DropAttach::Tcx(link),
            Err(tcx) => netray_capture::tc_front::attach(tc_prog, ifindex, netray_core::Hook::TcIngress)
                .map(DropAttach::Clsact)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "attaching the drop program to {} at TC ingress: tcx refused ({tcx:#}), clsact too ({})",
                        lab.host_if(),
                        std::io::Error::from_raw_os_error(e)
                    )
                })?,
        };
        Ok(Sink {
            counts: MapHandle::try_from(&programs.counts).context("duplicating the counters' handle")?,
            _xdp: xdp,
            _drop: drop,
        })
    }

    pub fn counts(&self) -> anyhow::Result<Counts> {
        let read = |slot: bench_dump_count| -> anyhow::Result<u64> {
            let per_cpu = self
                .counts
                .lookup_percpu(&slot.0.to_ne_bytes(), MapFlags::ANY)
                .context("reading the benchmark's counters")?
                .unwrap_or_default();
            Ok(per_cpu
                .iter()
                .map(|b| u64::from_ne_bytes(b[..8].try_into().expect("a u64 per CPU")))
                .sum())
        };
        Ok(Counts {
            arrived: read(bench_dump_count::BENCH_DUMP_ARRIVED)?,
            delivered: read(bench_dump_count::BENCH_DUMP_DELIVERED)?,
        })
    }

    /// Waits until the receive path has handled what was sent (the veth's NAPI may lag
    /// behind the generator a little), at most 2 s.
    pub fn settle(&self, before: &Counts, sent: u64) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut last = self.counts()?;
        loop {
            std::thread::sleep(Duration::from_millis(20));
            let now = self.counts()?;
            let done = now.delivered - before.delivered >= sent;
            let still = now.arrived == last.arrived && now.delivered == last.delivered;
            if done || still || start.elapsed() > Duration::from_secs(2) {
                return Ok(());
            }
            last = now;
        }
    }
}

pub(super) fn link_create(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    at: libbpf_sys::bpf_attach_type,
    flags: u32,
) -> anyhow::Result<OwnedFd> {
    netray_core::link::create(prog, ifindex, at, flags)
        .map_err(|e| std::io::Error::from_raw_os_error(e).into())
}
