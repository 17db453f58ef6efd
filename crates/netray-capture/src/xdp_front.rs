//! Putting a capture program in front of whatever runs at XDP on an interface,
//! atomically, and putting the original back exactly.
//!
//! This kernel refuses freplace and fentry/fexit, so a capture at the XDP
//! entry point is a program of ours attached in place of the original, which
//! it reaches by tail call (cap_chain slot NR_CAP_NEXT). The swap never
//! leaves the interface without a program: a bpf_link is updated with
//! BPF_F_REPLACE, a netlink attachment replaced with XDP_FLAGS_REPLACE, both
//! naming the program expected in place, so a concurrent change by someone
//! else is refused rather than overwritten.
//!
//! Crash safety: before the swap the capture's chain map and the original
//! program are pinned under `<pin>/capture/<ifindex>/xdp/`, with the owner's
//! pid and the attachment method recorded as empty directories (bpffs holds
//! nothing else). If netray dies, traffic keeps flowing through the original
//! (the pinned chain keeps it reachable) and the next `netray dump` on the
//! interface restores it ([`recover`]).

use std::{
    ffi::CString,
    fs,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
};

use netray_core::{
    dispatcher::process_alive,
    link::pin_fd,
    xdp::{prog_name, xdp_query},
    AttachMode, Error, Interface, PinDir, Result,
};

/// What runs at XDP on an interface, as found before a capture.
#[derive(Debug)]
pub enum Occupant {
    Empty,
    /// Attached through a bpf_link (netray's dispatcher, or a modern loader).
    Link { link: OwnedFd, link_id: u32, prog: OwnedFd, prog_id: u32 },
    /// Attached over netlink (ip link, older loaders), in the given mode.
    Netlink { prog: OwnedFd, prog_id: u32, mode_flags: u32 },
}

impl Occupant {
    pub fn find(ifindex: u32) -> Result<Occupant> {
        let query = xdp_query(ifindex)?;
        if query.prog_id == 0 {
            return Ok(Occupant::Empty);
        }
        let prog = prog_fd_by_id(query.prog_id)?;
        if let Some((link, link_id)) = xdp_link_of(ifindex) {
            return Ok(Occupant::Link { link, link_id, prog, prog_id: query.prog_id });
        }
        let mode_flags = match u32::from(query.attach_mode) {
            libbpf_sys::XDP_ATTACHED_DRV => libbpf_sys::XDP_FLAGS_DRV_MODE,
            libbpf_sys::XDP_ATTACHED_SKB => libbpf_sys::XDP_FLAGS_SKB_MODE,
            other => {
                return Err(Error::KernelRefused(format!(
                    "the XDP program on ifindex {ifindex} is attached in a mode netray cannot capture beside \
                     (attach_mode {other}: offloaded or several programs)"
                )))
            }
        };
        Ok(Occupant::Netlink { prog, prog_id: query.prog_id, mode_flags })
    }

    pub fn prog(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Occupant::Empty => None,
            Occupant::Link { prog, .. } | Occupant::Netlink { prog, .. } => Some(prog.as_fd()),
        }
    }

    pub fn prog_id(&self) -> u32 {
        match self {
            Occupant::Empty => 0,
            Occupant::Link { prog_id, .. } | Occupant::Netlink { prog_id, .. } => *prog_id,
        }
    }
}

/// A capture program in front of the interface's XDP program.
#[derive(Debug)]
pub struct Front {
    ifindex: u32,
    ifname: String,
    kind: FrontKind,
    front: OwnedFd,
    state_dir: PathBuf,
}

#[derive(Debug)]
enum FrontKind {
    /// Nothing was attached: the front is attached by a link this process
    /// owns (not pinned), so it vanishes with the process.
    OwnLink(#[allow(dead_code)] OwnedFd),
    Link { link: OwnedFd, original: OwnedFd },
    Netlink { original: OwnedFd, mode_flags: u32 },
}

/// `<pin>/capture/<ifindex>/xdp`: the pins of a capture in front of XDP.
pub fn state_dir(pin: &PinDir, ifindex: u32) -> PathBuf {
    pin.capture_dir().join(ifindex.to_string()).join("xdp")
}

impl Front {
    /// Puts `front` in place of `occupant`; `chain` (holding the original in
    /// NR_CAP_NEXT) is pinned first. Call with the pin lock held.
    pub fn install(
        pin: &PinDir,
        iface: &Interface,
        occupant: Occupant,
        front: OwnedFd,
        chain: BorrowedFd<'_>,
        mode: AttachMode,
    ) -> Result<Front> {
        let state_dir = state_dir(pin, iface.index);
        let kind = match occupant {
            Occupant::Empty => FrontKind::OwnLink(attach_own_link(front.as_fd(), iface, mode)?),
            Occupant::Link { link, link_id, prog, .. } => {
                write_state(&state_dir, chain, prog.as_fd(), &format!("link-{link_id}"))?;
                if let Err(e) = link_update(link.as_fd(), front.as_fd(), prog.as_fd()) {
                    let _ = fs::remove_dir_all(&state_dir);
                    remove_empty_parents(&state_dir);
                    return Err(swap_error(iface, e));
                }
                FrontKind::Link { link, original: prog }
            }
            Occupant::Netlink { prog, mode_flags, .. } => {
                write_state(&state_dir, chain, prog.as_fd(), &format!("netlink-{mode_flags}"))?;
                if let Err(e) = netlink_replace(iface.index, front.as_fd(), prog.as_fd(), mode_flags) {
                    let _ = fs::remove_dir_all(&state_dir);
                    remove_empty_parents(&state_dir);
                    return Err(swap_error(iface, e));
                }
                FrontKind::Netlink { original: prog, mode_flags }
            }
        };
        Ok(Front { ifindex: iface.index, ifname: iface.name.clone(), kind, front, state_dir })
    }

    /// Puts the original program back (or detaches the front if there was
    /// none) and removes the pins. If someone replaced the front meanwhile,
    /// their program is left alone and that is reported.
    pub fn restore(self) -> Result<()> {
        let result = match &self.kind {
            FrontKind::OwnLink(_) => Ok(()),
            FrontKind::Link { link, original } => link_update(link.as_fd(), original.as_fd(), self.front.as_fd()),
            FrontKind::Netlink { original, mode_flags } => {
                netlink_replace(self.ifindex, original.as_fd(), self.front.as_fd(), *mode_flags)
            }
        };
        // Dropping our own link detaches the front.
        drop(self.kind);
        let _ = fs::remove_dir_all(&self.state_dir);
        remove_empty_parents(&self.state_dir);
        if result.is_err() && Interface::name_of(self.ifindex).is_none() {
            // The interface went away, and its programs with it: nothing to put back.
            return Ok(());
        }
        result.map_err(|e| {
            Error::KernelRefused(format!(
                "could not put the original XDP program back on {} ({e}): the program there changed while \
                 netray was capturing, so it was left as it is",
                self.ifname
            ))
        })
    }
}

/// Restores what a capture killed before it could clean up left in front of
/// the interface's XDP program. Returns a note for the user when it did
/// something, an error when a live capture holds the interface.
pub fn recover(pin: &PinDir, iface: &Interface) -> Result<Option<String>> {
    let dir = state_dir(pin, iface.index);
    if !dir.exists() {
        return Ok(None);
    }
    let mut pid = None;
    let mut method = None;
    for e in fs::read_dir(&dir).map_err(Error::io(&dir))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(p) = name.strip_prefix("pid-") {
            pid = p.parse::<u32>().ok();
        } else if name.starts_with("link-") || name.starts_with("netlink-") {
            method = Some(name);
        }
    }
    if let Some(p) = pid.filter(|&p| process_alive(p)) {
        return Err(Error::CaptureBusy { what: format!("(pid {p}) is capturing at XDP on {}", iface.name) });
    }
    let original = open_pinned_prog(&dir.join("original"));
    let current = xdp_query(iface.index)?.prog_id;
    let mut note = format!("a capture on {} was killed before it could clean up", iface.name);
    if let (Some(original), Some(method), true) = (original, method, current != 0) {
        let front = prog_fd_by_id(current)?;
        let restored = if let Some(id) = method.strip_prefix("link-").and_then(|s| s.parse().ok()) {
            link_fd_by_id(id).and_then(|link| link_update(link.as_fd(), original.as_fd(), front.as_fd()))
        } else if let Some(flags) = method.strip_prefix("netlink-").and_then(|s| s.parse().ok()) {
            netlink_replace(iface.index, original.as_fd(), front.as_fd(), flags)
        } else {
            Err(std::io::Error::from_raw_os_error(libc::EINVAL))
        };
        match (restored, is_capture_front(current)) {
            (Ok(()), _) => note.push_str(": the original XDP program is back in place"),
            (Err(_), false) => note.push_str(": the XDP program there changed since, so it was left as it is"),
            (Err(e), true) => return Err(Error::KernelRefused(format!("{note}, and restoring the original failed: {e}"))),
        }
    }
    fs::remove_dir_all(&dir).map_err(Error::io(&dir))?;
    remove_empty_parents(&dir);
    Ok(Some(note))
}

/// Removes `<pin>/capture/<ifindex>` and `<pin>/capture` once they are empty
/// (called with the pin lock held, so no other capture is creating them).
fn remove_empty_parents(state_dir: &Path) {
    for dir in state_dir.ancestors().skip(1).take(2) {
        if fs::remove_dir(dir).is_err() {
            break;
        }
    }
}

/// Is the program with this id one of netray dump's?
pub fn is_capture_front(prog_id: u32) -> bool {
    prog_name(prog_id).is_some_and(|n| n.starts_with("netray_cap"))
}

fn write_state(dir: &Path, chain: BorrowedFd<'_>, original: BorrowedFd<'_>, method: &str) -> Result<()> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).map_err(Error::io(dir))?;
    pin_fd(chain, &dir.join("chain"))?;
    pin_fd(original, &dir.join("original"))?;
    for name in [format!("pid-{}", std::process::id()), method.to_string()] {
        fs::create_dir(dir.join(&name)).map_err(Error::io(dir.join(&name)))?;
    }
    Ok(())
}

fn swap_error(iface: &Interface, e: std::io::Error) -> Error {
    Error::KernelRefused(format!(
        "could not put the capture in front of the XDP program on {}: {e} (the program there changed meanwhile, \
         or the kernel refused the swap)",
        iface.name
    ))
}

fn attach_own_link(prog: BorrowedFd<'_>, iface: &Interface, mode: AttachMode) -> Result<OwnedFd> {
    let tries: &[u32] = match mode {
        AttachMode::Native => &[libbpf_sys::XDP_FLAGS_DRV_MODE],
        AttachMode::Generic => &[libbpf_sys::XDP_FLAGS_SKB_MODE],
        AttachMode::Auto => &[libbpf_sys::XDP_FLAGS_DRV_MODE, libbpf_sys::XDP_FLAGS_SKB_MODE],
    };
    let mut last = 0;
    for &flags in tries {
        match netray_core::link::create(prog, iface.index, libbpf_sys::BPF_XDP, flags) {
            Ok(link) => return Ok(link),
            Err(errno) => last = errno,
        }
    }
    Err(Error::KernelRefused(format!(
        "the kernel refused to attach the capture program to {} at XDP: {}",
        iface.name,
        std::io::Error::from_raw_os_error(last)
    )))
}

fn link_update(link: BorrowedFd<'_>, new: BorrowedFd<'_>, old: BorrowedFd<'_>) -> std::io::Result<()> {
    let opts = libbpf_sys::bpf_link_update_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_link_update_opts>() as _,
        flags: libbpf_sys::BPF_F_REPLACE,
        old_prog_fd: old.as_raw_fd() as u32,
        ..Default::default()
    };
    // SAFETY: all fds are valid; opts is initialised with its size.
    let rc = unsafe { libbpf_sys::bpf_link_update(link.as_raw_fd(), new.as_raw_fd(), &opts) };
    if rc < 0 {
        return Err(std::io::Error::from_raw_os_error(-rc));
    }
    Ok(())
}

fn netlink_replace(ifindex: u32, new: BorrowedFd<'_>, old: BorrowedFd<'_>, mode_flags: u32) -> std::io::Result<()> {
    let opts = libbpf_sys::bpf_xdp_attach_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_xdp_attach_opts>() as _,
        old_prog_fd: old.as_raw_fd(),
        ..Default::default()
    };
    let flags = mode_flags | libbpf_sys::XDP_FLAGS_REPLACE;
    // SAFETY: fds are valid; opts is initialised with its size.
    let rc = unsafe { libbpf_sys::bpf_xdp_attach(ifindex as i32, new.as_raw_fd(), flags, &opts) };
    if rc < 0 {
        return Err(std::io::Error::from_raw_os_error(-rc));
    }
    Ok(())
}

/// The bpf_link that holds XDP on `ifindex`, if the program there came by link.
fn xdp_link_of(ifindex: u32) -> Option<(OwnedFd, u32)> {
    let mut id = 0u32;
    loop {
        let mut next = 0u32;
        // SAFETY: plain syscall wrapper writing one u32.
        if unsafe { libbpf_sys::bpf_link_get_next_id(id, &mut next) } != 0 {
            return None;
        }
        id = next;
        let Ok(link) = link_fd_by_id(id) else { continue };
        let mut info = libbpf_sys::bpf_link_info::default();
        let mut len = std::mem::size_of::<libbpf_sys::bpf_link_info>() as u32;
        // SAFETY: info/len describe a valid buffer.
        let rc = unsafe { libbpf_sys::bpf_link_get_info_by_fd(link.as_raw_fd(), &mut info, &mut len) };
        // SAFETY: the xdp member is the one the kernel fills for XDP links.
        if rc == 0 && info.type_ == libbpf_sys::BPF_LINK_TYPE_XDP && unsafe { info.__bindgen_anon_1.xdp.ifindex } == ifindex {
            return Some((link, id));
        }
    }
}

fn link_fd_by_id(id: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall wrapper.
    let fd = unsafe { libbpf_sys::bpf_link_get_fd_by_id(id) };
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn prog_fd_by_id(id: u32) -> Result<OwnedFd> {
    // SAFETY: plain syscall wrapper.
    let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
    if fd < 0 {
        return Err(Error::KernelRefused(format!(
            "cannot open XDP program id {id}: {}",
            std::io::Error::from_raw_os_error(-fd)
        )));
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn open_pinned_prog(path: &Path) -> Option<OwnedFd> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: c is NUL-terminated.
    let fd = unsafe { libbpf_sys::bpf_obj_get(c.as_ptr()) };
    // SAFETY: a fresh fd we own.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}
