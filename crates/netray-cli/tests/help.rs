//! Every `--help` netray has, whole, against tests/expected/help/: the text
//! people read first (what each flag does, the examples) changes only in review.
//! The commands are found by walking the "Commands:" lists, so a new one is
//! covered (and fails until its help is blessed).

mod common;

use std::process::Command;

use common::expected::assert_expected;

/// `netray PATH... --help`, wrapped at a fixed width.
fn help(path: &[String]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_netray"))
        .args(path)
        .arg("--help")
        .env("COLUMNS", "100") // clap wraps to the terminal; there is none here
        .output()
        .expect("running netray");
    assert!(out.status.success() && out.stderr.is_empty(), "netray {path:?} --help: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands a help text lists (without clap's own `help`).
fn subcommands(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn every_help_text_reads_as_reviewed() {
    let mut todo = vec![Vec::<String>::new()];
    let mut seen = Vec::new();
    while let Some(path) = todo.pop() {
        let text = help(&path);
        for sub in subcommands(&text) {
            let mut p = path.clone();
            p.push(sub);
            todo.push(p);
        }
        let name = std::iter::once("netray".to_string()).chain(path.iter().cloned()).collect::<Vec<_>>().join("-");
        assert_expected(&format!("help/{name}"), &text);
        seen.push(name);
    }
    seen.sort();
    // The walk itself: every command and subcommand netray has today.
    assert_eq!(
        seen.join(" "),
        "netray netray-allow netray-allow-add netray-allow-del netray-allow-list netray-bench netray-bench-drops \
         netray-bench-dump netray-bench-exec netray-bench-ipfix netray-completions netray-daemon netray-demo netray-deny \
         netray-deny-add netray-deny-del netray-deny-list netray-drops netray-dump netray-exec netray-features netray-firewall \
         netray-firewall-attach netray-firewall-detach netray-firewall-policy netray-firewall-status netray-lab netray-lab-down \
         netray-lab-prune netray-lab-status netray-lab-traffic netray-lab-up netray-limit netray-limit-add \
         netray-limit-del netray-limit-list netray-man netray-monitor netray-top"
    );
}
