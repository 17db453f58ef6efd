//! The traffic generator: packets from the lab namespace (peer end) to the
//! host end, paced, with every answer matched to its request so that the
//! answered counts are exact — tests use them to check that a firewall drops
//! or passes traffic.
//!
//! Per protocol and family there is one "flow". ICMP echo requests go out on
//! a raw socket; UDP datagrams on a socket connected to the host's UDP echo;
//! each TCP "packet" is a connection to the host's TCP echo (answered = the
//! handshake completed). ICMP and UDP payloads start with a 12-byte tag
//! (run token + sequence number) so that replies are counted once each, and
//! only replies to this run count even when other runs share the lab.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::lab::Lab;
use crate::responder::{Responder, Sockets};
use crate::sock;

mod generator;
use generator::{send_retrying, unspecified, Generator};

/// Run token + sequence number at the start of ICMP and UDP payloads.
pub const TAG_LEN: usize = 12;
/// Largest payload accepted (fits one IPv4 or IPv6 datagram with headers).
pub const MAX_PAYLOAD: usize = 65000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// ICMP / ICMPv6 echo request, answered by the host's kernel.
    Icmp,
    /// UDP datagram, answered by the UDP echo responder.
    Udp,
    /// TCP connection, answered when the handshake with the TCP echo completes.
    Tcp,
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    V4,
    V6,
    #[default]
    Both,
}

impl Family {
    /// The single families this stands for, as "is IPv6" flags.
    fn v6_flags(self) -> &'static [bool] {
        match self {
            Family::V4 => &[false],
            Family::V6 => &[true],
            Family::Both => &[false, true],
        }
    }

    fn of(v6: bool) -> Family {
        if v6 {
            Family::V6
        } else {
            Family::V4
        }
    }

    fn matches(self, single: Family) -> bool {
        self == Family::Both || self == single
    }
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Icmp => "icmp",
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        })
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::V4 => "v4",
            Family::V6 => "v6",
            Family::Both => "both",
        })
    }
}

/// What to send. Packets go round-robin over protocols × families at `pps`
/// in total, until `duration` has passed or `count` packets were sent,
/// whichever comes first; then late answers are awaited up to `timeout`.
#[derive(Clone, Debug, PartialEq)]
pub struct TrafficSpec {
    pub duration: Option<Duration>,
    pub pps: u32,
    pub count: Option<u64>,
    pub protos: Vec<Proto>,
    pub family: Family,
    /// Port of the UDP echo on the host end (0: any free port).
    pub udp_port: u16,
    /// Port of the TCP echo on the host end (0: any free port).
    pub tcp_port: u16,
    /// Payload bytes per ICMP echo / UDP datagram / TCP connection; at least
    /// [`TAG_LEN`] when ICMP or UDP is sent.
    pub payload_len: usize,
    pub timeout: Duration,
}

impl Default for TrafficSpec {
    /// 3 s of ICMP, UDP and TCP over IPv4 and IPv6 at 100 packets/s, to the
    /// echo port 7, 64-byte payloads, 1 s for late answers.
    fn default() -> Self {
        TrafficSpec {
            duration: Some(Duration::from_secs(3)),
            pps: 100,
            count: None,
            protos: vec![Proto::Icmp, Proto::Udp, Proto::Tcp],
            family: Family::Both,
            udp_port: 7,
            tcp_port: 7,
            payload_len: 64,
            timeout: Duration::from_secs(1),
        }
    }
}

impl TrafficSpec {
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(LabError::InvalidSpec(m));
        if self.pps == 0 {
            return bad("pps must be at least 1".into());
        }
        if self.protos.is_empty() {
            return bad("no protocol given (use icmp, udp and/or tcp)".into());
        }
        if self.duration.is_none() && self.count.is_none() {
            return bad("neither a duration nor a count is given: it would never stop".into());
        }
        let tagged = self
            .protos
            .iter()
            .any(|p| matches!(p, Proto::Icmp | Proto::Udp));
        if tagged && self.payload_len < TAG_LEN {
            return bad(format!("payload_len must be at least {TAG_LEN} for ICMP and UDP (it carries the matching tag)"));
        }
        if self.payload_len > MAX_PAYLOAD {
            return bad(format!("payload_len must be at most {MAX_PAYLOAD}"));
        }
        Ok(())
    }
}

/// Counts for one protocol and family.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FlowStats {
    pub proto: Proto,
    /// `V4` or `V6`.
    pub family: Family,
    pub dst: IpAddr,
    pub port: Option<u16>,
    /// Packets (TCP: connection attempts) that left the namespace.
    pub sent: u64,
    /// Echo replies / UDP echoes / completed TCP handshakes, each counted once.
    pub answered: u64,
    /// Payload bytes sent.
    pub bytes: u64,
    /// Payload bytes echoed back.
    pub answered_bytes: u64,
    /// Packets that could not be sent (the kernel refused them).
    pub errors: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrafficReport {
    pub lab: String,
    pub elapsed_secs: f64,
    pub flows: Vec<FlowStats>,
}

impl TrafficReport {
    /// The flow of one protocol and single family (`V4` or `V6`).
    pub fn flow(&self, proto: Proto, family: Family) -> Option<&FlowStats> {
        self.flows
            .iter()
            .find(|f| f.proto == proto && f.family == family)
    }
    fn sum(&self, proto: Proto, family: Family, field: fn(&FlowStats) -> u64) -> u64 {
        self.flows
            .iter()
            .filter(|f| f.proto == proto && family.matches(f.family))
            .map(field)
            .sum()
    }
    /// Sent packets of `proto` (`family` may be `Both`).
    pub fn sent(&self, proto: Proto, family: Family) -> u64 {
        self.sum(proto, family, |f| f.sent)
    }
    /// Answered packets of `proto` (`family` may be `Both`).
    pub fn answered(&self, proto: Proto, family: Family) -> u64 {
        self.sum(proto, family, |f| f.answered)
    }
    pub fn total_sent(&self) -> u64 {
        self.flows.iter().map(|f| f.sent).sum()
    }
    pub fn total_answered(&self) -> u64 {
        self.flows.iter().map(|f| f.answered).sum()
    }
}

impl Lab {
    fn host_ip(&self, v6: bool) -> IpAddr {
        if v6 {
            IpAddr::V6(self.host_v6())
        } else {
            IpAddr::V4(self.host_v4())
        }
    }

    /// Generates traffic from the namespace to the host end (see
    /// [`TrafficSpec`]), with echo responders on the host end for the run.
    pub fn traffic(&self, spec: &TrafficSpec) -> Result<TrafficReport> {
        spec.validate()?;
        let mut protos: Vec<Proto> = Vec::new();
        for p in &spec.protos {
            if !protos.contains(p) {
                protos.push(*p);
            }
        }
        // Bind the responders here, in the root namespace, before anything
        // is sent: the ports are known and bind errors are reported.
        let mut sockets = Sockets::default();
        let mut flows = Vec::new();
        for &proto in &protos {
            for &v6 in spec.family.v6_flags() {
                let dst = self.host_ip(v6);
                let port = match proto {
                    Proto::Icmp => None,
                    Proto::Udp => Some(sockets.bind_udp(dst, spec.udp_port)?),
                    Proto::Tcp => Some(sockets.bind_tcp(dst, spec.tcp_port)?),
                };
                flows.push(FlowStats {
                    proto,
                    family: Family::of(v6),
                    dst,
                    port,
                    sent: 0,
                    answered: 0,
                    bytes: 0,
                    answered_bytes: 0,
                    errors: 0,
                });
            }
        }
        let _responder = Responder::start(sockets);
        let started = Instant::now();
        let flows = self.in_netns(|| Generator::new(flows, spec)?.run())??;
        Ok(TrafficReport {
            lab: self.name().to_string(),
            elapsed_secs: started.elapsed().as_secs_f64(),
            flows,
        })
    }

    /// Sends `count` UDP datagrams (per family: `Both` sends `count` over
    /// each) from the namespace to the host end's `dst_port`, without waiting
    /// for anything. Returns how many left the namespace: a datagram the
    /// kernel could not take is retried, so this is `count` (or 2×) unless
    /// sending fails outright, which is an error.
    pub fn udp_send(
        &self,
        family: Family,
        dst_port: u16,
        payload_len: usize,
        count: u64,
    ) -> Result<u64> {
        if payload_len > MAX_PAYLOAD {
            return Err(LabError::InvalidSpec(format!(
                "payload_len must be at most {MAX_PAYLOAD}"
            )));
        }
        let dsts: Vec<SocketAddr> = family
            .v6_flags()
            .iter()
            .map(|&v6| SocketAddr::new(self.host_ip(v6), dst_port))
            .collect();
        self.in_netns(|| {
            let payload = vec![0x6eu8; payload_len];
            let mut sent = 0;
            for dst in dsts {
                let bind = SocketAddr::new(unspecified(dst.is_ipv6()), 0);
                let s = UdpSocket::bind(bind).map_err(|e| LabError::io("udp_send: bind", e))?;
                sock::recverr(&s, dst.is_ipv6())
                    .map_err(|e| LabError::io("udp_send: IP_RECVERR", e))?;
                for _ in 0..count {
                    send_retrying(|| s.send_to(&payload, dst))
                        .map_err(|e| LabError::io(format!("sending UDP to {dst}"), e))?;
                    sent += 1;
                }
            }
            Ok(sent)
        })?
    }

    /// Sends `count` ICMP echo requests (per family; `Both` pings both
    /// addresses) from the namespace to the host end and returns how many
    /// were answered (waiting up to 1 s for the last ones).
    pub fn ping(&self, family: Family, count: u64) -> Result<u64> {
        let spec = TrafficSpec {
            duration: None,
            pps: 1000,
            count: Some(count.saturating_mul(family.v6_flags().len() as u64)),
            protos: vec![Proto::Icmp],
            family,
            ..TrafficSpec::default()
        };
        Ok(self.traffic(&spec)?.total_answered())
    }
}
