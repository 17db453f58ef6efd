//! The packet monitor: the dispatcher writes one metadata record per packet
//! into its interface's ring buffer; [`MonitorSession`] switches that on,
//! reads the ring and hands out decoded [`PacketEvent`]s.

mod event;
mod session;

pub use event::{PacketEvent, Verdict};
pub use session::{MonitorSession, MonitorStats};
