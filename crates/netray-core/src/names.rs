//! Names of protocol numbers, shared by every view (monitor lines, top,
//! metrics), so the same packet is called the same everywhere.

/// An IP protocol number's usual name; unknown ones as `ip-proto-N`.
pub fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        47 => "gre".into(),
        50 => "esp".into(),
        51 => "ah".into(),
        58 => "icmpv6".into(),
        59 => "ipv6-nonxt".into(),
        132 => "sctp".into(),
        136 => "udplite".into(),
        n => format!("ip-proto-{n}"),
    }
}
