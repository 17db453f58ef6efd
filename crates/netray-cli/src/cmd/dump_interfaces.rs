//! `netray dump -D`: the interfaces netray can capture on, numbered with their state the way
//! `tcpdump -D` prints them ("1.eth0 [Up, Running, Connected]").
//!
//! netray captures Ethernet frames at XDP and TC, so the list holds the Ethernet-type
//! interfaces of this network namespace (ARPHRD_ETHER: physical NICs, veth, bridges, bonds...);
//! tcpdump also lists lo, "any" and pseudo-devices netray cannot hook. Read from sysfs, which
//! is where libpcap takes the same state from.

use std::{fs, path::Path};

use serde::Serialize;

use crate::output::{json_pretty, outln};

/// ARPHRD_ETHER in /sys/class/net/IFACE/type.
const ARPHRD_ETHER: u32 = 1;
const IFF_UP: u32 = 0x1;

#[derive(Serialize)]
struct Capturable {
    number: usize,
    name: String,
    ifindex: u32,
    up: bool,
    running: bool,
    /// "connected", "disconnected" or "unknown" (from the operational state), as libpcap says it.
    link: &'static str,
}

pub fn list(json: bool) -> anyhow::Result<()> {
    let interfaces = capturable(Path::new("/sys/class/net"))?;
    if json {
        return json_pretty(&interfaces);
    }
    for i in &interfaces {
        let mut state = Vec::new();
        if i.up {
            state.push("Up");
        }
        if i.running {
            state.push("Running");
        }
        match i.link {
            "connected" => state.push("Connected"),
            "disconnected" => state.push("Disconnected"),
            _ => {}
        }
        let state = if state.is_empty() { "none".to_owned() } else { state.join(", ") };
        outln!("{}.{} [{state}]", i.number, i.name)?;
    }
    Ok(())
}

fn capturable(sysfs: &Path) -> anyhow::Result<Vec<Capturable>> {
    let read = |name: &str, what: &str| fs::read_to_string(sysfs.join(name).join(what)).unwrap_or_default();
    let mut found = Vec::new();
    let entries = fs::read_dir(sysfs).map_err(|e| anyhow::anyhow!("cannot list {}: {e}", sysfs.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if read(&name, "type").trim().parse() != Ok(ARPHRD_ETHER) {
            continue;
        }
        let flags = u32::from_str_radix(read(&name, "flags").trim().trim_start_matches("0x"), 16).unwrap_or(0);
        let ifindex = read(&name, "ifindex").trim().parse().unwrap_or(0);
        let up = flags & IFF_UP != 0;
        let operstate = read(&name, "operstate");
        // sysfs's flags lack IFF_RUNNING, which the kernel adds for SIOCGIFFLAGS (libpcap's
        // source) when the operational state is up or unknown.
        let running = up && matches!(operstate.trim(), "up" | "unknown");
        // libpcap reports a link state only for interfaces that are up.
        let link = match operstate.trim() {
            _ if !up => "unknown",
            "up" => "connected",
            "down" | "lowerlayerdown" => "disconnected",
            _ => "unknown",
        };
        found.push(Capturable { number: 0, name, ifindex, up, running, link });
    }
    found.sort_by_key(|i| i.ifindex);
    for (n, i) in found.iter_mut().enumerate() {
        i.number = n + 1;
    }
    Ok(found)
}
