//! Reveal-once credentials, for material a person must see exactly once and nobody after them:
//! a credential whose purpose is
//! delivered `reveal_once` is minted on demand behind a single-use, short-lived OpenBao
//! wrapping token, opened exactly once, and afterwards only its metadata can be read.
//!
//! - [`create`]: checks the purpose rules, mints the credential *wrapped* and records
//!   metadata at `warden/data/reveal/<purpose>/<wrapping accessor>` ([`RevealRecord`]).
//!   - a container's AppRole secret-id is requested with `X-Vault-Wrap-TTL`, so OpenBao wraps
//!     it before it leaves the server: Warden never sees it;
//!   - a KV secret is a 256-bit random value generated here, wrapped with
//!     `sys/wrapping/wrap` (only the wrapping token's cubbyhole holds it, it is never written
//!     to KV) and forgotten; only its SHA-256 verifier is recorded.
//! - [`open`]: looks the token up (refusing tokens that wrap anything else), then unwraps it
//!   with the wrapping token as the only credential. OpenBao's single-use token makes this
//!   exactly-once: every later or concurrent attempt is [`RevealError::Spent`].
//! - [`list`]: the records of a purpose with each token's state (pending, opened, expired)
//!   from `auth/token/lookup-accessor`, and the purpose's rotation status and evidence link.
//!
//! There is no path that shows a value again: the record holds none, a secret-id is stored
//! by OpenBao only as an HMAC, and the cubbyhole dies with its token.

mod error;
mod list;
mod open;
mod record;
mod select;

use std::time::Duration;

use aws_lc_rs::digest;
use secrecy::SecretString;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warden_bao::{Client, Idempotent, WrapInfo};
use warden_spec::naming::{self, Location};
use warden_spec::{Environment, Spec};
use zeroize::{Zeroize, Zeroizing};

pub use error::RevealError;
pub use list::{CredentialSummary, Listing, RevealEntry, RevealState, list, token_state};
pub use open::{Opened, open};
pub use record::{RECORD_FORMAT, RevealKind, RevealRecord};
pub use select::{Selected, covered_in, reveal_purpose, select};

/// Default lifetime of a wrapping token: long enough to hand it over, short enough that a
/// lost one is soon worthless.
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);
/// Longest lifetime a wrapping token may be given.
pub const MAX_TTL: Duration = Duration::from_secs(86_400);

/// What to mint.
#[derive(Debug, Clone, Copy)]
pub struct CreateRequest<'a> {
    /// The spec.
    pub spec: &'a Spec,
    /// The environment (the client's server).
    pub env: &'a Environment,
    /// Purpose id.
    pub purpose: &'a str,
    /// Keep only this identity's credentials.
    pub identity: Option<&'a str>,
    /// Keep only this credential reference.
    pub credential: Option<&'a str>,
    /// Lifetime of the wrapping token.
    pub ttl: Duration,
    /// Now (Unix seconds), for the purpose rules.
    pub now: i64,
}

/// A minted reveal: the wrapping token to hand over, and what was recorded.
pub struct Created {
    /// The single-use wrapping token. Whoever holds it can open the credential once.
    pub token: SecretString,
    /// The metadata recorded.
    pub record: RevealRecord,
}

impl std::fmt::Debug for Created {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Created")
            .field("token", &"...")
            .field("record", &self.record)
            .finish()
    }
}

/// Checks what [`create`] would mint without contacting anything: purpose, credential,
/// lifetime and the purpose rules. Call it before preparing where the token goes.
pub fn prepare<'s>(req: &CreateRequest<'s>) -> Result<Selected<'s>, RevealError> {
    let sel = select(
        req.spec,
        req.env.name.as_str(),
        req.purpose,
        req.identity,
        req.credential,
    )?;
    let secs = req.ttl.as_secs();
    if secs == 0 || req.ttl > MAX_TTL {
        return Err(RevealError::Ttl {
            asked_secs: secs,
            max_secs: MAX_TTL.as_secs(),
        });
    }
    // A reveal is a new issuance (it is how the credential is rotated), so only the rules
    // that forbid issuance as such apply: a revoked purpose refuses.
    warden_spec::rules::check_renewal(sel.purpose, None, None, None, req.now).map_err(
        |source| RevealError::Refused {
            credential: sel.credential.id.clone(),
            source,
        },
    )?;
    Ok(sel)
}

/// Mints the credential behind a wrapping token and records its metadata. If the record
/// cannot be written, the token is revoked: nothing is handed out that is not on record.
pub async fn create(client: &Client, req: &CreateRequest<'_>) -> Result<Created, RevealError> {
    let sel = prepare(req)?;
    let env = req.env.name.to_string();
    let created_by = client
        .token_lookup_self()
        .await
        .ok()
        .map(|t| t.display_name)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    let (wrap, verifier) = match sel.kind {
        RevealKind::SecretId => (mint_secret_id(client, req, &sel).await?, None),
        RevealKind::Secret => {
            let (w, v) = mint_secret(client, req, &sel).await?;
            (w, Some(v))
        }
    };
    let created_at = OffsetDateTime::parse(&wrap.creation_time, &Rfc3339)
        .map_or(req.now, OffsetDateTime::unix_timestamp);
    let record = RevealRecord {
        format: RECORD_FORMAT.to_owned(),
        purpose: sel.purpose.id.to_string(),
        credential: sel.credential.id.clone(),
        identity: sel.credential.identity.to_string(),
        env: env.clone(),
        kind: sel.kind,
        accessor: wrap.accessor.clone(),
        creation_path: wrap.creation_path.clone(),
        created_at,
        expires_at: created_at.saturating_add(i64::try_from(wrap.ttl).unwrap_or(i64::MAX)),
        created_by,
        verifier_sha256: verifier,
    };
    if !record::accessor_ok(&record.accessor) {
        // Not expected from OpenBao; the record could not be named, so nothing is handed out.
        let _ = revoke(client, &record.accessor).await;
        return Err(RevealError::Malformed {
            step: "minting",
            what: "the wrapping accessor is not a single path segment",
        });
    }
    let path = record.kv_data_path();
    // `cas: 0`: a record is written once and never replaced.
    let body = json!({ "options": { "cas": 0 }, "data": record });
    if let Err(source) = client.write(&path, &body, Idempotent::No).await {
        let revoked = revoke(client, &record.accessor).await.is_ok();
        return Err(RevealError::Record {
            env,
            path,
            revoked,
            source: Box::new(source),
        });
    }
    Ok(Created {
        token: wrap.token,
        record,
    })
}

/// Revokes a wrapping token by its accessor (after a failed hand-over). The operator's token
/// needs `update` on `auth/token/revoke-accessor`.
pub async fn revoke(client: &Client, accessor: &str) -> Result<(), warden_bao::Error> {
    client
        .write(
            "auth/token/revoke-accessor",
            &json!({ "accessor": accessor }),
            Idempotent::Yes,
        )
        .await
        .map(drop)
}

/// A new secret-id of the container's AppRole role, wrapped by OpenBao. The secret-id's own
/// metadata names the purpose, so posture and audits can tie a login to it.
async fn mint_secret_id(
    client: &Client,
    req: &CreateRequest<'_>,
    sel: &Selected<'_>,
) -> Result<WrapInfo, RevealError> {
    let Some(Location::AppRole { mount, role }) =
        naming::location(req.spec, req.env, &sel.credential)
    else {
        // Selection only yields a secret-id here, and a secret-id lives behind an AppRole role.
        return Err(RevealError::UnsupportedKind {
            credential: sel.credential.id.clone(),
        });
    };
    let path = format!("auth/{mount}/role/{role}/secret-id");
    let metadata = json!({
        "warden_purpose": sel.purpose.id.as_str(),
        "warden_credential": sel.credential.id,
        "warden_delivery": "reveal_once",
    })
    .to_string();
    client
        .write_wrapped(&path, &json!({ "metadata": metadata }), req.ttl)
        .await
        .map_err(|source| RevealError::Mint {
            env: req.env.name.to_string(),
            credential: sel.credential.id.clone(),
            path,
            source: Box::new(source),
        })
}

/// A 256-bit random value, wrapped with `sys/wrapping/wrap`; returns the wrap and the value's
/// SHA-256 verifier. The value is wiped from this process before returning.
async fn mint_secret(
    client: &Client,
    req: &CreateRequest<'_>,
    sel: &Selected<'_>,
) -> Result<(WrapInfo, String), RevealError> {
    let path = "sys/wrapping/wrap";
    let value = random_value().map_err(|()| RevealError::Random)?;
    let verifier = verifier_of(&value);
    let mut body = json!({
        "value": value.as_str(),
        "credential": sel.credential.id,
        "purpose": sel.purpose.id.as_str(),
    });
    let result = client.write_wrapped(path, &body, req.ttl).await;
    if let Some(serde_json::Value::String(s)) = body.get_mut("value") {
        s.zeroize();
    }
    drop(value);
    let wrap = result.map_err(|source| RevealError::Mint {
        env: req.env.name.to_string(),
        credential: sel.credential.id.clone(),
        path: path.to_owned(),
        source: Box::new(source),
    })?;
    Ok((wrap, verifier))
}

/// 32 bytes from the system generator, as unpadded URL-safe base64 (43 characters).
fn random_value() -> Result<Zeroizing<String>, ()> {
    use base64::Engine as _;
    let mut bytes = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(&mut bytes[..]).map_err(|_| ())?;
    Ok(Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..]),
    ))
}

/// SHA-256 (hex) of a value as handed out: what the record keeps and `open` reports, so the
/// owner can match an opened value to its record without either side storing the value.
pub fn verifier_of(value: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, value.as_bytes()).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_values_are_256_bits_and_differ() {
        let a = random_value().expect("rand");
        let b = random_value().expect("rand");
        assert_eq!(a.len(), 43);
        assert_ne!(*a, *b);
        assert_eq!(verifier_of(&a).len(), 64);
        assert_ne!(verifier_of(&a), verifier_of(&b));
    }

    #[test]
    fn created_debug_hides_the_token() {
        let c = Created {
            token: SecretString::from("s.WRAPPINGTOKEN".to_owned()),
            record: RevealRecord {
                format: RECORD_FORMAT.into(),
                purpose: "p".into(),
                credential: "w/secret-id".into(),
                identity: "w".into(),
                env: "test".into(),
                kind: RevealKind::SecretId,
                accessor: "acc".into(),
                creation_path: "auth/approle/role/w/secret-id".into(),
                created_at: 0,
                expires_at: 600,
                created_by: "root".into(),
                verifier_sha256: None,
            },
        };
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("WRAPPINGTOKEN"), "{dbg}");
    }
}
