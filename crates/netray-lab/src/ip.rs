//! Runs iproute2's `ip`. A binary rather than raw netlink because iproute2 is
//! on every machine netray runs on, its errors are the ones people know, and
//! `ip -batch` keeps a whole lab setup to one or two process spawns.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::error::{LabError, Result};

fn command(netns: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    cmd.args(args).env("LC_ALL", "C");
    cmd
}

fn describe(netns: Option<&str>, args: &[&str]) -> String {
    let ns = netns.map(|n| format!("-n {n} ")).unwrap_or_default();
    format!("ip {ns}{}", args.join(" "))
}

fn spawn_error(e: std::io::Error, what: &str) -> LabError {
    if e.kind() == std::io::ErrorKind::NotFound {
        LabError::IpNotFound
    } else {
        LabError::io(format!("running `{what}`"), e)
    }
}

/// Runs `ip [-n netns] args...` and returns its stdout.
pub(crate) fn run(netns: Option<&str>, args: &[&str]) -> Result<String> {
    let what = describe(netns, args);
    let out = command(netns, args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| spawn_error(e, &what))?;
    if !out.status.success() {
        return Err(LabError::Command {
            cmd: what,
            stderr: stderr_text(&out.stderr),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `ip -j ...` and parses the JSON array it prints (an empty output,
/// which some `ip` subcommands print when there is nothing, is `[]`).
pub(crate) fn json(netns: Option<&str>, args: &[&str]) -> Result<Vec<Value>> {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    let text = run(netns, &full)?;
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    match serde_json::from_str(&text) {
        Ok(Value::Array(items)) => Ok(items),
        Ok(_) => Err(LabError::Parse {
            cmd: describe(netns, &full),
            detail: "expected a JSON array".into(),
        }),
        Err(e) => Err(LabError::Parse {
            cmd: describe(netns, &full),
            detail: e.to_string(),
        }),
    }
}

/// Runs several `ip` commands in one process (`ip -batch -`), stopping at the
/// first failure. The error names the failing line.
pub(crate) fn batch(netns: Option<&str>, lines: &[String]) -> Result<()> {
    let what = describe(netns, &["-batch", "-"]);
    let mut child = command(netns, &["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error(e, &what))?;
    let script = lines.join("\n") + "\n";
    if let Some(mut stdin) = child.stdin.take() {
        // A write error means `ip` exited early; its stderr says why.
        let _ = stdin.write_all(script.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| LabError::io(format!("waiting for `{what}`"), e))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = stderr_text(&out.stderr);
    // `ip -batch` reports "Command failed -:N"; name that line's command.
    let failed_line = stderr
        .split("Command failed -:")
        .nth(1)
        .and_then(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<usize>()
                .ok()
        })
        .and_then(|n| lines.get(n.checked_sub(1)?));
    let cmd = match failed_line {
        Some(line) => describe(netns, &[line]),
        None => what,
    };
    Err(LabError::Command { cmd, stderr })
}

fn stderr_text(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes).trim().replace('\n', "; ");
    if s.is_empty() {
        "no error message".into()
    } else {
        s
    }
}
