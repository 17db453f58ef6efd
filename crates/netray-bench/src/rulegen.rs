//! A reproducible, blocklist-like rule set: mostly /24 networks and /32
//! hosts, some wider prefixes, spread over the unicast IPv4 space.

use std::{collections::HashSet, net::Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use netray_firewall::{Direction, Rule};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// `n` distinct IPv4 deny rules (50% /24, 35% /32, 15% /12-/23).
pub fn blocklist(n: usize, seed: u64) -> Vec<Rule> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let len = match rng.random_range(0..100) {
            0..50 => 24,
            50..85 => 32,
            _ => rng.random_range(12..=23),
        };
        let addr = Ipv4Addr::from(rng.random_range(0x0100_0000u32..0xe000_0000));
        let net = Ipv4Net::new(addr, len).expect("valid length").trunc();
        if seen.insert(net) {
            out.push(Rule::new(IpNet::V4(net), None, None, Direction::In).expect("valid rule"));
        }
    }
    out
}

/// A random address inside a rule's prefix.
pub fn address_in(rule: &Rule, rng: &mut StdRng) -> [u8; 4] {
    let IpNet::V4(net) = rule.net else {
        return [192, 0, 2, 1];
    };
    let host_bits = 32 - net.prefix_len() as u32;
    let mask = if host_bits == 32 {
        u32::MAX
    } else {
        (1u32 << host_bits) - 1
    };
    (u32::from(net.network()) | (rng.random::<u32>() & mask)).to_be_bytes()
}
