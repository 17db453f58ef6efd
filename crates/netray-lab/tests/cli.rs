//! `netray lab ...` as the main binary runs it.

mod common;

use clap::Parser;
use common::*;
use netray_lab::cli::{run, LabCommand};
use netray_lab::unique_name;

#[derive(Parser)]
struct Netray {
    #[command(subcommand)]
    lab: LabCommand,
}

fn cmd(args: &[&str]) -> LabCommand {
    Netray::try_parse_from(std::iter::once("netray").chain(args.iter().copied()))
        .unwrap()
        .lab
}

#[test]
fn parses_defaults_and_lists() {
    assert_eq!(
        cmd(&["up"]),
        LabCommand::Up {
            name: "netray".into(),
            json: false
        }
    );
    match cmd(&["traffic", "x", "--proto", "udp,tcp", "--count", "5"]) {
        LabCommand::Traffic {
            name,
            proto,
            count,
            duration,
            pps,
            ..
        } => {
            assert_eq!(name, "x");
            assert_eq!(proto, vec![netray_lab::Proto::Udp, netray_lab::Proto::Tcp]);
            assert_eq!((count, duration, pps), (Some(5), 3.0, 100));
        }
        other => panic!("{other:?}"),
    }
    assert!(Netray::try_parse_from(["netray", "traffic", "--proto", "sctp"]).is_err());
    // Every subcommand's help has an example.
    for sub in ["up", "down", "status", "traffic", "prune"] {
        let err = Netray::try_parse_from(["netray", sub, "--help"])
            .err()
            .unwrap();
        assert!(err.to_string().contains("Example"), "{sub}: {err}");
    }
}

/// `lab up` persists the lab: remove it even if the test fails.
struct Cleanup(String);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = netray_lab::remove(&self.0);
    }
}

#[test]
fn up_status_traffic_down() {
    let name = unique_name("cli");
    let _cleanup = Cleanup(name.clone());
    run(cmd(&["up", &name])).unwrap();
    assert_present(
        &format!("nrlab-{name}"),
        &format!("nr-{name}"),
        &format!("nrp-{name}"),
    );
    // `up` persisted it: it survives, and is listed as persistent.
    let s = netray_lab::list()
        .unwrap()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap();
    assert!(s.persistent);
    assert!(run(cmd(&["up", &name]))
        .unwrap_err()
        .to_string()
        .contains("already exists"));
    run(cmd(&["status"])).unwrap();
    run(cmd(&["status", "--json"])).unwrap();
    run(cmd(&[
        "traffic",
        &name,
        "--count",
        "6",
        "--pps",
        "200",
        "--udp-port",
        "0",
        "--tcp-port",
        "0",
    ]))
    .unwrap();
    run(cmd(&[
        "traffic",
        &name,
        "--count",
        "2",
        "--json",
        "--duration",
        "1",
    ]))
    .unwrap();
    assert!(run(cmd(&["traffic", &name, "--duration=-1"])).is_err());
    run(cmd(&["down", &name])).unwrap();
    assert_gone(&format!("nrlab-{name}"), &format!("nr-{name}"));
    let err = run(cmd(&["down", &name])).unwrap_err().to_string();
    assert!(err.contains("does not exist"), "{err}");
    assert!(run(cmd(&["traffic", &name])).is_err());
}
