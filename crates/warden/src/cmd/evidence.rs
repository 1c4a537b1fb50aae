//! `warden evidence`: Signed evidence packets: export one per component, verify one offline.
//!
//! Not built yet: the subcommand is reserved so the CLI's shape is fixed.

use std::process::ExitCode;

use clap::Args;

use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct EvidenceArgs {}

pub(crate) async fn run(_args: EvidenceArgs, _out: &Output) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`warden evidence` is not available in this build")
}
