//! The TC programs of an interface's dispatcher (bpf/tc_dispatch.bpf.c):
//! ingress and egress, attached next to the XDP program and sharing its maps.
//!
//! Two ways to attach, chosen at run time:
//! - **tcx** (Linux ≥ 6.6): a bpf_link (BPF_TCX_INGRESS/EGRESS) pinned at
//!   `<if dir>/tc_<dir>_link`. No qdisc involved; programs and filters of
//!   other tools keep running, before or after netray's.
//! - **clsact** (legacy; also when `NETRAY_TC_LEGACY=1`): a direct-action
//!   cls_bpf filter with netray's own handle and priority
//!   ([`LEGACY_HANDLE`], [`LEGACY_PRIORITY`]) on the clsact qdisc, which is
//!   created if missing. The program is pinned at `<if dir>/tc_<dir>_prog`.
//!   Detaching removes only that filter (checked by program id); the clsact
//!   qdisc is removed only when netray created it (marker directory
//!   `clsact_created`) and no filter at all is left on it.
//!
//! netray's TC programs pass packets with TC_ACT_UNSPEC, so whatever another
//! tool installed on the same hook still sees them.

use std::{
    fs,
    mem::MaybeUninit,
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
    path::Path,
    process::Command,
    str::FromStr,
};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use netray_ebpf::tc_dispatch::TcDispatchSkelBuilder;
use serde::Serialize;

use crate::{
    link::{self, PinnedLink},
    map_pins::configure_maps,
    Error, Interface, PinDir, Result,
};

/// Environment variable forcing the legacy clsact path ("1").
pub const TC_LEGACY_ENV: &str = "NETRAY_TC_LEGACY";
/// Handle of netray's legacy cls_bpf filters ("nr").
pub const LEGACY_HANDLE: u32 = 0x6e72;
/// Priority of netray's legacy cls_bpf filters.
pub const LEGACY_PRIORITY: u32 = 0x6e72;

/// Where a packet is seen: one of the hooks netray has programs for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(into = "&'static str")]
pub enum Hook {
    Xdp,
    TcIngress,
    TcEgress,
    Socket,
}

impl Hook {
    pub const ALL: [Hook; 4] = [Hook::Xdp, Hook::TcIngress, Hook::TcEgress, Hook::Socket];
    pub const TC: [Hook; 2] = [Hook::TcIngress, Hook::TcEgress];

    pub fn name(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::TcIngress => "tc-ingress",
            Hook::TcEgress => "tc-egress",
            Hook::Socket => "socket",
        }
    }

    /// Key of this hook's counters in if_stats (enum nr_stats_slot).
    pub fn stats_slot(self) -> u32 {
        use netray_ebpf::abi::nr_stats_slot as S;
        (match self {
            Hook::Xdp => S::NR_STATS_XDP,
            Hook::TcIngress => S::NR_STATS_TC_INGRESS,
            Hook::TcEgress => S::NR_STATS_TC_EGRESS,
            Hook::Socket => S::NR_STATS_SOCKET,
        })
        .0
    }

    fn pin_base(self) -> &'static str {
        match self {
            Hook::TcIngress => "tc_ingress",
            Hook::TcEgress => "tc_egress",
            Hook::Xdp => "xdp",
            Hook::Socket => "socket",
        }
    }

    fn tcx_attach_type(self) -> libbpf_sys::bpf_attach_type {
        if self == Hook::TcIngress {
            libbpf_sys::BPF_TCX_INGRESS
        } else {
            libbpf_sys::BPF_TCX_EGRESS
        }
    }

    fn tc_attach_point(self) -> libbpf_sys::bpf_tc_attach_point {
        if self == Hook::TcIngress {
            libbpf_sys::BPF_TC_INGRESS
        } else {
            libbpf_sys::BPF_TC_EGRESS
        }
    }
}

impl From<Hook> for &'static str {
    fn from(h: Hook) -> &'static str {
        h.name()
    }
}

impl FromStr for Hook {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Hook, String> {
        Hook::ALL
            .into_iter()
            .find(|h| h.name() == s)
            .ok_or_else(|| format!("unknown hook '{s}': use xdp, tc-ingress, tc-egress or socket"))
    }
}

/// How a TC program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TcBackend {
    /// A tcx bpf_link.
    Tcx,
    /// A direct-action cls_bpf filter on the clsact qdisc.
    Clsact,
}

impl TcBackend {
    pub fn name(self) -> &'static str {
        match self {
            TcBackend::Tcx => "tcx",
            TcBackend::Clsact => "clsact",
        }
    }
}

fn legacy_forced() -> bool {
    std::env::var(TC_LEGACY_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

fn link_pin(dir: &Path, hook: Hook) -> std::path::PathBuf {
    dir.join(format!("{}_link", hook.pin_base()))
}

fn prog_pin(dir: &Path, hook: Hook) -> std::path::PathBuf {
    dir.join(format!("{}_prog", hook.pin_base()))
}

fn clsact_marker(dir: &Path) -> std::path::PathBuf {
    dir.join("clsact_created")
}

/// How the TC program of `hook` is attached, if it is, with its program id.
pub fn attached(dir: &Path, hook: Hook) -> Option<(TcBackend, u32)> {
    let link = link_pin(dir, hook);
    if link.exists() {
        let info = PinnedLink::open(&link).ok()?.info().ok();
        return Some((TcBackend::Tcx, info.map_or(0, |i| i.prog_id)));
    }
    let prog = prog_pin(dir, hook);
    if prog.exists() {
        return Some((TcBackend::Clsact, pinned_prog_id(&prog).unwrap_or(0)));
    }
    None
}

/// Loads the TC program of `hook` on the interface's pinned maps and attaches
/// it: tcx when the kernel has it (and legacy is not forced), else clsact.
/// Returns the backend and, when tcx was refused, a note saying why.
pub fn attach(pin: &PinDir, iface: &Interface, dir: &Path, hook: Hook) -> Result<(TcBackend, Option<String>)> {
    let mut storage = MaybeUninit::uninit();
    let mut open = TcDispatchSkelBuilder::default()
        .open(&mut storage)
        .map_err(Error::bpf("opening the TC dispatcher"))?;
    configure_maps(open.open_object_mut(), pin, Some(iface.index))?;
    open.progs.netray_tc_ingress.set_autoload(hook == Hook::TcIngress);
    open.progs.netray_tc_egress.set_autoload(hook == Hook::TcEgress);
    open.progs.netray_socket.set_autoload(false);
    let skel = open.load().map_err(Error::bpf("loading the TC dispatcher into the kernel"))?;
    let prog = if hook == Hook::TcIngress { &skel.progs.netray_tc_ingress } else { &skel.progs.netray_tc_egress };

    let mut note = None;
    if !legacy_forced() {
        match tcx_link_create(prog.as_fd(), iface.index, hook.tcx_attach_type()) {
            Ok(link) => {
                link::pin_fd(link.as_fd(), &link_pin(dir, hook))?;
                return Ok((TcBackend::Tcx, None));
            }
            Err(e) => {
                note = Some(format!(
                    "tcx refused ({}): {} attached as a clsact filter",
                    std::io::Error::from_raw_os_error(e),
                    hook.name()
                ))
            }
        }
    }
    attach_legacy(iface, dir, hook, prog.as_fd())?;
    Ok((TcBackend::Clsact, note))
}

fn tcx_link_create(prog: BorrowedFd<'_>, ifindex: u32, at: libbpf_sys::bpf_attach_type) -> std::result::Result<OwnedFd, i32> {
    crate::link::create(prog, ifindex, at, 0)
}

/// Attaches `prog` at `hook` through a tcx link that runs before every other
/// program there (a capture's entry point). The link is not pinned: it goes
/// with the process. Returns the errno on failure.
pub fn tcx_attach_first(prog: BorrowedFd<'_>, ifindex: u32, hook: Hook) -> std::result::Result<OwnedFd, i32> {
    crate::link::create(prog, ifindex, hook.tcx_attach_type(), libbpf_sys::BPF_F_BEFORE)
}

/// A TC hook (qdisc attach point) of an interface, for libbpf's bpf_tc_* calls.
pub fn tc_hook(ifindex: u32, point: libbpf_sys::bpf_tc_attach_point) -> libbpf_sys::bpf_tc_hook {
    libbpf_sys::bpf_tc_hook {
        sz: std::mem::size_of::<libbpf_sys::bpf_tc_hook>() as _,
        ifindex: ifindex as i32,
        attach_point: point,
        ..Default::default()
    }
}

fn tc_opts(handle: u32, priority: u32, prog_fd: i32) -> libbpf_sys::bpf_tc_opts {
    libbpf_sys::bpf_tc_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_tc_opts>() as _,
        prog_fd,
        handle,
        priority,
        ..Default::default()
    }
}

fn attach_legacy(iface: &Interface, dir: &Path, hook: Hook, prog: BorrowedFd<'_>) -> Result<()> {
    let mut qdisc = tc_hook(iface.index, libbpf_sys::BPF_TC_INGRESS | libbpf_sys::BPF_TC_EGRESS);
    // An existing clsact is normal here: keep libbpf from logging the
    // kernel's "exclusivity flag on" complaint about it.
    let previous = libbpf_rs::set_print(None);
    // SAFETY: qdisc is initialised with its size.
    let rc = unsafe { libbpf_sys::bpf_tc_hook_create(&mut qdisc) };
    libbpf_rs::set_print(previous);
    if rc == 0 {
        let marker = clsact_marker(dir);
        fs::create_dir_all(&marker).map_err(Error::io(&marker))?;
    } else if rc != -libc::EEXIST {
        return Err(Error::errno(format!("creating the clsact qdisc on {}", iface.name), rc));
    }
    let h = tc_hook(iface.index, hook.tc_attach_point());
    let mut opts = tc_opts(LEGACY_HANDLE, LEGACY_PRIORITY, prog.as_raw_fd());
    // SAFETY: h and opts are initialised with their sizes; prog is valid.
    let rc = unsafe { libbpf_sys::bpf_tc_attach(&h, &mut opts) };
    if rc != 0 {
        return Err(Error::errno(
            format!(
                "attaching the {} filter to {} (handle {LEGACY_HANDLE:#x}, priority {LEGACY_PRIORITY})",
                hook.name(),
                iface.name
            ),
            rc,
        ));
    }
    if let Err(e) = link::pin_fd(prog, &prog_pin(dir, hook)) {
        // Unpinned, the filter could never be found again: take it off.
        let d = tc_opts(LEGACY_HANDLE, LEGACY_PRIORITY, 0);
        // SAFETY: h and d are initialised with their sizes.
        unsafe { libbpf_sys::bpf_tc_detach(&h, &d) };
        return Err(e);
    }
    Ok(())
}

/// Removes the TC program of `hook` (link or netray's own filter) and its pins.
pub fn detach(dir: &Path, ifindex: u32, hook: Hook) -> Result<()> {
    let link = link_pin(dir, hook);
    if link.exists() {
        if let Ok(l) = PinnedLink::open(&link) {
            let _ = l.detach();
        }
        let _ = fs::remove_file(&link);
    }
    let prog = prog_pin(dir, hook);
    if prog.exists() {
        let ours = pinned_prog_id(&prog);
        let h = tc_hook(ifindex, hook.tc_attach_point());
        let mut q = tc_opts(LEGACY_HANDLE, LEGACY_PRIORITY, 0);
        // SAFETY: h and q are initialised with their sizes.
        let found = unsafe { libbpf_sys::bpf_tc_query(&h, &mut q) } == 0;
        // Only ever remove the filter that runs netray's own program.
        if found && ours.is_some_and(|id| id == q.prog_id) {
            let d = tc_opts(LEGACY_HANDLE, LEGACY_PRIORITY, 0);
            // SAFETY: as above; detach wants only handle and priority.
            unsafe { libbpf_sys::bpf_tc_detach(&h, &d) };
        }
        let _ = fs::remove_file(&prog);
    }
    remove_clsact_if_ours(dir, ifindex)
}

/// Removes the clsact qdisc if netray created it, netray has no filter left
/// on it, and no other filter is on it either.
fn remove_clsact_if_ours(dir: &Path, ifindex: u32) -> Result<()> {
    let marker = clsact_marker(dir);
    if !marker.exists() || Hook::TC.iter().any(|h| prog_pin(dir, *h).exists()) {
        return Ok(());
    }
    if no_tc_filters(ifindex) {
        let mut qdisc = tc_hook(ifindex, libbpf_sys::BPF_TC_INGRESS | libbpf_sys::BPF_TC_EGRESS);
        // SAFETY: qdisc is initialised with its size.
        unsafe { libbpf_sys::bpf_tc_hook_destroy(&mut qdisc) };
    }
    let _ = fs::remove_dir(&marker);
    Ok(())
}

/// True only when `tc` confirms that no filter is (left) on either clsact hook of
/// `ifindex`: a qdisc someone attached to meanwhile stays. False when the interface
/// is gone. Also used by netray-capture before it removes a qdisc it created.
pub fn no_tc_filters(ifindex: u32) -> bool {
    let Some(name) = Interface::name_of(ifindex) else { return false };
    ["ingress", "egress"].iter().all(|d| {
        Command::new("tc")
            .args(["filter", "show", "dev", &name, d])
            .output()
            .is_ok_and(|o| o.status.success() && o.stdout.iter().all(u8::is_ascii_whitespace))
    })
}

fn pinned_prog_id(path: &Path) -> Option<u32> {
    let fd = link::open_pinned(path).ok()?;
    link::prog_info(fd.as_fd()).ok().map(|i| i.id)
}
