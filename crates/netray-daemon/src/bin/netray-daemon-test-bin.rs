//! `netray daemon` as a standalone executable, for tests that kill -9 the
//! daemon and start it again.

use clap::Parser;

#[derive(Parser)]
struct Cli {
    /// Where pinned state lives (as netray's global --pin-dir).
    #[arg(long, value_name = "DIR")]
    pin_dir: Option<std::path::PathBuf>,
    #[command(flatten)]
    args: netray_daemon::cli::DaemonArgs,
}

fn main() {
    let mut cli = Cli::parse();
    cli.args.pin_dir = cli.pin_dir;
    if let Err(e) = netray_daemon::cli::run(cli.args) {
        eprintln!("netray: error: {e:#}");
        std::process::exit(1);
    }
}
