//! `netray completions SHELL`: the shell's completion script, generated from the
//! command-line definitions by clap_complete, so it never drifts from them.

use std::{io::Write, process::ExitCode};

use clap::Args;
use clap_complete::Shell;

#[derive(Args)]
#[command(after_help = "Examples:\n  \
    source <(netray completions bash)          # this shell only\n  \
    netray completions bash > /usr/local/share/bash-completion/completions/netray\n  \
    netray completions zsh > /usr/local/share/zsh/site-functions/_netray\n  \
    netray completions fish > /usr/local/share/fish/vendor_completions.d/netray.fish\n\
    \n\
    `make install` puts all three there. The script is text for the shell: there is no --json.")]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    shell: Shell,
}

pub fn run(args: CompletionsArgs, mut cli: clap::Command) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cli, "netray", &mut script);
    std::io::stdout().lock().write_all(&script)?;
    Ok(ExitCode::SUCCESS)
}
