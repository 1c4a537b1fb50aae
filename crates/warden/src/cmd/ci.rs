//! `warden ci`: CI pipelines: exchange the pipeline's OIDC token for a short-lived Warden token.
//!
//! Not built yet: the subcommand is reserved so the CLI's shape is fixed.

use std::process::ExitCode;

use clap::Args;

use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct CiArgs {}

pub(crate) async fn run(_args: CiArgs, _out: &Output) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`warden ci` is not available in this build")
}
