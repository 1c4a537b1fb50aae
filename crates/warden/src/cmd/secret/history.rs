//! `warden secret history APP NAME`: every version KV v2 still keeps — when it was written,
//! by whom, and which keys it changed. Never a value.
//!
//! "When" comes from KV v2 itself. "Who" and "which keys" come from Warden's change records;
//! for a version without one (written outside Warden) the writer is unknown and the key
//! changes are computed by comparing it with the version before, when both can still be read.

use std::process::ExitCode;

use serde::Serialize;
use warden_bao::{ChangeRecord, KeyChanges, Kv2, KvData, KvMetadata};

use super::{Engine, HistoryArgs, Location, explain, locate, short_time, spec_args};
use crate::output::Output;

/// At most this many versions without a record get their key changes computed (each costs
/// a read).
const MAX_COMPUTED: usize = 20;

#[derive(Debug, Serialize)]
struct HistoryReport {
    #[serde(flatten)]
    location: Location,
    current_version: u64,
    /// Newest first.
    versions: Vec<Entry>,
}

#[derive(Debug, Serialize)]
struct Entry {
    version: u64,
    created_time: String,
    /// `current`, `kept`, `deleted` or `destroyed`.
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    deletion_time: Option<String>,
    /// The writer a change record names; `None`: unknown (written outside Warden).
    by: Option<String>,
    /// `put`, `rollback`, ... (from the record).
    op: Option<String>,
    /// For a rollback: the version restored.
    #[serde(skip_serializing_if = "Option::is_none")]
    restored_from: Option<u64>,
    /// Key names added, changed, removed; `None` when neither recorded nor computable.
    keys: Option<KeyChanges>,
    /// `recorded`, `computed` or `unknown`.
    keys_source: &'static str,
    /// Key names the record had to leave out (it is size-limited).
    #[serde(skip_serializing_if = "is_zero")]
    keys_omitted: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

pub(super) async fn run(args: HistoryArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let (session, loc) = locate(&args.secret, Engine::Kv2, "secret history", out)?;
    let hint_args = spec_args(&args.secret.access);
    let kv = session.client.kv2(&loc.mount);
    let meta = kv
        .metadata(&loc.path)
        .await
        .map_err(|e| explain(e, &loc, &hint_args))?;
    let versions = entries(&kv, &loc.path, &meta).await;
    let report = HistoryReport {
        location: loc,
        current_version: meta.current_version,
        versions,
    };
    out.emit(&report, || render(&report))?;
    Ok(ExitCode::SUCCESS)
}

async fn entries(kv: &Kv2<'_>, path: &str, meta: &KvMetadata) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut computed = 0;
    for (&version, state) in meta.versions.iter().rev() {
        let record = ChangeRecord::from_metadata(&meta.custom_metadata, version);
        let (keys, source, omitted) = match &record {
            Some(r) => (Some(r.keys()), "recorded", r.more),
            None if computed < MAX_COMPUTED && state.readable() => {
                computed += 1;
                match computed_changes(kv, path, meta, version).await {
                    Some(k) => (Some(k), "computed", 0),
                    None => (None, "unknown", 0),
                }
            }
            None => (None, "unknown", 0),
        };
        out.push(Entry {
            version,
            created_time: state.created_time.clone(),
            state: if state.destroyed {
                "destroyed"
            } else if state.deletion_time.is_some() {
                "deleted"
            } else if version == meta.current_version {
                "current"
            } else {
                "kept"
            },
            deletion_time: state.deletion_time.clone(),
            by: record.as_ref().map(|r| r.by.clone()),
            op: record.as_ref().map(|r| r.op.clone()),
            restored_from: record.as_ref().and_then(|r| r.from),
            keys,
            keys_source: source,
            keys_omitted: omitted,
        });
    }
    out
}

/// The key changes of `version` against the version before it (all keys added for the first
/// version); `None` when either cannot be read (deleted, destroyed, pruned, or denied).
async fn computed_changes(
    kv: &Kv2<'_>,
    path: &str,
    meta: &KvMetadata,
    version: u64,
) -> Option<KeyChanges> {
    let this = kv.read(path, Some(version)).await.ok()?.data;
    let before = match version.checked_sub(1).filter(|v| *v > 0) {
        None => KvData::new(),
        Some(prev) if meta.versions.get(&prev).is_some_and(|s| s.readable()) => {
            kv.read(path, Some(prev)).await.ok()?.data
        }
        Some(_) => return None,
    };
    Some(before.diff(&this))
}

fn render(r: &HistoryReport) -> String {
    let l = &r.location;
    let mut s = format!(
        "{}: {} (current version {})\n",
        l.env,
        l.full(),
        r.current_version
    );
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    t.set_header(vec!["VERSION", "WRITTEN", "STATE", "BY", "CHANGE", "KEYS"]);
    for e in &r.versions {
        let change = match (&e.op, e.restored_from) {
            (Some(op), Some(from)) => format!("{op} to v{from}"),
            (Some(op), None) => op.clone(),
            (None, _) => "-".to_owned(),
        };
        let keys = match (&e.keys, e.keys_source) {
            (Some(k), "computed") => format!("{k} (computed)"),
            (Some(k), _) if e.keys_omitted > 0 => format!("{k} (+{} more)", e.keys_omitted),
            (Some(k), _) => k.to_string(),
            (None, _) => "?".to_owned(),
        };
        t.add_row(vec![
            format!("v{}", e.version),
            short_time(&e.created_time),
            e.state.to_owned(),
            e.by.clone().unwrap_or_else(|| "unknown".to_owned()),
            change,
            keys,
        ]);
    }
    s.push_str(&t.to_string());
    s.push('\n');
    if r.versions.iter().any(|e| e.by.is_none()) {
        s.push_str(
            "unknown: written outside Warden (no change record); the audit log has the writer\n",
        );
    }
    s
}
