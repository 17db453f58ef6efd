//! What to report. Filters are applied in the kernel: pid and uid at syscall
//! entry (nothing is copied for other processes), comm and "failed only" at
//! exit, before the record is written to the ring.

use netray_ebpf::abi::nr_exec_filter;

/// Kernel comms are TASK_COMM_LEN (16) bytes including the NUL.
pub const COMM_MAX: usize = 15;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only execs by this process (thread group id).
    pub pid: Option<u32>,
    /// Only execs by this real uid.
    pub uid: Option<u32>,
    /// Only execs whose reported comm is this (the new program's name on
    /// success, the caller's on failure). Cut to 15 bytes, as the kernel does.
    pub comm: Option<String>,
    /// Only execs that failed.
    pub failed_only: bool,
}

/// A filter the kernel cannot apply.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("--comm must not be empty")]
    EmptyComm,
    #[error("--comm must not contain a NUL byte")]
    NulInComm,
}

impl Filter {
    /// The comm the kernel compares with: cut to [`COMM_MAX`] bytes like the
    /// kernel cuts task names (so `--comm systemd-journald` matches).
    pub fn kernel_comm(&self) -> Result<Option<[u8; COMM_MAX + 1]>, FilterError> {
        let Some(comm) = &self.comm else {
            return Ok(None);
        };
        if comm.is_empty() {
            return Err(FilterError::EmptyComm);
        }
        if comm.as_bytes().contains(&0) {
            return Err(FilterError::NulInComm);
        }
        let mut out = [0u8; COMM_MAX + 1];
        let n = comm.len().min(COMM_MAX);
        out[..n].copy_from_slice(&comm.as_bytes()[..n]);
        Ok(Some(out))
    }

    /// nr_exec_config.flags for this filter.
    pub(crate) fn kernel_flags(&self) -> u32 {
        let mut f = 0;
        if self.pid.is_some() {
            f |= nr_exec_filter::NR_EXEC_F_PID.0;
        }
        if self.uid.is_some() {
            f |= nr_exec_filter::NR_EXEC_F_UID.0;
        }
        if self.comm.is_some() {
            f |= nr_exec_filter::NR_EXEC_F_COMM.0;
        }
        if self.failed_only {
            f |= nr_exec_filter::NR_EXEC_F_FAILED.0;
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_is_cut_like_the_kernel() {
        let f = Filter {
            comm: Some("systemd-journald".into()),
            ..Default::default()
        };
        let c = f.kernel_comm().unwrap().unwrap();
        assert_eq!(&c[..15], b"systemd-journal");
        assert_eq!(c[15], 0);
        let empty = Filter {
            comm: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(empty.kernel_comm(), Err(FilterError::EmptyComm));
        assert_eq!(Filter::default().kernel_flags(), 0);
    }
}
