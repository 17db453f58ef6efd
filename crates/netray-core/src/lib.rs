//! netray's loader, attach and maps layer.
//!
//! Everything that talks to the bpf() syscall on behalf of more than one
//! feature lives here: where state is pinned ([`PinDir`]), how an interface
//! is named ([`Interface`]), the per-interface XDP dispatcher that composes
//! the features ([`dispatcher`]), typed access to pinned maps ([`maps`]) and
//! the checks that turn "permission denied" into an actionable message
//! ([`probe`]).

pub mod clock;
pub mod dispatcher;
pub mod error;
pub mod iface;
pub mod if_stats;
pub mod link;
pub mod maps;
pub mod names;
pub mod pin;
pub mod probe;
pub mod tc;

pub use dispatcher::{AttachMode, Dispatcher, DispatcherStatus, Feature};
pub use tc::Hook;
pub use error::{Error, Result};
pub use iface::Interface;
pub use pin::{PinDir, PinLock};
