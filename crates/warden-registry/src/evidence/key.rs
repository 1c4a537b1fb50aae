//! The signing key: `transit/keys/warden-evidence`, Ed25519, not exportable. OpenBao signs;
//! the private key never leaves it. Public keys are read from the key's description (one per
//! version) so auditors can verify packets offline.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde_json::{Value, json};
use warden_bao::{Client, Idempotent, TransitError};

use super::EvidenceError;
use super::packet::PublicKey;

/// The transit key's name.
pub use warden_spec::naming::EVIDENCE_KEY;

/// One version of the key: its public half only.
#[derive(Debug, Clone, Serialize)]
pub struct KeyVersion {
    /// Version number.
    pub version: u64,
    /// When OpenBao created it (RFC 3339).
    pub created: String,
    /// Hex SHA-256 of the SPKI DER.
    pub sha256: String,
    /// PEM `PUBLIC KEY`.
    pub pem: String,
    #[serde(skip)]
    pub(crate) key: Option<PublicKey>,
}

/// The key as the server describes it.
#[derive(Debug, Clone, Serialize)]
pub struct EvidenceKey {
    /// `transit:<mount>/warden-evidence`.
    pub name: String,
    /// The transit mount.
    pub mount: String,
    /// The version new signatures use.
    pub latest_version: u64,
    /// Versions still kept, oldest first.
    pub versions: Vec<KeyVersion>,
    /// Whether this call created it.
    pub created_now: bool,
}

impl EvidenceKey {
    /// The latest version.
    pub fn latest(&self) -> Option<&KeyVersion> {
        self.versions
            .iter()
            .find(|v| v.version == self.latest_version)
    }
}

fn key_error(env: &str, what: impl Into<String>) -> EvidenceError {
    EvidenceError::Key {
        env: env.to_owned(),
        what: what.into(),
    }
}

/// Reads the key; `Ok(None)` when it does not exist.
pub async fn read_key(
    client: &Client,
    env: &str,
    mount: &str,
) -> Result<Option<EvidenceKey>, EvidenceError> {
    let mount = mount.trim_matches('/');
    let path = format!("{mount}/keys/{EVIDENCE_KEY}");
    let data = match client.read(&path).await {
        Ok(s) => s.data.unwrap_or(Value::Null),
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e)
            if e.status() == Some(400)
                && e.server_errors().iter().any(|m| m.contains("not found")) =>
        {
            return Ok(None);
        }
        Err(source) => {
            return Err(EvidenceError::Read {
                env: env.to_owned(),
                what: path,
                source,
            });
        }
    };
    let key_type = data.get("type").and_then(Value::as_str).unwrap_or("");
    if key_type != "ed25519" {
        return Err(key_error(
            env,
            format!("{path} is a `{key_type}` key; evidence is signed with an ed25519 key"),
        ));
    }
    if data.get("exportable").and_then(Value::as_bool) == Some(true) {
        return Err(key_error(
            env,
            format!(
                "{path} is exportable; an evidence key must never leave OpenBao (delete it and let export create a new one)"
            ),
        ));
    }
    let latest_version = data
        .get("latest_version")
        .and_then(Value::as_u64)
        .ok_or_else(|| key_error(env, format!("{path}: no latest_version")))?;
    let raw: BTreeMap<String, Value> = data
        .get("keys")
        .and_then(|k| serde_json::from_value(k.clone()).ok())
        .unwrap_or_default();
    let mut versions = Vec::new();
    for (v, entry) in raw {
        let Ok(version) = v.parse::<u64>() else {
            continue;
        };
        let public = entry
            .get("public_key")
            .and_then(Value::as_str)
            .and_then(|b| STANDARD.decode(b).ok())
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| {
                key_error(
                    env,
                    format!("{path}: version {version} has no Ed25519 public key"),
                )
            })?;
        let key = PublicKey::from_raw(public);
        versions.push(KeyVersion {
            version,
            created: entry
                .get("creation_time")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            sha256: key.sha256.clone(),
            pem: key.pem(),
            key: Some(key),
        });
    }
    versions.sort_by_key(|v| v.version);
    Ok(Some(EvidenceKey {
        name: format!("transit:{mount}/{EVIDENCE_KEY}"),
        mount: mount.to_owned(),
        latest_version,
        versions,
        created_now: false,
    }))
}

/// Reads the key, creating it (ed25519, not exportable, no plaintext backup) if missing.
pub async fn ensure_key(
    client: &Client,
    env: &str,
    mount: &str,
) -> Result<EvidenceKey, EvidenceError> {
    if let Some(k) = read_key(client, env, mount).await? {
        return Ok(k);
    }
    client
        .transit(mount)
        .create_key(EVIDENCE_KEY, "ed25519")
        .await
        .map_err(|source: TransitError| EvidenceError::CreateKey {
            env: env.to_owned(),
            source,
        })?;
    let mut k = read_key(client, env, mount)
        .await?
        .ok_or_else(|| key_error(env, "the key was created but cannot be read back"))?;
    k.created_now = true;
    Ok(k)
}

/// Has OpenBao sign `msg` with `version` of the key; returns the raw 64-byte signature.
pub(crate) async fn sign(
    client: &Client,
    env: &str,
    key: &EvidenceKey,
    version: u64,
    msg: &[u8],
) -> Result<Vec<u8>, EvidenceError> {
    let path = format!("{}/sign/{EVIDENCE_KEY}", key.mount);
    let body = json!({ "input": STANDARD.encode(msg), "key_version": version });
    let data = client
        .write(&path, &body, Idempotent::Yes)
        .await
        .map_err(|source| EvidenceError::Sign {
            env: env.to_owned(),
            source,
        })?
        .and_then(|s| s.data)
        .unwrap_or(Value::Null);
    let text = data.get("signature").and_then(Value::as_str).unwrap_or("");
    let prefix = format!("vault:v{version}:");
    text.strip_prefix(&prefix)
        .and_then(|b| STANDARD.decode(b).ok())
        .filter(|s| s.len() == 64)
        .ok_or_else(|| {
            key_error(
                env,
                format!("{path}: the answer is not a version {version} Ed25519 signature"),
            )
        })
}
