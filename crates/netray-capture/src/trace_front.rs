//! Capturing beside an XDP program netray did not load through fentry/fexit
//! on its main function (bpf/capture_trace.bpf.c), the way xdp-tools'
//! xdpdump does: nothing is swapped, the program stays attached untouched
//! (its id never changes), and the exit point records the verdict it returned.
//!
//! The tracing programs need the pcap filter inside them, but the filter is
//! only known at run time: libbpf prepares the object (CO-RE and map
//! relocations, maps created), then the placeholder subprogram
//! `nr_trace_filter`, which libbpf appended after the program, is replaced by
//! the translated fragment and the result is loaded against the target.
//! Links are not pinned: if netray dies, they go with it and the program
//! runs on alone.

use std::{
    ffi::CStr,
    mem::MaybeUninit,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

use libbpf_rs::{
    skel::{OpenSkel, SkelBuilder},
    AsRawLibbpf, MapHandle,
};
use netray_core::{Error, Result};
use netray_ebpf::capture_trace::CaptureTraceSkelBuilder;
use netray_pcapfilter::{ebpf::EbpfInsn as I, load_program, LoadError, ProgramSpec};

use crate::{recorder::Recorder, Point};

/// The main function of an XDP program, as fentry/fexit attach to it.
#[derive(Debug)]
pub struct Target {
    pub prog: OwnedFd,
    pub prog_id: u32,
    /// BTF type id of the function in the program's own BTF.
    pub func_type_id: u32,
    pub func: String,
}

impl Target {
    /// The main function of `prog` from its BTF func info; Err says why there
    /// is none (fentry/fexit need it).
    pub fn of(prog: BorrowedFd<'_>, prog_id: u32) -> std::result::Result<Target, String> {
        let no_btf = || format!("XDP program id {prog_id} carries no BTF function info, which fentry/fexit need");
        let (btf_id, func) = match netray_core::probe::main_func(prog) {
            Ok(f) => f,
            Err(libc::EOPNOTSUPP) => return Err(no_btf()),
            Err(e) => return Err(format!("reading XDP program id {prog_id}: {}", std::io::Error::from_raw_os_error(e))),
        };
        // SAFETY: plain loader; the result is freed below.
        let btf = unsafe { libbpf_sys::btf__load_from_kernel_by_id(btf_id) };
        if btf.is_null() {
            return Err(no_btf());
        }
        // SAFETY: btf is valid until btf__free; the name lives in it, copied out first.
        let name = unsafe {
            let t = libbpf_sys::btf__type_by_id(btf, func.type_id);
            let name = if t.is_null() { std::ptr::null() } else { libbpf_sys::btf__name_by_offset(btf, (*t).name_off) };
            let name = (!name.is_null()).then(|| CStr::from_ptr(name).to_string_lossy().into_owned());
            libbpf_sys::btf__free(btf);
            name
        };
        let name = name.filter(|n| !n.is_empty()).ok_or_else(no_btf)?;
        let prog = prog.try_clone_to_owned().map_err(|e| format!("XDP program id {prog_id}: {e}"))?;
        Ok(Target { prog, prog_id, func_type_id: func.type_id, func: name })
    }
}

/// The fentry/fexit programs of a capture, loaded, with the recorder's maps.
pub struct Loaded {
    pub recorder: Recorder,
    progs: Vec<(Point, OwnedFd)>,
}

/// The programs attached: dropping this detaches them.
pub struct TraceFront {
    _links: Vec<OwnedFd>,
}

/// Loads the capture programs of `points` against `target`, with `fragment`
/// as their filter; records carry `ifindex`. Err is the kernel's refusal, in
/// a few words (the caller falls back to chaining and says why).
pub fn load(target: &Target, ifindex: u32, points: &[Point], fragment: &[I], wakeup_bytes: u32) -> std::result::Result<Loaded, String> {
    let mut storage = MaybeUninit::uninit();
    let mut open = CaptureTraceSkelBuilder::default().open(&mut storage).map_err(|e| format!("opening: {e}"))?;
    let rodata = open.maps.rodata_data.as_deref_mut().ok_or("no read-only data section")?;
    rodata.cfg_hook = u32::from(crate::session::hook_code(netray_core::Hook::Xdp));
    rodata.cfg_wakeup_bytes = wakeup_bytes;
    rodata.cfg_ifindex = ifindex;
    let cpus = libbpf_rs::num_possible_cpus().map_err(|e| format!("counting CPUs: {e}"))? as u32;
    open.maps.cap_rings.set_max_entries(cpus).map_err(|e| e.to_string())?;
    open.maps.cap_trace_copy.set_max_entries(cpus).map_err(|e| e.to_string())?;
    for (point, prog) in [(Point::Entry, &mut open.progs.netray_cap_fentry), (Point::Exit, &mut open.progs.netray_cap_fexit)] {
        if points.contains(&point) {
            prog.set_attach_target(target.prog.as_raw_fd(), Some(target.func.clone())).map_err(|e| e.to_string())?;
        } else {
            prog.set_autoload(false);
        }
    }
    // Relocated and its maps created, but not loaded: the filter goes in first.
    // SAFETY: the object pointer is valid while `open` lives.
    let rc = unsafe { libbpf_sys::bpf_object__prepare(open.open_object_mut().as_libbpf_object().as_ptr()) };
    if rc != 0 {
        return Err(format!("preparing the programs: {}", std::io::Error::from_raw_os_error(-rc)));
    }
    let mut progs = Vec::new();
    for point in points {
        let (prog, name, attach_type) = match point {
            Point::Entry => (&open.progs.netray_cap_fentry, "netray_fentry", libbpf_sys::BPF_TRACE_FENTRY),
            Point::Exit => (&open.progs.netray_cap_fexit, "netray_fexit", libbpf_sys::BPF_TRACE_FEXIT),
        };
        let raw = prog.as_libbpf_object().as_ptr();
        // SAFETY: after prepare, insns points at insn_cnt relocated instructions
        // owned by the object, which `open` keeps alive.
        let insns: Vec<I> = unsafe {
            std::slice::from_raw_parts(libbpf_sys::bpf_program__insns(raw), libbpf_sys::bpf_program__insn_cnt(raw) as usize)
        }
        .iter()
        .map(|i| I { code: i.code, dst: i.dst_reg(), src: i.src_reg(), off: i.off, imm: i.imm })
        .collect();
        let spliced = splice_filter(&insns, fragment)?;
        let spec = ProgramSpec {
            name,
            prog_type: libbpf_sys::BPF_PROG_TYPE_TRACING,
            expected_attach_type: attach_type,
            flags: 0,
            attach_target: Some((target.prog.as_raw_fd(), target.func_type_id)),
            btf_func: false,
        };
        let fd = load_program(&spliced, &spec).map_err(|e| match e {
            LoadError::Verifier { source, log } => {
                // The reason, not the statistics line that always ends the log.
                let lines = || log.lines().rev().map(str::trim).filter(|l| !l.is_empty());
                let last = lines().find(|l| !l.starts_with("processed ")).or_else(|| lines().next()).unwrap_or_default();
                if last.is_empty() { source.to_string() } else { format!("{source}; verifier: {last}") }
            }
            e => e.to_string(),
        })?;
        progs.push((*point, fd));
    }
    let handle = |map: *const libbpf_sys::bpf_map, what: &str| -> std::result::Result<MapHandle, String> {
        // SAFETY: the map belongs to the prepared object, whose fd lives while `open` does.
        let fd = unsafe { BorrowedFd::borrow_raw(libbpf_sys::bpf_map__fd(map)) };
        map_handle(fd).map_err(|e| format!("{what}: {e}"))
    };
    let recorder = Recorder::from_maps(
        progs[0].1.try_clone().map_err(|e| e.to_string())?,
        handle(open.maps.cap_rings.as_libbpf_object().as_ptr(), "capture rings")?,
        handle(open.maps.cap_stats.as_libbpf_object().as_ptr(), "capture counters")?,
        handle(open.maps.if_cap_scratch.as_libbpf_object().as_ptr(), "capture scratch")?,
        handle(open.maps.cap_chain.as_libbpf_object().as_ptr(), "capture chain")?,
    );
    Ok(Loaded { recorder, progs })
}

impl Loaded {
    /// Attaches the programs (entry first, so a packet seen at exit was
    /// counted at entry when both are captured).
    pub fn attach(&self) -> Result<TraceFront> {
        let mut links = Vec::new();
        for (point, prog) in &self.progs {
            let attach_type = match point {
                Point::Entry => libbpf_sys::BPF_TRACE_FENTRY,
                Point::Exit => libbpf_sys::BPF_TRACE_FEXIT,
            };
            // SAFETY: a loaded tracing program; its target was given at load.
            let fd = unsafe { libbpf_sys::bpf_link_create(prog.as_raw_fd(), 0, attach_type, std::ptr::null()) };
            if fd < 0 {
                return Err(Error::errno(format!("the kernel refused to attach the {} capture", point.name()), fd));
            }
            // SAFETY: a fresh fd we own.
            links.push(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        Ok(TraceFront { _links: links })
    }
}

/// A handle of our own on a map whose fd belongs to someone else.
fn map_handle(fd: BorrowedFd<'_>) -> Result<MapHandle> {
    let mut info = libbpf_sys::bpf_map_info::default();
    let mut len = std::mem::size_of::<libbpf_sys::bpf_map_info>() as u32;
    // SAFETY: info/len describe a valid buffer.
    let rc = unsafe { libbpf_sys::bpf_map_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
    if rc != 0 {
        return Err(Error::errno("reading a capture map", rc));
    }
    MapHandle::from_map_id(info.id).map_err(Error::bpf("opening a capture map"))
}

const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const PSEUDO_CALL: u8 = 1;

/// Replaces the body of the program's one subprogram (the filter placeholder,
/// appended last by libbpf) with `fragment`, which falls off its end with the
/// snap length in R0.
pub fn splice_filter(insns: &[I], fragment: &[I]) -> std::result::Result<Vec<I>, String> {
    let calls: Vec<usize> = (0..insns.len()).filter(|&pc| insns[pc].code == CALL && insns[pc].src == PSEUDO_CALL).collect();
    let unexpected = || "the capture program's layout is not the one expected (one call of the filter placeholder, appended last): rebuild netray".to_string();
    let [pc] = calls[..] else { return Err(unexpected()) };
    let start = pc as i64 + 1 + i64::from(insns[pc].imm);
    if start <= pc as i64 || start >= insns.len() as i64 {
        return Err(unexpected());
    }
    let start = start as usize;
    let body = &insns[start..];
    if body.len() > 8 || body.last().map(|i| i.code) != Some(EXIT) || body.iter().filter(|i| i.code == EXIT).count() != 1 {
        return Err(unexpected());
    }
    let mut out = insns[..start].to_vec();
    out.extend_from_slice(fragment);
    out.push(I::exit());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netray_pcapfilter::ebpf::{R0, R1, R3};

    #[test]
    fn the_placeholder_is_replaced_by_the_fragment_and_the_caller_is_kept() {
        let caller = [I::mov64_reg(R1, R3), I { code: CALL, dst: 0, src: PSEUDO_CALL, off: 0, imm: 1 }, I::exit()];
        let placeholder = [I::mov64_reg(R0, R3), I::exit()];
        let fragment = [I::mov32_imm(R0, 96), I::mov32_imm(R3, 1)];
        let spliced = splice_filter(&[&caller[..], &placeholder].concat(), &fragment).unwrap();
        assert_eq!(spliced, [&caller[..], &fragment, &[I::exit()]].concat());
    }

    #[test]
    fn an_unexpected_layout_is_refused() {
        let no_call = [I::mov64_reg(R0, R3), I::exit()];
        assert!(splice_filter(&no_call, &[]).unwrap_err().contains("rebuild netray"));
        let backwards = [I::exit(), I { code: CALL, dst: 0, src: PSEUDO_CALL, off: 0, imm: -2 }, I::exit()];
        assert!(splice_filter(&backwards, &[]).is_err());
    }
}
