//! ICMP echo packets for the traffic generator's raw sockets.
//!
//! Raw sockets rather than ICMP datagram ("ping") sockets because those need
//! `net.ipv4.ping_group_range`, which is off by default, while netray runs as
//! root anyway. Replies are matched by identifier plus the tag the generator
//! puts at the start of the payload (see `traffic.rs`).

pub(crate) const ECHO_REQUEST_V4: u8 = 8;
pub(crate) const ECHO_REPLY_V4: u8 = 0;
pub(crate) const ECHO_REQUEST_V6: u8 = 128;
pub(crate) const ECHO_REPLY_V6: u8 = 129;
const HEADER_LEN: usize = 8;

/// An echo request. The checksum is filled in for ICMPv4; for ICMPv6 the
/// kernel computes it (it covers a pseudo-header only the kernel knows).
pub(crate) fn echo_request(v6: bool, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut pkt = Vec::with_capacity(HEADER_LEN + payload.len());
    pkt.push(if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 });
    pkt.push(0);
    pkt.extend_from_slice(&[0, 0]);
    pkt.extend_from_slice(&id.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(payload);
    if !v6 {
        let sum = checksum(&pkt);
        pkt[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    pkt
}

/// The payload of an echo reply with identifier `id`, or `None` for anything
/// else. `data` is what a raw socket returns: with the IPv4 header for ICMPv4,
/// without any IP header for ICMPv6.
pub(crate) fn echo_reply_payload(v6: bool, id: u16, data: &[u8]) -> Option<&[u8]> {
    let icmp = if v6 {
        data
    } else {
        let ihl = usize::from(*data.first()? & 0x0f) * 4;
        data.get(ihl..)?
    };
    let expected = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
    if icmp.len() < HEADER_LEN
        || icmp[0] != expected
        || icmp[1] != 0
        || icmp[4..6] != id.to_be_bytes()
    {
        return None;
    }
    Some(&icmp[HEADER_LEN..])
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_request_checksums_to_zero() {
        let pkt = echo_request(false, 0x1234, 7, b"hello, odd");
        assert_eq!(checksum(&pkt), 0);
        assert_eq!(&pkt[4..8], &[0x12, 0x34, 0, 7]);
    }

    #[test]
    fn parses_replies() {
        let mut reply = echo_request(true, 9, 1, b"abc");
        reply[0] = ECHO_REPLY_V6;
        assert_eq!(echo_reply_payload(true, 9, &reply), Some(&b"abc"[..]));
        assert_eq!(echo_reply_payload(true, 8, &reply), None);
        let mut v4 = vec![0x45u8; 20];
        let mut icmp = echo_request(false, 9, 1, b"xyz");
        icmp[0] = ECHO_REPLY_V4;
        v4.extend_from_slice(&icmp);
        assert_eq!(echo_reply_payload(false, 9, &v4), Some(&b"xyz"[..]));
        assert_eq!(echo_reply_payload(false, 9, &v4[..22]), None);
        assert_eq!(echo_reply_payload(false, 9, &[]), None);
    }
}
