//! `warden domain`: Domain TLS certificates kept in KV with their expiry: status and renewal.
//!
//! Not built yet: the subcommand is reserved so the CLI's shape is fixed.

use std::process::ExitCode;

use clap::Args;

use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct DomainArgs {}

pub(crate) async fn run(_args: DomainArgs, _out: &Output) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`warden domain` is not available in this build")
}
