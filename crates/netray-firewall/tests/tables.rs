//! The firewall's tables on the real kernel, in a bpffs directory of this
//! test's own: created with the capacity asked for, laid out once in
//! fw_state, kept (not resized) by a later call, and those of another table
//! format refused with the fix.

use std::path::PathBuf;

use libbpf_rs::MapCore;
use netray_core::{map_names as M, maps, Error, PinDir};
use netray_ebpf::abi::nr_fw_state;
use netray_firewall::{
    tables::{counter_cpus, ensure_tables},
    FwCapacity,
};

/// A pin root under /sys/fs/bpf removed on drop, also when a test fails. (Each
/// test crate has its own: netray-tests, which has one too, depends on this
/// crate, so sharing it would need a dev-dependency cycle.)
struct TempPin(PinDir);

impl TempPin {
    fn new(tag: &str) -> TempPin {
        let root = PathBuf::from(format!("/sys/fs/bpf/netray-fw-test-{tag}-{}", std::process::id()));
        TempPin(PinDir::resolve(Some(&root)).expect("a pin root on bpffs (run as root)"))
    }
}

impl Drop for TempPin {
    fn drop(&mut self) {
        let _ = self.0.remove_all();
    }
}

fn entries(pin: &PinDir, map: &str) -> u32 {
    maps::open_pinned(&pin.fw_dir().join(map)).unwrap().max_entries()
}

fn state(pin: &PinDir) -> nr_fw_state {
    maps::get(&maps::open_pinned(&pin.fw_dir().join(M::FW_STATE)).unwrap(), 0).unwrap().unwrap()
}

#[test]
fn tables_are_made_once_with_the_capacity_asked_for() {
    let tmp = TempPin::new("cap");
    let cap = FwCapacity { chunks_per_bank: 1100, ranges_per_bank: 600, max_rules: 300, ..FwCapacity::default() };
    ensure_tables(&tmp.0, &cap).unwrap();
    let cpus = counter_cpus().unwrap();
    for map in [M::FW_POOL, M::FW_RANGES, M::FW_MATCHES, M::FW_L4, M::FW_RULES, M::FW_RULE_STATS, M::FW_RULE_HITS, M::FW_RULE_ACTION] {
        assert_eq!(Some(entries(&tmp.0, map)), cap.entries(map, cpus), "{map}");
    }
    let s = state(&tmp.0);
    assert_eq!(
        (s.chunks_per_bank, s.ranges_per_bank, s.matches_per_bank, s.counter_slots, s.rules, s.generation),
        (1100, 600, 301, 301, 0, 0)
    );
    // Existing tables are kept as they are, whatever capacity a later call asks.
    ensure_tables(&tmp.0, &FwCapacity::default()).unwrap();
    assert_eq!(entries(&tmp.0, M::FW_RULES), 300);
    assert_eq!(state(&tmp.0).chunks_per_bank, 1100);
    // No interface was touched: only the firewall's directory exists.
    assert!(!tmp.0.ifaces_dir().exists());
}

#[test]
fn tables_of_another_format_are_refused() {
    let tmp = TempPin::new("format");
    ensure_tables(&tmp.0, &FwCapacity::default()).unwrap();
    let map = maps::open_pinned(&tmp.0.fw_dir().join(M::FW_STATE)).unwrap();
    let mut s = state(&tmp.0);
    let ours = s.table_format;
    s.table_format = ours + 1;
    maps::put(&map, 0, &s).unwrap();
    let e = ensure_tables(&tmp.0, &FwCapacity::default()).unwrap_err();
    assert!(
        matches!(&e, Error::TableFormat { dir, found, want } if *dir == tmp.0.fw_dir() && *found == ours + 1 && *want == ours),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "the rule tables under {} are in format {} and this netray reads format {ours}: they were made by another \
             netray version — remove the old state with `netray firewall detach --all`, then attach again and re-add \
             the rules",
            tmp.0.fw_dir().display(),
            ours + 1
        )
    );
}
