//! `netray bench dump` at a low rate: the generator sends exactly what it is asked
//! to, every frame arrives, and netray and tcpdump each write every one to their file.
//! Needs root, a kernel with BPF_F_TEST_XDP_LIVE_FRAMES and tcpdump.

use std::{sync::atomic::AtomicBool, sync::Arc, time::Duration};

use netray_bench::capture::{self, DumpBenchOptions, Tool};

#[test]
fn low_rate_is_captured_whole() {
    assert!(
        nix_is_root(),
        "this test needs root (it creates a lab and attaches programs)"
    );
    // The generator is BPF_PROG_TEST_RUN with live frames: where the kernel
    // refuses them the benchmark cannot run. Said past the test harness's
    // output capture, so `make test` shows it.
    if let Some(c) = netray_core::probe::capabilities().into_iter().find(|c| c.name == "live_frames" && !c.available) {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "NOT RUN low_rate_is_captured_whole: this kernel lacks live_frames ({}), the traffic generator of `netray bench dump`",
            c.detail
        );
        return;
    }
    let dir = std::path::PathBuf::from("/var/tmp"); // a disk, not tmpfs
    let opts = DumpBenchOptions {
        frame_sizes: vec![64, 1500],
        rates: vec![20_000],
        step: Duration::from_millis(250),
        batch: 64,
        dir,
        ring_bytes: netray_capture::CaptureSpec::DEFAULT_RING_BYTES,
        baseline: true,
        abort: Arc::new(AtomicBool::new(false)),
    };
    let mut seen = 0;
    let report = capture::run(&opts, &mut |_| seen += 1).unwrap_or_else(|e| {
        panic!("the benchmark could not run (is tcpdump installed? are we root?): {e:#}")
    });
    assert_eq!(
        seen, 6,
        "baseline, netray and tcpdump for each of two frame sizes"
    );
    assert_eq!(report.steps.len(), 6);
    for s in &report.steps {
        let what = format!("{} at {} bytes: {s:?}", s.tool.name(), s.frame_len);
        assert_eq!(
            s.generated, 5_000,
            "the generator sends exactly rate x duration: {what}"
        );
        assert_eq!(
            s.arrived, s.generated,
            "every frame reaches the host end: {what}"
        );
        assert_eq!(
            s.delivered, s.generated,
            "every frame passes the taps to the drop program: {what}"
        );
        assert!(
            !s.generator_limited,
            "20 kpps is well within the generator's reach: {what}"
        );
        match s.tool {
            Tool::None => assert_eq!(s.captured, 0, "{what}"),
            _ => {
                assert_eq!(
                    s.captured, s.generated,
                    "every frame is in the file: {what}"
                );
                assert_eq!(s.reported_lost, 0, "{what}");
                assert!(
                    s.file_bytes > s.captured * s.frame_len as u64,
                    "the file holds the frames: {what}"
                );
            }
        }
        assert!(s.lossless(), "{what}");
    }
    for b in &report.best {
        assert_eq!(
            (b.netray_pps, b.tcpdump_pps, b.ratio),
            (Some(20_000), Some(20_000), Some(1.0)),
            "{b:?}"
        );
    }
    // Nothing is left behind.
    let pins = format!("/sys/fs/bpf/netray-bench-{}", std::process::id());
    assert!(
        !std::path::Path::new(&pins).exists(),
        "{pins} was not removed"
    );
    let files =
        std::path::Path::new("/var/tmp").join(format!("netray-bench-dump-{}", std::process::id()));
    assert!(!files.exists(), "{} was not removed", files.display());
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
