//! The firewall operations offered to the CLI and the daemon. Each change
//! holds the pin lock, so concurrent netray processes serialise.

use std::{
    collections::{HashMap, HashSet},
    os::unix::fs::MetadataExt,
    sync::Mutex,
};

use netray_core::{
    dispatcher::AttachOutcome, map_names as M, AttachMode, Dispatcher, DispatcherStatus, Error, Feature, Hook,
    Interface, PinDir, Result,
};
use serde::Serialize;

use crate::{
    action::{self, boot_clock_ns, Action, RuleOptions},
    policy::{self, Policy, ReplyTableStatus},
    rule::Rule,
    store::FwMaps,
    tables::{self, ensure_tables, FwCapacity},
};

/// A rule with its id, action, time left and hit counters (an audit
/// rule's hits are the packets it would have dropped).
#[derive(Debug, Clone, Serialize)]
pub struct RuleStatus {
    pub id: u32,
    #[serde(flatten)]
    pub rule: Rule,
    pub action: Action,
    /// Milliseconds until the rule expires (its --ttl); None: never.
    pub expires_in_ms: Option<u64>,
    pub packets: u64,
    pub bytes: u64,
}

impl RuleStatus {
    /// The time left, as people read it (`2m 5s`); None: never expires.
    pub fn time_left(&self) -> Option<String> {
        self.expires_in_ms.map(|ms| action::time_left(ms.saturating_mul(1_000_000)))
    }
}

/// How full the compiled tables are.
#[derive(Debug, Clone, Serialize, Default)]
pub struct TableUsage {
    pub rules: u32,
    pub max_rules: u32,
    pub chunks_used: u32,
    pub chunks_per_bank: u32,
    pub ranges_used: u32,
    pub ranges_per_bank: u32,
    /// Bumped on every published change.
    pub generation: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct FirewallStatus {
    pub interfaces: Vec<DispatcherStatus>,
    /// Each interface's "in" policy, in the order of `interfaces`.
    pub policies: Vec<InterfacePolicy>,
    pub table: TableUsage,
    /// The reply table a drop policy trusts; None before it exists.
    pub replies: Option<ReplyTableStatus>,
}

/// An interface's policy for received packets no rule decides.
#[derive(Debug, Clone, Serialize)]
pub struct InterfacePolicy {
    pub interface: String,
    #[serde(rename = "in")]
    pub policy_in: Policy,
}

/// What `attach` did, for the user.
#[derive(Debug, Clone, Serialize)]
pub struct AttachReport {
    pub interface: String,
    pub ifindex: u32,
    pub mode: String,
    pub already_attached: bool,
    pub note: Option<String>,
    /// How the TC egress program ("out" rules) is attached: "tcx" or "clsact".
    pub tc_egress: Option<String>,
}

pub struct Firewall {
    pin: PinDir,
    cap: FwCapacity,
    /// The pinned maps, opened (and their arrays mapped) once and reused while
    /// the same maps stay pinned: a long-lived Firewall (the daemon's) pays
    /// for that once, not on every change and read.
    maps: Mutex<Option<(MapsIdentity, FwMaps)>>,
}

/// Which pinned maps an FwMaps opened: the inodes of fw_state and fw_pending.
/// New maps (after `detach --all`, or a first load finishing) get new inodes.
type MapsIdentity = (u64, u64);

impl Firewall {
    /// The firewall pinned under `pin`, its tables (when it creates them)
    /// of the default size.
    pub fn open(pin: PinDir) -> Firewall {
        Firewall::new(pin, FwCapacity::default())
    }

    /// `cap` only matters when the firewall's maps do not exist yet.
    pub fn new(pin: PinDir, cap: FwCapacity) -> Firewall {
        tables::register();
        Firewall { pin, cap, maps: Mutex::new(None) }
    }

    /// Runs `f` on the pinned maps, opened afresh only if they changed.
    fn with_maps<R>(&self, f: impl FnOnce(&mut FwMaps) -> Result<R>) -> Result<R> {
        let dir = self.pin.fw_dir();
        let ino = |name: &str| std::fs::metadata(dir.join(name)).map_or(0, |m| m.ino());
        let identity = (ino(M::FW_STATE), ino(M::FW_PENDING));
        let mut cache = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *cache {
            Some((id, maps)) if *id == identity => f(maps),
            _ => {
                *cache = None;
                let (_, maps) = cache.insert((identity, FwMaps::open(&self.pin)?));
                f(maps)
            }
        }
    }

    pub fn pin(&self) -> &PinDir {
        &self.pin
    }

    /// Creates the firewall's tables if they do not exist yet (checks those
    /// that do), without attaching anything.
    pub fn create_tables(&self) -> Result<()> {
        let _lock = self.pin.lock()?;
        ensure_tables(&self.pin, &self.cap)
    }

    /// Starts enforcing the rules on an interface.
    pub fn attach(&self, ifname: &str, mode: AttachMode) -> Result<AttachReport> {
        let iface = Interface::resolve(ifname)?;
        let _lock = self.pin.lock()?;
        ensure_tables(&self.pin, &self.cap)?;
        let (d, outcome) = Dispatcher::attach(&self.pin, &iface, mode)?;
        // "in" rules at XDP; "out" rules at TC egress, always attached with
        // the firewall (so rules added later take effect without a reattach).
        d.set_feature(Feature::Firewall, true)?;
        d.set_hook_feature(Hook::TcEgress, Feature::Firewall, true)?;
        let tc_notes = match d.sync_tc(&self.pin) {
            Ok(n) => n,
            Err(e) => {
                let _ = d.set_hook_feature(Hook::TcEgress, Feature::Firewall, false);
                let _ = d.set_feature(Feature::Firewall, false);
                let _ = d.detach_if_idle();
                return Err(e);
            }
        };
        let status = d.status()?;
        let (already_attached, note) = match outcome {
            AttachOutcome::Attached { note, .. } => (false, note),
            AttachOutcome::AlreadyAttached => (true, None),
        };
        let note = [note, (!tc_notes.is_empty()).then(|| tc_notes.join("; "))]
            .into_iter()
            .flatten()
            .reduce(|a, b| format!("{a}; {b}"));
        let tc_egress = status.tc.iter().find(|t| t.hook == Hook::TcEgress.name()).map(|t| t.backend.to_string());
        Ok(AttachReport {
            interface: iface.name,
            ifindex: iface.index,
            mode: status.mode,
            already_attached,
            note,
            tc_egress,
        })
    }

    /// Stops enforcing on an interface; the program goes when no other
    /// feature (e.g. a running monitor) still uses it.
    pub fn detach(&self, ifname: &str) -> Result<bool> {
        let iface = Interface::resolve(ifname)?;
        let _lock = self.pin.lock()?;
        let d = Dispatcher::open(&self.pin, &iface)?
            .ok_or_else(|| Error::NotAttached(iface.name.clone()))?;
        d.set_feature(Feature::Firewall, false)?;
        d.set_hook_feature(Hook::TcEgress, Feature::Firewall, false)?;
        policy::clear(&d)?;
        d.sync_tc(&self.pin)?;
        d.detach_if_idle()
    }

    /// Sets an interface's "in" policy (see [`policy`]); the firewall must
    /// be attached there. Returns how many of the host's open connections
    /// were noted as replies to pass (drop only).
    pub fn set_policy(&self, ifname: &str, p: Policy) -> Result<usize> {
        let _lock = self.pin.lock()?;
        policy::set(&self.pin, ifname, p)
    }

    /// Detaches from every interface and removes all pinned state (rules too).
    /// Returns the interfaces it detached from.
    pub fn reset(&self) -> Result<Vec<String>> {
        let _lock = self.pin.lock()?;
        let mut detached = Vec::new();
        for d in Dispatcher::list(&self.pin)? {
            detached.push(d.interface().name.clone());
            d.detach()?;
        }
        for dir in [self.pin.fw_dir(), self.pin.ifaces_dir()] {
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io(&dir)(e))
                }
                _ => {}
            }
        }
        // What a finished capture left (a live one's state stays), and the
        // root too, unless something else lives there (another tool's pins).
        self.pin.prune_capture_dirs();
        let _ = std::fs::remove_dir(self.pin.root());
        Ok(detached)
    }

    /// Adds deny rules that never expire; all or none. Returns their ids.
    pub fn add(&self, new: &[Rule]) -> Result<Vec<u32>> {
        let with: Vec<(Rule, RuleOptions)> = new.iter().map(|r| (r.clone(), RuleOptions::default())).collect();
        self.add_with(&with)
    }

    /// Adds rules, each with its action and TTL; all or none. Returns their
    /// ids. Rules that have expired are removed first (as `list` does).
    pub fn add_with(&self, new: &[(Rule, RuleOptions)]) -> Result<Vec<u32>> {
        let _lock = self.pin.lock()?;
        ensure_tables(&self.pin, &self.cap)?;
        self.with_maps(|maps| {
            Self::remove_expired(maps)?;
            Self::add_to(maps, new)
        })
    }

    fn add_to(maps: &mut FwMaps, with: &[(Rule, RuleOptions)]) -> Result<Vec<u32>> {
        // An allow rule is one by its action or by its match: both say so.
        let with: Vec<(Rule, RuleOptions)> = with
            .iter()
            .map(|(r, o)| {
                let allow = r.allow || o.action == Action::Allow;
                let opts = if allow { RuleOptions { action: Action::Allow, ..*o } } else { *o };
                (Rule { allow, ..r.clone() }, opts)
            })
            .collect();
        let with = with.as_slice();
        let new: Vec<Rule> = with.iter().map(|(r, _)| r.clone()).collect();
        let mut rules = maps.load_rules()?;
        let mut existing: HashMap<&Rule, u32> = HashMap::with_capacity(rules.len() + new.len());
        for (id, r) in &rules {
            existing.insert(r, *id);
        }
        let used: HashSet<u32> = rules.iter().map(|(id, _)| *id).collect();
        // An id whose deleted rule still has a hit pending on some CPU is not
        // reused yet: that hit would be added to the new rule's counter.
        let pending: HashSet<u32> = maps.pending()?.into_iter().map(|(id, _)| id).collect();
        let mut ids = Vec::with_capacity(new.len());
        let mut next = 1u32;
        for rule in &new {
            if let Some(id) = existing.get(rule) {
                return Err(if used.contains(id) {
                    Error::RuleExists { id: *id, rule: rule.to_string() }
                } else {
                    Error::RuleTwice(rule.to_string())
                });
            }
            // Ids are dense: take the lowest free one.
            while used.contains(&next) || pending.contains(&next) {
                next += 1;
            }
            if next > maps.max_rules() {
                return Err(Error::TooManyRules(maps.max_rules()));
            }
            existing.insert(rule, next);
            ids.push(next);
            next += 1;
        }
        rules.extend(ids.iter().copied().zip(new.iter().cloned()));
        let compiled = maps.compile(&rules)?;
        maps.store_rules(ids.iter().copied().zip(with).map(|(id, (rule, opts))| (id, rule, *opts)))?;
        if let Err(e) = maps.publish(&compiled) {
            for id in &ids {
                let _ = maps.remove_rule(*id);
            }
            return Err(e);
        }
        rules.sort_by_key(|(id, _)| *id);
        maps.remember_rules(rules)?;
        Ok(ids)
    }

    /// Deletes rules given as written; all or none. Returns their ids.
    pub fn delete(&self, gone: &[Rule]) -> Result<Vec<u32>> {
        self.delete_where(|rules| {
            let by_rule: HashMap<&Rule, u32> = rules.iter().map(|(id, r)| (r, *id)).collect();
            gone.iter()
                .map(|g| {
                    by_rule.get(g).copied().ok_or_else(|| Error::NoSuchRule(g.to_string()))
                })
                .collect()
        })
    }

    /// Deletes rules by id; all or none.
    pub fn delete_ids(&self, gone: &[u32]) -> Result<Vec<u32>> {
        self.delete_where(|rules| {
            let ids: HashSet<u32> = rules.iter().map(|(id, _)| *id).collect();
            gone.iter()
                .map(|g| {
                    ids.contains(g).then_some(*g).ok_or(Error::NoSuchRuleId(*g))
                })
                .collect()
        })
    }

    fn delete_where(
        &self,
        pick: impl FnOnce(&[(u32, Rule)]) -> Result<Vec<u32>>,
    ) -> Result<Vec<u32>> {
        let _lock = self.pin.lock()?;
        if !self.pin.fw_dir().join(M::FW_STATE).exists() {
            return pick(&[]);
        }
        self.with_maps(|maps| {
            Self::remove_expired(maps)?;
            let rules = maps.load_rules()?;
            let ids = pick(&rules)?;
            Self::remove_ids(maps, rules, &ids)?;
            Ok(ids)
        })
    }

    /// Deletes rules by id from `rules` (the stored set): publishes the set
    /// without them, then frees their ids.
    fn remove_ids(maps: &mut FwMaps, mut rules: Vec<(u32, Rule)>, ids: &[u32]) -> Result<()> {
        let gone: HashSet<u32> = ids.iter().copied().collect();
        rules.retain(|(id, _)| !gone.contains(id));
        let compiled = maps.compile(&rules)?;
        maps.publish(&compiled)?;
        for id in ids {
            maps.remove_rule(*id)?;
        }
        maps.reset_hits(ids)?;
        maps.remember_rules(rules)
    }

    /// The ids of the rules whose TTL has run out: the kernel ignores them
    /// already; they stay stored until removed.
    fn expired_ids(maps: &mut FwMaps) -> Result<Vec<u32>> {
        let now = boot_clock_ns();
        let rules = maps.load_rules()?;
        let actions = maps.actions()?;
        Ok(rules
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| (*id as usize) < actions.len() && action::expired(&actions.read(*id as usize), now))
            .collect())
    }

    /// Removes the rules that have expired (call with the pin lock held).
    fn remove_expired(maps: &mut FwMaps) -> Result<Vec<u32>> {
        let gone = Self::expired_ids(maps)?;
        if !gone.is_empty() {
            let rules = maps.load_rules()?;
            Self::remove_ids(maps, rules, &gone)?;
        }
        Ok(gone)
    }

    /// Every rule with its action, time left and hits; rules that have
    /// expired are removed first (and the tables recompiled without them).
    /// Takes the pin lock only to remove expired rules.
    pub fn list(&self) -> Result<Vec<RuleStatus>> {
        if !self.pin.fw_dir().join(M::FW_STATE).exists() {
            return Ok(Vec::new());
        }
        if !self.with_maps(Self::expired_ids)?.is_empty() {
            let _lock = self.pin.lock()?;
            return self.list_locked();
        }
        self.rule_statuses()
    }

    /// `list` for a caller that holds the pin lock (the lock is a file lock:
    /// taking it again would wait for itself).
    pub fn list_locked(&self) -> Result<Vec<RuleStatus>> {
        if !self.pin.fw_dir().join(M::FW_STATE).exists() {
            return Ok(Vec::new());
        }
        self.with_maps(Self::remove_expired)?;
        self.rule_statuses()
    }

    fn rule_statuses(&self) -> Result<Vec<RuleStatus>> {
        self.with_maps(|maps| {
            let rules = maps.load_rules()?;
            let now = boot_clock_ns();
            let actions: Vec<_> = {
                let a = maps.actions()?;
                rules.iter().map(|(id, _)| a.slice().get(*id as usize).copied().unwrap_or_default()).collect()
            };
            let counters = maps.counters()?;
            Ok(rules
                .into_iter()
                .zip(actions)
                .map(|((id, rule), a)| {
                    let (packets, bytes) = counters.get(id);
                    let action = Action::from_code(a.action);
                    let expires_in_ms = (a.expires_ns != 0).then(|| a.expires_ns.saturating_sub(now).div_ceil(1_000_000));
                    RuleStatus { id, rule, action, expires_in_ms, packets, bytes }
                })
                .collect())
        })
    }

    /// Interfaces where the firewall is on, and table usage.
    pub fn status(&self) -> Result<FirewallStatus> {
        if !self.pin.exists() {
            // Never attached here: the lock would need the root created.
            return Ok(FirewallStatus { interfaces: Vec::new(), policies: Vec::new(), table: TableUsage::default(), replies: None });
        }
        let _lock = self.pin.lock()?;
        let dispatchers = Dispatcher::list(&self.pin)?;
        let interfaces = dispatchers.iter().map(Dispatcher::status).collect::<Result<Vec<_>>>()?;
        let policies = dispatchers
            .iter()
            .map(|d| Ok(InterfacePolicy { interface: d.interface().name.clone(), policy_in: Policy::of(d)? }))
            .collect::<Result<Vec<_>>>()?;
        let replies = policy::reply_status(&self.pin)?;
        let table = if self.pin.fw_dir().join(M::FW_STATE).exists() {
            self.with_maps(|maps| {
                let st = maps.state()?;
                Ok(TableUsage {
                    rules: st.rules,
                    max_rules: maps.max_rules(),
                    chunks_used: st.chunks_used,
                    chunks_per_bank: st.chunks_per_bank,
                    ranges_used: st.ranges_used,
                    ranges_per_bank: st.ranges_per_bank,
                    generation: st.generation,
                })
            })?
        } else {
            TableUsage::default()
        };
        Ok(FirewallStatus { interfaces, policies, table, replies })
    }
}
