//! `warden reveal`: Reveal-once credentials: mint one behind a single-use wrapped token, open it once.
//!
//! Not built yet: the subcommand is reserved so the CLI's shape is fixed.

use std::process::ExitCode;

use clap::Args;

use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct RevealArgs {}

pub(crate) async fn run(_args: RevealArgs, _out: &Output) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`warden reveal` is not available in this build")
}
