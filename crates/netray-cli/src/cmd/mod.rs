//! One module per subcommand.

pub mod bench;
pub mod demo;
pub mod dump;
pub mod exec;
pub mod deny;
pub mod features;
pub mod firewall;
pub mod lab;
pub mod monitor;
pub mod top;

use std::path::PathBuf;

use netray_core::{dispatcher::FwCapacity, probe, PinDir};
use netray_firewall::Firewall;

/// Options every subcommand shares.
pub struct Context {
    pub pin_dir: Option<PathBuf>,
}

impl Context {
    /// The pin root, after checking that BPF can be used at all.
    pub fn pin(&self) -> anyhow::Result<PinDir> {
        probe::require_bpf()?;
        Ok(PinDir::resolve(self.pin_dir.as_deref())?)
    }

    pub fn firewall(&self, cap: FwCapacity) -> anyhow::Result<Firewall> {
        Ok(Firewall::new(self.pin()?, cap))
    }
}
