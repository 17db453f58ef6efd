//! The lab itself: creating, opening, listing and deleting namespace + veth
//! pairs. Traffic lives in `traffic.rs`.
//!
//! Naming: lab `x` is namespace `nrlab-x`, host end `nr-x` (root namespace),
//! peer end `nrp-x` (inside the namespace). The host end's interface alias
//! records who owns the lab (`netray-lab:pid=N`, or `netray-lab:persistent`
//! after [`Lab::persist`]) so that labs of crashed processes can be found and
//! pruned without any state file that could itself go stale.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use rand::Rng;
use serde::Serialize;
use serde_json::Value;

use crate::addr::{self, Subnet, V4_PREFIX, V6_PREFIX};
use crate::error::{LabError, Result};
use crate::{ip, netns};

const NETNS_PREFIX: &str = "nrlab-";
const HOST_PREFIX: &str = "nr-";
const PEER_PREFIX: &str = "nrp-";
const ALIAS_PREFIX: &str = "netray-lab:";
const ALIAS_PERSISTENT: &str = "netray-lab:persistent";
/// Longest lab name: `nrp-` + name must fit IFNAMSIZ-1 = 15 bytes.
pub const MAX_NAME_LEN: usize = 15 - PEER_PREFIX.len();
/// How long `up` waits for both veth ends to be usable.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// A lab: a network namespace joined to the root namespace by a veth pair,
/// with IPv4 and IPv6 on both ends and static neighbour entries (so no ARP/ND
/// packets appear and the first packet of a test is never held back).
///
/// A lab made by [`Lab::up`] is deleted when dropped (also while unwinding a
/// panic), unless [`Lab::persist`] is called; one from [`Lab::open`] is not.
#[derive(Debug)]
pub struct Lab {
    name: String,
    netns: String,
    host_if: String,
    peer_if: String,
    host_ifindex: u32,
    host_v4: Ipv4Addr,
    peer_v4: Ipv4Addr,
    host_v6: Ipv6Addr,
    peer_v6: Ipv6Addr,
    host_mac: [u8; 6],
    peer_mac: [u8; 6],
    owned: bool,
}

impl Lab {
    /// Creates namespace + veth + addresses; the returned guard deletes
    /// everything on drop.
    pub fn up(name: &str) -> Result<Lab> {
        validate_name(name)?;
        require_root()?;
        prune_stale_once();
        let mut lab = {
            let lock = addr::lock()?;
            if netns::exists(&netns_name(name)) || link(None, &host_name(name))?.is_some() {
                return Err(LabError::Exists(name.to_string()));
            }
            let subnet = addr::allocate(&lock)?;
            // From here on, dropping `lab` (any `?` below) removes what exists.
            let lab = Lab::from_subnet(name, subnet);
            lab.create_host_side()?;
            lab
            // The lock is released here: the host addresses are now visible.
        };
        lab.create_peer_side()?;
        lab.host_ifindex = lab.wait_ready()?;
        Ok(lab)
    }

    /// Attaches to an existing lab (e.g. made by `netray lab up` in another
    /// process). Dropping the result does not delete the lab.
    pub fn open(name: &str) -> Result<Lab> {
        validate_name(name)?;
        let status = inspect(name, None)?;
        if !status.exists() {
            return Err(LabError::NotFound(name.to_string()));
        }
        if let Some(problem) = status.problem {
            return Err(LabError::Broken {
                name: name.to_string(),
                problem,
            });
        }
        let missing = |what: &str| LabError::Broken {
            name: name.to_string(),
            problem: format!("{what} missing"),
        };
        Ok(Lab {
            name: status.name,
            netns: status.netns,
            host_if: status.host_if,
            peer_if: status.peer_if,
            host_ifindex: status.host_ifindex.ok_or_else(|| missing("host ifindex"))?,
            host_v4: status.host_v4.ok_or_else(|| missing("host IPv4 address"))?,
            peer_v4: status.peer_v4.ok_or_else(|| missing("peer IPv4 address"))?,
            host_v6: status.host_v6.ok_or_else(|| missing("host IPv6 address"))?,
            peer_v6: status.peer_v6.ok_or_else(|| missing("peer IPv6 address"))?,
            host_mac: status
                .host_mac
                .as_deref()
                .and_then(addr::parse_mac)
                .ok_or_else(|| missing("host MAC"))?,
            peer_mac: status
                .peer_mac
                .as_deref()
                .and_then(addr::parse_mac)
                .ok_or_else(|| missing("peer MAC"))?,
            owned: false,
        })
    }

    /// Keeps the lab after drop (CLI `lab up`), and marks it persistent so
    /// that pruning of crashed processes' labs leaves it alone.
    pub fn persist(mut self) {
        self.owned = false;
        let alias = [
            "link",
            "set",
            "dev",
            &self.host_if,
            "alias",
            ALIAS_PERSISTENT,
        ];
        if let Err(e) = ip::run(None, &alias) {
            tracing::warn!("lab '{}': could not mark it persistent: {e}", self.name);
        }
    }

    /// Deletes the lab now (CLI `lab down`), returning errors instead of
    /// logging them.
    pub fn down(mut self) -> Result<()> {
        self.owned = false;
        remove(&self.name)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    /// Namespace name (a file in /run/netns).
    pub fn netns(&self) -> &str {
        &self.netns
    }
    /// The veth end in the root namespace.
    pub fn host_if(&self) -> &str {
        &self.host_if
    }
    /// The veth end inside the namespace.
    pub fn peer_if(&self) -> &str {
        &self.peer_if
    }
    pub fn host_ifindex(&self) -> u32 {
        self.host_ifindex
    }
    pub fn host_v4(&self) -> Ipv4Addr {
        self.host_v4
    }
    pub fn peer_v4(&self) -> Ipv4Addr {
        self.peer_v4
    }
    pub fn host_v6(&self) -> Ipv6Addr {
        self.host_v6
    }
    pub fn peer_v6(&self) -> Ipv6Addr {
        self.peer_v6
    }
    pub fn host_mac(&self) -> [u8; 6] {
        self.host_mac
    }
    pub fn peer_mac(&self) -> [u8; 6] {
        self.peer_mac
    }

    /// Runs `f` on a thread that has entered the lab's namespace; sockets
    /// created there live in the namespace. A panic in `f` is resumed here.
    pub fn in_netns<F: FnOnce() -> R + Send, R: Send>(&self, f: F) -> Result<R> {
        netns::run_in(&self.netns, f)
    }

    /// Sets the MTU of both veth ends (for jumbo-frame tests).
    pub fn set_mtu(&self, mtu: u32) -> Result<()> {
        let mtu = mtu.to_string();
        ip::run(None, &["link", "set", "dev", &self.host_if, "mtu", &mtu])?;
        ip::run(
            Some(&self.netns),
            &["link", "set", "dev", &self.peer_if, "mtu", &mtu],
        )?;
        Ok(())
    }

    /// What exists of this lab right now (as `netray lab status` shows it).
    pub fn status(&self) -> Result<LabStatus> {
        inspect(&self.name, None)
    }

    /// The current MTU of the host end.
    pub fn mtu(&self) -> Result<u32> {
        link(None, &self.host_if)?
            .and_then(|l| l.mtu)
            .ok_or_else(|| LabError::Broken {
                name: self.name.clone(),
                problem: format!("{} missing", self.host_if),
            })
    }

    fn from_subnet(name: &str, subnet: Subnet) -> Lab {
        Lab {
            name: name.to_string(),
            netns: netns_name(name),
            host_if: host_name(name),
            peer_if: peer_name(name),
            host_ifindex: 0,
            host_v4: subnet.host_v4(),
            peer_v4: subnet.peer_v4(),
            host_v6: subnet.host_v6(),
            peer_v6: subnet.peer_v6(),
            host_mac: subnet.host_mac(),
            peer_mac: subnet.peer_mac(),
            owned: true,
        }
    }

    /// Namespace, veth pair and everything on the host end, in one `ip -batch`.
    fn create_host_side(&self) -> Result<()> {
        let (host, peer, ns) = (&self.host_if, &self.peer_if, &self.netns);
        let (hmac, pmac) = (
            addr::mac_string(self.host_mac),
            addr::mac_string(self.peer_mac),
        );
        ip::batch(
            None,
            &[
                format!("netns add {ns}"),
                format!("link add {host} address {hmac} type veth peer name {peer} address {pmac} netns {ns}"),
            ],
        )?;
        // New root-namespace interfaces inherit conf/default; IPv6 may be off there.
        let sysctl = format!("/proc/sys/net/ipv6/conf/{host}/disable_ipv6");
        if std::fs::read_to_string(&sysctl).is_ok_and(|v| v.trim() != "0") {
            std::fs::write(&sysctl, "0")
                .map_err(|e| LabError::io(format!("writing {sysctl}"), e))?;
        }
        let (hv4, pv4, hv6, pv6) = (self.host_v4, self.peer_v4, self.host_v6, self.peer_v6);
        ip::batch(
            None,
            &[
                format!(
                    "link set dev {host} alias {ALIAS_PREFIX}pid={}",
                    std::process::id()
                ),
                // Quiet links, so that packet counts are exact: no link-local
                // address (no DAD, no router solicitations) and no ARP/ND
                // (`arp off` also keeps IPv6 from joining solicited-node
                // groups, hence from sending MLD reports); the static
                // neighbour entries below replace ARP/ND.
                format!("link set dev {host} addrgenmode none arp off"),
                format!("addr add {hv4}/{V4_PREFIX} dev {host}"),
                format!("addr add {hv6}/{V6_PREFIX} dev {host} nodad"),
                format!("neigh replace {pv4} lladdr {pmac} dev {host} nud permanent"),
                format!("neigh replace {pv6} lladdr {pmac} dev {host} nud permanent"),
                format!("link set dev {host} up"),
            ],
        )
    }

    fn create_peer_side(&self) -> Result<()> {
        let peer = &self.peer_if;
        let hmac = addr::mac_string(self.host_mac);
        let (hv4, pv4, hv6, pv6) = (self.host_v4, self.peer_v4, self.host_v6, self.peer_v6);
        ip::batch(
            Some(&self.netns),
            &[
                "link set dev lo up".to_string(),
                format!("link set dev {peer} addrgenmode none arp off"),
                format!("addr add {pv4}/{V4_PREFIX} dev {peer}"),
                format!("addr add {pv6}/{V6_PREFIX} dev {peer} nodad"),
                format!("neigh replace {hv4} lladdr {hmac} dev {peer} nud permanent"),
                format!("neigh replace {hv6} lladdr {hmac} dev {peer} nud permanent"),
                format!("link set dev {peer} up"),
            ],
        )
    }

    /// Waits until both ends are up *and* have their real qdisc attached: the
    /// kernel attaches it asynchronously (linkwatch), and until then the
    /// placeholder `noop` qdisc silently drops every packet sent.
    fn wait_ready(&self) -> Result<u32> {
        let start = Instant::now();
        loop {
            let host = link(None, &self.host_if)?;
            let peer = link(Some(&self.netns), &self.peer_if)?;
            if let (Some(h), Some(p)) = (&host, &peer) {
                if h.ready() && p.ready() {
                    return Ok(h.ifindex);
                }
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(LabError::Timeout {
                    name: self.name.clone(),
                    what: "veth link up".into(),
                    secs: READY_TIMEOUT.as_secs_f64(),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.owned {
            if let Err(e) = remove(&self.name) {
                tracing::warn!("lab '{}': cleanup failed: {e}", self.name);
            }
        }
    }
}

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
    fn exists(&self) -> bool {
        self.netns_exists || self.host_ifindex.is_some()
    }
}

/// Labs that exist, for `netray lab status`: every `nrlab-*` namespace and
/// every host end carrying netray's alias.
pub fn list() -> Result<Vec<LabStatus>> {
    // Looking inside namespaces (`ip -n`) needs root; say so up front rather
    // than reporting every lab as broken.
    require_root()?;
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

/// Deletes whatever exists of lab `name` (host veth end, which takes the peer
/// with it, and the namespace). Works on half-deleted labs too.
pub fn remove(name: &str) -> Result<()> {
    validate_name(name)?;
    require_root()?;
    let (host, ns) = (host_name(name), netns_name(name));
    let had_link = link(None, &host)?.is_some();
    let had_ns = netns::exists(&ns);
    if !had_link && !had_ns {
        return Err(LabError::NotFound(name.to_string()));
    }
    // Whatever vanished meanwhile (another process deleting the same lab)
    // is not an error; anything still there afterwards is.
    if had_link {
        if let Err(e) = ip::run(None, &["link", "del", "dev", &host]) {
            if link(None, &host)?.is_some() {
                return Err(e);
            }
        }
    }
    if had_ns {
        if let Err(e) = ip::run(None, &["netns", "del", &ns]) {
            if netns::exists(&ns) {
                return Err(e);
            }
        }
    }
    Ok(())
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
fn prune_stale_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| match prune() {
        Ok(names) if !names.is_empty() => tracing::info!("pruned stale labs: {names:?}"),
        Ok(_) => {}
        Err(e) => tracing::warn!("pruning stale labs failed: {e}"),
    });
}

/// A short name that is unique among parallel tests and processes:
/// up to 3 characters of `prefix`, then pid, a per-process counter and
/// randomness in base 36 (11 characters at most, see [`MAX_NAME_LEN`]).
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let mut name: String = prefix
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(3)
        .collect::<String>()
        .to_ascii_lowercase();
    if name.is_empty() {
        name.push('t');
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let r: u32 = rand::rng().random();
    base36(&mut name, std::process::id(), 4);
    base36(&mut name, n, 2);
    base36(&mut name, r, 2);
    name
}

/// Appends the low `width` base-36 digits of `v`.
fn base36(out: &mut String, mut v: u32, width: usize) {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut buf = vec![b'0'; width];
    for slot in buf.iter_mut().rev() {
        *slot = DIGITS[(v % 36) as usize];
        v /= 36;
    }
    out.push_str(std::str::from_utf8(&buf).unwrap_or_default());
}

pub(crate) fn netns_name(name: &str) -> String {
    format!("{NETNS_PREFIX}{name}")
}
pub(crate) fn host_name(name: &str) -> String {
    format!("{HOST_PREFIX}{name}")
}
pub(crate) fn peer_name(name: &str) -> String {
    format!("{PEER_PREFIX}{name}")
}

/// Lab names become parts of interface and file names, and `ip` arguments.
pub(crate) fn validate_name(name: &str) -> Result<()> {
    let invalid = |reason: &str| {
        Err(LabError::InvalidName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return invalid(&format!(
            "it is longer than {MAX_NAME_LEN} characters (interface names are limited to 15, and `{PEER_PREFIX}` is prepended)"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return invalid("it must start with a letter or digit");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return invalid("only letters, digits, '-' and '_' are allowed");
    }
    Ok(())
}

fn require_root() -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(LabError::NotRoot)
    }
}

fn owner_pid(alias: Option<&str>) -> Option<u32> {
    alias?
        .strip_prefix(ALIAS_PREFIX)?
        .strip_prefix("pid=")?
        .parse()
        .ok()
}

fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    !matches!(kill(Pid::from_raw(raw), None), Err(Errno::ESRCH))
}

/// Builds the status of lab `name`. `host` is the host end if the caller
/// already has it (from one `ip addr show` for all labs).
fn inspect(name: &str, host: Option<Option<LinkInfo>>) -> Result<LabStatus> {
    let (ns, host_if, peer_if) = (netns_name(name), host_name(name), peer_name(name));
    let host = match host {
        Some(h) => h,
        None => link(None, &host_if)?,
    };
    let netns_exists = netns::exists(&ns);
    let peer = if netns_exists {
        // The namespace may vanish between the check and `ip -n`.
        link(Some(&ns), &peer_if).unwrap_or(None)
    } else {
        None
    };
    let alias = host.as_ref().and_then(|h| h.alias.clone());
    let owner = owner_pid(alias.as_deref());
    let problem = match (netns_exists, &host, &peer) {
        (false, _, _) => Some(format!("namespace {ns} missing")),
        (true, None, _) => Some(format!("host interface {host_if} missing")),
        (true, Some(_), None) => Some(format!("interface {peer_if} missing in {ns}")),
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
        peer_v4: peer.as_ref().and_then(|p| p.v4),
        host_v6: host.as_ref().and_then(|h| h.v6),
        peer_v6: peer.as_ref().and_then(|p| p.v6),
        host_mac: host.as_ref().and_then(|h| h.mac.clone()),
        peer_mac: peer.as_ref().and_then(|p| p.mac.clone()),
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
struct LinkInfo {
    name: String,
    ifindex: u32,
    mac: Option<String>,
    alias: Option<String>,
    mtu: Option<u32>,
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

    fn ready(&self) -> bool {
        self.operstate.as_deref() == Some("UP")
            && self.qdisc.as_deref().is_some_and(|q| q != "noop")
    }
}

/// One interface, or `None` if it does not exist.
fn link(netns: Option<&str>, ifname: &str) -> Result<Option<LinkInfo>> {
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
    fn names() {
        assert!(validate_name("netray").is_ok());
        assert!(validate_name("a-b_c9").is_ok());
        for bad in ["", "-x", "a b", "a/b", "toolongname12", "x;rm"] {
            assert!(
                matches!(validate_name(bad), Err(LabError::InvalidName { .. })),
                "{bad:?}"
            );
        }
        let a = unique_name("firewall");
        let b = unique_name("firewall");
        assert_ne!(a, b);
        assert!(a.starts_with("fir") && a.len() == MAX_NAME_LEN, "{a}");
        assert!(validate_name(&unique_name("")).is_ok());
        assert!(validate_name(&unique_name("-_ü")).is_ok());
    }

    #[test]
    fn owner_alias() {
        assert_eq!(owner_pid(Some("netray-lab:pid=42")), Some(42));
        assert_eq!(owner_pid(Some(ALIAS_PERSISTENT)), None);
        assert_eq!(owner_pid(Some("something else")), None);
        assert!(pid_alive(std::process::id()));
    }
}
