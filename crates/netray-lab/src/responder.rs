//! The host side of generated traffic: a UDP echo and a TCP echo bound to
//! the lab's host addresses in the root namespace, on one thread, for as long
//! as a [`Responder`] lives. (ICMP echo is answered by the kernel.)

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::error::{LabError, Result};
use crate::sock;

/// How often the responder thread checks whether it should stop.
const TICK: Duration = Duration::from_millis(20);

pub(crate) struct Responder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The sockets to serve; made by the caller so bind errors surface there and
/// the ports are known before any packet is sent.
#[derive(Default)]
pub(crate) struct Sockets {
    pub udp: Vec<UdpSocket>,
    pub tcp: Vec<TcpListener>,
}

impl Sockets {
    pub fn bind_udp(&mut self, addr: IpAddr, port: u16) -> Result<u16> {
        let sa = SocketAddr::new(addr, port);
        let s = UdpSocket::bind(sa).map_err(|e| bind_error("UDP", sa, e))?;
        sock::big_rcvbuf(&s);
        s.set_nonblocking(true)
            .map_err(|e| LabError::io("UDP echo: set_nonblocking", e))?;
        let port = s
            .local_addr()
            .map_err(|e| LabError::io("UDP echo: local_addr", e))?
            .port();
        self.udp.push(s);
        Ok(port)
    }

    pub fn bind_tcp(&mut self, addr: IpAddr, port: u16) -> Result<u16> {
        let sa = SocketAddr::new(addr, port);
        let s = Socket::new(Domain::for_address(sa), Type::STREAM, Some(Protocol::TCP))
            .map_err(|e| LabError::io("TCP echo: socket", e))?;
        s.set_reuse_address(true)
            .map_err(|e| LabError::io("TCP echo: SO_REUSEADDR", e))?;
        s.bind(&sa.into()).map_err(|e| bind_error("TCP", sa, e))?;
        // A deep accept queue: at high rates connects must not be dropped
        // just because this thread was a little late to accept.
        s.listen(4096)
            .map_err(|e| LabError::io("TCP echo: listen", e))?;
        s.set_nonblocking(true)
            .map_err(|e| LabError::io("TCP echo: set_nonblocking", e))?;
        let l: TcpListener = s.into();
        let port = l
            .local_addr()
            .map_err(|e| LabError::io("TCP echo: local_addr", e))?
            .port();
        self.tcp.push(l);
        Ok(port)
    }
}

fn bind_error(proto: &str, sa: SocketAddr, e: io::Error) -> LabError {
    let hint = if e.kind() == io::ErrorKind::AddrInUse {
        " — is another traffic run using this lab? choose another port"
    } else {
        ""
    };
    LabError::io(
        format!("binding the {proto} echo responder to {sa}{hint}"),
        e,
    )
}

impl Responder {
    pub fn start(sockets: Sockets) -> Responder {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("netray-lab-echo".into())
            .spawn(move || serve(sockets, &flag))
            .ok();
        if thread.is_none() {
            tracing::warn!("could not start the echo responder thread");
        }
        Responder { stop, thread }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An accepted connection and the bytes still to echo back.
struct Conn {
    stream: TcpStream,
    pending: Vec<u8>,
    eof: bool,
}

fn serve(sockets: Sockets, stop: &AtomicBool) {
    let mut conns: Vec<Conn> = Vec::new();
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        fds.extend(
            sockets
                .udp
                .iter()
                .map(|s| sock::pollfd(s.as_raw_fd(), libc::POLLIN)),
        );
        fds.extend(
            sockets
                .tcp
                .iter()
                .map(|s| sock::pollfd(s.as_raw_fd(), libc::POLLIN)),
        );
        for c in &conns {
            let events = if c.pending.is_empty() {
                libc::POLLIN
            } else {
                libc::POLLOUT
            };
            fds.push(sock::pollfd(c.stream.as_raw_fd(), events));
        }
        if sock::poll_until(&mut fds, Instant::now() + TICK).is_err() {
            std::thread::sleep(TICK);
        }
        for s in &sockets.udp {
            echo_udp(s, &mut buf);
        }
        for l in &sockets.tcp {
            while let Ok((stream, _)) = l.accept() {
                if stream.set_nonblocking(true).is_ok() {
                    conns.push(Conn {
                        stream,
                        pending: Vec::new(),
                        eof: false,
                    });
                }
            }
        }
        conns.retain_mut(|c| echo_tcp(c, &mut buf));
    }
}

/// Echoes every queued datagram back to its sender.
fn echo_udp(s: &UdpSocket, buf: &mut [u8]) {
    while let Ok((n, from)) = s.recv_from(buf) {
        for _ in 0..100 {
            match s.send_to(&buf[..n], from) {
                Err(e) if sock::transient(&e) => std::thread::sleep(Duration::from_micros(100)),
                _ => break,
            }
        }
    }
}

/// Reads what is there and writes it back; false once the connection is done.
fn echo_tcp(c: &mut Conn, buf: &mut [u8]) -> bool {
    if c.pending.is_empty() && !c.eof {
        match c.stream.read(buf) {
            Ok(0) => c.eof = true,
            Ok(n) => c.pending.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return false,
        }
    }
    while !c.pending.is_empty() {
        match c.stream.write(&c.pending) {
            Ok(n) => {
                c.pending.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
    !c.eof
}
