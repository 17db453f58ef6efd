//! What a user without root gets, run as user nobody (`setpriv`): where netray needs
//! the kernel's BPF (`dump -r` runs its filter there too) one clear error naming the
//! privileges, never a raw verifier message; the read-only `lab status` just works.

mod common;



use common::Env;
use pcap_file::pcap::{PcapPacket, PcapWriter};

#[test]
fn dump_r_without_root_names_the_privileges_it_needs() {
    // A capture file nobody can read: one UDP frame.
    let path = std::env::temp_dir().join(format!("netray-unprivileged-{}.pcap", std::process::id()));
    let mut writer = PcapWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
    let frame = [[0u8; 12].as_slice(), &[0x08, 0x00], &[0x45; 20], &[0; 8]].concat();
    writer.write_packet(&PcapPacket::new(std::time::Duration::ZERO, frame.len() as u32, &frame).unwrap()).unwrap();
    drop(writer);
    let out = common::netray_as_nobody(&["dump", "-r", path.to_str().unwrap(), "udp"]);
    let _ = std::fs::remove_file(&path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("netray: error: not running as root") && err.contains("CAP_BPF"), "{err}");
    assert!(!err.contains("verifier"), "{err}");
}

#[test]
fn lab_status_works_without_root() {
    let env = Env::new("unpr");
    let out = common::netray_as_nobody(&["lab", "status", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let labs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lab = labs.as_array().unwrap().iter().find(|l| l["name"] == env.lab.name()).expect("the test's lab is listed");
    assert_eq!(lab["host_if"], env.iface());
    assert_eq!(lab["host_v4"], env.lab.host_v4().to_string());
    assert_eq!(lab["peer_v4"], env.lab.peer_v4().to_string(), "the namespace end, as the lab made it");
    assert_eq!(lab["peer_v6"], env.lab.peer_v6().to_string());
    assert!(lab["problem"].is_null(), "not entering the namespace is no problem of the lab: {lab}");

    let out = common::netray_as_nobody(&["lab", "status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = text.lines().find(|l| l.starts_with(&format!("{} ", env.lab.name()))).expect("a line for the lab");
    assert!(line.contains(env.iface()) && line.contains(&env.lab.host_v4().to_string()), "{text}");
}
