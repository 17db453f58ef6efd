//! Checks that turn a bare EPERM into a message saying what is missing.

use crate::{Error, Result};

/// Fails with a clear error unless this process may load BPF programs.
pub fn require_bpf() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Error::NotRoot);
    }
    // A tiny array map is the cheapest proof that bpf() works here.
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        ..Default::default()
    };
    // SAFETY: valid arguments; the returned fd is closed below.
    let fd = unsafe {
        libbpf_sys::bpf_map_create(libbpf_sys::BPF_MAP_TYPE_ARRAY, std::ptr::null(), 4, 4, 1, &opts)
    };
    if fd < 0 {
        let err = std::io::Error::from_raw_os_error(-fd);
        return Err(match -fd {
            libc::EPERM | libc::EACCES => Error::NotRoot,
            _ => Error::BpfUnavailable(err.to_string()),
        });
    }
    // SAFETY: fd was just returned by bpf_map_create.
    unsafe { libc::close(fd) };
    Ok(())
}

/// Whether the kernel can load a program type, by trying the smallest one.
/// Returns the errno on refusal, so callers can say why.
pub fn prog_type_loadable(prog_type: libbpf_sys::bpf_prog_type) -> std::result::Result<(), i32> {
    // SAFETY: libbpf_probe_bpf_prog_type takes no pointers we own.
    let rc = unsafe { libbpf_sys::libbpf_probe_bpf_prog_type(prog_type, std::ptr::null()) };
    match rc {
        1 => Ok(()),
        0 => Err(libc::EOPNOTSUPP),
        e => Err(-e),
    }
}

/// Whether the kernel lets an fexit program attach to the BPF program `target`
/// (the non-intrusive way to watch an XDP program's verdicts). Tried for real:
/// a minimal fexit program is loaded against the target's main function.
/// Returns the errno on refusal; EOPNOTSUPP when the target has no BTF.
pub fn fexit_on_prog(target: std::os::fd::BorrowedFd<'_>) -> std::result::Result<(), i32> {
    use std::os::fd::AsRawFd;
    let mut func = libbpf_sys::bpf_func_info::default();
    let mut info = libbpf_sys::bpf_prog_info {
        nr_func_info: 1,
        func_info_rec_size: std::mem::size_of::<libbpf_sys::bpf_func_info>() as u32,
        func_info: &mut func as *mut _ as u64,
        ..Default::default()
    };
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: info points at one bpf_func_info record, as nr_func_info says.
    let rc = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(target.as_raw_fd(), &mut info, &mut len) };
    if rc != 0 {
        return Err(-rc);
    }
    if info.btf_id == 0 || info.nr_func_info == 0 {
        return Err(libc::EOPNOTSUPP);
    }
    // r0 = 0; exit
    let insns: [libbpf_sys::bpf_insn; 2] = [
        libbpf_sys::bpf_insn { code: 0xb7, ..Default::default() },
        libbpf_sys::bpf_insn { code: 0x95, ..Default::default() },
    ];
    let mut opts = libbpf_sys::bpf_prog_load_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_prog_load_opts>() as _,
        expected_attach_type: libbpf_sys::BPF_TRACE_FEXIT,
        attach_prog_fd: target.as_raw_fd() as u32,
        attach_btf_id: func.type_id,
        ..Default::default()
    };
    // SAFETY: insns and opts are valid for the call; names are NUL-terminated.
    let fd = unsafe {
        libbpf_sys::bpf_prog_load(
            libbpf_sys::BPF_PROG_TYPE_TRACING,
            c"netray_probe".as_ptr(),
            c"GPL".as_ptr(),
            insns.as_ptr(),
            insns.len() as _,
            &mut opts,
        )
    };
    if fd < 0 {
        return Err(-fd);
    }
    // SAFETY: a fresh fd we own.
    unsafe { libc::close(fd) };
    Ok(())
}
