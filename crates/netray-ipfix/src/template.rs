//! The two templates netray exports (RFC 7011 section 3.4.1): one for IPv4
//! flows (ID 256), one for IPv6 flows (ID 257), with IANA information
//! elements only (no enterprise numbers), so every collector decodes them.
//!
//! Fixed-length elements come first and the one variable-length element
//! (interfaceName) last. docs/ipfix.md lists each element and why.

/// An information element of a template: its IANA ID and encoded length
/// (`VARLEN` for variable length, RFC 7011 section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub id: u16,
    pub len: u16,
    pub name: &'static str,
}

pub const VARLEN: u16 = 0xFFFF;

/// Set ID of a Template Set (RFC 7011 section 3.3.2).
pub const TEMPLATE_SET_ID: u16 = 2;
pub const TEMPLATE_V4: u16 = 256;
pub const TEMPLATE_V6: u16 = 257;

const fn f(id: u16, len: u16, name: &'static str) -> Field {
    Field { id, len, name }
}

/// The elements both templates share, after the addresses.
const COMMON: [Field; 13] = [
    f(7, 2, "sourceTransportPort"),
    f(11, 2, "destinationTransportPort"),
    f(4, 1, "protocolIdentifier"),
    f(61, 1, "flowDirection"),
    f(10, 4, "ingressInterface"),
    f(14, 4, "egressInterface"),
    f(2, 8, "packetDeltaCount"),
    f(1, 8, "octetDeltaCount"),
    f(152, 8, "flowStartMilliseconds"),
    f(153, 8, "flowEndMilliseconds"),
    f(89, 1, "forwardingStatus"),
    // icmpTypeCodeIPv4 (32) or icmpTypeCodeIPv6 (139): placed by `fields`.
    f(0, 2, "icmpTypeCode"),
    f(82, VARLEN, "interfaceName"),
];

/// The fields of the template for IPv4 (`v6 = false`) or IPv6 flows, in
/// record order.
pub fn fields(v6: bool) -> Vec<Field> {
    let mut out = if v6 {
        vec![f(27, 16, "sourceIPv6Address"), f(28, 16, "destinationIPv6Address")]
    } else {
        vec![f(8, 4, "sourceIPv4Address"), f(12, 4, "destinationIPv4Address")]
    };
    out.extend(COMMON.iter().map(|c| match c.name {
        "icmpTypeCode" if v6 => f(139, 2, "icmpTypeCodeIPv6"),
        "icmpTypeCode" => f(32, 2, "icmpTypeCodeIPv4"),
        _ => *c,
    }));
    out
}

/// A Template Set holding both templates: set header, then per template its
/// record header (ID, field count) and field specifiers (ID, length).
pub fn template_set() -> Vec<u8> {
    let mut b = Vec::with_capacity(128);
    b.extend_from_slice(&TEMPLATE_SET_ID.to_be_bytes());
    b.extend_from_slice(&0u16.to_be_bytes()); // length, below
    for (id, v6) in [(TEMPLATE_V4, false), (TEMPLATE_V6, true)] {
        let fs = fields(v6);
        b.extend_from_slice(&id.to_be_bytes());
        b.extend_from_slice(&(fs.len() as u16).to_be_bytes());
        for fl in fs {
            b.extend_from_slice(&fl.id.to_be_bytes());
            b.extend_from_slice(&fl.len.to_be_bytes());
        }
    }
    let len = b.len() as u16;
    b[2..4].copy_from_slice(&len.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_set_layout_is_rfc_7011() {
        let s = template_set();
        // Set header: ID 2, length of the whole set.
        assert_eq!(&s[0..2], &[0, 2]);
        assert_eq!(u16::from_be_bytes([s[2], s[3]]) as usize, s.len());
        // First template record: ID 256, 15 fields, then sourceIPv4Address/4.
        assert_eq!(&s[4..8], &[1, 0, 0, 15]);
        assert_eq!(&s[8..12], &[0, 8, 0, 4]);
        // 4 + (4 + 15 * 4) per template.
        assert_eq!(s.len(), 4 + 2 * (4 + 15 * 4));
        // Second template: ID 257, starting with sourceIPv6Address/16.
        let t2 = 4 + 4 + 15 * 4;
        assert_eq!(&s[t2..t2 + 8], &[1, 1, 0, 15, 0, 27, 0, 16]);
        // interfaceName is last and variable length.
        assert_eq!(&s[s.len() - 4..], &[0, 82, 0xFF, 0xFF]);
        assert!(fields(true).iter().any(|f| f.id == 139));
        assert!(fields(false).iter().any(|f| f.id == 32));
    }
}
