//! `warden identity enroll` (placeholder, being written).

use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct IdentityArgs {
    #[command(subcommand)]
    command: IdentityCommand,
}

#[derive(Debug, Subcommand)]
enum IdentityCommand {
    /// Enroll an identity on this host.
    Enroll,
}

pub(crate) async fn run(args: IdentityArgs, _out: &Output) -> anyhow::Result<ExitCode> {
    match args.command {
        IdentityCommand::Enroll => anyhow::bail!("not yet implemented"),
    }
}
