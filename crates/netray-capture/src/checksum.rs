//! The transport checksums `tcpdump -v` checks (TCP, UDP and ICMP), computed over what was
//! captured: the RFC 1071 ones' complement sum, with the IPv4 or IPv6 pseudo-header for TCP
//! and UDP. Written here rather than through etherparse, whose checksum functions want whole
//! parsed headers that a decoder reading possibly short captures does not build.

use std::net::IpAddr;

/// The checksum `segment` should carry at byte `field` (which is counted as zero), for
/// protocol `proto` between `src` and `dst` (TCP, UDP; ICMPv4 has no pseudo-header: [`plain`]).
pub fn with_pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8], field: usize) -> u16 {
    let mut sum = 0u64;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            sum += add_words(&s.octets()) + add_words(&d.octets());
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(a) => a.octets(),
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            };
            sum += add_words(&v6(s)) + add_words(&v6(d));
        }
    }
    sum += u64::from(proto) + segment.len() as u64;
    finish(sum + add_words_skipping(segment, field))
}

/// The checksum of `data` with the 16-bit field at `field` counted as zero (ICMP's).
pub fn plain(data: &[u8], field: usize) -> u16 {
    finish(add_words_skipping(data, field))
}

fn add_words_skipping(data: &[u8], field: usize) -> u64 {
    let mut sum = 0u64;
    for (i, pair) in data.chunks(2).enumerate() {
        if i * 2 == field {
            continue;
        }
        sum += u64::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
    }
    sum
}

fn add_words(data: &[u8]) -> u64 {
    add_words_skipping(data, usize::MAX)
}

fn finish(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
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
