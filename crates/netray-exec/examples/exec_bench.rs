//! The cost tracing adds to each exec: `cargo run --release -p netray-exec
//! --example exec_bench [-- --execs N --program PATH --backend B]` (as root).
use clap::Parser;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    bench: netray_exec::cli::BenchArgs,
}

fn main() {
    if let Err(e) = netray_exec::cli::run_bench(Args::parse().bench) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
