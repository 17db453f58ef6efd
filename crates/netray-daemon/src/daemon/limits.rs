//! The daemon's rate limits (/v1/limits): read from the pinned maps (the
//! source of truth, also for limits the CLI added), remembered in the state
//! file, restored from it when the pins are gone. Every change bumps the
//! revision, as rule changes do.

use netray_firewall::{Limit, LimitStatus, Limits};

use super::{check_if_match, Daemon};
use crate::{
    error::{ApiError, ApiResult},
    limit_spec::LimitSpec,
    state::{State, StoredLimit},
};

impl Daemon {
    fn limit_set(&self) -> Limits {
        Limits::open(self.pin.clone())
    }

    /// The pinned limits, read under the pin lock (never half published).
    fn pinned_limits(&self) -> netray_core::Result<Vec<LimitStatus>> {
        let _lock = self.pin.lock()?;
        self.limit_set().list()
    }

    /// Remembers the pinned limits in `st`; bumps the revision if they
    /// changed since last seen. Returns them.
    pub(super) fn note_limits(&self, st: &mut State) -> ApiResult<Vec<LimitStatus>> {
        let list = self.pinned_limits()?;
        let now: Vec<StoredLimit> =
            list.iter().map(|s| StoredLimit { id: s.id, spec: LimitSpec::from_limit(&s.limit) }).collect();
        if now != st.limits {
            st.limits = now;
            st.revision += 1;
        }
        Ok(list)
    }

    /// `note_limits`, writing the state file when they changed.
    fn sync_limits(&self, st: &mut State) -> ApiResult<Vec<LimitStatus>> {
        let before = st.revision;
        let list = self.note_limits(st)?;
        if st.revision != before {
            self.save(st)?;
        }
        Ok(list)
    }

    /// Adds the stored limits again (after a reboot wiped the pins); returns
    /// how many. One that no longer parses or fits is skipped, and logged.
    pub(super) fn restore_limits(&self, stored: &[StoredLimit]) -> usize {
        let set = self.limit_set();
        stored
            .iter()
            .filter(|s| match s.spec.to_limit().map_err(|e| e.to_string()).and_then(|l| set.add(&l).map_err(|e| e.to_string())) {
                Ok(_) => true,
                Err(e) => {
                    eprintln!("netray daemon: limit {} of the state file not restored: {e}", s.id);
                    false
                }
            })
            .count()
    }

    pub fn limits(&self) -> ApiResult<(u64, Vec<LimitStatus>)> {
        let mut st = self.lock();
        let list = self.sync_limits(&mut st)?;
        Ok((st.revision, list))
    }

    pub fn add_limit(&self, if_match: Option<&str>, limit: &Limit) -> ApiResult<(u64, LimitStatus)> {
        let mut st = self.lock();
        self.sync_limits(&mut st)?;
        check_if_match(if_match, st.revision)?;
        let id = self.limit_set().add(limit).map_err(|e| ApiError::from_core(e).with_etag(st.revision))?;
        let list = self.sync_limits(&mut st)?;
        let added = list.into_iter().find(|s| s.id == id).ok_or_else(|| {
            ApiError::conflict(format!("limit {id} was deleted by someone else right after it was added"))
        })?;
        Ok((st.revision, added))
    }

    pub fn delete_limit(&self, if_match: Option<&str>, id: u32) -> ApiResult<(u64, LimitStatus)> {
        let mut st = self.lock();
        let list = self.sync_limits(&mut st)?;
        let Some(gone) = list.into_iter().find(|s| s.id == id) else {
            return Err(ApiError::not_found(format!("no limit with id {id}"))
                .hint("GET /v1/limits lists the limits")
                .with_etag(st.revision));
        };
        check_if_match(if_match, st.revision)?;
        self.limit_set().delete_id(id)?;
        self.sync_limits(&mut st)?;
        Ok((st.revision, gone))
    }
}
