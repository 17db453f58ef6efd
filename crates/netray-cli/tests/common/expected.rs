//! Whole-output checks, ripgrep's way: what a user reads is compared in full
//! with a reviewed file under tests/expected/, after the parts that differ
//! between runs (times, lab names, ifindexes, ids, counters) are replaced by
//! placeholders. `NETRAY_BLESS=1` writes the files instead of comparing, so a
//! change to any output shows up in review as a diff of those files.

use std::path::PathBuf;

use regex::Regex;

/// The replacements that make one run's output comparable with another's.
pub struct Normalise {
    rules: Vec<(Regex, String)>,
}

impl Default for Normalise {
    /// Wall-clock times, which no two runs share.
    fn default() -> Self {
        Normalise { rules: Vec::new() }
            .pattern(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d+Z", "<RFC3339>")
            .pattern(r"\b\d{2}:\d{2}:\d{2}\.\d+\b", "<TIME>")
    }
}

impl Normalise {
    /// Replaces every `value` (an exact text: a lab's interface, an address) by `placeholder`.
    pub fn literal(self, value: &str, placeholder: &str) -> Self {
        assert!(!value.is_empty(), "an empty value would match everywhere");
        self.pattern(&regex::escape(value), placeholder)
    }

    /// Replaces what the regular expression `re` matches by `placeholder` (which may use `$1`).
    pub fn pattern(mut self, re: &str, placeholder: &str) -> Self {
        self.rules.push((Regex::new(re).expect("a valid regular expression"), placeholder.to_string()));
        self
    }

    /// Folds the padding of table columns (two spaces or more after a cell) to two spaces:
    /// for tables whose cells hold placeholders, which are not as wide as the
    /// values they stand for. The columns' order and contents are still checked.
    pub fn fold_padding(self) -> Self {
        self.pattern(r"(\S) {2,}", "$1  ")
    }

    /// The rules in the order they were given.
    pub fn apply(&self, text: &str) -> String {
        self.rules.iter().fold(text.to_string(), |out, (re, to)| re.replace_all(&out, to.as_str()).into_owned())
    }

    /// Checks `actual`, normalised, against tests/expected/NAME.txt.
    #[track_caller]
    pub fn check(&self, name: &str, actual: &str) {
        assert_expected(name, &self.apply(actual));
    }
}

/// Compares `actual` with tests/expected/NAME.txt, or writes it there under NETRAY_BLESS=1.
#[track_caller]
pub fn assert_expected(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/expected").join(format!("{name}.txt"));
    if std::env::var_os("NETRAY_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{}: {e}; write it with NETRAY_BLESS=1 and review it\n--- actual:\n{actual}", path.display())
    });
    if expected != actual {
        let first = expected.lines().zip(actual.lines()).position(|(e, a)| e != a).unwrap_or_else(|| {
            expected.lines().count().min(actual.lines().count())
        });
        panic!(
            "{} differs from the output, first at line {}: if the change is meant, rerun with NETRAY_BLESS=1 \
             and review the diff\n--- expected:\n{expected}\n--- actual:\n{actual}",
            path.display(),
            first + 1
        );
    }
}

/// One run as a reviewer reads it: the command, its exit status, then
/// whatever it printed on stdout and stderr.
pub fn transcript(args: &[&str], out: &std::process::Output) -> String {
    let mut t = format!("$ netray {}\n", args.join(" "));
    match out.status.code() {
        Some(code) => t.push_str(&format!("exit status {code}\n")),
        None => t.push_str(&format!("ended by {:?}\n", out.status)),
    }
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        if !bytes.is_empty() {
            t.push_str(&format!("--- {name}\n{}", String::from_utf8_lossy(bytes)));
        }
    }
    t.push('\n');
    t
}
