//! The outputs of `netray dump` checked against the tools users will read them with:
//! pcapng files must open in tshark and tcpdump with the lengths, nanosecond timestamps,
//! interface names, directions, comments and verdicts we wrote; the text lines must say what
//! `tcpdump -nn` says about the same frames; files written by tcpdump and pcap-file must read
//! back through `offline::open` unchanged.
//!
//! tshark and tcpdump are required (setup/deps.sh installs them): a missing tool fails the
//! test, it does not skip it.
//!
//! One job, one file (over 600 lines): the output formats against their readers, sharing
//! one frame corpus and the tshark/tcpdump runners.

use std::borrow::Cow;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etherparse::{PacketBuilder, TcpOptionElement, VlanId};
use netray_capture::line::{format_line, to_json};
use netray_capture::offline::{self, OfflineError, OfflinePacket};
use netray_capture::{CaptureIf, Packet, PcapngWriter, Point};
use netray_core::Hook;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness};

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const IP_A: [u8; 4] = [198, 18, 0, 1];
const IP_B: [u8; 4] = [198, 18, 0, 2];
const IP6_A: [u8; 16] = [0xfd, 0x6e, 0x72, 0x61, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const IP6_B: [u8; 16] = [0xfd, 0x6e, 0x72, 0x61, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
/// Snaplen of every capture interface: libpcap (tcpdump) refuses pcapng files whose
/// interfaces have different snaplens, so a dump uses one. The big frames are cut to it.
const SNAPLEN: u32 = 128;

/// One test frame: what it is and its bytes.
struct Frame {
    name: &'static str,
    bytes: Vec<u8>,
    /// Capture only this many bytes (a header cut short), whatever the snaplen.
    cut: Option<usize>,
}

/// A frame from an etherparse builder (each last step is its own type, hence a macro).
macro_rules! build {
    ($builder:expr, $payload:expr $(,)?) => {{
        let builder = $builder;
        let payload: &[u8] = $payload;
        let mut buf = Vec::with_capacity(builder.size(payload.len()));
        builder.write(&mut buf, payload).expect("etherparse writes the test frame");
        buf
    }};
}

fn eth() -> etherparse::PacketBuilderStep<etherparse::Ethernet2Header> {
    PacketBuilder::ethernet2(MAC_A, MAC_B)
}

/// Ethernet + IPv6 header by hand, for extension headers PacketBuilder does not make.
fn ipv6_by_hand(next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    f.extend_from_slice(&[next_header, 64]);
    f.extend_from_slice(&IP6_A);
    f.extend_from_slice(&IP6_B);
    f.extend_from_slice(payload);
    f
}

fn arp(op: u16, sender_ip: [u8; 4], target_ip: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&sender_ip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target_ip);
    f
}

/// Sets an IPv4 frame's flags/fragment offset field (bytes 6-7 of the IP header).
fn fragment(mut f: Vec<u8>, flags_offset: u16) -> Vec<u8> {
    f[14 + 6..14 + 8].copy_from_slice(&flags_offset.to_be_bytes());
    f
}

fn frames() -> Vec<Frame> {
    let udp4 = build!(eth().ipv4(IP_A, IP_B, 64).udp(40000, 9), &[0x55; 18]);
    let tcp_syn = eth().ipv4(IP_A, IP_B, 64).tcp(40001, 7, 1000, 64240).syn();
    let tcp_syn = tcp_syn
        .options(&[
            TcpOptionElement::MaximumSegmentSize(1460),
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::Timestamp(12345, 0),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(7),
        ])
        .expect("options fit");
    let tcp_syn2 = eth().ipv4(IP_A, IP_B, 64).tcp(40003, 7, 1, 1024).syn();
    let mut other_proto = udp4.clone();
    other_proto[14 + 9] = 253; // IP protocol: "use for experimentation"
    let mut icmp_unreach_quote = build!(eth().ipv4(IP_B, IP_A, 64).udp(40000, 9), &[0x55; 18]);
    icmp_unreach_quote.drain(..14);
    let mut udp6_frag = vec![17, 0, 0x00, 0x09, 0, 0, 0, 1]; // non-first fragment, offset 8
    udp6_frag.extend_from_slice(&[0x55; 24]);
    let mut hbh_icmp6 = vec![58, 0, 1, 4, 0, 0, 0, 0]; // HBH with PadN
    hbh_icmp6.extend_from_slice(&[128, 0, 0, 0, 0, 7, 0, 1]); // echo request id 7 seq 1
    hbh_icmp6.extend_from_slice(&[0x55; 16]);
    let mut lldp_like = Vec::new();
    lldp_like.extend_from_slice(&MAC_B);
    lldp_like.extend_from_slice(&MAC_A);
    lldp_like.extend_from_slice(&0x88b5u16.to_be_bytes()); // IEEE local experimental
    lldp_like.extend_from_slice(&[0x42; 46]);
    vec![
        Frame { name: "udp4", bytes: udp4.clone(), cut: None },
        Frame { name: "tcp4 syn", bytes: build!(tcp_syn, &[]), cut: None },
        Frame {
            name: "tcp4 syn-ack",
            bytes: build!(eth().ipv4(IP_B, IP_A, 64).tcp(7, 40001, 7000, 65160).syn().ack(1001), &[]),
            cut: None,
        },
        Frame {
            name: "tcp4 data",
            bytes: build!(eth().ipv4(IP_A, IP_B, 64).tcp(40001, 7, 1001, 502).ack(7001).psh(), b"hello, net"),
            cut: None,
        },
        Frame {
            name: "tcp4 fin",
            bytes: build!(eth().ipv4(IP_A, IP_B, 64).tcp(40001, 7, 1011, 502).ack(7001).fin(), &[]),
            cut: None,
        },
        Frame {
            name: "icmp echo request",
            bytes: build!(eth().ipv4(IP_A, IP_B, 64).icmpv4_echo_request(7, 1), &[0x61; 56]),
            cut: None,
        },
        Frame {
            name: "icmp echo reply",
            bytes: build!(eth().ipv4(IP_B, IP_A, 64).icmpv4_echo_reply(7, 1), &[0x61; 56]),
            cut: None,
        },
        Frame {
            name: "icmp port unreachable",
            bytes: build!(
                eth().ipv4(IP_A, IP_B, 64).icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                    etherparse::icmpv4::DestUnreachableHeader::Port,
                )),
                &icmp_unreach_quote,
            ),
            cut: None,
        },
        Frame { name: "udp6", bytes: build!(eth().ipv6(IP6_A, IP6_B, 64).udp(40000, 9), &[0x55; 18]), cut: None },
        Frame {
            name: "tcp6 syn",
            bytes: build!(eth().ipv6(IP6_A, IP6_B, 64).tcp(40002, 443, 99, 64800).syn(), &[]),
            cut: None,
        },
        Frame {
            name: "icmp6 echo request",
            bytes: build!(eth().ipv6(IP6_A, IP6_B, 64).icmpv6_echo_request(9, 3), &[0x61; 56]),
            cut: None,
        },
        Frame {
            name: "vlan udp4",
            bytes: build!(
                eth().single_vlan(VlanId::try_new(10).expect("vlan id")).ipv4(IP_A, IP_B, 64).udp(40000, 9),
                &[0x55; 18],
            ),
            cut: None,
        },
        Frame { name: "arp request", bytes: arp(1, IP_A, IP_B), cut: None },
        Frame { name: "arp reply", bytes: arp(2, IP_B, IP_A), cut: None },
        Frame { name: "ipv4 first fragment", bytes: fragment(udp4.clone(), 0x2000), cut: None },
        Frame { name: "ipv4 later fragment", bytes: fragment(udp4.clone(), 0x0010), cut: None },
        Frame { name: "ipv6 fragment", bytes: ipv6_by_hand(44, &udp6_frag), cut: None },
        Frame { name: "ipv6 hop-by-hop icmp6", bytes: ipv6_by_hand(0, &hbh_icmp6), cut: None },
        Frame { name: "ip proto 253", bytes: other_proto, cut: None },
        Frame { name: "ethertype 0x88b5", bytes: lldp_like, cut: None },
        // Longer than SNAPLEN: captured truncated; tcpdump takes lengths from the headers.
        Frame { name: "udp4 big", bytes: build!(eth().ipv4(IP_A, IP_B, 64).udp(40000, 9), &[0x55; 300]), cut: None },
        Frame {
            name: "tcp6 big data",
            bytes: build!(eth().ipv6(IP6_A, IP6_B, 64).tcp(40002, 443, 100, 64800).ack(5).psh(), &[0x61; 400]),
            cut: None,
        },
        // Headers cut short by the capture.
        Frame { name: "tcp4 cut in tcp header", bytes: build!(tcp_syn2, &[]), cut: Some(14 + 20 + 6) },
        Frame {
            name: "udp6 cut in ip header",
            bytes: build!(eth().ipv6(IP6_A, IP6_B, 64).udp(1, 2), &[]),
            cut: Some(14 + 30),
        },
        Frame { name: "cut in ethernet header", bytes: udp4.clone(), cut: Some(10) },
    ]
}

fn capture_if(hook: Hook, point: Point) -> CaptureIf {
    CaptureIf { ifindex: 7, ifname: "veth0".into(), hook: Some(hook), point, snaplen: SNAPLEN }
}

/// What the test wrote for one packet, to compare readers' answers with.
#[derive(Debug, Clone)]
struct Written {
    iface: CaptureIf,
    ts: SystemTime,
    wire_len: u32,
    data: Vec<u8>,
    verdict: Option<i32>,
    name: String,
}

impl Written {
    fn packet(&self) -> Packet<'_> {
        Packet { iface: &self.iface, ts: self.ts, wire_len: self.wire_len, data: &self.data, verdict: self.verdict, audit_rule: None }
    }
}

/// Nanoseconds that are not whole microseconds, so losing them shows.
fn ts(i: usize) -> SystemTime {
    UNIX_EPOCH + Duration::new(1_763_000_000 + i as u64, 123_456_789 + i as u32 * 1_001)
}

/// Every frame once at XDP entry, then some at exit points with XDP and TC verdicts (one
/// of them unnamed); frames longer than SNAPLEN are cut to it, as the kernel side would.
fn packets() -> Vec<Written> {
    let entry = capture_if(Hook::Xdp, Point::Entry);
    let exit = capture_if(Hook::Xdp, Point::Exit);
    let tc_exit = capture_if(Hook::TcEgress, Point::Exit);
    let frames = frames();
    let at_entry = frames.iter().map(|f| (&entry, None, f, f.name.to_owned()));
    let at_exit = [
        (&exit, 1, &frames[0]),     // XDP_DROP
        (&exit, 2, &frames[1]),     // XDP_PASS
        (&exit, 9, &frames[2]),     // no name: printed as a number
        (&tc_exit, 2, &frames[3]),  // TC_ACT_SHOT
        (&tc_exit, -1, &frames[8]), // TC_ACT_UNSPEC
    ]
    .map(|(iface, v, f)| (iface, Some(v), f, format!("{} at {} exit", f.name, iface.hook.map_or("", Hook::name))));
    at_entry
        .chain(at_exit)
        .enumerate()
        .map(|(i, (iface, verdict, f, name))| Written {
            iface: iface.clone(),
            ts: ts(i),
            wire_len: f.bytes.len() as u32,
            data: f.bytes[..f.bytes.len().min(SNAPLEN as usize).min(f.cut.unwrap_or(usize::MAX))].to_vec(),
            verdict,
            name,
        })
        .collect()
}

fn write_pcapng(path: &Path, packets: &[Written]) {
    let file = std::fs::File::create(path).expect("create capture file");
    let mut w = PcapngWriter::new(std::io::BufWriter::new(file)).expect("section header");
    for p in packets {
        w.write(&p.packet()).expect("write packet");
    }
    assert_eq!(w.packets_written(), packets.len() as u64);
    w.into_inner().expect("flush");
}

/// Runs a tool that must exist and succeed; its stdout.
fn run(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run {tool} ({e}): it is required for this test; install it with `bash setup/deps.sh`")
    });
    assert!(out.status.success(), "{tool} {args:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("tool output is UTF-8")
}

fn epoch_nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).expect("after 1970").as_nanos()
}

fn fmt_epoch(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).expect("after 1970");
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

#[test]
fn pcapng_reads_in_tshark_as_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dump.pcapng");
    let written = packets();
    write_pcapng(&path, &written);
    let file = path.to_str().expect("utf-8 path");

    let fields = [
        "frame.interface_name",
        "frame.interface_description",
        "frame.len",
        "frame.cap_len",
        "frame.time_epoch",
        "frame.packet_flags_direction",
        "frame.comment",
        "frame.verdict.ebpf_xdp",
        "frame.verdict.ebpf_tc",
    ];
    let mut args = vec!["-r", file, "-T", "fields", "-E", "separator=|", "-E", "occurrence=f"];
    for f in &fields {
        args.extend(["-e", f]);
    }
    let out = run("tshark", &args);
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), written.len(), "tshark shows every packet:\n{out}");
    for (w, row) in written.iter().zip(&rows) {
        let ctx = format!("{} (tshark row {row:?})", w.name);
        let hook = w.iface.hook.expect("live packets have a hook");
        assert_eq!(row[0], "veth0", "{ctx}: if_name");
        assert_eq!(row[1], format!("veth0 {} {}", hook.name(), w.iface.point.name()), "{ctx}: if_description");
        assert_eq!(row[2], w.wire_len.to_string(), "{ctx}: frame.len");
        assert_eq!(row[3], w.data.len().to_string(), "{ctx}: frame.cap_len");
        assert_eq!(row[4], fmt_epoch(w.ts), "{ctx}: nanosecond timestamp");
        let direction = match hook {
            Hook::Xdp | Hook::TcIngress => "0x00000001",
            Hook::TcEgress => "0x00000002",
            Hook::Socket => "0x00000000",
        };
        assert_eq!(row[5], direction, "{ctx}: epb_flags direction");
        match w.verdict {
            None => {
                assert_eq!(row[6], "", "{ctx}: no comment at entry points");
                assert_eq!((row[7], row[8]), ("", ""), "{ctx}: no verdict at entry points");
            }
            Some(v) => {
                let name = w.packet().verdict_name().expect("verdict name");
                assert_eq!(row[6], format!("{} exit: {name}", hook.name()), "{ctx}: comment");
                let (xdp, tc) =
                    if hook == Hook::Xdp { (v.to_string(), String::new()) } else { (String::new(), v.to_string()) };
                assert_eq!((row[7], row[8]), (xdp.as_str(), tc.as_str()), "{ctx}: epb_verdict");
            }
        }
    }
    let truncated: Vec<_> = written.iter().zip(&rows).filter(|(w, _)| w.wire_len > SNAPLEN).collect();
    assert_eq!(truncated.len(), 2, "the two big frames are truncated");
    for (w, row) in truncated {
        let (len, cap): (u32, u32) = (row[2].parse().expect("len"), row[3].parse().expect("cap_len"));
        assert!(cap < len && cap == SNAPLEN, "{}: cap_len {cap} < len {len}", w.name);
    }

    // The section header says who wrote the file, on what.
    let info = run("capinfos", &[file]);
    let app = format!("netray {}", env!("CARGO_PKG_VERSION"));
    assert!(info.lines().any(|l| l.starts_with("Capture application:") && l.ends_with(&app)), "{info}");
    assert!(info.lines().any(|l| l.starts_with("Capture oper-sys:") && l.contains("Linux")), "{info}");

    // tshark's own dissection of the file finds nothing malformed in the blocks.
    let expert = run("tshark", &["-r", file, "-z", "expert,error", "-q"]);
    assert!(!expert.contains("Malformed"), "tshark reports malformed packets:\n{expert}");
}

/// tcpdump re-writes our pcapng as a nanosecond pcap; our reader reads that back equal to
/// what we wrote (bytes, lengths, timestamps), which checks the pcapng through libpcap and
/// the pcap reader at once.
#[test]
fn pcapng_round_trips_through_tcpdump_and_offline_reader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ng = dir.path().join("dump.pcapng");
    let pcap = dir.path().join("rewritten.pcap");
    let written = packets();
    write_pcapng(&ng, &written);

    let back: Vec<OfflinePacket> =
        offline::open(&ng).expect("open pcapng").collect::<Result<_, _>>().expect("read pcapng");
    assert_eq!(back.len(), written.len());
    let mut names: Vec<&str> = Vec::new();
    for (w, b) in written.iter().zip(&back) {
        assert_eq!(b.data, w.data, "{}: bytes", w.name);
        assert_eq!(b.wire_len, w.wire_len, "{}: wire length", w.name);
        assert_eq!(epoch_nanos(b.ts), epoch_nanos(w.ts), "{}: timestamp (if_tsresol 9)", w.name);
        assert_eq!(b.iface.ifname, "veth0");
        assert_eq!((b.iface.hook, b.iface.point, b.verdict), (None, Point::Entry, None));
        assert_eq!(b.iface.snaplen, w.iface.snaplen, "{}: snaplen from the IDB", w.name);
        names.push(&w.name);
    }
    // One IDB per (interface, hook, point), numbered in order of first use.
    let ids: Vec<u32> = back.iter().map(|b| b.iface.ifindex).collect();
    assert_eq!(*ids.iter().max().expect("packets"), 2, "three capture interfaces: {ids:?}");

    run(
        "tcpdump",
        &["--time-stamp-precision=nano", "-r", ng.to_str().expect("path"), "-w", pcap.to_str().expect("path")],
    );
    let again: Vec<OfflinePacket> =
        offline::open(&pcap).expect("open pcap").collect::<Result<_, _>>().expect("read pcap");
    assert_eq!(again.len(), written.len(), "tcpdump kept every packet");
    for (w, b) in written.iter().zip(&again) {
        assert_eq!(b.data, w.data, "{}: bytes after tcpdump", w.name);
        assert_eq!(b.wire_len, w.wire_len, "{}: wire length after tcpdump", w.name);
        assert_eq!(epoch_nanos(b.ts), epoch_nanos(w.ts), "{}: ns timestamp after tcpdump", w.name);
        assert_eq!(b.iface.ifname, "if0");
    }
    // The big frames have an original length above the file's snaplen, as in any
    // `tcpdump -s N -w` capture: pcap-file 2.x refused those.
    assert!(again.iter().any(|p| p.wire_len > p.iface.snaplen), "pcap with truncated packets");
}

/// pcap files in both byte orders and both resolutions, written by pcap-file, read back.
#[test]
fn offline_reads_pcap_in_both_byte_orders_and_resolutions() {
    use pcap_file::pcap::PcapTsResolution;
    let dir = tempfile::tempdir().expect("tempdir");
    let written = packets();
    for endianness in [Endianness::Big, Endianness::Little] {
        for res in [PcapTsResolution::MicroSecond, PcapTsResolution::NanoSecond] {
            let path = dir.path().join(format!("{endianness:?}-{res:?}.pcap"));
            let header = PcapHeader { endianness, ts_resolution: res, snaplen: 262_144, ..PcapHeader::default() };
            let file = std::fs::File::create(&path).expect("create");
            let mut w = PcapWriter::with_header(file, header).expect("pcap header");
            for p in &written {
                let d = p.ts.duration_since(UNIX_EPOCH).expect("after 1970");
                let pkt = PcapPacket::new(d, p.wire_len, Cow::Borrowed(&p.data[..])).expect("valid packet");
                w.write_packet(&pkt).expect("write");
            }
            drop(w);
            let back: Vec<OfflinePacket> = offline::open(&path).expect("open").collect::<Result<_, _>>().expect("read");
            assert_eq!(back.len(), written.len());
            for (w, b) in written.iter().zip(&back) {
                assert_eq!((&b.data, b.wire_len), (&w.data, w.wire_len), "{endianness:?} {res:?} {}", w.name);
                let want = epoch_nanos(w.ts);
                let want = if res == PcapTsResolution::MicroSecond { want / 1000 * 1000 } else { want };
                assert_eq!(epoch_nanos(b.ts), want, "{endianness:?} {res:?} {}: timestamp", w.name);
            }
        }
    }
}

#[test]
fn offline_errors_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err_of = |path: &Path| -> OfflineError {
        match offline::open(path) {
            Err(e) => e,
            Ok(r) => {
                r.filter_map(Result::err).next().unwrap_or_else(|| panic!("{} read without error", path.display()))
            }
        }
    };

    let missing = dir.path().join("missing.pcap");
    let e = err_of(&missing);
    assert!(matches!(e, OfflineError::Open { .. }), "{e:?}");
    assert!(e.to_string().contains("missing.pcap") && e.to_string().contains("No such file"), "{e}");

    let garbage = dir.path().join("garbage.txt");
    std::fs::write(&garbage, "GET / HTTP/1.1\r\nHost: example\r\n\r\n").expect("write");
    let e = err_of(&garbage);
    assert!(matches!(e, OfflineError::NotCapture { .. }), "{e:?}");
    assert!(e.to_string().contains("garbage.txt") && e.to_string().contains("not a pcap or pcapng file"), "{e}");

    let empty = dir.path().join("empty.pcap");
    std::fs::write(&empty, "").expect("write");
    let e = err_of(&empty);
    assert!(e.to_string().contains("empty.pcap") && e.to_string().contains("empty"), "{e}");

    // Linux cooked capture (LINKTYPE_LINUX_SLL, 113), as `tcpdump -i any -w` writes it.
    let sll = dir.path().join("any.pcap");
    let header = PcapHeader { datalink: DataLink::LINUX_SLL, ..PcapHeader::default() };
    drop(PcapWriter::with_header(std::fs::File::create(&sll).expect("create"), header).expect("header"));
    let e = err_of(&sll);
    assert!(matches!(e, OfflineError::LinkType { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("any.pcap") && msg.contains("113") && msg.contains("Ethernet frames only"), "{msg}");

    // Cut a valid pcapng and a valid pcap in the middle of the last packet.
    let ng = dir.path().join("whole.pcapng");
    write_pcapng(&ng, &packets());
    let bytes = std::fs::read(&ng).expect("read");
    let cut_ng = dir.path().join("cut.pcapng");
    std::fs::write(&cut_ng, &bytes[..bytes.len() - 10]).expect("write");
    let e = err_of(&cut_ng);
    assert!(matches!(e, OfflineError::Truncated { .. }), "{e:?}");
    assert!(e.to_string().contains("cut.pcapng") && e.to_string().contains("truncated"), "{e}");
    let readable = offline::open(&cut_ng).expect("open").take_while(Result::is_ok).count();
    assert_eq!(readable, packets().len() - 1, "packets before the cut are still read");

    let pcap = dir.path().join("whole.pcap");
    run("tcpdump", &["-r", ng.to_str().expect("path"), "-w", pcap.to_str().expect("path")]);
    let bytes = std::fs::read(&pcap).expect("read");
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 3]).expect("write");
    let e = err_of(&cut);
    assert!(matches!(e, OfflineError::Truncated { .. }) && e.to_string().contains("cut.pcap"), "{e:?}");

    // Only a header's first bytes.
    let stub = dir.path().join("stub.pcap");
    std::fs::write(&stub, &bytes[..10]).expect("write");
    let e = err_of(&stub);
    assert!(matches!(e, OfflineError::Truncated { .. }) && e.to_string().contains("stub.pcap"), "{e:?}");
}

/// The decoded part of our line must say what `tcpdump -nn -S` says, word for word, and
/// the time must be tcpdump's local time to the nanosecond. Two known differences are
/// normalised first: tcpdump shows VLAN tags only with -e (we always show "vlan N, p N, "),
/// and calls ethertypes it has no decoder for "Unknown (0x88b5)" where we print the number.
#[test]
fn lines_match_tcpdump() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dump.pcapng");
    let written = packets();
    write_pcapng(&path, &written);
    let out = run("tcpdump", &["-nn", "-S", "--nano", "-r", path.to_str().expect("path")]);
    // Lines starting with a tab are tcpdump's hex dump of undecoded payloads.
    let theirs: Vec<&str> = out.lines().filter(|l| !l.starts_with('\t')).collect();
    assert_eq!(theirs.len(), written.len(), "one tcpdump line per packet:\n{out}");
    for (w, their) in written.iter().zip(&theirs) {
        let ours = format_line(&w.packet());
        let (their_time, their_rest) = their.split_once(' ').expect("tcpdump line has a time");
        let hook = w.iface.hook.expect("hook");
        let dir = if hook == Hook::TcEgress { "Out" } else { "In " };
        let prefix = format!("{their_time} veth0 {}-{} {dir} ", hook.name(), w.iface.point.name());
        let Some(summary) = ours.strip_prefix(&prefix) else {
            panic!("{}: our line {ours:?} does not start with {prefix:?}", w.name)
        };
        let summary = match w.packet().verdict_name() {
            Some(v) => summary
                .strip_suffix(&format!(" [{v}]"))
                .unwrap_or_else(|| panic!("{}: {ours:?} ends with the verdict [{v}]", w.name)),
            None => summary,
        };
        let summary = strip_vlan(summary);
        let their_rest = their_rest.replace("ethertype Unknown (0x88b5)", "ethertype 0x88b5");
        let their_rest = their_rest.trim_end_matches([':', ' ']);
        // tcpdump sometimes puts two spaces after the colon ("2:  [|tcp]").
        let their_rest = their_rest.split_whitespace().collect::<Vec<_>>().join(" ");
        let their_rest = their_rest.as_str();
        assert_eq!(summary, their_rest, "{}: ours vs tcpdump", w.name);
    }
}

/// "vlan 10, p 0, IP ..." → "IP ...".
fn strip_vlan(mut s: &str) -> &str {
    while let Some(rest) = s.strip_prefix("vlan ") {
        match rest.split_once(", p ").and_then(|(_, r)| r.split_once(", ")) {
            Some((_, after)) => s = after,
            None => break,
        }
    }
    s
}

/// The decoder never panics, whatever the bytes: every prefix of every test frame, and
/// some noise.
#[test]
fn lines_never_panic() {
    let iface = capture_if(Hook::Xdp, Point::Exit);
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for f in frames() {
        for n in 0..=f.bytes.len() {
            inputs.push(f.bytes[..n].to_vec());
        }
    }
    let mut x: u32 = 0x1234_5678;
    for len in 0..300 {
        let mut noise = Vec::new();
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            noise.push(x as u8);
        }
        // Half of them get a plausible Ethernet type so the IP decoders see noise too.
        if len >= 14 && len % 2 == 0 {
            noise[12..14].copy_from_slice(if len % 4 == 0 { &[0x08, 0] } else { &[0x86, 0xdd] });
        }
        inputs.push(noise);
    }
    for data in &inputs {
        let pkt = Packet { iface: &iface, ts: ts(0), wire_len: data.len() as u32, data, verdict: Some(77), audit_rule: None };
        let line = format_line(&pkt);
        assert!(line.ends_with("[77]"), "{line}");
        let json = to_json(&pkt);
        assert_eq!(json["cap_len"], data.len());
    }
    let empty = Packet { iface: &iface, ts: ts(0), wire_len: 0, data: &[], verdict: None, audit_rule: None };
    assert!(format_line(&empty).ends_with("[|ether]"), "{}", format_line(&empty));
}

#[test]
fn json_has_the_decoded_fields() {
    let w = &packets()[1]; // tcp4 syn at xdp entry
    let v = to_json(&w.packet());
    assert_eq!(v["ts"], "2025-11-13T02:13:21.123457790Z");
    assert_eq!(v["ts_ns"], epoch_nanos(w.ts) as u64);
    assert_eq!(v["ifname"], "veth0");
    assert_eq!(v["ifindex"], 7);
    assert_eq!(v["hook"], "xdp");
    assert_eq!(v["point"], "entry");
    assert_eq!(v["verdict"], serde_json::Value::Null);
    assert_eq!(v["wire_len"], w.wire_len);
    assert_eq!(v["cap_len"], w.data.len());
    assert_eq!(v["src"], "198.18.0.1");
    assert_eq!(v["dst"], "198.18.0.2");
    assert_eq!(v["sport"], 40001);
    assert_eq!(v["dport"], 7);
    assert_eq!(v["proto"], "tcp");
    let summary = v["summary"].as_str().expect("summary");
    assert!(summary.starts_with("IP 198.18.0.1.40001 > 198.18.0.2.7: Flags [S], seq 1000"), "{summary}");
    assert!(format_line(&w.packet()).ends_with(summary));

    let dropped = packets().into_iter().find(|p| p.verdict == Some(1)).expect("an XDP_DROP packet");
    let v = to_json(&dropped.packet());
    assert_eq!((v["point"].as_str(), v["verdict"].as_str()), (Some("exit"), Some("XDP_DROP")));
    let arp = packets().into_iter().find(|p| p.name == "arp request").expect("arp");
    let v = to_json(&arp.packet());
    assert_eq!((v["proto"].as_str(), v.get("sport")), (Some("arp"), None));
}

/// `netray dump -w - | tcpdump -r -`: tcpdump prints a packet as soon as the writer has
/// flushed it, while the stream is still open.
#[test]
fn pcapng_streams_into_tcpdump() {
    let mut child = Command::new("tcpdump")
        .args(["-l", "-nn", "-r", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump is required for this test; install it with `bash setup/deps.sh`");
    let stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let written = packets();
    let mut w = PcapngWriter::new(stdin).expect("header");
    for p in &written[..3] {
        w.write(&p.packet()).expect("write");
        w.flush().expect("flush");
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("tcpdump printed nothing for {} while the stream is open", p.name));
        assert!(line.contains(" IP 198.18.0."), "{line}");
    }
    let mut stdin = w.into_inner().expect("flush");
    stdin.flush().expect("flush");
    drop(stdin);
    assert!(child.wait().expect("tcpdump exits").success(), "tcpdump read the stream without error");
}
