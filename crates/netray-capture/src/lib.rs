//! `netray dump`: whole packets captured in the kernel at XDP and TC, filtered there by
//! pcap-filter expressions, and written as pcapng (or printed one line per packet).

pub mod packet;

pub use packet::{CaptureIf, Packet, Point};
pub mod line;
pub mod hexdump;
pub mod checksum;
pub mod rotation;
pub mod offline;
pub mod pcapng;
pub use pcapng::{EpbBatch, InterfaceStatistics, PcapngWriter};
pub mod front;
pub mod recorder;
pub mod xdp_front;
pub mod tc_front;
pub mod trace_front;
pub mod reader;
pub mod batch_writer;
pub mod direct_io;
pub use direct_io::DirectFile;
pub mod session;
pub use session::{Capture, CaptureSpec, ForeignXdp, PointStats, StatsReader};
pub mod output;
pub use output::Output;
pub mod live;
pub use live::{LiveCapture, OnPacket, Stopped};
