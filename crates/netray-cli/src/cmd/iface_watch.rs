//! Noticing that the interface a command watches went away (`ip link del`,
//! a container's veth removed with its namespace).
//!
//! Polling, not netlink: no netlink crate is in the tree (rtnetlink would bring
//! an async runtime into every command), and `if_indextoname` on the ifindex
//! resolved at start costs one ioctl, so asking every 200 ms notices within a
//! second. A thread of its own, so every run loop of a command (text, JSON,
//! terminal UI) stops the same way: through the flag Ctrl-C sets.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use netray_core::{Interface, PinDir};

/// The exit status of a command whose interface went away (documented in
/// each command's EXIT STATUS, [`exit_status_help`], and in the docs).
pub const EXIT_IFACE_GONE: u8 = 3;

/// How often the interface is looked up.
const POLL: Duration = Duration::from_millis(200);

/// Watches one interface until dropped; when it goes away, sets `stop`. The
/// command says so ([`IfaceWatch::report`]) once its loop has ended: a
/// terminal UI must have left the alternate screen first.
pub struct IfaceWatch {
    name: String,
    index: u32,
    gone: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl IfaceWatch {
    /// Starts watching `iface` (as resolved when the command started: a
    /// rename is not a removal, the ifindex stays).
    pub fn start(iface: &Interface, stop: &Arc<AtomicBool>) -> std::io::Result<IfaceWatch> {
        let gone = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let index = iface.index;
        let (g, d, s) = (Arc::clone(&gone), Arc::clone(&done), Arc::clone(stop));
        let thread = std::thread::Builder::new().name("iface-watch".into()).spawn(move || {
            while !d.load(Ordering::Relaxed) && !s.load(Ordering::Relaxed) {
                if Interface::name_of(index).is_none() {
                    g.store(true, Ordering::SeqCst);
                    s.store(true, Ordering::SeqCst);
                    return;
                }
                std::thread::sleep(POLL);
            }
        })?;
        Ok(IfaceWatch { name: iface.name.clone(), index: iface.index, gone, done, thread: Some(thread) })
    }

    /// Whether the interface went away (the command stopped because of it).
    pub fn gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
    }

    /// Says on stderr that the interface went away, if it did; returns whether.
    pub fn report(&self) -> bool {
        let gone = self.gone();
        if gone {
            eprintln!("netray: interface {} went away", self.name);
        }
        gone
    }

    /// Once the interface went away: removes what is pinned for it (the
    /// dispatcher's programs and maps, a capture's state), which nothing can
    /// use any more; the firewall's rules, shared by every interface, stay.
    pub fn remove_pins(&self, pin: &PinDir) -> anyhow::Result<()> {
        if !self.gone() || !pin.exists() {
            return Ok(());
        }
        let _lock = pin.lock()?;
        for dir in [pin.if_dir(self.index), pin.capture_dir().join(self.index.to_string())] {
            netray_core::pin::remove_pins(&dir)?;
        }
        pin.prune_capture_dirs();
        Ok(())
    }

    /// The exit status: 3 if the interface went away, else success.
    pub fn exit_code(&self) -> std::process::ExitCode {
        if self.gone() {
            std::process::ExitCode::from(EXIT_IFACE_GONE)
        } else {
            std::process::ExitCode::SUCCESS
        }
    }
}

impl Drop for IfaceWatch {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The EXIT STATUS section of the help of a command that watches an
/// interface, as a literal for `concat!` in `after_help`.
macro_rules! exit_status_help {
    () => {
        "\n\nEXIT STATUS:\n  \
        0  stopped by -c, --duration, Ctrl-C or a closed pipe\n  \
        1  an error (the message says which)\n  \
        3  the interface went away (deleted, or moved to another namespace): \"netray: interface IFACE\n     \
        went away\" on stderr, then what was seen up to then is flushed and the usual stats printed"
    };
}
pub(crate) use exit_status_help;
