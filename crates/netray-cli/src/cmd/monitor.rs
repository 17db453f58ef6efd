//! `netray monitor`.

use std::{
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use clap::Args;
use netray_core::{AttachMode, Hook};
use netray_monitor::MonitorSession;

use super::iface_watch::{exit_status_help, IfaceWatch};
use super::{firewall::parse_mode, Context};
use crate::output::{json_line, line};

#[derive(Args)]
#[command(after_help = concat!("Examples:\n  \
    netray monitor -i eth1\n  \
    netray monitor -i eth1 -c 100 --json | jq .src\n  \
    netray monitor -i eth1 --hook tc-ingress,tc-egress\n  \
    netray monitor -i eth1 --hook socket\n\
    \n\
    Hooks: xdp (received, before the stack), tc-ingress / tc-egress (TC, received / sent), socket (a\n\
    packet socket bound to the interface: both directions, with the packet type: host, broadcast,\n\
    multicast, other-host, outgoing). Each line: time, interface, hook, protocol, source ->\n\
    destination, length, verdict (and what dropped it: rule 7, limit 3 or policy). With --json: one\n\
    object per packet ({\"type\":\"packet\", ts, ifname, proto, src, dst, sport, dport, len, verdict,\n\
    rule, decided_by, ...}) and a {\"type\":\"stats\", received, lost, packets_seen} line every second\n\
    and at exit. `lost` counts events the kernel could not deliver because the ring was full; they are\n\
    never dropped silently. If netray is not attached to the interface, the monitor attaches it and\n\
    detaches again when it exits.", exit_status_help!()))]
pub struct MonitorArgs {
    /// Interface to watch.
    #[arg(short, long = "interface", value_name = "IFACE")]
    iface: String,
    /// Exit after this many packets.
    #[arg(short = 'c', long = "count", value_name = "COUNT")]
    count: Option<u64>,
    /// Exit after this many seconds.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Where to watch: xdp, tc-ingress, tc-egress, socket (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', default_value = "xdp", value_parser = parse_hook)]
    hook: Vec<Hook>,
    /// XDP attach mode if netray must attach: auto, native or generic.
    #[arg(long, default_value = "auto", value_parser = parse_mode)]
    mode: AttachMode,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Context, args: MonitorArgs) -> anyhow::Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGPIPE] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let pin = ctx.pin()?;
    let mut session = MonitorSession::start_hooks(&pin, &args.iface, args.mode, &args.hook)?;
    let watch = IfaceWatch::start(session.interface(), &stop)?;
    if !args.json {
        let hooks: Vec<&str> = session.hooks().iter().map(|h| h.name()).collect();
        eprintln!("netray: monitoring {} ({}); Ctrl-C to stop", session.interface().name, hooks.join(", "));
    }
    let deadline = args.duration.map(|s| Instant::now() + Duration::from_secs_f64(s));
    let mut printed = 0u64;
    let mut last_stats = Instant::now();
    let mut write_error = None;
    let mut print = |ev: netray_monitor::PacketEvent| {
        if write_error.is_some() || args.count.is_some_and(|c| printed >= c) {
            return false;
        }
        let r = if args.json { json_line(&ev) } else { line(&ev.to_string()) };
        if let Err(e) = r {
            write_error = Some(e);
            return false;
        }
        printed += 1;
        args.count.is_none_or(|c| printed < c)
    };
    while !stop.load(Ordering::Relaxed) && deadline.is_none_or(|d| Instant::now() < d) {
        if !session.poll(Duration::from_millis(50), &mut print)? {
            break;
        }
        if args.json && last_stats.elapsed() >= Duration::from_secs(1) {
            json_line(&session.stats()?)?;
            last_stats = Instant::now();
        }
    }
    watch.report();
    // Print what is still in the ring (unless -c was reached).
    let stats = session.finish(&mut print)?;
    if args.json {
        json_line(&stats)?;
    } else {
        eprintln!("{} packets printed", printed);
        eprintln!("{} events received from the kernel", stats.received);
        eprintln!("{} events lost in the kernel (ring buffer full)", stats.lost);
    }
    watch.remove_pins(&pin)?;
    // A closed pipe (`| head`) ends the command quietly in main.
    write_error.map_or(Ok(watch.exit_code()), Err)
}

fn parse_hook(s: &str) -> Result<Hook, String> {
    s.parse()
}
