//! The transport checksums `tcpdump -v` checks (TCP, UDP and ICMP), computed over what was
//! captured with etherparse's ones' complement sum (which sums in host order: `to_be` turns
//! it into the value the header holds). etherparse's own per-header checksum functions want
//! whole parsed headers, which a decoder of possibly short captures lacks.

use std::net::IpAddr;

use etherparse::checksum::Sum16BitWords;

/// The checksum `segment` should carry in its 16-bit field at byte `field` (an even offset,
/// counted as zero), for protocol `proto` between `src` and `dst`: TCP and UDP, with the
/// IPv4 or IPv6 pseudo-header.
pub fn with_pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8], field: usize) -> u16 {
    let sum = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Sum16BitWords::new().add_4bytes(s.octets()).add_4bytes(d.octets()),
        (s, d) => Sum16BitWords::new().add_16bytes(v6_octets(s)).add_16bytes(v6_octets(d)),
    };
    let length = u32::try_from(segment.len()).unwrap_or(u32::MAX).to_be_bytes();
    skipping(sum.add_2bytes([0, proto]).add_4bytes(length), segment, field).ones_complement().to_be()
}

/// The checksum of `data` with its field at byte `field` counted as zero (ICMPv4's).
pub fn plain(data: &[u8], field: usize) -> u16 {
    skipping(Sum16BitWords::new(), data, field).ones_complement().to_be()
}

fn skipping(sum: Sum16BitWords, data: &[u8], field: usize) -> Sum16BitWords {
    let before = data.get(..field).unwrap_or(data);
    let after = data.get(field + 2..).unwrap_or_default();
    sum.add_slice(before).add_slice(after)
}

fn v6_octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_icmp_echo_request_sums_to_its_checksum() {
        // Type 8, code 0, checksum 0xf7fc, id 1, seq 2: the sum of the rest is 0x0803.
        let echo = [8, 0, 0xf7, 0xfc, 0, 1, 0, 2];
        assert_eq!(plain(&echo, 2), 0xf7fc);
    }
}
