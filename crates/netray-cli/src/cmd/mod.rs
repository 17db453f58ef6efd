//! One module per subcommand.

pub mod allow;
pub mod bench;
pub mod completions;
pub mod demo;
pub mod drops;
pub mod dump;
pub mod dump_args;
pub mod dump_interfaces;
pub mod exec;
pub mod deny;
pub mod features;
pub mod firewall;
pub mod iface_watch;
pub mod lab;
pub mod limit;
pub mod man;
pub mod monitor;
pub mod top;

use std::path::PathBuf;

use netray_core::{probe, PinDir};
use netray_firewall::{Firewall, FwCapacity};

/// Options every subcommand shares.
pub struct Context {
    pub pin_dir: Option<PathBuf>,
}

impl Context {
    /// The pin root, after checking that BPF can be used at all. Every
    /// command that loads a dispatcher comes here first: the firewall is
    /// made the owner of the tables dispatchers share (see
    /// netray_core::tables) here.
    pub fn pin(&self) -> anyhow::Result<PinDir> {
        probe::require_bpf()?;
        netray_firewall::tables::register();
        Ok(PinDir::resolve(self.pin_dir.as_deref())?)
    }

    /// The pin root for a command that only reads: a root that does not
    /// exist is not created (see PinDir::resolve_read_only).
    pub fn pin_read_only(&self) -> anyhow::Result<PinDir> {
        probe::require_bpf()?;
        netray_firewall::tables::register();
        Ok(PinDir::resolve_read_only(self.pin_dir.as_deref())?)
    }

    /// The firewall for reading (list, status): creates nothing.
    pub fn read_only_firewall(&self) -> anyhow::Result<Firewall> {
        Ok(Firewall::open(self.pin_read_only()?))
    }

    /// The firewall, its tables (if it creates them) of the default size.
    pub fn firewall(&self) -> anyhow::Result<Firewall> {
        Ok(Firewall::open(self.pin()?))
    }

    /// The firewall, its tables (if it creates them) of size `cap`.
    pub fn sized_firewall(&self, cap: FwCapacity) -> anyhow::Result<Firewall> {
        Ok(Firewall::new(self.pin()?, cap))
    }
}
