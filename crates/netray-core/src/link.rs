//! bpf_links and pinned BPF objects: creating links (the one wrapper every
//! attach goes through) and opening pinned objects as fds this process owns.
//!
//! Everything opened here is an [`OwnedFd`], closed when it goes out of
//! scope. (libbpf-rs's `Link::open` + `disconnect()` — what this replaces —
//! never closes its fd: one leaked fd per read of the daemon's API.)

use std::{
    ffi::CString,
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    path::Path,
};

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
    owned(fd).map_err(|e| e.raw_os_error().unwrap_or(libc::EINVAL))
}

/// Turns a libbpf return value (an fd, or -errno) into an owned fd.
fn owned(fd: i32) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: a non-negative return is a new fd that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens a pinned BPF object (program, link or map) by its bpffs path.
pub fn open_pinned(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a pin path with a NUL byte"))?;
    // SAFETY: c is NUL-terminated.
    owned(unsafe { libbpf_sys::bpf_obj_get(c.as_ptr()) })
}

/// Pins a BPF object (program, link or map) at `path` on a bpffs.
pub fn pin_fd(fd: BorrowedFd<'_>, path: &Path) -> crate::Result<()> {
    let cpath = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| crate::Error::BadRequest(format!("pin path {} contains a NUL byte", path.display())))?;
    // SAFETY: fd is valid, cpath is NUL-terminated.
    let rc = unsafe { libbpf_sys::bpf_obj_pin(fd.as_raw_fd(), cpath.as_ptr()) };
    if rc < 0 {
        return Err(crate::Error::io(path)(io::Error::from_raw_os_error(-rc)));
    }
    Ok(())
}

/// Opens a loaded program by id.
pub fn prog_by_id(id: u32) -> io::Result<OwnedFd> {
    // SAFETY: a plain syscall wrapper.
    owned(unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) })
}

/// What the kernel says of a program.
pub fn prog_info(prog: BorrowedFd<'_>) -> io::Result<libbpf_sys::bpf_prog_info> {
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: info/len describe a valid buffer.
    let rc = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(prog.as_raw_fd(), &mut info, &mut len) };
    if rc < 0 {
        return Err(io::Error::from_raw_os_error(-rc));
    }
    Ok(info)
}

/// A link opened from its pin. Closing it (drop) leaves the link attached:
/// the pin holds it; only [`PinnedLink::detach`] detaches.
#[derive(Debug)]
pub struct PinnedLink {
    fd: OwnedFd,
}

impl PinnedLink {
    pub fn open(path: &Path) -> io::Result<PinnedLink> {
        Ok(PinnedLink { fd: open_pinned(path)? })
    }

    /// What the kernel says of the link (its program id, its interface).
    pub fn info(&self) -> io::Result<libbpf_sys::bpf_link_info> {
        let mut info = libbpf_sys::bpf_link_info::default();
        let mut len = std::mem::size_of::<libbpf_sys::bpf_link_info>() as u32;
        // SAFETY: info/len describe a valid buffer.
        let rc = unsafe { libbpf_sys::bpf_link_get_info_by_fd(self.fd.as_raw_fd(), &mut info, &mut len) };
        if rc < 0 {
            return Err(io::Error::from_raw_os_error(-rc));
        }
        Ok(info)
    }

    /// The interface an XDP link is attached to; None once it is defunct
    /// (its interface went away) or if it is not an XDP link.
    pub fn xdp_ifindex(&self) -> Option<u32> {
        let info = self.info().ok()?;
        if info.type_ != libbpf_sys::BPF_LINK_TYPE_XDP {
            return None;
        }
        // SAFETY: the kernel filled the xdp member for an XDP link.
        let ifindex = unsafe { info.__bindgen_anon_1.xdp.ifindex };
        (ifindex != 0).then_some(ifindex)
    }

    /// Detaches the link from its hook (the pin, if any, stays until removed).
    pub fn detach(&self) -> io::Result<()> {
        // SAFETY: a plain syscall wrapper on our fd.
        let rc = unsafe { libbpf_sys::bpf_link_detach(self.fd.as_raw_fd()) };
        if rc < 0 {
            return Err(io::Error::from_raw_os_error(-rc));
        }
        Ok(())
    }
}

impl AsFd for PinnedLink {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    #[test]
    fn objects_opened_by_path_or_id_are_closed_when_dropped() {
        // A missing pin and a missing id are errors, not fds.
        assert_eq!(open_pinned(Path::new("/sys/fs/bpf/netray-no-such-pin")).unwrap_err().kind(), io::ErrorKind::NotFound);
        let before = open_fds();
        for _ in 0..200 {
            let _ = PinnedLink::open(Path::new("/sys/fs/bpf/netray-no-such-pin"));
            let _ = prog_by_id(u32::MAX);
        }
        // Other tests of this process open fds meanwhile (a few at a time);
        // a leak here would leave 200 or more.
        let after = open_fds();
        assert!(after < before + 20, "{before} fds before, {after} after 200 failed opens");
    }
}
