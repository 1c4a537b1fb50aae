//! `warden secret`: Versioned app secrets in KV: put, get, history, rollback. Values are never printed unless asked.
//!
//! Not built yet: the subcommand is reserved so the CLI's shape is fixed.

use std::process::ExitCode;

use clap::Args;

use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct SecretArgs {}

pub(crate) async fn run(_args: SecretArgs, _out: &Output) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`warden secret` is not available in this build")
}
