//! Opening a reveal token: look it up (without using it), refuse one that wraps anything
//! `reveal create` does not make, then unwrap it with the wrapping token as the only token.
//!
//! Exactly-once is OpenBao's: a wrapping token has one use, consumed atomically by the first
//! unwrap. Every other attempt — later or concurrent — is refused by the server, and is
//! reported as [`RevealError::Spent`].

use std::fmt;

use secrecy::SecretString;
use serde_json::{Value, json};
use warden_bao::{Client, ExposeSecret, Idempotent};
use zeroize::Zeroize;

use super::error::RevealError;
use super::record::RevealKind;

/// An opened reveal: the value, shown this once, and what it is.
pub struct Opened {
    /// What it is.
    pub kind: RevealKind,
    /// The credential itself.
    pub value: SecretString,
    /// The endpoint whose answer was wrapped.
    pub creation_path: String,
    /// When it was minted (RFC 3339), as the server reports it.
    pub creation_time: String,
    /// The credential reference (KV secrets carry it inside the wrap).
    pub credential: Option<String>,
    /// The purpose (KV secrets carry it inside the wrap).
    pub purpose: Option<String>,
    /// A secret-id's accessor: lets an operator look up or revoke it without the id.
    pub secret_id_accessor: Option<String>,
    /// A secret-id's lifetime in seconds (0: no expiry).
    pub secret_id_ttl: Option<u64>,
    /// SHA-256 of a KV secret's value, to match against the record's verifier.
    pub verifier_sha256: Option<String>,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field("kind", &self.kind)
            .field("value", &"...")
            .field("creation_path", &self.creation_path)
            .field("credential", &self.credential)
            .field("secret_id_accessor", &self.secret_id_accessor)
            .finish_non_exhaustive()
    }
}

/// What a creation path says the token wraps; `None` for anything `reveal create` does not
/// make.
pub(crate) fn kind_of(creation_path: &str) -> Option<RevealKind> {
    if creation_path == "sys/wrapping/wrap" {
        return Some(RevealKind::Secret);
    }
    let segs: Vec<&str> = creation_path.split('/').collect();
    match segs.as_slice() {
        ["auth", mount, "role", role, "secret-id"] if !mount.is_empty() && !role.is_empty() => {
            Some(RevealKind::SecretId)
        }
        _ => None,
    }
}

/// OpenBao's answers for a token that was used, expired, revoked or never existed: 400
/// "wrapping token is not valid or does not exist" from lookup and unwrap, 403 when the
/// token is presented as `X-Vault-Token` and is no longer valid.
fn spent(e: &warden_bao::Error) -> bool {
    match e.status() {
        Some(403) => true,
        Some(400) => e.server_errors().iter().any(|m| {
            let m = m.to_ascii_lowercase();
            m.contains("wrapping token")
                || m.contains("does not exist")
                || m.contains("invalid token")
        }),
        _ => false,
    }
}

/// Opens `token` on the server `client` talks to. `client`'s own token is cleared first and
/// afterwards: the lookup is unauthenticated and the unwrap carries the wrapping token alone.
pub async fn open(client: &Client, token: &SecretString) -> Result<Opened, RevealError> {
    client.clear_token();
    let looked = match lookup(client, token).await {
        Ok(s) => s.and_then(|s| s.data).ok_or(RevealError::Malformed {
            step: "looking up the token",
            what: "no data",
        })?,
        Err(e) if spent(&e) => return Err(RevealError::Spent),
        Err(source) => {
            return Err(RevealError::Open {
                step: "looking up the token",
                source: Box::new(source),
            });
        }
    };
    let text = |k: &str| {
        looked
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let creation_path = text("creation_path");
    let creation_time = text("creation_time");
    let Some(kind) = kind_of(&creation_path) else {
        return Err(RevealError::NotAReveal { creation_path });
    };

    client.set_token(token.clone());
    let unwrapped = client
        .write("sys/wrapping/unwrap", &json!({}), Idempotent::No)
        .await;
    client.clear_token();
    let mut data = match unwrapped {
        Ok(s) => s.and_then(|s| s.data).ok_or(RevealError::Malformed {
            step: "unwrapping",
            what: "no data",
        })?,
        Err(e) if spent(&e) => return Err(RevealError::Spent),
        // Opened by several at once, OpenBao may answer the losers 500 while the winner's
        // unwrap revokes the token: whether it is spent is what a lookup now says.
        Err(source) if source.status().is_some_and(|s| s >= 500) => {
            return Err(match lookup(client, token).await {
                Err(e) if spent(&e) => RevealError::Spent,
                _ => RevealError::Open {
                    step: "unwrapping",
                    source: Box::new(source),
                },
            });
        }
        Err(source) => {
            return Err(RevealError::Open {
                step: "unwrapping",
                source: Box::new(source),
            });
        }
    };
    let value_key = match kind {
        RevealKind::SecretId => "secret_id",
        RevealKind::Secret => "value",
    };
    let value = take_secret(&mut data, value_key).ok_or(RevealError::Malformed {
        step: "unwrapping",
        what: "the wrapped answer has no value",
    })?;
    let field = |k: &str| data.get(k).and_then(Value::as_str).map(str::to_owned);
    let verifier_sha256 =
        (kind == RevealKind::Secret).then(|| super::verifier_of(value.expose_secret()));
    Ok(Opened {
        kind,
        creation_path,
        creation_time,
        credential: field("credential"),
        purpose: field("purpose"),
        secret_id_accessor: field("secret_id_accessor"),
        secret_id_ttl: data.get("secret_id_ttl").and_then(Value::as_u64),
        verifier_sha256,
        value,
    })
}

/// `sys/wrapping/lookup` of `token` (unauthenticated: the token travels in the body, which is
/// wiped afterwards).
async fn lookup(
    client: &Client,
    token: &SecretString,
) -> Result<Option<warden_bao::Secret>, warden_bao::Error> {
    let mut body = json!({ "token": token.expose_secret() });
    let looked = client
        .write("sys/wrapping/lookup", &body, Idempotent::Yes)
        .await;
    if let Some(Value::String(s)) = body.get_mut("token") {
        s.zeroize();
    }
    looked
}

/// Moves the string at `key` out of `data` into a [`SecretString`] (no copy is left behind).
fn take_secret(data: &mut Value, key: &str) -> Option<SecretString> {
    match data.get_mut(key)? {
        Value::String(s) if !s.is_empty() => Some(SecretString::from(std::mem::take(s))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_warden_creation_paths_are_opened() {
        assert_eq!(kind_of("sys/wrapping/wrap"), Some(RevealKind::Secret));
        assert_eq!(
            kind_of("auth/approle/role/worker/secret-id"),
            Some(RevealKind::SecretId)
        );
        for other in [
            "auth/token/create",
            "kvv2/data/billing/config",
            "auth/approle/role/worker/role-id",
            "auth/approle/role//secret-id",
            "",
        ] {
            assert_eq!(kind_of(other), None, "{other}");
        }
    }

    #[test]
    fn the_value_is_moved_out_not_copied() {
        let mut data = json!({ "secret_id": "abc", "secret_id_accessor": "acc" });
        let v = take_secret(&mut data, "secret_id").expect("value");
        assert_eq!(v.expose_secret(), "abc");
        assert_eq!(data["secret_id"], "");
        assert!(take_secret(&mut data, "secret_id").is_none());
        assert!(take_secret(&mut data, "missing").is_none());
    }
}
