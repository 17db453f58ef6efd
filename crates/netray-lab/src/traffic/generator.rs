//! The generator's side of a traffic run, inside the lab namespace: one
//! socket (or set of TCP connections) per flow, the paced schedule, and the
//! matching of each answer to its request so that every count is exact.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use rand::Rng;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::{FlowStats, Proto, TrafficSpec, TAG_LEN};
use crate::error::{LabError, Result};
use crate::icmp;
use crate::sock;

/// How often a send is retried while the kernel reports no buffer space.
const SEND_RETRIES: u32 = 1000;

/// Sends, retrying while the kernel reports a transient condition (see
/// [`sock::transient`]): the packet did not leave, so sending again is right.
pub(super) fn send_retrying(mut send: impl FnMut() -> io::Result<usize>) -> io::Result<usize> {
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

pub(super) fn unspecified(v6: bool) -> IpAddr {
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
pub(super) struct Generator<'a> {
    spec: &'a TrafficSpec,
    token: [u8; 8],
    flows: Vec<Flow>,
    buf: Vec<u8>,
}

impl<'a> Generator<'a> {
    pub(super) fn new(stats: Vec<FlowStats>, spec: &'a TrafficSpec) -> Result<Self> {
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

    pub(super) fn run(mut self) -> Result<Vec<FlowStats>> {
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
