//! A flows session: switches flow accounting on for one interface (attaching
//! the dispatcher if netray is not there yet), reads snapshots, and switches
//! it off again when the last session on the interface ends — also when
//! dropped, so an early return or a panic never leaves the kernel counting
//! flows for nobody.
//!
//! Several sessions (e.g. `netray top` in a terminal and another serving
//! metrics) share an interface's flow table; each is recorded as a user of the
//! feature (see `Dispatcher::add_user`). A SIGKILLed session's record is
//! ignored once its process is gone, and cleaned up by the next session.
//! The first session on an interface starts from an empty table.

use netray_core::{
    clock::monotonic_ns,
    dispatcher::{AttachOutcome, FlowCapacity},
    AttachMode, Dispatcher, Error, Feature, Hook, Interface, PinDir, Result,
};

use crate::{table::FlowTable, Direction, Snapshot};

/// A hook that counts flows of one direction, and its counters.
#[derive(Debug, Clone)]
pub struct FlowHook {
    pub direction: Direction,
    /// e.g. "xdp native", "tcx egress".
    pub name: String,
    pub stats: netray_core::dispatcher::IfStats,
}

pub struct FlowSession {
    pin: PinDir,
    iface: Interface,
    dispatcher: Dispatcher,
    table: FlowTable,
    /// This session's user record (see `Dispatcher::add_user`).
    user: String,
    note: Option<String>,
    stopped: bool,
}

impl FlowSession {
    /// Starts flow accounting on `ifname`. `cap` sizes the flow table when
    /// netray attaches now; an attached dispatcher keeps its table (see
    /// [`FlowSession::note`]).
    pub fn start(pin: &PinDir, ifname: &str, mode: AttachMode, cap: FlowCapacity) -> Result<FlowSession> {
        if cap.max_flows == 0 {
            return Err(Error::BadRequest("the flow table must hold at least one flow".into()));
        }
        let iface = Interface::resolve(ifname)?;
        let _lock = pin.lock()?;
        let (d, outcome) = Dispatcher::attach_with(pin, &iface, mode, &cap)?;
        match Self::enable(pin, &d) {
            Ok((table, user)) => {
                let mut note = match &outcome {
                    AttachOutcome::Attached { note, .. } => note.clone(),
                    AttachOutcome::AlreadyAttached => None,
                };
                if table.capacity() != cap.max_flows {
                    note = Some(format!(
                        "the flow table of {} holds {} flows, set when netray attached there; detach netray from \
                         the interface to change its size",
                        iface.name,
                        table.capacity()
                    ));
                }
                Ok(FlowSession { pin: pin.clone(), iface, dispatcher: d, table, user, note, stopped: false })
            }
            Err(e) => {
                let _ = d.remove_user(Feature::Flows, None);
                let _ = d.detach_if_idle();
                Err(e)
            }
        }
    }

    fn enable(pin: &PinDir, d: &Dispatcher) -> Result<(FlowTable, String)> {
        let table = FlowTable::open(d)?;
        // Forget sessions whose process is gone.
        d.remove_user(Feature::Flows, None)?;
        if d.users(Feature::Flows).is_empty() {
            // First session: whatever a previous one left is stale. Clear
            // with accounting off, so inserts and entries stay consistent.
            Self::switch(pin, d, false)?;
            table.clear()?;
        }
        let user = d.add_user(Feature::Flows)?;
        if let Err(e) = Self::switch(pin, d, true) {
            let _ = d.remove_user(Feature::Flows, Some(&user));
            let _ = Self::switch(pin, d, false);
            return Err(e);
        }
        Ok((table, user))
    }

    /// Flow accounting on or off at both hooks that feed it: XDP for
    /// received packets, TC egress (attached or detached as needed) for sent
    /// ones. Call with the pin lock held.
    fn switch(pin: &PinDir, d: &Dispatcher, on: bool) -> Result<()> {
        d.set_feature(Feature::Flows, on)?;
        d.set_hook_feature(Hook::TcEgress, Feature::Flows, on)?;
        d.sync_tc(pin)?;
        Ok(())
    }

    pub fn interface(&self) -> &Interface {
        &self.iface
    }

    /// Something the user should know (e.g. the table already had another
    /// size, or XDP fell back to generic mode).
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// The hooks that count this interface's flows, for a header: received
    /// packets at XDP (`"xdp native"` or `"xdp generic"`), sent ones at TC
    /// egress (`"tcx egress"` or `"clsact egress"`), with that hook's
    /// counters; no egress entry when no TC egress program counts flows.
    pub fn hooks(&self) -> Result<Vec<FlowHook>> {
        let st = self.dispatcher.status()?;
        let mut out = vec![FlowHook { direction: Direction::Ingress, name: format!("xdp {}", st.mode), stats: st.stats }];
        for tc in st.tc {
            if tc.hook == Hook::TcEgress.name() && tc.features.contains(&Feature::Flows.name()) {
                out.push(FlowHook { direction: Direction::Egress, name: format!("{} egress", tc.backend), stats: tc.stats });
            }
        }
        Ok(out)
    }

    pub fn table(&self) -> &FlowTable {
        &self.table
    }

    /// Reads the interface's counters and every flow.
    pub fn snapshot(&self) -> Result<Snapshot> {
        if !self.dispatcher.map_path(netray_core::dispatcher::LINK_PIN).exists() {
            return Err(Error::DetachedMeanwhile(self.iface.name.clone()));
        }
        let taken_ns = monotonic_ns();
        let totals = self.dispatcher.stats()?;
        let (flows, table) = self.table.read()?;
        Ok(Snapshot { interface: self.iface.name.clone(), ifindex: self.iface.index, taken_ns, totals, table, flows })
    }

    /// Ends the session: flow accounting goes off unless another session
    /// still runs, and the dispatcher goes if nothing else uses it.
    pub fn stop(mut self) -> Result<()> {
        self.stopped = true;
        self.switch_off()
    }

    fn switch_off(&self) -> Result<()> {
        let _lock = self.pin.lock()?;
        let Some(d) = Dispatcher::open(&self.pin, &self.iface)? else { return Ok(()) };
        d.remove_user(Feature::Flows, Some(&self.user))?;
        if d.users(Feature::Flows).is_empty() {
            Self::switch(&self.pin, &d, false)?;
        }
        d.detach_if_idle()?;
        Ok(())
    }
}

impl Drop for FlowSession {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.switch_off();
        }
    }
}
