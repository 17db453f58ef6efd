//! Fits a table to the terminal's width the way iftop does: cells are never
//! cut. Numbers keep their natural width; when the table is too wide,
//! optional columns go (in the order of their rank, highest first) and
//! endpoint columns are shortened with an ellipsis in the middle of the
//! address, the port kept (`[fd6e:72…:b9::2]:443`).

/// How a column gives way when the terminal is narrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Give {
    /// Always shown, at its natural width.
    Never,
    /// Left out at this rank.
    Drop(u8),
    /// At this rank, only each cell's first word is shown ("icmp 8/0"
    /// becomes "icmp"): a detail goes whole, never half of it.
    Trim(u8),
    /// An endpoint: shortened at this rank, down to this many characters
    /// (all of an IPv4 endpoint fits in 21), and further only when even
    /// the columns that are never left out would not fit.
    Shorten(u8, usize),
}

#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub title: &'static str,
    pub right: bool,
    pub give: Give,
    /// Width kept whatever the values (the widest a value can be), so the
    /// columns do not move as rates change.
    pub min: usize,
}

/// Space between columns.
const GAP: usize = 2;
/// Narrowest an endpoint gets ("[fd…::2]:53" still tells ends apart).
const ENDPOINT_FLOOR: usize = 9;

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// The header and the rows, laid out in at most `width` characters.
pub fn fit(columns: &[Column], rows: &[Vec<String>], width: usize) -> (String, Vec<String>) {
    let width_of = |i: usize, c: &Column, trim: bool| {
        let cell = |r: &Vec<String>| chars(if trim { first_word(&r[i]) } else { &r[i] });
        rows.iter().map(cell).chain([chars(c.title), c.min]).max().unwrap_or(0)
    };
    let natural: Vec<usize> = columns.iter().enumerate().map(|(i, c)| width_of(i, c, false)).collect();
    let mut widths: Vec<Option<usize>> = natural.iter().copied().map(Some).collect();
    let mut trimmed = vec![false; columns.len()];
    let need = |w: &[Option<usize>]| {
        let shown: Vec<usize> = w.iter().flatten().copied().collect();
        shown.iter().sum::<usize>() + GAP * shown.len().saturating_sub(1)
    };
    let mut ranks: Vec<u8> = columns
        .iter()
        .filter_map(|c| match c.give {
            Give::Drop(r) | Give::Trim(r) | Give::Shorten(r, _) => Some(r),
            Give::Never => None,
        })
        .collect();
    ranks.sort_unstable_by(|a, b| b.cmp(a));
    ranks.dedup();
    for rank in ranks {
        if need(&widths) <= width {
            break;
        }
        for (i, c) in columns.iter().enumerate() {
            match c.give {
                Give::Drop(r) if r == rank => widths[i] = None,
                Give::Trim(r) if r == rank => {
                    trimmed[i] = true;
                    widths[i] = Some(width_of(i, c, true));
                }
                Give::Shorten(r, to) if r == rank => widths[i] = Some(natural[i].min(to)),
                _ => {}
            }
        }
    }
    // Room left goes back to the shortened endpoints; room missing is taken
    // from them, down to the floor.
    let endpoints: Vec<usize> =
        (0..columns.len()).filter(|&i| matches!(columns[i].give, Give::Shorten(..)) && widths[i].is_some()).collect();
    let mut progress = true;
    while progress && need(&widths) != width {
        progress = false;
        for &i in &endpoints {
            let w = widths[i].unwrap_or(0);
            let total = need(&widths);
            if total < width && w < natural[i] {
                widths[i] = Some(w + 1);
                progress = true;
            } else if total > width && w > ENDPOINT_FLOOR {
                widths[i] = Some(w - 1);
                progress = true;
            }
        }
    }
    // Narrower still than the columns that stay: the rightmost ones go.
    while need(&widths) > width && widths.iter().flatten().count() > 1 {
        if let Some(last) = widths.iter().rposition(Option::is_some) {
            widths[last] = None;
        }
    }
    let line = |cells: Vec<String>| {
        let out: Vec<String> = cells
            .iter()
            .zip(columns)
            .zip(widths.iter().zip(&trimmed))
            .filter_map(|((cell, c), (w, trim))| {
                let w = (*w)?;
                let cell = match c.give {
                    Give::Shorten(..) => shorten_endpoint(cell, w),
                    _ if *trim => first_word(cell).to_string(),
                    _ => cell.clone(),
                };
                Some(if c.right { format!("{cell:>w$}") } else { format!("{cell:<w$}") })
            })
            .collect();
        out.join(&" ".repeat(GAP)).trim_end().to_string()
    };
    let header = line(columns.iter().map(|c| c.title.to_string()).collect());
    (header, rows.iter().map(|r| line(r.clone())).collect())
}

fn first_word(s: &str) -> &str {
    s.split(' ').next().unwrap_or(s)
}

/// `addr:port`, `[v6]:port` or a bare address in `width` characters: the
/// port stays whole, the address loses its middle.
pub fn shorten_endpoint(s: &str, width: usize) -> String {
    if chars(s) <= width {
        return s.to_string();
    }
    let (addr, port) = match s.rsplit_once(':') {
        Some((a, p)) if p.bytes().all(|b| b.is_ascii_digit()) && (a.ends_with(']') || !a.contains(':')) => {
            (a, format!(":{p}"))
        }
        _ => (s, String::new()),
    };
    let (open, inner, close) = match addr.strip_prefix('[').and_then(|a| a.strip_suffix(']')) {
        Some(inner) => ("[", inner, "]"),
        None => ("", addr, ""),
    };
    let room = width.saturating_sub(chars(&port) + open.len() + close.len());
    if room < 3 {
        return middle_ellipsis(s, width);
    }
    format!("{open}{}{close}{port}", middle_ellipsis(inner, room))
}

/// `s` in `width` characters, its middle replaced by "…".
fn middle_ellipsis(s: &str, width: usize) -> String {
    let n = chars(s);
    if n <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let head = (width - 1) / 2;
    let tail = width - 1 - head;
    let c: Vec<char> = s.chars().collect();
    format!("{}…{}", c[..head].iter().collect::<String>(), c[n - tail..].iter().collect::<String>())
}

/// Short pieces of text packed into lines of at most `width` characters,
/// two spaces apart; a piece is never split (one longer than `width` is
/// shortened in the middle).
pub fn wrap_pieces(pieces: &[String], width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    for p in pieces {
        let p = middle_ellipsis(p, width);
        if !cur.is_empty() && chars(&cur) + GAP + chars(&p) > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push_str(&" ".repeat(GAP));
        }
        cur.push_str(&p);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_lose_the_middle_of_the_address_never_the_port() {
        assert_eq!(shorten_endpoint("[fd6e:7261:0:b9::2]:40001", 20), "[fd6e:…:b9::2]:40001");
        assert_eq!(shorten_endpoint("198.18.0.1:53", 21), "198.18.0.1:53");
        assert_eq!(shorten_endpoint("198.18.100.102:40001", 16), "198.…0.102:40001");
        assert_eq!(shorten_endpoint("fd6e:7261:0:b9::2", 12), "fd6e:…:b9::2");
        assert_eq!(chars(&shorten_endpoint("[fd6e:7261:0:b9::2]:40001", 9)), 9);
    }

    #[test]
    fn pieces_wrap_whole() {
        let p: Vec<String> = ["seen 12 pkts", "dropped 0", "non-IP 4"].iter().map(|s| s.to_string()).collect();
        assert_eq!(wrap_pieces(&p, 24), ["seen 12 pkts  dropped 0", "non-IP 4"]);
        assert_eq!(wrap_pieces(&p, 80), ["seen 12 pkts  dropped 0  non-IP 4"]);
    }
}
