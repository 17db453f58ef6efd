//! The map names netray-core spells (map_names) are exactly those the
//! dispatcher skeletons declare. Opening a skeleton parses its ELF only: no
//! kernel is involved.

use std::{collections::BTreeSet, mem::MaybeUninit};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use netray_core::{map_names, map_pins::pin_name};
use netray_ebpf::{tc_dispatch::TcDispatchSkelBuilder, xdp_dispatch::XdpDispatchSkelBuilder};

fn pinned_names(obj: &libbpf_rs::OpenObject) -> BTreeSet<String> {
    obj.maps()
        .map(|m| pin_name(&m.name().to_string_lossy()).0.to_string())
        .filter(|n| n.starts_with(map_names::FW_PREFIX) || n.starts_with(map_names::IF_PREFIX))
        .collect()
}

#[test]
fn names_match_the_dispatcher_skeletons() {
    let mut xdp_storage = MaybeUninit::uninit();
    let xdp = XdpDispatchSkelBuilder::default().open(&mut xdp_storage).expect("opening the XDP skeleton");
    let mut tc_storage = MaybeUninit::uninit();
    let tc = TcDispatchSkelBuilder::default().open(&mut tc_storage).expect("opening the TC skeleton");
    let mut in_c = pinned_names(xdp.open_object());
    in_c.extend(pinned_names(tc.open_object()));
    let here: BTreeSet<String> = map_names::ALL.iter().map(|s| s.to_string()).collect();
    assert_eq!(here, in_c);
}

#[test]
fn global_variables_pin_under_their_own_name() {
    assert_eq!(pin_name(".data.fw_state"), ("fw_state", true));
    assert_eq!(pin_name("fw_pool"), ("fw_pool", false));
}
