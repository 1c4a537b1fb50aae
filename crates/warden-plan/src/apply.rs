//! Carrying out a plan: creates and updates in dependency order, deletes in reverse, a bounded
//! number in flight, and the ownership record updated with exactly what succeeded.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;
use warden_bao::{Client, Idempotent};

use crate::error::Error;
use crate::object::Kind;
use crate::owned;
use crate::plan::{Action, Change, EnvPlan};

/// What apply did in one environment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyReport {
    /// Environment.
    pub env: String,
    /// Objects created.
    pub created: usize,
    /// Objects updated.
    pub updated: usize,
    /// Objects deleted.
    pub deleted: usize,
    /// HTTP writes made, including the ownership record (0 on a no-op apply).
    pub writes: usize,
}

/// Called after each change with (done, total).
pub type ProgressFn = dyn Fn(usize, usize) + Send + Sync;

/// Applies `plan`. Refuses up front when it has conflicts. On partial failure the successful
/// changes stay applied and recorded, and the error lists the failures.
pub async fn apply_env(
    client: &Client,
    plan: &EnvPlan,
    concurrency: usize,
    progress: Arc<ProgressFn>,
) -> Result<ApplyReport, Error> {
    let conflicts: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| c.action == Action::Conflict)
        .map(|c| format!("{} {}: {}", c.kind.label(), c.path, c.reason))
        .collect();
    if !conflicts.is_empty() {
        return Err(Error::Refused {
            env: plan.env.clone(),
            reasons: conflicts,
        });
    }
    if !plan.unpurposed.is_empty() {
        return Err(Error::Refused {
            env: plan.env.clone(),
            reasons: vec![format!("no purpose governs {}", plan.unpurposed.join(", "))],
        });
    }
    let total = plan.changes.len();
    let done = Arc::new(AtomicUsize::new(0));
    let mut report = ApplyReport {
        env: plan.env.clone(),
        ..Default::default()
    };
    let mut failures = Vec::new();

    // Record what is about to be created *before* creating it (right after the mounts, one of
    // which holds the record): if the process dies half way, every object it made is already
    // Warden's and prunable. An id whose object was never created is harmless to prune.
    // Mounts and auth backends are created before the record, but are never pruned anyway.
    let mut owned = plan.owned.ids.clone();
    owned.extend(
        plan.changes
            .iter()
            .filter(|c| c.action == Action::Create)
            .map(|c| c.id.clone()),
    );
    let mut recorded = plan.owned.clone();

    // Phases: everything of a phase finishes before the next starts (roles need their mounts
    // and policies). Deletes were sorted last, children first.
    // By reference: the plan's bodies are not copied (40,000 of them at 10,000 identities).
    let mut phases: Vec<Vec<&Change>> = Vec::new();
    let mut last_key = None;
    for c in &plan.changes {
        let key = (c.action == Action::Delete, c.phase());
        if last_key != Some(key) {
            phases.push(Vec::new());
            last_key = Some(key);
        }
        phases.last_mut().expect("just pushed").push(c);
    }
    for phase in phases {
        let mounts_phase = phase.first().is_some_and(|c| c.before_record());
        if !mounts_phase && owned != recorded.ids {
            report.writes += owned::write(client, &plan.env, &owned, &recorded).await?;
            recorded = owned::Owned {
                ids: owned.clone(),
                paged: true,
            };
        }
        let results = warden_bao::bounded::run(phase, concurrency, |change: &Change| {
            let (done, progress) = (&done, &progress);
            async move {
                let r = execute(client, change).await;
                progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
                (change, r)
            }
        })
        .await;
        for (change, r) in results {
            match r {
                Ok(()) => {
                    report.writes += 1;
                    match change.action {
                        Action::Create => report.created += 1,
                        Action::Update => report.updated += 1,
                        Action::Delete => {
                            report.deleted += 1;
                            owned.remove(&change.id);
                        }
                        Action::Conflict => {}
                    }
                }
                Err(e) => failures.push((change.id.clone(), e)),
            }
        }
        if !failures.is_empty() {
            break; // later phases depend on this one
        }
    }
    if owned != recorded.ids {
        report.writes += owned::write(client, &plan.env, &owned, &recorded).await?;
    }
    if failures.is_empty() {
        Ok(report)
    } else {
        Err(Error::Partial {
            env: plan.env.clone(),
            total,
            failures,
        })
    }
}

/// Carries out one change; the error text is what the failure list shows beside the object id.
async fn execute(client: &Client, change: &Change) -> Result<(), String> {
    match (change.action, change.kind) {
        (Action::Create, Kind::DatabaseConfig) => create_database_config(client, change).await,
        // A registry entry or page is deleted with all its versions, not just the latest.
        (Action::Delete, Kind::Registry | Kind::RegistryPage) => client
            .delete(&change.path.replacen("/data/", "/metadata/", 1))
            .await
            .map_err(|e| e.to_string()),
        (Action::Update, Kind::Registry) => execute_plain(client, change).await.map_err(|e| {
            if e.contains("check-and-set") {
                format!(
                    "the registry entry changed after the plan was made (a `warden revoke purpose`, or another apply), so it was not overwritten; its pages written before it may no longer match it, and posture, evidence and revoke refuse the entry until `warden apply` runs again and plans against it ({e})"
                )
            } else {
                e
            }
        }),
        _ => execute_plain(client, change).await,
    }
}

/// A database password file larger than this is not a password file.
const PASSWORD_FILE_LIMIT: u64 = 64 * 1024;

/// Creates a database connection with the initial password read from its file (never kept,
/// never in the plan), then rotates it with `rotate-root` so that only the engine knows the
/// password from then on and the file is stale.
async fn create_database_config(client: &Client, change: &Change) -> Result<(), String> {
    let file = change
        .password_file
        .as_ref()
        .ok_or("no password file for the database connection")?;
    // A regular file only, opened without blocking: a FIFO or a device at the name would stop
    // the command's one thread, and with it the writes in flight.
    let bytes = warden_files::read_regular(file, PASSWORD_FILE_LIMIT).map_err(|e| {
        format!(
            "could not read the password file {}: {e}; point `password_file` at a regular file holding only the password (UTF-8, a trailing newline is fine; apply reads it once, when it creates the connection)",
            file.display()
        )
    })?;
    let password = std::str::from_utf8(&bytes).map_err(|_| {
        format!(
            "the password file {} is not UTF-8 text; write the password as UTF-8",
            file.display()
        )
    })?;
    let password = password.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(format!("the password file {} is empty", file.display()));
    }
    let mut body = change.body()?;
    body["password"] = serde_json::Value::String(password.to_owned());
    let sent = client.write(&change.path, &body, Idempotent::Yes).await;
    if let Some(serde_json::Value::String(s)) = body.get_mut("password") {
        // The request's own serialised copy is reqwest's; this one is ours to wipe.
        zeroize::Zeroize::zeroize(s);
    }
    sent.map_err(|e| e.to_string())?;
    let rotate = change.path.replacen("/config/", "/rotate-root/", 1);
    client
        .write(&rotate, &serde_json::json!({}), Idempotent::No)
        .await
        .map_err(|e| {
            format!(
                "the connection was created, but {rotate} failed, so its root password is still the one in the file: {e}; run `bao write -f {rotate}`"
            )
        })?;
    Ok(())
}

async fn execute_plain(client: &Client, change: &Change) -> Result<(), String> {
    let sent = match (change.action, change.kind) {
        (Action::Delete, _) => client.delete(&change.path).await,
        // Enabling a mount twice fails, so it is never retried once sent.
        (_, Kind::Mount | Kind::Auth) => client
            .write(&change.path, &change.body()?, Idempotent::No)
            .await
            .map(drop),
        _ => client
            .write(&change.path, &change.body()?, Idempotent::Yes)
            .await
            .map(drop),
    };
    sent.map_err(|e| e.to_string())
}

impl Change {
    /// The body to write, back from its compact form (only while it is being sent).
    fn body(&self) -> Result<serde_json::Value, String> {
        serde_json::from_str(&self.body)
            .map_err(|e| format!("the planned body of {} is not JSON: {e}", self.path))
    }
}
