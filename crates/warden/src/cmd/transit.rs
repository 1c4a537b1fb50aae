//! `warden transit`: Encryption and signing as a service (transit): encrypt, decrypt, sign, verify, rotate.
//!
//! Not built yet: the subcommand is reserved so the CLI's shape is fixed.

use std::process::ExitCode;

use clap::Args;

use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct TransitArgs {}

pub(crate) async fn run(_args: TransitArgs, _out: &Output) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`warden transit` is not available in this build")
}
