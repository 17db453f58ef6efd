//! Rate limits (`netray limit`): token buckets in the kernel (limit.h) on
//! received packets the firewall lets pass, for a whole source prefix or per
//! source address, with optional bans.
//!
//! - [`spec`]: a limit as the user writes it, parsed and validated.
//! - [`store`]: the pinned maps and publishing a set of limits.
//! - [`clock`]: the clock a limit's bucket runs on (the kernel's tick, or the boot clock).
//! - [`Limits`]: the operations the CLI and the daemon offer.
//!
//! The maps are the firewall's (`<pin>/fw/`, created with its tables), so
//! limits keep enforcing with no netray process running, wherever the
//! firewall is attached.

pub mod clock;
pub mod spec;
pub mod store;

use std::time::{SystemTime, UNIX_EPOCH};

use netray_core::{map_names as M, Error, PinDir, Result};
use serde::Serialize;

pub use spec::{Limit, LimitArgs, LimitError, Rate};
use store::{LimitMaps, MAX_LIMITS};

use crate::{
    action::boot_clock_ns,
    tables::{self, ensure_tables, FwCapacity},
};

/// A limit with its id and what it has done.
#[derive(Debug, Clone, Serialize)]
pub struct LimitStatus {
    pub id: u32,
    #[serde(flatten)]
    pub limit: Limit,
    /// Packets (and bytes) the limit let through.
    pub passed: u64,
    pub passed_bytes: u64,
    /// Packets over the rate, or from a banned source, and their bytes.
    pub dropped: u64,
    pub dropped_bytes: u64,
    /// Of `dropped`: packets from a source while it was banned.
    pub banned_drops: u64,
    /// Times a source was banned.
    pub bans: u64,
    /// Per-source limits: sources with a bucket now.
    pub sources_tracked: u64,
    /// Per-source limits: sources banned now.
    pub sources_banned: u64,
    /// Per-source limits: buckets the full table evicted (a source seen
    /// again after that starts with a full bucket).
    pub sources_evicted: u64,
    /// The bucket's clock: "tick" (the kernel's jiffies, free to read) or
    /// "boot" (the boot clock: the bucket holds less than one tick, or the
    /// kernel's CONFIG_HZ could not be read). See [`clock`].
    pub clock: &'static str,
}

/// The rate limits pinned under a pin dir.
pub struct Limits {
    pin: PinDir,
    cap: FwCapacity,
}

impl Limits {
    /// The limits under `pin`; the firewall's tables, when this creates
    /// them, of the default size.
    pub fn open(pin: PinDir) -> Limits {
        Limits::new(pin, FwCapacity::default())
    }

    /// `cap` only matters when the firewall's tables do not exist yet.
    pub fn new(pin: PinDir, cap: FwCapacity) -> Limits {
        tables::register();
        Limits { pin, cap }
    }

    fn exists(&self) -> bool {
        self.pin.fw_dir().join(M::FW_STATE).exists()
    }

    /// Adds a limit; returns its id. Refuses one that exists or overlaps
    /// another (a packet is limited by one limit at most), changing nothing.
    pub fn add(&self, limit: &Limit) -> Result<u32> {
        let _lock = self.pin.lock()?;
        ensure_tables(&self.pin, &self.cap)?;
        let maps = LimitMaps::open(&self.pin)?;
        let mut set = maps.active()?;
        for l in &set {
            let old = Limit::from_abi(l);
            if old == *limit {
                return Err(Error::BadRequest(format!("limit already exists as id {}: {old}", l.id)));
            }
            if old.overlaps(limit) {
                return Err(Error::BadRequest(format!(
                    "{limit} overlaps limit {} ({old}): a packet is limited by one limit at most — delete that one \
                     first (`netray limit del --id {}`), or give disjoint prefixes, protocols or ports",
                    l.id, l.id
                )));
            }
        }
        let id = (1..=MAX_LIMITS)
            .find(|id| set.iter().all(|l| l.id != *id))
            .ok_or_else(|| Error::BadRequest(format!("at most {MAX_LIMITS} rate limits exist at once: delete one first")))?;
        maps.reset(id)?;
        let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let mut record = limit.to_abi(id, created);
        record.tick_ns = clock::tick_ns_for(record.tolerance);
        set.push(record);
        maps.publish(&set)?;
        Ok(id)
    }

    /// Deletes the limit given as added; returns its id.
    pub fn delete(&self, limit: &Limit) -> Result<u32> {
        self.delete_where(|set| {
            set.iter()
                .find(|l| Limit::from_abi(l) == *limit)
                .map(|l| l.id)
                .ok_or_else(|| Error::BadRequest(format!("no limit {limit} — `netray limit list` shows the limits")))
        })
    }

    /// Deletes a limit by id.
    pub fn delete_id(&self, id: u32) -> Result<u32> {
        self.delete_where(|set| {
            set.iter()
                .find(|l| l.id == id)
                .map(|l| l.id)
                .ok_or_else(|| Error::BadRequest(format!("no limit with id {id} — `netray limit list` shows the limits")))
        })
    }

    fn delete_where(&self, pick: impl FnOnce(&[netray_ebpf::abi::nr_limit]) -> Result<u32>) -> Result<u32> {
        let _lock = self.pin.lock()?;
        if !self.exists() {
            return pick(&[]);
        }
        let maps = LimitMaps::open(&self.pin)?;
        let mut set = maps.active()?;
        let id = pick(&set)?;
        set.retain(|l| l.id != id);
        maps.publish(&set)?;
        maps.forget_sources(id)?;
        Ok(id)
    }

    /// Every limit with its counters and sources.
    pub fn list(&self) -> Result<Vec<LimitStatus>> {
        if !self.exists() {
            return Ok(Vec::new());
        }
        let maps = LimitMaps::open(&self.pin)?;
        let set = maps.active()?;
        let sources = if set.iter().any(|l| Limit::from_abi(l).per_source) {
            maps.source_counts(boot_clock_ns())?
        } else {
            Default::default()
        };
        let mut out = Vec::with_capacity(set.len());
        for l in &set {
            let (st, c) = (maps.stats(l.id)?, maps.counts(l.id)?);
            let src = sources.get(&l.id).copied().unwrap_or_default();
            out.push(LimitStatus {
                id: l.id,
                limit: Limit::from_abi(l),
                passed: c.passed,
                passed_bytes: c.passed_bytes,
                dropped: c.dropped,
                dropped_bytes: c.dropped_bytes,
                banned_drops: c.banned_drops,
                bans: st.bans,
                sources_tracked: src.tracked,
                sources_banned: src.banned,
                sources_evicted: st.sources_added.saturating_sub(src.tracked),
                clock: if l.tick_ns != 0 { "tick" } else { "boot" },
            });
        }
        out.sort_by_key(|s| s.id);
        Ok(out)
    }
}
