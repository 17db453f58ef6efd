//! `netray drops`: one stream of dropped packets with who dropped them and why.
//!
//! Two sources: the kernel's drops (the skb:kfree_skb tracepoint with its drop
//! reason, `kernel.rs` over bpf/drops.bpf.c), and netray's own firewall
//! verdicts (the dispatcher's event ring with the drops feature bit, `own.rs`).
//! Reason names come from the running kernel's BTF (`reasons.rs`), function
//! names from /proc/kallsyms (`kallsyms.rs`); `event.rs` is the one record both
//! sources become, `counts.rs` the per-(who, reason, interface) counters of
//! `--stats` and /metrics (`metrics.rs` writes them for the daemon and `top`), and `session.rs` runs both sources together.

pub mod bench;
pub mod counts;
pub mod event;
pub mod kallsyms;
pub mod kernel;
pub mod metrics;
pub mod own;
pub mod own_filter;
pub mod reasons;
pub mod session;

pub use counts::{DropCounts, DropKey};
pub use event::{DropEvent, Who};
pub use kernel::{AttachWay, KernelDrops, KernelStats, Scope};
pub use session::{DropsSession, DropsSpec, SessionStats};
