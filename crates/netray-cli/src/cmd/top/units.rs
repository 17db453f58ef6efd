//! Numbers for the live view: short, and one token each (`875.7k`, `876kB`,
//! `4.7Mb/s`, never `875.7 k`), so a narrow column never splits a value from
//! its unit.

/// `v` in at most five characters: 3 significant digits with a k, M, G, T,
/// P, E suffix (`87.5k`, `876k`, `1.2M`), plain below 1000 (`999`, or `2.5`
/// below 10 when it has a fraction).
pub fn compact(v: f64) -> String {
    if !v.is_finite() || v < 0.0 {
        return "-".into();
    }
    if v < 999.5 {
        return if v < 9.95 && v.fract() != 0.0 { format!("{v:.1}") } else { format!("{v:.0}") };
    }
    let mut scaled = v;
    for suffix in ["k", "M", "G", "T", "P", "E"] {
        scaled /= 1000.0;
        // Rounded as it will be printed, so 999.96k becomes 1.0M, not 1000.0k.
        if scaled < 99.95 {
            return format!("{scaled:.1}{suffix}");
        }
        if scaled < 999.5 {
            return format!("{scaled:.0}{suffix}");
        }
    }
    format!("{scaled:.0}E")
}

/// Bytes: `512B`, `876kB`, `87.5MB`.
pub fn bytes(b: u64) -> String {
    format!("{}B", compact(b as f64))
}

/// A bit rate: `0b/s`, `87.5kb/s`, `4.7Mb/s`.
pub fn bits(bps: f64) -> String {
    format!("{}b/s", compact(bps))
}

/// A count (packets, flows): `17`, `87.5k`.
pub fn count(n: u64) -> String {
    compact(n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_one_short_token() {
        assert_eq!(compact(0.0), "0");
        assert_eq!(compact(2.5), "2.5");
        assert_eq!(compact(999.0), "999");
        assert_eq!(compact(999.6), "1.0k");
        assert_eq!(compact(875_700.0), "876k");
        assert_eq!(compact(87_570.0), "87.6k");
        assert_eq!(compact(99_960.0), "100k");
        assert_eq!(compact(999_960.0), "1.0M");
        assert_eq!(bytes(126), "126B");
        assert_eq!(bits(4_700_000.0), "4.7Mb/s");
        for v in (0..140).map(|i| 1.37f64.powi(i)) {
            let s = compact(v);
            assert!(s.len() <= 5 && !s.contains(' '), "{v}: {s}");
        }
    }
}
