//! Small socket helpers shared by the traffic generator and the responder:
//! options that socket2 does not cover, and `ppoll` with a deadline.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

/// Receive buffer for echo traffic: large, so that a burst is never dropped
/// by our own sockets (answered counts must reflect the network, not us).
pub(crate) const RCVBUF: i32 = 4 << 20;

fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: passes a valid pointer to an int of the stated size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets a big receive buffer, beyond `net.core.rmem_max` (we are root).
pub(crate) fn big_rcvbuf(sock: &impl AsRawFd) {
    let fd = sock.as_raw_fd();
    if setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RCVBUF).is_err() {
        let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, RCVBUF);
    }
}

/// Turns on IP_RECVERR / IPV6_RECVERR. Without it, Linux reports a datagram
/// the veth could not take (ENOBUFS) as sent; with it, we see it and retry,
/// which is what makes "sent" counts exact.
pub(crate) fn recverr(sock: &impl AsRawFd, v6: bool) -> io::Result<()> {
    let fd = sock.as_raw_fd();
    if v6 {
        setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVERR, 1)
    } else {
        setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_RECVERR, 1)
    }
}

/// Lets only echo replies through to a raw ICMP socket: it would otherwise
/// receive a copy of every ICMP packet arriving in the namespace.
pub(crate) fn icmp_filter_replies(sock: &impl AsRawFd, v6: bool) -> io::Result<()> {
    let fd = sock.as_raw_fd();
    if v6 {
        // struct icmp6_filter: a set bit blocks that type.
        let mut filter = [u32::MAX; 8];
        let t = usize::from(crate::icmp::ECHO_REPLY_V6);
        filter[t >> 5] &= !(1u32 << (t & 31));
        // SAFETY: passes a valid pointer to the 32-byte filter.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_ICMPV6,
                1, /* ICMP6_FILTER */
                filter.as_ptr().cast(),
                32,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    } else {
        // ICMP_FILTER on SOL_RAW: a set bit blocks that type.
        let mask = !(1u32 << crate::icmp::ECHO_REPLY_V4);
        setsockopt_int(fd, libc::SOL_RAW, 1 /* ICMP_FILTER */, mask as i32)
    }
}

/// Errors after which sending the same packet again is right: the packet
/// did not leave (no buffer / device queue full), or a pending ICMP error
/// from an earlier packet was reported on this send instead of the send
/// itself failing.
pub(crate) fn transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOBUFS)
            | Some(libc::EAGAIN)
            | Some(libc::EINTR)
            | Some(libc::ECONNREFUSED)
            | Some(libc::EHOSTUNREACH)
            | Some(libc::ENETUNREACH)
    )
}

/// `ppoll` until `deadline` (or an event). Returns the revents per fd.
pub(crate) fn poll_until(fds: &mut [libc::pollfd], deadline: Instant) -> io::Result<()> {
    let wait = deadline.saturating_duration_since(Instant::now());
    let ts = libc::timespec {
        tv_sec: wait.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(wait.subsec_nanos() as i32),
    };
    // SAFETY: fds is a valid slice of pollfd, ts a valid timespec.
    let rc = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

pub(crate) fn pollfd(fd: RawFd, events: i16) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}
