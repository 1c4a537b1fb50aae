//! `warden agent` (placeholder, being written).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// The agent's config (`agent.toml`, written by `warden identity enroll`).
    #[arg(long)]
    config: PathBuf,
    /// Render every output once and exit; non-zero if anything failed.
    #[arg(long)]
    once: bool,
}

pub(crate) async fn run(args: AgentArgs, _out: &Output) -> anyhow::Result<ExitCode> {
    let _ = (args.config, args.once);
    anyhow::bail!("not yet implemented")
}
