//! `netray completions` and `netray man`, used as a user would: the bash script
//! sources in bash and completes `netray du` to `dump` (and dump's flags); a manual
//! page renders in man's formatter and names the command's flags.

mod common;

use std::process::{Command, Stdio};

use common::netray;

/// What bash's programmable completion offers for the words of `line` (the cursor at its end).
fn bash_completes(line: &str) -> Vec<String> {
    let script = netray(&["completions", "bash"]);
    assert!(script.status.success(), "{}", String::from_utf8_lossy(&script.stderr));
    let path = std::env::temp_dir().join(format!("netray-completion-{}.bash", std::process::id()));
    std::fs::write(&path, &script.stdout).unwrap();
    let words: Vec<&str> = line.split(' ').collect();
    let probe = format!(
        "source {}; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT={}; \
         _netray netray \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        path.display(),
        words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" "),
        words.len() - 1,
        line.len()
    );
    let out = Command::new("bash").args(["--norc", "-c", &probe]).output().expect("bash");
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "bash: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
}

#[test]
fn bash_completion_sources_and_completes_commands_and_flags() {
    assert_eq!(bash_completes("netray du"), ["dump"]);
    let flags = bash_completes("netray dump --sn");
    assert_eq!(flags, ["--snapshot-length"], "dump's flags come from its clap definition");
    for shell in ["zsh", "fish"] {
        let out = netray(&["completions", shell]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("dump") && text.contains("snapshot-length"), "{shell}: {text}");
    }
    let out = netray(&["completions", "tcsh"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("possible values") && err.contains("bash"), "{err}");
}

/// `netray man ARGS | man -l -`, as text.
fn rendered(args: &[&str]) -> String {
    let page = netray(&[&["man"], args].concat());
    assert!(page.status.success(), "netray man {args:?}: {}", String::from_utf8_lossy(&page.stderr));
    let mut man = Command::new("man")
        .args(["-l", "-"])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("man (setup/deps.sh installs it)");
    std::io::Write::write_all(&mut man.stdin.take().unwrap(), &page.stdout).unwrap();
    let out = man.wait_with_output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "man -l: {}", String::from_utf8_lossy(&out.stderr));
    // man's text marks bold and underline with backspaces where it thinks it may.
    String::from_utf8_lossy(&out.stdout).replace('\u{8}', "")
}

#[test]
fn man_pages_render_and_name_each_commands_flags() {
    let page = rendered(&["dump"]);
    assert!(page.contains("netray-dump"), "{page}");
    for flag in ["--snapshot-length", "--interface", "--point", "-C", "-W", "-G", "--json"] {
        assert!(page.contains(flag), "netray man dump names {flag}: {page}");
    }
    let page = rendered(&["firewall", "attach"]);
    assert!(page.contains("netray-firewall-attach") && page.contains("--mode"), "{page}");
    let page = rendered(&[]);
    assert!(page.contains("dump") && page.contains("firewall"), "netray(1) lists the commands: {page}");

    let out = netray(&["man", "dupm"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no command 'dupm'") && err.contains("dump"), "{err}");

    let dir = std::env::temp_dir().join(format!("netray-man-{}", std::process::id()));
    let out = netray(&["man", "--out-dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for page in ["netray.1", "netray-dump.1", "netray-firewall-attach.1", "netray-lab-status.1"] {
        assert!(dir.join(page).is_file(), "--out-dir writes {page}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
