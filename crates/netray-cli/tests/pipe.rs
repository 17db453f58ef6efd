//! A closed pipe ends netray quietly, as it ends ls or grep: no panic, no
//! message, nothing left half done (`netray deny list | head -1`).

mod common;

use std::{
    io::{BufRead, BufReader},
    os::unix::process::ExitStatusExt,
    process::Stdio,
};

use common::Env;

#[test]
fn deny_list_into_a_closed_pipe_ends_quietly() {
    let env = Env::new("pipe");
    // Longer than a pipe's 64 KiB, so netray is still writing when the reader goes.
    let list: String = (0..3000).map(|i| format!("10.{}.{}.0/24\n", i / 256, i % 256)).collect();
    let file = std::env::temp_dir().join(format!("netray-pipe-test-{}.list", std::process::id()));
    std::fs::write(&file, list).unwrap();
    env.ok(&["deny", "add", "--file", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);

    for args in [&["deny", "list"][..], &["deny", "list", "--json"][..]] {
        let mut child = env.cmd(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap(); // then the pipe closes
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!first.is_empty());
        assert!(stderr.is_empty(), "{args:?}: nothing on stderr, got: {stderr}");
        assert!(
            out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
            "{args:?}: ended by the closed pipe, not by an error: {:?}",
            out.status
        );
    }
}
