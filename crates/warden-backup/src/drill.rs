//! The DR drill: proves that the newest backup restores, and how long it takes (docs/dr.md).
//!
//! Start → the backup checked offline → a scratch cluster on loopback with as many nodes as the
//! environment (`warden_lab::Scratch`, the environment's own TLS files) → the snapshot restored
//! with `snapshot-force` (the scratch keyring differs by design) → unsealed with the
//! environment's own shares → checks → verified. RTO is start → verified; RPO is the
//! snapshot's age and the raft index gap to the live environment. The scratch cluster is torn
//! down whatever happened. A step that fails is a failed check, and the report is still
//! returned, so a failed drill is recorded like a passed one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use warden_bao::Client;
use warden_registry::posture::{self, Report};
use warden_spec::{Environment, Spec, Status};

use crate::{BackupError, VerifyRequest};

/// The payload `component` of a drill's signed report.
pub const DRILL_COMPONENT: &str = "dr-drill";
/// Its `format`.
pub const DRILL_FORMAT: &str = "warden-dr-drill/1";

/// One check and its outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it held.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
}

/// The drill's report: the payload signed into the evidence packet.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    /// [`DRILL_COMPONENT`].
    pub component: String,
    /// [`DRILL_FORMAT`].
    pub format: String,
    /// Environment.
    pub env: String,
    /// When the drill started (Unix seconds).
    pub generated_at: i64,
    /// The backup restored.
    pub backup: String,
    /// Its raft index.
    pub snapshot_index: u64,
    /// The live environment's committed index when the drill started.
    pub live_index: Option<u64>,
    /// RPO: the snapshot's age at the start, seconds.
    pub rpo_seconds: i64,
    /// RPO: raft entries the live environment holds past the snapshot.
    pub rpo_index_gap: Option<u64>,
    /// RTO: start → verified (or → the failed check), seconds.
    pub rto_seconds: f64,
    /// Nodes of the scratch cluster.
    pub nodes: usize,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// Every check held.
    pub passed: bool,
}

/// What a drill needs.
#[derive(Debug)]
pub struct DrillRequest<'a> {
    /// The lab the environment runs in (its nodes, TLS files and custody).
    pub lab: &'a warden_lab::Lab,
    /// The spec.
    pub spec: &'a Spec,
    /// The environment.
    pub env: &'a Environment,
    /// An operator client of the live environment.
    pub live: &'a Client,
    /// The backup directory (the newest backup is drilled).
    pub backup_dir: &'a Path,
    /// Evidence public keys.
    pub keys: &'a [warden_registry::evidence::PublicKey],
    /// An identity that opens the backup.
    pub identity: &'a warden_custody::IdentityFile,
    /// The offline root (PEM) the PKI chain must verify to.
    pub root_pem: Option<String>,
}

struct Run {
    checks: Vec<Check>,
}

impl Run {
    fn check(&mut self, name: &str, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.to_owned(),
            ok,
            detail: detail.into(),
        });
    }
}

/// The newest backup of `env` in `dir`.
pub fn newest(dir: &Path, env: &str) -> Result<PathBuf, BackupError> {
    let (all, _) = crate::list(dir, Some(env))?;
    all.into_iter()
        .find(|b| b.present)
        .map(|b| b.snapshot)
        .ok_or_else(|| BackupError::Dir {
            path: dir.to_path_buf(),
            reason: format!("no backup of `{env}` to drill"),
        })
}

/// Runs the drill. `Err` only when there is no backup to drill; every later failure is a
/// failed check in the report.
pub async fn drill(req: &DrillRequest<'_>) -> Result<DrillReport, BackupError> {
    let started = Instant::now();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let env = req.env.name.to_string();
    let backup = newest(req.backup_dir, &env)?;
    let nodes = req
        .lab
        .env(&env)
        .map(|e| e.followers.len() + 1)
        .unwrap_or(1);
    let live_index = req.live.leader().await.ok().map(|l| l.raft_committed_index);
    let mut run = Run { checks: Vec::new() };
    let mut report = DrillReport {
        component: DRILL_COMPONENT.to_owned(),
        format: DRILL_FORMAT.to_owned(),
        env: env.clone(),
        generated_at: now,
        backup: backup.display().to_string(),
        snapshot_index: 0,
        live_index,
        rpo_seconds: 0,
        rpo_index_gap: None,
        rto_seconds: 0.0,
        nodes,
        checks: Vec::new(),
        passed: false,
    };
    steps(req, &backup, &mut run, &mut report).await;
    report.rto_seconds = started.elapsed().as_secs_f64();
    report.passed = !run.checks.is_empty() && run.checks.iter().all(|c| c.ok);
    report.checks = run.checks;
    Ok(report)
}

async fn steps(req: &DrillRequest<'_>, backup: &Path, run: &mut Run, report: &mut DrillReport) {
    let env = report.env.clone();
    let opened = match crate::restore::open(&VerifyRequest {
        backup,
        keys: req.keys,
        env: Some(&env),
        identity: req.identity,
    }) {
        Ok(o) => o,
        Err(e) => {
            run.check("backup verifies offline", false, e.to_string());
            return;
        }
    };
    report.snapshot_index = opened.archive.index;
    report.rpo_seconds = report.generated_at - opened.manifest.generated_at;
    report.rpo_index_gap = report
        .live_index
        .map(|l| l.saturating_sub(opened.archive.index));
    run.check(
        "backup verifies offline",
        true,
        format!(
            "signature, ciphertext SHA-256 and snapshot checksums hold (raft index {})",
            opened.archive.index
        ),
    );
    // The scratch cluster's directory: a temp dir removed with it.
    let dir = match tempfile::Builder::new().prefix("warden-drill-").tempdir() {
        Ok(d) => d,
        Err(e) => return run.check("scratch cluster starts", false, e.to_string()),
    };
    let scratch = match req.lab.start_scratch(&env, dir.path()).await {
        Ok(s) => s,
        Err(e) => {
            run.check("scratch cluster starts", false, e.to_string());
            return;
        }
    };
    run.check(
        "scratch cluster starts",
        true,
        format!(
            "{} node(s) at {}",
            report.nodes,
            scratch.addresses().join(", ")
        ),
    );
    restore_and_check(req, &scratch, &opened, run).await;
    let addresses = scratch.addresses().join(", ");
    if let Err(e) = scratch.stop().await {
        run.check("scratch cluster torn down", false, e.to_string());
    } else {
        run.check("scratch cluster torn down", true, addresses);
    }
}

async fn restore_and_check(
    req: &DrillRequest<'_>,
    scratch: &warden_lab::Scratch,
    opened: &crate::restore::Opened,
    run: &mut Run,
) {
    let env = req.env.name.to_string();
    let root = match scratch.root_client() {
        Ok(c) => c,
        Err(e) => {
            run.check("snapshot restores", false, e.to_string());
            return;
        }
    };
    // The scratch keyring is not the snapshot's: snapshot-force, by design.
    match crate::restore::restore_ref(&root, &env, opened, true, Duration::from_secs(30)).await {
        Ok(r) => run.check(
            "snapshot restores",
            true,
            format!("snapshot-force on {} in {:.2}s", r.node, r.seconds),
        ),
        Err(e) => return run.check("snapshot restores", false, e.to_string()),
    };
    // Under another keyring the restored node seals itself shortly after the restore.
    if let Ok(false) | Err(_) = scratch.wait_sealed(Duration::from_secs(20)).await {
        return run.check(
            "unsealed with the environment's shares",
            false,
            "the scratch node did not seal after snapshot-force (is it still on its own keyring?)",
        );
    }
    let shares = match warden_lab::unseal_shares(&req.lab.layout().env(&env)) {
        Ok(s) => s,
        Err(e) => {
            return run.check(
                "unsealed with the environment's shares",
                false,
                e.to_string(),
            );
        }
    };
    if let Err(e) = scratch.unseal_with(&shares).await {
        return run.check(
            "unsealed with the environment's shares",
            false,
            format!("{e}; node 1 log: {}", scratch.log_tail(1, 8)),
        );
    }
    run.check(
        "unsealed with the environment's shares",
        true,
        format!("{} share(s) of the environment's custody", shares.len()),
    );
    let restored = match scratch.operator_client() {
        Ok(c) => c,
        Err(e) => return run.check("a live certificate logs in", false, e.to_string()),
    };
    // A certificate of the live environment (the operator's) logs in to the restored one.
    match restored.read("auth/token/lookup-self").await {
        Ok(s) => {
            let policies = s
                .data
                .and_then(|d| d.get("policies").cloned())
                .map(|p| p.to_string())
                .unwrap_or_default();
            run.check(
                "a live certificate logs in",
                true,
                format!("the operator certificate logged in (policies {policies})"),
            );
        }
        Err(e) => return run.check("a live certificate logs in", false, e.to_string()),
    }
    pki_chain(req, &restored, run).await;
    purposes_and_secrets(req, &restored, opened.manifest.generated_at, run).await;
}

async fn pki_chain(req: &DrillRequest<'_>, restored: &Client, run: &mut Run) {
    let mount = req.env.mounts.pki.trim_matches('/');
    let path = format!("{mount}/cert/ca_chain");
    let bundle = match restored.read(&path).await {
        Ok(s) => {
            let d = s.data.unwrap_or_default();
            match d.get("ca_chain").and_then(|c| c.as_array()) {
                Some(list) => list
                    .iter()
                    .filter_map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
                None => d
                    .get("certificate")
                    .and_then(|c| c.as_str())
                    .unwrap_or("")
                    .to_owned(),
            }
        }
        Err(e) => {
            return run.check(
                "PKI chain verifies to the offline root",
                false,
                format!("{path}: {e}"),
            );
        }
    };
    let Some(root) = &req.root_pem else {
        return run.check(
            "PKI chain verifies to the offline root",
            false,
            "the offline root certificate is not available",
        );
    };
    match warden_pki::verify_chain(&bundle, Some(root), time::OffsetDateTime::now_utc()) {
        Ok(r) if r.valid && !r.certs.is_empty() => run.check(
            "PKI chain verifies to the offline root",
            true,
            format!("{} certificate(s) in {path}", r.certs.len()),
        ),
        Ok(r) => run.check(
            "PKI chain verifies to the offline root",
            false,
            format!(
                "{path}: {}",
                r.problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ),
        Err(e) => run.check(
            "PKI chain verifies to the offline root",
            false,
            format!("{path}: {e}"),
        ),
    };
}

type Facts = BTreeMap<String, (Status, Option<i64>, Option<String>)>;

fn facts(r: &Report) -> BTreeMap<String, Facts> {
    r.purposes
        .iter()
        .map(|p| {
            let creds = p
                .credentials
                .iter()
                .map(|c| {
                    (
                        c.id.clone(),
                        (c.status, c.issued_at, c.detail.get("version").cloned()),
                    )
                })
                .collect();
            (p.purpose.clone(), creds)
        })
        .collect()
}

async fn purposes_and_secrets(
    req: &DrillRequest<'_>,
    restored: &Client,
    snapshot_at: i64,
    run: &mut Run,
) {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let live = match posture::collect(req.live, req.spec, req.env, now).await {
        Ok(r) => facts(&r),
        Err(e) => {
            return run.check(
                "every registered purpose resolves",
                false,
                format!("live posture: {e}"),
            );
        }
    };
    let scratch = match posture::collect(restored, req.spec, req.env, now).await {
        Ok(r) => facts(&r),
        Err(e) => {
            return run.check(
                "every registered purpose resolves",
                false,
                format!("restored posture: {e}"),
            );
        }
    };
    let mut missing = Vec::new();
    for (purpose, creds) in &live {
        match scratch.get(purpose) {
            None => missing.push(purpose.clone()),
            Some(s) => {
                for (id, (status, _, _)) in creds {
                    let restored_unknown =
                        s.get(id).is_none_or(|(st, _, _)| *st == Status::Unknown);
                    if restored_unknown && *status != Status::Unknown {
                        missing.push(format!("{purpose}: {id}"));
                    }
                }
            }
        }
    }
    run.check(
        "every registered purpose resolves",
        missing.is_empty(),
        if missing.is_empty() {
            format!(
                "{} purpose(s) resolve in the restored environment",
                live.len()
            )
        } else {
            format!("not resolved: {}", missing.join(", "))
        },
    );
    // Secrets: every credential with a version that predates the snapshot reads back with the
    // same version and issue time.
    let (mut same, mut skipped, mut differ) = (0usize, 0usize, Vec::new());
    for (purpose, creds) in &live {
        for (id, (_, issued, version)) in creds {
            let Some(v) = version else { continue };
            if issued.is_none_or(|t| t > snapshot_at) {
                skipped += 1;
                continue;
            }
            match scratch.get(purpose).and_then(|s| s.get(id)) {
                Some((_, i, Some(rv))) if rv == v && i == issued => same += 1,
                other => differ.push(format!(
                    "{id}: live v{v}, restored {}",
                    other
                        .and_then(|(_, _, rv)| rv.clone())
                        .map_or_else(|| "missing".to_owned(), |rv| format!("v{rv}"))
                )),
            }
        }
    }
    run.check(
        "secrets read back with the same version metadata",
        differ.is_empty(),
        if differ.is_empty() {
            format!(
                "{same} credential(s) match; {skipped} changed after the snapshot (not compared)"
            )
        } else {
            format!("differ: {}", differ.join(", "))
        },
    );
}

/// Where a drill's signed report goes by default: `<dir>/<env>-drill-<UTC time>.json`.
pub fn report_path(dir: &Path, env: &str, at: time::OffsetDateTime) -> PathBuf {
    let stamp = at
        .format(&time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_default();
    dir.join(format!("{env}-drill-{stamp}.json"))
}

/// Signs `report` with the environment's evidence key (so `warden evidence verify` checks it
/// offline) and writes the packet to `path` atomically. `warden dr drill` and `warden serve`'s
/// scheduled drill both record a drill this way.
pub async fn sign_and_write(
    live: &Client,
    env: &Environment,
    report: &DrillReport,
    path: &Path,
) -> Result<(), BackupError> {
    let payload = serde_json::to_value(report).expect("a drill report serializes");
    let signed = warden_registry::evidence::sign_payload(
        live,
        env.name.as_str(),
        &env.mounts.transit,
        &payload,
    )
    .await
    .map_err(|source| BackupError::Sign {
        env: env.name.to_string(),
        source: Box::new(source),
    })?;
    warden_files::write_atomic(path, &signed.bytes, warden_files::Mode::Public).map_err(|e| {
        BackupError::Write {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        }
    })
}
