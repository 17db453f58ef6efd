//! The packet bytes after a text line, as tcpdump prints them for `-x`, `-X` and `-A`
//! (print-ascii.c): the same offsets, grouping, padding and printable set, so that
//! `netray dump -r F -x` and `tcpdump -r F -x` print identical hex lines.

use std::fmt::Write as _;

/// What follows each line: nothing, hex (`-x`), hex and ASCII (`-X`) or ASCII (`-A`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Payload {
    #[default]
    None,
    Hex,
    HexAscii,
    Ascii,
}

/// Which bytes and how: `with_link` (doubled flag, `-xx`/`-XX`/`-AA`) starts at the Ethernet
/// header instead of after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PayloadDump {
    pub payload: Payload,
    pub with_link: bool,
}

const BYTES_PER_LINE: usize = 16;

impl PayloadDump {
    /// The dump of `frame` whose link-layer header is `link_len` bytes, or "" when there is
    /// nothing to print (tcpdump prints nothing when the frame ends with its link header).
    pub fn render(&self, frame: &[u8], link_len: usize) -> String {
        let bytes = if self.with_link {
            frame
        } else {
            match frame.get(link_len..) {
                Some(rest) if !rest.is_empty() => rest,
                _ => return String::new(),
            }
        };
        match self.payload {
            Payload::None => String::new(),
            Payload::Hex => hex(bytes),
            Payload::HexAscii => hex_and_ascii(bytes),
            Payload::Ascii => ascii(bytes),
        }
    }
}

/// tcpdump's ND_ASCII_ISGRAPH: printable and not a space.
fn is_graph(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
}

/// `-x`: "\n\t0x0000:  4500 0054 ..." with 8 groups of two bytes a line.
fn hex(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (n, line) in bytes.chunks(BYTES_PER_LINE).enumerate() {
        let _ = write!(out, "\n\t0x{:04x}: ", n * BYTES_PER_LINE);
        for pair in line.chunks(2) {
            out.push(' ');
            for b in pair {
                let _ = write!(out, "{b:02x}");
            }
        }
    }
    out
}

/// `-X`: the hex groups padded to 40 columns, two spaces, then the bytes as ASCII.
fn hex_and_ascii(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (n, line) in bytes.chunks(BYTES_PER_LINE).enumerate() {
        let mut hex = String::with_capacity(40);
        for pair in line.chunks(2) {
            hex.push(' ');
            for b in pair {
                let _ = write!(hex, "{b:02x}");
            }
        }
        let text: String = line.iter().map(|&b| if is_graph(b) { b as char } else { '.' }).collect();
        let _ = write!(out, "\n\t0x{:04x}: {hex:<40}  {text}", n * BYTES_PER_LINE);
    }
    out
}

/// `-A`: the bytes as text on a line of their own; tabs, spaces and newlines kept,
/// anything else unprintable as '.'. A CR is a '.' only with two or more bytes after it
/// and no LF next, as tcpdump's ascii_print has it (so a CR among the last two bytes
/// is dropped too).
fn ascii(bytes: &[u8]) -> String {
    let mut out = String::from("\n");
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\r' if bytes.len() - i - 1 < 2 || bytes[i + 1] == b'\n' => {}
            b'\t' | b' ' | b'\n' => out.push(b as char),
            b if is_graph(b) => out.push(b as char),
            _ => out.push('.'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_lengths_end_with_a_single_byte_group() {
        let dump = PayloadDump { payload: Payload::Hex, with_link: true };
        assert_eq!(dump.render(&[0x45, 0, 0x54], 0), "\n\t0x0000:  4500 54");
        let dump = PayloadDump { payload: Payload::HexAscii, with_link: true };
        assert_eq!(dump.render(b"AB C", 0), format!("\n\t0x0000: {:<40}  AB.C", " 4142 2043"));
    }

    #[test]
    fn a_cr_prints_as_tcpdump_prints_it() {
        let dump = PayloadDump { payload: Payload::Ascii, with_link: false };
        // Mid-line: '.'; before a LF, or among the last two bytes: nothing.
        assert_eq!(dump.render(b"a\rbc", 0), "\na.bc");
        assert_eq!(dump.render(b"a\r\nbc", 0), "\na\nbc");
        assert_eq!(dump.render(b"ab\rc", 0), "\nabc");
        assert_eq!(dump.render(b"abc\r", 0), "\nabc");
    }

    #[test]
    fn a_frame_that_is_only_its_link_header_prints_nothing() {
        let dump = PayloadDump { payload: Payload::Ascii, with_link: false };
        assert_eq!(dump.render(&[0; 14], 14), "");
    }
}
