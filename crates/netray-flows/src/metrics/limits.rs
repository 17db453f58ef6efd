//! The rate limits' series (source "limits"): per limit, the packets and
//! bytes it passed and dropped, its bans, and for a per-source limit the
//! sources it tracks and has banned now and the buckets the full per-source
//! table evicted. Labels: `limit_id` and `limit` (the limit as `netray limit
//! list` writes it); at most NR_LIMIT_MAX limits exist, so the series stay
//! few. Limits are global (every interface's firewall applies them), so
//! their counters have no interface.

use netray_core::PinDir;
use netray_firewall::{LimitStatus, Limits};

use super::{Labels, Scrape};

/// Reads the limits under `pin` and adds their series.
pub fn scrape(out: &mut Scrape, pin: &PinDir) {
    match Limits::open(pin.clone()).list() {
        Ok(list) => limits(out, &list),
        Err(e) => out.source("limits", Err(format!("reading the limits: {e}"))),
    }
}

/// The limit families of `list` (as `Limits::list` reads it).
pub fn limits(out: &mut Scrape, list: &[LimitStatus]) {
    let labels = |l: &LimitStatus| -> Labels { vec![("limit_id", l.id.to_string()), ("limit", l.limit.to_string())] };
    let by_verdict = |pass: fn(&LimitStatus) -> u64, drop: fn(&LimitStatus) -> u64| -> Vec<(Labels, u64)> {
        let mut v = Vec::new();
        for l in list {
            for (verdict, n) in [("pass", pass(l)), ("drop", drop(l))] {
                let mut lv = labels(l);
                lv.push(("verdict", verdict.to_string()));
                v.push((lv, n));
            }
        }
        v
    };
    let per_source = |f: fn(&LimitStatus) -> u64| -> Vec<(Labels, u64)> {
        list.iter().filter(|l| l.limit.per_source).map(|l| (labels(l), f(l))).collect()
    };
    out.gauge("netray_limits", "Rate limits installed", vec![(Vec::new(), list.len() as u64)]);
    out.counter(
        "netray_limit_packets",
        "Packets each rate limit passed or dropped (over the rate, or from a banned source)",
        by_verdict(|l| l.passed, |l| l.dropped),
    );
    out.counter("netray_limit_bytes", "Bytes each rate limit passed or dropped", by_verdict(|l| l.passed_bytes, |l| l.dropped_bytes));
    out.counter("netray_limit_bans", "Times a source was banned (limits with --ban)", list.iter().map(|l| (labels(l), l.bans)).collect());
    out.gauge("netray_limit_sources", "Sources with a bucket now (per-source limits)", per_source(|l| l.sources_tracked));
    out.gauge("netray_limit_sources_banned", "Sources banned now (per-source limits)", per_source(|l| l.sources_banned));
    out.counter(
        "netray_limit_source_evictions",
        "Source buckets the full per-source table evicted (such a source starts again with a full bucket)",
        per_source(|l| l.sources_evicted),
    );
    out.source("limits", Ok(()));
}
