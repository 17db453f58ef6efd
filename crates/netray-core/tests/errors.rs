//! The loader's errors: messages users and docs rely on, word for word, and
//! the questions callers ask of an error instead of reading its text.

use std::{io, path::PathBuf};

use netray_core::Error;

#[test]
fn messages_name_the_problem_and_the_fix() {
    let cases: Vec<(Error, &str)> = vec![
        (
            Error::RuleExists { id: 3, rule: "10.0.0.0/8".into() },
            "rule already exists as id 3: 10.0.0.0/8",
        ),
        (Error::RuleTwice("10.0.0.0/8".into()), "rule given twice: 10.0.0.0/8"),
        (Error::NoSuchRule("10.0.0.0/8".into()), "no rule 10.0.0.0/8 — `netray deny list` shows the rules"),
        (Error::NoSuchRuleId(7), "no rule with id 7 — `netray deny list` shows the rules"),
        (
            Error::TooManyRules(16),
            "the firewall holds at most 16 rules; delete some, or recreate it with a larger --max-rules",
        ),
        (
            Error::MonitorBusy { pid: 42, iface: "veth0".into() },
            "another monitor (pid 42) is already reading veth0; stop it first",
        ),
        (
            Error::CaptureBusy { what: "is capturing at the XDP exit point on veth0".into() },
            "another netray dump is capturing at the XDP exit point on veth0; stop it first",
        ),
        (
            Error::ForeignXdp { iface: "veth0".into(), prog_id: 9, name: "xdp_pass".into() },
            "veth0 already has an XDP program that netray did not load (id 9, 'xdp_pass'); netray will not replace it. \
             Remove it first (`ip link set dev veth0 xdp off`) if it is not needed",
        ),
        (
            Error::CaptureInFront { iface: "veth0".into(), prog_id: 9 },
            "a `netray dump` is capturing on veth0 with its own program (id 9); stop it, then attach",
        ),
        (
            Error::NativeXdpRefused { iface: "veth0".into(), reason: "Operation not supported (os error 95)".into() },
            "native XDP refused on veth0: Operation not supported (os error 95) — use --mode generic, or --mode auto \
             to fall back",
        ),
        (
            Error::NotBpffs(PathBuf::from("/tmp/x")),
            "/tmp/x is not on a bpffs: pins must live under a bpf filesystem such as /sys/fs/bpf",
        ),
        (
            Error::WrongValueSize { map: "if_config".into(), size: 8, want: 16 },
            "map if_config holds 8-byte values, not 16: pinned state is from another netray version — remove it with \
             `netray firewall detach --all`",
        ),
        (
            Error::DetachedMeanwhile("veth0".into()),
            "netray was detached from veth0 (its pins are gone); flows are no longer counted",
        ),
        (
            Error::errno("querying XDP on ifindex 5", -libc::ENODEV),
            "querying XDP on ifindex 5: No such device (os error 19)",
        ),
    ];
    for (e, want) in cases {
        assert_eq!(e.to_string(), want, "{e:?}");
    }
}

#[test]
fn a_closed_pipe_is_told_by_its_kind() {
    let pipe = Error::io("stdout")(io::Error::from(io::ErrorKind::BrokenPipe));
    assert!(pipe.is_broken_pipe());
    assert!(Error::errno("writing", libc::EPIPE).is_broken_pipe());
    // A message that merely says so is not a closed pipe.
    assert!(!Error::BadRequest("Broken pipe".into()).is_broken_pipe());
    assert!(!Error::io("stdout")(io::Error::from(io::ErrorKind::NotFound)).is_broken_pipe());
}
