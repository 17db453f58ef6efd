//! Hand-built frames for BPF_PROG_TEST_RUN tests.

use etherparse::PacketBuilder;

pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

/// Ethernet + IPv4 + UDP.
pub fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(SRC_MAC, DST_MAC).ipv4(src, dst, 64).udp(sport, dport);
    let mut v = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut v, payload).unwrap();
    v
}

/// Ethernet + IPv4 + TCP SYN.
pub fn tcp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(SRC_MAC, DST_MAC).ipv4(src, dst, 64).tcp(sport, dport, 1, 1024).syn();
    let mut v = Vec::with_capacity(b.size(0));
    b.write(&mut v, &[]).unwrap();
    v
}

/// Ethernet + IPv4 + ICMP echo request.
pub fn icmp4(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(SRC_MAC, DST_MAC).ipv4(src, dst, 64).icmpv4_echo_request(1, 1);
    let mut v = Vec::with_capacity(b.size(8));
    b.write(&mut v, &[0u8; 8]).unwrap();
    v
}

/// Ethernet + IPv6 + UDP.
pub fn udp6(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(SRC_MAC, DST_MAC).ipv6(src, dst, 64).udp(sport, dport);
    let mut v = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut v, payload).unwrap();
    v
}

/// Ethernet + IPv6 + ICMPv6 echo request.
pub fn icmp6(src: [u8; 16], dst: [u8; 16]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(SRC_MAC, DST_MAC).ipv6(src, dst, 64).icmpv6_echo_request(1, 1);
    let mut v = Vec::with_capacity(b.size(8));
    b.write(&mut v, &[0u8; 8]).unwrap();
    v
}

/// Inserts an 802.1Q (0x8100) or 802.1ad (0x88a8) tag after the MACs.
pub fn with_vlan(frame: &[u8], tpid: u16, vid: u16) -> Vec<u8> {
    let mut v = frame[..12].to_vec();
    v.extend_from_slice(&tpid.to_be_bytes());
    v.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    v.extend_from_slice(&frame[12..]);
    v
}

/// Recomputes the IPv4 header checksum of an untagged frame (after edits).
pub fn fix_ipv4_checksum(frame: &mut [u8]) {
    let ihl = (frame[14] & 0x0f) as usize * 4;
    frame[24] = 0;
    frame[25] = 0;
    let mut sum = 0u32;
    for c in frame[14..14 + ihl].chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let ck = !(sum as u16);
    frame[24..26].copy_from_slice(&ck.to_be_bytes());
}
