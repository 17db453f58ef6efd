//! The recorder (bpf/capture.bpf.c) and its maps: one ring buffer per CPU,
//! per-point counters, the scratch handoff and the session's PROG_ARRAY.

use std::{
    mem::MaybeUninit,
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
};

use libbpf_rs::{
    skel::{OpenSkel, SkelBuilder},
    AsRawLibbpf, MapCore, MapFlags, MapHandle, MapType,
};
use netray_core::{maps, Error, Hook, Result};
use netray_ebpf::{
    abi::{nr_capture_slot, nr_capture_stats},
    capture::CaptureSkelBuilder,
};

use crate::front::{Kind, Variant};

/// A loaded recorder with the maps a capture session reads.
#[derive(Debug)]
pub struct Recorder {
    pub prog: OwnedFd,
    /// One ring per possible CPU, indexed by CPU id (see [`Recorder::add_rings`]).
    pub rings: Vec<MapHandle>,
    /// The array of rings the recorder looks its CPU's ring up in.
    outer: MapHandle,
    pub stats: MapHandle,
    pub scratch: MapHandle,
    pub chain: MapHandle,
}

/// How the recorder is loaded.
#[derive(Debug, Clone, Copy)]
pub struct RecorderSpec<'a> {
    pub hook: Hook,
    pub variant: Variant,
    /// Fill level at which the kernel wakes the reader early.
    pub wakeup_bytes: u32,
    /// The dispatcher's if_cap_scratch, for exit captures (the dispatcher writes
    /// the verdict there).
    pub scratch: Option<BorrowedFd<'a>>,
}

impl Recorder {
    pub fn load(spec: &RecorderSpec<'_>) -> Result<Recorder> {
        let kind = kind_of(spec.hook);
        let mut storage = MaybeUninit::uninit();
        let mut open = CaptureSkelBuilder::default()
            .open(&mut storage)
            .map_err(Error::bpf("opening the capture recorder"))?;
        let rodata = open.maps.rodata_data.as_deref_mut().ok_or_else(|| {
            Error::Internal("the capture recorder has no read-only data section".into())
        })?;
        rodata.cfg_hook = u32::from(crate::session::hook_code(spec.hook));
        rodata.cfg_wakeup_bytes = spec.wakeup_bytes;

        let cpus = libbpf_rs::num_possible_cpus().map_err(Error::bpf("counting possible CPUs"))? as u32;
        open.maps.cap_rings.set_max_entries(cpus).map_err(Error::bpf("sizing the capture rings"))?;
        // The inner rings are created by add_rings at the size asked: the kernel
        // does not compare a ring's size with the template's.
        if let Some(fd) = spec.scratch {
            open.maps
                .if_cap_scratch
                .reuse_fd(fd)
                .map_err(Error::bpf("sharing the dispatcher's capture scratch map"))?;
        }
        let (used, unused) = match kind {
            Kind::Xdp => (&mut open.progs.netray_cap_xdp, &mut open.progs.netray_cap_tc),
            Kind::Tc => (&mut open.progs.netray_cap_tc, &mut open.progs.netray_cap_xdp),
        };
        unused.set_autoload(false);
        used.set_flags(spec.variant.flags());
        // SAFETY: the program pointer is valid while the open object lives.
        unsafe {
            libbpf_sys::bpf_program__set_expected_attach_type(used.as_libbpf_object().as_ptr(), spec.variant.attach_type);
        }
        let skel = open.load().map_err(Error::bpf("loading the capture recorder into the kernel"))?;

        let prog = match kind {
            Kind::Xdp => skel.progs.netray_cap_xdp.as_fd(),
            Kind::Tc => skel.progs.netray_cap_tc.as_fd(),
        }
        .try_clone_to_owned()
        .map_err(Error::io("recorder program fd"))?;
        let outer = MapHandle::try_from(&skel.maps.cap_rings).map_err(Error::bpf("capture rings"))?;
        let chain = MapHandle::try_from(&skel.maps.cap_chain).map_err(Error::bpf("capture chain"))?;
        let record_slot = nr_capture_slot::NR_CAP_RECORD.0;
        chain
            .update(&record_slot.to_ne_bytes(), &(prog.as_raw_fd() as u32).to_ne_bytes(), MapFlags::ANY)
            .map_err(Error::bpf("installing the recorder in the capture chain"))?;
        Ok(Recorder {
            prog,
            rings: Vec::new(),
            outer,
            stats: MapHandle::try_from(&skel.maps.cap_stats).map_err(Error::bpf("capture counters"))?,
            scratch: MapHandle::try_from(&skel.maps.if_cap_scratch).map_err(Error::bpf("capture scratch"))?,
            chain,
        })
    }

    /// A recorder whose program was loaded elsewhere around the same maps
    /// (trace_front.rs: the fentry/fexit capture).
    pub(crate) fn from_maps(prog: OwnedFd, outer: MapHandle, stats: MapHandle, scratch: MapHandle, chain: MapHandle) -> Recorder {
        Recorder { prog, rings: Vec::new(), outer, stats, scratch, chain }
    }

    /// Creates one ring of `ring_bytes` per possible CPU. Apart from loading,
    /// so that program variants the kernel refuses to chain cost no ring memory.
    pub fn add_rings(&mut self, ring_bytes: u32) -> Result<()> {
        let cpus = self.outer.max_entries();
        for cpu in 0..cpus {
            let opts = libbpf_sys::bpf_map_create_opts {
                sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
                ..Default::default()
            };
            let ring = MapHandle::create(MapType::RingBuf, Some(format!("nr_cap_ring{cpu}")), 0, 0, ring_bytes, &opts)
                .map_err(Error::bpf(format!(
                    "creating a {} KiB capture ring (lower -B, or raise the locked-memory limit)",
                    ring_bytes / 1024
                )))?;
            let fd = ring.as_fd().as_raw_fd() as u32;
            self.outer
                .update(&cpu.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
                .map_err(Error::bpf("installing a capture ring"))?;
            self.rings.push(ring);
        }
        Ok(())
    }
}

/// The counters of one point, summed over the CPUs, from a recorder's stats map.
pub fn read_stats(stats: &MapHandle, point: crate::Point) -> Result<nr_capture_stats> {
    let per_cpu: Vec<nr_capture_stats> = maps::get_percpu(stats, point as u32)?;
    Ok(netray_ebpf::abi::sum_counters(&per_cpu))
}

pub fn kind_of(hook: Hook) -> Kind {
    match hook {
        Hook::Xdp => Kind::Xdp,
        _ => Kind::Tc,
    }
}
