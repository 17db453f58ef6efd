//! The kernel's drops: loads bpf/drops.bpf.c on skb:kfree_skb the first way
//! the running kernel accepts (tp_btf, raw tracepoint, tracepoint: see the C
//! file), with the pcap filter spliced in as `netray dump` does beside a
//! foreign XDP program (netray-capture's trace_front.rs), and reads its ring.
//!
//! libbpf prepares the object (CO-RE and map relocations, maps created), the
//! filter placeholder is replaced with bpf_program__set_insns, then libbpf
//! loads and attaches as usual. The link is not pinned: the tracer lives as
//! long as the process.

use std::{cell::RefCell, collections::VecDeque, mem::MaybeUninit, rc::Rc, time::Duration};

use libbpf_rs::{
    skel::{OpenSkel, SkelBuilder},
    AsRawLibbpf, Link, MapHandle, RingBuffer, RingBufferBuilder,
};
use netray_core::{maps, Error, Result};
use netray_ebpf::{
    abi::{nr_drop_stats, sum_counters},
    drops::DropsSkelBuilder,
};
use netray_pcapfilter::ebpf::EbpfInsn as I;
use serde::Serialize;

/// Names the first way to try (tp_btf, raw_tp, tracepoint): the ways before it are skipped.
pub const WAY_ENV: &str = "NETRAY_DROPS_WAY";

/// How the tracer is attached to skb:kfree_skb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AttachWay {
    /// BTF-typed raw tracepoint (BPF_PROG_TYPE_TRACING).
    #[serde(rename = "tp_btf")]
    TpBtf,
    /// Classic raw tracepoint.
    #[serde(rename = "raw_tp")]
    RawTp,
    /// The trace event (tracefs format; `reason` only where the kernel has it).
    #[serde(rename = "tracepoint")]
    Tracepoint,
}

impl AttachWay {
    pub const ALL: [AttachWay; 3] = [AttachWay::TpBtf, AttachWay::RawTp, AttachWay::Tracepoint];

    /// As the environment variable NETRAY_DROPS_WAY names it.
    pub fn short(self) -> &'static str {
        match self {
            AttachWay::TpBtf => "tp_btf",
            AttachWay::RawTp => "raw_tp",
            AttachWay::Tracepoint => "tracepoint",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AttachWay::TpBtf => "tp_btf/kfree_skb",
            AttachWay::RawTp => "raw_tp/kfree_skb",
            AttachWay::Tracepoint => "tracepoint/skb/kfree_skb",
        }
    }
}

/// Which drops the kernel reports: 0 = any.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope {
    /// Inode of a network namespace (`/proc/self/ns/net`).
    pub netns: u32,
    pub ifindex: u32,
}

/// What the kernel side needs before load.
#[derive(Debug, Clone)]
pub struct KernelSpec {
    pub scope: Scope,
    /// The translated pcap filter (netray-pcapfilter), run over each dropped packet.
    pub fragment: Vec<I>,
    /// Ring buffer bytes (a power of two).
    pub ring_bytes: u32,
    /// Reason codes that are frees, not drops (from the kernel's BTF).
    pub consumed: Option<u32>,
    pub not_dropped_yet: Option<u32>,
}

/// Counters of the kernel side since the tracer started.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct KernelStats {
    /// kfree_skb calls seen.
    pub freed: u64,
    /// Of those, frees that are not drops.
    pub not_drops: u64,
    /// Drops outside the scope (another interface or namespace).
    pub other_scope: u64,
    /// Drops the pcap filter rejected.
    pub filtered: u64,
    /// Drops written to the ring.
    pub reported: u64,
    /// Drops the ring had no room for: counted, not written.
    pub lost: u64,
}

/// The tracer, attached.
pub struct KernelDrops {
    // Field order is drop order: the ring goes before the map it reads.
    ring: RingBuffer<'static>,
    _ring_map: MapHandle,
    stats: MapHandle,
    _link: Link,
    queue: Rc<RefCell<VecDeque<Vec<u8>>>>,
    way: AttachWay,
    refused: Vec<String>,
}

impl KernelDrops {
    /// Attaches the tracer the first way the kernel accepts; Err names every
    /// refusal.
    pub fn start(spec: &KernelSpec) -> Result<KernelDrops> {
        let mut refused = Vec::new();
        // Tests (and users comparing) can start further down the list.
        let first = std::env::var(WAY_ENV).ok();
        let skip = first.as_deref().and_then(|f| AttachWay::ALL.iter().position(|w| w.short() == f)).unwrap_or(0);
        for way in AttachWay::ALL.into_iter().skip(skip) {
            match load(way, spec) {
                Ok((link, ring_map, stats)) => {
                    let queue: Rc<RefCell<VecDeque<Vec<u8>>>> = Rc::default();
                    let sink = Rc::clone(&queue);
                    let mut b = RingBufferBuilder::new();
                    b.add(&ring_map, move |data: &[u8]| {
                        sink.borrow_mut().push_back(data.to_vec());
                        0
                    })
                    .map_err(Error::bpf("opening the drop ring"))?;
                    let ring = b.build().map_err(Error::bpf("opening the drop ring"))?;
                    return Ok(KernelDrops { ring, _ring_map: ring_map, stats, _link: link, queue, way, refused });
                }
                Err(e) => refused.push(format!("{}: {e}", way.name())),
            }
        }
        Err(Error::KernelRefused(format!(
            "the kernel refused every way to trace skb:kfree_skb ({})",
            refused.join("; ")
        )))
    }

    /// How the tracer is attached.
    pub fn way(&self) -> AttachWay {
        self.way
    }

    /// The ways tried first and refused, with the kernel's reason.
    pub fn refused(&self) -> &[String] {
        &self.refused
    }

    /// Waits up to `timeout` and hands over the records that arrived (an
    /// nr_drop_event and the packet's bytes each).
    pub fn poll(&mut self, timeout: Duration, each: &mut dyn FnMut(&[u8]) -> bool) -> Result<bool> {
        let _ = self.ring.poll(timeout);
        self.ring.consume().map_err(Error::bpf("reading the drop ring"))?;
        loop {
            let Some(rec) = self.queue.borrow_mut().pop_front() else { return Ok(true) };
            if !each(&rec) {
                return Ok(false);
            }
        }
    }

    pub fn stats(&self) -> Result<KernelStats> {
        let per_cpu: Vec<nr_drop_stats> = maps::get_percpu(&self.stats, 0)?;
        let s = sum_counters(&per_cpu);
        Ok(KernelStats {
            freed: s.freed,
            not_drops: s.not_drops,
            other_scope: s.other_scope,
            filtered: s.filtered,
            reported: s.reported,
            lost: s.lost,
        })
    }
}

/// Loads and attaches the tracer one way: its link and its ring and counter maps.
fn load(way: AttachWay, spec: &KernelSpec) -> std::result::Result<(Link, MapHandle, MapHandle), String> {
    let mut storage = MaybeUninit::uninit();
    let mut open = DropsSkelBuilder::default().open(&mut storage).map_err(|e| format!("opening: {e}"))?;
    let ro = open.maps.rodata_data.as_deref_mut().ok_or("no read-only data section")?;
    ro.cfg_reason_consumed = spec.consumed.unwrap_or(u32::MAX);
    // Without the enum, code 0 is still "not dropped yet" (it has always been).
    ro.cfg_reason_not_dropped = spec.not_dropped_yet.unwrap_or(0);
    ro.cfg_netns = spec.scope.netns;
    ro.cfg_ifindex = spec.scope.ifindex;
    ro.cfg_wakeup_bytes = spec.ring_bytes / 4;
    let cpus = libbpf_rs::num_possible_cpus().map_err(|e| format!("counting CPUs: {e}"))? as u32;
    open.maps.drop_copy.set_max_entries(cpus).map_err(|e| e.to_string())?;
    open.maps.drop_events.set_max_entries(spec.ring_bytes).map_err(|e| e.to_string())?;
    let progs = &mut open.progs;
    let prog = match way {
        AttachWay::TpBtf => &mut progs.netray_drops_btf,
        AttachWay::RawTp => &mut progs.netray_drops_raw,
        AttachWay::Tracepoint => &mut progs.netray_drops_tp,
    };
    prog.set_autoload(true);
    // SAFETY: the object pointer is valid while `open` lives.
    let rc = unsafe { libbpf_sys::bpf_object__prepare(open.open_object_mut().as_libbpf_object().as_ptr()) };
    if rc != 0 {
        return Err(format!("preparing the program: {}", std::io::Error::from_raw_os_error(-rc)));
    }
    let prog = match way {
        AttachWay::TpBtf => &mut open.progs.netray_drops_btf,
        AttachWay::RawTp => &mut open.progs.netray_drops_raw,
        AttachWay::Tracepoint => &mut open.progs.netray_drops_tp,
    };
    let raw = prog.as_libbpf_object().as_ptr();
    // SAFETY: after prepare, insns points at insn_cnt relocated instructions
    // owned by the object, which `open` keeps alive.
    let insns: Vec<I> =
        unsafe { std::slice::from_raw_parts(libbpf_sys::bpf_program__insns(raw), libbpf_sys::bpf_program__insn_cnt(raw) as usize) }
            .iter()
            .map(|i| I { code: i.code, dst: i.dst_reg(), src: i.src_reg(), off: i.off, imm: i.imm })
            .collect();
    let spliced = netray_capture::trace_front::splice_filter(&insns, &spec.fragment)?;
    let mut out: Vec<libbpf_sys::bpf_insn> = spliced
        .iter()
        .map(|i| {
            let mut b = libbpf_sys::bpf_insn { code: i.code, off: i.off, imm: i.imm, ..Default::default() };
            b.set_dst_reg(i.dst);
            b.set_src_reg(i.src);
            b
        })
        .collect();
    // SAFETY: the program belongs to the prepared, not yet loaded object; libbpf copies the instructions.
    let rc = unsafe { libbpf_sys::bpf_program__set_insns(raw, out.as_mut_ptr(), out.len() as _) };
    if rc != 0 {
        return Err(format!("installing the filter: {}", std::io::Error::from_raw_os_error(-rc)));
    }
    let skel = open.load().map_err(|e| short(&e))?;
    let prog = match way {
        AttachWay::TpBtf => &skel.progs.netray_drops_btf,
        AttachWay::RawTp => &skel.progs.netray_drops_raw,
        AttachWay::Tracepoint => &skel.progs.netray_drops_tp,
    };
    let link = prog.attach().map_err(|e| format!("attaching: {}", short(&e)))?;
    let ring = MapHandle::try_from(&skel.maps.drop_events).map_err(|e| e.to_string())?;
    let stats = MapHandle::try_from(&skel.maps.drop_stats).map_err(|e| e.to_string())?;
    Ok((link, ring, stats))
}

/// A libbpf error in a few words (its first line).
fn short(e: &libbpf_rs::Error) -> String {
    let s = format!("{e:#}");
    s.lines().next().unwrap_or_default().to_string()
}

/// The inode of the network namespace this process is in (`/proc/self/ns/net`).
pub fn current_netns() -> Result<u32> {
    use std::os::unix::fs::MetadataExt;
    let path = std::path::Path::new("/proc/self/ns/net");
    let m = std::fs::metadata(path).map_err(|source| Error::Io { path: path.into(), source })?;
    Ok(m.ino() as u32)
}
