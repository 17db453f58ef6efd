//! The XDP attach itself: the modes, the bpf_link that holds netray's
//! program on an interface (with the kernel's reason when native mode is
//! refused), and what the kernel says is attached there.

use std::{
    fmt,
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
    str::FromStr,
};

use crate::{link, Error, Interface, Result};

/// How the XDP program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttachMode {
    /// Native if the driver supports it, else generic (said so).
    #[default]
    Auto,
    /// In the driver (XDP_FLAGS_DRV_MODE); refused if the driver lacks XDP.
    Native,
    /// In the generic network stack path (XDP_FLAGS_SKB_MODE); works everywhere, slower.
    Generic,
}

impl FromStr for AttachMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(AttachMode::Auto),
            "native" | "drv" => Ok(AttachMode::Native),
            "generic" | "skb" => Ok(AttachMode::Generic),
            _ => Err(format!("unknown XDP mode '{s}': use auto, native or generic")),
        }
    }
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachMode::Auto => "auto",
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        })
    }
}

/// Creates the bpf_link holding `prog` on `iface` in `mode`: the link's fd,
/// the mode it runs in, and a note when auto fell back to generic.
pub(crate) fn create_xdp_link(
    prog: BorrowedFd<'_>,
    iface: &Interface,
    mode: AttachMode,
) -> Result<(OwnedFd, &'static str, Option<String>)> {
    let errstr = |e: i32| std::io::Error::from_raw_os_error(e).to_string();
    let generic = |note: Option<String>| {
        link::create(prog, iface.index, libbpf_sys::BPF_XDP, libbpf_sys::XDP_FLAGS_SKB_MODE)
            .map(|fd| (fd, "generic", note))
            .map_err(|e| Error::errno(format!("the kernel refused to attach XDP to {} in generic mode", iface.name), e))
    };
    match mode {
        AttachMode::Generic => generic(None),
        AttachMode::Native | AttachMode::Auto => match link::create(prog, iface.index, libbpf_sys::BPF_XDP, libbpf_sys::XDP_FLAGS_DRV_MODE) {
            Ok(fd) => Ok((fd, "native", None)),
            Err(e) => {
                // bpf_link_create gives only an errno; the kernel's own reason
                // comes back on the netlink path, so ask it there.
                let reason = match native_refusal_reason(prog, iface.index) {
                    Some(r) => format!("{}: {r}", errstr(e)),
                    None => errstr(e),
                };
                if mode == AttachMode::Auto {
                    return generic(Some(format!(
                        "native XDP refused on {} ({reason}): attached in generic mode",
                        iface.name
                    )));
                }
                Err(Error::NativeXdpRefused { iface: iface.name.clone(), reason })
            }
        },
    }
}

static LIBBPF_LOG: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn capture_libbpf(_level: libbpf_rs::PrintLevel, msg: String) {
    if let Ok(mut log) = LIBBPF_LOG.lock() {
        log.push(msg);
    }
}

/// The kernel's extack message for a refused native XDP attach, obtained by
/// trying the same attach over netlink (which returns it; libbpf logs it).
/// An attach that unexpectedly succeeds there is undone at once.
fn native_refusal_reason(prog: BorrowedFd<'_>, ifindex: u32) -> Option<String> {
    LIBBPF_LOG.lock().ok()?.clear();
    let previous = libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Warn, capture_libbpf)));
    let flags = libbpf_sys::XDP_FLAGS_DRV_MODE | libbpf_sys::XDP_FLAGS_UPDATE_IF_NOEXIST;
    // SAFETY: prog is a valid program fd; no opts.
    let rc = unsafe { libbpf_sys::bpf_xdp_attach(ifindex as i32, prog.as_raw_fd(), flags, std::ptr::null()) };
    if rc == 0 {
        // SAFETY: removes the program just attached in native mode.
        unsafe { libbpf_sys::bpf_xdp_detach(ifindex as i32, libbpf_sys::XDP_FLAGS_DRV_MODE, std::ptr::null()) };
    }
    libbpf_rs::set_print(previous);
    let log = std::mem::take(&mut *LIBBPF_LOG.lock().ok()?);
    log.iter().find_map(|l| {
        l.split_once("Kernel error message:").map(|(_, m)| m.trim().to_string()).filter(|m| !m.is_empty())
    })
}

/// What the kernel says is attached to an interface.
pub fn xdp_query(ifindex: u32) -> Result<libbpf_sys::bpf_xdp_query_opts> {
    let mut opts = libbpf_sys::bpf_xdp_query_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_xdp_query_opts>() as _,
        ..Default::default()
    };
    // SAFETY: opts is initialised with its size.
    let rc = unsafe { libbpf_sys::bpf_xdp_query(ifindex as i32, 0, &mut opts) };
    if rc < 0 {
        return Err(Error::errno(format!("querying XDP on ifindex {ifindex}"), rc));
    }
    Ok(opts)
}

pub(crate) fn mode_name(attach_mode: u32) -> &'static str {
    match attach_mode {
        libbpf_sys::XDP_ATTACHED_DRV => "native",
        libbpf_sys::XDP_ATTACHED_SKB => "generic",
        libbpf_sys::XDP_ATTACHED_HW => "offload",
        libbpf_sys::XDP_ATTACHED_MULTI => "multi",
        _ => "detached",
    }
}

/// The name of a loaded program, by id.
pub fn prog_name(id: u32) -> Option<String> {
    let fd = link::prog_by_id(id).ok()?;
    let info = link::prog_info(fd.as_fd()).ok()?;
    // SAFETY: the kernel NUL-terminates name within its 16 bytes.
    let name = unsafe { std::ffi::CStr::from_ptr(info.name.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}
