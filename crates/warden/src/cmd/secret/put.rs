//! `warden secret put APP NAME`: write a new version, then record who wrote it and which keys
//! changed. Prints the version and key names only.
//!
//! The write always carries check-and-set: `--cas N` when given, else the version read just
//! before, so the recorded key changes are exactly what this write changed and a concurrent
//! write is refused rather than overwritten. Identical content writes nothing.

use std::process::ExitCode;

use serde::Serialize;
use warden_bao::{ChangeRecord, KeyChanges, KvData, KvError};

use super::{Engine, Location, PutArgs, explain, locate, spec_args};
use crate::hint::HintExt;
use crate::input;
use crate::output::Output;

#[derive(Debug, Serialize)]
struct PutReport {
    #[serde(flatten)]
    location: Location,
    /// The version written (KV v2), or `None` (KV v1, or nothing written).
    version: Option<u64>,
    /// The version that was current before.
    previous_version: Option<u64>,
    /// Whether anything was written (identical content writes nothing).
    written: bool,
    keys: KeyChanges,
    /// Who the change record names; `None` when it could not be recorded.
    recorded_by: Option<String>,
}

pub(super) async fn run(args: PutArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let engine = if args.kv1 { Engine::Kv1 } else { Engine::Kv2 };
    // The value is read before anything is contacted: a bad file fails fast, touching nothing.
    let data = input::read_secret(args.from_file.as_deref())?;
    let (session, loc) = locate(&args.secret, engine, "secret put", out)?;
    let hint_args = spec_args(&args.secret.access);
    let report = match engine {
        Engine::Kv2 => put_v2(&session, loc, &data, args.cas, &hint_args, out).await?,
        Engine::Kv1 => put_v1(&session, loc, &data, &hint_args).await?,
    };
    out.emit(&report, || render(&report))?;
    Ok(ExitCode::SUCCESS)
}

async fn put_v2(
    session: &crate::session::Session,
    loc: Location,
    data: &KvData,
    cas: Option<u64>,
    hint_args: &str,
    out: &Output,
) -> anyhow::Result<PutReport> {
    let kv = session.client.kv2(&loc.mount);
    let current = match kv.metadata(&loc.path).await {
        Ok(m) => m.current_version,
        Err(KvError::NotFound { .. }) => 0,
        Err(e) => return Err(explain(e, &loc, hint_args)),
    };
    if let Some(expected) = cas
        && expected != current
    {
        return Err(anyhow::anyhow!(
            "{}: --cas {expected} but the current version is {current}; nothing was written",
            loc.full()
        ))
        .with_hint(|| {
            format!(
                "see what changed with `warden secret history {} {} {hint_args}`",
                loc.app, loc.secret
            )
        });
    }
    let previous = match current {
        0 => KvData::new(),
        v => match kv.read(&loc.path, Some(v)).await {
            Ok(p) => p.data,
            // A deleted or destroyed current version holds nothing to compare with.
            Err(KvError::VersionDeleted { .. } | KvError::VersionDestroyed { .. }) => KvData::new(),
            Err(e) => return Err(explain(e, &loc, hint_args)),
        },
    };
    let keys = previous.diff(data);
    if keys.is_empty() && current > 0 {
        return Ok(PutReport {
            location: loc,
            version: Some(current),
            previous_version: Some(current),
            written: false,
            keys,
            recorded_by: None,
        });
    }
    let written = kv
        .write(&loc.path, data, Some(current))
        .await
        .map_err(|e| explain(e, &loc, hint_args))?;
    let recorded_by = record(session, &loc, written.version, "put", None, &keys, out).await;
    Ok(PutReport {
        location: loc,
        version: Some(written.version),
        previous_version: (current > 0).then_some(current),
        written: true,
        keys,
        recorded_by,
    })
}

async fn put_v1(
    session: &crate::session::Session,
    loc: Location,
    data: &KvData,
    hint_args: &str,
) -> anyhow::Result<PutReport> {
    let kv = session.client.kv1(&loc.mount);
    let previous = match kv.read(&loc.path).await {
        Ok(p) => p,
        Err(KvError::NotFound { .. }) => KvData::new(),
        Err(e) => return Err(explain(e, &loc, hint_args)),
    };
    let keys = previous.diff(data);
    let changed = !keys.is_empty();
    if changed {
        kv.write(&loc.path, data)
            .await
            .map_err(|e| explain(e, &loc, hint_args))?;
    }
    Ok(PutReport {
        location: loc,
        version: None,
        previous_version: None,
        written: changed,
        keys,
        recorded_by: None,
    })
}

/// Records the change in the secret's metadata. The data is already written, so a failure
/// here is a warning, not an error: history will show the version's author as unknown.
pub(super) async fn record(
    session: &crate::session::Session,
    loc: &Location,
    version: u64,
    op: &str,
    from: Option<u64>,
    keys: &KeyChanges,
    out: &Output,
) -> Option<String> {
    let by = session
        .whoami()
        .await
        .unwrap_or_else(|| "unknown".to_owned());
    let record = ChangeRecord::new(&by, op, from, keys);
    match session
        .client
        .kv2(&loc.mount)
        .record_change(&loc.path, version, &record)
        .await
    {
        Ok(()) => Some(record.by),
        Err(e) => {
            let why = if e.is_permission_denied() {
                format!(
                    "this token may not update {}/metadata/{}",
                    loc.mount, loc.path
                )
            } else {
                e.to_string()
            };
            out.warn(format!(
                "version {version} is written, but who wrote it could not be recorded ({why}); history will show it as unknown (the audit log has it)"
            ));
            None
        }
    }
}

fn render(r: &PutReport) -> String {
    let l = &r.location;
    let what = match (r.written, r.version, r.previous_version) {
        (false, Some(v), _) => format!("unchanged: version {v} already has this content"),
        (false, None, _) => "unchanged: it already has this content".to_owned(),
        (true, Some(v), Some(p)) => format!("version {v} written (was {p})"),
        (true, Some(v), None) => format!("version {v} written (new secret)"),
        (true, None, _) => "written (KV v1 keeps no versions)".to_owned(),
    };
    let mut s = format!("{}: {}: {what}\n", l.env, l.full());
    if r.written {
        s.push_str(&format!("  keys  {}\n", r.keys));
    }
    if let Some(by) = &r.recorded_by {
        s.push_str(&format!(
            "  by    {by} (recorded in the secret's metadata)\n"
        ));
    }
    s
}
