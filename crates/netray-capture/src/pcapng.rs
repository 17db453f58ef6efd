//! pcapng output: one Section Header Block, an Interface Description Block per
//! (interface, hook, point) the first time it is seen, and an Enhanced Packet Block per packet.
//!
//! Block encoding is pcap-file's; this module only decides what goes into the blocks. Each
//! block is encoded into a scratch buffer and handed to the output with one `write_all`, so a
//! reader on a pipe (`netray dump -w - | tcpdump -r -`) never sees half a block, and nothing
//! is held back: what `write` returned for is in the output once the caller flushes it.

use std::borrow::Cow;
use std::io::{self, Write};
use std::time::{Duration, UNIX_EPOCH};

use netray_core::Hook;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption, InterfaceTsResolution,
};
use pcap_file::pcapng::blocks::opt_common::{CommonOption, UnknownOption};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::{PcapNgWriteError, PcapNgWriter};
use pcap_file::{DataLink, Endianness};

use crate::packet::{CaptureIf, Direction, Packet};

/// epb_verdict (pcapng spec, option code 7): verdict type byte, then the verdict data.
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
}

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
        enc.get_mut().clear();
        Ok(Self { out, enc, ifaces: Vec::new(), packets: 0 })
    }

    /// Writes one packet, preceded by its interface's description if this is the first
    /// packet of that capture interface.
    pub fn write(&mut self, pkt: &Packet) -> io::Result<()> {
        let interface_id = match self.interface_id(pkt.iface) {
            Some(id) => id,
            None => self.describe(pkt.iface)?,
        };

        // Before 1970 only with a broken clock; 0 is as good as any other lie there.
        let since_epoch = pkt.ts.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let epb = EnhancedPacketBlock {
            interface_id,
            timestamp: since_epoch,
            original_len: pkt.wire_len,
            data: Cow::Borrowed(pkt.data),
            options: packet_options(pkt),
        };
        self.enc.write_pcapng_block(epb).map_err(to_io)?;
        self.emit()?;
        self.packets += 1;
        Ok(())
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
        self.out.flush()
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
        self.emit()?;
        self.ifaces.push((iface.clone(), id));
        Ok(id)
    }

    /// Hands the encoded block to the output in one piece.
    fn emit(&mut self) -> io::Result<()> {
        let buf = self.enc.get_mut();
        let res = self.out.write_all(buf);
        buf.clear();
        res
    }
}

/// epb_flags with the direction, and at exit points the verdict as epb_verdict plus a
/// comment in words (tools that do not decode epb_verdict still show the comment).
fn packet_options(pkt: &Packet) -> Vec<EnhancedPacketOption<'static>> {
    let flags = match pkt.iface.direction() {
        Some(Direction::In) => EPB_FLAG_INBOUND,
        Some(Direction::Out) => EPB_FLAG_OUTBOUND,
        None => 0,
    };
    let mut options = vec![EnhancedPacketOption::Flags(flags)];
    if let (Some(code), Some(name)) = (pkt.verdict, pkt.verdict_name()) {
        if let Some(vtype) = verdict_type(pkt.iface.hook) {
            // The verdict data is the program's return code as a host-order u64
            // (sign-extended: TC_ACT_UNSPEC is -1).
            let mut value = vec![vtype];
            value.extend_from_slice(&i64::from(code).to_ne_bytes());
            options.push(EnhancedPacketOption::Common(CommonOption::Unknown(UnknownOption {
                code: EPB_VERDICT,
                value: Cow::Owned(value),
            })));
        }
        let hook = pkt.iface.hook.map_or("unknown hook", Hook::name);
        options.push(EnhancedPacketOption::Common(CommonOption::Comment(Cow::Owned(format!(
            "{hook} {}: {name}",
            pkt.iface.point.name()
        )))));
    }
    options
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
