//! The standard `process_*` metrics of the serving process, read from
//! /proc/self at scrape time, named and computed as Prometheus' Go client
//! does. prometheus-client has no process collector, and the crates that
//! have one serve other metrics libraries (`prometheus`, `metrics`): these
//! few reads are written here instead.

use std::fs;

use super::exposition::{Labels, Scrape, Value};

/// What /proc says about this process.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_memory_bytes: u64,
    pub virtual_memory_bytes: u64,
    pub open_fds: u64,
    pub max_fds: u64,
    pub start_time_seconds: f64,
    pub threads: u64,
}

fn sysconf(name: libc::c_int) -> Result<u64, String> {
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).ok().filter(|v| *v > 0).ok_or_else(|| format!("sysconf({name}) failed"))
}

impl ProcessStats {
    pub fn read() -> Result<ProcessStats, String> {
        let stat = fs::read_to_string("/proc/self/stat").map_err(|e| format!("reading /proc/self/stat: {e}"))?;
        // Fields after the command, which is in parentheses and may hold
        // spaces: state is field 3 of proc_pid_stat(5), so field n is [n - 3].
        let rest = stat.rsplit_once(") ").map(|(_, r)| r).ok_or("/proc/self/stat: no ')'")?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| -> Result<u64, String> {
            f.get(n - 3).and_then(|v| v.parse().ok()).ok_or_else(|| format!("/proc/self/stat: no field {n}"))
        };
        let ticks = sysconf(libc::_SC_CLK_TCK)? as f64;
        let page = sysconf(libc::_SC_PAGESIZE)?;
        let boot: u64 = fs::read_to_string("/proc/stat")
            .map_err(|e| format!("reading /proc/stat: {e}"))?
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
            .ok_or("/proc/stat: no btime")?;
        let open_fds = fs::read_dir("/proc/self/fd").map_err(|e| format!("reading /proc/self/fd: {e}"))?.count() as u64;
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return Err(format!("getrlimit(RLIMIT_NOFILE): {}", std::io::Error::last_os_error()));
        }
        Ok(ProcessStats {
            cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
            threads: field(20)?,
            start_time_seconds: boot as f64 + field(22)? as f64 / ticks,
            virtual_memory_bytes: field(23)?,
            resident_memory_bytes: field(24)? * page,
            open_fds,
            max_fds: lim.rlim_cur,
        })
    }
}

/// Adds the `process_*` families (source "process").
pub fn scrape(out: &mut Scrape) {
    let p = match ProcessStats::read() {
        Ok(p) => p,
        Err(e) => return out.source("process", Err(e)),
    };
    fn one<V: Into<Value>>(v: V) -> Vec<(Labels, Value)> {
        vec![(Vec::new(), v.into())]
    }
    out.counter("process_cpu_seconds", "Total user and system CPU time spent in seconds.", one(p.cpu_seconds));
    out.gauge("process_resident_memory_bytes", "Resident memory size in bytes.", one(p.resident_memory_bytes));
    out.gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", one(p.virtual_memory_bytes));
    out.gauge("process_open_fds", "Number of open file descriptors.", one(p.open_fds));
    out.gauge("process_max_fds", "Maximum number of open file descriptors.", one(p.max_fds));
    out.gauge(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        one(p.start_time_seconds),
    );
    out.gauge("process_threads", "Number of OS threads in the process.", one(p.threads));
    out.source("process", Ok(()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_reads_sanely() {
        let before = fs::read_dir("/proc/self/fd").unwrap().count() as u64;
        let p = ProcessStats::read().unwrap();
        // The read itself holds a directory fd while counting.
        assert!((3..=before + 8).contains(&p.open_fds), "{p:?} ({before} before)");
        assert!(p.max_fds >= p.open_fds, "{p:?}");
        assert!(p.resident_memory_bytes > 1 << 20 && p.virtual_memory_bytes > p.resident_memory_bytes, "{p:?}");
        assert!(p.threads >= 1, "{p:?}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(p.start_time_seconds <= now + 1.0 && p.start_time_seconds > now - 24.0 * 3600.0, "{p:?}");
        assert!(p.cpu_seconds >= 0.0 && p.cpu_seconds < 3600.0, "{p:?}");
    }
}
