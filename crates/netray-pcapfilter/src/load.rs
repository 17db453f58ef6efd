//! A translated fragment as a standalone XDP program, run with `BPF_PROG_TEST_RUN`.
//!
//! Used by `netray dump -r FILE` (the same in-kernel code as live capture, over a file)
//! and by the equivalence tests. The program is
//!
//! ```text
//! r6 = r1                         ; ctx
//! call bpf_xdp_get_buff_len       ; wire length for BPF_LEN
//! r3 = r0
//! r1 = ctx->data ; r2 = ctx->data_end
//! <fragment>                      ; r0 = classic result
//! epilogue: ReturnMode::Verdict  -> XDP_PASS if r0 != 0 else XDP_DROP
//!           ReturnMode::Snaplen  -> r0 as is (only meaningful under BPF_PROG_TEST_RUN)
//! exit
//! ```

use std::ffi::CStr;
use std::mem::offset_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::cbpf::{interpret, CbpfInsn};
use crate::ebpf::{self as e, EbpfInsn as I, R0, R1, R2, R3, R6};

/// Where the prologue reads the packet's bounds: struct xdp_md as libbpf-sys generates
/// it from the kernel's UAPI header.
const XDP_DATA: i16 = offset_of!(libbpf_sys::xdp_md, data) as i16;
const XDP_DATA_END: i16 = offset_of!(libbpf_sys::xdp_md, data_end) as i16;
const XDP_DROP: i32 = libbpf_sys::XDP_DROP as i32;
const XDP_PASS: i32 = libbpf_sys::XDP_PASS as i32;
/// The start of an XDP program around a fragment: r6 = ctx, r3 = wire length
/// (`bpf_xdp_get_buff_len`, for BPF_LEN), r1 = data, r2 = data_end. The one home of
/// this prologue: capture's filter program (netray-capture's front.rs) starts the same.
pub fn xdp_prologue() -> [I; 5] {
    [
        I::mov64_reg(R6, R1),
        I::call(libbpf_sys::BPF_FUNC_xdp_get_buff_len as i32),
        I::mov32_reg(R3, R0),
        I::ldx(e::W, R1, R6, XDP_DATA),
        I::ldx(e::W, R2, R6, XDP_DATA_END),
    ]
}

/// The kernel's XDP test run refuses frames shorter than an Ethernet header.
pub const MIN_TEST_RUN_FRAME: usize = 14;

/// Largest frame the XDP test run keeps entirely in linear data (`[data, data_end)`).
///
/// Longer frames are not refused: the kernel puts the tail into fragments, where neither
/// the fragment's direct loads nor `data_end` reach, so its verdict could differ from
/// libpcap's. The kernel's limit is PAGE_SIZE - XDP_PACKET_HEADROOM (256) -
/// sizeof(skb_shared_info) (320 on x86_64, 6.x: 3520 with 4 KiB pages); we leave 64 bytes
/// of slack for other layouts.
pub fn max_test_run_frame() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page = if page > 0 { page as usize } else { 4096 };
    page - 256 - 384
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("BPF program load failed: {source}\nverifier log:\n{log}")]
    Verifier { source: std::io::Error, log: String },
    #[error("BPF_PROG_TEST_RUN failed: {0}")]
    TestRun(std::io::Error),
    /// The kernel's XDP test run does not take frames of this size faithfully: shorter than
    /// [`MIN_TEST_RUN_FRAME`] or longer than [`max_test_run_frame`].
    #[error("frame of {0} bytes cannot be run through the XDP test run")]
    FrameSize(usize),
    #[error(transparent)]
    Compile(#[from] crate::FilterError),
    #[error(transparent)]
    Translate(#[from] crate::TranslateError),
}

/// What the standalone program returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnMode {
    /// `XDP_PASS` on match, `XDP_DROP` otherwise (a valid XDP program).
    Verdict,
    /// The classic result itself (snap length or 0), for tests via [`FilterProgram::run`].
    Snaplen,
}

/// A loaded standalone XDP filter program.
#[derive(Debug)]
pub struct FilterProgram {
    fd: OwnedFd,
    mode: ReturnMode,
}

impl FilterProgram {
    /// Loads `fragment` (output of [`crate::translate()`]) as a standalone XDP program
    /// returning `XDP_PASS`/`XDP_DROP`.
    pub fn load(fragment: &[I]) -> Result<Self, LoadError> {
        Self::load_with(fragment, ReturnMode::Verdict)
    }

    pub fn load_with(fragment: &[I], mode: ReturnMode) -> Result<Self, LoadError> {
        Self::load_spec(fragment, mode, &ProgramSpec::xdp("netray_pcapflt"))
    }

    /// [`FilterProgram::load`] with BTF describing its function `name`, as a
    /// program built by clang carries: fentry/fexit can attach to it.
    pub fn load_with_btf(fragment: &[I], name: &'static str) -> Result<Self, LoadError> {
        Self::load_spec(fragment, ReturnMode::Verdict, &ProgramSpec { btf_func: true, ..ProgramSpec::xdp(name) })
    }

    fn load_spec(fragment: &[I], mode: ReturnMode, spec: &ProgramSpec) -> Result<Self, LoadError> {
        let mut prog = xdp_prologue().to_vec();
        prog.extend_from_slice(fragment);
        if mode == ReturnMode::Verdict {
            prog.push(I::jmp_imm(e::JEQ, R0, 0, 2));
            prog.push(I::mov32_imm(R0, XDP_PASS));
            prog.push(I::ja(1));
            prog.push(I::mov32_imm(R0, XDP_DROP));
        }
        prog.push(I::exit());
        let fd = load_program(&prog, spec)?;
        Ok(Self { fd, mode })
    }

    /// Runs `frame` through the program with `BPF_PROG_TEST_RUN`, returning its return
    /// value (see [`ReturnMode`]).
    pub fn run(&self, frame: &[u8]) -> Result<u32, LoadError> {
        if frame.len() < MIN_TEST_RUN_FRAME || frame.len() > max_test_run_frame() {
            return Err(LoadError::FrameSize(frame.len()));
        }
        let mut opts = libbpf_sys::bpf_test_run_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _,
            data_in: frame.as_ptr().cast(),
            data_size_in: frame.len() as u32,
            repeat: 1,
            ..Default::default()
        };
        // SAFETY: opts is a properly sized, initialised bpf_test_run_opts whose data_in
        // points at `frame`, which outlives the call; data_out/ctx pointers are null, which
        // the kernel accepts; the fd is a valid program fd owned by self.
        let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(self.fd.as_raw_fd(), &mut opts) };
        if rc != 0 {
            let err = std::io::Error::from_raw_os_error(-rc);
            return Err(LoadError::TestRun(err));
        }
        Ok(opts.retval)
    }

    /// Does the filter match `frame`? Errors for frames the XDP test run refuses
    /// ([`LoadError::FrameSize`]); [`Filter::matches`] handles those.
    pub fn matches(&self, frame: &[u8]) -> Result<bool, LoadError> {
        let r = self.run(frame)?;
        Ok(match self.mode {
            ReturnMode::Verdict => r == XDP_PASS as u32,
            ReturnMode::Snaplen => r != 0,
        })
    }
}

impl AsRawFd for FilterProgram {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

/// What kind of program [`load_program`] loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramSpec {
    /// Kernel name (at most 15 bytes are kept).
    pub name: &'static str,
    pub prog_type: libbpf_sys::bpf_prog_type,
    pub expected_attach_type: libbpf_sys::bpf_attach_type,
    /// BPF_F_* load flags, e.g. BPF_F_XDP_HAS_FRAGS.
    pub flags: u32,
    /// For fentry/fexit on a BPF program: that program's fd and the BTF type id
    /// of its function.
    pub attach_target: Option<(i32, u32)>,
    /// Describe the program in BTF as `int NAME(struct xdp_md *ctx)`, as a
    /// compiler would: fentry/fexit can then attach to it.
    pub btf_func: bool,
}

impl ProgramSpec {
    pub fn xdp(name: &'static str) -> Self {
        Self { name, prog_type: libbpf_sys::BPF_PROG_TYPE_XDP, expected_attach_type: 0, flags: 0, attach_target: None, btf_func: false }
    }
}

/// Loads hand-assembled instructions (e.g. a fragment wrapped in a prologue and an
/// epilogue); on failure the error carries the verifier's log.
pub fn load_program(prog: &[I], spec: &ProgramSpec) -> Result<OwnedFd, LoadError> {
    let raw: Vec<[u8; 8]> = prog.iter().map(I::to_bytes).collect();
    let name = std::ffi::CString::new(&spec.name.as_bytes()[..spec.name.len().min(15)]).unwrap_or_default();
    let license = c"Dual MIT/GPL";
    let btf = if spec.btf_func { Some(FuncBtf::new(&name)?) } else { None };
    let try_load = |log: Option<&mut Vec<u8>>| -> Result<OwnedFd, std::io::Error> {
        let mut opts = libbpf_sys::bpf_prog_load_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_prog_load_opts>() as _,
            expected_attach_type: spec.expected_attach_type,
            prog_flags: spec.flags,
            attach_prog_fd: spec.attach_target.map_or(0, |(fd, _)| fd as u32),
            attach_btf_id: spec.attach_target.map_or(0, |(_, id)| id),
            ..Default::default()
        };
        if let Some(b) = &btf {
            opts.prog_btf_fd = b.fd;
            opts.func_info = (&b.func as *const libbpf_sys::bpf_func_info).cast();
            opts.func_info_cnt = 1;
            opts.func_info_rec_size = std::mem::size_of::<libbpf_sys::bpf_func_info>() as u32;
        }
        if let Some(buf) = log {
            opts.log_level = 1;
            opts.log_size = buf.len() as u32;
            opts.log_buf = buf.as_mut_ptr().cast();
        }
        // SAFETY: `raw` holds prog.len() 8-byte instructions laid out as struct bpf_insn
        // (same size, alignment 1 suffices for the kernel copy); name/license are NUL
        // terminated; opts is fully initialised and the log buffer, if any, is valid for
        // log_size bytes during the call.
        let fd = unsafe {
            libbpf_sys::bpf_prog_load(
                spec.prog_type,
                name.as_ptr(),
                license.as_ptr(),
                raw.as_ptr().cast(),
                raw.len() as _,
                &mut opts,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::from_raw_os_error(-fd));
        }
        // SAFETY: bpf_prog_load returned a fresh fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    match try_load(None) {
        Ok(fd) => Ok(fd),
        Err(_) => {
            // Retry with a verifier log only on failure: logging slows loading down.
            let mut buf = vec![0u8; 1 << 20];
            match try_load(Some(&mut buf)) {
                Ok(fd) => Ok(fd),
                Err(source) => {
                    let log = CStr::from_bytes_until_nul(&buf)
                        .map(|c| c.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    Err(LoadError::Verifier { source, log })
                }
            }
        }
    }
}

/// BTF of one function `int NAME(struct xdp_md *ctx)` at instruction 0, loaded.
struct FuncBtf {
    btf: *mut libbpf_sys::btf,
    fd: u32,
    func: libbpf_sys::bpf_func_info,
}

impl FuncBtf {
    fn new(name: &CStr) -> Result<Self, LoadError> {
        let fail = |what: &str| LoadError::Verifier {
            source: std::io::Error::last_os_error(),
            log: format!("building the program's BTF: {what}"),
        };
        // SAFETY: libbpf's BTF builder on an object freed in Drop; strings are NUL-terminated.
        unsafe {
            let btf = libbpf_sys::btf__new_empty();
            if btf.is_null() {
                return Err(fail("btf__new_empty"));
            }
            let mut this = FuncBtf { btf, fd: 0, func: Default::default() };
            let int = libbpf_sys::btf__add_int(btf, c"int".as_ptr(), 4, libbpf_sys::BTF_INT_SIGNED as i32);
            // The context's name is what the kernel matches (struct xdp_md); its members do not matter.
            let ctx = libbpf_sys::btf__add_struct(btf, c"xdp_md".as_ptr(), 0);
            let ptr = libbpf_sys::btf__add_ptr(btf, ctx);
            let proto = libbpf_sys::btf__add_func_proto(btf, int);
            let param = libbpf_sys::btf__add_func_param(btf, c"ctx".as_ptr(), ptr);
            let func = libbpf_sys::btf__add_func(btf, name.as_ptr(), libbpf_sys::BTF_FUNC_GLOBAL, proto);
            if int < 0 || ctx < 0 || ptr < 0 || proto < 0 || param < 0 || func < 0 {
                return Err(fail("adding types"));
            }
            if libbpf_sys::btf__load_into_kernel(btf) != 0 {
                return Err(fail("loading it into the kernel"));
            }
            this.fd = libbpf_sys::btf__fd(btf) as u32;
            this.func = libbpf_sys::bpf_func_info { insn_off: 0, type_id: func as u32 };
            Ok(this)
        }
    }
}

impl Drop for FuncBtf {
    fn drop(&mut self) {
        // SAFETY: created by btf__new_empty, freed once (closes the loaded BTF's fd).
        unsafe { libbpf_sys::btf__free(self.btf) };
    }
}

/// A pcap-filter expression compiled, translated and loaded, with the classic program kept
/// for frames the kernel test run cannot take.
#[derive(Debug)]
pub struct Filter {
    pub cbpf: Vec<CbpfInsn>,
    pub ebpf: Vec<I>,
    pub program: FilterProgram,
}

impl Filter {
    pub fn new(expr: &str, snaplen: u32) -> Result<Self, LoadError> {
        let cbpf = crate::compile(expr, snaplen)?;
        let ebpf = crate::translate(&cbpf)?;
        let program = FilterProgram::load(&ebpf)?;
        Ok(Self {
            cbpf,
            ebpf,
            program,
        })
    }

    /// In-kernel verdict for `frame`; frames the XDP test run cannot take (shorter than 14
    /// bytes, or longer than [`max_test_run_frame`], ~3.4 KiB) are judged by [`interpret`]
    /// on the same classic program instead, which equals libpcap's result.
    pub fn matches(&self, frame: &[u8]) -> Result<bool, LoadError> {
        match self.program.matches(frame) {
            Err(LoadError::FrameSize(_)) => Ok(interpret(&self.cbpf, frame) != 0),
            other => other,
        }
    }
}
