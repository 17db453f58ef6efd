//! The filter expression for netray's own drops. The dispatcher's event keeps
//! no bytes, only what it parsed; the headers are rebuilt from it (Ethernet,
//! IPv4/IPv6, the ports or ICMP type and code, zeros for what it did not keep,
//! padded to the frame's length) and libpcap's program is run over them in
//! userspace, as the kernel runs it over the kernel's drops.

use std::net::IpAddr;

use netray_pcapfilter::{interpret, CbpfInsn};

use crate::DropEvent;

/// Whether `ev` (one of netray's drops) matches the compiled filter `prog`.
pub fn matches(prog: &[CbpfInsn], ev: &DropEvent) -> bool {
    if !ev.data.is_empty() {
        return interpret(prog, &ev.data, ev.len) != 0;
    }
    let frame = rebuild(ev);
    interpret(prog, &frame, ev.len.max(frame.len() as u32)) != 0
}

fn rebuild(ev: &DropEvent) -> Vec<u8> {
    let proto = match ev.proto.as_deref() {
        Some("tcp") => 6,
        Some("udp") => 17,
        Some("icmp") => 1,
        Some("icmp6") | Some("icmpv6") => 58,
        Some("sctp") => 132,
        _ => 0,
    };
    let mut f = vec![0u8; 12];
    match (ev.src, ev.dst) {
        (Some(IpAddr::V4(s)), Some(IpAddr::V4(d))) => {
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
            let total = ev.len.saturating_sub(14).min(u16::MAX.into()) as u16;
            f.extend_from_slice(&total.to_be_bytes());
            f.extend_from_slice(&[0, 0, 0, 0, 64, proto, 0, 0]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        (Some(IpAddr::V6(s)), Some(IpAddr::V6(d))) => {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            let payload = ev.len.saturating_sub(54).min(u16::MAX.into()) as u16;
            f.extend_from_slice(&payload.to_be_bytes());
            f.extend_from_slice(&[proto, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        _ => return f,
    }
    let mut l4 = [0u8; 20];
    if let (Some(sp), Some(dp)) = (ev.sport, ev.dport) {
        l4[0..2].copy_from_slice(&sp.to_be_bytes());
        l4[2..4].copy_from_slice(&dp.to_be_bytes());
    }
    if proto == 6 {
        l4[12] = 5 << 4;
    }
    f.extend_from_slice(&l4);
    if (f.len() as u32) < ev.len {
        f.resize(ev.len as usize, 0);
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(dport: u16) -> DropEvent {
        // A DropEvent with no bytes, and the fields the dispatcher's event has.
        let mut ev = DropEvent::kernel(std::time::SystemTime::now(), "x".into(), 1, String::new(), None, String::new(), None, 47, Vec::new());
        ev.src = Some("198.18.0.2".parse().unwrap());
        ev.dst = Some("198.18.0.1".parse().unwrap());
        ev.sport = Some(40000);
        ev.dport = Some(dport);
        ev.proto = Some("udp".into());
        ev
    }

    #[test]
    fn rebuilt_headers_match_as_the_packet_would() {
        let prog = netray_pcapfilter::compile("udp port 9999 and src host 198.18.0.2 and greater 40", 65535).unwrap();
        assert!(matches(&prog, &own(9999)));
        assert!(!matches(&prog, &own(7777)));
        let tcp = netray_pcapfilter::compile("tcp", 65535).unwrap();
        assert!(!matches(&tcp, &own(9999)));
    }
}
