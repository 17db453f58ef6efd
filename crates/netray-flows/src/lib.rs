//! Flow accounting: the XDP dispatcher counts packets and bytes per flow
//! (interface, direction, protocol, addresses, ports) in a per-interface LRU
//! per-CPU hash when the flows feature is on (bpf/include/flows.h).
//!
//! - [`FlowSession`]: switches the feature on for an interface and off again
//!   (also on drop), and reads [`Snapshot`]s.
//! - [`table`]: the kernel's table read from userspace: per-CPU values summed
//!   with the counts pending in the per-CPU flow caches, exact cumulative
//!   packets and bytes per flow, and the eviction count (`inserts - entries`,
//!   see [`table`]).
//! - [`snapshot`]: rates between snapshots, sorting, top-K, the JSON form.
//! - [`conversation`]: the two directions of a connection paired into one
//!   row (as iftop shows them), and conversations grouped by service port.
//! - [`metrics`]: Prometheus metrics of the interface, firewall and flow
//!   counters, and a small HTTP server for them.

pub mod conversation;
pub mod metrics;
pub mod session;
pub mod snapshot;
pub mod table;

pub use netray_core::dispatcher::FlowCapacity;
pub use conversation::{by_port, conversations, Conversation, ConversationJson, PortGroup};
pub use session::{FlowHook, FlowSession};
pub use snapshot::{rates, sort, top_k, FlowRate, InterfaceRates, Snapshot, SnapshotJson, SortBy};
pub use table::{Direction, Flow, FlowKey, FlowTable, TableCounters};
