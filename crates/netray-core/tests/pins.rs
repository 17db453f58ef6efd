//! Pins on the real kernel, in a bpffs directory of this test's own: the pin
//! root, pinning a map and removing pins, and the registry that creates the
//! shared tables through their owner when their pins are missing.

use std::{
    os::fd::AsFd,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use libbpf_rs::{MapCore, MapHandle, MapType};
use netray_core::{link, maps, pin::remove_pins, tables, Error, PinDir, Result};

/// A pin root under /sys/fs/bpf removed on drop, also when a test fails.
struct TempPin(PinDir);

impl TempPin {
    fn new(tag: &str) -> TempPin {
        let root = PathBuf::from(format!("/sys/fs/bpf/netray-core-test-{tag}-{}", std::process::id()));
        TempPin(PinDir::resolve(Some(&root)).expect("a pin root on bpffs (run as root)"))
    }
}

impl Drop for TempPin {
    fn drop(&mut self) {
        let _ = self.0.remove_all();
    }
}

fn array_map(name: &str) -> MapHandle {
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        ..Default::default()
    };
    MapHandle::create(MapType::Array, Some(name), 4, 8, 3, &opts).expect("creating an array map")
}

#[test]
fn a_pinned_map_is_found_again_and_removed_with_its_directory() {
    let tmp = TempPin::new("pin");
    let dir = tmp.0.if_dir(7);
    std::fs::create_dir_all(&dir).unwrap();
    let map = array_map("nr_test");
    let path = dir.join("nr_test");
    link::pin_fd(map.as_fd(), &path).unwrap();
    maps::put(&map, 1, &0x1122_3344_5566_7788u64).unwrap();
    let again = maps::open_pinned(&path).unwrap();
    assert_eq!(again.max_entries(), 3);
    assert_eq!(maps::get::<u64>(&again, 1).unwrap(), Some(0x1122_3344_5566_7788));
    // The wrong value type is refused, not read as nothing.
    assert!(matches!(maps::get::<u32>(&again, 1), Err(Error::WrongValueSize { size: 8, want: 4, .. })));
    // Pinning twice at one path is the kernel's EEXIST, with the path.
    let twice = link::pin_fd(map.as_fd(), &path).unwrap_err();
    assert!(matches!(&twice, Error::Io { path: p, source } if p == &path && source.raw_os_error() == Some(libc::EEXIST)));
    remove_pins(&dir).unwrap();
    assert!(!dir.exists());
    remove_pins(&dir).expect("removing what is gone is fine");
}

#[test]
fn a_pin_root_off_bpffs_is_refused() {
    let dir = std::env::temp_dir().join(format!("netray-core-not-bpffs-{}", std::process::id()));
    let e = PinDir::resolve(Some(&dir)).unwrap_err();
    let _ = std::fs::remove_dir(&dir);
    assert!(matches!(&e, Error::NotBpffs(p) if p == &dir), "{e:?}");
}

/// Owns "nrt_" tables: creates one array map per ensure, counting calls.
struct TestOwner {
    ensured: AtomicU32,
}

impl tables::TableOwner for TestOwner {
    fn prefix(&self) -> &'static str {
        "nrt_"
    }
    fn dir(&self, pin: &PinDir) -> PathBuf {
        pin.root().join("nrt")
    }
    fn ensure(&self, pin: &PinDir) -> Result<()> {
        self.ensured.fetch_add(1, Ordering::SeqCst);
        let dir = self.dir(pin);
        std::fs::create_dir_all(&dir).unwrap();
        link::pin_fd(array_map("nrt_table").as_fd(), &dir.join("nrt_table"))
    }
}

#[test]
fn shared_tables_are_made_by_their_owner_once() {
    let tmp = TempPin::new("tables");
    // Not a shared map: nothing to do.
    assert_eq!(tables::shared_pin(&tmp.0, "if_config", &["nrt_"]).unwrap(), None);
    // A shared map nobody owns yet: the error says who should.
    let e = tables::shared_pin(&tmp.0, "nrt_table", &["nrt_"]).unwrap_err();
    assert!(matches!(&e, Error::NoTableOwner { map, prefix } if map == "nrt_table" && prefix == "nrt_"), "{e:?}");

    static OWNER: TestOwner = TestOwner { ensured: AtomicU32::new(0) };
    tables::register(&OWNER);
    tables::register(&OWNER);
    let want = tmp.0.root().join("nrt").join("nrt_table");
    assert_eq!(tables::shared_pin(&tmp.0, "nrt_table", &["nrt_"]).unwrap(), Some(want.clone()));
    assert!(Path::new(&want).exists());
    // The pin exists now: the owner is not asked again.
    assert_eq!(tables::shared_pin(&tmp.0, "nrt_table", &["nrt_"]).unwrap(), Some(want));
    assert_eq!(OWNER.ensured.load(Ordering::SeqCst), 1);
}
