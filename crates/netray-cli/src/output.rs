//! Printing helpers shared by the subcommands.

use serde::Serialize;

/// Prints a value as one line of JSON.
pub fn json_line<T: Serialize>(v: &T) -> anyhow::Result<()> {
    line(&serde_json::to_string(v)?)
}

/// Prints one line to stdout, returning an error (instead of panicking like
/// println!) when stdout is gone, e.g. a closed pipe.
pub fn line(s: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{s}")?;
    out.flush()?;
    Ok(())
}

/// Prints rows as a left-aligned table with a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    table_indented("", header, rows)
}

/// Like `table`, each line starting with `indent`.
pub fn table_indented(indent: &str, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{indent}{}", s.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
