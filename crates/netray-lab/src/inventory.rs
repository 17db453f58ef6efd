//! Which labs exist and in what state, for `netray lab status` and `prune`:
//! read from the system (`ip`, /run/netns) each time, never from a state file.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Once;

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use serde::Serialize;
use serde_json::Value;

use crate::error::{LabError, Result};
use crate::lab::{remove, require_root};
use crate::names::{host_name, netns_name, owner_pid, peer_name, ALIAS_PERSISTENT, ALIAS_PREFIX, HOST_PREFIX, NETNS_PREFIX};
use crate::addr::Subnet;
use crate::{ip, netns};

/// What exists of a lab, for `netray lab status` (see [`list`]).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LabStatus {
    pub name: String,
    pub netns: String,
    pub host_if: String,
    pub peer_if: String,
    pub netns_exists: bool,
    pub host_ifindex: Option<u32>,
    pub host_v4: Option<Ipv4Addr>,
    pub peer_v4: Option<Ipv4Addr>,
    pub host_v6: Option<Ipv6Addr>,
    pub peer_v6: Option<Ipv6Addr>,
    pub host_mac: Option<String>,
    pub peer_mac: Option<String>,
    pub mtu: Option<u32>,
    /// Operational state of the host end ("UP", "DOWN", ...).
    pub state: Option<String>,
    /// The process that created it and deletes it when done; `None` for
    /// persistent labs (made by `netray lab up`).
    pub owner_pid: Option<u32>,
    pub persistent: bool,
    /// Its owner process is gone: nothing will delete it (`netray lab prune`).
    pub stale: bool,
    /// Why the lab is unusable, if it is (e.g. half deleted).
    pub problem: Option<String>,
}

impl LabStatus {
    pub(crate) fn exists(&self) -> bool {
        self.netns_exists || self.host_ifindex.is_some()
    }
}

/// Labs that exist, for `netray lab status`: every `nrlab-*` namespace and
/// every host end carrying netray's alias.
pub fn list() -> Result<Vec<LabStatus>> {
    let mut names: Vec<String> = Vec::new();
    if let Ok(dir) = std::fs::read_dir(netns::NETNS_DIR) {
        for entry in dir.flatten() {
            if let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix(NETNS_PREFIX))
            {
                names.push(name.to_string());
            }
        }
    }
    let links: Vec<LinkInfo> = ip::json(None, &["-d", "addr", "show"])?
        .iter()
        .filter_map(LinkInfo::parse)
        .collect();
    for l in &links {
        if let Some(name) = l.name.strip_prefix(HOST_PREFIX) {
            if l.alias
                .as_deref()
                .is_some_and(|a| a.starts_with(ALIAS_PREFIX))
            {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let host = links.iter().find(|l| l.name == host_name(&name)).cloned();
        let status = inspect(&name, Some(host))?;
        // It may have been deleted meanwhile (parallel tests).
        if status.exists() {
            out.push(status);
        }
    }
    Ok(out)
}

/// Deletes labs whose owner process is gone (killed tests, crashed runs) and
/// returns their names. Persistent labs are never pruned.
pub fn prune() -> Result<Vec<String>> {
    require_root()?;
    let mut pruned = Vec::new();
    for l in ip::json(None, &["link", "show"])?
        .iter()
        .filter_map(LinkInfo::parse)
    {
        let Some(name) = l.name.strip_prefix(HOST_PREFIX) else {
            continue;
        };
        let Some(pid) = owner_pid(l.alias.as_deref()) else {
            continue;
        };
        if !pid_alive(pid) {
            match remove(name) {
                Ok(()) | Err(LabError::NotFound(_)) => pruned.push(name.to_string()),
                Err(e) => return Err(e),
            }
        }
    }
    Ok(pruned)
}

/// Prunes once per process, so that long-running test machines do not fill
/// up with the labs of killed test runs.
pub(crate) fn prune_stale_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| match prune() {
        Ok(names) if !names.is_empty() => tracing::info!("pruned stale labs: {names:?}"),
        Ok(_) => {}
        Err(e) => tracing::warn!("pruning stale labs failed: {e}"),
    });
}

fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    !matches!(kill(Pid::from_raw(raw), None), Err(Errno::ESRCH))
}

/// Builds the status of lab `name`. `host` is the host end if the caller
/// already has it (from one `ip addr show` for all labs).
pub(crate) fn inspect(name: &str, host: Option<Option<LinkInfo>>) -> Result<LabStatus> {
    let (ns, host_if, peer_if) = (netns_name(name), host_name(name), peer_name(name));
    let host = match host {
        Some(h) => h,
        None => link(None, &host_if)?,
    };
    let netns_exists = netns::exists(&ns);
    // Looking inside a namespace (`ip -n`) needs root. Without it the peer end is
    // described as the lab made it, from the host end's slot, and not checked.
    let can_enter = nix::unistd::geteuid().is_root();
    let peer = if netns_exists && can_enter {
        // The namespace may vanish between the check and `ip -n`.
        link(Some(&ns), &peer_if).unwrap_or(None)
    } else {
        None
    };
    let made = host.as_ref().and_then(|h| h.v4).and_then(Subnet::of_host_v4).filter(|_| !can_enter);
    let alias = host.as_ref().and_then(|h| h.alias.clone());
    let owner = owner_pid(alias.as_deref());
    let problem = match (netns_exists, &host, &peer) {
        (false, _, _) => Some(format!("namespace {ns} missing")),
        (true, None, _) => Some(format!("host interface {host_if} missing")),
        (true, Some(_), None) if can_enter => Some(format!("interface {peer_if} missing in {ns}")),
        (true, Some(_), None) => None,
        (true, Some(_), Some(_)) => None,
    };
    Ok(LabStatus {
        name: name.to_string(),
        netns: ns,
        host_if,
        peer_if,
        netns_exists,
        host_ifindex: host.as_ref().map(|h| h.ifindex),
        host_v4: host.as_ref().and_then(|h| h.v4),
        peer_v4: peer.as_ref().and_then(|p| p.v4).or(made.map(Subnet::peer_v4)),
        host_v6: host.as_ref().and_then(|h| h.v6),
        peer_v6: peer.as_ref().and_then(|p| p.v6).or(made.map(Subnet::peer_v6)),
        host_mac: host.as_ref().and_then(|h| h.mac.clone()),
        peer_mac: peer.as_ref().and_then(|p| p.mac.clone()).or(made.map(|s| mac_text(s.peer_mac()))),
        mtu: host.as_ref().and_then(|h| h.mtu),
        state: host.as_ref().and_then(|h| h.operstate.clone()),
        owner_pid: owner,
        persistent: alias.as_deref() == Some(ALIAS_PERSISTENT),
        stale: owner.is_some_and(|pid| !pid_alive(pid)),
        problem,
    })
}

/// The parts of `ip -j -d addr show` output netray cares about (`-d` for
/// the alias).
#[derive(Clone, Debug)]
pub(crate) struct LinkInfo {
    name: String,
    pub(crate) ifindex: u32,
    mac: Option<String>,
    alias: Option<String>,
    pub(crate) mtu: Option<u32>,
    operstate: Option<String>,
    qdisc: Option<String>,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
}

impl LinkInfo {
    fn parse(v: &Value) -> Option<LinkInfo> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let addrs: Vec<IpAddr> = v
            .get("addr_info")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|i| i.get("local")?.as_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        Some(LinkInfo {
            name: s("ifname")?,
            ifindex: u32::try_from(v.get("ifindex")?.as_u64()?).ok()?,
            mac: s("address"),
            alias: s("ifalias"),
            mtu: v
                .get("mtu")
                .and_then(Value::as_u64)
                .and_then(|m| u32::try_from(m).ok()),
            operstate: s("operstate"),
            qdisc: s("qdisc"),
            v4: addrs.iter().find_map(|a| match a {
                IpAddr::V4(a) => Some(*a),
                _ => None,
            }),
            v6: addrs.iter().find_map(|a| match a {
                IpAddr::V6(a) if !a.is_unicast_link_local() => Some(*a),
                _ => None,
            }),
        })
    }

    pub(crate) fn ready(&self) -> bool {
        self.operstate.as_deref() == Some("UP")
            && self.qdisc.as_deref().is_some_and(|q| q != "noop")
    }
}

/// One interface, or `None` if it does not exist.
/// A MAC address as `ip` prints it.
fn mac_text(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

pub(crate) fn link(netns: Option<&str>, ifname: &str) -> Result<Option<LinkInfo>> {
    match ip::json(netns, &["-d", "addr", "show", "dev", ifname]) {
        Ok(items) => Ok(items.first().and_then(LinkInfo::parse)),
        Err(LabError::Command { stderr, .. }) if stderr.contains("does not exist") => Ok(None),
        Err(e) => Err(e),
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive() {
        assert!(pid_alive(std::process::id()));
    }
}
