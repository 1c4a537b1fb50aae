//! `warden secret put | get | history | rollback`: an app's versioned secrets in KV v2
//! (`<kv mount>/<kv_prefix>/<name>`, e.g. `kvv2/billing/config`), and plain KV v1 with `--kv1`.
//!
//! Values come from a file or stdin, never argv, and are printed only by `get --reveal`.
//! KV v2 keeps no author, so `put` and `rollback` record the writer (the token's display name)
//! and the key names they changed in the secret's `custom_metadata`
//! ([`warden_bao::ChangeRecord`]); `history` shows them. The audit log stays the authority.
//!
//! The environment, client and token come from [`crate::session`] (shared with `transit` and
//! `ci`), values from [`crate::input`]; one module per subcommand.

mod get;
mod history;
mod put;
mod rollback;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde::Serialize;
use warden_spec::IdentityKind;

use crate::hint::HintExt;
use crate::output::Output;
use crate::session::{Access, Session};

#[derive(Debug, Args)]
pub(crate) struct SecretArgs {
    #[command(subcommand)]
    command: SecretCommand,
}

#[derive(Debug, Subcommand)]
enum SecretCommand {
    /// Write a new version of APP's secret NAME from a file or stdin (a JSON object or
    /// KEY=VALUE lines). Prints the version and the key names changed, never values.
    Put(PutArgs),
    /// Show a version of APP's secret NAME: its keys and metadata. Values only with --reveal.
    Get(GetArgs),
    /// Every kept version of APP's secret NAME: when, who, which keys changed. Never values.
    History(HistoryArgs),
    /// Write the content of an earlier version as a new version (after a preview and a
    /// confirmation, or --yes).
    Rollback(RollbackArgs),
}

/// APP and NAME, shared by every subcommand.
#[derive(Debug, Args)]
struct SecretRef {
    /// The app (or container) that owns the secret.
    app: String,
    /// The secret's name under the app's prefix (e.g. `config`).
    name: String,
    #[command(flatten)]
    access: Access,
}

#[derive(Debug, Args)]
pub(crate) struct PutArgs {
    #[command(flatten)]
    secret: SecretRef,
    /// Read the value from FILE instead of stdin.
    #[arg(long, value_name = "FILE")]
    from_file: Option<PathBuf>,
    /// Write only if the current version is N (0: only if the secret does not exist yet).
    /// Without it, Warden still writes against the version it read, so a concurrent write is
    /// never silently overwritten.
    #[arg(long, value_name = "N", conflicts_with = "kv1")]
    cas: Option<u64>,
    /// Use the environment's KV v1 mount (no versions, no history).
    #[arg(long)]
    kv1: bool,
}

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    #[command(flatten)]
    secret: SecretRef,
    /// This version instead of the current one.
    #[arg(long, value_name = "N", conflicts_with = "kv1")]
    version: Option<u64>,
    /// Print the values too.
    #[arg(long)]
    reveal: bool,
    /// Use the environment's KV v1 mount.
    #[arg(long)]
    kv1: bool,
}

#[derive(Debug, Args)]
pub(crate) struct HistoryArgs {
    #[command(flatten)]
    secret: SecretRef,
}

#[derive(Debug, Args)]
pub(crate) struct RollbackArgs {
    #[command(flatten)]
    secret: SecretRef,
    /// The version whose content to restore.
    #[arg(long, value_name = "N")]
    to_version: u64,
    /// Do not ask for confirmation (needed when stdin is not a terminal, and with -o json).
    #[arg(long)]
    yes: bool,
    /// Show the preview and stop.
    #[arg(long, conflicts_with = "yes")]
    dry_run: bool,
}

pub(crate) async fn run(args: SecretArgs, out: &Output) -> anyhow::Result<ExitCode> {
    match args.command {
        SecretCommand::Put(a) => put::run(a, out).await,
        SecretCommand::Get(a) => get::run(a, out).await,
        SecretCommand::History(a) => history::run(a, out).await,
        SecretCommand::Rollback(a) => rollback::run(a, out).await,
    }
}

/// Which KV engine a secret lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Engine {
    Kv2,
    Kv1,
}

/// Where one secret lives.
#[derive(Debug, Serialize)]
struct Location {
    env: String,
    app: String,
    secret: String,
    engine: Engine,
    mount: String,
    /// Path inside the mount.
    path: String,
}

impl Location {
    fn full(&self) -> String {
        format!("{}/{}", self.mount, self.path)
    }
}

/// Opens the session and finds the secret's location; refuses unknown apps and bad names
/// before anything is contacted.
fn locate(
    r: &SecretRef,
    engine: Engine,
    command: &str,
    out: &Output,
) -> anyhow::Result<(Session, Location)> {
    check_secret_name(&r.name)?;
    let session = r.access.open(command, out)?;
    let id = session.owner(&r.app, &[IdentityKind::App, IdentityKind::Container])?;
    if command == "secret put" && !id.secrets.iter().any(|s| s == &r.name) {
        out.warn(format!(
            "`{}` is not among {}'s declared secrets ({}): the app cannot read it",
            r.name,
            r.app,
            id.secrets.join(", ")
        ));
    }
    let mounts = &session.env.mounts;
    let location = Location {
        env: session.env_name().to_owned(),
        app: r.app.clone(),
        secret: r.name.clone(),
        engine,
        mount: match engine {
            Engine::Kv2 => mounts.kv.clone(),
            Engine::Kv1 => mounts.kv_v1.clone(),
        },
        path: warden_spec::naming::secret_path(&session.spec().naming, &id.name, &r.name),
    };
    Ok((session, location))
}

/// Wraps a KV error with what to do next.
fn explain(err: warden_bao::KvError, loc: &Location, spec_hint: &str) -> anyhow::Error {
    use warden_bao::KvError as E;
    let hint = match &err {
        E::NotFound { version: None, .. } => Some(format!(
            "nothing is stored there yet; `warden secret put {} {} {spec_hint}` writes it",
            loc.app, loc.secret
        )),
        E::NotFound {
            version: Some(_), ..
        } => Some(format!(
            "`warden secret history {} {} {spec_hint}` lists the versions still kept",
            loc.app, loc.secret
        )),
        E::VersionDeleted { version, .. } => Some(format!(
            "bring it back with `bao kv undelete -mount={} -versions={version} {}`, then retry",
            loc.mount, loc.path
        )),
        E::CasMismatch { .. } => Some(format!(
            "someone else wrote it meanwhile: check `warden secret history {} {} {spec_hint}`, then retry",
            loc.app, loc.secret
        )),
        e if e.is_permission_denied() => Some(format!(
            "this token's policies do not allow that on {}; a pipeline may only write its own app's declared secrets",
            loc.full()
        )),
        _ => None,
    };
    // OpenBao's own text for a denial is a multi-line "1 error occurred: * permission
    // denied"; the path and the hint say it better.
    let message = if err.is_permission_denied() {
        format!("{}: permission denied", loc.full())
    } else {
        err.to_string()
    };
    let err = anyhow::Error::msg(message);
    match hint {
        Some(h) => err.context(crate::hint::Hint(h)),
        None => err,
    }
}

/// `--spec S [--lab L] --env E` as the user gave them, for hints.
fn spec_args(a: &Access) -> String {
    let mut s = format!("--spec {}", a.target.spec.display());
    if let Some(lab) = &a.target.lab {
        s.push_str(&format!(" --lab {}", lab.display()));
    }
    for e in &a.target.envs {
        s.push_str(&format!(" --env {e}"));
    }
    if let Some(t) = &a.token_file {
        s.push_str(&format!(" --token-file {}", t.display()));
    }
    s
}

/// An RFC 3339 time cut to whole seconds for tables (`2026-11-23T16:51:20Z`).
fn short_time(t: &str) -> String {
    match (t.find('.'), t.ends_with('Z')) {
        (Some(dot), true) => format!("{}Z", &t[..dot]),
        _ => t.to_owned(),
    }
}

/// Checks a secret's name: one path segment of `A-Z a-z 0-9 . _ -`, so it can never reach
/// outside the app's prefix.
pub(crate) fn check_secret_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(anyhow::anyhow!("`{name}` is not a valid secret name"))
            .hint("use 1-128 characters of A-Z, a-z, 0-9, '.', '_' and '-' (no '/': a secret lives directly under its app)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_stay_one_segment() {
        for ok in ["config", "stripe.v2", "a_b-c"] {
            assert!(check_secret_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../ledger/config",
            "a b",
            &"x".repeat(129),
        ] {
            assert!(check_secret_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_are_cut_to_seconds() {
        assert_eq!(
            short_time("2026-11-23T16:51:20.03397696Z"),
            "2026-11-23T16:51:20Z"
        );
        assert_eq!(short_time("2026-11-23T16:51:20Z"), "2026-11-23T16:51:20Z");
        assert_eq!(short_time(""), "");
    }
}
