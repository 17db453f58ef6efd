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

/// The BTF id of a BPF program and the func info of its main function (the
/// one at instruction 0), which fentry/fexit on it name. Errno on failure;
/// EOPNOTSUPP when the program has no BTF.
pub fn main_func(prog: std::os::fd::BorrowedFd<'_>) -> std::result::Result<(u32, libbpf_sys::bpf_func_info), i32> {
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
    let rc = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(prog.as_raw_fd(), &mut info, &mut len) };
    if rc != 0 {
        return Err(-rc);
    }
    if info.btf_id == 0 || info.nr_func_info == 0 {
        return Err(libc::EOPNOTSUPP);
    }
    Ok((info.btf_id, func))
}

/// Whether the kernel lets an fexit program attach to the BPF program `target`
/// (the non-intrusive way to watch an XDP program's verdicts). Tried for real:
/// a minimal fexit program is loaded against the target's main function.
/// Returns the errno on refusal; EOPNOTSUPP when the target has no BTF.
pub fn fexit_on_prog(target: std::os::fd::BorrowedFd<'_>) -> std::result::Result<(), i32> {
    use std::os::fd::AsRawFd;
    let (_, func) = main_func(target)?;
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

/// One capability netray uses, as the kernel answered when it was tried.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Capability {
    /// Stable name, for scripts (`netray features --json`) and the kernel matrix.
    pub name: &'static str,
    /// What it is, for people.
    pub what: &'static str,
    pub available: bool,
    /// How it was tried, or the kernel's refusal.
    pub detail: String,
}

/// Tries every capability netray uses, by loading and attaching tiny programs
/// (never by kernel version: distributions backport). Attach probes run on a
/// veth pair in a network namespace of their own, gone when they finish.
pub fn capabilities() -> Vec<Capability> {
    // Refusals are the answers here, not errors: keep libbpf from logging them.
    let previous = libbpf_rs::set_print(None);
    let caps = try_capabilities();
    libbpf_rs::set_print(previous);
    caps
}

fn try_capabilities() -> Vec<Capability> {
    let mut caps = Vec::new();
    let mut add = |name, what, r: Answer| {
        let (available, detail) = match r {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        caps.push(Capability { name, what, available, detail });
    };
    let net = in_private_netns(probe_net)
        .unwrap_or_else(|e| NetProbes::all_failed(format!("no network namespace for the attach probes: {e}")));
    add("btf", "kernel BTF (/sys/kernel/btf/vmlinux)", probe_btf());
    add("xdp_native", "XDP in the driver (native), on veth", net.xdp_native);
    add("xdp_generic", "XDP in the stack (generic)", net.xdp_generic);
    add("xdp_frags", "XDP multi-buffer (xdp.frags) at MTU 9000", net.xdp_frags);
    add("tcx", "tcx links at TC (Linux 6.6 API)", net.tcx);
    add("clsact", "cls_bpf filters on a clsact qdisc", net.clsact);
    add("ringbuf", "BPF ring buffers", probe_ringbuf());
    add("live_frames", "BPF_PROG_TEST_RUN live frames (in-kernel traffic)", net.live_frames);
    add("bounded_loops", "bounded loops in the verifier", probe_bounded_loop());
    add("raw_tracepoint", "raw tracepoints", probe_raw_tracepoint());
    add("tp_btf", "BTF-typed raw tracepoints (tp_btf/kfree_skb)", probe_skel_prog("netray_probe_tp_btf"));
    add("kprobe", "kprobes", probe_skel_prog("netray_probe_kprobe"));
    add("fentry", "fentry/fexit on kernel functions", probe_skel_prog("netray_probe_fentry"));
    add("fexit_xdp", "fexit on XDP programs", probe_on_xdp_prog(false));
    add("freplace", "freplace of XDP program functions", probe_on_xdp_prog(true));
    add("syncookie", "TCP syncookie helpers at XDP (bpf_tcp_raw_gen/check_syncookie_ipv4)", probe_syncookie());
    caps
}

/// A probe's answer: how it was tried, or why it failed.
type Answer = std::result::Result<String, String>;

struct NetProbes {
    xdp_native: Answer,
    xdp_generic: Answer,
    xdp_frags: Answer,
    tcx: Answer,
    clsact: Answer,
    live_frames: Answer,
}

impl NetProbes {
    fn all_failed(why: String) -> NetProbes {
        let e = || Err(why.clone());
        NetProbes { xdp_native: e(), xdp_generic: e(), xdp_frags: e(), tcx: e(), clsact: e(), live_frames: e() }
    }
}

fn errno(e: i32) -> String {
    std::io::Error::from_raw_os_error(e).to_string()
}

/// Runs `f` on a thread of its own in a new network namespace: whatever the
/// probes attach there (to their own veth pair) goes with the namespace.
fn in_private_netns<T: Send>(f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare affects only this thread, which ends with the scope.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .map_err(|_| std::io::Error::other("probe thread panicked"))?
    })
}

const PROBE_IF: &str = "nrprobe0";

fn ip(args: &[&str]) -> std::result::Result<(), String> {
    // Spawned from the probe thread, `ip` runs in its namespace.
    let out = std::process::Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn probe_net() -> NetProbes {
    use std::os::fd::AsFd;
    let setup = ip(&["link", "add", PROBE_IF, "type", "veth", "peer", "name", "nrprobe1"]).and_then(|()| {
        // SAFETY: the name is NUL-terminated.
        match unsafe { libc::if_nametoindex(c"nrprobe0".as_ptr()) } {
            0 => Err("the probe veth has no ifindex".to_string()),
            i => Ok(i),
        }
    });
    let ifindex = match setup {
        Ok(i) => i,
        Err(e) => return NetProbes::all_failed(e),
    };
    // Loads an XDP program (with BPF_F_XDP_HAS_FRAGS if `frags`) and attaches it in `mode`.
    let xdp = |mode: u32, frags: bool| -> Answer {
        let flags = if frags { libbpf_sys::BPF_F_XDP_HAS_FRAGS } else { 0 };
        let prog = load_insns(libbpf_sys::BPF_PROG_TYPE_XDP, libbpf_sys::BPF_XDP, flags, &ret(2))
            .map_err(|e| format!("load: {}", errno(e)))?;
        crate::link::create(prog.as_fd(), ifindex, libbpf_sys::BPF_XDP, mode)
            .map(|_link| "attached to a veth".to_string())
            .map_err(|e| format!("attach: {}", errno(e)))
    };
    let xdp_native = xdp(libbpf_sys::XDP_FLAGS_DRV_MODE, false);
    let xdp_generic = xdp(libbpf_sys::XDP_FLAGS_SKB_MODE, false);
    // A non-frags program is refused natively on a veth at MTU 9000; a frags one is not.
    let xdp_frags = ip(&["link", "set", "dev", PROBE_IF, "mtu", "9000"])
        .and_then(|()| xdp(libbpf_sys::XDP_FLAGS_DRV_MODE, true))
        .map(|_| "a frags program attached natively to a veth at MTU 9000".to_string());
    let tc = load_insns(libbpf_sys::BPF_PROG_TYPE_SCHED_CLS, 0, 0, &ret(0));
    let (tcx, clsact) = match tc {
        Err(e) => (Err(format!("load: {}", errno(e))), Err(format!("load: {}", errno(e)))),
        Ok(prog) => (
            crate::tc::tcx_attach_first(prog.as_fd(), ifindex, crate::Hook::TcIngress)
                .map(|_link| "tcx link at ingress".to_string())
                .map_err(|e| format!("attach: {}", errno(e))),
            clsact_attach(prog.as_fd(), ifindex).map(|()| "filter on clsact ingress".to_string()),
        ),
    };
    NetProbes { xdp_native, xdp_generic, xdp_frags, tcx, clsact, live_frames: probe_live_frames() }
}

fn clsact_attach(prog: std::os::fd::BorrowedFd<'_>, ifindex: u32) -> std::result::Result<(), String> {
    use std::os::fd::AsRawFd;
    let mut hook = libbpf_sys::bpf_tc_hook {
        sz: std::mem::size_of::<libbpf_sys::bpf_tc_hook>() as _,
        ifindex: ifindex as i32,
        attach_point: libbpf_sys::BPF_TC_INGRESS,
        ..Default::default()
    };
    // SAFETY: hook is initialised with its size.
    let rc = unsafe { libbpf_sys::bpf_tc_hook_create(&mut hook) };
    if rc != 0 {
        return Err(format!("creating clsact: {}", errno(-rc)));
    }
    let mut opts = libbpf_sys::bpf_tc_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_tc_opts>() as _,
        prog_fd: prog.as_raw_fd(),
        ..Default::default()
    };
    // SAFETY: hook and opts are initialised with their sizes; prog is valid.
    let rc = unsafe { libbpf_sys::bpf_tc_attach(&hook, &mut opts) };
    if rc != 0 {
        return Err(format!("attach: {}", errno(-rc)));
    }
    Ok(())
}

/// `r0 = v; exit`
fn ret(v: i32) -> [libbpf_sys::bpf_insn; 2] {
    [
        libbpf_sys::bpf_insn { code: 0xb7, imm: v, ..Default::default() },
        libbpf_sys::bpf_insn { code: 0x95, ..Default::default() },
    ]
}

fn load_insns(
    prog_type: libbpf_sys::bpf_prog_type,
    attach_type: libbpf_sys::bpf_attach_type,
    prog_flags: u32,
    insns: &[libbpf_sys::bpf_insn],
) -> std::result::Result<std::os::fd::OwnedFd, i32> {
    use std::os::fd::FromRawFd;
    let mut opts = libbpf_sys::bpf_prog_load_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_prog_load_opts>() as _,
        expected_attach_type: attach_type,
        prog_flags,
        ..Default::default()
    };
    // SAFETY: insns and opts are valid for the call; names are NUL-terminated.
    let fd = unsafe {
        libbpf_sys::bpf_prog_load(prog_type, c"netray_probe".as_ptr(), c"GPL".as_ptr(), insns.as_ptr(), insns.len() as _, &mut opts)
    };
    if fd < 0 {
        return Err(-fd);
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

fn probe_btf() -> Answer {
    // SAFETY: no arguments; the result is freed below.
    let btf = unsafe { libbpf_sys::btf__load_vmlinux_btf() };
    if btf.is_null() {
        return Err(format!("loading /sys/kernel/btf/vmlinux: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: btf was returned by libbpf and is freed once.
    unsafe { libbpf_sys::btf__free(btf) };
    Ok("vmlinux BTF loaded".into())
}

fn probe_ringbuf() -> Answer {
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        ..Default::default()
    };
    // SAFETY: valid arguments; the fd is closed below.
    let fd = unsafe { libbpf_sys::bpf_map_create(libbpf_sys::BPF_MAP_TYPE_RINGBUF, std::ptr::null(), 0, 0, 4096, &opts) };
    if fd < 0 {
        return Err(format!("creating one: {}", errno(-fd)));
    }
    // SAFETY: a fresh fd we own.
    unsafe { libc::close(fd) };
    Ok("created one".into())
}

fn probe_live_frames() -> Answer {
    use std::os::fd::AsRawFd;
    // XDP_DROP: the frame goes nowhere (this namespace's loopback, which is down).
    let prog = load_insns(libbpf_sys::BPF_PROG_TYPE_XDP, 0, 0, &ret(1)).map_err(|e| format!("load: {}", errno(e)))?;
    let mut frame = [0u8; 64];
    frame[12] = 0x08; // an IPv4 ethertype: any frame will do
    let mut opts = libbpf_sys::bpf_test_run_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _,
        data_in: frame.as_ptr() as *const _,
        data_size_in: frame.len() as u32,
        repeat: 1,
        flags: libbpf_sys::BPF_F_TEST_XDP_LIVE_FRAMES,
        ..Default::default()
    };
    // SAFETY: opts points at frame, which outlives the call.
    let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog.as_raw_fd(), &mut opts) };
    if rc != 0 {
        return Err(format!("test run: {}", errno(-rc)));
    }
    Ok("one frame sent through BPF_PROG_TEST_RUN".into())
}

fn probe_bounded_loop() -> Answer {
    use libbpf_sys::bpf_insn as I;
    // r0 = 0; r1 = 0; loop: r1 += 1; if r1 < 4 goto loop; exit
    let insns = [
        I { code: 0xb7, ..Default::default() },
        I { code: 0xb7, ..Default::default() }.with_dst(1),
        I { code: 0x07, imm: 1, ..Default::default() }.with_dst(1),
        I { code: 0xa5, off: -2, imm: 4, ..Default::default() }.with_dst(1),
        I { code: 0x95, ..Default::default() },
    ];
    load_insns(libbpf_sys::BPF_PROG_TYPE_SOCKET_FILTER, 0, 0, &insns)
        .map(|_| "a four-round loop verified".into())
        .map_err(|e| format!("load: {}", errno(e)))
}

trait WithDst {
    fn with_dst(self, reg: u8) -> Self;
}

impl WithDst for libbpf_sys::bpf_insn {
    fn with_dst(mut self, reg: u8) -> Self {
        self.set_dst_reg(reg);
        self
    }
}

fn probe_raw_tracepoint() -> Answer {
    use std::os::fd::AsRawFd;
    let prog = load_insns(libbpf_sys::BPF_PROG_TYPE_RAW_TRACEPOINT, 0, 0, &ret(0)).map_err(|e| format!("load: {}", errno(e)))?;
    // SAFETY: the name is NUL-terminated; the returned fd is closed below.
    let fd = unsafe { libbpf_sys::bpf_raw_tracepoint_open(c"sys_enter".as_ptr(), prog.as_raw_fd()) };
    if fd < 0 {
        return Err(format!("attach sys_enter: {}", errno(-fd)));
    }
    // SAFETY: a fresh fd we own; closing it detaches.
    unsafe { libc::close(fd) };
    Ok("attached to sys_enter".into())
}

fn probe_syncookie() -> Answer {
    let helpers = [
        ("bpf_tcp_raw_gen_syncookie_ipv4", libbpf_sys::BPF_FUNC_tcp_raw_gen_syncookie_ipv4),
        ("bpf_tcp_raw_check_syncookie_ipv4", libbpf_sys::BPF_FUNC_tcp_raw_check_syncookie_ipv4),
    ];
    for (name, id) in helpers {
        // SAFETY: libbpf loads a program calling the helper and closes it.
        let rc = unsafe { libbpf_sys::libbpf_probe_bpf_helper(libbpf_sys::BPF_PROG_TYPE_XDP, id, std::ptr::null()) };
        if rc != 1 {
            return Err(format!("{name} refused in an XDP program"));
        }
    }
    Ok("an XDP program calling them loaded".into())
}

/// Loads only `name` of the probe object (and attaches it, for kprobes and fentry).
fn probe_skel_prog(name: &str) -> Answer {
    use libbpf_rs::skel::{OpenSkel, SkelBuilder};
    let mut storage = std::mem::MaybeUninit::uninit();
    let mut open = netray_ebpf::probe::ProbeSkelBuilder::default().open(&mut storage).map_err(|e| format!("open: {e}"))?;
    for mut p in open.open_object_mut().progs_mut() {
        let keep = p.name() == name;
        p.set_autoload(keep);
    }
    let skel = open.load().map_err(|e| format!("load: {}", e.to_string().lines().next().unwrap_or_default()))?;
    let (link, target) = match name {
        "netray_probe_kprobe" => (skel.progs.netray_probe_kprobe.attach_kprobe(false, "bpf_fentry_test1"), "bpf_fentry_test1"),
        "netray_probe_tp_btf" => (skel.progs.netray_probe_tp_btf.attach(), "kfree_skb"),
        _ => (skel.progs.netray_probe_fentry.attach(), "bpf_fentry_test1"),
    };
    link.map(|_| format!("attached to {target}")).map_err(|e| format!("attach: {e}"))
}

/// The `fexit_xdp` capability alone: an fexit program loaded against an XDP
/// program of netray's own (which has BTF); Err says the kernel's refusal.
pub fn fexit_on_xdp() -> std::result::Result<String, String> {
    probe_on_xdp_prog(false)
}

/// fexit (or, with `ext`, freplace) against the probe object's XDP program.
fn probe_on_xdp_prog(ext: bool) -> Answer {
    use libbpf_rs::skel::{OpenSkel, SkelBuilder};
    use std::os::fd::AsFd;
    let mut storage = std::mem::MaybeUninit::uninit();
    let mut open = netray_ebpf::probe::ProbeSkelBuilder::default().open(&mut storage).map_err(|e| format!("open: {e}"))?;
    for mut p in open.open_object_mut().progs_mut() {
        let keep = p.name() == "netray_probe_xdp";
        p.set_autoload(keep);
    }
    let target = open.load().map_err(|e| format!("loading the target: {e}"))?;
    let target_fd = target.progs.netray_probe_xdp.as_fd();
    if !ext {
        return fexit_on_prog(target_fd)
            .map(|()| "an fexit program loaded against an XDP program".into())
            .map_err(|e| format!("load: {}", errno(e)));
    }
    let mut storage = std::mem::MaybeUninit::uninit();
    let mut open = netray_ebpf::probe::ProbeSkelBuilder::default().open(&mut storage).map_err(|e| format!("open: {e}"))?;
    for mut p in open.open_object_mut().progs_mut() {
        let keep = p.name() == "netray_probe_ext";
        p.set_autoload(keep);
    }
    {
        use std::os::fd::AsRawFd;
        open.progs
            .netray_probe_ext
            .set_attach_target(target_fd.as_raw_fd(), Some("netray_probe_xdp".into()))
            .map_err(|e| format!("set target: {e}"))?;
    }
    open.load()
        .map(|_| "an freplace program loaded against an XDP program".into())
        .map_err(|e| format!("load: {}", e.to_string().lines().next().unwrap_or_default()))
}
