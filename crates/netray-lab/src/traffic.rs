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

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::error::{LabError, Result};
use crate::icmp;
use crate::lab::Lab;
use crate::responder::{Responder, Sockets};
use crate::sock;

/// Run token + sequence number at the start of ICMP and UDP payloads.
pub const TAG_LEN: usize = 12;
/// Largest payload accepted (fits one IPv4 or IPv6 datagram with headers).
pub const MAX_PAYLOAD: usize = 65000;
/// How often a send is retried while the kernel reports no buffer space.
const SEND_RETRIES: u32 = 1000;

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

/// Sends, retrying while the kernel reports a transient condition (see
/// [`sock::transient`]): the packet did not leave, so sending again is right.
fn send_retrying(mut send: impl FnMut() -> io::Result<usize>) -> io::Result<usize> {
    let mut tries = 0;
    loop {
        match send() {
            Err(e) if sock::transient(&e) && tries < SEND_RETRIES => {
                tries += 1;
                std::thread::sleep(Duration::from_micros(100));
            }
            other => return other,
        }
    }
}

fn unspecified(v6: bool) -> IpAddr {
    if v6 {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    }
}

/// One TCP connection attempt.
struct TcpConn {
    sock: Socket,
    connected: bool,
    written: usize,
    read: usize,
}

enum Kind {
    Icmp { sock: Socket, id: u16 },
    Udp { sock: UdpSocket },
    Tcp { dst: SockAddr, conns: Vec<TcpConn> },
}

struct Flow {
    stats: FlowStats,
    kind: Kind,
    /// Which sequence numbers were answered (ICMP and UDP), to count once.
    answered: Vec<bool>,
}

/// Runs inside the namespace: owns the peer-side sockets and the schedule.
struct Generator<'a> {
    spec: &'a TrafficSpec,
    token: [u8; 8],
    flows: Vec<Flow>,
    buf: Vec<u8>,
}

impl<'a> Generator<'a> {
    fn new(stats: Vec<FlowStats>, spec: &'a TrafficSpec) -> Result<Self> {
        let mut rng = rand::rng();
        let token: [u8; 8] = rng.random();
        let id: u16 = rng.random();
        let mut flows = Vec::new();
        for s in stats {
            let v6 = s.dst.is_ipv6();
            let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
            let kind = match s.proto {
                Proto::Icmp => {
                    let proto = if v6 {
                        Protocol::ICMPV6
                    } else {
                        Protocol::ICMPV4
                    };
                    let sock = Socket::new(domain, Type::RAW, Some(proto))
                        .map_err(|e| LabError::privileged("opening a raw ICMP socket", e))?;
                    // Connected: only packets from the host end are received.
                    sock.connect(&SocketAddr::new(s.dst, 0).into())
                        .map_err(|e| {
                            LabError::io(format!("connecting ICMP socket to {}", s.dst), e)
                        })?;
                    sock::icmp_filter_replies(&sock, v6)
                        .map_err(|e| LabError::io("setting ICMP filter", e))?;
                    prepare(&sock, v6)?;
                    Kind::Icmp { sock, id }
                }
                Proto::Udp => {
                    let dst = SocketAddr::new(s.dst, s.port.unwrap_or(0));
                    let bind = SocketAddr::new(unspecified(v6), 0);
                    let sock = UdpSocket::bind(bind)
                        .map_err(|e| LabError::io("binding a UDP socket", e))?;
                    sock.connect(dst)
                        .map_err(|e| LabError::io(format!("connecting UDP socket to {dst}"), e))?;
                    prepare(&sock, v6)?;
                    Kind::Udp { sock }
                }
                Proto::Tcp => Kind::Tcp {
                    dst: SocketAddr::new(s.dst, s.port.unwrap_or(0)).into(),
                    conns: Vec::new(),
                },
            };
            flows.push(Flow {
                stats: s,
                kind,
                answered: Vec::new(),
            });
        }
        Ok(Generator {
            spec,
            token,
            flows,
            buf: vec![0u8; 65536 + 64],
        })
    }

    fn run(mut self) -> Result<Vec<FlowStats>> {
        let start = Instant::now();
        let pps = f64::from(self.spec.pps);
        let send_until = self.spec.duration.map(|d| start + d);
        let mut n: u64 = 0;
        let mut drain_until: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if drain_until.is_none() {
                loop {
                    let done = self.spec.count.is_some_and(|c| n >= c)
                        || send_until.is_some_and(|t| now >= t);
                    if done {
                        drain_until = Some(now + self.spec.timeout);
                        break;
                    }
                    if start + Duration::from_secs_f64(n as f64 / pps) > now {
                        break;
                    }
                    let i = (n % self.flows.len() as u64) as usize;
                    self.send(i);
                    n += 1;
                }
            }
            let wake = match drain_until {
                Some(t) if now >= t || self.complete() => break,
                Some(t) => t,
                None => {
                    let next = start + Duration::from_secs_f64(n as f64 / pps);
                    send_until.map_or(next, |t| next.min(t))
                }
            };
            self.wait(wake)?;
        }
        Ok(self.flows.into_iter().map(|f| f.stats).collect())
    }

    /// All sent packets answered and no TCP connection still going.
    fn complete(&self) -> bool {
        self.flows.iter().all(|f| match &f.kind {
            Kind::Tcp { conns, .. } => conns.is_empty(),
            _ => f.stats.answered == f.stats.sent,
        })
    }

    fn payload(&self, seq: u32) -> Vec<u8> {
        let mut p = vec![0x6eu8; self.spec.payload_len];
        if p.len() >= TAG_LEN {
            p[..8].copy_from_slice(&self.token);
            p[8..12].copy_from_slice(&seq.to_be_bytes());
        }
        p
    }

    fn send(&mut self, i: usize) {
        let seq = self.flows[i].stats.sent as u32;
        let payload = self.payload(seq);
        let flow = &mut self.flows[i];
        let result = match &mut flow.kind {
            Kind::Icmp { sock, id } => {
                let pkt = icmp::echo_request(flow.stats.dst.is_ipv6(), *id, seq as u16, &payload);
                send_retrying(|| sock.send(&pkt)).map(|_| payload.len())
            }
            Kind::Udp { sock } => send_retrying(|| sock.send(&payload)),
            Kind::Tcp { dst, conns } => start_connect(dst).map(|sock| {
                conns.push(TcpConn {
                    sock,
                    connected: false,
                    written: 0,
                    read: 0,
                });
                0
            }),
        };
        match result {
            Ok(bytes) => {
                flow.stats.sent += 1;
                flow.stats.bytes += bytes as u64;
                if !matches!(flow.kind, Kind::Tcp { .. }) {
                    flow.answered.push(false);
                }
            }
            Err(e) => {
                flow.stats.errors += 1;
                tracing::debug!(
                    "{} {}: send failed: {e}",
                    flow.stats.proto,
                    flow.stats.family
                );
            }
        }
    }

    /// Waits for answers until `deadline` and counts what arrived.
    fn wait(&mut self, deadline: Instant) -> Result<()> {
        let mut fds = Vec::new();
        for f in &self.flows {
            match &f.kind {
                Kind::Icmp { sock, .. } => fds.push(sock::pollfd(sock.as_raw_fd(), libc::POLLIN)),
                Kind::Udp { sock } => fds.push(sock::pollfd(sock.as_raw_fd(), libc::POLLIN)),
                Kind::Tcp { conns, .. } => fds.extend(conns.iter().map(|c| {
                    let out = !c.connected || c.written < self.spec.payload_len;
                    sock::pollfd(
                        c.sock.as_raw_fd(),
                        if out {
                            libc::POLLOUT | libc::POLLIN
                        } else {
                            libc::POLLIN
                        },
                    )
                })),
            }
        }
        sock::poll_until(&mut fds, deadline).map_err(|e| LabError::io("poll", e))?;
        if fds.iter().any(|p| p.revents != 0) {
            // Reads are non-blocking and cheap: just look at every flow.
            for i in 0..self.flows.len() {
                self.receive(i);
            }
        }
        Ok(())
    }

    fn receive(&mut self, i: usize) {
        let len = self.spec.payload_len;
        let token = self.token;
        let Generator { flows, buf, .. } = self;
        let flow = &mut flows[i];
        match &mut flow.kind {
            Kind::Icmp { sock, id } => {
                let v6 = flow.stats.dst.is_ipv6();
                while let Some(n) = read_some(|b| (&*sock).read(b), buf) {
                    if let Some(p) = icmp::echo_reply_payload(v6, *id, &buf[..n]) {
                        count_answer(&mut flow.stats, &mut flow.answered, &token, len, p);
                    }
                }
            }
            Kind::Udp { sock } => {
                while let Some(n) = read_some(|b| sock.recv(b), buf) {
                    count_answer(&mut flow.stats, &mut flow.answered, &token, len, &buf[..n]);
                }
            }
            Kind::Tcp { conns, .. } => {
                conns.retain_mut(|c| tcp_progress(c, &mut flow.stats, len, buf))
            }
        }
    }
}

fn prepare(sock: &impl AsRawFd, v6: bool) -> Result<()> {
    sock::big_rcvbuf(sock);
    sock::recverr(sock, v6).map_err(|e| LabError::io("setting IP_RECVERR", e))?;
    // SAFETY: F_SETFL/O_NONBLOCK on a socket we own.
    let fd = sock.as_raw_fd();
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(LabError::io(
            "setting O_NONBLOCK",
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// One non-blocking read; `None` when nothing is left to read. Errors other
/// than "would block" (e.g. a queued ICMP error on a connected socket) are
/// skipped, they do not end the run.
fn read_some(
    mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
    buf: &mut [u8],
) -> Option<usize> {
    for _ in 0..16 {
        match read(buf) {
            Ok(n) => return Some(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => continue,
        }
    }
    None
}

/// Counts an ICMP/UDP answer if it carries this run's tag for a sequence
/// number that was sent and not yet answered.
fn count_answer(
    stats: &mut FlowStats,
    answered: &mut [bool],
    token: &[u8; 8],
    len: usize,
    payload: &[u8],
) {
    if payload.len() != len || payload.len() < TAG_LEN || payload[..8] != token[..] {
        return;
    }
    let seq = u32::from_be_bytes([payload[8], payload[9], payload[10], payload[11]]) as usize;
    if let Some(slot) = answered.get_mut(seq) {
        if !*slot {
            *slot = true;
            stats.answered += 1;
            stats.answered_bytes += len as u64;
        }
    }
}

fn start_connect(dst: &SockAddr) -> io::Result<Socket> {
    let domain = if dst.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let sock = Socket::new(domain, Type::STREAM.nonblocking(), Some(Protocol::TCP))?;
    match sock.connect(dst) {
        Ok(()) => Ok(sock),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(sock),
        Err(e) => Err(e),
    }
}

/// Advances one TCP connection; false once it is finished (echo received,
/// refused, or failed).
fn tcp_progress(c: &mut TcpConn, stats: &mut FlowStats, len: usize, buf: &mut [u8]) -> bool {
    if !c.connected {
        match c.sock.take_error() {
            Ok(None) => {}
            _ => return false,
        }
        match c.sock.peer_addr() {
            Ok(_) => {
                c.connected = true;
                stats.answered += 1;
            }
            Err(_) => return true, // still connecting
        }
    }
    while c.written < len {
        let chunk = [0x6eu8; 4096];
        match (&c.sock).write(&chunk[..(len - c.written).min(chunk.len())]) {
            Ok(n) => {
                c.written += n;
                stats.bytes += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => return false,
        }
    }
    while c.read < len {
        match (&c.sock).read(buf) {
            Ok(0) => return false,
            Ok(n) => {
                c.read += n;
                stats.answered_bytes += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
    false
}
