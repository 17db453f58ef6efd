//! pcapng output: one Section Header Block, an Interface Description Block per
//! (interface, hook, point) the first time it is seen, an Enhanced Packet Block per packet,
//! and at the end an Interface Statistics Block per interface.
//!
//! Section, interface and statistics blocks are encoded by pcap-file. Enhanced Packet
//! Blocks are encoded here, straight into a reusable buffer ([`EpbBatch`]): pcap-file
//! builds a Vec of options per packet and copies the packet twice, which at a million
//! packets a second is most of the encoding cost, and the readers encode in parallel
//! without the writer's interface state. Each block (or batch of whole blocks) is handed
//! to the output with one `write_all`, so a reader on a pipe (`netray dump -w - | tcpdump
//! -r -`) never sees half a block.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::time::{Duration, UNIX_EPOCH};

use netray_core::Hook;
use std::time::SystemTime;

use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption, InterfaceTsResolution,
};
use pcap_file::pcapng::blocks::interface_statistics::{InterfaceStatisticsBlock, InterfaceStatisticsOption};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::{PcapNgWriteError, PcapNgWriter};
use pcap_file::{DataLink, Endianness};

use crate::packet::{verdict_label, CaptureIf, Direction, Packet};

/// Enhanced Packet Block type and its options (pcapng spec).
const EPB_TYPE: u32 = 6;
const OPT_ENDOFOPT: u16 = 0;
const OPT_COMMENT: u16 = 1;
const EPB_FLAGS: u16 = 2;
/// epb_verdict: verdict type byte, then the verdict data.
const EPB_VERDICT: u16 = 7;
const VERDICT_TYPE_EBPF_TC: u8 = 1;
const VERDICT_TYPE_EBPF_XDP: u8 = 2;

/// epb_flags bits 0-1: inbound/outbound direction (0 = not available).
const EPB_FLAG_INBOUND: u32 = 0b01;
const EPB_FLAG_OUTBOUND: u32 = 0b10;

/// Writes netray's packets as a pcapng stream.
///
/// Every capture interface of one stream should have the same snaplen: libpcap (and so
/// tcpdump) refuses a pcapng file whose interfaces differ in snaplen or link type, while
/// Wireshark reads it.
pub struct PcapngWriter<W: Write> {
    out: W,
    /// Encodes blocks into a scratch buffer; tracks the section's interfaces for us.
    enc: PcapNgWriter<Vec<u8>>,
    /// Interface id of every capture interface already described.
    /// Interface id = position; a capture has a handful, so a linear search
    /// beats hashing the interface on every packet.
    ifaces: Vec<(CaptureIf, u32)>,
    packets: u64,
    /// Bytes handed to the output so far.
    offset: u64,
    /// (offset, packets) after each recent write: when the output fails and says how
    /// much it kept ([`crate::direct_io::kept_bytes`]), the packets in the file.
    recent: VecDeque<(u64, u64)>,
}

/// Writes remembered in `recent`: more than a DirectFile can hold unwritten.
const RECENT_WRITES: usize = 1 << 18;

impl<W: Write> PcapngWriter<W> {
    /// Starts the stream: writes the Section Header Block at once, so even a capture that
    /// sees no packet leaves a valid (empty) file.
    pub fn new(mut out: W) -> io::Result<Self> {
        let mut options =
            vec![SectionHeaderOption::UserApplication(Cow::Owned(format!("netray {}", env!("CARGO_PKG_VERSION"))))];
        if let Some(os) = os_description() {
            options.push(SectionHeaderOption::OS(Cow::Owned(os)));
        }
        let shb = SectionHeaderBlock { endianness: Endianness::native(), options, ..Default::default() };
        let mut enc = PcapNgWriter::with_section_header(Vec::new(), shb).map_err(to_io)?;
        out.write_all(enc.get_ref())?;
        let offset = enc.get_ref().len() as u64;
        enc.get_mut().clear();
        Ok(Self { out, enc, ifaces: Vec::new(), packets: 0, offset, recent: VecDeque::new() })
    }

    /// Writes one packet, preceded by its interface's description if this is the first
    /// packet of that capture interface.
    pub fn write(&mut self, pkt: &Packet) -> io::Result<()> {
        self.write_with_comment(pkt, None)
    }

    /// As [`Self::write`], with `comment` as the packet's opt_comment (tshark shows
    /// it as frame.comment), e.g. why `netray drops` saw it dropped.
    pub fn write_with_comment(&mut self, pkt: &Packet, comment: Option<&str>) -> io::Result<()> {
        let interface_id = match self.interface_id(pkt.iface) {
            Some(id) => id,
            None => self.describe(pkt.iface)?,
        };
        let buf = self.enc.get_mut();
        encode_epb(buf, interface_id, pkt, comment);
        self.emit(1)
    }

    /// Writes blocks encoded elsewhere ([`EpbBatch`]) for interfaces already declared.
    pub fn write_encoded(&mut self, blocks: &[u8], packets: u64) -> io::Result<()> {
        let written = self.out.write_all(blocks);
        self.account(written, blocks.len(), packets)
    }

    /// Counts a write that succeeded; after one that failed, counts only the packets
    /// the output kept.
    fn account(&mut self, written: io::Result<()>, bytes: usize, packets: u64) -> io::Result<()> {
        if let Err(e) = written {
            self.cut_back(&e);
            return Err(e);
        }
        self.offset += bytes as u64;
        self.packets += packets;
        if self.recent.len() == RECENT_WRITES {
            self.recent.pop_front();
        }
        self.recent.push_back((self.offset, self.packets));
        Ok(())
    }

    /// The output failed and kept a prefix of what it was given: count the packets in it.
    fn cut_back(&mut self, e: &io::Error) {
        if let Some(kept) = crate::direct_io::kept_bytes(e) {
            let before = self.recent.iter().rev().find(|&&(end, _)| end <= kept);
            self.packets = before.map_or(0, |&(_, packets)| packets);
        }
    }

    /// The Interface Statistics Block of a declared interface: what dumpcap writes at the
    /// end of a capture, so the drop counts travel with the file.
    pub fn write_statistics(&mut self, iface: &CaptureIf, stats: &InterfaceStatistics) -> io::Result<()> {
        let id = self.interface_id(iface).ok_or_else(|| io::Error::other("statistics for an undeclared interface"))?;
        let since_epoch = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let mut options = vec![
            InterfaceStatisticsOption::IsbStartTime(since_epoch(stats.start)),
            InterfaceStatisticsOption::IsbEndTime(since_epoch(stats.end)),
            InterfaceStatisticsOption::IsbIfRecv(stats.received),
            InterfaceStatisticsOption::IsbIfDrop(stats.dropped),
        ];
        if let Some(accepted) = stats.filter_accepted {
            options.push(InterfaceStatisticsOption::IsbFilterAccept(accepted));
        }
        let isb = InterfaceStatisticsBlock { interface_id: id, timestamp: since_epoch(stats.end), options };
        self.enc.write_pcapng_block(isb).map_err(to_io)?;
        self.emit(0)
    }

    /// Describes a capture interface before any of its packets, so that a capture that
    /// sees nothing still leaves a file readers accept (tcpdump refuses a pcapng
    /// without an Interface Description Block).
    pub fn declare(&mut self, iface: &CaptureIf) -> io::Result<()> {
        if self.interface_id(iface).is_none() {
            self.describe(iface)?;
        }
        Ok(())
    }

    fn interface_id(&self, iface: &CaptureIf) -> Option<u32> {
        self.ifaces.iter().find(|(i, _)| i == iface).map(|&(_, id)| id)
    }

    /// Flushes the output (a pipe's reader sees every packet written so far).
    pub fn flush(&mut self) -> io::Result<()> {
        let flushed = self.out.flush();
        if let Err(e) = &flushed {
            self.cut_back(e);
        }
        flushed
    }

    /// Packets written so far.
    pub fn packets_written(&self) -> u64 {
        self.packets
    }

    /// The output, flushed.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }

    /// Writes the Interface Description Block of `iface` and returns its interface id.
    fn describe(&mut self, iface: &CaptureIf) -> io::Result<u32> {
        let id =
            u32::try_from(self.enc.interfaces().len()).map_err(|_| io::Error::other("too many pcapng interfaces"))?;
        let description = match iface.hook {
            Some(hook) => format!("{} {} {}", iface.ifname, hook.name(), iface.point.name()),
            None => iface.ifname.clone(),
        };
        let idb = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: iface.snaplen,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Owned(iface.ifname.clone())),
                InterfaceDescriptionOption::IfDescription(Cow::Owned(description)),
                // if_tsresol 9: the kernel's nanoseconds, kept whole. pcap-file encodes each
                // EPB timestamp in the resolution its interface declares.
                InterfaceDescriptionOption::IfTsResol(InterfaceTsResolution::NANO),
            ],
        };
        self.enc.write_pcapng_block(idb).map_err(to_io)?;
        self.emit(0)?;
        self.ifaces.push((iface.clone(), id));
        Ok(id)
    }

    /// Hands the encoded block (of `packets` packets) to the output in one piece.
    fn emit(&mut self, packets: u64) -> io::Result<()> {
        let buf = self.enc.get_mut();
        let written = self.out.write_all(buf);
        let bytes = buf.len();
        buf.clear();
        self.account(written, bytes, packets)
    }
}

/// What an Interface Statistics Block says about one capture interface.
#[derive(Debug, Clone)]
pub struct InterfaceStatistics {
    pub start: SystemTime,
    pub end: SystemTime,
    /// isb_ifrecv: packets the hook saw (the filter ran on each).
    pub received: u64,
    /// isb_ifdrop: matched but dropped by the kernel (the ring was full).
    pub dropped: u64,
    /// isb_filteraccept: packets the filter accepted.
    pub filter_accepted: Option<u64>,
}

/// Enhanced Packet Blocks encoded ahead of the writer, whole, with where each ends
/// (so a packet limit can cut a batch between two blocks).
#[derive(Debug, Default)]
pub struct EpbBatch {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl EpbBatch {
    pub fn with_capacity(bytes: usize) -> EpbBatch {
        EpbBatch { bytes: Vec::with_capacity(bytes), ends: Vec::with_capacity(bytes / 64) }
    }

    /// Appends the block of one packet of the interface numbered `interface_id`.
    pub fn push(&mut self, interface_id: u32, pkt: &Packet) {
        encode_epb(&mut self.bytes, interface_id, pkt, None);
        self.ends.push(self.bytes.len());
    }

    /// Packets in the batch.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes encoded so far.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// The blocks of the first `packets` packets.
    pub fn first(&self, packets: usize) -> &[u8] {
        self.blocks(0, packets)
    }

    /// The blocks of packets `from..to`.
    pub fn blocks(&self, from: usize, to: usize) -> &[u8] {
        let to = to.min(self.ends.len());
        if from >= to {
            return &[];
        }
        &self.bytes[self.start_of(from)..self.ends[to - 1]]
    }

    /// Where the block of packet `i` starts.
    fn start_of(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.ends[i - 1] }
    }

    /// How many packets from `from` on fit into `room` bytes, and at least one: a
    /// rotated file takes them, and the next file starts after the one that filled it.
    pub fn packets_until_full(&self, from: usize, room: u64) -> usize {
        let start = self.start_of(from);
        let over = self.ends[from..].iter().position(|&end| (end - start) as u64 > room);
        over.map_or(self.ends.len() - from, |i| i + 1)
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

/// Appends one Enhanced Packet Block: epb_flags with the direction, and at exit points
/// the verdict as epb_verdict plus a comment in words (tools that do not decode
/// epb_verdict still show the comment). Native byte order, as the section header says.
fn encode_epb(buf: &mut Vec<u8>, interface_id: u32, pkt: &Packet, comment: Option<&str>) {
    let start = buf.len();
    let put32 = |buf: &mut Vec<u8>, v: u32| buf.extend_from_slice(&v.to_ne_bytes());
    let opt = |buf: &mut Vec<u8>, code: u16, len: usize| {
        buf.extend_from_slice(&code.to_ne_bytes());
        buf.extend_from_slice(&(len as u16).to_ne_bytes());
    };
    let pad = |buf: &mut Vec<u8>| buf.resize(buf.len().next_multiple_of(4), 0);
    // Before 1970 only with a broken clock; 0 is as good as any other lie there.
    let ns = pkt.ts.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    put32(buf, EPB_TYPE);
    put32(buf, 0); // total length, filled in below
    put32(buf, interface_id);
    put32(buf, (ns >> 32) as u32);
    put32(buf, ns as u32);
    put32(buf, pkt.data.len() as u32);
    put32(buf, pkt.wire_len.max(pkt.data.len() as u32));
    buf.extend_from_slice(pkt.data);
    pad(buf);

    let flags = match pkt.iface.direction() {
        Some(Direction::In) => EPB_FLAG_INBOUND,
        Some(Direction::Out) => EPB_FLAG_OUTBOUND,
        None => 0,
    };
    opt(buf, EPB_FLAGS, 4);
    put32(buf, flags);
    if let Some(code) = pkt.verdict {
        if let Some(vtype) = verdict_type(pkt.iface.hook) {
            // The verdict data is the program's return code as a host-order u64
            // (sign-extended: TC_ACT_UNSPEC is -1).
            opt(buf, EPB_VERDICT, 9);
            buf.push(vtype);
            buf.extend_from_slice(&i64::from(code).to_ne_bytes());
            pad(buf);
        }
        let hook = pkt.iface.hook.map_or("unknown hook", Hook::name);
        let at = buf.len();
        opt(buf, OPT_COMMENT, 0);
        let _ = match verdict_label(pkt.iface.hook, code) {
            Some(name) => write!(buf, "{hook} {}: {name}", pkt.iface.point.name()),
            None => write!(buf, "{hook} {}: {code}", pkt.iface.point.name()),
        };
        if let Some(audit) = pkt.audit_label() {
            let _ = write!(buf, ", {audit}");
        }
        let len = (buf.len() - at - 4) as u16;
        buf[at + 2..at + 4].copy_from_slice(&len.to_ne_bytes());
        pad(buf);
    }
    if let Some(text) = comment {
        let text = &text.as_bytes()[..text.len().min(u16::MAX as usize)];
        opt(buf, OPT_COMMENT, text.len());
        buf.extend_from_slice(text);
        pad(buf);
    }
    opt(buf, OPT_ENDOFOPT, 0);
    let total = (buf.len() - start + 4) as u32;
    put32(buf, total);
    buf[start + 4..start + 8].copy_from_slice(&total.to_ne_bytes());
}

/// epb_verdict's type byte for the hook, None where the spec has no type (socket filters).
fn verdict_type(hook: Option<Hook>) -> Option<u8> {
    match hook? {
        Hook::Xdp => Some(VERDICT_TYPE_EBPF_XDP),
        Hook::TcIngress | Hook::TcEgress => Some(VERDICT_TYPE_EBPF_TC),
        Hook::Socket => None,
    }
}

/// "Linux 6.6.0-1-amd64" from uname(2), as tcpdump and dumpcap record shb_os.
fn os_description() -> Option<String> {
    // SAFETY: utsname is plain old data; uname fills it with NUL-terminated strings.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut uts) } != 0 {
        return None;
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Some(format!("{} {}", field(&uts.sysname), field(&uts.release)))
}

fn to_io(err: PcapNgWriteError) -> io::Error {
    match err {
        PcapNgWriteError::Io(e) => e,
        other => io::Error::other(other),
    }
}
