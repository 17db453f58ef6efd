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
