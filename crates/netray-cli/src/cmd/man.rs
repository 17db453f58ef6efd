//! `netray man [COMMAND...]`: manual pages in roff, generated from the command-line
//! definitions by clap_mangen, so they never drift from `--help`.

use std::{io::Write, path::PathBuf, process::ExitCode};

use anyhow::{bail, Context as _};
use clap::Args;

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    netray man | man -l -                 # netray(1)\n  \
    netray man dump | man -l -            # netray-dump(1)\n  \
    netray man firewall attach | man -l -\n  \
    netray man --out-dir /usr/local/share/man/man1   # every page, as `make install` does\n\
    \n\
    The pages are roff for man: there is no --json.")]
pub struct ManArgs {
    /// The command whose page to print (none: netray's own).
    #[arg(value_name = "COMMAND", conflicts_with = "out_dir")]
    command: Vec<String>,
    /// Write every page (netray.1, netray-dump.1, netray-firewall-attach.1, ...) into DIR.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

pub fn run(args: ManArgs, mut cli: clap::Command) -> anyhow::Result<ExitCode> {
    // Full names (`netray firewall attach`) in every usage line.
    cli.build();
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("--out-dir: cannot create {}", dir.display()))?;
        let written = write_pages(&cli, "netray", dir)?;
        eprintln!("netray: {written} manual pages written to {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let mut page = cli;
    let mut name = String::from("netray");
    for word in &args.command {
        let Some(sub) = page.find_subcommand(word).cloned() else {
            let known: Vec<&str> = page.get_subcommands().map(|c| c.get_name()).filter(|n| *n != "help").collect();
            bail!("{name} has no command '{word}': it has {}", known.join(", "));
        };
        name = format!("{name}-{word}");
        page = sub;
    }
    let mut roff = Vec::new();
    clap_mangen::Man::new(page).title(name).render(&mut roff)?;
    std::io::stdout().lock().write_all(&roff)?;
    Ok(ExitCode::SUCCESS)
}

/// The page of `cmd` as `name`.1 and those of its subcommands; how many were written.
fn write_pages(cmd: &clap::Command, name: &str, dir: &std::path::Path) -> anyhow::Result<usize> {
    let path = dir.join(format!("{name}.1"));
    let mut roff = Vec::new();
    clap_mangen::Man::new(cmd.clone()).title(name).render(&mut roff)?;
    std::fs::write(&path, roff).with_context(|| format!("writing {}", path.display()))?;
    let mut written = 1;
    for sub in cmd.get_subcommands().filter(|c| c.get_name() != "help") {
        written += write_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(written)
}
