//! CPU placement of the benchmark: the generator and the receive path on one CPU,
//! the captures on the others.

use anyhow::bail;

/// CPU placement: the generator on the first online CPU, everything else on the
/// others; the calling thread's affinity is restored on drop.
pub(super) struct Cpus {
    generator: Option<libc::cpu_set_t>,
    saved: libc::cpu_set_t,
    /// e.g. "generator and receive path on CPU 0, captures on CPUs 1"
    pub note: String,
}

impl Cpus {
    pub(super) fn split() -> anyhow::Result<Cpus> {
        // SAFETY: an all-zero cpu_set_t is the empty set; sched_getaffinity fills it.
        let mut saved: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: saved is a valid cpu_set_t of the size given.
        if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut saved) }
            != 0
        {
            bail!("sched_getaffinity: {}", std::io::Error::last_os_error());
        }
        // SAFETY: CPU_ISSET reads within the set.
        let allowed: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &saved) })
            .collect();
        if allowed.len() < 2 {
            return Ok(Cpus {
                generator: None,
                saved,
                note: "one CPU: generator and captures share it".into(),
            });
        }
        // SAFETY: as above; CPU_SET writes within the sets.
        let (mut gen, mut rest): (libc::cpu_set_t, libc::cpu_set_t) =
            unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        unsafe { libc::CPU_SET(allowed[0], &mut gen) };
        for &c in &allowed[1..] {
            unsafe { libc::CPU_SET(c, &mut rest) };
        }
        set_affinity(&rest)?;
        let others: Vec<String> = allowed[1..].iter().map(|c| c.to_string()).collect();
        Ok(Cpus {
            generator: Some(gen),
            saved,
            note: format!(
                "generator and receive path on CPU {}, captures (readers, writers, tcpdump) on CPU {}",
                allowed[0],
                others.join(",")
            ),
        })
    }

    /// Moves the calling thread (the generator) to its CPU.
    pub(super) fn enter_generator(&self) -> anyhow::Result<()> {
        match &self.generator {
            Some(set) => set_affinity(set),
            None => Ok(()),
        }
    }
}

impl Drop for Cpus {
    fn drop(&mut self) {
        let _ = set_affinity(&self.saved);
    }
}

pub(super) fn set_affinity(set: &libc::cpu_set_t) -> anyhow::Result<()> {
    // SAFETY: set is a valid cpu_set_t of the size given; 0 is the calling thread.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) } != 0 {
        bail!("sched_setaffinity: {}", std::io::Error::last_os_error());
    }
    Ok(())
}
