//! netray's built-in lab: a network namespace joined to the root namespace by
//! a veth pair, with IPv4 and IPv6 on both ends, plus a traffic generator
//! whose answered counts are exact (tests use them to see what a firewall
//! drops). Everything here needs root.
//!
//! Lab `x` is namespace `nrlab-x` (in /run/netns), veth end `nr-x` in the
//! root namespace and `nrp-x` inside. Each lab gets its own /30 from
//! 198.18.0.0/15 and /64 from fd6e:7261:0::/48 (host `.1`/`::1`, peer
//! `.2`/`::2`), allocated under a lock in /run/netray-lab so that parallel
//! tests in threads and processes never collide. The links are quiet: no
//! link-local IPv6, no ARP/ND/MLD (static neighbour entries instead), so the
//! only packets on them are the ones a test sends.
//!
//! ```no_run
//! use netray_lab::{Lab, TrafficSpec, Proto, Family};
//! let lab = Lab::up(&netray_lab::unique_name("doc"))?;      // deleted on drop
//! let report = lab.traffic(&TrafficSpec { count: Some(60), ..Default::default() })?;
//! assert_eq!(report.answered(Proto::Udp, Family::Both), report.sent(Proto::Udp, Family::Both));
//! # Ok::<(), netray_lab::LabError>(())
//! ```

mod addr;
mod error;
mod icmp;
mod inventory;
mod ip;
mod lab;
mod names;
mod netns;
mod responder;
mod sock;
mod traffic;

pub use addr::{V4_PREFIX, V6_PREFIX};
pub use error::LabError;
pub use inventory::{list, prune, LabStatus};
pub use lab::{remove, Lab};
pub use names::{unique_name, MAX_NAME_LEN};
pub use traffic::{Family, FlowStats, Proto, TrafficReport, TrafficSpec, MAX_PAYLOAD, TAG_LEN};
