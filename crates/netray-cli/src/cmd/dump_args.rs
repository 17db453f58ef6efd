//! `netray dump`'s command line: netray's own options and the tcpdump flags people type
//! out of habit, with tcpdump's meaning (or, where netray has nothing to change, accepted
//! and explained in --help).

use std::path::PathBuf;

use clap::{ArgAction, Args, ValueEnum};
use netray_capture::CaptureSpec;
use netray_core::{AttachMode, Hook};

use super::iface_watch::exit_status_help;
use super::firewall::parse_mode;

#[derive(Args)]
#[command(after_help = concat!("Examples:\n  \
    netray dump -i eth1\n  \
    netray dump -i eth1 -w capture.pcapng tcp port 80 or icmp\n  \
    netray dump -i eth1 -w - 'udp and not port 53' | tcpdump -r -\n  \
    netray dump -i eth1 --point both -c 100 -w fw.pcapng\n  \
    netray dump -i eth1 --mode chain -w in.pcapng udp port 53\n  \
    netray dump -i eth1 --hook tc-egress -c 10\n  \
    netray dump -r capture.pcapng -w https.pcapng tcp port 443\n  \
    netray dump -nn -e -X -r capture.pcapng icmp          # tcpdump's flags, tcpdump's output\n  \
    netray dump -i eth1 -Q out -tttt -l | grep 10.0.0.1\n  \
    netray dump -r capture.pcapng --count udp port 53\n  \
    netray dump -i eth1 -w ring.pcapng -C 100 -W 10        # ring.pcapng0 .. ring.pcapng9\n  \
    netray dump -i eth1 -w 'dump-%H%M.pcapng' -G 60 -W 60  # an hour, a file a minute\n  \
    netray dump -D\n\
    \n\
    The filter expression is pcap-filter syntax (man 7 pcap-filter), compiled by libpcap and run\n\
    inside the kernel: packets it rejects are never copied to userspace.\n\
    \n\
    Hooks: xdp (received, before the network stack: sees what XDP programs drop), tc-ingress,\n\
    tc-egress (sent). Points: entry (before any program on the hook decides), exit (after the program\n\
    on the hook decided; each record carries the verdict, as the pcapng epb_verdict option and a comment).\n\
    \n\
    Beside an XDP program netray did not load, dump watches it through fentry/fexit on its main function\n\
    where the kernel allows it and the program has BTF: nothing is swapped, the program stays attached\n\
    untouched, and exit records carry the verdicts it returned. Elsewhere, or with --mode chain, the\n\
    capture goes in front of it, reaches it by tail call, and puts it back exactly when dump exits (also\n\
    on Ctrl-C and SIGTERM; after kill -9, traffic keeps flowing through it and the next dump on the\n\
    interface puts it back); the exit point then needs netray's own program on the interface. One line\n\
    on stderr (and \"foreign_xdp\" in the --json start record) says which way was taken and why.\n\
    \n\
    Without -w, one line per packet (tcpdump -nn style; --json: one object per packet). With -w,\n\
    pcapng with one interface per (interface, hook, point) and nanosecond timestamps. At the end, like\n\
    tcpdump: packets captured, received by filter, matched, and dropped by kernel (ring buffer full):\n\
    losses are never silent. See docs/dump.md.\n\
    \n\
    tcpdump's flags mean what they mean in tcpdump (times in nanoseconds, as with tcpdump\n\
    --time-stamp-precision=nano). Accepted with nothing to change: -n/-nn (addresses and ports are\n\
    always numbers), -S (TCP sequence numbers are always absolute), -p (XDP and TC see what the\n\
    interface receives; netray never switches promiscuous mode on). Rotated files (-C, -G) are each a\n\
    whole pcapng section with its interfaces, named as tcpdump names them; -C and -G check before\n\
    each packet, as tcpdump does, so a quiet interface keeps its file open.", exit_status_help!()))]
pub struct DumpArgs {
    /// Interface to capture on.
    #[arg(short, long = "interface", value_name = "IFACE", required_unless_present_any = ["read", "list_interfaces"])]
    pub iface: Option<String>,
    /// Write pcapng to FILE ('-' for stdout) instead of printing packets.
    #[arg(short = 'w', value_name = "FILE")]
    pub write: Option<PathBuf>,
    /// Read packets from a pcap or pcapng FILE ('-' for stdin) and filter them with the same
    /// in-kernel program (BPF_PROG_TEST_RUN).
    #[arg(short = 'r', value_name = "FILE", conflicts_with_all = ["iface", "hook", "point", "direction"])]
    pub read: Option<PathBuf>,
    /// Exit after this many packets.
    #[arg(short = 'c', value_name = "COUNT")]
    pub count: Option<u64>,
    /// Bytes kept of each packet (0 = 262144, like tcpdump).
    #[arg(short = 's', long = "snapshot-length", value_name = "SNAPLEN", default_value_t = CaptureSpec::DEFAULT_SNAPLEN)]
    pub snaplen: u32,
    /// Where to capture: xdp, tc-ingress, tc-egress (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', value_parser = parse_hook, default_value = "xdp")]
    pub hook: Vec<Hook>,
    /// entry, exit or both.
    #[arg(long, value_enum, default_value = "entry")]
    pub point: PointArg,
    /// Ring buffer size per CPU and hook, in KiB (rounded up to a power of two).
    #[arg(short = 'B', long = "buffer-size", value_name = "KIB", default_value_t = CaptureSpec::DEFAULT_RING_BYTES / 1024)]
    pub buffer_kib: u32,
    /// auto: fentry/fexit on an XDP program netray did not load where the kernel allows it, else
    /// chaining in front of it; chain: always chaining; native, generic: the XDP attach mode when
    /// netray attaches a program itself (auto tries native, then generic).
    #[arg(long, default_value = "auto", value_parser = parse_dump_mode)]
    pub mode: (AttachMode, bool),
    /// One JSON object per packet (without -w), and the summary as JSON on stderr; with -D, the
    /// interfaces as JSON.
    #[arg(long)]
    pub json: bool,

    /// Direction, as tcpdump's -Q: in (the xdp hook, received packets), out (tc-egress, sent
    /// packets) or inout (both hooks). Instead of --hook.
    #[arg(short = 'Q', long = "direction", value_enum, value_name = "DIRECTION", conflicts_with = "hook")]
    pub direction: Option<DirectionArg>,
    /// List the interfaces netray can capture on (Ethernet-type), numbered, with their state, like
    /// tcpdump -D.
    #[arg(short = 'D', long = "list-interfaces", conflicts_with_all = ["iface", "read", "write"])]
    pub list_interfaces: bool,
    /// Print only how many packets matched (with -r, or live until -c or Ctrl-C), like tcpdump
    /// --count.
    #[arg(long = "count", conflicts_with_all = ["write", "json"])]
    pub count_only: bool,
    /// Read the filter expression from FILE ('#' starts a comment), instead of the command line.
    #[arg(short = 'F', value_name = "FILE")]
    pub filter_file: Option<PathBuf>,

    /// Print the link-level header: MAC addresses, ethertype and frame length.
    #[arg(short = 'e')]
    pub link_header: bool,
    /// -x: the packet in hex after each line (from the network header); -xx: from the link header.
    #[arg(short = 'x', action = ArgAction::Count)]
    pub hex: u8,
    /// -X: hex and ASCII (from the network header); -XX: from the link header. Wins over -x and -A.
    #[arg(short = 'X', action = ArgAction::Count)]
    pub hex_ascii: u8,
    /// -A: the packet as ASCII (from the network header); -AA: from the link header.
    #[arg(short = 'A', action = ArgAction::Count)]
    pub ascii: u8,
    /// Quieter lines: TCP as "tcp LENGTH", without flags, sequence numbers and options.
    #[arg(short = 'q')]
    pub quiet: bool,
    /// More detail: the IP header's fields (tos, ttl, id, offset, flags, proto, length; for IPv6
    /// class, flowlabel, hlim, next-header, payload length) and the checksums tcpdump checks
    /// (TCP, UDP over IPv6, ICMP). -vv: also UDP over IPv4, and every TCP segment's sequence number.
    #[arg(short = 'v', action = ArgAction::Count)]
    pub verbose: u8,
    /// Timestamps: -t none, -tt seconds since 1970, -ttt since the previous line, -tttt date and
    /// time, -ttttt since the first line.
    #[arg(short = 't', action = ArgAction::Count)]
    pub time: u8,
    /// Line-buffered output: each text line is written out at once (for | grep).
    #[arg(short = 'l')]
    pub line_buffered: bool,
    /// Packet-buffered: each packet is written to the -w file (or pipe) at once.
    #[arg(short = 'U', long = "packet-buffered")]
    pub packet_buffered: bool,
    /// Accepted: netray prints addresses and ports as numbers always (-n, -nn).
    #[arg(short = 'n', action = ArgAction::Count)]
    pub numeric: u8,
    /// Accepted: TCP sequence numbers are always absolute in netray.
    #[arg(short = 'S', long = "absolute-tcp-sequence-numbers")]
    pub absolute_seq: bool,
    /// Accepted: netray never puts the interface in promiscuous mode.
    #[arg(short = 'p', long = "no-promiscuous-mode")]
    pub no_promiscuous: bool,
    /// Don't verify IP, TCP and UDP checksums under -v (ICMP's still are, as in tcpdump).
    #[arg(short = 'K', long = "dont-verify-checksums")]
    pub no_checksums: bool,

    /// With -w: a new file once this one is larger than SIZE million bytes (FILE, FILE1, FILE2...).
    #[arg(short = 'C', value_name = "SIZE", requires = "write", value_parser = at_least_one::<u64>)]
    pub file_size: Option<u64>,
    /// With -C: rotate through COUNT files (FILE0..FILE<COUNT-1>, overwriting the oldest); with -G:
    /// stop after COUNT files.
    #[arg(short = 'W', value_name = "COUNT", requires = "write", value_parser = at_least_one::<u32>)]
    pub file_count: Option<u32>,
    /// With -w: a new file every SECONDS, named by FILE as a strftime pattern (dump-%H%M%S.pcapng).
    #[arg(short = 'G', value_name = "SECONDS", requires = "write", value_parser = at_least_one::<u64>)]
    pub rotate_seconds: Option<u64>,

    /// pcap-filter expression.
    #[arg(value_name = "EXPRESSION", trailing_var_arg = true)]
    pub expression: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum PointArg {
    Entry,
    Exit,
    Both,
}

/// tcpdump's -Q values.
#[derive(Clone, Copy, ValueEnum)]
pub enum DirectionArg {
    In,
    Out,
    Inout,
}

impl DirectionArg {
    /// The hooks that see packets going this way: received packets at XDP (the earliest hook,
    /// netray's default), sent ones at TC egress.
    pub fn hooks(self) -> Vec<Hook> {
        match self {
            DirectionArg::In => vec![Hook::Xdp],
            DirectionArg::Out => vec![Hook::TcEgress],
            DirectionArg::Inout => vec![Hook::Xdp, Hook::TcEgress],
        }
    }
}

/// `--mode`: the XDP attach mode, and whether to chain beside a foreign program
/// even where fentry/fexit would do.
fn parse_dump_mode(s: &str) -> Result<(AttachMode, bool), String> {
    match s {
        "chain" => Ok((AttachMode::Auto, true)),
        other => parse_mode(other).map(|m| (m, false)).map_err(|e| format!("{e}; or chain (see --help)")),
    }
}

/// -C, -W, -G: a whole number from 1 (tcpdump refuses 0 too).
fn at_least_one<T: std::str::FromStr + PartialOrd + From<u8>>(s: &str) -> Result<T, String> {
    match s.parse::<T>() {
        Ok(n) if n >= T::from(1) => Ok(n),
        _ => Err(format!("'{s}': give a whole number of 1 or more")),
    }
}

fn parse_hook(s: &str) -> Result<Hook, String> {
    s.parse()
}
