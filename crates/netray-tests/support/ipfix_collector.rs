//! The tests' own IPFIX collectors for netray-cli (`top --ipfix`) and
//! netray-daemon (`[ipfix]`), included by `#[path]` from both (as promtool.rs
//! is): a UDP or TCP listener on 127.0.0.1 that keeps the messages as
//! received, and a generic RFC 7011 reader that decodes them the way a
//! collector does (templates learned from the stream, sequence numbers
//! checked).

#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    io::Read,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

/// Keeps every IPFIX message received on 127.0.0.1 (UDP datagrams, or the
/// messages of a TCP stream framed by their length field).
pub struct Listener {
    pub addr: SocketAddr,
    messages: Arc<Mutex<Vec<Vec<u8>>>>,
    pub connections: Arc<Mutex<u32>>,
    stop: Arc<AtomicBool>,
}

impl Listener {
    pub fn udp() -> Listener {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let l = Listener::new(s.local_addr().unwrap());
        let (m, stop) = (Arc::clone(&l.messages), Arc::clone(&l.stop));
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(n) = s.recv(&mut buf) {
                    m.lock().unwrap().push(buf[..n].to_vec());
                }
            }
        });
        l
    }

    pub fn tcp(addr: SocketAddr) -> Listener {
        let s = TcpListener::bind(addr).unwrap();
        s.set_nonblocking(true).unwrap();
        let l = Listener::new(s.local_addr().unwrap());
        let (m, stop, conns) = (Arc::clone(&l.messages), Arc::clone(&l.stop), Arc::clone(&l.connections));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((mut c, _)) = s.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                *conns.lock().unwrap() += 1;
                c.set_nonblocking(false).unwrap();
                c.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
                let mut stream = Vec::new();
                let mut buf = [0u8; 65536];
                // One connection at a time: netray opens one.
                loop {
                    match c.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => stream.extend_from_slice(&buf[..n]),
                        Err(_) if stop.load(Ordering::Relaxed) => break,
                        Err(_) => {}
                    }
                    while stream.len() >= 4 {
                        let len = u16::from_be_bytes([stream[2], stream[3]]) as usize;
                        assert!(len >= 16, "a message shorter than its header");
                        if stream.len() < len {
                            break;
                        }
                        m.lock().unwrap().push(stream.drain(..len).collect());
                    }
                }
            }
        });
        l
    }

    fn new(addr: SocketAddr) -> Listener {
        Listener {
            addr,
            messages: Arc::default(),
            connections: Arc::default(),
            stop: Arc::default(),
        }
    }

    pub fn messages(&self) -> Vec<Vec<u8>> {
        self.messages.lock().unwrap().clone()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A data record as a collector reads it: element ID → raw value.
#[derive(Debug, Clone)]
pub struct Rec {
    pub fields: BTreeMap<u16, Vec<u8>>,
    /// The header's sequence number and the record's index in its message.
    pub sequence: u32,
}

impl Rec {
    pub fn uint(&self, id: u16) -> u64 {
        self.fields.get(&id).map_or(0, |v| v.iter().fold(0, |a, b| a << 8 | u64::from(*b)))
    }

    pub fn addr(&self, v4: u16, v6: u16) -> IpAddr {
        match (self.fields.get(&v4), self.fields.get(&v6)) {
            (Some(a), _) => IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
            (_, Some(a)) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&a[..]).unwrap())),
            _ => panic!("a record without addresses: {self:?}"),
        }
    }

    pub fn key(&self) -> (IpAddr, IpAddr, u16, u8) {
        (self.addr(8, 27), self.addr(12, 28), self.uint(11) as u16, self.uint(4) as u8)
    }
}

/// Reads messages the way a collector does: checks each header, learns the
/// templates, decodes the data sets with them (a data set before its
/// template is an error), and checks that the sequence numbers count the
/// data records of the stream.
pub fn decode(messages: &[Vec<u8>]) -> Vec<Rec> {
    let be16 = |b: &[u8], o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
    let mut templates: BTreeMap<u16, Vec<(u16, u16)>> = BTreeMap::new();
    let mut out = Vec::new();
    let mut expected_seq: Option<u32> = None;
    for m in messages {
        assert_eq!(be16(m, 0), 10, "IPFIX version");
        assert_eq!(be16(m, 2) as usize, m.len(), "message length");
        let seq = u32::from_be_bytes(m[8..12].try_into().unwrap());
        if let Some(e) = expected_seq {
            assert_eq!(seq, e, "sequence number");
        }
        let mut records = 0u32;
        let mut off = 16;
        while off < m.len() {
            let (id, len) = (be16(m, off), be16(m, off + 2) as usize);
            assert!(len >= 4 && off + len <= m.len(), "set length {len} at {off}");
            let set = &m[off + 4..off + len];
            if id == 2 {
                let mut o = 0;
                while o + 4 <= set.len() {
                    let (tid, n) = (be16(set, o), be16(set, o + 2) as usize);
                    let fields = (0..n).map(|i| (be16(set, o + 4 + 4 * i), be16(set, o + 6 + 4 * i))).collect();
                    templates.insert(tid, fields);
                    o += 4 + 4 * n;
                }
            } else {
                let t = templates.get(&id).unwrap_or_else(|| panic!("data set {id} before its template"));
                let mut o = 0;
                while o < set.len() {
                    let mut fields = BTreeMap::new();
                    for &(fid, flen) in t {
                        let l = if flen == 0xFFFF {
                            o += 1;
                            set[o - 1] as usize
                        } else {
                            flen as usize
                        };
                        fields.insert(fid, set[o..o + l].to_vec());
                        o += l;
                    }
                    out.push(Rec { fields, sequence: seq + records });
                    records += 1;
                }
            }
            off += len;
        }
        expected_seq = Some(seq + records);
    }
    out
}
