//! IPFIX messages (RFC 7011 section 3): a 16-byte header, then sets; data
//! records of one template share a set, and a message is cut before it would
//! exceed the transport's size limit.
//!
//! Encoded by hand rather than with a crate: the IPFIX writers on crates.io
//! either tie export to their own flow model (flowscope) or build each record
//! from a dynamic list of values (ipfixrw); netray's two fixed templates are
//! a few dozen lines of big-endian writes, checked below against RFC 7011's
//! byte layouts and by tshark and nfacctd in the end-to-end tests.

use std::net::IpAddr;

use netray_flows::Direction;

use crate::{
    record::Record,
    template::{self, TEMPLATE_V4, TEMPLATE_V6},
};

pub const VERSION: u16 = 10;
pub const HEADER_LEN: usize = 16;
/// A record's largest size: IPv6 fixed part plus a 255-byte name.
const MAX_RECORD: usize = 2 * 16 + 4 + 1 + 1 + 8 + 4 * 8 + 1 + 2 + 3 + 255;

/// Encodes records into messages for one observation domain, keeping the
/// sequence number: the count of data records sent before each message.
#[derive(Debug)]
pub struct Encoder {
    domain: u32,
    sequence: u32,
    max_len: usize,
}

impl Encoder {
    /// `max_len`: the largest message (e.g. 1400 bytes for UDP, so that a
    /// message is never fragmented on a 1500-byte path).
    pub fn new(domain: u32, max_len: usize) -> Encoder {
        Encoder { domain, sequence: 0, max_len: max_len.clamp(HEADER_LEN + 264 + MAX_RECORD, 65535) }
    }

    /// Data records sent so far (the next message's sequence number).
    pub fn sequence(&self) -> u32 {
        self.sequence
    }

    /// A message holding only the template set.
    pub fn template_message(&self, export_secs: u32) -> Vec<u8> {
        let mut m = self.header(export_secs);
        m.extend_from_slice(&template::template_set());
        finish(m)
    }

    /// The records as messages, the first one starting with the template set
    /// when `with_template`. Each record is in exactly one message; the
    /// sequence number advances by the records encoded.
    pub fn messages(&mut self, records: &[Record], export_secs: u32, with_template: bool) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut msg = self.header(export_secs);
        if with_template {
            msg.extend_from_slice(&template::template_set());
        }
        let mut in_msg = 0u32;
        let mut set_start: Option<(usize, u16)> = None;
        for r in records {
            let tid = if r.is_v6() { TEMPLATE_V6 } else { TEMPLATE_V4 };
            if msg.len() + 4 + MAX_RECORD > self.max_len && in_msg > 0 {
                close_set(&mut msg, set_start.take());
                out.push(finish(msg));
                self.sequence = self.sequence.wrapping_add(in_msg);
                in_msg = 0;
                msg = self.header(export_secs);
            }
            if set_start.is_none_or(|(_, t)| t != tid) {
                close_set(&mut msg, set_start.take());
                set_start = Some((msg.len(), tid));
                msg.extend_from_slice(&tid.to_be_bytes());
                msg.extend_from_slice(&[0, 0]);
            }
            encode_record(&mut msg, r);
            in_msg += 1;
        }
        close_set(&mut msg, set_start);
        if in_msg > 0 || with_template {
            out.push(finish(msg));
            self.sequence = self.sequence.wrapping_add(in_msg);
        }
        out
    }

    fn header(&self, export_secs: u32) -> Vec<u8> {
        let mut m = Vec::with_capacity(self.max_len);
        m.extend_from_slice(&VERSION.to_be_bytes());
        m.extend_from_slice(&[0, 0]); // length, set by `finish`
        m.extend_from_slice(&export_secs.to_be_bytes());
        m.extend_from_slice(&self.sequence.to_be_bytes());
        m.extend_from_slice(&self.domain.to_be_bytes());
        m
    }
}

fn close_set(msg: &mut [u8], set: Option<(usize, u16)>) {
    if let Some((start, _)) = set {
        let len = (msg.len() - start) as u16;
        msg[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
    }
}

fn finish(mut m: Vec<u8>) -> Vec<u8> {
    let len = m.len() as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    m
}

/// One data record, in the order of `template::fields`.
fn encode_record(b: &mut Vec<u8>, r: &Record) {
    for a in [r.src, r.dst] {
        match a {
            IpAddr::V4(v4) => b.extend_from_slice(&v4.octets()),
            IpAddr::V6(v6) => b.extend_from_slice(&v6.octets()),
        }
    }
    b.extend_from_slice(&r.sport.to_be_bytes());
    b.extend_from_slice(&r.dport.to_be_bytes());
    b.push(r.proto);
    let (dir, ingress, egress) = match r.direction {
        Direction::Ingress => (0u8, r.ifindex, 0u32),
        Direction::Egress => (1u8, 0u32, r.ifindex),
    };
    b.push(dir);
    b.extend_from_slice(&ingress.to_be_bytes());
    b.extend_from_slice(&egress.to_be_bytes());
    b.extend_from_slice(&r.packets.to_be_bytes());
    b.extend_from_slice(&r.bytes.to_be_bytes());
    b.extend_from_slice(&r.start_ms.to_be_bytes());
    b.extend_from_slice(&r.end_ms.to_be_bytes());
    b.push(r.forwarding.code());
    b.extend_from_slice(&r.icmp_type_code.to_be_bytes());
    // Variable length (RFC 7011 section 7): one length byte below 255.
    let name = &r.ifname.as_bytes()[..r.ifname.len().min(254)];
    b.push(name.len() as u8);
    b.extend_from_slice(name);
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::record::Forwarding;

    fn rec(src: IpAddr, dst: IpAddr) -> Record {
        Record {
            src,
            dst,
            sport: 40000,
            dport: 53,
            proto: 17,
            icmp_type_code: 0,
            direction: Direction::Ingress,
            ifindex: 7,
            ifname: "veth0".into(),
            packets: 3,
            bytes: 300,
            start_ms: 1_700_000_000_000,
            end_ms: 1_700_000_000_500,
            forwarding: Forwarding::Dropped,
        }
    }

    fn v4() -> Record {
        rec(Ipv4Addr::new(198, 18, 0, 2).into(), Ipv4Addr::new(198, 18, 0, 1).into())
    }

    #[test]
    fn header_and_one_ipv4_record_byte_for_byte() {
        let mut e = Encoder::new(42, 1400);
        let m = e.messages(&[v4()], 0x6000_0000, false);
        assert_eq!(m.len(), 1);
        let m = &m[0];
        // Header: version 10, length, export time, sequence 0, domain 42.
        assert_eq!(&m[0..2], &[0, 10]);
        assert_eq!(u16::from_be_bytes([m[2], m[3]]) as usize, m.len());
        assert_eq!(&m[4..8], &[0x60, 0, 0, 0]);
        assert_eq!(&m[8..12], &[0, 0, 0, 0]);
        assert_eq!(&m[12..16], &[0, 0, 0, 42]);
        // Data set of template 256 holding one record.
        let rec_len = 4 + 4 + 2 + 2 + 1 + 1 + 4 + 4 + 8 + 8 + 8 + 8 + 1 + 2 + 1 + 5;
        assert_eq!(&m[16..18], &[1, 0]);
        assert_eq!(u16::from_be_bytes([m[18], m[19]]) as usize, 4 + rec_len);
        let r = &m[20..];
        assert_eq!(&r[0..8], &[198, 18, 0, 2, 198, 18, 0, 1]);
        assert_eq!(&r[8..12], &[0x9c, 0x40, 0, 53]);
        assert_eq!(&r[12..14], &[17, 0]); // UDP, ingress
        assert_eq!(&r[14..22], &[0, 0, 0, 7, 0, 0, 0, 0]);
        assert_eq!(&r[22..30], &3u64.to_be_bytes());
        assert_eq!(&r[30..38], &300u64.to_be_bytes());
        assert_eq!(&r[38..46], &1_700_000_000_000u64.to_be_bytes());
        assert_eq!(&r[46..54], &1_700_000_000_500u64.to_be_bytes());
        assert_eq!(r[54], 0x81);
        assert_eq!(&r[55..57], &[0, 0]);
        assert_eq!(&r[57..], b"\x05veth0");
        // The next message's sequence number counts this record.
        assert_eq!(e.sequence(), 1);
    }

    #[test]
    fn families_get_their_own_sets_and_messages_are_cut_at_the_limit() {
        let mut e = Encoder::new(1, 1400);
        let v6 = rec(Ipv6Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into());
        let recs: Vec<Record> = (0..100).map(|i| if i % 2 == 0 { v4() } else { v6.clone() }).collect();
        let msgs = e.messages(&recs, 1, true);
        assert!(msgs.len() > 1);
        let mut seq = 0u32;
        let mut total = 0;
        for (i, m) in msgs.iter().enumerate() {
            assert!(m.len() <= 1400);
            assert_eq!(u32::from_be_bytes(m[8..12].try_into().unwrap()), seq);
            // Walk the sets: their lengths tile the message exactly.
            let mut off = HEADER_LEN;
            let mut n = 0;
            while off < m.len() {
                let id = u16::from_be_bytes([m[off], m[off + 1]]);
                let len = u16::from_be_bytes([m[off + 2], m[off + 3]]) as usize;
                assert!(len >= 4);
                if id == 2 {
                    assert_eq!(i, 0, "the template set only in the first message");
                } else {
                    let fixed = if id == TEMPLATE_V4 { 56 } else { 80 };
                    n += (len - 4) / (fixed + 6);
                }
                off += len;
            }
            assert_eq!(off, m.len());
            seq += n as u32;
            total += n;
        }
        assert_eq!(total, 100);
        assert_eq!(e.sequence(), 100);
    }

    #[test]
    fn a_template_message_does_not_advance_the_sequence() {
        let e = Encoder::new(1, 1400);
        let m = e.template_message(5);
        assert_eq!(u16::from_be_bytes([m[2], m[3]]) as usize, m.len());
        assert_eq!(&m[16..18], &[0, 2]);
        assert_eq!(e.sequence(), 0);
    }
}
