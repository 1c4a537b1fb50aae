//! `warden rotate`: dual-key rotation of signing keys kept in KV v2 and the JWKS
//! verifiers are served.
//!
//! The work is `warden_keys`; this module selects keys from the spec (`select`), previews and
//! rotates them (`signing`), and prints a key's JWKS (`jwks`).

mod jwks;
pub(crate) mod select;
mod signing;

use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::context::Target;
use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct RotateArgs {
    #[command(subcommand)]
    command: RotateCommand,
}

#[derive(Debug, Subcommand)]
enum RotateCommand {
    /// Rotate signing keys: each gets a new key pair as a new KV version; the previous version
    /// keeps verifying for the key's grace period, then stops. Shows which keys first; prints
    /// old and new kid and until when the old key verifies, never key material. A key that
    /// does not exist yet is created (version 1).
    SigningKey(SigningKeyArgs),
    /// Print the JWK Set (RFC 7517) of every version of APP's signing key KEY that verifies
    /// now: what verifiers should be served. Public keys only.
    Jwks(JwksArgs),
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["purpose", "app"]))]
pub(crate) struct SigningKeyArgs {
    /// A purpose of the spec: every `<app>/signing-key/<name>` its `covers` match rotates.
    purpose: Option<String>,
    /// Rotate one key: the app that owns it (with --key).
    #[arg(long, requires = "key", conflicts_with = "purpose")]
    app: Option<String>,
    /// Rotate one key: its name (with --app).
    #[arg(long, requires = "app")]
    key: Option<String>,
    #[command(flatten)]
    target: Target,
    /// Show what would rotate and stop.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct JwksArgs {
    /// The app that owns the key.
    app: String,
    /// The key's name.
    key: String,
    #[command(flatten)]
    target: Target,
    /// Evaluate the grace windows at TIME (RFC 3339) instead of now: which versions existing
    /// today verify at that moment.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
}

pub(crate) async fn run(args: RotateArgs, out: &Output) -> anyhow::Result<ExitCode> {
    match args.command {
        RotateCommand::SigningKey(a) => signing::run(a, out).await,
        RotateCommand::Jwks(a) => jwks::run(a, out).await,
    }
}
