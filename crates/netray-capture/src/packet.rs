//! One captured packet, as every output (pcapng, text lines, JSON) sees it.

use std::time::SystemTime;

use netray_core::Hook;
use serde::Serialize;

/// Where on the hook the packet was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Point {
    /// Before any program on the hook decided: what arrived (or left).
    Entry,
    /// After netray's program decided; the record carries the verdict.
    Exit,
}

impl Point {
    pub fn name(self) -> &'static str {
        match self {
            Point::Entry => "entry",
            Point::Exit => "exit",
        }
    }
}

/// One capture interface as pcapng sees it: a (network interface, hook, point)
/// triple gets its own Interface Description Block.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct CaptureIf {
    pub ifindex: u32,
    /// Interface name ("veth0"); for `-r` the name recorded in the input file, if any.
    pub ifname: String,
    /// None for packets read from a file (`-r`): no hook is known.
    pub hook: Option<Hook>,
    pub point: Point,
    /// Largest number of bytes kept of each packet.
    pub snaplen: u32,
}

/// A packet taken by netray (or read back from a file).
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    pub iface: &'a CaptureIf,
    /// Wall-clock time the kernel saw it (nanosecond resolution).
    pub ts: SystemTime,
    /// Length on the wire (all fragments of a multi-buffer frame).
    pub wire_len: u32,
    /// The bytes kept: `data.len() <= min(wire_len, snaplen)`.
    pub data: &'a [u8],
    /// At exit points: the program's return code (XDP_DROP = 1, XDP_PASS = 2, TC_ACT_SHOT = 2, ...).
    pub verdict: Option<i32>,
    /// At exit points: the audit rule that matched the packet (it passed, counted as
    /// that rule's would-drop hit).
    pub audit_rule: Option<u32>,
}

/// Which way a packet was going when a hook saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

impl CaptureIf {
    /// The direction every packet on this capture interface has, when the hook implies one:
    /// XDP and TC ingress only see received packets, TC egress only sent ones; the socket
    /// hook sees both and files (`hook` None) say nothing.
    pub fn direction(&self) -> Option<Direction> {
        match self.hook? {
            Hook::Xdp | Hook::TcIngress => Some(Direction::In),
            Hook::TcEgress => Some(Direction::Out),
            Hook::Socket => None,
        }
    }
}

impl Packet<'_> {
    /// The verdict in words ("XDP_DROP", "TC_ACT_SHOT"), None at entry points.
    pub fn verdict_name(&self) -> Option<String> {
        self.verdict.map(|code| verdict_name(self.iface.hook, code))
    }

    /// `AUDIT rule N` when an audit rule matched the packet.
    pub fn audit_label(&self) -> Option<String> {
        self.audit_rule.map(|id| format!("AUDIT rule {id}"))
    }
}

/// Names a program's return code the way the kernel headers do; numbers nobody named
/// (or codes of hooks netray does not know) are printed as numbers rather than guessed.
pub fn verdict_name(hook: Option<Hook>, code: i32) -> String {
    verdict_label(hook, code).map_or_else(|| code.to_string(), str::to_owned)
}

/// The kernel headers' name of a program's return code, if it has one.
pub fn verdict_label(hook: Option<Hook>, code: i32) -> Option<&'static str> {
    match hook {
        Some(Hook::Xdp) => match code {
            0 => Some("XDP_ABORTED"),
            1 => Some("XDP_DROP"),
            2 => Some("XDP_PASS"),
            3 => Some("XDP_TX"),
            4 => Some("XDP_REDIRECT"),
            _ => None,
        },
        Some(Hook::TcIngress | Hook::TcEgress) => match code {
            -1 => Some("TC_ACT_UNSPEC/TCX_NEXT"),
            0 => Some("TC_ACT_OK"),
            2 => Some("TC_ACT_SHOT"),
            7 => Some("TC_ACT_REDIRECT"),
            _ => None,
        },
        // A socket filter returns how many bytes to keep, not a named verdict.
        Some(Hook::Socket) | None => None,
    }
}
