//! Scheduled backups and DR drills (docs/serve.md "Jobs", ADR 0028). The work is
//! `warden_backup`'s — the same `create` (with its retention) and `drill` the commands run —
//! so serve only decides *when* and records *what happened*.
//!
//! - **Backup** (`backup`, when `[environments.E.backup] every` is set): a raft snapshot through
//!   the active node, encrypted to the spec's recipients, its manifest signed with the evidence
//!   key, written into the spec's `backup.dir` on the leader's host; retention (`keep`,
//!   `max_age`) runs after it. Serve's policy grants the snapshot read and the evidence key's
//!   `sign`, nothing else of `sys/storage`.
//! - **Drill** (`dr-drill`, when `drill_every` is set, and only with a lab, an age identity of
//!   a backup recipient and the evidence public key): the newest backup restored into a scratch
//!   cluster and unsealed with the environment's custody shares, checked, torn down; the report
//!   signed and written beside the backups. The shares are why it is lab only: serve must never
//!   hold what unseals production.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use warden_bao::Client;
use warden_spec::{Environment, Spec};

use crate::error::{Error, Result};

/// Where an environment's scheduled backups go, and what its drill needs.
#[derive(Debug, Clone)]
pub struct BackupTarget {
    /// The spec's `backup.dir`, resolved against the spec's directory.
    pub dir: PathBuf,
    /// What the drill needs; `None`: no drill is scheduled even if `drill_every` is set.
    pub drill: Option<Arc<DrillInputs>>,
}

/// What a scheduled drill needs besides serve's client (lab only).
pub struct DrillInputs {
    /// The lab the environment runs in: its TLS files and custody shares unseal the scratch
    /// cluster.
    pub lab: warden_lab::Lab,
    /// Evidence public keys the backup's manifest must verify with.
    pub keys: Vec<warden_registry::evidence::PublicKey>,
    /// An age identity of one of the backups' recipients.
    pub identity: warden_custody::IdentityFile,
    /// The offline root (PEM) the restored PKI chain must verify to.
    pub root_pem: Option<String>,
}

impl fmt::Debug for DrillInputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrillInputs")
            .field("lab", &self.lab.layout().root())
            .field("keys", &self.keys.len())
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// What a run did: words for the record, and figures the metrics read back from it.
#[derive(Debug)]
pub(crate) struct Done {
    pub(crate) detail: String,
    pub(crate) figures: BTreeMap<String, f64>,
    /// The work ran to the end but its verdict is a failure (a drill check failed).
    pub(crate) failed: bool,
}

fn backup_err(env: &Environment) -> impl FnOnce(warden_backup::BackupError) -> Error + '_ {
    |source| Error::Backup {
        env: env.name.to_string(),
        source: Box::new(source),
    }
}

/// Takes a backup (retention after it) with `warden_backup::create`.
pub(crate) async fn backup(
    client: &Client,
    spec: &Spec,
    env: &Environment,
    target: &BackupTarget,
) -> Result<Done> {
    let c = warden_backup::create(client, spec, env, &target.dir, warden_backup::STALL_TIMEOUT)
        .await
        .map_err(backup_err(env))?;
    let name = c
        .snapshot
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut figures = BTreeMap::new();
    figures.insert("generated_at".into(), c.manifest.generated_at as f64);
    figures.insert("bytes".into(), c.manifest.size as f64);
    figures.insert("raft_index".into(), c.manifest.raft_index as f64);
    figures.insert("pruned".into(), c.pruned.len() as f64);
    Ok(Done {
        detail: format!(
            "{name} ({} bytes, raft index {}) in {}; retention removed {}",
            c.manifest.size,
            c.manifest.raft_index,
            target.dir.display(),
            c.pruned.len()
        ),
        figures,
        failed: false,
    })
}

/// Drills the newest backup with `warden_backup::drill` and writes its signed report beside
/// the backups. A failed check is a finished run with `failed` set (and its RTO recorded).
pub(crate) async fn drill(
    client: &Client,
    spec: &Spec,
    env: &Environment,
    target: &BackupTarget,
) -> Result<Done> {
    let Some(inputs) = &target.drill else {
        // jobs_for schedules no drill without inputs; reaching here is a bug, reported as such.
        return Err(Error::Settings(format!(
            "{}: the drill has no inputs (lab, identity, evidence key)",
            env.name
        )));
    };
    let report = warden_backup::drill::drill(&warden_backup::drill::DrillRequest {
        lab: &inputs.lab,
        spec,
        env,
        live: client,
        backup_dir: &target.dir,
        keys: &inputs.keys,
        identity: &inputs.identity,
        root_pem: inputs.root_pem.clone(),
    })
    .await
    .map_err(backup_err(env))?;
    let path = warden_backup::drill::report_path(
        &target.dir,
        env.name.as_str(),
        time::OffsetDateTime::now_utc(),
    );
    warden_backup::drill::sign_and_write(client, env, &report, &path)
        .await
        .map_err(backup_err(env))?;
    let mut figures = BTreeMap::new();
    figures.insert("rto_seconds".into(), report.rto_seconds);
    figures.insert("rpo_seconds".into(), report.rpo_seconds as f64);
    figures.insert("passed".into(), f64::from(u8::from(report.passed)));
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.as_str())
        .collect();
    Ok(Done {
        detail: format!(
            "{} — RTO {:.1}s, RPO {}s; {}; signed report {}",
            report.backup,
            report.rto_seconds,
            report.rpo_seconds,
            if failed.is_empty() {
                "every check green".to_owned()
            } else {
                format!("FAILED: {}", failed.join(", "))
            },
            path.display()
        ),
        figures,
        failed: !report.passed,
    })
}
