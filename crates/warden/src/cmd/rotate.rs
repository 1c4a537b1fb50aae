//! `warden rotate`: Rotations: dual-key signing-key rotation with a grace window.
//!
//! Not built yet: the subcommand is reserved so the CLI's shape is fixed.

use std::process::ExitCode;

use clap::Args;

use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct RotateArgs {}

pub(crate) async fn run(_args: RotateArgs, _out: &Output) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`warden rotate` is not available in this build")
}
