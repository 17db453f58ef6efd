//! How events look on stdout: aligned text lines or one JSON object per line.

use std::time::SystemTime;

use netray_core::clock::{self, Fraction};
use serde::Serialize;
use serde_json::{json, Value};

use crate::event::ExecEvent;
use crate::tracer::ExecStats;

/// The text header, matching [`text_line`].
pub fn text_header(timestamp: bool) -> String {
    let time = if timestamp {
        format!("{:<13}", "TIME")
    } else {
        String::new()
    };
    format!(
        "{time}{:<8} {:<8} {:<6} {:<16} {:<8} {} {}",
        "PID", "PPID", "UID", "COMM", "RESULT", "FILENAME", "ARGV"
    )
}

/// One exec as a text line; arguments are shell-quoted so spaces and empty
/// strings stay visible ("b c" is one argument), "..." marks a cut.
pub fn text_line(ev: &ExecEvent, timestamp: bool) -> String {
    let time = if timestamp {
        format!("{:<13}", clock::time_of_day(ev.time, Fraction::Millis))
    } else {
        String::new()
    };
    let mut argv: Vec<String> = ev.argv.iter().map(|a| quote(a)).collect();
    if ev.argv_truncated
        && !ev
            .argv
            .iter()
            .any(|a| a.ends_with(crate::event::TRUNCATION_MARK))
    {
        argv.push(crate::event::TRUNCATION_MARK.into());
    }
    format!(
        "{time}{:<8} {:<8} {:<6} {:<16} {:<8} {} {}",
        ev.pid,
        ev.ppid,
        ev.uid,
        quote(&ev.comm),
        ev.result(),
        quote(&ev.filename),
        argv.join(" ")
    )
}

/// One exec as a JSON object, keys in this order: ts (Unix time, seconds),
/// pid, ppid, uid, comm, filename, argv, argv_truncated, result (0 or
/// -errno), errno (name or null).
pub fn json_event(ev: &ExecEvent) -> String {
    #[derive(Serialize)]
    struct Json<'a> {
        ts: f64,
        pid: u32,
        ppid: u32,
        uid: u32,
        comm: &'a str,
        filename: &'a str,
        argv: &'a [String],
        argv_truncated: bool,
        result: i32,
        errno: Option<String>,
    }
    let j = Json {
        ts: clock::unix_seconds(ev.time),
        pid: ev.pid,
        ppid: ev.ppid,
        uid: ev.uid,
        comm: &ev.comm,
        filename: &ev.filename,
        argv: &ev.argv,
        argv_truncated: ev.argv_truncated,
        result: ev.ret,
        errno: ev.errno_name(),
    };
    // Straight to text: a serde_json::Value would sort the keys.
    serde_json::to_string(&j).expect("plain data serializes")
}

/// A stats line: `{"stats": {...}}`, told apart from events by its only key.
pub fn json_stats(backend: &str, printed: u64, stats: &ExecStats) -> Value {
    json!({
        "stats": {
            "ts": clock::unix_seconds(SystemTime::now()),
            "backend": backend,
            "events": printed,
            "sent": stats.sent,
            "lost": stats.lost,
            "pending_full": stats.pending_full,
        }
    })
}

/// Shell-style quoting: bare when safe, else double quotes with escapes.
pub fn quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        return s.to_string();
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' | '$' | '`' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Syscall;
    use std::time::{Duration, UNIX_EPOCH};

    fn event() -> ExecEvent {
        ExecEvent {
            time: UNIX_EPOCH + Duration::from_secs(1),
            monotonic_ns: 1,
            duration: Duration::ZERO,
            pid: 10,
            tid: 10,
            ppid: 1,
            uid: 0,
            comm: "echo".into(),
            filename: "/bin/echo".into(),
            argv: vec!["/bin/echo".into(), "a".into(), "b c".into()],
            argv_truncated: false,
            ret: -2,
            syscall: Syscall::Execve,
            dirfd: -100,
        }
    }

    #[test]
    fn text_quotes_arguments() {
        let line = text_line(&event(), false);
        assert_eq!(line, r#"10       1        0      echo             ENOENT   /bin/echo /bin/echo a "b c""#);
        let with_time = text_line(&event(), true);
        assert_eq!(with_time, format!("{:<13}{line}", clock::time_of_day(event().time, Fraction::Millis)));
        assert_eq!(quote(""), "\"\"");
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn json_has_the_documented_keys() {
        let line = json_event(&event());
        assert!(line.starts_with(r#"{"ts":1.0,"pid":10,"ppid":1,"uid":0,"comm":"echo","filename":"/bin/echo","argv":["#), "{line}");
        let v: Value = serde_json::from_str(&line).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "argv",
                "argv_truncated",
                "comm",
                "errno",
                "filename",
                "pid",
                "ppid",
                "result",
                "ts",
                "uid"
            ]
        );
        assert_eq!(v["errno"], "ENOENT");
        assert_eq!(v["result"], -2);
        assert_eq!(v["argv"][2], "b c");
    }
}
