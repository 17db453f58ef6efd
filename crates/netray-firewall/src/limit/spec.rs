//! A rate limit as the user writes it (`CIDR --rate N/s [--burst M]
//! [--per-source] [--proto P] [--port N] [--syn] [--ban DURATION]`), parsed,
//! validated, and turned into the kernel's record (struct nr_limit).

use std::{fmt, net::IpAddr, str::FromStr, time::Duration};

use ipnet::IpNet;
use netray_ebpf::abi::{nr_fw_dir, nr_limit, nr_limit_flags, nr_limit_layout};
use serde::Serialize;

use crate::rule::{Proto, Rule, RuleError};

/// The most packets per second a limit may allow: beyond any line rate a
/// host sees (148.8 Mpps is 100 Gbit/s of minimal frames), and where the
/// bucket's interval (1/16 ns units) is still within 1% exact.
pub const MAX_RATE_PER_SEC: u64 = 100_000_000;
/// The largest burst: also bounded so that burst x interval fits the bucket.
pub const MAX_BURST: u32 = 100_000_000;
/// The longest --ban.
pub const MAX_BAN: Duration = Duration::from_secs(365 * 24 * 3600);

const TICK_SHIFT: u32 = nr_limit_layout::NR_LIMIT_TICK_SHIFT.0;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error("--rate '{0}' is not a rate: write packets per second, minute or hour, such as 100/s, 6000/m or 10/h")]
    BadRate(String),
    #[error("--rate '{0}' lets nothing through: give at least 1 packet per period (such as 1/s or 1/h)")]
    ZeroRate(String),
    #[error("--rate '{given}' is more than {max} packets per second: limit less than that, or use a deny rule to drop and no limit to pass")]
    RateTooHigh { given: String, max: u64 },
    #[error("--burst {0} is below 1: a bucket must hold at least one packet")]
    BurstZero(u32),
    #[error("--burst {given} is more than {max}: give a smaller burst")]
    BurstTooHigh { given: u32, max: u32 },
    #[error("--ban needs --per-source: a ban keeps one source out, and only per-source limits track sources")]
    BanWithoutPerSource,
    #[error("--ban '{0}' is not a duration: write a number and a unit, such as 30s, 10m or 1h")]
    BadBan(String),
    #[error("--ban '{0}' is not positive: give a duration such as 30s, 10m or 1h, or leave --ban out")]
    BanZero(String),
    #[error("--ban '{0}' is longer than a year: delete the limit and add a deny rule to keep a source out for good")]
    BanTooLong(String),
    #[error("--syn matches TCP SYNs, not {0}: leave out --proto or give --proto tcp")]
    SynWithoutTcp(Proto),
    #[error("limits apply to received packets (--dir in), not '{0}'")]
    NotIn(String),
}

/// A rate: `rate` packets per `period_s` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub packets: u32,
    pub period_s: u32,
}

impl Rate {
    /// Bucket ticks (1/16 ns) per packet.
    pub fn interval_ticks(self) -> u64 {
        ((u64::from(self.period_s) * 1_000_000_000) << TICK_SHIFT) / u64::from(self.packets)
    }
}

impl FromStr for Rate {
    type Err = LimitError;
    fn from_str(s: &str) -> Result<Rate, LimitError> {
        let given = s.trim();
        let (n, unit) = given.split_once('/').unwrap_or((given, "s"));
        let period_s = match unit.trim().to_ascii_lowercase().as_str() {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3600,
            _ => return Err(LimitError::BadRate(s.to_string())),
        };
        let packets: u64 = n.trim().parse().map_err(|_| LimitError::BadRate(s.to_string()))?;
        if packets == 0 {
            return Err(LimitError::ZeroRate(s.to_string()));
        }
        if packets > MAX_RATE_PER_SEC * period_s {
            return Err(LimitError::RateTooHigh { given: s.to_string(), max: MAX_RATE_PER_SEC });
        }
        Ok(Rate { packets: packets as u32, period_s: period_s as u32 })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.period_s {
            60 => "m",
            3600 => "h",
            _ => "s",
        };
        write!(f, "{}/{unit}", self.packets)
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A rate limit as written. Two limits are the same when every field is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Limit {
    /// Source prefix of received packets.
    #[serde(serialize_with = "ser_display")]
    pub net: IpNet,
    pub rate: Rate,
    /// Packets a full bucket lets through at once.
    pub burst: u32,
    /// One bucket per source address instead of one for the prefix.
    pub per_source: bool,
    pub proto: Option<Proto>,
    /// Destination port.
    pub port: Option<u16>,
    /// Only TCP SYNs without ACK (connection attempts).
    pub syn: bool,
    /// How long a source that exceeds the rate is dropped altogether (milliseconds in JSON).
    #[serde(rename = "ban_ms", serialize_with = "ser_ms")]
    pub ban: Option<Duration>,
}

fn ser_display<S: serde::Serializer>(v: &IpNet, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn ser_ms<S: serde::Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(d) => s.serialize_u64(d.as_millis() as u64),
        None => s.serialize_none(),
    }
}

/// The options of `limit add` as given (strings where the user typed them).
#[derive(Debug, Clone, Default)]
pub struct LimitArgs<'a> {
    pub cidr: &'a str,
    pub rate: &'a str,
    pub burst: Option<u32>,
    pub per_source: bool,
    pub proto: Option<&'a str>,
    pub port: Option<u16>,
    pub syn: bool,
    pub ban: Option<&'a str>,
    pub dir: Option<&'a str>,
}

impl Limit {
    /// Parses and checks a limit; the default burst is one period's rate.
    pub fn parse(a: &LimitArgs) -> Result<Limit, LimitError> {
        if let Some(d) = a.dir.filter(|d| !d.eq_ignore_ascii_case("in")) {
            return Err(LimitError::NotIn(d.to_string()));
        }
        let rule = Rule::parse(a.cidr, a.proto, a.port, Some("in"))?;
        let rate: Rate = a.rate.parse()?;
        let burst = a.burst.unwrap_or(rate.packets.min(MAX_BURST));
        if burst == 0 {
            return Err(LimitError::BurstZero(burst));
        }
        if burst > MAX_BURST {
            return Err(LimitError::BurstTooHigh { given: burst, max: MAX_BURST });
        }
        let mut proto = rule.proto;
        if a.syn {
            match proto {
                None => proto = Some(Proto::Tcp),
                Some(Proto::Tcp) => {}
                Some(p) => return Err(LimitError::SynWithoutTcp(p)),
            }
        }
        let ban = a.ban.map(parse_ban).transpose()?;
        if ban.is_some() && !a.per_source {
            return Err(LimitError::BanWithoutPerSource);
        }
        Ok(Limit { net: rule.net, rate, burst, per_source: a.per_source, proto, port: rule.port, syn: a.syn, ban })
    }

    /// Whether some packet could match both limits (the kernel applies the
    /// first limit a packet matches, so limits must not overlap).
    pub fn overlaps(&self, o: &Limit) -> bool {
        let nets = self.net.contains(&o.net) || o.net.contains(&self.net);
        let protos = self.proto.is_none() || o.proto.is_none() || self.proto == o.proto;
        let ports = self.port.is_none() || o.port.is_none() || self.port == o.port;
        nets && protos && ports
    }

    /// The kernel's record of this limit under `id`, added at wall-clock `created_ns`.
    pub fn to_abi(&self, id: u32, created_ns: u64) -> nr_limit {
        let (addr, mask, family) = match (self.net.network(), self.net.netmask()) {
            (IpAddr::V4(a), IpAddr::V4(m)) => (widen(&a.octets()), widen(&m.octets()), 4),
            (IpAddr::V6(a), IpAddr::V6(m)) => (a.octets(), m.octets(), 6),
            _ => unreachable!("an IpNet's address and mask are of one family"),
        };
        let interval = self.rate.interval_ticks();
        let flags = if self.per_source { nr_limit_flags::NR_LIMIT_PER_SOURCE.0 } else { 0 }
            | if self.syn { nr_limit_flags::NR_LIMIT_SYN.0 } else { 0 };
        nr_limit {
            addr,
            mask,
            id,
            family,
            prefix_len: self.net.prefix_len(),
            proto: self.proto.map_or(0, |p| p.number(family)),
            flags: flags as u8,
            port: self.port.unwrap_or(0),
            dir: nr_fw_dir::NR_DIR_IN.0 as u8,
            rate: self.rate.packets,
            period_s: self.rate.period_s,
            burst: self.burst,
            interval,
            tolerance: interval.saturating_mul(u64::from(self.burst - 1)),
            ban_ns: self.ban.map_or(0, |b| b.as_nanos() as u64),
            created_ns,
            ..Default::default()
        }
    }

    /// The limit a kernel record stands for.
    pub fn from_abi(l: &nr_limit) -> Limit {
        let addr: IpAddr = if l.family == 6 {
            IpAddr::from(l.addr)
        } else {
            IpAddr::from([l.addr[0], l.addr[1], l.addr[2], l.addr[3]])
        };
        let flags = u32::from(l.flags);
        Limit {
            net: IpNet::new(addr, l.prefix_len).unwrap_or_else(|_| IpNet::from(addr)),
            rate: Rate { packets: l.rate.max(1), period_s: l.period_s.max(1) },
            burst: l.burst,
            per_source: flags & nr_limit_flags::NR_LIMIT_PER_SOURCE.0 != 0,
            proto: (l.proto != 0).then(|| Proto::from_number(l.proto)),
            port: (l.port != 0).then_some(l.port),
            syn: flags & nr_limit_flags::NR_LIMIT_SYN.0 != 0,
            ban: (l.ban_ns != 0).then(|| Duration::from_nanos(l.ban_ns)),
        }
    }
}

fn widen(v4: &[u8; 4]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(v4);
    a
}

fn parse_ban(s: &str) -> Result<Duration, LimitError> {
    let d = humantime::parse_duration(s.trim()).map_err(|_| LimitError::BadBan(s.to_string()))?;
    if d.is_zero() {
        return Err(LimitError::BanZero(s.to_string()));
    }
    if d > MAX_BAN {
        return Err(LimitError::BanTooLong(s.to_string()));
    }
    Ok(d)
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} burst {}", self.net, self.rate, self.burst)?;
        if self.per_source {
            f.write_str(" per source")?;
        }
        if self.syn {
            f.write_str(" syn")?;
        } else if let Some(p) = self.proto {
            write!(f, " {p}")?;
        }
        if let Some(p) = self.port {
            write!(f, " port {p}")?;
        }
        if let Some(b) = self.ban {
            write!(f, " ban {}", humantime::format_duration(b))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args<'a>(cidr: &'a str, rate: &'a str) -> LimitArgs<'a> {
        LimitArgs { cidr, rate, ..Default::default() }
    }

    fn err(a: LimitArgs) -> String {
        Limit::parse(&a).unwrap_err().to_string()
    }

    #[test]
    fn rates_and_defaults() {
        let l = Limit::parse(&args("10.0.0.0/8", "100/s")).unwrap();
        assert_eq!((l.rate, l.burst), (Rate { packets: 100, period_s: 1 }, 100));
        assert_eq!(l.rate.interval_ticks(), 10_000_000 << 4);
        assert_eq!("6000/m".parse::<Rate>().unwrap(), Rate { packets: 6000, period_s: 60 });
        assert_eq!("10/h".parse::<Rate>().unwrap().to_string(), "10/h");
        assert_eq!("250".parse::<Rate>().unwrap(), Rate { packets: 250, period_s: 1 });
        let abi = Limit::parse(&LimitArgs { burst: Some(5), ..args("10.0.0.0/8", "100/s") }).unwrap().to_abi(3, 0);
        assert_eq!(abi.tolerance, 4 * abi.interval);
        assert_eq!(Limit::from_abi(&abi).burst, 5);
    }

    #[test]
    fn bad_input_is_one_clear_error() {
        assert!(err(args("10.0.0.0/8", "0/s")).contains("lets nothing through"));
        assert!(err(args("10.0.0.0/8", "fast")).contains("is not a rate"));
        assert!(err(args("10.0.0.0/8", "1000000000/s")).contains("more than 100000000 packets per second"));
        assert!(err(LimitArgs { burst: Some(0), ..args("10.0.0.0/8", "1/s") }).contains("below 1"));
        assert!(err(LimitArgs { ban: Some("60s"), ..args("10.0.0.0/8", "1/s") }).contains("needs --per-source"));
        assert!(err(LimitArgs { ban: Some("0s"), per_source: true, ..args("10.0.0.0/8", "1/s") })
            .contains("not positive"));
        assert!(err(LimitArgs { syn: true, proto: Some("udp"), ..args("10.0.0.0/8", "1/s") }).contains("--syn"));
        assert!(err(LimitArgs { dir: Some("out"), ..args("10.0.0.0/8", "1/s") }).contains("--dir in"));
        assert!(err(args("10.0.0.1/8", "1/s")).contains("host bits"));
    }

    #[test]
    fn overlap() {
        let p = |c: &str, proto: Option<&'static str>, port| {
            Limit::parse(&LimitArgs { proto, port, ..args(c, "1/s") }).unwrap()
        };
        assert!(p("10.0.0.0/8", None, None).overlaps(&p("10.1.0.0/16", Some("udp"), None)));
        assert!(!p("10.0.0.0/8", Some("tcp"), None).overlaps(&p("10.1.0.0/16", Some("udp"), None)));
        assert!(!p("10.0.0.0/8", Some("udp"), Some(53)).overlaps(&p("10.0.0.0/8", Some("udp"), Some(54))));
        assert!(!p("10.0.0.0/16", None, None).overlaps(&p("10.1.0.0/16", None, None)));
        assert!(!p("10.0.0.0/8", None, None).overlaps(&p("::/0", None, None)));
    }
}
