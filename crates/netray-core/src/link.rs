//! Creating bpf_links (XDP, tcx): the one wrapper every attach goes through.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Attaches `prog` to the interface `ifindex` at `attach_type` (BPF_XDP,
/// BPF_TCX_INGRESS, ...) with link `flags` (XDP mode flags, BPF_F_BEFORE, ...).
/// The link lives as long as the returned fd or a pin of it. Returns the errno
/// on refusal, for callers to explain.
pub fn create(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    attach_type: libbpf_sys::bpf_attach_type,
    flags: u32,
) -> Result<OwnedFd, i32> {
    let opts = libbpf_sys::bpf_link_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as _,
        flags,
        ..Default::default()
    };
    // SAFETY: prog is a valid program fd; opts is initialised with its size.
    let fd = unsafe { libbpf_sys::bpf_link_create(prog.as_raw_fd(), ifindex as i32, attach_type, &opts) };
    if fd < 0 {
        return Err(-fd);
    }
    // SAFETY: a non-negative return is a new fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
