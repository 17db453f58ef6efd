//! Reading capture files for `netray dump -r FILE`: pcap (either byte order, micro- or
//! nanosecond timestamps) and pcapng, told apart by their magic number, from a file or stdin.
//!
//! Packets come out owned and in file order, with a [`CaptureIf`] per pcap file or per pcapng
//! Interface Description Block, so the same filters and outputs serve live and offline
//! packets. Everything that can be wrong with a file is an [`OfflineError`] naming the file.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pcap_file::pcap::{PcapReadError, PcapReader};
use pcap_file::pcapng::blocks::interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption};
use pcap_file::pcapng::{Block, PcapNgReadError, PcapNgReader};
use pcap_file::DataLink;

use crate::packet::{CaptureIf, Packet, Point};

/// pcap magic numbers as the first four bytes read in file order.
const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xa1, 0xb2, 0xc3, 0xd4], // big-endian, microseconds
    [0xd4, 0xc3, 0xb2, 0xa1], // little-endian, microseconds
    [0xa1, 0xb2, 0x3c, 0x4d], // big-endian, nanoseconds
    [0x4d, 0x3c, 0xb2, 0xa1], // little-endian, nanoseconds
];
/// pcapng's Section Header Block type, the same in both byte orders.
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// Why a capture file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("cannot open {}: {source}", .path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot read {}: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{} is not a pcap or pcapng file ({detail})", .path.display())]
    NotCapture { path: PathBuf, detail: String },
    #[error("{} is truncated: it ends in the middle of {what} (after {packets} packets)", .path.display())]
    Truncated { path: PathBuf, what: &'static str, packets: u64 },
    #[error("{} has link type {linktype}: netray filters Ethernet frames only (link type 1, EN10MB)", .path.display())]
    LinkType { path: PathBuf, linktype: String },
    #[error("{} is damaged after {packets} packets: {detail}", .path.display())]
    Malformed { path: PathBuf, packets: u64, detail: String },
}

/// One packet read from a file; [`OfflinePacket::as_packet`] gives the view outputs take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflinePacket {
    pub iface: CaptureIf,
    pub ts: SystemTime,
    pub wire_len: u32,
    pub data: Vec<u8>,
    /// Always None: files carry no netray verdict that we read back.
    pub verdict: Option<i32>,
}

impl OfflinePacket {
    pub fn as_packet(&self) -> Packet<'_> {
        Packet { iface: &self.iface, ts: self.ts, wire_len: self.wire_len, data: &self.data, verdict: self.verdict, audit_rule: None }
    }
}

type Input = Box<dyn Read>;

enum Format {
    Pcap { reader: PcapReader<Input>, iface: CaptureIf },
    PcapNg { reader: PcapNgReader<Input>, ifaces: Vec<CaptureIf> },
}

/// Packets of one capture file, in file order. Iteration stops after the first error.
pub struct OfflineReader {
    path: PathBuf,
    format: Format,
    packets: u64,
    failed: bool,
}

/// Opens a capture file; "-" reads standard input.
pub fn open(path: &Path) -> Result<OfflineReader, OfflineError> {
    let (shown, input): (PathBuf, Input) = if path == Path::new("-") {
        (PathBuf::from("standard input"), Box::new(io::stdin().lock()))
    } else {
        let file = File::open(path).map_err(|source| OfflineError::Open { path: path.to_owned(), source })?;
        (path.to_owned(), Box::new(file))
    };
    OfflineReader::new(shown, input)
}

impl OfflineReader {
    /// Reads a capture from any byte stream; `path` is how errors name it.
    pub fn new(path: PathBuf, mut input: Input) -> Result<Self, OfflineError> {
        let mut magic = Vec::with_capacity(4);
        (&mut input)
            .take(4)
            .read_to_end(&mut magic)
            .map_err(|source| OfflineError::Read { path: path.clone(), source })?;
        if magic.len() < 4 {
            let detail =
                if magic.is_empty() { "it is empty".to_owned() } else { format!("it has only {} bytes", magic.len()) };
            return Err(OfflineError::NotCapture { path, detail });
        }
        // Give the magic back to the parser, which wants to see the whole header.
        let input: Input = Box::new(io::Cursor::new(magic.clone()).chain(input));
        let format = if PCAP_MAGICS.iter().any(|m| m[..] == magic[..]) {
            let reader = PcapReader::new(input).map_err(|e| pcap_error(&path, 0, e))?;
            let header = reader.header();
            check_linktype(&path, header.datalink)?;
            let iface = offline_iface(0, None, header.snaplen);
            Format::Pcap { reader, iface }
        } else if magic == PCAPNG_MAGIC {
            let reader = PcapNgReader::new(input).map_err(|e| pcapng_error(&path, 0, e))?;
            Format::PcapNg { reader, ifaces: Vec::new() }
        } else {
            let detail = format!(
                "it starts with {:02x} {:02x} {:02x} {:02x}, not a pcap or pcapng magic number",
                magic[0], magic[1], magic[2], magic[3]
            );
            return Err(OfflineError::NotCapture { path, detail });
        };
        Ok(Self { path, format, packets: 0, failed: false })
    }

    fn next_packet(&mut self) -> Option<Result<OfflinePacket, OfflineError>> {
        let (path, packets) = (&self.path, self.packets);
        match &mut self.format {
            Format::Pcap { reader, iface } => {
                let pkt = match reader.next_packet()? {
                    Ok(p) => p,
                    Err(e) => return Some(Err(pcap_error(path, packets, e))),
                };
                Some(owned(path, packets, iface, pkt.timestamp(), pkt.orig_len(), pkt.data()))
            }
            Format::PcapNg { reader, ifaces } => loop {
                let block = match reader.next_block()? {
                    Ok((block, _state)) => block,
                    Err(e) => return Some(Err(pcapng_error(path, packets, e))),
                };
                // (interface id, timestamp, original length, data) of packet blocks.
                let (id, ts, wire_len, data) = match &block {
                    Block::SectionHeader(_) => {
                        // Interface ids start again in every section.
                        ifaces.clear();
                        continue;
                    }
                    Block::InterfaceDescription(idb) => {
                        if let Err(e) = check_linktype(path, idb.linktype) {
                            return Some(Err(e));
                        }
                        let index = u32::try_from(ifaces.len()).unwrap_or(u32::MAX);
                        ifaces.push(offline_iface(index, if_name(idb), idb.snaplen));
                        continue;
                    }
                    Block::EnhancedPacket(epb) => (epb.interface_id, epb.timestamp, epb.original_len, &epb.data),
                    Block::Packet(pb) => (u32::from(pb.interface_id), pb.timestamp, pb.original_len, &pb.data),
                    // A Simple Packet Block has no timestamp and belongs to the first interface.
                    Block::SimplePacket(spb) => (0, Duration::ZERO, spb.original_len, &spb.data),
                    _ => continue,
                };
                let Some(iface) = usize::try_from(id).ok().and_then(|i| ifaces.get(i)) else {
                    return Some(Err(OfflineError::Malformed {
                        path: path.clone(),
                        packets,
                        detail: format!("a packet names interface {id}, which was not described"),
                    }));
                };
                return Some(owned(path, packets, iface, ts, wire_len, data));
            },
        }
    }
}

impl Iterator for OfflineReader {
    type Item = Result<OfflinePacket, OfflineError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.next_packet();
        match &item {
            Some(Ok(_)) => self.packets += 1,
            // A parser that failed may not have advanced: asking again could loop forever.
            Some(Err(_)) => self.failed = true,
            None => {}
        }
        item
    }
}

fn owned(
    path: &Path,
    packets: u64,
    iface: &CaptureIf,
    since_epoch: Duration,
    wire_len: u32,
    data: &[u8],
) -> Result<OfflinePacket, OfflineError> {
    let ts = UNIX_EPOCH.checked_add(since_epoch).ok_or_else(|| OfflineError::Malformed {
        path: path.to_owned(),
        packets,
        detail: format!("timestamp {since_epoch:?} after the epoch is out of range"),
    })?;
    Ok(OfflinePacket { iface: iface.clone(), ts, wire_len, data: data.to_vec(), verdict: None })
}

fn offline_iface(index: u32, name: Option<String>, snaplen: u32) -> CaptureIf {
    CaptureIf {
        ifindex: index,
        ifname: name.unwrap_or_else(|| format!("if{index}")),
        hook: None,
        point: Point::Entry,
        snaplen,
    }
}

fn if_name(idb: &InterfaceDescriptionBlock) -> Option<String> {
    idb.options.iter().find_map(|o| match o {
        InterfaceDescriptionOption::IfName(name) => Some(name.to_string()),
        _ => None,
    })
}

fn check_linktype(path: &Path, linktype: DataLink) -> Result<(), OfflineError> {
    if linktype == DataLink::ETHERNET {
        return Ok(());
    }
    Err(OfflineError::LinkType { path: path.to_owned(), linktype: format!("{} ({linktype:?})", u32::from(linktype)) })
}

fn pcap_error(path: &Path, packets: u64, err: PcapReadError) -> OfflineError {
    match err {
        PcapReadError::Io(e) => io_error(path, packets, e, "a pcap record"),
        other => malformed(path, packets, &other),
    }
}

fn pcapng_error(path: &Path, packets: u64, err: PcapNgReadError) -> OfflineError {
    match err {
        PcapNgReadError::Io(e) => io_error(path, packets, e, "a pcapng block"),
        other => malformed(path, packets, &other),
    }
}

/// The parsers report running out of input as UnexpectedEof: that is a truncated file.
fn io_error(path: &Path, packets: u64, err: io::Error, what: &'static str) -> OfflineError {
    if err.kind() == io::ErrorKind::UnexpectedEof {
        OfflineError::Truncated { path: path.to_owned(), what, packets }
    } else {
        OfflineError::Read { path: path.to_owned(), source: err }
    }
}

/// pcap-file's errors say little at the top ("Invalid raw block format"); the reason is in
/// the source chain, so all of it goes into the message.
fn malformed(path: &Path, packets: u64, err: &dyn std::error::Error) -> OfflineError {
    let mut detail = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    OfflineError::Malformed { path: path.to_owned(), packets, detail }
}
