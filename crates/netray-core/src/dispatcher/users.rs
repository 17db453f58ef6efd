//! Which processes use a feature that several can run at once on an
//! interface (flows, captures): one empty directory per user under the
//! dispatcher's pins, so a crashed user is noticed by its pid.

use std::{fs, path::PathBuf};

use crate::{pin::remove_pins, Dispatcher, Error, Feature, Result};

impl Dispatcher {
    /// Records this process as a user of a feature that several processes
    /// can run at once on the interface (flows): an empty directory
    /// `<if dir>/<feature>-users/<pid>-<n>` (bpffs refuses dots in names),
    /// removed with the dispatcher's pins. Returns the record's name, for
    /// `remove_user`.
    pub fn add_user(&self, feature: Feature) -> Result<String> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let record = format!("{}-{n}", std::process::id());
        let dir = self.users_dir(feature).join(&record);
        fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        Ok(record)
    }

    /// Removes a user record (None: none), and those of processes that are gone.
    pub fn remove_user(&self, feature: Feature, record: Option<&str>) -> Result<()> {
        let Ok(entries) = fs::read_dir(self.users_dir(feature)) else { return Ok(()) };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if Some(name.as_str()) == record || !user_pid(&name).is_some_and(process_alive) {
                remove_pins(&e.path())?;
            }
        }
        Ok(())
    }

    /// The live processes recorded as users of `feature` (one per record).
    pub fn users(&self, feature: Feature) -> Vec<u32> {
        let Ok(entries) = fs::read_dir(self.users_dir(feature)) else { return Vec::new() };
        let mut pids: Vec<u32> = entries
            .flatten()
            .filter_map(|e| user_pid(e.file_name().to_str()?))
            .filter(|&p| process_alive(p))
            .collect();
        pids.sort_unstable();
        pids
    }

    fn users_dir(&self, feature: Feature) -> PathBuf {
        self.dir.join(format!("{}-users", feature.name()))
    }
}

/// The pid of a feature user record ("<pid>-<n>").
fn user_pid(record: &str) -> Option<u32> {
    record.split('-').next()?.parse().ok()
}

/// Whether a process exists (one of another user counts too).
pub fn process_alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence.
    pid != 0 && (unsafe { libc::kill(pid as i32, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}
