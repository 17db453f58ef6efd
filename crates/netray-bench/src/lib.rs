//! Benchmarks of netray's kernel programs. Every figure is measured in the
//! same run as its baseline (an empty program), so the ratios mean something
//! on any machine.

pub mod capture;
pub mod ipfix;
pub mod rulegen;
pub mod tc;
pub mod xdp;

use anyhow::Context as _;
use libbpf_rs::{ProgramInput, ProgramMut};

/// Per-packet time of `prog` on `frame` with BPF_PROG_TEST_RUN: the fastest
/// of `rounds` calls of `repeat` runs each. Noise on a shared machine (other
/// tasks, the hypervisor) only ever adds time, so the fastest round is the
/// closest to the program's own cost; a median still carries the noise.
pub fn best_of(
    prog: &ProgramMut<'_>,
    frame: &[u8],
    repeat: u32,
    rounds: usize,
) -> anyhow::Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..rounds.max(1) {
        let input = ProgramInput { data_in: Some(frame), repeat, ..Default::default() };
        let out = prog.test_run(input).context("BPF_PROG_TEST_RUN")?;
        best = best.min(out.duration.as_nanos() as f64);
    }
    Ok(best)
}
