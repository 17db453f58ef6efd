//! Flow accounting on the daemon's interfaces, for /v1/flows. Built with the
//! `flows` feature (netray-flows); without it /v1/flows answers 501.

use netray_core::PinDir;

use crate::{config::FlowsConfig, error::{ApiError, ApiResult}};

#[cfg(feature = "flows")]
mod imp {
    use std::{collections::HashMap, sync::Mutex};

    use netray_flows::{FlowCapacity, FlowSession, Snapshot, SnapshotJson, SortBy};

    use super::*;

    struct Entry {
        session: FlowSession,
        prev: Option<Snapshot>,
    }

    pub struct Flows {
        pin: PinDir,
        cfg: FlowsConfig,
        sessions: Mutex<HashMap<String, Entry>>,
    }

    impl Flows {
        pub fn new(pin: PinDir, cfg: FlowsConfig) -> Flows {
            Flows { pin, cfg, sessions: Mutex::default() }
        }

        pub fn available(&self) -> bool {
            self.cfg.enabled
        }

        /// Turns flow accounting on for an interface the daemon attached.
        pub fn start(&self, name: &str, mode: &str) {
            if !self.cfg.enabled {
                return;
            }
            let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            if s.contains_key(name) {
                return;
            }
            match FlowSession::start(&self.pin, name, mode.parse().unwrap_or_default(), FlowCapacity::default()) {
                Ok(session) => {
                    s.insert(name.to_string(), Entry { session, prev: None });
                }
                Err(e) => eprintln!("netray daemon: flow accounting on {name} failed: {e}"),
            }
        }

        pub fn stop(&self, name: &str) {
            let e = self.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
            if let Some(e) = e {
                let _ = e.session.stop();
            }
        }

        pub fn top(&self, interface: Option<&str>, sort: &str, limit: Option<usize>) -> ApiResult<serde_json::Value> {
            if !self.cfg.enabled {
                return Err(ApiError::not_implemented("flow accounting is disabled in the daemon's config")
                    .hint("set [flows] enabled = true and restart the daemon"));
            }
            let by: SortBy = sort.parse().map_err(ApiError::bad_request)?;
            let limit = limit.unwrap_or(self.cfg.top);
            let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(name) = interface {
                if !s.contains_key(name) {
                    return Err(ApiError::not_found(format!("the daemon counts no flows on '{name}'"))
                        .hint("flows are counted on the interfaces the daemon attached (GET /v1/interfaces)"));
                }
            }
            let mut out = Vec::new();
            let mut names: Vec<String> = s.keys().cloned().collect();
            names.sort();
            for name in names {
                if interface.is_some_and(|i| i != name) {
                    continue;
                }
                let e = s.get_mut(&name).expect("listed");
                let cur = e.session.snapshot().map_err(ApiError::from_core)?;
                out.push(serde_json::to_value(SnapshotJson::new(e.prev.as_ref(), &cur, by, Some(limit)))
                    .map_err(|e| ApiError::internal(e.to_string()))?);
                e.prev = Some(cur);
            }
            Ok(serde_json::json!({ "interfaces": out }))
        }
    }
}

#[cfg(not(feature = "flows"))]
mod imp {
    use super::*;

    pub struct Flows;

    impl Flows {
        pub fn new(_pin: PinDir, _cfg: FlowsConfig) -> Flows {
            Flows
        }
        pub fn available(&self) -> bool {
            false
        }
        pub fn start(&self, _name: &str, _mode: &str) {}
        pub fn stop(&self, _name: &str) {}
        pub fn top(&self, _interface: Option<&str>, _sort: &str, _limit: Option<usize>) -> ApiResult<serde_json::Value> {
            Err(ApiError::not_implemented("flow accounting is not built into this daemon")
                .hint("build netray-daemon with the `flows` feature (netray-flows)"))
        }
    }
}

pub use imp::Flows;
