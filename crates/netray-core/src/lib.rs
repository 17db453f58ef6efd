//! netray's loader, attach and maps layer.
//!
//! Everything that talks to the bpf() syscall on behalf of more than one
//! feature lives here: where state is pinned ([`PinDir`]) and where each map
//! goes in it ([`map_pins`], names in [`map_names`]), who owns the tables
//! shared by every interface ([`tables`]), how an interface is named
//! ([`Interface`]), the per-interface XDP dispatcher that composes the
//! features ([`dispatcher`], [`feature`], attached by [`xdp`]) and its TC
//! programs ([`tc`]), typed access to pinned maps ([`maps`]) and the checks
//! that turn "permission denied" into an actionable message ([`probe`]).

pub mod clock;
pub mod dispatcher;
pub mod error;
pub mod feature;
pub mod iface;
pub mod if_stats;
pub mod link;
pub mod map_names;
pub mod map_pins;
pub mod maps;
pub mod names;
pub mod pin;
pub mod probe;
pub mod tables;
pub mod tc;
pub mod xdp;

pub use dispatcher::{Dispatcher, DispatcherStatus};
pub use error::{Error, Result};
pub use feature::Feature;
pub use iface::Interface;
pub use pin::{PinDir, PinLock};
pub use tc::Hook;
pub use xdp::AttachMode;
