//! Printing helpers shared by the subcommands. Nothing here panics when stdout
//! goes away (`netray deny list | head -1`): the error comes back, and main
//! ends the command quietly, as a closed pipe ends ls or grep.

use std::io::{self, Write};

use serde::Serialize;

/// `println!` that returns the error instead of panicking when stdout is gone.
macro_rules! outln {
    () => {
        $crate::output::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::write_line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// One line to stdout (the `outln!` body).
pub fn write_line(args: std::fmt::Arguments) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_fmt(args)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Whether `e` is stdout's reader having gone away: a normal way for a
/// command to end, not a failure.
pub fn is_closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe))
}

/// Prints a value as one line of JSON.
pub fn json_line<T: Serialize>(v: &T) -> anyhow::Result<()> {
    line(&serde_json::to_string(v)?)
}

/// Prints a value as indented JSON.
pub fn json_pretty<T: Serialize>(v: &T) -> anyhow::Result<()> {
    line(&serde_json::to_string_pretty(v)?)
}

/// Prints one line to stdout.
pub fn line(s: &str) -> anyhow::Result<()> {
    Ok(outln!("{s}")?)
}

/// Prints rows as a left-aligned table with a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    table_indented("", header, rows)
}

/// Like `table`, each line starting with `indent`.
pub fn table_indented(indent: &str, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        outln!("{indent}{}", s.join("  ").trim_end())
    };
    line(header.to_vec())?;
    for row in rows {
        line(row.iter().map(String::as_str).collect())?;
    }
    Ok(())
}
