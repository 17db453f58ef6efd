//! The daemon's desired state on disk: the interfaces it attaches (and their
//! drop policy), the rules it last saw in the pinned maps, and the revision
//! every change bumps.
//! Written atomically (temp file + fsync + rename + fsync of the directory),
//! so a crash leaves the old or the new file, never half of one.

use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::{config::RuleSpec, limit_spec::LimitSpec};

pub const STATE_FILE: &str = "state.json";
const FORMAT: u32 = 1;

/// A rate limit with the id it has in the pinned maps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredLimit {
    pub id: u32,
    #[serde(flatten)]
    pub spec: LimitSpec,
}

/// A rule with the id it has in the pinned maps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRule {
    pub id: u32,
    #[serde(flatten)]
    pub spec: RuleSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub format: u32,
    /// Bumped by every change of rules or interfaces (API, config, or seen
    /// in the pinned maps after a change by the CLI).
    pub revision: u64,
    /// Interfaces the daemon keeps attached: name -> XDP mode.
    pub interfaces: BTreeMap<String, String>,
    /// The pinned rules as last seen; restored if the pins are gone (reboot).
    pub rules: Vec<StoredRule>,
    /// The pinned rate limits as last seen; restored with the rules.
    #[serde(default)]
    pub limits: Vec<StoredLimit>,
    /// Interfaces whose received packets no rule decides are dropped
    /// (`PUT /v1/interfaces/{name}/policy` with `drop`): the policy is set
    /// again when the daemon attaches the interface anew (after a reboot).
    #[serde(default)]
    pub policy_drop: std::collections::BTreeSet<String>,
    /// Interfaces the firewall was seen attached to (by the daemon or the
    /// CLI): a change seen here bumps the revision too.
    #[serde(default)]
    pub attached: std::collections::BTreeSet<String>,
    /// Written by a graceful stop: the file then holds the last revision.
    /// Otherwise up to persist::MAX_UNSAVED revisions may be missing from it.
    #[serde(default)]
    pub clean: bool,
}

impl Default for State {
    fn default() -> Self {
        State { format: FORMAT, revision: 0, interfaces: BTreeMap::new(), rules: Vec::new(), limits: Vec::new(), policy_drop: Default::default(), attached: Default::default(), clean: true }
    }
}

/// The state file in a directory.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    pub fn open(dir: &Path) -> anyhow::Result<StateStore> {
        fs::create_dir_all(dir).with_context(|| format!("creating the state directory {}", dir.display()))?;
        Ok(StateStore { dir: dir.to_path_buf() })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The saved state, or the empty one if there is none yet.
    pub fn load(&self) -> anyhow::Result<State> {
        let path = self.path();
        match fs::read(&path) {
            Ok(bytes) => {
                let st: State = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{} is not a valid state file (move it away to start afresh)", path.display()))?;
                if st.format != FORMAT {
                    anyhow::bail!("{}: unknown state format {}", path.display(), st.format);
                }
                Ok(st)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Replaces the state file atomically.
    pub fn save(&self, st: &State) -> anyhow::Result<()> {
        let path = self.path();
        let tmp = self.dir.join(format!(".{STATE_FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(st)?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(&bytes).and_then(|()| f.write_all(b"\n")).and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        drop(f);
        fs::rename(&tmp, &path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        if let Ok(d) = fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_and_load_round_trip_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("sub")).unwrap();
        assert_eq!(store.load().unwrap(), State::default());
        let mut st = State { revision: 7, ..State::default() };
        st.interfaces.insert("eth1".into(), "auto".into());
        st.rules.push(StoredRule {
            id: 3,
            spec: RuleSpec { cidr: "10.0.0.0/8".into(), proto: Some("udp".into()), port: Some(53), dir: Some("in".into()), ttl: None, audit: false, action: None },
        });
        store.save(&st).unwrap();
        assert_eq!(store.load().unwrap(), st);
        st.revision = 8;
        store.save(&st).unwrap();
        assert_eq!(store.load().unwrap().revision, 8);
        // No temp file left behind.
        let names: Vec<_> = fs::read_dir(dir.path().join("sub")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(STATE_FILE)]);
        fs::write(store.path(), b"{not json").unwrap();
        assert!(format!("{:#}", store.load().unwrap_err()).contains("not a valid state file"));
    }
}
