//! The generator: frames sent from the lab's namespace by BPF_PROG_TEST_RUN with live
//! frames, paced by a thread.

use std::{
    ffi::CString,
    os::fd::{AsFd, AsRawFd, OwnedFd},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use netray_ebpf::abi::xdp_md;
use netray_lab::Lab;

use super::{link_create, Programs, DST_PORT, SRC_PORT};

pub(super) struct Generated {
    pub(super) sent: u64,
    pub(super) elapsed: Duration,
}

impl Generated {
    pub(super) fn achieved_pps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.sent as f64 / secs
        } else {
            0.0
        }
    }
}

/// bench_dump_gen (bench_dump.bpf.c), run with live frames on the peer end: each frame
/// goes out of the interface the run names as ingress, the peer end.
///
/// The program is also attached at XDP to the peer end for as long as the generator
/// lives. A test run with `repeat > 1` puts its program into the kernel's XDP dispatcher
/// and takes it out again at the end, and each change waits for an RCU grace period:
/// about 24 ms per call here, whatever the repeat count (17 calls a second). A program
/// already attached somewhere is in the dispatcher, so the calls skip that and cost
/// ~13 us plus ~0.35 us per frame. Nothing reaches the peer end (the host end drops
/// every frame and the lab is quiet); anything that did would be sent back to the host end.
pub(super) struct Generator {
    prog: OwnedFd,
    peer_ifindex: u32,
    _attached: OwnedFd,
}

impl Generator {
    pub(super) fn new(lab: &Lab, programs: &Programs) -> anyhow::Result<Generator> {
        let peer = lab.peer_if().to_string();
        let peer_ifindex = lab
            .in_netns(move || ifindex(&peer))
            .context("entering the lab's namespace")??;
        let prog = programs.generator.try_clone().context("duplicating the generator's fd")?;
        let attached = lab
            .in_netns(|| {
                link_create(
                    prog.as_fd(),
                    peer_ifindex,
                    libbpf_sys::BPF_XDP,
                    libbpf_sys::XDP_FLAGS_DRV_MODE,
                )
            })
            .context("entering the lab's namespace")?
            .with_context(|| {
                format!(
                    "attaching the generator program to {} (see Generator)",
                    lab.peer_if()
                )
            })?;
        Ok(Generator {
            prog,
            peer_ifindex,
            _attached: attached,
        })
    }

    /// Sends `count` frames in one test run; call from inside the lab's namespace.
    pub(super) fn send(&self, frame: &[u8], count: u32) -> anyhow::Result<()> {
        let ctx = xdp_md {
            data_end: frame.len() as u32,
            ingress_ifindex: self.peer_ifindex,
            ..Default::default()
        };
        let mut opts = libbpf_sys::bpf_test_run_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _,
            data_in: frame.as_ptr().cast(),
            data_size_in: frame.len() as u32,
            ctx_in: (&ctx as *const xdp_md).cast(),
            ctx_size_in: std::mem::size_of::<xdp_md>() as u32,
            repeat: count as i32,
            flags: libbpf_sys::BPF_F_TEST_XDP_LIVE_FRAMES,
            ..Default::default()
        };
        // SAFETY: opts is sized and initialised; data_in and ctx_in point at live values of the
        // given sizes for the duration of the call; no output buffers are given.
        let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(self.prog.as_raw_fd(), &mut opts) };
        if rc != 0 {
            let err = std::io::Error::from_raw_os_error(-rc);
            bail!(
                "BPF_PROG_TEST_RUN with live frames ({} bytes x {count}) failed: {err}",
                frame.len()
            );
        }
        Ok(())
    }

    /// Sends frames at `rate` per second for `dur`: whenever at least `min(batch, rate/1000)`
    /// frames are due, one test run sends them (at most `batch`). Call inside the namespace.
    pub(super) fn paced(
        &self,
        frame: &[u8],
        rate: u64,
        batch: u32,
        dur: Duration,
        abort: &AtomicBool,
    ) -> anyhow::Result<Generated> {
        let chunk = (rate / 1000).clamp(1, u64::from(batch));
        let total = (rate as f64 * dur.as_secs_f64()) as u64;
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < total && !abort.load(Ordering::Relaxed) {
            let elapsed = start.elapsed();
            if elapsed > dur + Duration::from_secs(2) {
                break; // far behind: the generator cannot reach the rate
            }
            let due = ((rate as f64 * elapsed.as_secs_f64()) as u64).min(total);
            let owed = due.saturating_sub(sent);
            if owed >= chunk || (due == total && owed > 0) {
                let n = owed.min(u64::from(batch)) as u32;
                self.send(frame, n)?;
                sent += u64::from(n);
            } else {
                // Sleep until the next chunk is due.
                let next = Duration::from_secs_f64((sent + chunk) as f64 / rate as f64);
                if let Some(wait) = next.checked_sub(elapsed) {
                    std::thread::sleep(wait.min(Duration::from_millis(2)));
                }
            }
        }
        // The rate achieved: the frames sent over the time it took (the step's length at best).
        let elapsed = start
            .elapsed()
            .max(dur.mul_f64(sent as f64 / total.max(1) as f64));
        Ok(Generated { sent, elapsed })
    }
}

pub(super) fn ifindex(name: &str) -> anyhow::Result<u32> {
    let c = CString::new(name)?;
    // SAFETY: c is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        bail!("no interface {name}: {}", std::io::Error::last_os_error());
    }
    Ok(idx)
}

/// Ethernet / IPv4 / UDP from the peer end to the host end, `len` bytes in all.
pub(super) fn build_frame(lab: &Lab, len: usize) -> anyhow::Result<Vec<u8>> {
    let payload = vec![0x5a; len - 14 - 20 - 8];
    let builder = etherparse::PacketBuilder::ethernet2(lab.peer_mac(), lab.host_mac())
        .ipv4(lab.peer_v4().octets(), lab.host_v4().octets(), 64)
        .udp(SRC_PORT, DST_PORT);
    let mut frame = Vec::with_capacity(len);
    builder
        .write(&mut frame, &payload)
        .context("building the test frame")?;
    debug_assert_eq!(frame.len(), len);
    Ok(frame)
}
