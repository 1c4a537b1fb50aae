//! The few raw KV v2 calls serve's own records need: read one with its version, write one
//! with check-and-set. The records hold no secret, so they travel as plain JSON.

use serde_json::{Value, json};
use warden_bao::{Client, Idempotent};
use warden_spec::naming::KvEntry;

use crate::error::{Error, Result};

/// What a check-and-set write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cas {
    /// Written as this version.
    Written(u64),
    /// Someone else wrote first: nothing was written.
    Lost,
}

/// The record at `entry` and its version; `None` when it does not exist (or its newest version
/// was deleted).
pub(crate) async fn read(
    client: &Client,
    env: &str,
    entry: &KvEntry,
) -> Result<Option<(Value, u64)>> {
    let path = entry.data_path();
    let secret = match client.read(&path).await {
        Ok(s) => s,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(source) => {
            relogin_if_denied(client, &source);
            return Err(Error::Bao {
                env: env.to_owned(),
                what: format!("reading {path}"),
                source: Box::new(source),
            });
        }
    };
    let Some(body) = secret.data else {
        return Ok(None);
    };
    let version = body["metadata"]["version"].as_u64().unwrap_or(0);
    match body.get("data") {
        Some(d) if d.is_object() => Ok(Some((d.clone(), version))),
        // A deleted or destroyed newest version: the next write still needs its number.
        _ => Ok(Some((Value::Null, version))),
    }
}

/// Writes `data` at `entry` only if its current version is `cas` (0: it must not exist).
/// Never retried once sent: a repeat would be a second version.
pub(crate) async fn write_cas(
    client: &Client,
    env: &str,
    entry: &KvEntry,
    data: Value,
    cas: u64,
) -> Result<Cas> {
    let path = entry.data_path();
    let body = json!({ "options": { "cas": cas }, "data": data });
    match client.write(&path, &body, Idempotent::No).await {
        Ok(reply) => {
            let version = reply
                .and_then(|s| s.data)
                .and_then(|d| d["version"].as_u64())
                .unwrap_or(cas + 1);
            Ok(Cas::Written(version))
        }
        Err(e) if is_cas_mismatch(&e) => Ok(Cas::Lost),
        Err(source) => {
            relogin_if_denied(client, &source);
            Err(Error::Bao {
                env: env.to_owned(),
                what: format!("writing {path}"),
                source: Box::new(source),
            })
        }
    }
}

/// A long-running process outlives its token: when a client that logs in with its certificate
/// is refused, the token is dropped so the next request (the next renewal, after a job's
/// backoff) logs in afresh. A real policy denial just fails again, at the same bounded pace.
pub(crate) fn relogin_if_denied(client: &Client, e: &warden_bao::Error) {
    if e.is_permission_denied() && client.logs_in_on_demand() {
        tracing::info!("permission denied: logging in again on the next request");
        client.clear_token();
    }
}

fn is_cas_mismatch(e: &warden_bao::Error) -> bool {
    e.status() == Some(400)
        && e.server_errors()
            .iter()
            .any(|m| m.contains("check-and-set parameter did not match"))
}
