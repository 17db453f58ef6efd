//! Benchmarks of netray's kernel programs. Every figure is measured in the
//! same run as its baseline (an empty program), so the ratios mean something
//! on any machine.

pub mod capture;
pub mod rulegen;
pub mod tc;
pub mod xdp;
