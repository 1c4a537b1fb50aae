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
    let mut owned = plan.owned.clone();
    owned.extend(
        plan.changes
            .iter()
            .filter(|c| c.action == Action::Create)
            .map(|c| c.id.clone()),
    );
    let mut recorded = plan.owned.clone();

    // Phases: everything of a phase finishes before the next starts (roles need their mounts
    // and policies). Deletes were sorted last, children first.
    let mut phases: Vec<Vec<Change>> = Vec::new();
    let mut last_key = None;
    for c in &plan.changes {
        let key = (c.action == Action::Delete, c.kind.phase());
        if last_key != Some(key) {
            phases.push(Vec::new());
            last_key = Some(key);
        }
        phases.last_mut().expect("just pushed").push(c.clone());
    }
    for phase in phases {
        let mounts_phase = phase
            .first()
            .is_some_and(|c| c.kind.phase() == 0 && c.action != Action::Delete);
        if !mounts_phase && owned != recorded {
            owned::write(client, &plan.env, &owned).await?;
            report.writes += 1;
            recorded = owned.clone();
        }
        let results = crate::bounded::run(phase, concurrency, {
            let client = client.clone();
            let done = done.clone();
            let progress = progress.clone();
            move |change: Change| {
                let client = client.clone();
                let done = done.clone();
                let progress = progress.clone();
                async move {
                    let r = execute(&client, &change).await;
                    progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
                    (change, r)
                }
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
                Err(e) => failures.push((change.id.clone(), e.to_string())),
            }
        }
        if !failures.is_empty() {
            break; // later phases depend on this one
        }
    }
    if owned != recorded {
        owned::write(client, &plan.env, &owned).await?;
        report.writes += 1;
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

async fn execute(client: &Client, change: &Change) -> Result<(), warden_bao::Error> {
    match (change.action, change.kind) {
        (Action::Delete, _) => client.delete(&change.path).await,
        // Enabling a mount twice fails, so it is never retried once sent.
        (_, Kind::Mount | Kind::Auth) => client
            .write(&change.path, &change.body, Idempotent::No)
            .await
            .map(drop),
        _ => client
            .write(&change.path, &change.body, Idempotent::Yes)
            .await
            .map(drop),
    }
}
