//! The entry capture at TC on kernels without tcx (before 6.6, e.g. Debian 12's 6.1): a
//! direct-action cls_bpf filter on the clsact qdisc at priority 1, so it runs before every
//! other filter (netray's own runs at 0x6e72). It returns TC_ACT_UNSPEC, which in
//! direct-action mode hands the packet to the next filter unchanged. (`netray bench dump`
//! attaches its drop program the same way there.)
//!
//! Unlike a tcx link, a filter outlives the process that attached it: a capture killed
//! with SIGKILL leaves it (it only records into rings nobody reads, and packets go on);
//! the next capture on that hook replaces it, and every capture removes it on exit.

use std::os::fd::{AsRawFd, BorrowedFd};

use netray_core::{
    tc::{no_tc_filters, tc_hook},
    Hook,
};

/// Handle of the entry capture's filter ("nc").
const HANDLE: u32 = 0x6e63;
/// Before every other filter on the hook.
const PRIORITY: u32 = 1;

/// The entry capture's filter, removed by [`ClsactEntry::detach`] (or on drop).
pub struct ClsactEntry {
    ifindex: u32,
    hook: Hook,
    /// The clsact qdisc was created for this capture: remove it too when nothing else uses it.
    created_qdisc: bool,
}

fn point(hook: Hook) -> libbpf_sys::bpf_tc_attach_point {
    if hook == Hook::TcIngress {
        libbpf_sys::BPF_TC_INGRESS
    } else {
        libbpf_sys::BPF_TC_EGRESS
    }
}

/// Attaches `prog` at `hook` of `ifindex` as the first clsact filter. Returns the errno on failure.
pub fn attach(prog: BorrowedFd<'_>, ifindex: u32, hook: Hook) -> Result<ClsactEntry, i32> {
    let mut qdisc = tc_hook(ifindex, libbpf_sys::BPF_TC_INGRESS | libbpf_sys::BPF_TC_EGRESS);
    // An existing clsact is normal: keep libbpf from logging the kernel's complaint about it.
    let previous = libbpf_rs::set_print(None);
    // SAFETY: qdisc is initialised with its size.
    let rc = unsafe { libbpf_sys::bpf_tc_hook_create(&mut qdisc) };
    libbpf_rs::set_print(previous);
    if rc != 0 && rc != -libc::EEXIST {
        return Err(-rc);
    }
    let entry = ClsactEntry { ifindex, hook, created_qdisc: rc == 0 };
    let h = tc_hook(ifindex, point(hook));
    let mut opts = libbpf_sys::bpf_tc_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_tc_opts>() as _,
        prog_fd: prog.as_raw_fd(),
        handle: HANDLE,
        priority: PRIORITY,
        // Takes the place of a filter a killed capture left behind.
        flags: libbpf_sys::BPF_TC_F_REPLACE,
        ..Default::default()
    };
    // SAFETY: h and opts are initialised with their sizes; prog is a valid program fd.
    let rc = unsafe { libbpf_sys::bpf_tc_attach(&h, &mut opts) };
    if rc != 0 {
        drop(entry); // removes a qdisc created above
        return Err(-rc);
    }
    Ok(entry)
}

impl ClsactEntry {
    pub fn detach(self) {
        drop(self)
    }
}

impl Drop for ClsactEntry {
    fn drop(&mut self) {
        let h = tc_hook(self.ifindex, point(self.hook));
        let opts = libbpf_sys::bpf_tc_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_tc_opts>() as _,
            handle: HANDLE,
            priority: PRIORITY,
            ..Default::default()
        };
        let previous = libbpf_rs::set_print(None);
        // SAFETY: h and opts are initialised with their sizes; detach wants only handle and priority.
        unsafe { libbpf_sys::bpf_tc_detach(&h, &opts) };
        if self.created_qdisc && no_tc_filters(self.ifindex) {
            let mut qdisc = tc_hook(self.ifindex, libbpf_sys::BPF_TC_INGRESS | libbpf_sys::BPF_TC_EGRESS);
            // SAFETY: qdisc is initialised with its size.
            unsafe { libbpf_sys::bpf_tc_hook_destroy(&mut qdisc) };
        }
        libbpf_rs::set_print(previous);
    }
}
