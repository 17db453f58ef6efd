//! netray's own drops: the dispatcher's event ring with the drops feature bit,
//! which makes the XDP and TC programs write an event only for the packets
//! their firewall dropped (nothing is written, and nothing paid, while the bit
//! is off). The ring and its owner are the monitor's (netray-monitor), so a
//! `netray monitor` on the same interface excludes this and the other way round.

use netray_core::{AttachMode, Dispatcher, Feature, Hook, Interface, PinDir, Result};
use netray_monitor::MonitorSession;

/// Starts reading the firewall's drops on `iface` at every hook where the
/// firewall runs; None (and why) when it runs nowhere there.
pub fn start(pin: &PinDir, iface: &Interface) -> Result<std::result::Result<MonitorSession, String>> {
    let Some(d) = Dispatcher::open(pin, iface)? else {
        return Ok(Err(format!("netray's firewall is not attached to {}", iface.name)));
    };
    let mut hooks = Vec::new();
    for h in [Hook::Xdp, Hook::TcIngress, Hook::TcEgress] {
        if d.active_hook_features(h)? & Feature::Firewall.bit() != 0 {
            hooks.push(h);
        }
    }
    if hooks.is_empty() {
        return Ok(Err(format!("netray's firewall has no hook on {}", iface.name)));
    }
    drop(d);
    MonitorSession::start_feature(pin, &iface.name, AttachMode::Auto, &hooks, Feature::Drops).map(Ok)
}
