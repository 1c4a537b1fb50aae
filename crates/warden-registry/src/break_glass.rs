//! Break-glass tokens: a root token generated from custodians' shares is traded at once for an
//! orphan token with the stated policy and a hard TTL, and revoked in the same call; the record
//! (who, why, when, until when, the token's accessor) goes to the registry, where posture and
//! evidence show it.
//!
//! Why an orphan with `explicit_max_ttl`: a child of the generated root token would die with
//! it (revoking root revokes its children), and a renewable token could outlive the incident.
//! The token itself is returned to the caller only; the record holds its accessor.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use warden_bao::{Client, Idempotent, OrphanToken};
use warden_spec::naming;

use crate::posture::rfc3339;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A request failed.
    #[error("{env}: {action}: {source}")]
    Bao {
        /// Environment.
        env: String,
        /// What was being done.
        action: String,
        /// The client's error (boxed: it is large and rare).
        #[source]
        source: Box<warden_bao::Error>,
    },
    /// The break-glass token exists but the generated root token could not be revoked.
    #[error("{env}: the generated root token (accessor {accessor}) could not be revoked: {source}")]
    RootNotRevoked {
        /// Environment.
        env: String,
        /// Its accessor: revoke it with `bao token revoke -accessor`.
        accessor: String,
        /// Why.
        #[source]
        source: Box<warden_bao::Error>,
    },
    /// No record with that id.
    #[error("{env}: no break-glass record `{id}`")]
    UnknownRecord {
        /// Environment.
        env: String,
        /// The id asked for.
        id: String,
    },
}

fn bao(env: &str, action: impl Into<String>) -> impl FnOnce(warden_bao::Error) -> Error {
    let (env, action) = (env.to_owned(), action.into());
    move |source| Error::Bao {
        env,
        action,
        source: Box::new(source),
    }
}

/// What is asked for.
#[derive(Debug, Clone)]
pub struct Request {
    /// Environment.
    pub env: String,
    /// Why (an incident reference).
    pub reason: String,
    /// How long the token lives, at most.
    pub ttl: Duration,
    /// Its policies.
    pub policies: Vec<String>,
    /// The custodians whose shares opened the glass.
    pub custodians: Vec<String>,
}

/// One break-glass token's record in the registry (`warden/break-glass/<id>`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// Id (`<opened_at>-<accessor prefix>`).
    pub id: String,
    /// Why.
    pub reason: String,
    /// Whose shares.
    pub custodians: Vec<String>,
    /// Policies of the token.
    pub policies: Vec<String>,
    /// Opened (Unix seconds).
    pub opened_at: i64,
    /// Expires by itself (Unix seconds).
    pub expires_at: i64,
    /// Accessor of the break-glass token.
    pub accessor: String,
    /// Accessor of the generated root token, revoked by the same command.
    pub root_accessor: String,
    /// Closed early (Unix seconds).
    #[serde(default)]
    pub closed_at: Option<i64>,
}

impl Record {
    /// `active` (usable), `closed` (revoked early) or `expired`.
    pub fn state(&self, now: i64) -> &'static str {
        if self.closed_at.is_some() {
            "closed"
        } else if now >= self.expires_at {
            "expired"
        } else {
            "active"
        }
    }

    /// Opened, RFC 3339.
    pub fn opened_at_utc(&self) -> String {
        rfc3339(self.opened_at)
    }

    /// Expiry, RFC 3339.
    pub fn expires_at_utc(&self) -> String {
        rfc3339(self.expires_at)
    }
}

/// A token handed out, and its record. `Debug` hides the token.
pub struct Opened {
    /// The token: give it to the person through an owner-only file, never print it.
    pub token: SecretString,
    /// Its record.
    pub record: Record,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("token", &"...")
            .field("record", &self.record)
            .finish()
    }
}

/// Trades `root` (a client holding a freshly generated root token) for an orphan token per
/// `req`, records it, and revokes the root token, all in this call.
pub async fn open(root: &Client, req: &Request, now: i64) -> Result<Opened, Error> {
    let env = req.env.as_str();
    let result = match root.token_lookup_self().await {
        Ok(me) => trade(root, req, now, &me.accessor)
            .await
            .map(|o| (o, me.accessor)),
        Err(e) => Err(bao(env, "look up the generated root token")(e)),
    };
    // Revoke root whatever happened: it must not outlive this command.
    let revoked = root.token_revoke_self().await;
    root.clear_token();
    let (opened, root_accessor) = result?;
    revoked.map_err(|source| Error::RootNotRevoked {
        env: env.to_owned(),
        accessor: root_accessor,
        source: Box::new(source),
    })?;
    Ok(opened)
}

async fn trade(
    root: &Client,
    req: &Request,
    now: i64,
    root_accessor: &str,
) -> Result<Opened, Error> {
    let env = req.env.as_str();
    let mut meta = BTreeMap::new();
    meta.insert("reason".to_owned(), req.reason.clone());
    meta.insert("custodians".to_owned(), req.custodians.join(","));
    meta.insert("warden".to_owned(), "break-glass".to_owned());
    let spec = OrphanToken {
        policies: &req.policies,
        ttl: req.ttl,
        display_name: "break-glass",
        meta,
    };
    let auth = root
        .token_create_orphan(&spec)
        .await
        .map_err(bao(env, "create the break-glass token"))?;
    let accessor = auth.accessor.clone();
    // The server caps the TTL at the mount's max (32 days by default): record what it granted,
    // not what was asked, so status never shows a token alive after the server has ended it.
    let granted = match auth.lease_duration {
        0 => req.ttl.as_secs(),
        d => d.min(req.ttl.as_secs().max(1)),
    };
    let ttl = i64::try_from(granted).unwrap_or(i64::MAX);
    let record = Record {
        id: format!("{now}-{}", accessor.chars().take(8).collect::<String>()),
        reason: req.reason.clone(),
        custodians: req.custodians.clone(),
        policies: req.policies.clone(),
        opened_at: now,
        expires_at: now.saturating_add(ttl),
        accessor,
        root_accessor: root_accessor.to_owned(),
        closed_at: None,
    };
    if let Err(e) = write(root, env, &record).await {
        // An unrecorded break-glass token must not exist.
        let _ = root.token_revoke_accessor(&record.accessor).await;
        return Err(e);
    }
    Ok(Opened {
        token: auth.client_token.clone(),
        record,
    })
}

async fn write(client: &Client, env: &str, record: &Record) -> Result<(), Error> {
    let entry = naming::break_glass_record(&record.id);
    client
        .ensure_secrets_engine(naming::META_MOUNT, "kv", &warden_bao::MountOptions::kv_v2())
        .await
        .map_err(bao(env, "mount Warden's registry"))?;
    let body = serde_json::json!({ "data": record });
    client
        .write(&entry.data_path(), &body, Idempotent::Yes)
        .await
        .map_err(bao(env, format!("record the break-glass token at {entry}")))?;
    Ok(())
}

/// Every break-glass record of the environment, oldest first. An unreadable folder (no
/// registry yet) is empty.
pub async fn list(client: &Client, env: &str) -> Result<Vec<Record>, Error> {
    let folder = naming::break_glass_records();
    let keys = match client.list(&folder.metadata_path()).await {
        Ok(k) => k,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => return Err(bao(env, format!("list {folder}"))(e)),
    };
    let mut out = Vec::new();
    for key in keys.iter().filter(|k| !k.ends_with('/')) {
        let entry = naming::break_glass_record(key);
        let secret = client
            .read(&entry.data_path())
            .await
            .map_err(bao(env, format!("read {entry}")))?;
        let data = secret
            .data
            .and_then(|d| d.get("data").cloned())
            .unwrap_or_default();
        if let Ok(r) = serde_json::from_value::<Record>(data) {
            out.push(r);
        }
    }
    out.sort_by_key(|r| r.opened_at);
    Ok(out)
}

/// Ends break-glass early: revokes every token the server still honours (or the one with `id`),
/// by accessor, and records when. Whether a token lives is the server's answer, not this
/// host's clock. Returns the records closed.
pub async fn close(
    client: &Client,
    env: &str,
    id: Option<&str>,
    now: i64,
) -> Result<Vec<Record>, Error> {
    let records = list(client, env).await?;
    if let Some(id) = id
        && !records.iter().any(|r| r.id == id)
    {
        return Err(Error::UnknownRecord {
            env: env.to_owned(),
            id: id.to_owned(),
        });
    }
    let mut closed = Vec::new();
    for mut r in to_close(records, id) {
        // Ask the server whether the token still lives: this host's clock does not decide, and
        // revoking an accessor that has expired still answers success, so the revoke alone
        // cannot tell a live token from a dead one.
        let live = match client.token_lookup_accessor(&r.accessor).await {
            Ok(_) => true,
            Err(e) if gone(&e) => false,
            Err(e) => return Err(bao(env, format!("look up break-glass token {}", r.id))(e)),
        };
        if live {
            match client.token_revoke_accessor(&r.accessor).await {
                Ok(()) => {}
                Err(e) if gone(&e) => {}
                Err(e) => return Err(bao(env, format!("revoke break-glass token {}", r.id))(e)),
            }
        } else if r.state(now) != "active" {
            // It expired by itself and keeps its `expired` state.
            continue;
        }
        r.closed_at = Some(now);
        write(client, env, &r).await?;
        closed.push(r);
    }
    Ok(closed)
}

/// OpenBao's answer for an accessor whose token no longer exists (expired or revoked): 400, or
/// 403 "invalid accessor".
fn gone(e: &warden_bao::Error) -> bool {
    e.status() == Some(400)
        || e.is_not_found()
        || (e.status() == Some(403)
            && e.server_errors()
                .iter()
                .any(|m| m.contains("invalid accessor")))
}

/// The records `close` revokes: every one not closed yet (only `id`, if given), *whatever this
/// host's clock says about expiry*. The record's `expires_at` was computed on the clock of the
/// host that opened it; a host whose clock runs ahead would otherwise skip a token the server
/// still honours and report nothing to close. Revoking an expired token is harmless (OpenBao
/// answers "invalid accessor").
fn to_close(records: Vec<Record>, id: Option<&str>) -> Vec<Record> {
    records
        .into_iter()
        .filter(|r| r.closed_at.is_none() && id.is_none_or(|id| id == r.id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(closed_at: Option<i64>) -> Record {
        Record {
            id: "100-abcdefgh".to_owned(),
            reason: "INC-1".to_owned(),
            custodians: vec!["alice".to_owned(), "bob".to_owned()],
            policies: vec!["root".to_owned()],
            opened_at: 100,
            expires_at: 160,
            accessor: "acc".to_owned(),
            root_accessor: "root-acc".to_owned(),
            closed_at,
        }
    }

    #[test]
    fn a_record_is_active_until_it_expires_or_is_closed() {
        assert_eq!(record(None).state(100), "active");
        assert_eq!(record(None).state(159), "active");
        assert_eq!(record(None).state(160), "expired");
        assert_eq!(record(Some(120)).state(130), "closed");
    }

    /// Red-team regression: with this host's clock ahead of the server's, a live token looked
    /// expired and `close` skipped it, leaving it usable while reporting nothing to close.
    #[test]
    fn close_revokes_a_record_this_clock_thinks_expired() {
        let skewed_now = 10_000;
        assert_eq!(record(None).state(skewed_now), "expired");
        let picked = to_close(vec![record(None), record(Some(120))], None);
        assert_eq!(picked, vec![record(None)], "the closed one is left alone");
        assert_eq!(to_close(vec![record(None)], Some("100-abcdefgh")).len(), 1);
        assert!(to_close(vec![record(None)], Some("other")).is_empty());
    }

    #[test]
    fn opened_debug_hides_the_token() {
        let o = Opened {
            token: SecretString::from("s.BREAKGLASS".to_owned()),
            record: record(None),
        };
        assert!(!format!("{o:?}").contains("BREAKGLASS"));
    }
}
