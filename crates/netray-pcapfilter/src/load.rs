//! A translated fragment as a standalone XDP program, run with `BPF_PROG_TEST_RUN`.
//!
//! Used by `netray dump -r FILE` (the same in-kernel code as live capture, over a file)
//! and by the equivalence tests. The program is
//!
//! ```text
//! r6 = r1                         ; ctx
//! r3 = wire length for BPF_LEN    ; LengthSource::Frame:    bpf_xdp_get_buff_len(ctx)
//!                                 ; LengthSource::Metadata: the u32 in [data_meta, data)
//! r1 = ctx->data ; r2 = ctx->data_end
//! <fragment>                      ; r0 = classic result
//! epilogue: ReturnMode::Verdict  -> XDP_PASS if r0 != 0 else XDP_DROP
//!           ReturnMode::Snaplen  -> r0 as is (only meaningful under BPF_PROG_TEST_RUN)
//! exit
//! ```
//!
//! The length source is fixed when the program is loaded, never guessed per packet: a
//! live program (and the capture's, see netray-capture's front.rs) asks the kernel for the
//! whole frame's length, multi-buffer fragments included; a replay program is told the
//! record's original length, which a file recorded with a snap length keeps beside fewer
//! captured bytes. It travels as 4 bytes of XDP metadata because the XDP test run takes
//! metadata from the front of its input (`xdp_md.data` = 4, `data_meta` = 0 in `ctx_in`,
//! Linux >= 5.14) and nothing else in `xdp_md` can carry a number into the program.

use std::ffi::CStr;
use std::mem::offset_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::cbpf::{interpret, CbpfInsn};
use crate::ebpf::{self as e, EbpfInsn as I, R0, R1, R2, R3, R4, R5, R6};

/// Where the prologue reads the packet's bounds: struct xdp_md as libbpf-sys generates
/// it from the kernel's UAPI header.
const XDP_DATA: i16 = offset_of!(libbpf_sys::xdp_md, data) as i16;
const XDP_DATA_END: i16 = offset_of!(libbpf_sys::xdp_md, data_end) as i16;
const XDP_DATA_META: i16 = offset_of!(libbpf_sys::xdp_md, data_meta) as i16;
/// Bytes of XDP metadata a replay program reads: the record's original length, a u32 in
/// host byte order.
const WIRE_LEN_META_BYTES: usize = 4;
const XDP_ABORTED: i32 = libbpf_sys::XDP_ABORTED as i32;
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

/// The start of a replay program around a fragment: r3 = the record's original length,
/// read from the 4 bytes of metadata [`FilterProgram::run_record`] puts before the frame.
/// Without them (a test run that passed none) the program returns `XDP_ABORTED` (0: no
/// match in [`ReturnMode::Snaplen`]); the verifier demands the check anyway.
fn xdp_replay_prologue(fragment_and_epilogue: i16) -> [I; 8] {
    [
        I::mov64_reg(R6, R1),
        I::ldx(e::W, R1, R6, XDP_DATA),
        I::ldx(e::W, R2, R6, XDP_DATA_END),
        I::ldx(e::W, R4, R6, XDP_DATA_META),
        I::mov64_reg(R5, R4),
        I::alu64_imm(e::ADD, R5, WIRE_LEN_META_BYTES as i32),
        // To the `no metadata` exit just past the fragment and its epilogue.
        I::jmp_reg(e::JGT, R5, R1, 1 + fragment_and_epilogue),
        I::ldx(e::W, R3, R4, 0),
    ]
}

/// Where a standalone program reads the length classic `BPF_LEN` reports (`len`, `less`,
/// `greater`): chosen at load, see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthSource {
    /// `bpf_xdp_get_buff_len()`: the frame's whole length, as live XDP capture reads it.
    Frame,
    /// The record's original length, passed by [`FilterProgram::run_record`] as XDP
    /// metadata: replay of a capture file (`dump -r`).
    Metadata,
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
    /// A record with an original length of its own was given to a program that reads the
    /// frame's length from the kernel.
    #[error("this filter program reads the length from the frame itself ({captured} bytes), so it cannot judge a record of original length {wire_len}; load it with FilterProgram::load_replay")]
    LengthSource { captured: usize, wire_len: u32 },
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
    length: LengthSource,
    /// Loaded with BPF_F_XDP_HAS_FRAGS: test runs may pass multi-buffer frames.
    frags: bool,
}

impl FilterProgram {
    /// Loads `fragment` (output of [`crate::translate()`]) as a standalone XDP program
    /// returning `XDP_PASS`/`XDP_DROP`.
    pub fn load(fragment: &[I]) -> Result<Self, LoadError> {
        Self::load_with(fragment, ReturnMode::Verdict)
    }

    pub fn load_with(fragment: &[I], mode: ReturnMode) -> Result<Self, LoadError> {
        Self::load_spec(fragment, mode, LengthSource::Frame, &ProgramSpec::xdp("netray_pcapflt"))
    }

    /// A replay program: `BPF_LEN` is the original length [`FilterProgram::run_record`]
    /// passes, the loads see the captured bytes, as libpcap's `pcap_offline_filter` does.
    pub fn load_replay(fragment: &[I], mode: ReturnMode) -> Result<Self, LoadError> {
        Self::load_spec(fragment, mode, LengthSource::Metadata, &ProgramSpec::xdp("netray_pcaprpl"))
    }

    /// A live program loaded as multi-buffer capable (`BPF_F_XDP_HAS_FRAGS`), as the capture
    /// is on a jumbo-MTU interface: [`FilterProgram::run`] takes frames up to 64 KiB, and the
    /// test run puts what exceeds the linear area into fragments, as a driver does with a
    /// jumbo frame. `BPF_LEN` is the whole length; the loads reach the linear part only.
    pub fn load_multi_buffer(fragment: &[I], mode: ReturnMode) -> Result<Self, LoadError> {
        let spec = ProgramSpec { flags: libbpf_sys::BPF_F_XDP_HAS_FRAGS, ..ProgramSpec::xdp("netray_pcapfrg") };
        Self::load_spec(fragment, mode, LengthSource::Frame, &spec)
    }

    /// [`FilterProgram::load`] with BTF describing its function `name`, as a
    /// program built by clang carries: fentry/fexit can attach to it.
    pub fn load_with_btf(fragment: &[I], name: &'static str) -> Result<Self, LoadError> {
        Self::load_spec(fragment, ReturnMode::Verdict, LengthSource::Frame, &ProgramSpec { btf_func: true, ..ProgramSpec::xdp(name) })
    }

    fn load_spec(fragment: &[I], mode: ReturnMode, length: LengthSource, spec: &ProgramSpec) -> Result<Self, LoadError> {
        let mut body = fragment.to_vec();
        if mode == ReturnMode::Verdict {
            body.push(I::jmp_imm(e::JEQ, R0, 0, 2));
            body.push(I::mov32_imm(R0, XDP_PASS));
            body.push(I::ja(1));
            body.push(I::mov32_imm(R0, XDP_DROP));
        }
        body.push(I::exit());
        let mut prog = match length {
            LengthSource::Frame => xdp_prologue().to_vec(),
            LengthSource::Metadata => {
                // The jump over the body must fit a jump offset, as the fragment's own do.
                let over = i16::try_from(body.len()).ok().filter(|n| *n < i16::MAX);
                xdp_replay_prologue(over.ok_or(crate::TranslateError::TooLong)?).to_vec()
            }
        };
        prog.extend(body);
        if length == LengthSource::Metadata {
            prog.push(I::mov32_imm(R0, XDP_ABORTED));
            prog.push(I::exit());
        }
        let fd = load_program(&prog, spec)?;
        let frags = spec.flags & libbpf_sys::BPF_F_XDP_HAS_FRAGS != 0;
        Ok(Self { fd, mode, length, frags })
    }

    /// Largest frame [`FilterProgram::run`] passes to the kernel: the linear area, or for
    /// a multi-buffer program 64 KiB (the kernel spreads it over at most 17 pages).
    pub fn max_frame(&self) -> usize {
        if self.frags {
            65_535
        } else {
            max_test_run_frame()
        }
    }

    /// Runs a whole `frame` (its original length is its length) through the program with
    /// `BPF_PROG_TEST_RUN`, returning its return value (see [`ReturnMode`]).
    pub fn run(&self, frame: &[u8]) -> Result<u32, LoadError> {
        self.run_record(frame, frame.len() as u32)
    }

    /// Runs a record of `wire_len` original bytes, of which `captured` were kept, through
    /// the program. Only a replay program ([`FilterProgram::load_replay`]) takes a
    /// `wire_len` other than `captured.len()`.
    pub fn run_record(&self, captured: &[u8], wire_len: u32) -> Result<u32, LoadError> {
        if captured.len() < MIN_TEST_RUN_FRAME || captured.len() > self.max_frame() {
            return Err(LoadError::FrameSize(captured.len()));
        }
        let mut input = Vec::new();
        let mut ctx = libbpf_sys::xdp_md::default();
        let data: &[u8] = match self.length {
            LengthSource::Frame if wire_len as usize != captured.len() => {
                return Err(LoadError::LengthSource { captured: captured.len(), wire_len })
            }
            LengthSource::Frame => captured,
            LengthSource::Metadata => {
                input.reserve(WIRE_LEN_META_BYTES + captured.len());
                input.extend_from_slice(&wire_len.to_ne_bytes());
                input.extend_from_slice(captured);
                ctx.data = WIRE_LEN_META_BYTES as u32;
                ctx.data_end = input.len() as u32;
                &input
            }
        };
        let mut opts = libbpf_sys::bpf_test_run_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _,
            data_in: data.as_ptr().cast(),
            data_size_in: data.len() as u32,
            repeat: 1,
            ..Default::default()
        };
        if self.length == LengthSource::Metadata {
            opts.ctx_in = (&ctx as *const libbpf_sys::xdp_md).cast();
            opts.ctx_size_in = std::mem::size_of::<libbpf_sys::xdp_md>() as u32;
        }
        // SAFETY: opts is a properly sized, initialised bpf_test_run_opts whose data_in
        // (and ctx_in, when set) point at `data` and `ctx`, which outlive the call;
        // data_out/ctx_out are null, which the kernel accepts; the fd is a valid program
        // fd owned by self.
        let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(self.fd.as_raw_fd(), &mut opts) };
        if rc != 0 {
            let err = std::io::Error::from_raw_os_error(-rc);
            return Err(LoadError::TestRun(err));
        }
        Ok(opts.retval)
    }

    /// Does the filter match the whole `frame`? See [`FilterProgram::matches_record`].
    pub fn matches(&self, frame: &[u8]) -> Result<bool, LoadError> {
        self.matches_record(frame, frame.len() as u32)
    }

    /// Does the filter match a record of `wire_len` original bytes? Errors for records the
    /// XDP test run refuses ([`LoadError::FrameSize`]); [`Filter::matches`] handles those.
    pub fn matches_record(&self, captured: &[u8], wire_len: u32) -> Result<bool, LoadError> {
        let r = self.run_record(captured, wire_len)?;
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
        let program = FilterProgram::load_replay(&ebpf, ReturnMode::Verdict)?;
        Ok(Self {
            cbpf,
            ebpf,
            program,
        })
    }

    /// In-kernel verdict for a record of `wire_len` original bytes of which `captured`
    /// were kept (`len`, `less` and `greater` judge `wire_len`, as libpcap does). Records
    /// the XDP test run cannot take (fewer than 14 captured bytes, or more than
    /// [`max_test_run_frame`], ~3.4 KiB) are judged by [`interpret`] on the same classic
    /// program instead, with the same lengths, which equals libpcap's result.
    pub fn matches(&self, captured: &[u8], wire_len: u32) -> Result<bool, LoadError> {
        match self.program.matches_record(captured, wire_len) {
            Err(LoadError::FrameSize(_)) => Ok(interpret(&self.cbpf, captured, wire_len) != 0),
            other => other,
        }
    }
}
