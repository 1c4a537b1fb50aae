//! `warden secret get APP NAME [--version N] [--reveal]`: a version's keys and metadata, and
//! its values only when asked with `--reveal`.

use std::process::ExitCode;

use serde::Serialize;
use warden_bao::{ChangeRecord, KvData};

use super::{Engine, GetArgs, Location, explain, locate, short_time, spec_args};
use crate::output::Output;

#[derive(Debug, Serialize)]
struct GetReport {
    #[serde(flatten)]
    location: Location,
    /// KV v2: the version shown, and the current one.
    version: Option<u64>,
    current_version: Option<u64>,
    created_time: Option<String>,
    /// Who the change record names (`None`: no record, e.g. written outside Warden).
    written_by: Option<String>,
    keys: Vec<String>,
    /// Only with `--reveal`.
    #[serde(skip_serializing_if = "Option::is_none")]
    values: Option<serde_json::Map<String, serde_json::Value>>,
}

pub(super) async fn run(args: GetArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let engine = if args.kv1 { Engine::Kv1 } else { Engine::Kv2 };
    let (session, loc) = locate(&args.secret, engine, "secret get", out)?;
    let hint_args = spec_args(&args.secret.access);
    let (data, version, current, created, by) = match engine {
        Engine::Kv2 => {
            let kv = session.client.kv2(&loc.mount);
            let v = kv
                .read(&loc.path, args.version)
                .await
                .map_err(|e| explain(e, &loc, &hint_args))?;
            // The metadata names the current version and holds the change records; a token
            // that may read the data but not the metadata still gets the data.
            let meta = match kv.metadata(&loc.path).await {
                Ok(m) => Some(m),
                Err(e) if e.is_permission_denied() => None,
                Err(e) => return Err(explain(e, &loc, &hint_args)),
            };
            let by = meta
                .as_ref()
                .and_then(|m| ChangeRecord::from_metadata(&m.custom_metadata, v.meta.version))
                .map(|r| r.by);
            (
                v.data,
                Some(v.meta.version),
                meta.map(|m| m.current_version),
                Some(v.meta.created_time),
                by,
            )
        }
        Engine::Kv1 => {
            let data = session
                .client
                .kv1(&loc.mount)
                .read(&loc.path)
                .await
                .map_err(|e| explain(e, &loc, &hint_args))?;
            (data, None, None, None, None)
        }
    };
    if args.reveal {
        out.warn(format!("printing the values of {} (--reveal)", loc.full()));
    }
    let report = GetReport {
        location: loc,
        version,
        current_version: current,
        created_time: created,
        written_by: by,
        keys: data.keys().map(str::to_owned).collect(),
        values: args.reveal.then(|| reveal(&data)),
    };
    out.emit(&report, || render(&report))?;
    Ok(ExitCode::SUCCESS)
}

/// The values as JSON, for `--reveal` only.
fn reveal(data: &KvData) -> serde_json::Map<String, serde_json::Value> {
    data.iter()
        .map(|(k, v)| (k.to_owned(), v.expose().clone()))
        .collect()
}

fn render(r: &GetReport) -> String {
    let l = &r.location;
    let mut s = format!("{}: {}", l.env, l.full());
    if let Some(v) = r.version {
        s.push_str(&format!("  version {v}"));
        if let Some(c) = r.current_version {
            s.push_str(&format!(" of {c}"));
        }
    }
    if let Some(t) = &r.created_time {
        s.push_str(&format!(", written {}", short_time(t)));
    }
    if r.version.is_some() {
        s.push_str(&format!(
            " by {}",
            r.written_by.as_deref().unwrap_or("unknown")
        ));
    }
    s.push('\n');
    match &r.values {
        None => {
            s.push_str(&format!("  keys  {}\n", r.keys.join(", ")));
            s.push_str("  (values hidden; --reveal prints them)\n");
        }
        Some(values) => {
            for (k, v) in values {
                let text = match v {
                    serde_json::Value::String(t) => t.clone(),
                    other => other.to_string(),
                };
                s.push_str(&format!("{k}={text}\n"));
            }
        }
    }
    s
}
