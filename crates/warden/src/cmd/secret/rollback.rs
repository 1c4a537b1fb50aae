//! `warden secret rollback APP NAME --to-version N`: write the content of version N as a new
//! version, after a preview of what changes (key names only) and a confirmation.
//!
//! Nothing is rewritten in place: the bad version stays in history and the restored content
//! becomes the newest version, written with check-and-set against the version the preview
//! showed, so a write that lands between preview and confirmation is not overwritten.

use std::process::ExitCode;

use serde::Serialize;
use warden_bao::{ChangeRecord, KeyChanges, KvError};

use super::put::record;
use super::{Engine, Location, RollbackArgs, explain, locate, short_time, spec_args};
use crate::hint::HintExt;
use crate::input::{self, Confirmation};
use crate::output::Output;

#[derive(Debug, Serialize)]
struct RollbackReport {
    #[serde(flatten)]
    location: Location,
    /// The version whose content is restored.
    restored_from: u64,
    /// The version current before.
    previous_version: u64,
    /// The new version (`None` when nothing was written).
    version: Option<u64>,
    /// `written`, `unchanged` (the current version already has that content) or `dry-run`.
    outcome: &'static str,
    /// Keys the rollback adds, changes and removes relative to the current version.
    keys: KeyChanges,
    recorded_by: Option<String>,
}

pub(super) async fn run(args: RollbackArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let (session, loc) = locate(&args.secret, Engine::Kv2, "secret rollback", out)?;
    let hint_args = spec_args(&args.secret.access);
    let kv = session.client.kv2(&loc.mount);
    let explain = |e| explain(e, &loc, &hint_args);
    let meta = kv.metadata(&loc.path).await.map_err(explain)?;
    let current = meta.current_version;
    let target = args.to_version;
    if target == current {
        return Err(anyhow::anyhow!(
            "{}: version {target} is already the current version",
            loc.full()
        ))
        .with_hint(|| {
            format!(
                "name an earlier version; `warden secret history {} {} {hint_args}` lists them",
                loc.app, loc.secret
            )
        });
    }
    let old = kv.read(&loc.path, Some(target)).await.map_err(explain)?;
    let now = match kv.read(&loc.path, Some(current)).await {
        Ok(v) => v.data,
        Err(KvError::VersionDeleted { .. } | KvError::VersionDestroyed { .. }) => {
            warden_bao::KvData::new()
        }
        Err(e) => return Err(explain(e)),
    };
    let keys = now.diff(&old.data);
    let mut report = RollbackReport {
        location: loc,
        restored_from: target,
        previous_version: current,
        version: None,
        outcome: "unchanged",
        keys,
        recorded_by: None,
    };
    if report.keys.is_empty() {
        out.emit(&report, || render(&report))?;
        return Ok(ExitCode::SUCCESS);
    }
    let by_of = |v: u64| {
        ChangeRecord::from_metadata(&meta.custom_metadata, v)
            .map_or_else(|| "unknown".to_owned(), |r| r.by)
    };
    let created_of = |v: u64| {
        meta.versions
            .get(&v)
            .map(|s| short_time(&s.created_time))
            .unwrap_or_default()
    };
    out.stderr_block(&format!(
        "Rollback of {} in {}:\n  current  v{current}  written {} by {}\n  restore  v{target}  written {} by {}\n  result   v{} with the content of v{target}; keys: {}\n",
        report.location.full(),
        report.location.env,
        created_of(current),
        by_of(current),
        created_of(target),
        by_of(target),
        current + 1,
        report.keys
    ));
    if args.dry_run {
        report.outcome = "dry-run";
        out.emit(&report, || render(&report))?;
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes {
        confirm(out, current + 1)?;
    }
    let l = &report.location;
    let written = kv
        .rollback(&l.path, target, current)
        .await
        .map_err(|e| super::explain(e, l, &hint_args))?;
    report.recorded_by = record(
        &session,
        l,
        written.version,
        "rollback",
        Some(target),
        &report.keys,
        out,
    )
    .await;
    report.version = Some(written.version);
    report.outcome = "written";
    out.emit(&report, || render(&report))?;
    Ok(ExitCode::SUCCESS)
}

/// Asks on the terminal; refuses when nobody can answer (stdin not a terminal, or JSON mode
/// where the preview is not shown).
fn confirm(out: &Output, new_version: u64) -> anyhow::Result<()> {
    input::confirm(
        out,
        &format!("Write v{new_version}?"),
        &Confirmation {
            action: "roll back",
            shown: "preview",
            noun: "rollback",
            untouched: "nothing was written",
        },
    )
}

fn render(r: &RollbackReport) -> String {
    let l = &r.location;
    match (r.outcome, r.version) {
        ("written", Some(v)) => {
            let mut s = format!(
                "{}: {}: version {v} written with the content of version {} (was {})\n  keys  {}\n",
                l.env,
                l.full(),
                r.restored_from,
                r.previous_version,
                r.keys
            );
            if let Some(by) = &r.recorded_by {
                s.push_str(&format!(
                    "  by    {by} (recorded in the secret's metadata)\n"
                ));
            }
            s
        }
        ("dry-run", _) => format!("{}: {}: dry run; nothing was written\n", l.env, l.full()),
        _ => format!(
            "{}: {}: version {} already has the content of version {}; nothing was written\n",
            l.env,
            l.full(),
            r.previous_version,
            r.restored_from
        ),
    }
}
