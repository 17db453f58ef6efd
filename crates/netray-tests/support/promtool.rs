//! `promtool check metrics` for the tests of netray-cli (`top --metrics`) and
//! netray-daemon (`/metrics`), included by `#[path]` from both: a plain file rather
//! than netray-tests' lib, so neither test build pulls in that crate's BPF loaders.

use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
};

/// promtool from setup/deps.sh (or $NETRAY_PROMTOOL).
pub fn promtool() -> PathBuf {
    let p = std::env::var_os("NETRAY_PROMTOOL").map_or_else(|| "/var/cache/netray/promtool/promtool".into(), PathBuf::from);
    assert!(p.exists(), "{} is missing: run setup/deps.sh (make deps), or set NETRAY_PROMTOOL", p.display());
    p
}

/// `promtool check metrics` on `text`: insists on exit 0 and no complaint.
pub fn promtool_clean(text: &str) {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool: {}\n{said}\non:\n{text}", out.status);
}
