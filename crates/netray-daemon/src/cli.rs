//! `netray daemon`: argument parsing only.
//!
//! Unlike the other commands (crates/netray-cli/src/cmd), these arguments live in the daemon's
//! crate: its tests run the daemon as a process of their own (bin/netray-daemon-test-bin.rs, to
//! kill -9 and restart it), and a crate's tests can only build that crate's binaries.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context;
use netray_core::PinDir;

use crate::{
    config::{Config, DEFAULT_BODY_LIMIT, DEFAULT_LISTEN, DEFAULT_SSE_QUEUE, DEFAULT_STATE_DIR},
    daemon::Options,
};

#[derive(Debug, Clone, clap::Args)]
#[command(
    about = "Serve netray over a REST API: rules, interfaces, stats, flows, live events, metrics",
    long_about = "Runs netray as a daemon: attaches the interfaces and rules of its config file and of the API, \
                  serves a REST API (JSON; OpenAPI document at /openapi.json), Server-Sent Event streams of packets \
                  and execs, and Prometheus metrics at /metrics. Mutating requests need `Authorization: Bearer \
                  <token>` (the --token-file, generated with mode 0600 if missing). State is kept in --state-dir; \
                  the firewall keeps enforcing while the daemon is stopped or killed, and a restarted daemon \
                  reconciles without detaching anything.",
    after_help = "Examples:\n  netray daemon --config /etc/netray/daemon.toml\n  netray daemon --listen 127.0.0.1:9810 --state-dir /var/lib/netray\n  netray --pin-dir /sys/fs/bpf/netray-test daemon --listen 127.0.0.1:0\n  TOKEN=$(cat /var/lib/netray/token)\n  curl -H \"Authorization: Bearer $TOKEN\" -d '{\"cidr\": \"203.0.113.0/24\"}' http://127.0.0.1:9810/v1/rules\n  curl -N 'http://127.0.0.1:9810/v1/events/packets?interface=eth1'"
)]
pub struct DaemonArgs {
    /// TOML config file (see docs/daemon.example.toml); options given here override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:9810; port 0 picks a free one).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// File holding the bearer token (default <state-dir>/token; created with mode 0600 if missing).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Where the daemon keeps its state (default /var/lib/netray).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Where pinned BPF state lives: set by the caller from netray's global
    /// `--pin-dir` (else the config's `pin_dir`, NETRAY_PIN_DIR, the default).
    #[arg(skip)]
    pub pin_dir: Option<PathBuf>,
}

/// Builds the daemon's options from the arguments and the config file.
pub fn options(args: &DaemonArgs) -> anyhow::Result<(Options, SocketAddr)> {
    let config = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let listen: SocketAddr = match args.listen {
        Some(l) => l,
        None => config.listen.as_deref().unwrap_or(DEFAULT_LISTEN).parse().context("listen address")?,
    };
    let state_dir = args.state_dir.clone().or(config.state_dir.clone()).unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    let token_file = args.token_file.clone().or(config.token_file.clone()).unwrap_or_else(|| state_dir.join("token"));
    let pin_dir = args.pin_dir.clone().or(config.pin_dir.clone());
    let (token, created) = crate::auth::load_or_create(&token_file)?;
    if created {
        eprintln!("netray daemon: generated a bearer token in {}", token_file.display());
    }
    crate::auth::check_strength(&token, &token_file, listen.ip().is_loopback())?;
    // After the token: a weak token is refused before anything touches bpffs.
    let pin = PinDir::resolve(pin_dir.as_deref())?;
    let opts = Options {
        pin,
        state_dir,
        token,
        body_limit: config.body_limit.unwrap_or(DEFAULT_BODY_LIMIT),
        sse_queue: config.sse_queue.unwrap_or(DEFAULT_SSE_QUEUE),
        config,
    };
    Ok((opts, listen))
}

/// `netray daemon`: runs until SIGINT/SIGTERM. Prints `listening on ADDR`
/// on stdout once the socket is bound.
pub fn run(args: DaemonArgs) -> anyhow::Result<()> {
    let (opts, listen) = options(&args)?;
    if !listen.ip().is_loopback() {
        eprintln!("netray daemon: warning: listening on {listen}, not on loopback: put TLS and a firewall in front of it");
    }
    crate::server::run(opts, listen, |addr, d| {
        let r = d.reconcile.lock().map(|r| r.clone()).unwrap_or_default();
        eprintln!(
            "netray daemon: rules kept {}, added {}; interfaces kept {:?}, attached {:?}, failed {:?}",
            r.rules_kept, r.rules_added, r.interfaces_kept, r.interfaces_attached, r.interfaces_failed
        );
        println!("listening on {addr}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
    })
}
