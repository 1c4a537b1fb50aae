//! `warden restore`: puts a backup back into its environment (docs/dr.md, ADR 0011).
//!
//! Order: every offline check of `warden backup verify` (nothing is contacted before they
//! pass) → a confirmation naming the environment and the snapshot's age → the restore on the
//! active node with a break-glass token (restoring is root-only) → `plan` and `posture`
//! against the restored state, printing what differs from the spec.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;
use warden_registry::posture;

use super::backup::{explain, read_identity, read_keys};
use crate::context::{OneEnv, Target};
use crate::hint::HintExt as _;
use crate::output::Output;

#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    #[command(flatten)]
    target: Target,
    /// The backup: its `.snap.age` file or its `.manifest.json`.
    #[arg(long, value_name = "BACKUP")]
    from: PathBuf,
    /// PEM public key file of the environment's evidence key (`warden evidence key`), kept
    /// apart from the backups: the manifest must verify with it.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// An age identity file of one of the backup's recipients (owner-only).
    #[arg(long, value_name = "FILE")]
    identity: PathBuf,
    /// A break-glass token (`warden break-glass open --token-file`): restoring a snapshot is
    /// root-only in OpenBao.
    #[arg(long, value_name = "FILE")]
    token_file: PathBuf,
    /// Required: a restore replaces everything written since the snapshot.
    #[arg(long)]
    force: bool,
    /// The environment's name, confirming without a terminal (a terminal is asked instead).
    #[arg(long, value_name = "ENV")]
    confirm: Option<String>,
}

/// What the restore lost: the snapshot's age and how many raft entries the live environment
/// had committed past it.
#[derive(Serialize)]
struct Rpo {
    seconds: i64,
    snapshot_index: u64,
    live_index: Option<u64>,
    index_gap: Option<u64>,
}

#[derive(Serialize)]
struct RestoreOutput {
    restored: warden_backup::restore::Restored,
    rpo: Rpo,
    /// Changes `warden apply` would make to bring the restored state back to the spec.
    plan_changes: Option<usize>,
    /// The worst posture status after the restore.
    posture_worst: Option<warden_spec::Status>,
}

fn age_text(secs: i64) -> String {
    warden_spec::format_approx(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

pub(crate) async fn run(args: RestoreArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let mut resolved = args.target.resolve()?;
    let env = resolved.one_env("restore", OneEnv::Named)?.clone();
    resolved.envs.retain(|e| e.name == env.name);
    let name = env.name.to_string();
    let keys = read_keys(&args.key)?;
    let identity = read_identity(&args.identity)?;
    // Every offline check before anything is contacted.
    let opened = warden_backup::restore::open(&warden_backup::VerifyRequest {
        backup: &args.from,
        keys: &keys,
        env: Some(&name),
        identity: &identity,
    })
    .map_err(|e| explain(e, Some(&args.target.spec)))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let age = age_text(now - opened.manifest.generated_at);
    // A stale pick: a newer backup of the same environment lies beside this one. Said before
    // the confirmation, so the operator chooses with it in view.
    if let Some(dir) = opened.snapshot.parent()
        && let Ok((found, _)) = warden_backup::list(dir, Some(&name))
        && let Some(newest) = found.iter().find(|b| b.present)
        // The same order as `list` (seconds, then the millisecond stamp in the name).
        && (newest.manifest.generated_at, &newest.manifest.file)
            > (opened.manifest.generated_at, &opened.manifest.file)
    {
        out.warn(format!(
            "a newer backup of `{name}` is beside this one: {} (taken {} after it, raft index {} against {}); restoring this one loses that too — check `warden backup list`",
            newest.snapshot.display(),
            age_text(newest.manifest.generated_at - opened.manifest.generated_at),
            newest.manifest.raft_index,
            opened.manifest.raft_index
        ));
    }
    let what = format!(
        "restore environment `{name}` to the snapshot taken {} ago (raft index {}, {}): everything written since is lost",
        age,
        opened.manifest.raft_index,
        opened.snapshot.display()
    );
    if !args.force {
        return Err(anyhow::anyhow!(
            "refusing to {what} without --force; nothing was touched"
        ))
        .hint("pass --force, and confirm with the environment's name");
    }
    confirm(&what, &name, args.confirm.as_deref(), out)?;
    let token = crate::session::read_token_file(&args.token_file, out)?;
    let client = resolved.client(&env)?;
    client.set_token(token);
    // The live index before anything changes: the raft index gap is the RPO in entries.
    let live_index = client.leader().await.ok().map(|l| l.raft_committed_index);
    let rpo = Rpo {
        seconds: now - opened.manifest.generated_at,
        snapshot_index: opened.archive.index,
        live_index,
        index_gap: live_index.map(|l| l.saturating_sub(opened.archive.index)),
    };
    out.progress(format!(
        "{name}: restoring ({} bytes)",
        opened.manifest.snapshot_bytes
    ));
    let restored = restore_with_fallback(&client, &name, opened, out)
        .await
        .map_err(|e| explain(e, Some(&args.target.spec)))?;
    if restored.sealed_after {
        out.warn(format!(
            "{name} is sealed after the restore: unseal it with the keys of the snapshot's keyring (`warden custody unseal`), then run `warden plan` and `warden posture`"
        ));
        let report = RestoreOutput {
            restored,
            rpo,
            plan_changes: None,
            posture_worst: None,
        };
        out.emit(&report, || render(&report))?;
        return Ok(ExitCode::from(crate::exit::DEGRADED));
    }
    // What differs from the spec now, and the posture, with the operator's own login.
    let plan = crate::provisioning::build_plan(&resolved, false, 8, out)
        .await
        .context("the restore succeeded, but planning against the restored state failed")?;
    out.stderr_block(&crate::provisioning::render_plan(&plan));
    let op = resolved.client(&env)?;
    let post = posture::collect(&op, &resolved.spec, &env, now)
        .await
        .context("the restore succeeded, but reading posture failed")?;
    let report = RestoreOutput {
        restored,
        rpo,
        plan_changes: Some(plan.changes()),
        posture_worst: Some(post.worst),
    };
    out.emit(&report, || render(&report))?;
    Ok(ExitCode::SUCCESS)
}

/// `snapshot` first; when OpenBao says the snapshot was sealed under another keyring (a
/// rebuilt cluster), `snapshot-force`, which the confirmation already covered.
async fn restore_with_fallback(
    client: &warden_bao::Client,
    env: &str,
    opened: warden_backup::restore::Opened,
    out: &Output,
) -> Result<warden_backup::restore::Restored, warden_backup::BackupError> {
    let settle = Duration::from_secs(60);
    // A failed non-forced restore changes nothing, so retrying forced is safe; the snapshot
    // is decrypted once more only in that case.
    match warden_backup::restore::restore_ref(client, env, &opened, false, settle).await {
        Err(warden_backup::BackupError::Snapshot { source, .. }) if matches!(&*source, warden_bao::SnapshotError::Bao(e) if keyring_mismatch(e)) =>
        {
            out.warn(format!(
                "{env}: the snapshot was taken under another keyring; restoring with snapshot-force (the environment then unseals with the snapshot's keys)"
            ));
            warden_backup::restore::restore_ref(client, env, &opened, true, settle).await
        }
        other => other,
    }
}

fn keyring_mismatch(e: &warden_bao::Error) -> bool {
    e.status() == Some(400)
        && e.server_errors().iter().any(|m| {
            let m = m.to_ascii_lowercase();
            m.contains("keyring")
                || m.contains("hash")
                || m.contains("sealed")
                || m.contains("unseal")
        })
}

fn confirm(what: &str, env: &str, given: Option<&str>, out: &Output) -> anyhow::Result<()> {
    if let Some(g) = given {
        if g == env {
            out.progress(format!("confirmed: {what}"));
            return Ok(());
        }
        return Err(anyhow::anyhow!(
            "--confirm names `{g}`, but the restore is into `{env}`; nothing was touched"
        ))
        .hint(format!("pass --confirm {env}"));
    }
    let stdin = std::io::stdin();
    if out.is_json() || !stdin.is_terminal() {
        return Err(anyhow::anyhow!(
            "refusing to {what} without confirmation; nothing was touched"
        ))
        .hint(format!("pass --confirm {env}"));
    }
    let answer = crate::input::ask(
        out,
        &format!("About to {what}.\nType the environment's name to confirm: "),
    )?;
    if answer.trim() == env {
        Ok(())
    } else {
        Err(anyhow::anyhow!("restore cancelled; nothing was touched"))
    }
}

fn render(r: &RestoreOutput) -> String {
    let x = &r.restored;
    let mut s = format!(
        "{}: restored {} (raft index {}, taken {}) on {} in {:.2}s{}",
        x.env,
        x.snapshot.display(),
        x.raft_index,
        posture::rfc3339(x.taken_at),
        x.node,
        x.seconds,
        if x.forced { " with snapshot-force" } else { "" }
    );
    s.push_str(&format!(
        "\nRPO: the snapshot was {} old{}",
        age_text(r.rpo.seconds),
        r.rpo
            .index_gap
            .map(|g| format!(", {g} raft entries behind the live environment"))
            .unwrap_or_default()
    ));
    if let Some(n) = r.plan_changes {
        s.push_str(&format!(
            "\nplan: {n} change(s) to match the spec (run `warden apply`)"
        ));
    }
    if let Some(w) = r.posture_worst {
        s.push_str(&format!("\nposture: worst status {w:?}"));
    }
    s
}
