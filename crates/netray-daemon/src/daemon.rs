//! The daemon's core: the firewall, the desired state and its revision, and
//! the operations the API offers. Every change holds `state`'s mutex (so API
//! changes serialise among themselves) and, inside the firewall, the pin lock
//! (so they serialise with the CLI too). Everything here blocks: the HTTP
//! handlers call it through `spawn_blocking`.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::PathBuf,
    sync::{
        atomic::AtomicU64,
        Mutex, MutexGuard,
    },
    time::Instant,
};

use netray_core::{AttachMode, Dispatcher, DispatcherStatus, Feature, Interface, PinDir};
use netray_firewall::{Action, Firewall, Policy, Rule, RuleOptions, RuleStatus, TableUsage};
use serde::Serialize;

use crate::{
    hub::Hubs,
    config::{Config, InterfaceSpec, RuleSpec},
    error::{ApiError, ApiResult},
    flows::Flows,
    persist::{PersistStatus, Persister, MAX_UNSAVED},
    state::{State, StateStore, StoredRule},
};

mod limits;

/// Everything the daemon needs to start.
#[derive(Debug, Clone)]
pub struct Options {
    pub pin: PinDir,
    pub state_dir: PathBuf,
    pub token: String,
    pub body_limit: usize,
    pub sse_queue: usize,
    pub config: Config,
}

/// A rule as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RuleView {
    pub id: u32,
    pub cidr: String,
    pub proto: Option<String>,
    pub port: Option<u16>,
    pub dir: String,
    /// "deny", "audit" (counts, lets pass) or "allow".
    pub action: Action,
    /// Milliseconds until the rule expires; None: never.
    pub expires_in_ms: Option<u64>,
    pub packets: u64,
    pub bytes: u64,
}

impl From<&RuleStatus> for RuleView {
    fn from(r: &RuleStatus) -> RuleView {
        RuleView {
            id: r.id,
            cidr: r.rule.net.to_string(),
            proto: r.rule.proto.map(|p| p.to_string()),
            port: r.rule.port,
            dir: r.rule.dir.to_string(),
            action: r.action,
            expires_in_ms: r.expires_in_ms,
            packets: r.packets,
            bytes: r.bytes,
        }
    }
}

/// An interface as the API shows it: what the daemon wants and what is.
#[derive(Debug, Clone, Serialize)]
pub struct InterfaceView {
    pub name: String,
    /// The daemon keeps it attached (config, API or state file).
    pub desired: bool,
    /// The XDP mode asked for.
    pub requested_mode: Option<String>,
    /// netray's dispatcher is on the interface.
    pub attached: bool,
    /// The firewall feature is on there.
    pub firewall: bool,
    pub exists: bool,
    pub status: Option<DispatcherStatus>,
}

/// What startup reconciliation did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcileReport {
    pub rules_added: usize,
    pub rules_kept: usize,
    pub rules_restored_from_state: bool,
    /// Rate limits restored from the state file (the pins were gone).
    pub limits_restored: usize,
    /// Interfaces attached anew whose `policy in drop` was set again.
    pub policies_restored: Vec<String>,
    pub interfaces_attached: Vec<String>,
    pub interfaces_kept: Vec<String>,
    pub interfaces_failed: Vec<(String, String)>,
}

#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub client_errors: AtomicU64,
    pub server_errors: AtomicU64,
}

pub struct Daemon {
    pub pin: PinDir,
    pub fw: Firewall,
    store: StateStore,
    state: Mutex<State>,
    persist: Persister,
    /// See `stored`.
    specs: Mutex<HashMap<u32, (Rule, RuleSpec)>>,
    pub token: String,
    /// Plain reads need no token (the daemon listens on loopback); see auth.rs.
    pub open_reads: bool,
    pub body_limit: usize,
    pub sse_queue: usize,
    pub config: Config,
    pub hubs: Hubs,
    pub flows: Flows,
    pub counters: Counters,
    /// The drop counts of the drop streams (`/v1/events/drops`), by stream
    /// ("" for all interfaces), with the drops the kernel could not report:
    /// exported on /metrics.
    pub drop_counts: Mutex<HashMap<String, (netray_drops::DropCounts, u64)>>,
    pub started: Instant,
    pub reconcile: Mutex<ReconcileReport>,
}

/// An `If-Match` precondition: the revision the client last saw.
pub fn check_if_match(if_match: Option<&str>, revision: u64) -> ApiResult<()> {
    let Some(v) = if_match else { return Ok(()) };
    let v = v.trim();
    if v == "*" {
        return Ok(());
    }
    let want = v.trim_start_matches("W/").trim_matches('"');
    let want: u64 = want.parse().map_err(|_| {
        ApiError::bad_request(format!("If-Match '{v}' is not a revision"))
            .hint("send the ETag of a previous response, e.g. If-Match: \"12\"")
    })?;
    if want != revision {
        return Err(ApiError::new(
            axum::http::StatusCode::PRECONDITION_FAILED,
            format!("revision conflict: you sent If-Match {want} but the current revision is {revision}"),
        )
        .hint("someone else changed the state: GET it again, check, and retry with the new ETag")
        .with_etag(revision));
    }
    Ok(())
}

/// The pinned rules as the state file stores them, or None if `current`
/// already says the same. `specs` remembers each rule's conversion (by id):
/// formatting every prefix again on every read cost more than the read.
/// Expiring rules are not stored: their expiry is on this boot's clock, and
/// the state file restores rules when the pins are gone (after a reboot).
fn stored(specs: &mut HashMap<u32, (Rule, RuleSpec)>, list: &[RuleStatus], current: &[StoredRule]) -> Option<Vec<StoredRule>> {
    let list: Vec<&RuleStatus> = list.iter().filter(|r| r.expires_in_ms.is_none()).collect();
    for r in &list {
        let audit = r.action == Action::Audit;
        match specs.get(&r.id) {
            Some((rule, spec)) if *rule == r.rule && spec.audit == audit => {}
            _ => {
                specs.insert(r.id, (r.rule.clone(), RuleSpec { audit, ..RuleSpec::from_rule(&r.rule) }));
            }
        }
    }
    let spec = |id: u32| &specs[&id].1;
    if list.len() == current.len() && list.iter().zip(current).all(|(r, s)| r.id == s.id && *spec(r.id) == s.spec) {
        return None;
    }
    let out = list.iter().map(|r| StoredRule { id: r.id, spec: spec(r.id).clone() }).collect();
    if specs.len() > list.len() {
        let ids: std::collections::HashSet<u32> = list.iter().map(|r| r.id).collect();
        specs.retain(|id, _| ids.contains(id));
    }
    Some(out)
}

impl Daemon {
    pub fn new(opts: Options) -> anyhow::Result<Daemon> {
        netray_core::probe::require_bpf()?;
        let store = StateStore::open(&opts.state_dir)?;
        let mut state = store.load()?;
        if !state.clean {
            // Stopped without writing its last revisions: never hand out
            // one of those again (see persist.rs).
            state.revision += MAX_UNSAVED + 1;
        }
        state.clean = false;
        let persist = Persister::start(store.clone(), state.revision)
            .map_err(|e| anyhow::anyhow!("starting the state writer thread: {e}"))?;
        let flows_cfg = opts.config.flows.clone();
        let flows = Flows::new(opts.pin.clone(), flows_cfg, opts.config.ipfix.export_config()?)?;
        Ok(Daemon {
            fw: Firewall::open(opts.pin.clone()),
            pin: opts.pin.clone(),
            store,
            state: Mutex::new(state),
            persist,
            specs: Mutex::default(),
            token: opts.token,
            open_reads: true,
            body_limit: opts.body_limit,
            hubs: Hubs::new(opts.sse_queue),
            sse_queue: opts.sse_queue,
            flows,
            config: opts.config,
            counters: Counters::default(),
            drop_counts: Mutex::default(),
            started: Instant::now(),
            reconcile: Mutex::new(ReconcileReport::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a change of state: written to the state file behind the answer.
    fn save(&self, st: &State) -> ApiResult<()> {
        self.persist.save(st).map_err(|e| ApiError::internal(e).hint("check the --state-dir's disk and permissions"))
    }

    /// The state file: the revision it holds, and any write error.
    pub fn persist_status(&self) -> PersistStatus {
        self.persist.status(self.revision())
    }

    /// Writes the last state (marked as a clean stop) and ends the writer.
    pub fn finish_state(&self) {
        let st = self.lock().clone();
        self.persist.finish(st);
    }

    pub fn revision(&self) -> u64 {
        self.lock().revision
    }

    /// The pinned rules, read under the pin lock so that a change by another
    /// process (maps being created, a table being published) is never seen
    /// half done. (`Firewall::list` itself takes no lock.)
    fn pinned_rules(&self) -> netray_core::Result<Vec<RuleStatus>> {
        let _lock = self.pin.lock()?;
        self.fw.list_locked()
    }

    /// The interfaces the firewall is attached to now, whoever attached it,
    /// and those of them whose policy is drop.
    fn attached_now(&self) -> netray_core::Result<(BTreeSet<String>, BTreeSet<String>)> {
        let _lock = self.pin.lock()?;
        let (mut out, mut drop) = (BTreeSet::new(), BTreeSet::new());
        for d in Dispatcher::list(&self.pin)? {
            let features = d.active_features()?;
            if features & Feature::Firewall.bit() != 0 {
                out.insert(d.interface().name.clone());
                if features & Feature::PolicyDrop.bit() != 0 {
                    drop.insert(d.interface().name.clone());
                }
            }
        }
        Ok((out, drop))
    }

    /// Notes the policy of each interface the firewall is on (the kernel's is
    /// the truth, whoever set it: the CLI too); an interface it is not on
    /// keeps the stored one, for when it is attached again. Whether that
    /// changed the state.
    fn note_policies(st: &mut State, attached: &BTreeSet<String>, drop: &BTreeSet<String>) -> bool {
        let before = st.policy_drop.clone();
        st.policy_drop.retain(|name| !attached.contains(name));
        st.policy_drop.extend(drop.iter().cloned());
        st.policy_drop != before
    }

    /// Reads the pinned rules (the source of truth) and where the firewall is
    /// attached; if either changed since last seen (e.g. through the CLI),
    /// bumps the revision.
    fn sync(&self, st: &mut State) -> ApiResult<Vec<RuleStatus>> {
        let list = self.pinned_rules()?;
        let now = stored(&mut self.specs.lock().unwrap_or_else(|e| e.into_inner()), &list, &st.rules);
        let (attached, drop) = self.attached_now()?;
        let policies = Self::note_policies(st, &attached, &drop);
        if now.is_some() || attached != st.attached || policies {
            if let Some(now) = now {
                st.rules = now;
            }
            st.attached = attached;
            st.revision += 1;
            self.save(st)?;
        }
        Ok(list)
    }

    /// Records where the firewall is attached after a change the daemon made
    /// itself (which has bumped the revision already).
    fn note_attached(&self, st: &mut State) -> ApiResult<()> {
        let (attached, drop) = self.attached_now()?;
        Self::note_policies(st, &attached, &drop);
        st.attached = attached;
        Ok(())
    }

    /// Applies the config and the state file to the kernel: only what is
    /// missing is added or attached; nothing enforcing is removed or
    /// re-attached, so there is no gap and no duplicate program.
    pub fn reconcile(&self) -> anyhow::Result<ReconcileReport> {
        let mut st = self.lock();
        let mut report = ReconcileReport::default();
        let pinned_fw = self.pin.fw_dir().join(netray_core::map_names::FW_STATE).exists();
        // Create the shared maps now, so readers never race their creation.
        self.fw.create_tables()?;
        let pinned = self.pinned_rules()?;
        let mut want: Vec<(Rule, RuleOptions)> = Vec::new();
        for spec in &self.config.rules {
            want.push(spec.rule_with_options()?);
        }
        if !pinned_fw {
            // The pins are gone (reboot, wiped bpffs): restore what we had.
            report.rules_restored_from_state = !st.rules.is_empty();
            for r in &st.rules {
                if let Ok(rule) = r.spec.stored_rule_with_options() {
                    want.push(rule);
                }
            }
        }
        let mut missing: Vec<(Rule, RuleOptions)> = Vec::new();
        for (r, opts) in want {
            if !pinned.iter().any(|p| p.rule == r) && !missing.iter().any(|(m, _)| *m == r) {
                missing.push((r, opts));
            }
        }
        if !pinned_fw {
            report.limits_restored = self.restore_limits(&st.limits);
        }
        report.rules_kept = pinned.len();
        if !missing.is_empty() {
            self.fw.add_with(&missing)?;
            report.rules_added = missing.len();
        }
        let mut desired: BTreeMap<String, String> = st.interfaces.clone();
        let mut changed = false;
        for i in &self.config.interfaces {
            if desired.get(&i.name) != Some(&i.mode) {
                desired.insert(i.name.clone(), i.mode.clone());
                changed = true;
            }
        }
        for (name, mode) in &desired {
            match self.ensure_attached(name, mode) {
                Ok(true) => {
                    report.interfaces_attached.push(name.clone());
                    // attached anew (its pins were gone): the policy it had
                    if st.policy_drop.contains(name) {
                        match self.fw.set_policy(name, Policy::Drop) {
                            Ok(_) => report.policies_restored.push(name.clone()),
                            Err(e) => report.interfaces_failed.push((name.clone(), format!("policy in drop: {e}"))),
                        }
                    }
                }
                Ok(false) => report.interfaces_kept.push(name.clone()),
                Err(e) => report.interfaces_failed.push((name.clone(), e.body.error)),
            }
            self.flows.start(name, mode);
        }
        if changed {
            st.interfaces = desired;
            st.revision += 1;
        }
        let list = self.pinned_rules()?;
        if let Some(now) = stored(&mut self.specs.lock().unwrap_or_else(|e| e.into_inner()), &list, &st.rules) {
            st.rules = now;
            st.revision += 1;
        }
        let (attached, drop) = self.attached_now()?;
        let policies = Self::note_policies(&mut st, &attached, &drop);
        if attached != st.attached || policies {
            st.attached = attached;
            st.revision += 1;
        }
        self.note_limits(&mut st).map_err(|e| anyhow::anyhow!(e.body.error))?;
        // Written now, not behind: it says `clean = false` before any
        // revision is handed out.
        self.store.save(&st)?;
        self.persist.mark_saved(st.revision);
        *self.reconcile.lock().unwrap_or_else(|e| e.into_inner()) = report.clone();
        Ok(report)
    }

    /// Attaches the firewall to `name` unless it is on there already.
    /// Returns whether it attached now.
    fn ensure_attached(&self, name: &str, mode: &str) -> ApiResult<bool> {
        let iface = Interface::resolve(name)?;
        let mode: AttachMode = mode.parse().map_err(ApiError::unprocessable)?;
        {
            let _lock = self.pin.lock()?;
            if let Some(d) = Dispatcher::open(&self.pin, &iface)? {
                let fw_bit = netray_core::Feature::Firewall.bit();
                if d.active_features()? & fw_bit != 0 {
                    return Ok(false);
                }
            }
        }
        self.fw.attach(name, mode)?;
        Ok(true)
    }

    // ---- rules ----

    pub fn rules(&self) -> ApiResult<(u64, Vec<RuleView>)> {
        let mut st = self.lock();
        let list = self.sync(&mut st)?;
        Ok((st.revision, list.iter().map(RuleView::from).collect()))
    }

    pub fn add_rules(&self, if_match: Option<&str>, rules: &[(Rule, RuleOptions)]) -> ApiResult<(u64, Vec<RuleView>)> {
        let mut st = self.lock();
        if if_match.is_some() {
            // Conditional: changes made by the CLI meanwhile must count.
            self.sync(&mut st)?;
            check_if_match(if_match, st.revision)?;
        }
        // (Unconditional adds skip that read: the sync below sees every
        // change, ours and any other, and bumps the revision.)
        let ids = self.fw.add_with(rules).map_err(|e| ApiError::from_core(e).with_etag(st.revision))?;
        let list = self.sync(&mut st)?;
        let added = list.iter().filter(|r| ids.contains(&r.id)).map(RuleView::from).collect();
        Ok((st.revision, added))
    }

    pub fn delete_rule(&self, if_match: Option<&str>, id: u32) -> ApiResult<(u64, RuleView)> {
        let mut st = self.lock();
        let list = self.sync(&mut st)?;
        let Some(gone) = list.iter().find(|r| r.id == id).map(RuleView::from) else {
            return Err(ApiError::not_found(format!("no rule with id {id}"))
                .hint("GET /v1/rules lists the rules")
                .with_etag(st.revision));
        };
        check_if_match(if_match, st.revision)?;
        self.fw.delete_ids(&[id])?;
        self.sync(&mut st)?;
        Ok((st.revision, gone))
    }

    // ---- interfaces ----

    pub fn interfaces(&self) -> ApiResult<(u64, Vec<InterfaceView>)> {
        let mut st = self.lock();
        self.sync(&mut st)?;
        let attached: Vec<DispatcherStatus> = {
            let _lock = self.pin.lock()?;
            Dispatcher::list(&self.pin)?.iter().map(Dispatcher::status).collect::<netray_core::Result<_>>()?
        };
        let mut names: Vec<String> = st.interfaces.keys().cloned().collect();
        for a in &attached {
            if !names.contains(&a.interface) {
                names.push(a.interface.clone());
            }
        }
        names.sort();
        let views = names
            .into_iter()
            .map(|name| {
                let status = attached.iter().find(|a| a.interface == name).cloned();
                InterfaceView {
                    desired: st.interfaces.contains_key(&name),
                    requested_mode: st.interfaces.get(&name).cloned(),
                    attached: status.is_some(),
                    firewall: status.as_ref().is_some_and(|s| s.features.contains(&"firewall")),
                    exists: Interface::resolve(&name).is_ok(),
                    status,
                    name,
                }
            })
            .collect();
        Ok((st.revision, views))
    }

    pub fn interface(&self, name: &str) -> ApiResult<(u64, InterfaceView)> {
        let (rev, list) = self.interfaces()?;
        match list.into_iter().find(|i| i.name == name) {
            Some(v) => Ok((rev, v)),
            None => {
                let exists = Interface::resolve(name).is_ok();
                let msg = if exists {
                    format!("netray is not attached to {name} and the daemon does not manage it")
                } else {
                    format!("no interface named '{name}'")
                };
                Err(ApiError::not_found(msg).hint("POST /v1/interfaces {\"name\": ...} attaches the firewall to an interface"))
            }
        }
    }

    pub fn attach(&self, if_match: Option<&str>, spec: &InterfaceSpec) -> ApiResult<(u64, InterfaceView, bool)> {
        spec.validate().map_err(|e| ApiError::unprocessable(e).hint("mode is auto, native or generic"))?;
        {
            let mut st = self.lock();
            if if_match.is_some() {
                self.sync(&mut st)?;
            }
            check_if_match(if_match, st.revision)?;
            if Interface::resolve(&spec.name).is_err() {
                return Err(ApiError::unprocessable(format!("no interface named '{}'", spec.name))
                    .hint("`ip link` lists the interfaces of the daemon's network namespace"));
            }
            let attached_now = self.ensure_attached(&spec.name, &spec.mode)?;
            let changed = st.interfaces.get(&spec.name) != Some(&spec.mode);
            if changed || attached_now {
                st.interfaces.insert(spec.name.clone(), spec.mode.clone());
                st.revision += 1;
                self.note_attached(&mut st)?;
                self.save(&st)?;
            }
            self.flows.start(&spec.name, &spec.mode);
            drop(st);
            let (rev, view) = self.interface(&spec.name)?;
            Ok((rev, view, attached_now))
        }
    }

    pub fn detach(&self, if_match: Option<&str>, name: &str) -> ApiResult<u64> {
        let mut st = self.lock();
        if if_match.is_some() {
            self.sync(&mut st)?;
        }
        check_if_match(if_match, st.revision)?;
        let desired = st.interfaces.contains_key(name);
        let exists = Interface::resolve(name).is_ok();
        if !desired && !exists {
            return Err(ApiError::not_found(format!("no interface named '{name}'")).hint("GET /v1/interfaces lists them"));
        }
        self.flows.stop(name);
        let detached = if exists {
            match self.fw.detach(name) {
                Ok(_) => true,
                Err(netray_core::Error::NotAttached(_)) => false,
                Err(e) => return Err(e.into()),
            }
        } else {
            false
        };
        if !desired && !detached {
            return Err(ApiError::not_found(format!("the firewall is not attached to {name}")));
        }
        st.interfaces.remove(name);
        st.policy_drop.remove(name);
        st.revision += 1;
        self.note_attached(&mut st)?;
        self.save(&st)?;
        Ok(st.revision)
    }

    /// Sets an interface's policy for received packets no rule decides
    /// (`firewall policy`) and keeps it in the state file, so an interface
    /// attached anew after a reboot gets it back. Returns the connections
    /// noted as replies.
    pub fn set_policy(&self, name: &str, policy: Policy) -> ApiResult<usize> {
        let mut st = self.lock();
        let noted = self.fw.set_policy(name, policy)?;
        let changed = match policy {
            Policy::Drop => st.policy_drop.insert(name.to_string()),
            Policy::Pass => st.policy_drop.remove(name),
        };
        if changed {
            st.revision += 1;
            self.save(&st)?;
        }
        Ok(noted)
    }

    /// Interface and firewall counters.
    pub fn firewall_status(&self) -> ApiResult<(Vec<DispatcherStatus>, TableUsage)> {
        let s = self.fw.status()?;
        Ok((s.interfaces, s.table))
    }
}

impl Daemon {
    /// Ends flow accounting sessions (daemon shutdown); the firewall stays.
    pub fn flows_stop_all(&self) {
        let names: Vec<String> = self.lock().interfaces.keys().cloned().collect();
        // Flushed to the IPFIX collector while the sessions still exist.
        self.flows.finish_export();
        for n in names {
            self.flows.stop(&n);
        }
    }
}
