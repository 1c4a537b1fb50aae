//! `warden backup create | list | verify`: encrypted raft snapshots with signed manifests
//! (docs/dr.md, ADR 0011).
//!
//! `create` talks to the environment's active node; `list` reads the backup directory;
//! `verify` is offline (the manifest, the evidence public key, the snapshot and an identity
//! that opens it). A backup that does not verify exits 3 (`exit::CHECK_FAILED`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use warden_backup::BackupError;
use warden_registry::posture::rfc3339;

use crate::context::Target;
use crate::hint::{Hint, HintExt, WithCode};
use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct BackupArgs {
    #[command(subcommand)]
    command: BackupCommand,
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// Take a raft snapshot through the active node, encrypted to the spec's backup
    /// recipients, with a signed manifest beside it; then apply retention.
    Create(CreateArgs),
    /// List the backups in the environment's backup directory, newest first.
    List(ListArgs),
    /// Verify a backup offline without restoring it: the manifest's signature, its
    /// environment, the ciphertext's SHA-256, and the snapshot's own checksums. Exit 3 if it
    /// does not hold.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
struct CreateArgs {
    #[command(flatten)]
    target: Target,
    /// Write into DIR instead of the spec's `backup.dir`.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Abandon the backup when the active node sends nothing for this long (a frozen
    /// server); nothing is written.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    stall_timeout: std::time::Duration,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    match warden_spec::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be greater than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    target: Target,
    /// List DIR instead of the spec's `backup.dir`.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The backup: its `.snap.age` file or its `.manifest.json`.
    backup: PathBuf,
    /// PEM public key file of the environment's evidence key (`warden evidence key`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// An age identity file of one of the backup's recipients (owner-only).
    #[arg(long, value_name = "FILE")]
    identity: PathBuf,
    /// The environment the backup must belong to.
    #[arg(long = "env", value_name = "ENV")]
    env: Option<String>,
}

pub(crate) async fn run(args: BackupArgs, out: &Output) -> anyhow::Result<ExitCode> {
    match args.command {
        BackupCommand::Create(a) => create(a, out).await,
        BackupCommand::List(a) => list(a, out),
        BackupCommand::Verify(a) => verify(a, out),
    }
}

/// The environment's backup directory: `--dir`, else the spec's (relative to the spec).
pub(crate) fn backup_dir(
    spec_dir: &Path,
    env: &warden_spec::Environment,
    over: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    if let Some(d) = over {
        return Ok(d.to_path_buf());
    }
    let s = warden_backup::settings(env).map_err(|e| explain(e, None))?;
    Ok(if s.dir.is_absolute() {
        s.dir.clone()
    } else {
        spec_dir.join(&s.dir)
    })
}

/// The CLI's reading of a backup error: the message, the next step, and exit 3 for a backup
/// that does not hold.
pub(crate) fn explain(err: BackupError, spec: Option<&Path>) -> anyhow::Error {
    let spec = spec.map_or_else(|| "the spec".to_owned(), |p| p.display().to_string());
    let (hint, check): (Option<String>, bool) = match &err {
        BackupError::NotConfigured { env } => (Some(format!(
            "add [environments.{env}.backup] with `recipients = [\"age1…\"]` and `dir` to {spec}"
        )), false),
        BackupError::Sealed { .. } => (Some("unseal the environment first (`warden custody unseal`)".into()), false),
        BackupError::Snapshot { source, .. } if matches!(&**source, warden_bao::SnapshotError::Bao(e) if e.is_permission_denied()) => (Some(
            "taking a snapshot needs `read` on sys/storage/raft/snapshot (the operator policy grants it; re-run `warden bootstrap` or `warden apply` to refresh an older policy)".into()
        ), false),
        BackupError::Write { source, .. } if source.raw_os_error() == Some(28) => (Some("free space in the backup directory, or pass --dir".into()), false),
        BackupError::NoManifest { .. } => (Some("keep each `.manifest.json` beside its `.snap.age`; a backup without one is not trusted".into()), true),
        BackupError::ManifestSignature { .. } => (Some("get the key with `warden evidence key --env ENV`; if it is the right key, do not trust this backup".into()), true),
        BackupError::WrongEnvironment { found, .. } => (Some(format!("restore it into `{found}`, or pick a backup of this environment (`warden backup list`)")), true),
        e if stalled(e) => (Some(
            "check the active node (is the process stopped, the disk or CPU saturated?); nothing was written, so re-run `warden backup create` when it answers, or raise --stall-timeout for a slow link".into()
        ), false),
        BackupError::ManifestNamesAnother { .. } => (Some("do not trust this pair of files; pick another backup (`warden backup list`)".into()), true),
        BackupError::CiphertextMismatch { .. } | BackupError::IndexMismatch { .. } | BackupError::Archive { .. } => (Some("do not restore this backup; pick an older one (`warden backup list`)".into()), true),
        BackupError::NotForIdentity { .. } => (Some("pass the identity of one of the recipients in the manifest (`recipients`)".into()), true),
        BackupError::NotAge { .. } | BackupError::NotAManifest { .. } => (None, true),
        _ => (None, false),
    };
    let mut e = anyhow::Error::msg(err.to_string());
    if let Some(h) = hint {
        e = e.context(Hint(h));
    }
    if check {
        e = e.context(WithCode(crate::exit::CHECK_FAILED));
    }
    e
}

async fn create(args: CreateArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let (resolved, env, client) = args.target.one_env_client("backup create")?;
    let dir = backup_dir(&resolved.spec_dir, &env, args.dir.as_deref())?;
    out.progress(format!(
        "{}: taking a raft snapshot into {}",
        env.name,
        dir.display()
    ));
    let created = warden_backup::create(&client, &resolved.spec, &env, &dir, args.stall_timeout)
        .await
        .map_err(|e| explain(e, Some(&args.target.spec)))?;
    if created.key_created {
        out.warn("created the evidence signing key on first use; keep its public key: `warden evidence key`");
    }
    let m = &created.manifest;
    out.emit(&created, || {
        let mut s = format!(
            "{}: backup {} ({} bytes encrypted to {} recipient(s), raft index {}, OpenBao {}, sha256 {})\nmanifest {}",
            m.env,
            created.snapshot.display(),
            m.size,
            m.recipients.len(),
            m.raft_index,
            m.openbao_version,
            m.sha256,
            created.manifest_path.display()
        );
        for p in &created.pruned {
            s.push_str(&format!("\nretention removed {}", p.display()));
        }
        s
    })?;
    Ok(ExitCode::SUCCESS)
}

fn list(args: ListArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let resolved = args.target.resolve()?;
    let env = resolved
        .one_env("backup list", crate::context::OneEnv::NamedOrOnly)?
        .clone();
    let dir = backup_dir(&resolved.spec_dir, &env, args.dir.as_deref())?;
    let (found, unreadable) = warden_backup::list(&dir, Some(env.name.as_str()))
        .map_err(|e| explain(e, Some(&args.target.spec)))?;
    for p in &unreadable {
        out.warn(format!("{} is not a readable backup manifest", p.display()));
    }
    out.emit(&found, || {
        if found.is_empty() {
            return format!("{}: no backups in {}", env.name, dir.display());
        }
        found
            .iter()
            .map(|b| {
                format!(
                    "{}  {}  index {}  {} bytes{}",
                    rfc3339(b.manifest.generated_at),
                    b.snapshot.display(),
                    b.manifest.raft_index,
                    b.manifest.size,
                    if b.present {
                        ""
                    } else {
                        "  (snapshot missing)"
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Reads the evidence public keys from `path`.
pub(crate) fn read_keys(path: &Path) -> anyhow::Result<Vec<warden_registry::evidence::PublicKey>> {
    let pem = warden_files::read_regular(path, 1024 * 1024)
        .with_context(|| format!("could not read the key file {}", path.display()))?;
    let pem = std::str::from_utf8(&pem)
        .map_err(|_| anyhow::anyhow!("the key file {} is not text (PEM)", path.display()))?;
    warden_registry::evidence::parse_public_keys(pem)
        .with_context(|| format!("{} is not a usable key file", path.display()))
        .hint("get the public key with `warden evidence key --env ENV > evidence.pem`")
}

/// Reads an age identity file (owner-only).
pub(crate) fn read_identity(path: &Path) -> anyhow::Result<warden_custody::IdentityFile> {
    warden_custody::IdentityFile::read(path)
        .map_err(|e| anyhow::Error::msg(e.to_string()))
        .hint("pass an age identity file (`age-keygen -o FILE`, mode 0600) of one of the backup's recipients")
}

fn verify(args: VerifyArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let keys = read_keys(&args.key)?;
    let identity = read_identity(&args.identity)?;
    let req = warden_backup::VerifyRequest {
        backup: &args.backup,
        keys: &keys,
        env: args.env.as_deref(),
        identity: &identity,
    };
    let v = warden_backup::verify(&req).map_err(|e| explain(e, None))?;
    out.emit(&v, || {
        format!(
            "valid: backup of {} taken {} (raft index {}, term {}, {} bytes of state), signed with {} (sha256 {}); checksums of {} hold",
            v.manifest.env,
            rfc3339(v.manifest.generated_at),
            v.archive.index,
            v.archive.term,
            v.archive.state_bytes,
            v.key,
            v.key_sha256,
            v.archive.files.join(", ")
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The server went silent past the stall bound, while streaming or while signing.
fn stalled(e: &BackupError) -> bool {
    match e {
        BackupError::Snapshot { source, .. } => {
            matches!(&**source, warden_bao::SnapshotError::Stalled { .. })
        }
        BackupError::SignStalled { .. } => true,
        _ => false,
    }
}
