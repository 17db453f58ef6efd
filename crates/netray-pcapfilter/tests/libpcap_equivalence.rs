//! Verdict-for-verdict equality of the in-kernel translated filter with libpcap.
//!
//! For every (expression, record) pair: libpcap's own `pcap_offline_filter` result, the
//! kernel's result for the translated program (BPF_PROG_TEST_RUN of a standalone XDP
//! program returning the classic result) and this crate's interpreter must agree. A record
//! is captured bytes and an original (wire) length: whole frames, frames cut short by a
//! snap length, and jumbo frames. Needs root (loading BPF programs); it fails, rather than
//! skips, without it.

mod common;

use std::time::Instant;

use netray_pcapfilter::ebpf::{self as e, EbpfInsn, R0, R1, R2};
use netray_pcapfilter::{
    compile, interpret, translate, Filter, FilterProgram, LoadError, ReturnMode,
};

/// libpcap's `bpf_program` and `pcap_pkthdr`, for `pcap_offline_filter` with a captured
/// length below the original one: the pcap crate's `BpfProgram::filter` passes one length
/// for both. `pcap::BpfProgram` is `#[repr(transparent)]` over `struct bpf_program`.
#[repr(C)]
struct PcapProgram {
    len: libc::c_uint,
    insns: *const libc::c_void,
}
#[repr(C)]
struct PcapPkthdr {
    ts: libc::timeval,
    caplen: u32,
    len: u32,
}
#[link(name = "pcap")]
extern "C" {
    fn pcap_offline_filter(prog: *const PcapProgram, hdr: *const PcapPkthdr, pkt: *const u8) -> libc::c_int;
}

/// libpcap's verdict on a record of `wire_len` original bytes of which `captured` were kept.
fn libpcap_verdict(prog: &pcap::BpfProgram, captured: &[u8], wire_len: u32) -> bool {
    let hdr = PcapPkthdr { ts: libc::timeval { tv_sec: 0, tv_usec: 0 }, caplen: captured.len() as u32, len: wire_len };
    let prog = (prog as *const pcap::BpfProgram).cast::<PcapProgram>();
    // SAFETY: prog points at a live, compiled bpf_program (BpfProgram is repr(transparent)
    // over it); hdr and captured are valid for the call, and caplen is captured's length.
    unsafe { pcap_offline_filter(prog, &hdr, captured.as_ptr()) > 0 }
}

/// Captured bytes and the original length they were cut from.
struct Record {
    captured: Vec<u8>,
    wire_len: u32,
}

/// Snap lengths the corpus is also recorded with: inside the Ethernet header's reach of
/// most filters (14), inside the IP header (30), inside the transport header (50), 96.
const SNAP_LENGTHS: [usize; 4] = [14, 30, 50, 96];
/// Jumbo frames' lengths: over the test run's linear area (~3.4 KiB), and 9000-byte MTU.
const JUMBO_LENGTHS: [usize; 2] = [4000, 9014];

/// Every corpus frame whole and cut at each of [`SNAP_LENGTHS`] shorter than it; every
/// 16th frame grown to each of [`JUMBO_LENGTHS`] (payload appended), whole and cut at 96.
fn records(frames: &[Vec<u8>]) -> Vec<Record> {
    let mut out = Vec::new();
    let with_cuts = |frame: &[u8], out: &mut Vec<Record>, snaps: &[usize]| {
        out.push(Record { captured: frame.to_vec(), wire_len: frame.len() as u32 });
        for &snap in snaps.iter().filter(|&&s| s < frame.len()) {
            out.push(Record { captured: frame[..snap].to_vec(), wire_len: frame.len() as u32 });
        }
    };
    for frame in frames {
        with_cuts(frame, &mut out, &SNAP_LENGTHS);
    }
    for frame in frames.iter().step_by(16) {
        for len in JUMBO_LENGTHS {
            let mut jumbo = frame.clone();
            jumbo.extend((jumbo.len()..len).map(|i| (i * 7) as u8));
            with_cuts(&jumbo, &mut out, &[96]);
        }
    }
    out
}

/// A fragment returning the length of the linear area it is given (`data_end - data`):
/// how many bytes of a multi-buffer frame the kernel's test run keeps linear.
fn linear_length_probe() -> FilterProgram {
    let fragment: [EbpfInsn; 2] = [EbpfInsn::mov64_reg(R0, R2), EbpfInsn::alu64_reg(e::SUB, R0, R1)];
    FilterProgram::load_multi_buffer(&fragment, ReturnMode::Snaplen).expect("load the linear-length probe")
}

const SNAPLEN: u32 = 262_144;

fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "libpcap_equivalence needs root (euid 0) to load BPF programs and run BPF_PROG_TEST_RUN; run `sudo cargo test -p netray-pcapfilter`"
    );
}

const EXPRESSIONS: &[&str] = &[
    "tcp port 80 or icmp",
    "host 10.0.0.1 and not udp",
    "vlan and ip6",
    "tcp[13] & 2 != 0",
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "ip",
    "ip6",
    "arp",
    "not ip and not ip6",
    "host 10.0.0.1",
    "src host 10.0.0.2",
    "dst host 192.168.1.5",
    "net 10.0.0.0/8",
    "src net 192.168.0.0/16 or dst net 172.16.0.0/12",
    "port 53",
    "src port 1024",
    "dst port 443",
    "portrange 1000-2000",
    "tcp portrange 20-90",
    "udp port 67 or udp port 68",
    "ip proto 17",
    "ip6 proto 6",
    "ip6 proto 58",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
    "tcp[13] = 18",
    "tcp[tcpflags] & tcp-rst != 0",
    "icmp[icmptype] = icmp-echo",
    "icmp[0] = 3 and icmp[1] = 3",
    "icmp6 and ip6[40] = 128",
    "vlan",
    "vlan 10",
    "vlan 20 and tcp",
    "vlan and vlan 10",
    "vlan 100 and vlan 10 and ip",
    "ip[6:2] & 0x1fff != 0",
    "ip[6:2] & 0x2000 != 0",
    "ip[0] & 0xf > 5",
    "len > 100",
    "len <= 64",
    "greater 200",
    "less 80",
    "ether host 02:00:00:00:00:01",
    "ether src 02:00:00:00:00:02",
    "ether dst ff:ff:ff:ff:ff:ff",
    "ether broadcast",
    "ether multicast",
    "ip multicast",
    "ip broadcast",
    "ip6 multicast",
    "ether proto 0x88cc",
    "not tcp",
    "not tcp and not udp",
    "ip and not icmp",
    "tcp or udp",
    "(tcp port 80 or tcp port 443) and host 10.0.0.1",
    "udp and ip[8] < 64",
    "ip[1] != 0",
    "tcp[0:2] > 1023",
    "udp[2:2] = 53",
    "tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420",
    "ip6 and tcp",
    "ip6 and udp port 53",
    "ip6 host fe80::1",
    "ip6 net 2001:db8::/32",
    "dst net 2001:db8::/32 and tcp",
    "ether[12:2] = 0x0806",
    "arp and host 10.0.0.1",
    "arp[6:2] = 2",
    "ip6[6] = 0",
    "ip6[6] = 44",
    "ip and len > 60",
    "tcp and (tcp[13] & 1 != 0 or tcp[13] & 4 != 0)",
    "ip[2:2] - ((ip[0] & 0xf) << 2) > 40",
    "ip[2:2] / 4 > 20",
    "ip[2:2] % 7 = 3",
    "(ip[8] * 3) & 0xff > 100",
    "ip[9] ^ 6 = 0",
    "ip[8] >> 1 = 32",
    "ip[8] | 1 = 65",
    "tcp[0:2] - tcp[2:2] > 0",
    "ip[2:2] / ip[1] > 0 or tcp",
    "ip[2:2] % ip[1] = 0",
    "ip[8] << (ip[1] & 0x3f) > 100",
    "ip[2:2] >> ip[1] = 0",
    "len - 14 > 100",
    "ether[len - 1] = 0",
    "stp",
    "llc",
    "vlan and (tcp port 80 or icmp6)",
    "ip[12:4] = ip[16:4]",
    "udp[8:2] = 0x0000 and udp",
    // Loops (backward jumps) in libpcap's code: walk IPv6 extension headers / IPv4 AH.
    "ip6 protochain 6",
    "ip6 protochain 17",
    "protochain 58",
    "ip protochain 17",
    "ip protochain 6",
    "protochain 1",
    "protochain 47",
    "protochain 6 and not ip6 protochain 6",
    "ip6 protochain 44",
    "ip6 protochain 60 or ip6 protochain 43",
    "vlan and ip6 protochain 17",
    // Lengths between the test run's linear area (~3.4 KiB) and the jumbo frames' whole
    // length, and near the snap lengths the corpus is cut at: wrong if `len` were the
    // linear part or the captured bytes.
    "greater 3600",
    "less 5000",
    "len = 9014",
    "udp and len > 4000",
    "greater 9000 or less 40",
    "tcp and greater 97",
    "len >= 51 and len < 100",
];

#[test]
fn translated_filters_match_libpcap_verdict_for_verdict() {
    require_root();
    let frames = common::corpus();
    assert!(
        frames.len() >= 300,
        "corpus has only {} frames",
        frames.len()
    );
    assert!(EXPRESSIONS.len() >= 60);
    assert!(frames.iter().all(|f| f.len() >= 14));
    let records = records(&frames);
    let truncated = records.iter().filter(|r| r.captured.len() < r.wire_len as usize).count();
    let max = netray_pcapfilter::max_test_run_frame();
    let jumbo = records.iter().filter(|r| r.captured.len() > max).count();
    assert!(truncated >= frames.len() && jumbo >= 40, "{truncated} truncated, {jumbo} jumbo records");
    let probe = linear_length_probe();

    let started = Instant::now();
    let mut pairs = 0usize;
    let mut matched = 0usize;
    let mut multi_buffer_runs = 0usize;
    let mut mismatches = Vec::new();
    let mut trivial = Vec::new();
    for expr in EXPRESSIONS {
        let cbpf = compile(expr, SNAPLEN).unwrap_or_else(|e| panic!("compile {expr:?}: {e}"));
        let ebpf = translate(&cbpf).unwrap_or_else(|e| panic!("translate {expr:?}: {e}"));
        let raw = FilterProgram::load_replay(&ebpf, ReturnMode::Snaplen)
            .unwrap_or_else(|e| panic!("load {expr:?}: {e}"));
        let live = FilterProgram::load_multi_buffer(&ebpf, ReturnMode::Snaplen)
            .unwrap_or_else(|e| panic!("load {expr:?}: {e}"));
        let filter = Filter::new(expr, SNAPLEN).unwrap_or_else(|e| panic!("load {expr:?}: {e}"));
        let libpcap = pcap::Capture::dead(pcap::Linktype::ETHERNET)
            .unwrap()
            .compile(expr, true)
            .unwrap();
        let mut hits = 0;
        for (i, r) in records.iter().enumerate() {
            let (captured, wire_len) = (&r.captured[..], r.wire_len);
            let want = libpcap_verdict(&libpcap, captured, wire_len);
            let interp = interpret(&cbpf, captured, wire_len);
            let replay_verdict = filter.matches(captured, wire_len).unwrap();
            // Records up to the linear area run in the kernel; longer ones are judged by
            // the interpreter (Filter::matches), and by a live multi-buffer run below.
            let kernel = if captured.len() <= max {
                raw.run_record(captured, wire_len)
                    .unwrap_or_else(|e| panic!("run {expr:?} record {i}: {e}"))
            } else {
                interp
            };
            pairs += 1;
            hits += usize::from(want);
            if (kernel != 0) != want
                || interp != kernel
                || replay_verdict != want
                || (want && kernel != SNAPLEN)
            {
                mismatches.push(format!(
                    "{expr:?} record {i} ({} of {wire_len} bytes): libpcap {want}, kernel {kernel}, dump -r verdict {replay_verdict}, interpreter {interp}",
                    captured.len()
                ));
            }
            // A whole jumbo frame as live XDP sees it: fragments beyond the linear area,
            // `len` the whole frame, loads reaching the linear part only.
            if captured.len() > max && captured.len() == wire_len as usize {
                let linear = probe.run(captured).unwrap() as usize;
                assert!(linear < captured.len(), "the test run kept all {linear} bytes linear");
                let want = libpcap_verdict(&libpcap, &captured[..linear], wire_len);
                let got = live.run(captured).unwrap_or_else(|e| panic!("run {expr:?} jumbo record {i}: {e}"));
                multi_buffer_runs += 1;
                if (got != 0) != want {
                    mismatches.push(format!(
                        "{expr:?} jumbo record {i} ({wire_len} bytes, {linear} linear): libpcap on the linear part {want}, multi-buffer kernel run {got}"
                    ));
                }
            }
        }
        matched += hits;
        if hits == 0 || hits == records.len() {
            trivial.push(*expr);
        }
    }
    println!(
        "compared {pairs} (expression, record) pairs: {} expressions x {} records ({} frames; {truncated} records cut by a snap length, {jumbo} jumbo), {matched} matches, {multi_buffer_runs} multi-buffer kernel runs, {:?}",
        EXPRESSIONS.len(),
        records.len(),
        frames.len(),
        started.elapsed()
    );
    println!("expressions that matched all or none of the corpus: {trivial:?}");
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    // The corpus must actually exercise the filters, not just reject everything.
    assert!(
        trivial.len() * 10 <= EXPRESSIONS.len(),
        "too many trivial expressions: {trivial:?}"
    );
}

/// `len`, `less` and `greater` judge the original length of a record, not the bytes kept:
/// a 1000-byte frame recorded with a 60-byte snap length is `greater 100`, as libpcap says.
#[test]
fn length_expressions_judge_the_original_length() {
    require_root();
    let frame = &common::corpus()[0];
    let mut big = frame.clone();
    big.resize(1000, 0xab);
    for (expr, want) in [("greater 100", true), ("less 100", false), ("len = 1000", true), ("len = 60", false)] {
        let f = Filter::new(expr, SNAPLEN).unwrap();
        let libpcap = pcap::Capture::dead(pcap::Linktype::ETHERNET).unwrap().compile(expr, true).unwrap();
        assert_eq!(libpcap_verdict(&libpcap, &big[..60], 1000), want, "libpcap, {expr:?}");
        assert_eq!(f.matches(&big[..60], 1000).unwrap(), want, "kernel, {expr:?}");
        assert_eq!(interpret(&f.cbpf, &big[..60], 1000) != 0, want, "interpreter, {expr:?}");
        // Below the test run's minimum: the interpreter, with the same lengths.
        assert_eq!(f.matches(&big[..10], 1000).unwrap(), want, "short record, {expr:?}");
    }
    // A live program reads the frame's own length: it refuses to be told another one.
    let live = FilterProgram::load(&translate(&compile("greater 100", SNAPLEN).unwrap()).unwrap()).unwrap();
    assert!(matches!(live.run_record(&big[..60], 1000), Err(LoadError::LengthSource { .. })));
}

/// Frames the XDP test run refuses (< 14 bytes) are judged by the interpreter; the result
/// still equals libpcap's.
#[test]
fn short_frames_fall_back_to_interpreter() {
    require_root();
    for expr in [
        "ether host 02:00:00:00:00:01",
        "len < 10",
        "ip",
        "ether[0] = 2",
    ] {
        let f = Filter::new(expr, SNAPLEN).unwrap();
        let libpcap = pcap::Capture::dead(pcap::Linktype::ETHERNET)
            .unwrap()
            .compile(expr, true)
            .unwrap();
        for len in 0..14 {
            let frame: Vec<u8> = [2u8, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0][..len].to_vec();
            assert!(f.program.matches(&frame).is_err());
            assert_eq!(
                f.matches(&frame, len as u32).unwrap(),
                libpcap.filter(&frame),
                "{expr:?} len {len}"
            );
        }
        // Frames up to max_test_run_frame() run in the kernel, with the last byte reachable;
        // a 9000-byte jumbo frame would not be linear and goes to the interpreter.
        let max = netray_pcapfilter::max_test_run_frame();
        let last =
            Filter::new(&format!("ether[{}] = 7 and len = {max}", max - 1), SNAPLEN).unwrap();
        let mut big = vec![0u8; max];
        big[max - 1] = 7;
        assert!(last.program.matches(&big).unwrap());
        big.push(0);
        assert!(matches!(
            last.program.matches(&big),
            Err(LoadError::FrameSize(_))
        ));
        let mut jumbo = vec![0u8; 9000];
        jumbo[..14].copy_from_slice(&[2u8, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0]);
        jumbo[14] = 0x45;
        assert!(matches!(
            f.program.matches(&jumbo),
            Err(LoadError::FrameSize(9000))
        ));
        assert_eq!(
            f.matches(&jumbo, 9000).unwrap(),
            libpcap.filter(&jumbo),
            "{expr:?} jumbo"
        );
    }
}

/// `protochain` compiles to a loop (a backward `ja`), bounded at
/// `cbpf::MAX_BACKWARD_JUMPS` iterations: a chain of that many extension headers is still
/// walked to the protocol; behind one more, the filter (kernel and interpreter alike) says
/// "no match" where libpcap's unbounded interpreter goes on.
#[test]
fn protochain_loop_is_bounded() {
    require_root();
    let max = netray_pcapfilter::cbpf::MAX_BACKWARD_JUMPS as usize;
    assert_eq!(max, common::MAX_EXT);
    let expr = "ip6 protochain 6";
    let cbpf = compile(expr, SNAPLEN).unwrap();
    let prog = FilterProgram::load(&translate(&cbpf).unwrap()).unwrap();
    let libpcap = pcap::Capture::dead(pcap::Linktype::ETHERNET)
        .unwrap()
        .compile(expr, true)
        .unwrap();
    for n in [max, max + 1] {
        let frame = common::ipv6_tcp_behind(n);
        let want = n <= max;
        assert!(libpcap.filter(&frame), "libpcap walks {n} headers");
        assert_eq!(prog.matches(&frame).unwrap(), want, "kernel, {n} headers");
        assert_eq!(interpret(&cbpf, &frame, frame.len() as u32) != 0, want, "interpreter, {n} headers");
    }
}

#[test]
fn syntax_error_carries_libpcaps_message() {
    let err = compile("tcp port", SNAPLEN).unwrap_err();
    let mut libpcap_msg = String::new();
    if let Err(pcap::Error::PcapError(m)) = pcap::Capture::dead(pcap::Linktype::ETHERNET)
        .unwrap()
        .compile("tcp port", true)
    {
        libpcap_msg = m;
    }
    assert!(!libpcap_msg.is_empty());
    assert_eq!(err.to_string(), libpcap_msg);
    assert!(err.to_string().contains("syntax error"), "{err}");
    let err = compile("host 999.1.1.1", SNAPLEN).unwrap_err();
    assert!(!err.to_string().is_empty());
}
