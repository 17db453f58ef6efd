//! netray daemon: the firewall, interfaces, statistics, flows and live event
//! streams of netray over a small REST API (JSON, OpenAPI 3 at
//! /openapi.json), Prometheus metrics at /metrics, and desired state kept on
//! disk so a restarted daemon picks up where it was — while the pinned BPF
//! links keep enforcing when it is not running.
//!
//! - [`config`]: the TOML file (docs/daemon.example.toml)
//! - [`state`]: the state file (atomic writes) and its revision; [`persist`]:
//!   writing it behind the answers
//! - [`auth`]: bearer tokens
//! - [`daemon`]: the operations, reconciliation at startup
//! - [`hub`]: live events fanned out to SSE clients
//! - [`api`]: the HTTP handlers; [`server`]: routes and serving
//! - [`cli`]: `netray daemon`

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod error;
pub mod flows;
pub mod hub;
pub mod limit_spec;
pub mod persist;
pub mod server;
pub mod state;

pub use daemon::{Daemon, Options};
pub use server::{spawn, DaemonHandle};
