//! What the live view shows, laid out for the terminal it is given: the
//! hooks and counters on top, the interface's rate history, the
//! conversations (both directions of a connection on one row) or the service
//! ports, and the keys at the bottom. Text is built here as plain lines, so
//! the layout is tested without a terminal; `draw` only paints them.

use std::{collections::VecDeque, time::Duration};

use netray_core::dispatcher::IfStats;
use netray_ebpf::decided::Decided;
use netray_flows::{
    by_port, conversations, rates, table::proto_name, Conversation, Direction, FlowHook,
    PortGroup, Snapshot, SortBy,
};
use ratatui::{
    layout::{Constraint, Layout},
    style::{Modifier, Style, Stylize},
    text::{Line, Span},
    widgets::{Block, Borders, Paragraph, Sparkline},
    Frame,
};

use super::{
    fit::{fit, wrap_pieces, Column, Give},
    units::{bits, bytes, compact, count},
};

/// What the rows are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Grouping {
    // One row per connection, both directions.
    Conversation,
    // One row per protocol and service port (the smaller port).
    Port,
}

/// The live view's state between refreshes.
pub struct View {
    pub sort: SortBy,
    pub grouping: Grouping,
    pub interval: Duration,
    pub prev: Option<Snapshot>,
    pub cur: Snapshot,
    pub hooks: Vec<FlowHook>,
    pub prev_hooks: Vec<FlowHook>,
    /// Received bit rate per interval, oldest first.
    pub history: VecDeque<u64>,
    /// Rows at most (None: what fits).
    pub limit: Option<usize>,
}

/// The conversation table's columns; the ranks give the order in which they
/// go when the terminal narrows (documented in `netray top --help`).
/// DROPPED and LAST are shown only when a listed row had a packet dropped.
const CONVERSATION_COLUMNS: [Column; 11] = [
    Column { title: "PROTO", right: false, give: Give::Trim(4), min: 0 },
    Column { title: "LOCAL", right: false, give: Give::Shorten(3, 21), min: 0 },
    Column { title: "DIR", right: false, give: Give::Never, min: 6 },
    Column { title: "REMOTE", right: false, give: Give::Shorten(3, 21), min: 0 },
    Column { title: "TX", right: true, give: Give::Never, min: 8 },
    Column { title: "RX", right: true, give: Give::Never, min: 8 },
    Column { title: "BYTES", right: true, give: Give::Drop(1), min: 6 },
    Column { title: "PACKETS", right: true, give: Give::Drop(2), min: 5 },
    Column { title: "PPS", right: true, give: Give::Drop(5), min: 5 },
    Column { title: "DROPPED", right: true, give: Give::Drop(6), min: 5 },
    Column { title: "LAST", right: false, give: Give::Drop(7), min: 0 },
];

const PORT_COLUMNS: [Column; 7] = [
    Column { title: "PROTO", right: false, give: Give::Never, min: 0 },
    Column { title: "PORT", right: true, give: Give::Never, min: 5 },
    Column { title: "CONNS", right: true, give: Give::Never, min: 5 },
    Column { title: "TX", right: true, give: Give::Never, min: 8 },
    Column { title: "RX", right: true, give: Give::Never, min: 8 },
    Column { title: "BYTES", right: true, give: Give::Drop(1), min: 6 },
    Column { title: "PACKETS", right: true, give: Give::Drop(2), min: 5 },
];

/// `addr:port`, `[v6]:port`, or the address alone.
pub fn endpoint(a: std::net::IpAddr, port: Option<u16>) -> String {
    match (a, port) {
        (std::net::IpAddr::V6(v6), Some(p)) => format!("[{v6}]:{p}"),
        (a, Some(p)) => format!("{a}:{p}"),
        (a, None) => a.to_string(),
    }
}

/// A rate cell: "-" when the side is absent or before the first interval.
fn rate_cell(bps: Option<f64>) -> String {
    bps.map_or("-".into(), bits)
}

/// The verdict of the last packet, as the plain table writes it.
pub fn verdict(dropped: bool, decided_by: Option<&str>) -> String {
    let v = if dropped { "drop" } else { "pass" };
    match decided_by {
        Some(by) => format!("{v} ({by})"),
        None => v.to_string(),
    }
}

fn conversation_cells(c: &Conversation) -> Vec<String> {
    let proto = match c.icmp() {
        Some((t, code)) => format!("{} {t}/{code}", proto_name(c.proto)),
        None => proto_name(c.proto),
    };
    let last = c.latest();
    let decided_by = last.flow.last_rule.map(Decided::from_raw).and_then(Decided::describe);
    vec![
        proto,
        endpoint(c.local, c.ports.map(|p| p.0)),
        c.direction().to_string(),
        endpoint(c.remote, c.ports.map(|p| p.1)),
        rate_cell(c.tx.and_then(|r| r.bps)),
        rate_cell(c.rx.and_then(|r| r.bps)),
        bytes(c.bytes()),
        count(c.packets()),
        c.pps().map_or("-".into(), compact),
        count(c.dropped()),
        verdict(last.flow.last_dropped, decided_by.as_deref()),
    ]
}

fn port_cells(g: &PortGroup) -> Vec<String> {
    vec![
        proto_name(g.proto),
        g.port.map_or("-".into(), |p| p.to_string()),
        g.conversations.to_string(),
        rate_cell(g.tx_bps),
        rate_cell(g.rx_bps),
        bytes(g.tx_bytes + g.rx_bytes),
        count(g.packets),
    ]
}

/// The text of one screen, before painting.
pub struct Text {
    /// Hooks, rates and counters, wrapped to the width.
    pub summary: Vec<String>,
    /// "N conversations by rate".
    pub title: String,
    pub header: String,
    pub rows: Vec<String>,
    /// The sparkline's title.
    pub history: String,
}

/// Per-second rate of a counter between two readings.
fn per_sec(now: u64, before: u64, secs: f64) -> f64 {
    now.saturating_sub(before) as f64 / secs
}

impl View {
    fn hook(hooks: &[FlowHook], d: Direction) -> Option<&FlowHook> {
        hooks.iter().find(|h| h.direction == d)
    }

    /// The screen's text at `width` columns, with at most `max_rows` rows
    /// (`draw` builds it in two steps, to size the table by the summary).
    #[cfg(test)]
    fn text(&self, width: usize, max_rows: usize) -> Text {
        self.text_with(self.summary(width), width, max_rows)
    }

    /// The lines above the history: hooks, rates, totals, the table's counters.
    fn summary(&self, width: usize) -> Vec<String> {
        let cur = &self.cur;
        let mut title = vec![cur.interface.clone()];
        for h in &self.hooks {
            let d = if h.direction == Direction::Egress { "out" } else { "in" };
            title.push(format!("{d}: {}", h.name));
        }
        title.push(format!("every {:?}", self.interval));
        let secs = self.prev.as_ref().map(|p| cur.taken_ns.saturating_sub(p.taken_ns) as f64 / 1e9);
        let rate = |d: Direction| {
            let (now, before) = (Self::hook(&self.hooks, d)?, Self::hook(&self.prev_hooks, d)?);
            let secs = secs.filter(|s| *s > 0.0)?;
            Some(format!(
                "{} {}pkt/s {}",
                if d == Direction::Egress { "out" } else { "in" },
                compact(per_sec(now.stats.seen, before.stats.seen, secs)),
                bits(per_sec(now.stats.bytes_seen, before.stats.bytes_seen, secs) * 8.0)
            ))
        };
        let rates_now: Vec<String> = match (rate(Direction::Ingress), rate(Direction::Egress)) {
            (None, None) => vec!["rates after the first interval".to_string()],
            (a, b) => a.into_iter().chain(b).collect(),
        };
        let egress = Self::hook(&self.hooks, Direction::Egress);
        let totals = |d: &str, s: &IfStats| format!("{d} {} pkts {}", count(s.seen), bytes(s.bytes_seen));
        let mut seen = vec![totals("total in", &cur.totals)];
        seen.extend(egress.map(|h| totals("out", &h.stats)));
        seen.push(format!("dropped {}", count(cur.totals.dropped + egress.map_or(0, |h| h.stats.dropped))));
        let t = &cur.table;
        let table = [
            format!("flows {}/{}", t.entries, t.capacity),
            format!("evicted {}", count(t.evictions)),
            format!("not stored {}", count(t.insert_failed)),
            format!("non-IP {}", count(cur.totals.non_ip)),
            format!("truncated {}", count(cur.totals.truncated)),
            format!("events lost {}", count(cur.totals.events_lost)),
        ];
        // One group per line when it fits, so lines do not reflow as numbers grow.
        [&title[..], &rates_now, &seen, &table].iter().flat_map(|g| wrap_pieces(g, width)).collect()
    }

    fn text_with(&self, summary: Vec<String>, width: usize, max_rows: usize) -> Text {
        let flows = rates(self.prev.as_ref(), &self.cur);
        let convs = conversations(&flows, self.sort);
        let rows = max_rows.min(self.limit.unwrap_or(usize::MAX));
        let (what, total, columns, cells): (_, _, Vec<Column>, Vec<Vec<String>>) = match self.grouping {
            Grouping::Conversation => {
                let shown = &convs[..rows.min(convs.len())];
                let verdicts = shown.iter().any(|c| c.dropped() > 0);
                let keep = if verdicts { CONVERSATION_COLUMNS.len() } else { CONVERSATION_COLUMNS.len() - 2 };
                let cells = shown.iter().map(|c| conversation_cells(c)[..keep].to_vec()).collect();
                ("conversations", convs.len(), CONVERSATION_COLUMNS[..keep].to_vec(), cells)
            }
            Grouping::Port => {
                let groups = by_port(&convs, self.sort);
                let cells = groups.iter().take(rows).map(port_cells).collect();
                ("ports", groups.len(), PORT_COLUMNS.to_vec(), cells)
            }
        };
        let title = if cells.len() < total {
            format!("{total} {what} by {}, top {}", self.sort, cells.len())
        } else {
            format!("{total} {what} by {}", self.sort)
        };
        let (header, rows) = fit(&columns, &cells, width);
        let peak = self.history.iter().copied().max().unwrap_or(0);
        let history = wrap_pieces(&[format!("in bit/s, peak {}", bits(peak as f64))], width).concat();
        Text { summary, title, header, rows, history }
    }

    pub fn draw(&self, f: &mut Frame) {
        let area = f.area();
        let width = area.width as usize;
        // Rows first get what is left after the summary (3 lines at most
        // widths), the history (when the terminal is tall enough), the table's
        // title and header, and the keys.
        let summary = self.summary(width);
        let summary_h = summary.len() as u16;
        let spark_h: u16 = if area.height >= 20 { 4 } else { 0 };
        let fixed = summary_h + spark_h + 2 + 1;
        let rows = area.height.saturating_sub(fixed) as usize;
        let text = self.text_with(summary, width, rows);
        let [head, spark, title, table, keys] = Layout::vertical([
            Constraint::Length(summary_h),
            Constraint::Length(spark_h),
            Constraint::Length(1),
            Constraint::Min(1),
            Constraint::Length(1),
        ])
        .areas(area);
        let mut summary: Vec<Line> = text.summary.iter().map(|l| Line::from(l.as_str())).collect();
        if let Some(first) = summary.first_mut() {
            *first = first.clone().bold();
        }
        f.render_widget(Paragraph::new(summary), head);
        if spark_h > 0 {
            let w = spark.width as usize;
            let data: Vec<u64> = self.history.iter().rev().take(w).rev().copied().collect();
            f.render_widget(
                Sparkline::default()
                    .block(Block::new().borders(Borders::TOP).title(format!(" {} ", text.history)))
                    .data(data)
                    .style(Style::new().cyan()),
                spark,
            );
        }
        f.render_widget(Paragraph::new(Line::from(text.title.as_str()).reversed()), title);
        let mut lines = vec![Line::from(text.header.as_str()).style(Style::new().add_modifier(Modifier::BOLD))];
        lines.extend(text.rows.iter().map(|r| Line::from(r.as_str())));
        f.render_widget(Paragraph::new(lines), table);
        f.render_widget(Paragraph::new(self.keys(width)), keys);
    }

    /// The keys, the current choices highlighted; "sort" and "by port" go
    /// first when the line would not fit.
    fn keys(&self, width: usize) -> Line<'static> {
        let on = |yes: bool| if yes { Style::new().reversed() } else { Style::new() };
        let keys: [(&str, &str, bool); 5] = [
            ("r", "rate", self.sort == SortBy::Rate),
            ("b", "bytes", self.sort == SortBy::Bytes),
            ("p", "packets", self.sort == SortBy::Packets),
            ("g", "by port", self.grouping == Grouping::Port),
            ("q", "quit", false),
        ];
        let mut spans: Vec<Span<'static>> = Vec::new();
        if width >= 60 {
            spans.push("sort: ".into());
        }
        for (k, what, active) in keys {
            spans.push(Span::styled(k.to_string(), on(active).bold()));
            spans.push(format!(" {what}  ").into());
        }
        Line::from(spans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netray_flows::{Flow, FlowKey, TableCounters};
    use std::net::IpAddr;

    fn flow(direction: Direction, proto: u8, src: &str, dst: &str, ports: (u16, u16), packets: u64, bytes: u64) -> Flow {
        Flow {
            key: FlowKey {
                ifindex: 7,
                direction,
                proto,
                src: src.parse().unwrap(),
                dst: dst.parse().unwrap(),
                sport: ports.0,
                dport: ports.1,
            },
            packets,
            bytes,
            dropped: packets / 3,
            bytes_dropped: 0,
            first_seen_ns: 1,
            last_seen_ns: 2,
            last_dropped: packets % 2 == 0,
            last_rule: (packets % 2 == 0).then_some(4_000_000_123),
            tcp_flags: 0,
        }
    }

    fn snapshot(at: u64, scale: u64) -> Snapshot {
        let h6 = "2001:db8:aaaa:bbbb:cccc:dddd:eeee:1";
        let p6 = "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff";
        let flows = vec![
            flow(Direction::Ingress, 6, "198.19.255.254", "198.19.255.253", (65535, 443), 9 * scale, 875_700 * scale),
            flow(Direction::Egress, 6, "198.19.255.253", "198.19.255.254", (443, 65535), 7 * scale, 99_960 * scale),
            flow(Direction::Ingress, 17, p6, h6, (40002, 53), 3 * scale, 1_234_567_890 * scale),
            flow(Direction::Egress, 17, h6, p6, (5353, 5353), scale, 64 * scale),
            flow(Direction::Ingress, 58, "fe80::1", "ff02::1", (0, 128 << 8), scale, 70 * scale),
        ];
        Snapshot {
            interface: "veth-lab-with-a-long-name".into(),
            ifindex: 7,
            taken_ns: at,
            totals: IfStats { seen: 123_456_789 * scale, bytes_seen: 98_765_432_100 * scale, ..IfStats::default() },
            table: TableCounters { capacity: 65536, entries: 5, ..TableCounters::default() },
            flows,
        }
    }

    fn view(grouping: Grouping) -> View {
        let hook = |direction, name: &str, seen| FlowHook {
            direction,
            name: name.into(),
            stats: IfStats { seen, bytes_seen: seen * 1000, ..IfStats::default() },
        };
        View {
            sort: SortBy::Rate,
            grouping,
            interval: Duration::from_secs(1),
            prev: Some(snapshot(1_000_000_000, 1)),
            cur: snapshot(2_000_000_000, 3),
            hooks: vec![hook(Direction::Ingress, "xdp native", 5000), hook(Direction::Egress, "clsact egress", 3000)],
            prev_hooks: vec![hook(Direction::Ingress, "xdp native", 10), hook(Direction::Egress, "clsact egress", 10)],
            history: VecDeque::from([1, 5_000_000, 2]),
            limit: None,
        }
    }

    /// Every word on the screen is a whole cell word (a number with its
    /// unit, a port), or an endpoint shortened in the middle with its port
    /// intact; no line is wider than the terminal.
    #[test]
    fn no_line_overflows_and_no_token_is_cut_from_60_to_200_columns() {
        for grouping in [Grouping::Conversation, Grouping::Port] {
            let v = view(grouping);
            let natural = v.text(10_000, 100);
            let words: std::collections::HashSet<String> = natural
                .summary
                .iter()
                .chain(&natural.rows)
                .chain([&natural.header, &natural.history])
                .flat_map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                .collect();
            let mut columns_seen = std::collections::BTreeSet::new();
            for width in 60..=200 {
                let t = v.text(width, 100);
                columns_seen.insert(t.header.split_whitespace().count());
                for line in t.summary.iter().chain(&t.rows).chain([&t.header, &t.history]) {
                    assert!(line.chars().count() <= width, "{width}: {line:?}");
                    for w in line.split_whitespace() {
                        let shortened = w.contains('…')
                            && words.iter().any(|n| {
                                n.rsplit_once(':').is_some_and(|(_, port)| w.ends_with(&format!(":{port}")))
                                    || !n.contains(':')
                            });
                        assert!(words.contains(w) || shortened, "{width}: {w:?} cut in {line:?}");
                    }
                }
            }
            // Columns went as the terminal narrowed (the port table fits 60).
            assert!(grouping == Grouping::Port || columns_seen.len() > 1, "{columns_seen:?}");
        }
    }

    #[test]
    fn columns_go_in_their_documented_order() {
        let v = view(Grouping::Conversation);
        let header = |w| v.text(w, 100).header.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        let all = ["PROTO", "LOCAL", "DIR", "REMOTE", "TX", "RX", "BYTES", "PACKETS", "PPS", "DROPPED", "LAST"];
        assert_eq!(header(250), all);
        assert_eq!(header(80), ["PROTO", "LOCAL", "DIR", "REMOTE", "TX", "RX"]);
        // At 80 columns the ICMP type goes, so IPv4 endpoints stay whole.
        let rows = v.text(80, 100).rows;
        assert!(rows.iter().any(|r| r.contains(" 198.19.255.253:443 ") && r.starts_with("tcp ")), "{rows:#?}");
        assert!(rows.iter().any(|r| r.starts_with("icmpv6 ") && !r.contains("128/0")), "{rows:#?}");
        // Between the two, LAST goes first and BYTES last.
        let mut prev = all.len();
        for w in (80..250).rev() {
            let h = header(w);
            assert!(h.len() <= prev);
            prev = h.len();
            if h.contains(&"BYTES".to_string()) {
                assert!(h.len() == all.len() || !h.contains(&"LAST".to_string()), "{w}: {h:?}");
            }
        }
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(endpoint(ip, Some(53)), "[2001:db8::1]:53");
    }
}
