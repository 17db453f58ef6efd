//! Writing the state file behind the API's answers.
//!
//! A change is enforced by the kernel the moment its pinned maps are written;
//! the state file only matters after a reboot (or wiped pins). Writing it in
//! the request costs an fsync — 2 to 12 ms on a virtual disk, the whole
//! budget of a fast API — so a thread writes it behind the answers instead,
//! coalescing a burst of changes into one write. At most
//! [`MAX_UNSAVED`] revisions are ever unsaved: a change beyond that waits for
//! the write. A graceful stop writes the last state with `clean = true`; a
//! daemon that finds `clean = false` at start (killed, or the host crashed)
//! skips MAX_UNSAVED + 1 revisions, so an ETag handed out before the crash
//! is never handed out again for another state.

use std::{
    sync::{Arc, Condvar, Mutex},
    thread::JoinHandle,
};

use crate::state::{State, StateStore};

/// Revisions that may be answered before the state file has them.
pub const MAX_UNSAVED: u64 = 64;

#[derive(Default)]
struct Shared {
    /// The newest state not yet written.
    pending: Option<State>,
    /// The revision the file holds.
    saved: u64,
    /// Why the last write failed, until a write succeeds.
    error: Option<String>,
    stop: bool,
}

pub struct Persister {
    shared: Arc<(Mutex<Shared>, Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What /healthz and /v1/stats say of the state file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PersistStatus {
    pub saved_revision: u64,
    pub unsaved_revisions: u64,
    pub error: Option<String>,
}

impl Persister {
    /// Starts the writer; `saved` is the revision the file holds now.
    pub fn start(store: StateStore, saved: u64) -> std::io::Result<Persister> {
        let shared = Arc::new((Mutex::new(Shared { saved, ..Shared::default() }), Condvar::new()));
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new().name("netray-state".into()).spawn(move || write_loop(&store, &s))?;
        Ok(Persister { shared, thread: Mutex::new(Some(thread)) })
    }

    /// Hands `st` to the writer. Waits only when MAX_UNSAVED revisions are
    /// already unsaved; fails if the last write failed (the API must not
    /// go on promising what it cannot keep).
    pub fn save(&self, st: &State) -> Result<(), String> {
        let (lock, cv) = &*self.shared;
        let mut sh = lock.lock().unwrap_or_else(|e| e.into_inner());
        sh.pending = Some(st.clone());
        cv.notify_all();
        if let Some(e) = &sh.error {
            // (The writer tries again with this state.)
            return Err(e.clone());
        }
        while st.revision.saturating_sub(sh.saved) > MAX_UNSAVED && sh.error.is_none() && !sh.stop {
            sh = cv.wait(sh).unwrap_or_else(|e| e.into_inner());
        }
        Ok(())
    }

    /// Notes a write made by someone else (the synchronous one at start).
    pub fn mark_saved(&self, revision: u64) {
        let mut sh = self.shared.0.lock().unwrap_or_else(|e| e.into_inner());
        sh.saved = sh.saved.max(revision);
    }

    pub fn status(&self, revision: u64) -> PersistStatus {
        let sh = self.shared.0.lock().unwrap_or_else(|e| e.into_inner());
        PersistStatus {
            saved_revision: sh.saved,
            unsaved_revisions: revision.saturating_sub(sh.saved),
            error: sh.error.clone(),
        }
    }

    /// Writes `last` (marked clean) after whatever is pending, and ends the writer.
    pub fn finish(&self, mut last: State) {
        last.clean = true;
        {
            let (lock, cv) = &*self.shared;
            let mut sh = lock.lock().unwrap_or_else(|e| e.into_inner());
            sh.pending = Some(last);
            sh.stop = true;
            cv.notify_all();
        }
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

fn write_loop(store: &StateStore, shared: &(Mutex<Shared>, Condvar)) {
    let (lock, cv) = shared;
    loop {
        let (st, stop) = {
            let mut sh = lock.lock().unwrap_or_else(|e| e.into_inner());
            while sh.pending.is_none() && !sh.stop {
                sh = cv.wait(sh).unwrap_or_else(|e| e.into_inner());
            }
            (sh.pending.take(), sh.stop)
        };
        if let Some(st) = st {
            let result = store.save(&st);
            let mut sh = lock.lock().unwrap_or_else(|e| e.into_inner());
            match result {
                Ok(()) => {
                    sh.saved = sh.saved.max(st.revision);
                    sh.error = None;
                }
                Err(e) => {
                    let msg = format!("writing the state file {}: {e:#}", store.path().display());
                    eprintln!("netray daemon: {msg}");
                    sh.error = Some(msg);
                }
            }
            cv.notify_all();
        }
        if stop && lock.lock().unwrap_or_else(|e| e.into_inner()).pending.is_none() {
            return;
        }
    }
}
