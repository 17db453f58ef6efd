//! The sender thread: takes records from the queue, encodes them and sends
//! them to the collector over UDP or TCP.
//!
//! - UDP: one socket for the exporter's life; the template set goes in the
//!   first message and again every `template_refresh` or every
//!   `template_refresh_records` data records (RFC 7011 section 8.4), since a
//!   collector that starts later, or lost a datagram, needs it to decode.
//!   A send that fails (e.g. the collector's port is closed and the kernel
//!   reported ICMP port unreachable) loses that message's records, counted.
//! - TCP: the template set first on each connection (RFC 7011 section 8.3),
//!   sequence numbers from 0 per connection. A failed connect is retried
//!   with exponential backoff (1 s doubling to 30 s); a write that fails or
//!   blocks past the write timeout closes the connection (a partial message
//!   would corrupt the stream) and its records count as not sent. While
//!   there is no connection the queue fills, and then drops, counted.

use std::{
    io::Write,
    net::{SocketAddr, TcpStream, UdpSocket},
    sync::{atomic::Ordering::Relaxed, Arc},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crate::{
    config::{ExportConfig, Transport},
    counters::Counters,
    encode::Encoder,
    queue::Queue,
    record::Record,
};

const UDP_MESSAGE: usize = 1400;
const TCP_MESSAGE: usize = 16384;
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Records taken from the queue at once.
const BATCH: usize = 512;

enum Link {
    Udp(UdpSocket),
    Tcp(Option<TcpStream>),
}

pub struct Sender {
    cfg: ExportConfig,
    addr: SocketAddr,
    queue: Arc<Queue>,
    counters: Arc<Counters>,
    link: Link,
    encoder: Encoder,
    last_template: Option<Instant>,
    records_since_template: u64,
    next_connect: Instant,
    backoff: Duration,
}

fn export_secs() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32)
}

impl Sender {
    /// A UDP socket is opened at once (so a bad address fails early); a TCP
    /// connection is made by the thread.
    pub fn new(cfg: ExportConfig, addr: SocketAddr, queue: Arc<Queue>, counters: Arc<Counters>) -> std::io::Result<Sender> {
        let (link, max) = match cfg.transport {
            Transport::Udp => {
                let local: SocketAddr = if addr.is_ipv6() { "[::]:0".parse().unwrap() } else { "0.0.0.0:0".parse().unwrap() };
                let s = UdpSocket::bind(local)?;
                s.connect(addr)?;
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                counters.connected.store(1, Relaxed);
                (Link::Udp(s), UDP_MESSAGE)
            }
            Transport::Tcp => (Link::Tcp(None), TCP_MESSAGE),
        };
        Ok(Sender {
            encoder: Encoder::new(cfg.domain_id, max),
            cfg,
            addr,
            queue,
            counters,
            link,
            last_template: None,
            records_since_template: 0,
            next_connect: Instant::now(),
            backoff: BACKOFF_FIRST,
        })
    }

    /// Runs until the queue is closed and drained (or, with no connection
    /// to the collector, until closed: what is left is counted as dropped
    /// at exit by the exporter).
    pub fn run(mut self) {
        loop {
            if !self.connected() && !self.try_connect() {
                if self.queue.is_closed() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            let Some(batch) = self.queue.pop(BATCH, Duration::from_millis(200)) else { return };
            self.counters.queued.store(self.queue.len() as u64, Relaxed);
            if !batch.is_empty() {
                self.send(&batch);
            }
        }
    }

    fn connected(&self) -> bool {
        match &self.link {
            Link::Udp(_) => true,
            Link::Tcp(s) => s.is_some(),
        }
    }

    fn try_connect(&mut self) -> bool {
        if Instant::now() < self.next_connect {
            return false;
        }
        match TcpStream::connect_timeout(&self.addr, IO_TIMEOUT) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                let _ = s.set_write_timeout(Some(IO_TIMEOUT));
                self.link = Link::Tcp(Some(s));
                self.encoder = Encoder::new(self.cfg.domain_id, TCP_MESSAGE);
                self.backoff = BACKOFF_FIRST;
                Counters::add(&self.counters.connects, 1);
                self.counters.connected.store(1, Relaxed);
                let t = self.encoder.template_message(export_secs());
                if self.write(&t) {
                    Counters::add(&self.counters.templates_sent, 1);
                    true
                } else {
                    false
                }
            }
            Err(_) => {
                Counters::add(&self.counters.connect_failures, 1);
                self.next_connect = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                false
            }
        }
    }

    fn template_due(&self) -> bool {
        match self.link {
            Link::Tcp(_) => false,
            Link::Udp(_) => self.last_template.is_none_or(|t| t.elapsed() >= self.cfg.template_refresh)
                || self.records_since_template >= self.cfg.template_refresh_records,
        }
    }

    fn send(&mut self, records: &[Record]) {
        let with_template = self.template_due();
        let seq = self.encoder.sequence();
        let messages = self.encoder.messages(records, export_secs(), with_template);
        if with_template {
            self.last_template = Some(Instant::now());
            self.records_since_template = 0;
        }
        // Records per message, from the sequence numbers.
        let mut first = seq;
        for (i, m) in messages.iter().enumerate() {
            let next = messages.get(i + 1).map_or(self.encoder.sequence(), |n| u32::from_be_bytes(n[8..12].try_into().unwrap()));
            let n = u64::from(next.wrapping_sub(first));
            first = next;
            if self.connected() && self.write(m) {
                Counters::add(&self.counters.records_sent, n);
                Counters::add(&self.counters.messages_sent, 1);
                Counters::add(&self.counters.bytes_sent, m.len() as u64);
                if with_template && i == 0 {
                    Counters::add(&self.counters.templates_sent, 1);
                }
                self.records_since_template += n;
            } else {
                Counters::add(&self.counters.dropped_send_failed, n);
            }
        }
    }

    /// Writes one message; on TCP, a failure closes the connection.
    fn write(&mut self, m: &[u8]) -> bool {
        match &mut self.link {
            Link::Udp(s) => s.send(m).is_ok(),
            Link::Tcp(Some(s)) => {
                if s.write_all(m).is_ok() {
                    return true;
                }
                self.link = Link::Tcp(None);
                self.counters.connected.store(0, Relaxed);
                self.next_connect = Instant::now() + self.backoff;
                false
            }
            Link::Tcp(None) => false,
        }
    }
}
