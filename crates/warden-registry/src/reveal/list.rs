//! What can still be read about a purpose's reveals: metadata only. Each record's token state
//! comes from `auth/token/lookup-accessor` (the accessor cannot open the token): alive means
//! pending; gone before its expiry means opened (or revoked); gone after it means expired —
//! whether it was opened before expiring cannot be told afterwards.

use serde::Serialize;
use serde_json::json;
use warden_bao::{Client, Idempotent};
use warden_spec::rules::{Observed, judge};
use warden_spec::{Spec, Status};

use super::error::RevealError;
use super::record::RevealRecord;
use super::select::{covered_in, reveal_purpose};

/// Where a wrapping token stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RevealState {
    /// Alive: it can still be opened, once.
    Pending,
    /// Gone before its expiry: opened (or revoked).
    Opened,
    /// Gone after its expiry.
    Expired,
    /// The operator token may not look tokens up by accessor.
    Unknown,
}

impl RevealState {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Opened => "opened",
            Self::Expired => "expired",
            Self::Unknown => "unknown",
        }
    }
}

/// One record with its token's state.
#[derive(Debug, Clone, Serialize)]
pub struct RevealEntry {
    /// The record.
    #[serde(flatten)]
    pub record: RevealRecord,
    /// The token's state.
    pub state: RevealState,
}

/// One credential of the purpose: the latest reveal judged under the purpose's rotation.
#[derive(Debug, Clone, Serialize)]
pub struct CredentialSummary {
    /// Credential reference.
    pub credential: String,
    /// Consuming identity.
    pub identity: String,
    /// Status of the latest reveal under the purpose's rules (`unknown`: never revealed).
    pub status: Status,
    /// Why.
    pub reason: String,
    /// When the latest reveal was minted (Unix seconds).
    pub last_minted_at: Option<i64>,
    /// When the next one is due.
    pub rotation_due_at: Option<i64>,
}

/// A purpose's reveals: the contract's metadata, each credential's status, each record.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    /// Purpose id.
    pub purpose: String,
    /// Environment.
    pub env: String,
    /// Owner.
    pub owner: String,
    /// The evidence component that proves it (the evidence link).
    pub evidence: String,
    /// Whether the purpose is revoked.
    pub revoked: bool,
    /// Judged at (Unix seconds).
    pub at: i64,
    /// Per credential.
    pub credentials: Vec<CredentialSummary>,
    /// Every record, oldest first.
    pub reveals: Vec<RevealEntry>,
    /// Record keys that could not be read as records.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
}

/// The state of the wrapping token with `accessor`, which expires at `expires_at`.
pub async fn token_state(
    client: &Client,
    accessor: &str,
    expires_at: i64,
    now: i64,
) -> Result<RevealState, warden_bao::Error> {
    let looked = client
        .write(
            "auth/token/lookup-accessor",
            &json!({ "accessor": accessor }),
            Idempotent::Yes,
        )
        .await;
    match looked {
        Ok(_) => Ok(RevealState::Pending),
        // An accessor whose token is gone is "invalid accessor" (400), or 404 on some
        // versions.
        Err(e) if matches!(e.status(), Some(400 | 404)) => Ok(if now < expires_at {
            RevealState::Opened
        } else {
            RevealState::Expired
        }),
        Err(e) if e.is_permission_denied() => Ok(RevealState::Unknown),
        Err(e) => Err(e),
    }
}

/// Every reveal of `purpose` in `env` (the client's server), with states and the purpose's
/// rotation status at `now`.
pub async fn list(
    client: &Client,
    spec: &Spec,
    env: &str,
    purpose: &str,
    now: i64,
) -> Result<Listing, RevealError> {
    let p = reveal_purpose(spec, purpose)?;
    let read_err = |path: String| {
        let env = env.to_owned();
        move |source| RevealError::Read {
            env,
            path,
            source: Box::new(source),
        }
    };
    let dir = RevealRecord::kv_metadata_dir(purpose);
    let keys = client.list(&dir).await.map_err(read_err(dir.clone()))?;
    let mut reveals = Vec::new();
    let mut unreadable = Vec::new();
    for key in keys {
        let path = RevealRecord::data_path(purpose, &key);
        let secret = client.read(&path).await.map_err(read_err(path.clone()))?;
        let record = secret
            .data
            .and_then(|d| d.get("data").cloned())
            .and_then(|d| serde_json::from_value::<RevealRecord>(d).ok());
        let Some(record) = record else {
            unreadable.push(key);
            continue;
        };
        let state = token_state(client, &record.accessor, record.expires_at, now)
            .await
            .map_err(read_err("auth/token/lookup-accessor".to_owned()))?;
        reveals.push(RevealEntry { record, state });
    }
    reveals.sort_by(|a, b| {
        (a.record.created_at, &a.record.accessor).cmp(&(b.record.created_at, &b.record.accessor))
    });
    let credentials = covered_in(spec, p, env)
        .into_iter()
        .map(|c| {
            let last = reveals
                .iter()
                .rev()
                .find(|r| r.record.credential == c.id)
                .map(|r| r.record.created_at);
            let seen = Observed {
                issued_at: last,
                ..Observed::default()
            };
            let mut j = judge(p, &seen, now);
            if last.is_none() && j.status == Status::Unknown {
                j.reason = "never revealed in this environment".to_owned();
            }
            CredentialSummary {
                credential: c.id,
                identity: c.identity.to_string(),
                status: j.status,
                reason: j.reason,
                last_minted_at: last,
                rotation_due_at: j.rotation_due_at,
            }
        })
        .collect();
    Ok(Listing {
        purpose: p.id.to_string(),
        env: env.to_owned(),
        owner: p.owner.clone(),
        evidence: p.evidence.clone(),
        revoked: p.revoked,
        at: now,
        credentials,
        reveals,
        unreadable,
    })
}
