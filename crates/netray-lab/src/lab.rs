//! A lab's lifecycle: creating a namespace + veth pair ([`Lab::up`]), opening
//! one that exists, keeping it ([`Lab::persist`]) and deleting it ([`remove`]).
//! What exists and who owns it is in `inventory.rs`, names in `names.rs`,
//! traffic in `traffic.rs`.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::addr::{self, Subnet, V4_PREFIX, V6_PREFIX};
use crate::error::{LabError, Result};
use crate::inventory::{inspect, link, prune_stale_once, LabStatus};
use crate::names::{host_name, netns_name, peer_name, validate_name, ALIAS_PERSISTENT, ALIAS_PREFIX};
use crate::{ip, netns};

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

    /// Gives the peer end another IPv6 address of the lab's /64 (host part
    /// `host`, 3 or more: 1 and 2 are the ends'), without duplicate address
    /// detection so it is usable at once: a second source inside the lab.
    /// It goes with the namespace.
    pub fn add_peer_v6(&self, host: u16) -> Result<Ipv6Addr> {
        assert!(host >= 3, "::1 and ::2 are the lab's own ends");
        let net = u128::from(self.peer_v6) & !((1u128 << 64) - 1);
        let addr = Ipv6Addr::from(net | u128::from(host));
        let cidr = format!("{addr}/{V6_PREFIX}");
        ip::run(Some(&self.netns), &["addr", "add", &cidr, "dev", &self.peer_if, "nodad"])?;
        Ok(addr)
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

pub(crate) fn require_root() -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(LabError::NotRoot)
    }
}

