//! A firewall rule as the user writes it: `CIDR [--proto P] [--port N]`.

use std::{fmt, net::IpAddr, str::FromStr};

use ipnet::IpNet;
use netray_ebpf::abi::{nr_fw_action, nr_fw_rule};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("'{0}' is not an IPv4/IPv6 address or CIDR prefix (examples: 10.0.0.0/8, 192.0.2.7, 2001:db8::/32)")]
    BadCidr(String),
    #[error("'{given}' has host bits set beyond /{len}; did you mean {suggest}?")]
    HostBits {
        given: String,
        len: u8,
        suggest: String,
    },
    #[error("unknown protocol '{0}': use tcp, udp, sctp, icmp, icmpv6 or a protocol number 1-255")]
    BadProto(String),
    #[error("--port needs a protocol with ports (tcp, udp or sctp), not {0}")]
    PortWithoutPorts(String),
    #[error("port 0 is not a valid port: omit --port to match every port")]
    PortZero,
    #[error("protocol {given} is {what}, but {net} is an {family} prefix: use protocol {fix}")]
    ProtoFamily {
        given: String,
        what: &'static str,
        net: String,
        family: &'static str,
        fix: &'static str,
    },
    #[error("unknown direction '{0}': use in (received packets, by source), out (sent packets, by destination) or both")]
    BadDir(String),
    #[error("--ttl '{0}' is not a duration: write it as a number and a unit, such as 30s, 10m, 2h or 1h30m")]
    BadTtl(String),
    #[error("--ttl '{0}' is in the past: a TTL counts from now; give a positive duration such as 30s, 10m or 2h")]
    TtlInPast(String),
    #[error("--ttl '{0}' would expire the rule at once: give a positive duration such as 30s, 10m or 2h")]
    TtlZero(String),
}

/// IP protocols a rule can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(into = "String")]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
    /// ICMP (IPv4 only).
    Icmp,
    /// ICMPv6 (IPv6 only).
    Icmpv6,
    Other(u8),
}

impl Proto {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Sctp => 132,
            Proto::Icmp => 1,
            Proto::Icmpv6 => 58,
            Proto::Other(n) => n,
        }
    }

    pub fn from_number(n: u8) -> Proto {
        match n {
            6 => Proto::Tcp,
            17 => Proto::Udp,
            132 => Proto::Sctp,
            1 => Proto::Icmp,
            58 => Proto::Icmpv6,
            n => Proto::Other(n),
        }
    }

    pub fn has_ports(self) -> bool {
        matches!(
            self,
            Proto::Tcp | Proto::Udp | Proto::Sctp | Proto::Other(136)
        )
    }
}

impl FromStr for Proto {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, RuleError> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            "sctp" => Proto::Sctp,
            "icmp" => Proto::Icmp,
            "icmp6" | "icmpv6" | "ipv6-icmp" => Proto::Icmpv6,
            other => match other.parse::<u8>() {
                Ok(n) if n != 0 => Proto::from_number(n),
                _ => return Err(RuleError::BadProto(s.to_string())),
            },
        })
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proto::Tcp => f.write_str("tcp"),
            Proto::Udp => f.write_str("udp"),
            Proto::Sctp => f.write_str("sctp"),
            Proto::Icmp => f.write_str("icmp"),
            Proto::Icmpv6 => f.write_str("icmpv6"),
            Proto::Other(n) => write!(f, "{n}"),
        }
    }
}

impl From<Proto> for String {
    fn from(p: Proto) -> String {
        p.to_string()
    }
}

/// Which packets a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Received packets, matched on their source (XDP ingress).
    #[default]
    In,
    /// Sent packets, matched on their destination (TC egress).
    Out,
    /// Both of the above.
    Both,
}

impl Direction {
    /// The kernel's bits (enum nr_fw_dir).
    pub fn bits(self) -> u8 {
        use netray_ebpf::abi::nr_fw_dir as D;
        let (i, o) = (D::NR_DIR_IN.0 as u8, D::NR_DIR_OUT.0 as u8);
        match self {
            Direction::In => i,
            Direction::Out => o,
            Direction::Both => i | o,
        }
    }

    pub fn from_bits(b: u8) -> Option<Direction> {
        [Direction::In, Direction::Out, Direction::Both]
            .into_iter()
            .find(|d| d.bits() == b)
    }

    pub fn has_in(self) -> bool {
        self != Direction::Out
    }

    pub fn has_out(self) -> bool {
        self != Direction::In
    }
}

impl FromStr for Direction {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, RuleError> {
        match s {
            "in" => Ok(Direction::In),
            "out" => Ok(Direction::Out),
            "both" => Ok(Direction::Both),
            _ => Err(RuleError::BadDir(s.to_string())),
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::In => "in",
            Direction::Out => "out",
            Direction::Both => "both",
        })
    }
}

/// A rule: traffic from `net` (narrowed to `proto`/`port` if given) is
/// dropped (a deny rule, or an audit rule counting what it would drop), or
/// with `allow` passed. A deny and an allow rule of the same match are two
/// rules (the deny rule wins).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Rule {
    #[serde(flatten, serialize_with = "ser_cidr")]
    pub net: IpNet,
    pub proto: Option<Proto>,
    /// Destination port.
    pub port: Option<u16>,
    pub dir: Direction,
    /// An allow rule (RuleStatus.action says so to readers).
    #[serde(skip)]
    pub allow: bool,
}

/// A prefix in JSON: `cidr`, the name the API and the CLI use, and `net`, its
/// old name in the CLI's output, kept for one release so that scripts reading
/// it go on working (docs/limits.md, README: "cidr, formerly net").
pub fn ser_cidr<S: serde::Serializer>(v: &IpNet, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let text = v.to_string();
    let mut m = s.serialize_map(Some(2))?;
    m.serialize_entry("cidr", &text)?;
    m.serialize_entry("net", &text)?;
    m.end()
}

impl Rule {
    /// Parses and validates a rule. A bare address means a host prefix.
    pub fn parse(
        cidr: &str,
        proto: Option<&str>,
        port: Option<u16>,
        dir: Option<&str>,
    ) -> Result<Rule, RuleError> {
        let net = parse_net(cidr)?;
        let proto = proto.map(str::parse::<Proto>).transpose()?;
        let dir = dir
            .map(str::parse::<Direction>)
            .transpose()?
            .unwrap_or_default();
        Rule::new(net, proto, port, dir)
    }

    pub fn new(
        net: IpNet,
        proto: Option<Proto>,
        port: Option<u16>,
        dir: Direction,
    ) -> Result<Rule, RuleError> {
        check_match(&net, proto, port)?;
        Ok(Rule {
            net,
            proto,
            port,
            dir,
            allow: false,
        })
    }

    /// The same match as an allow rule.
    pub fn allowing(self) -> Rule {
        Rule { allow: true, ..self }
    }

    pub fn family(&self) -> u8 {
        if self.net.addr().is_ipv4() {
            4
        } else {
            6
        }
    }

    /// Protocol numbers this rule matches: one, or tcp/udp/sctp for a bare
    /// `--port`, or none (= every protocol).
    pub fn proto_numbers(&self) -> Vec<u8> {
        match (self.proto, self.port) {
            (Some(p), _) => vec![p.number()],
            (None, Some(_)) => vec![6, 17, 132],
            (None, None) => vec![],
        }
    }

    /// The kernel's record of this rule.
    pub fn to_abi(&self, created_ns: u64) -> nr_fw_rule {
        let mut r = nr_fw_rule {
            family: self.family(),
            prefix_len: self.net.prefix_len(),
            ..Default::default()
        };
        match self.net.addr() {
            IpAddr::V4(a) => r.addr[..4].copy_from_slice(&a.octets()),
            IpAddr::V6(a) => r.addr.copy_from_slice(&a.octets()),
        }
        r.proto = self.proto.map_or(0, Proto::number);
        r.port = self.port.unwrap_or(0);
        r.dir = self.dir.bits();
        let action = if self.allow { nr_fw_action::NR_ACTION_ALLOW } else { nr_fw_action::NR_ACTION_DENY };
        r.action = action.0 as u8;
        r.created_ns = created_ns;
        r
    }

    /// Reads a rule back from the kernel's record; None if it is corrupt.
    pub fn from_abi(r: &nr_fw_rule) -> Option<Rule> {
        let addr: IpAddr = match r.family {
            4 => IpAddr::from(<[u8; 4]>::try_from(&r.addr[..4]).ok()?),
            6 => IpAddr::from(r.addr),
            _ => return None,
        };
        let net = IpNet::new(addr, r.prefix_len).ok()?;
        let proto = (r.proto != 0).then(|| Proto::from_number(r.proto));
        let port = (r.port != 0).then_some(r.port);
        Some(Rule {
            net,
            proto,
            port,
            dir: Direction::from_bits(r.dir)?,
            allow: u32::from(r.action) == netray_ebpf::abi::nr_fw_action::NR_ACTION_ALLOW.0,
        })
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.allow {
            f.write_str("allow ")?;
        }
        write!(f, "{}", self.net)?;
        if let Some(p) = self.proto {
            write!(f, " proto {p}")?;
        }
        if let Some(p) = self.port {
            write!(f, " port {p}")?;
        }
        if self.dir != Direction::In {
            write!(f, " dir {}", self.dir)?;
        }
        Ok(())
    }
}

/// The checks every rule-like thing (deny, limit, allow) makes of what it
/// matches: a port needs a protocol with ports (no protocol: tcp, udp and
/// sctp), and ICMP must be the prefix's own (ICMP for IPv4, ICMPv6 for IPv6),
/// so `--proto icmpv6` on an IPv4 prefix is refused, never quietly changed.
pub fn check_match(net: &IpNet, proto: Option<Proto>, port: Option<u16>) -> Result<(), RuleError> {
    if port == Some(0) {
        return Err(RuleError::PortZero);
    }
    if let (Some(p), Some(_)) = (proto, port) {
        if !p.has_ports() {
            return Err(RuleError::PortWithoutPorts(p.to_string()));
        }
    }
    let family_error = |given: Proto, what, family, fix| RuleError::ProtoFamily {
        given: given.to_string(),
        what,
        net: net.to_string(),
        family,
        fix,
    };
    match (proto, net) {
        (Some(p @ Proto::Icmpv6), IpNet::V4(_)) => Err(family_error(p, "ICMP for IPv6", "IPv4", "icmp")),
        (Some(p @ Proto::Icmp), IpNet::V6(_)) => Err(family_error(p, "ICMP for IPv4", "IPv6", "icmpv6")),
        _ => Ok(()),
    }
}

fn parse_net(s: &str) -> Result<IpNet, RuleError> {
    let s = s.trim();
    let net = if s.contains('/') {
        s.parse::<IpNet>()
            .map_err(|_| RuleError::BadCidr(s.to_string()))?
    } else {
        let addr = s
            .parse::<IpAddr>()
            .map_err(|_| RuleError::BadCidr(s.to_string()))?;
        IpNet::from(addr)
    };
    if net.trunc() != net {
        return Err(RuleError::HostBits {
            given: s.to_string(),
            len: net.prefix_len(),
            suggest: net.trunc().to_string(),
        });
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let r = Rule::parse("10.1.0.0/16", Some("udp"), Some(53), None).unwrap();
        assert_eq!(r.to_string(), "10.1.0.0/16 proto udp port 53");
        assert_eq!(
            Rule::parse("192.0.2.7", None, None, None)
                .unwrap()
                .net
                .prefix_len(),
            32
        );
        assert_eq!(
            Rule::parse("2001:db8::1", None, None, None)
                .unwrap()
                .net
                .prefix_len(),
            128
        );
        let icmp6 = Rule::parse("2001:db8::/32", Some("icmpv6"), None, None).unwrap();
        assert_eq!(icmp6.proto_numbers(), vec![58]);
        assert_eq!(icmp6.to_string(), "2001:db8::/32 proto icmpv6");
        assert_eq!(
            Rule::parse("10.0.0.0/8", None, Some(22), None)
                .unwrap()
                .proto_numbers(),
            vec![6, 17, 132]
        );
    }

    #[test]
    fn abi_round_trip() {
        for r in [
            Rule::parse("10.1.0.0/16", Some("tcp"), Some(443), None).unwrap(),
            Rule::parse("2001:db8::/48", Some("icmpv6"), None, None).unwrap(),
            Rule::parse("192.0.2.0/24", Some("icmp"), None, None).unwrap(),
            Rule::parse("0.0.0.0/0", None, None, None).unwrap(),
        ] {
            assert_eq!(Rule::from_abi(&r.to_abi(1)).unwrap(), r);
        }
    }

    #[test]
    fn rejects_bad_input_with_a_hint() {
        assert!(matches!(
            Rule::parse("10.0.0.1/8", None, None, None),
            Err(RuleError::HostBits { .. })
        ));
        assert_eq!(
            Rule::parse("10.0.0.1/8", None, None, None)
                .unwrap_err()
                .to_string(),
            "'10.0.0.1/8' has host bits set beyond /8; did you mean 10.0.0.0/8?"
        );
        assert!(matches!(
            Rule::parse("10.0.0.0/33", None, None, None),
            Err(RuleError::BadCidr(_))
        ));
        assert!(matches!(
            Rule::parse("bogus", None, None, None),
            Err(RuleError::BadCidr(_))
        ));
        assert!(matches!(
            Rule::parse("10.0.0.0/8", Some("icmp"), Some(1), None),
            Err(RuleError::PortWithoutPorts(_))
        ));
        assert!(matches!(
            Rule::parse("10.0.0.0/8", Some("xyz"), None, None),
            Err(RuleError::BadProto(_))
        ));
        assert!(matches!(
            Rule::parse("10.0.0.0/8", None, Some(0), None),
            Err(RuleError::PortZero)
        ));
        assert!(matches!(
            Rule::parse("10.0.0.0/8", None, None, Some("sideways")),
            Err(RuleError::BadDir(_))
        ));
        assert_eq!(
            Rule::parse("10.0.0.0/8", Some("icmpv6"), None, None).unwrap_err().to_string(),
            "protocol icmpv6 is ICMP for IPv6, but 10.0.0.0/8 is an IPv4 prefix: use protocol icmp"
        );
        assert_eq!(
            Rule::parse("2001:db8::/32", Some("icmp"), None, None).unwrap_err().to_string(),
            "protocol icmp is ICMP for IPv4, but 2001:db8::/32 is an IPv6 prefix: use protocol icmpv6"
        );
        assert!(matches!(Rule::parse("10.0.0.0/8", Some("58"), None, None), Err(RuleError::ProtoFamily { .. })));
        let out = Rule::parse("10.0.0.0/8", Some("tcp"), Some(25), Some("out")).unwrap();
        assert_eq!(out.to_string(), "10.0.0.0/8 proto tcp port 25 dir out");
        assert_eq!(Rule::from_abi(&out.to_abi(0)).unwrap(), out);
        assert_ne!(
            out,
            Rule::parse("10.0.0.0/8", Some("tcp"), Some(25), Some("in")).unwrap()
        );
    }
}
