//! Tables shared by every interface's programs, and who owns them.
//!
//! The dispatcher's programs reference the firewall's `fw_*` tables, so the
//! kernel needs them, created and sized, whenever any feature (monitor,
//! flows, capture) loads a dispatcher first. Their sizes and first contents
//! are the firewall's business, not the loader's: the firewall registers
//! itself here as the owner of the `fw_` tables ([`register`]), and the map
//! pinning code ([`crate::map_pins`]) asks the owner to create them when
//! their pins are missing. netray-core stays below netray-firewall.

use std::{path::PathBuf, sync::RwLock};

use crate::{Error, PinDir, Result};

/// A feature that owns maps shared by every interface.
pub trait TableOwner: Send + Sync {
    /// The prefix of the map names it owns (e.g. "fw_").
    fn prefix(&self) -> &'static str;

    /// The directory its tables are pinned in.
    fn dir(&self, pin: &PinDir) -> PathBuf;

    /// Creates its tables with their default sizes if they are missing, and
    /// checks those that exist. Called with the pin lock held.
    fn ensure(&self, pin: &PinDir) -> Result<()>;
}

static OWNERS: RwLock<Vec<&'static dyn TableOwner>> = RwLock::new(Vec::new());

/// Registers `owner` (once per prefix: a second registration is ignored).
pub fn register(owner: &'static dyn TableOwner) {
    let mut owners = OWNERS.write().unwrap_or_else(|e| e.into_inner());
    if !owners.iter().any(|o| o.prefix() == owner.prefix()) {
        owners.push(owner);
    }
}

/// The registered owner of a map name, if any.
pub fn owner_of(map: &str) -> Option<&'static dyn TableOwner> {
    OWNERS.read().unwrap_or_else(|e| e.into_inner()).iter().copied().find(|o| map.starts_with(o.prefix()))
}

/// The pin path of a shared map, its owner's tables created first if the pin
/// is missing. None when `map` is not a shared map (no `prefix` of `shared`).
pub fn shared_pin(pin: &PinDir, map: &str, shared: &[&str]) -> Result<Option<PathBuf>> {
    let Some(prefix) = shared.iter().find(|p| map.starts_with(**p)) else { return Ok(None) };
    let owner = owner_of(map).ok_or_else(|| Error::NoTableOwner { map: map.to_string(), prefix: prefix.to_string() })?;
    let path = owner.dir(pin).join(map);
    if !path.exists() {
        owner.ensure(pin)?;
    }
    Ok(Some(path))
}
