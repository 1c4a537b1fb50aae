//! `warden posture`: Posture of every purpose: expiry, rotation due, status. Exit code = worst status.
//!
//! Not built yet: the subcommand is reserved so the CLI's shape is fixed.

use std::process::ExitCode;

use clap::Args;

use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct PostureArgs {}

pub(crate) async fn run(_args: PostureArgs, _out: &Output) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`warden posture` is not available in this build")
}
