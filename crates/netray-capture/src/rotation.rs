//! When `-w FILE` moves on to a new file and what that file is called: tcpdump's `-C`, `-W`
//! and `-G`, with tcpdump's naming (its `MakeFilename`), so scripts that look for
//! `dump.pcapng1` or `dump-%H%M.pcapng` find netray's files where tcpdump's would be.
//!
//! - `-C MB`: before a packet, a file already larger than MB million bytes is closed and the
//!   next one opened: FILE, FILE1, FILE2, ...
//! - `-W N` with `-C`: N files, numbered from 0 with zero padding to the width of N-1
//!   (FILE0..FILE9, or FILE00..FILE10), the oldest overwritten once all exist.
//! - `-G S`: FILE is a strftime pattern, expanded at each rotation; a new file once S seconds
//!   (wall clock) have passed, checked as each packet arrives. With `-C` too, the size
//!   counter restarts at 0 in each period. `-W N` without `-C`: stop after N files.
//!
//! This module only decides; the output opens and writes the files.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::format::StrftimeItems;
use chrono::{DateTime, Local};

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationSpec {
    /// `-w FILE`: a strftime pattern when `seconds` is set.
    pub pattern: String,
    /// `-C`, in bytes (the flag's millions of bytes times 1,000,000).
    pub max_bytes: Option<u64>,
    /// `-W`.
    pub max_files: Option<u32>,
    /// `-G`.
    pub seconds: Option<u64>,
}

/// What to do before writing the next packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Keep writing the current file.
    Same,
    /// Close the current file and write to this one from a fresh section.
    Open(PathBuf),
    /// `-G` with `-W` (and no `-C`): the last file is complete; stop capturing.
    Stop,
}

/// Why a rotation spec cannot work; the message names the flag and the fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RotationError {
    #[error("-w {0}: an empty file name; give -w a name")]
    EmptyName(String),
    #[error("-w {pattern}: {detail} in the strftime pattern -G expands (use %% for a literal %)")]
    BadPattern { pattern: String, detail: String },
    #[error("-W {0} needs -C SIZE or -G SECONDS: it says how many files they rotate through")]
    FilesWithoutRotation(u32),
}

/// The rotation state of one capture.
#[derive(Debug)]
pub struct Rotation {
    spec: RotationSpec,
    /// `-C`'s file number in the current period.
    size_count: u32,
    /// `-G` files finished so far.
    periods: u32,
    /// Start of the current `-G` period, whole seconds since the epoch (tcpdump's time(NULL)).
    period_start: i64,
    /// Zero padding of the file number: the width of N-1 with `-C` and `-W N`.
    digits: usize,
}

impl Rotation {
    /// Checks the spec and names the first file, for a capture starting `now`.
    pub fn start(spec: RotationSpec, now: SystemTime) -> Result<(Rotation, PathBuf), RotationError> {
        if spec.pattern.is_empty() {
            return Err(RotationError::EmptyName(spec.pattern));
        }
        if spec.seconds.is_some() {
            StrftimeItems::new(&spec.pattern)
                .parse()
                .map_err(|e| RotationError::BadPattern { pattern: spec.pattern.clone(), detail: e.to_string() })?;
        }
        if let (Some(files), None, None) = (spec.max_files, spec.max_bytes, spec.seconds) {
            return Err(RotationError::FilesWithoutRotation(files));
        }
        let digits = match (spec.max_bytes, spec.max_files) {
            (Some(_), Some(files)) => digits(files.saturating_sub(1)),
            _ => 0,
        };
        let rotation = Rotation { spec, size_count: 0, periods: 0, period_start: seconds(now), digits };
        let first = rotation.name();
        Ok((rotation, first))
    }

    /// Whether the packet about to be written goes to a new file, given the time and the
    /// size of the current file.
    pub fn before_packet(&mut self, now: SystemTime, bytes_in_file: u64) -> Next {
        if let Some(period) = self.spec.seconds {
            let now = seconds(now);
            if now - self.period_start >= period as i64 {
                self.periods += 1;
                if let (None, Some(files)) = (self.spec.max_bytes, self.spec.max_files) {
                    if self.periods >= files {
                        return Next::Stop;
                    }
                }
                self.period_start = now;
                self.size_count = 0;
                return Next::Open(self.name());
            }
        }
        if let Some(limit) = self.spec.max_bytes {
            if bytes_in_file > limit {
                self.size_count += 1;
                if self.spec.max_files.is_some_and(|files| self.size_count >= files) {
                    self.size_count = 0;
                }
                return Next::Open(self.name());
            }
        }
        Next::Same
    }

    /// `-C` in bytes.
    pub fn max_bytes(&self) -> Option<u64> {
        self.spec.max_bytes
    }

    /// `-G` files finished when [`Next::Stop`] came: the `-W` limit.
    pub fn files_limit(&self) -> Option<u32> {
        self.spec.max_files
    }

    /// tcpdump's MakeFilename: the pattern (through strftime with -G), then the file number
    /// unless it is 0 without padding.
    fn name(&self) -> PathBuf {
        let mut name = if self.spec.seconds.is_some() {
            let start = DateTime::from_timestamp(self.period_start, 0).unwrap_or_default().with_timezone(&Local);
            start.format_with_items(StrftimeItems::new(&self.spec.pattern)).to_string()
        } else {
            self.spec.pattern.clone()
        };
        let numbered = self.spec.max_bytes.is_some() && (self.size_count != 0 || self.digits != 0);
        if numbered {
            name.push_str(&format!("{:0width$}", self.size_count, width = self.digits));
        }
        PathBuf::from(name)
    }
}

/// Decimal digits of `n` (0 for 0, as tcpdump counts them for `-W 1`).
fn digits(mut n: u32) -> usize {
    let mut d = 0;
    while n > 0 {
        d += 1;
        n /= 10;
    }
    d
}

fn seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn spec(bytes: Option<u64>, files: Option<u32>, secs: Option<u64>) -> RotationSpec {
        RotationSpec { pattern: "f".into(), max_bytes: bytes, max_files: files, seconds: secs }
    }

    fn names(spec: RotationSpec, rotations: usize) -> Vec<String> {
        let (mut r, first) = Rotation::start(spec, UNIX_EPOCH).unwrap();
        let mut all = vec![first.display().to_string()];
        for _ in 0..rotations {
            match r.before_packet(UNIX_EPOCH, u64::MAX) {
                Next::Open(p) => all.push(p.display().to_string()),
                other => panic!("{other:?}"),
            }
        }
        all
    }

    #[test]
    fn size_rotation_numbers_like_tcpdump() {
        assert_eq!(names(spec(Some(1), None, None), 3), ["f", "f1", "f2", "f3"]);
        assert_eq!(names(spec(Some(1), Some(3), None), 3), ["f0", "f1", "f2", "f0"]);
        assert_eq!(names(spec(Some(1), Some(11), None), 2), ["f00", "f01", "f02"]);
        assert_eq!(names(spec(Some(1), Some(1), None), 1), ["f", "f"]);
    }

    #[test]
    fn time_rotation_with_a_file_limit_stops() {
        let (mut r, _) = Rotation::start(spec(None, Some(2), Some(1)), UNIX_EPOCH).unwrap();
        assert_eq!(r.before_packet(UNIX_EPOCH, 0), Next::Same);
        assert_eq!(r.before_packet(UNIX_EPOCH + Duration::from_secs(1), 0), Next::Open("f".into()));
        assert_eq!(r.before_packet(UNIX_EPOCH + Duration::from_secs(2), 0), Next::Stop);
    }

    #[test]
    fn bad_specs_are_refused_with_the_flag_named() {
        let mut bad = spec(None, None, Some(1));
        bad.pattern = "x-%Q".into();
        assert!(matches!(Rotation::start(bad, UNIX_EPOCH), Err(RotationError::BadPattern { .. })));
        assert_eq!(
            Rotation::start(spec(None, Some(2), None), UNIX_EPOCH).unwrap_err(),
            RotationError::FilesWithoutRotation(2)
        );
    }
}
