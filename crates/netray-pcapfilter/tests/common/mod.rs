//! Deterministic corpus of varied Ethernet frames for the equivalence test.
#![allow(dead_code)]

pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const BCAST: [u8; 6] = [0xff; 6];
pub const MCAST_V4: [u8; 6] = [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb];
pub const MCAST_V6: [u8; 6] = [0x33, 0x33, 0, 0, 0, 0x01];
pub const LLDP_MAC: [u8; 6] = [0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e];

const V4: [[u8; 4]; 6] = [
    [10, 0, 0, 1],
    [10, 0, 0, 2],
    [192, 168, 1, 5],
    [8, 8, 8, 8],
    [172, 16, 3, 4],
    [10, 1, 2, 3],
];
const PORTS: [u16; 10] = [80, 443, 53, 22, 8080, 1024, 6000, 12345, 1500, 20];

fn v6(last: u8, prefix: u16) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0..2].copy_from_slice(&prefix.to_be_bytes());
    if prefix == 0x2001 {
        a[2..4].copy_from_slice(&0x0db8u16.to_be_bytes());
    }
    a[15] = last;
    a
}

/// Tiny deterministic PRNG (xorshift64*), so the corpus is the same on every run.
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Clone, Copy, Debug)]
enum L2 {
    Plain,
    Vlan(u16),
    QinQ(u16, u16),
}

#[derive(Clone, Copy, Debug)]
enum L3 {
    V4,
    V4Options,
    V4FirstFrag,
    V4LaterFrag,
    V6,
    V6Ext,
    V6Frag,
}

#[derive(Clone, Copy, Debug)]
enum L4 {
    Tcp(u8),
    Udp,
    Icmp(u8),
    Http,
}

fn eth(dst: [u8; 6], src: [u8; 6], l2: L2, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    match l2 {
        L2::Plain => {}
        L2::Vlan(id) => {
            f.extend_from_slice(&0x8100u16.to_be_bytes());
            f.extend_from_slice(&id.to_be_bytes());
        }
        L2::QinQ(outer, inner) => {
            f.extend_from_slice(&0x88a8u16.to_be_bytes());
            f.extend_from_slice(&outer.to_be_bytes());
            f.extend_from_slice(&0x8100u16.to_be_bytes());
            f.extend_from_slice(&inner.to_be_bytes());
        }
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn tcp(sport: u16, dport: u16, flags: u8, payload: &[u8], with_opts: bool) -> Vec<u8> {
    let opts: &[u8] = if with_opts {
        &[2, 4, 0x05, 0xb4, 1, 1, 4, 2]
    } else {
        &[]
    };
    let doff = (20 + opts.len()) / 4;
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&0x1000_0000u32.to_be_bytes());
    t.extend_from_slice(&0u32.to_be_bytes());
    t.push((doff as u8) << 4);
    t.push(flags);
    t.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(opts);
    t.extend_from_slice(payload);
    t
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

fn icmp(ty: u8, code: u8, payload: &[u8]) -> Vec<u8> {
    let mut i = vec![ty, code, 0, 0, 0, 1, 0, 7];
    i.extend_from_slice(payload);
    i
}

#[allow(clippy::too_many_arguments)]
fn ipv4(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    tos: u8,
    ttl: u8,
    frag: u16,
    opts: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let ihl = (20 + opts.len()) / 4;
    let total = 20 + opts.len() + payload.len();
    let mut p = vec![0x40 | ihl as u8, tos];
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&0x1234u16.to_be_bytes());
    p.extend_from_slice(&frag.to_be_bytes());
    p.extend_from_slice(&[ttl, proto, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(opts);
    p.extend_from_slice(payload);
    p
}

/// `exts` = list of (header type, next header written by the previous one) pairs, each a
/// minimal 8-byte extension header.
fn ipv6(src: [u8; 16], dst: [u8; 16], exts: &[u8], proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    let chain: Vec<u8> = exts.iter().copied().chain(std::iter::once(proto)).collect();
    for (i, ext) in exts.iter().enumerate() {
        let next = chain[i + 1];
        if *ext == 44 {
            // fragment header: next, reserved, offset 0 + M flag, id
            body.extend_from_slice(&[next, 0, 0, 1, 0, 0, 0x12, 0x34]);
        } else {
            body.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
        }
    }
    body.extend_from_slice(payload);
    let first = chain[0];
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(body.len() as u16).to_be_bytes());
    p.push(first);
    p.push(64);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&body);
    p
}

fn arp(op: u16, sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4]) -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0x00, 6, 4];
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa);
    a.extend_from_slice(&tha);
    a.extend_from_slice(&tpa);
    a
}

fn lldp() -> Vec<u8> {
    // chassis id, port id, ttl, end
    let mut l = vec![0x02, 0x07, 0x04];
    l.extend_from_slice(&MAC_A);
    l.extend_from_slice(&[
        0x04, 0x03, 0x05, b'e', b'1', 0x06, 0x02, 0x00, 0x78, 0x00, 0x00,
    ]);
    eth(LLDP_MAC, MAC_A, L2::Plain, 0x88cc, &l)
}

fn l4_bytes(l4: L4, v6: bool, rng: &mut Rng, payload_len: usize) -> (u8, Vec<u8>) {
    let sport = PORTS[rng.below(PORTS.len())];
    let dport = PORTS[rng.below(PORTS.len())];
    let payload: Vec<u8> = (0..payload_len)
        .map(|i| (i as u8).wrapping_mul(7))
        .collect();
    match l4 {
        L4::Tcp(flags) => (6, tcp(sport, dport, flags, &payload, rng.below(2) == 0)),
        L4::Http => (
            6,
            tcp(40000, 80, 0x18, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false),
        ),
        L4::Udp => (17, udp(sport, dport, &payload)),
        L4::Icmp(ty) if v6 => (
            58,
            icmp(
                if ty == 8 {
                    128
                } else if ty == 0 {
                    129
                } else {
                    135
                },
                0,
                &payload,
            ),
        ),
        L4::Icmp(ty) => (1, icmp(ty, if ty == 3 { 3 } else { 0 }, &payload)),
    }
}

/// The corpus: >= 300 frames, all at least 14 bytes long and at most ~600 bytes.
pub fn corpus() -> Vec<Vec<u8>> {
    let mut rng = Rng::new(0x6e65_7472_6179);
    let mut frames = Vec::new();
    let l2s = [L2::Plain, L2::Vlan(10), L2::Vlan(20), L2::QinQ(100, 10)];
    let l3s = [
        L3::V4,
        L3::V4Options,
        L3::V4FirstFrag,
        L3::V4LaterFrag,
        L3::V6,
        L3::V6Ext,
        L3::V6Frag,
    ];
    let l4s = [
        L4::Tcp(0x02),
        L4::Tcp(0x12),
        L4::Tcp(0x10),
        L4::Tcp(0x11),
        L4::Tcp(0x04),
        L4::Udp,
        L4::Icmp(8),
        L4::Icmp(0),
        L4::Icmp(3),
        L4::Http,
    ];
    let tos = [0u8, 0, 0, 0x10, 0x28, 3];
    let ttls = [64u8, 1, 128, 255, 63];
    let macs = [
        (MAC_A, MAC_B),
        (MAC_B, MAC_A),
        (BCAST, MAC_A),
        (MCAST_V4, MAC_B),
        (MCAST_V6, MAC_A),
    ];

    for (i2, l2) in l2s.iter().enumerate() {
        for (i3, l3) in l3s.iter().enumerate() {
            for k in 0..7 {
                let l4 = l4s[(i2 * 7 + i3 * 3 + k * 5 + rng.below(3)) % l4s.len()];
                let is_v6 = matches!(l3, L3::V6 | L3::V6Ext | L3::V6Frag);
                let payload_len = [0usize, 6, 40, 200, 500][rng.below(5)];
                let (proto, l4b) = l4_bytes(l4, is_v6, &mut rng, payload_len);
                let (dst_mac, src_mac) = macs[rng.below(macs.len())];
                let (ethertype, l3b) = if is_v6 {
                    let src = v6(rng.below(4) as u8 + 1, [0xfe80, 0x2001][rng.below(2)]);
                    let dst = v6(
                        rng.below(4) as u8 + 1,
                        [0xfe80, 0x2001, 0xff02][rng.below(3)],
                    );
                    let exts: &[u8] = match l3 {
                        L3::V6Ext => &[0, 60],
                        L3::V6Frag => &[44],
                        _ => &[],
                    };
                    (0x86dd, ipv6(src, dst, exts, proto, &l4b))
                } else {
                    let src = V4[rng.below(V4.len())];
                    let mut dst = V4[rng.below(V4.len())];
                    if dst_mac == BCAST {
                        dst = [255, 255, 255, 255];
                    } else if dst_mac == MCAST_V4 {
                        dst = [224, 0, 0, 251];
                    }
                    let (frag, opts, body): (u16, &[u8], &[u8]) = match l3 {
                        L3::V4Options => {
                            (0x4000, &[0x94, 0x04, 0, 0, 0x01, 0x01, 0x01, 0x00], &l4b)
                        }
                        L3::V4FirstFrag => (0x2000, &[], &l4b),
                        // later fragment: offset 185*8, carries L4 payload bytes, not a header
                        L3::V4LaterFrag => (185, &[], &l4b[l4b.len().min(8)..]),
                        _ => (0x4000, &[], &l4b),
                    };
                    let t = tos[rng.below(tos.len())];
                    let ttl = ttls[rng.below(ttls.len())];
                    (0x0800, ipv4(src, dst, proto, t, ttl, frag, opts, body))
                };
                let frame = eth(dst_mac, src_mac, *l2, ethertype, &l3b);
                frames.push(frame);
            }
        }
    }
    // ARP requests/replies, LLDP, odd ethertypes.
    for i in 0..12u8 {
        let spa = V4[i as usize % V4.len()];
        let tpa = V4[(i as usize + 1) % V4.len()];
        if i % 2 == 0 {
            frames.push(eth(
                BCAST,
                MAC_A,
                L2::Plain,
                0x0806,
                &arp(1, MAC_A, spa, [0; 6], tpa),
            ));
        } else {
            let l2 = if i % 3 == 0 { L2::Vlan(10) } else { L2::Plain };
            frames.push(eth(
                MAC_A,
                MAC_B,
                l2,
                0x0806,
                &arp(2, MAC_B, spa, MAC_A, tpa),
            ));
        }
    }
    for _ in 0..3 {
        frames.push(lldp());
    }
    for et in [0x88e5u16, 0x8035, 0x0842, 0x9000] {
        frames.push(eth(MAC_B, MAC_A, L2::Plain, et, &[0xaa; 46]));
    }
    // 802.3 length field + LLC (STP-like).
    frames.push(eth(
        [0x01, 0x80, 0xc2, 0, 0, 0],
        MAC_A,
        L2::Plain,
        38,
        &[0x42, 0x42, 0x03, 0, 0, 0, 0, 0],
    ));
    // DHCP-like broadcast and mDNS multicast.
    frames.push(eth(
        BCAST,
        MAC_A,
        L2::Plain,
        0x0800,
        &ipv4(
            [0, 0, 0, 0],
            [255; 4],
            17,
            0,
            64,
            0,
            &[],
            &udp(68, 67, &[1; 30]),
        ),
    ));
    frames.push(eth(
        MCAST_V4,
        MAC_B,
        L2::Plain,
        0x0800,
        &ipv4(
            [10, 0, 0, 2],
            [224, 0, 0, 251],
            17,
            0,
            255,
            0,
            &[],
            &udp(5353, 5353, &[0; 12]),
        ),
    ));

    // DNS over IPv4/IPv6, ICMPv6 echo without extension headers, and large frames.
    frames.push(eth(
        MAC_A,
        MAC_B,
        L2::Plain,
        0x0800,
        &ipv4(
            V4[0],
            V4[3],
            17,
            0,
            64,
            0x4000,
            &[],
            &udp(5000, 53, &[7; 29]),
        ),
    ));
    frames.push(eth(
        MAC_B,
        MAC_A,
        L2::Plain,
        0x86dd,
        &ipv6(
            v6(1, 0x2001),
            v6(2, 0x2001),
            &[],
            17,
            &udp(53, 5001, &[9; 60]),
        ),
    ));
    frames.push(eth(
        MAC_B,
        MAC_A,
        L2::Plain,
        0x86dd,
        &ipv6(
            v6(1, 0xfe80),
            v6(2, 0xfe80),
            &[],
            58,
            &icmp(128, 0, &[1; 16]),
        ),
    ));
    frames.push(eth(
        MCAST_V6,
        MAC_A,
        L2::Plain,
        0x86dd,
        &ipv6(
            v6(1, 0xfe80),
            v6(1, 0xff02),
            &[],
            58,
            &icmp(129, 0, &[2; 16]),
        ),
    ));
    for (i, big) in [600usize, 1000, 1400, 1480].into_iter().enumerate() {
        let payload = vec![i as u8; big];
        frames.push(eth(
            MAC_A,
            MAC_B,
            L2::Plain,
            0x0800,
            &ipv4(
                V4[i],
                V4[i + 1],
                6,
                0,
                64,
                0x4000,
                &[],
                &tcp(443, 40000, 0x18, &payload, true),
            ),
        ));
        frames.push(eth(
            MAC_B,
            MAC_A,
            L2::Vlan(20),
            0x86dd,
            &ipv6(
                v6(3, 0x2001),
                v6(4, 0xfe80),
                &[],
                17,
                &udp(6000, 53, &payload),
            ),
        ));
    }

    frames.extend(protochain_frames());

    // Truncated copies of everything so far, at lengths that cut through each layer.
    let whole = frames.clone();
    for (i, f) in whole.iter().enumerate() {
        if i % 2 == 1 || f.len() <= 14 {
            continue;
        }
        let cuts = [
            14usize, 15, 17, 18, 22, 26, 30, 34, 38, 40, 42, 47, 54, 58, 62, 66,
        ];
        let cut = cuts[rng.below(cuts.len())].min(f.len() - 1);
        frames.push(f[..cut.max(14)].to_vec());
        if i % 6 == 0 {
            let cut2 = 14 + rng.below(f.len() - 14);
            frames.push(f[..cut2].to_vec());
        }
    }
    frames
}

/// IPv6 extension-header chains (hop-by-hop 0, routing 43, fragment 44, destination
/// options 60, AH 51) up to `MAX_EXT` headers long in front of TCP, UDP and ICMPv6, and
/// IPv4 to each protocol, with and without AH: what `protochain` walks. Plus copies cut
/// inside the chain.
pub fn protochain_frames() -> Vec<Vec<u8>> {
    let chains: &[&[u8]] = &[
        &[],
        &[0],
        &[43],
        &[44],
        &[60],
        &[51],
        &[0, 43],
        &[0, 60, 43, 44],
        &[0, 51, 60],
        &[60, 44, 60],
        &[0, 43, 60, 44, 60, 43, 60, 60],
        &[0, 43, 43, 43, 43, 43, 43, 60],
    ];
    let mut frames = Vec::new();
    for (i, chain) in chains.iter().enumerate() {
        assert!(chain.len() <= MAX_EXT);
        for (proto, l4) in [
            (6u8, tcp(40000, 80, 0x02, &[], false)),
            (17, udp(5353, 53, &[3; 12])),
            (58, icmp(128, 0, &[4; 8])),
        ] {
            let f = eth(
                MAC_A,
                MAC_B,
                if i % 4 == 3 { L2::Vlan(10) } else { L2::Plain },
                0x86dd,
                &ipv6(v6(1, 0x2001), v6(2, 0x2001), chain, proto, &l4),
            );
            if !chain.is_empty() && proto == 17 {
                // Cut inside the last extension header.
                frames.push(f[..14 + 40 + 8 * chain.len() - 3].to_vec());
            }
            frames.push(f);
        }
    }
    // IPv4 to each protocol; AH (51, length field 0 = 8 bytes here) in front of some.
    for (proto, l4) in [
        (6u8, tcp(1234, 443, 0x10, &[5; 10], true)),
        (17, udp(68, 67, &[6; 20])),
        (1, icmp(8, 0, &[7; 8])),
        (47, vec![0u8; 12]),
        (58, icmp(128, 0, &[8; 8])),
    ] {
        frames.push(eth(MAC_B, MAC_A, L2::Plain, 0x0800, &ipv4(V4[0], V4[1], proto, 0, 64, 0x4000, &[], &l4)));
        let mut ah = vec![proto, 0, 0, 0, 0, 0, 0, 1];
        ah.extend_from_slice(&l4);
        frames.push(eth(MAC_B, MAC_A, L2::Plain, 0x0800, &ipv4(V4[1], V4[2], 51, 0, 64, 0x4000, &[], &ah)));
    }
    frames
}

/// Extension headers netray's parser walks (`NR_IPV6_MAX_EXT` in netray_abi.h), which is
/// also how many backward jumps a translated filter takes (`cbpf::MAX_BACKWARD_JUMPS`).
pub const MAX_EXT: usize = 8;

/// IPv6 + TCP behind `n` destination-options headers.
pub fn ipv6_tcp_behind(n: usize) -> Vec<u8> {
    let exts = vec![60u8; n];
    eth(MAC_A, MAC_B, L2::Plain, 0x86dd, &ipv6(v6(1, 0x2001), v6(2, 0x2001), &exts, 6, &tcp(1, 2, 0x02, &[], false)))
}
