//! The transit engine: encryption and signing as a service. Keys live and stay in OpenBao;
//! this module has no call that exports one, and [`KeyInfo`] carries no key material (not
//! even public keys), only versions and settings.
//!
//! Plaintexts go in as bytes and come back as `Zeroizing<Vec<u8>>`; the base64 forms the API
//! needs are built and read in wiped buffers. Failures are [`TransitError`]s that say which
//! key, and for the refusals OpenBao only explains in text (a ciphertext older than the key's
//! `min_decryption_version`, a broken ciphertext, an operation the key type cannot do) which
//! one it was.

use std::collections::BTreeMap;

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::b64;
use crate::client::{Call, Client};
use crate::error::Error;
use crate::response::null_default;
use crate::retry::Idempotent;

/// Why a transit call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransitError {
    /// There is no key of that name in the mount.
    #[error("{mount}: no transit key `{key}`")]
    KeyNotFound {
        /// The mount.
        mount: String,
        /// The key name.
        key: String,
    },
    /// The ciphertext (or signature) was made with a key version below the key's
    /// `min_decryption_version`: that version is retired.
    #[error(
        "{mount}/{key}: {what} is from key version {}, which the key no longer accepts (min_decryption_version is higher)",
        version.map_or_else(|| "?".to_owned(), |v| v.to_string())
    )]
    VersionRetired {
        /// The mount.
        mount: String,
        /// The key name.
        key: String,
        /// `ciphertext` or `signature`.
        what: &'static str,
        /// The version the input names, when it could be read from it.
        version: Option<u64>,
    },
    /// The ciphertext is malformed or does not authenticate under this key.
    #[error("{mount}/{key}: the ciphertext is not valid for this key: {reason}")]
    InvalidCiphertext {
        /// The mount.
        mount: String,
        /// The key name.
        key: String,
        /// OpenBao's explanation.
        reason: String,
    },
    /// The signature is malformed (a well-formed signature that does not match is not an
    /// error: [`Transit::verify`] returns `false`).
    #[error("{mount}/{key}: the signature is malformed: {reason}")]
    InvalidSignature {
        /// The mount.
        mount: String,
        /// The key name.
        key: String,
        /// OpenBao's explanation.
        reason: String,
    },
    /// The key's type cannot do this (encrypting with a signing key, signing with an AES key).
    #[error("{mount}/{key}: a {key_type} key cannot {operation}: {reason}")]
    Unsupported {
        /// The mount.
        mount: String,
        /// The key name.
        key: String,
        /// The operation asked for.
        operation: &'static str,
        /// The key type, if known.
        key_type: String,
        /// OpenBao's explanation.
        reason: String,
    },
    /// OpenBao returned a value this client could not decode (e.g. a plaintext that is not
    /// base64).
    #[error("{mount}/{key}: unexpected answer to {operation}: {what}")]
    Malformed {
        /// The mount.
        mount: String,
        /// The key name.
        key: String,
        /// The operation.
        operation: &'static str,
        /// What was wrong.
        what: &'static str,
    },
    /// Any other failure: denied, unreachable, sealed, a refused setting...
    #[error("{mount}/{key}: {source}")]
    Api {
        /// The mount.
        mount: String,
        /// The key name.
        key: String,
        /// The client error.
        #[source]
        source: Error,
    },
}

impl TransitError {
    /// The token may not do this (403).
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, Self::Api { source, .. } if source.is_permission_denied())
    }
}

/// What a transit key is and which versions it accepts. No key material.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[non_exhaustive]
pub struct KeyInfo {
    /// The key's name.
    pub name: String,
    /// `aes256-gcm96`, `ecdsa-p256`, `ed25519`, ...
    #[serde(rename = "type")]
    pub key_type: String,
    /// The newest version (encryption and signing use it).
    pub latest_version: u64,
    /// Ciphertexts and signatures of versions below this are refused.
    pub min_decryption_version: u64,
    /// Encryption uses at least this version (0 = latest).
    #[serde(default, deserialize_with = "null_default")]
    pub min_encryption_version: u64,
    /// Whether the key may be exported. Warden never creates exportable keys.
    #[serde(default, deserialize_with = "null_default")]
    pub exportable: bool,
    /// Whether a plaintext backup of the key may be taken.
    #[serde(default, deserialize_with = "null_default")]
    pub allow_plaintext_backup: bool,
    /// Whether the key may be deleted.
    #[serde(default, deserialize_with = "null_default")]
    pub deletion_allowed: bool,
    /// Whether it encrypts.
    #[serde(default, deserialize_with = "null_default")]
    pub supports_encryption: bool,
    /// Whether it decrypts.
    #[serde(default, deserialize_with = "null_default")]
    pub supports_decryption: bool,
    /// Whether it signs.
    #[serde(default, deserialize_with = "null_default")]
    pub supports_signing: bool,
    /// Versions still kept, with when each was created (RFC 3339, or Unix seconds as text).
    #[serde(
        default,
        rename(deserialize = "keys"),
        deserialize_with = "versions_only"
    )]
    pub versions: BTreeMap<u64, String>,
}

/// `keys` maps versions to a Unix time (symmetric keys) or to an object with the public key
/// and `creation_time` (asymmetric keys). Only the time is kept: the public key is not needed
/// to use the service, and leaving it out means this type never holds key material.
fn versions_only<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<u64, String>, D::Error> {
    let raw = Option::<BTreeMap<u64, serde_json::Value>>::deserialize(d)?.unwrap_or_default();
    Ok(raw
        .into_iter()
        .map(|(v, entry)| {
            let when = match &entry {
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Object(o) => o
                    .get("creation_time")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                _ => String::new(),
            };
            (v, when)
        })
        .collect())
}

/// A ciphertext (`vault:v<N>:…`) and the key version that made it. Not secret.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[non_exhaustive]
pub struct Ciphertext {
    /// The ciphertext, as transit prints it.
    pub ciphertext: String,
    /// The key version used.
    #[serde(default, deserialize_with = "null_default")]
    pub key_version: u64,
}

/// A signature (`vault:v<N>:…`) and the key version that made it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[non_exhaustive]
pub struct Signature {
    /// The signature, as transit prints it.
    pub signature: String,
    /// The key version used.
    #[serde(default, deserialize_with = "null_default")]
    pub key_version: u64,
}

/// A decrypted plaintext: wiped on drop, and `Debug` prints `"..."`.
pub struct Plaintext(Zeroizing<Vec<u8>>);

impl Plaintext {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Standard base64 (the form transit itself uses), in a buffer wiped on drop.
    pub fn to_base64(&self) -> Zeroizing<String> {
        b64::encode(&self.0)
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"...\"")
    }
}

/// The key version a `vault:v<N>:…` ciphertext or signature names.
pub fn input_version(text: &str) -> Option<u64> {
    text.trim()
        .strip_prefix("vault:v")?
        .split(':')
        .next()?
        .parse()
        .ok()
}

/// A transit mount.
#[derive(Debug, Clone)]
pub struct Transit<'c> {
    client: &'c Client,
    mount: String,
}

impl Client {
    /// The transit engine mounted at `mount` (e.g. `transit`).
    pub fn transit(&self, mount: &str) -> Transit<'_> {
        Transit {
            client: self,
            mount: mount.trim_matches('/').to_owned(),
        }
    }
}

impl Transit<'_> {
    /// The mount path.
    pub fn mount(&self) -> &str {
        &self.mount
    }

    /// Creates key `key` of `key_type` (e.g. `aes256-gcm96`, `ecdsa-p256`, `ed25519`), never
    /// exportable and without plaintext backup. Creating an existing key leaves it as it is.
    pub async fn create_key(&self, key: &str, key_type: &str) -> Result<(), TransitError> {
        let body = serde_json::json!({
            "type": key_type,
            "exportable": false,
            "allow_plaintext_backup": false,
        });
        self.post::<serde_json::Value>(key, &format!("keys/{key}"), &body, Idempotent::Yes)
            .await
            .map(drop)
    }

    /// What the key is and which versions it accepts; no key material.
    pub async fn key_info(&self, key: &str) -> Result<KeyInfo, TransitError> {
        let url = format!("{}/keys/{key}", self.mount);
        let reply = self
            .client
            .send(Call::get(&url))
            .await
            .map_err(|e| self.classify(e, key, "read"))?;
        decode(&reply, &url).map_err(|e| self.classify(e, key, "read"))
    }

    /// Encrypts `plaintext` with the key's latest version (or its `min_encryption_version`).
    pub async fn encrypt(&self, key: &str, plaintext: &[u8]) -> Result<Ciphertext, TransitError> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            plaintext: &'a str,
        }
        let encoded = b64::encode(plaintext);
        self.post_op(
            key,
            "encrypt",
            &Body {
                plaintext: &encoded,
            },
        )
        .await
    }

    /// Decrypts `ciphertext`. A ciphertext of a retired version is
    /// [`TransitError::VersionRetired`]; a broken one [`TransitError::InvalidCiphertext`].
    pub async fn decrypt(&self, key: &str, ciphertext: &str) -> Result<Plaintext, TransitError> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            ciphertext: &'a str,
        }
        #[derive(Deserialize)]
        struct Plain {
            plaintext: SecretString,
        }
        let plain: Plain = self
            .post_op(
                key,
                "decrypt",
                &Body {
                    ciphertext: ciphertext.trim(),
                },
            )
            .await
            .map_err(|e| with_input_version(e, ciphertext))?;
        b64::decode(plain.plaintext.expose_secret())
            .map(Plaintext)
            .ok_or_else(|| TransitError::Malformed {
                mount: self.mount.clone(),
                key: key.to_owned(),
                operation: "decrypt",
                what: "the plaintext is not base64",
            })
    }

    /// Re-encrypts `ciphertext` under the key's latest version without revealing the
    /// plaintext to the caller: how old ciphertexts are moved forward before raising
    /// `min_decryption_version`.
    pub async fn rewrap(&self, key: &str, ciphertext: &str) -> Result<Ciphertext, TransitError> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            ciphertext: &'a str,
        }
        self.post_op(
            key,
            "rewrap",
            &Body {
                ciphertext: ciphertext.trim(),
            },
        )
        .await
        .map_err(|e| with_input_version(e, ciphertext))
    }

    /// Signs `input` with the key's latest version.
    pub async fn sign(&self, key: &str, input: &[u8]) -> Result<Signature, TransitError> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            input: &'a str,
        }
        let encoded = b64::encode(input);
        self.post_op(key, "sign", &Body { input: &encoded }).await
    }

    /// Whether `signature` is a valid signature of `input` by this key. `Ok(false)` for a
    /// well-formed signature that does not match; an error for a malformed one or a retired
    /// version.
    pub async fn verify(
        &self,
        key: &str,
        input: &[u8],
        signature: &str,
    ) -> Result<bool, TransitError> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            input: &'a str,
            signature: &'a str,
        }
        #[derive(Deserialize)]
        struct Valid {
            valid: bool,
        }
        let encoded = b64::encode(input);
        let v: Valid = self
            .post_op(
                key,
                "verify",
                &Body {
                    input: &encoded,
                    signature: signature.trim(),
                },
            )
            .await
            .map_err(|e| match with_input_version(e, signature) {
                TransitError::VersionRetired {
                    mount,
                    key,
                    version,
                    ..
                } => TransitError::VersionRetired {
                    mount,
                    key,
                    what: "signature",
                    version,
                },
                TransitError::InvalidCiphertext { mount, key, reason } => {
                    TransitError::InvalidSignature { mount, key, reason }
                }
                other => other,
            })?;
        Ok(v.valid)
    }

    /// Adds a new key version; encryption and signing use it from now on, older versions
    /// still decrypt and verify down to `min_decryption_version`.
    pub async fn rotate(&self, key: &str) -> Result<KeyInfo, TransitError> {
        // Not idempotent: a retried rotation would add a second version.
        let answer = self
            .post::<KeyInfo>(
                key,
                &format!("keys/{key}/rotate"),
                &serde_json::json!({}),
                Idempotent::No,
            )
            .await?;
        self.or_read(key, answer).await
    }

    /// OpenBao answers rotate and config with the key's description; older servers answer
    /// 204, and then it is read (which needs `read` on the key).
    async fn or_read(&self, key: &str, answer: Option<KeyInfo>) -> Result<KeyInfo, TransitError> {
        match answer {
            Some(info) => Ok(info),
            None => self.key_info(key).await,
        }
    }

    /// Retires every version below `version`: their ciphertexts and signatures are refused
    /// from now on. OpenBao refuses a value above the latest version.
    pub async fn set_min_decryption_version(
        &self,
        key: &str,
        version: u64,
    ) -> Result<KeyInfo, TransitError> {
        let body = serde_json::json!({ "min_decryption_version": version });
        let answer = self
            .post::<KeyInfo>(key, &format!("keys/{key}/config"), &body, Idempotent::Yes)
            .await?;
        self.or_read(key, answer).await
    }

    async fn post_op<T: DeserializeOwned>(
        &self,
        key: &str,
        op: &'static str,
        body: &impl serde::Serialize,
    ) -> Result<T, TransitError> {
        self.post(key, &format!("{op}/{key}"), body, Idempotent::Yes)
            .await
            .map_err(|e| match e {
                TransitError::Api { source, .. } => self.classify(source, key, op),
                other => other,
            })?
            .ok_or_else(|| TransitError::Malformed {
                mount: self.mount.clone(),
                key: key.to_owned(),
                operation: op,
                what: "the response has no data",
            })
    }

    async fn post<T: DeserializeOwned>(
        &self,
        key: &str,
        sub: &str,
        body: &impl serde::Serialize,
        idempotent: Idempotent,
    ) -> Result<Option<T>, TransitError> {
        let url = format!("{}/{sub}", self.mount);
        let api = |source| TransitError::Api {
            mount: self.mount.clone(),
            key: key.to_owned(),
            source,
        };
        let call = Call::new(Method::POST, &url, idempotent)
            .json(body)
            .map_err(api)?;
        let reply = self.client.send(call).await.map_err(api)?;
        if reply.status == 204 || reply.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        reply
            .decode::<Envelope<T>>(&url)
            .map(|e| e.data)
            .map_err(api)
    }

    /// Names OpenBao's text-only refusals.
    fn classify(&self, err: Error, key: &str, operation: &'static str) -> TransitError {
        let (mount, key) = (self.mount.clone(), key.to_owned());
        let text = err.server_errors().join("; ");
        let says = |needle: &str| text.contains(needle);
        if err.status() == Some(400) {
            if says("key not found") || says("no existing key named") {
                return TransitError::KeyNotFound { mount, key };
            }
            if says("disallowed by policy (too old)") {
                return TransitError::VersionRetired {
                    mount,
                    key,
                    what: "ciphertext",
                    version: None,
                };
            }
            if says("invalid ciphertext") || says("message authentication failed") {
                return TransitError::InvalidCiphertext {
                    mount,
                    key,
                    reason: text,
                };
            }
            if says("signature is invalid") || says("invalid signature") {
                return TransitError::InvalidSignature {
                    mount,
                    key,
                    reason: text,
                };
            }
            if says("not supported for key type") || says("does not support") {
                let key_type = text
                    .split("key type ")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .unwrap_or("this")
                    .to_owned();
                return TransitError::Unsupported {
                    mount,
                    key,
                    operation,
                    key_type,
                    reason: text,
                };
            }
        }
        if matches!(err.root(), Error::NotFound { .. }) && operation == "read" {
            return TransitError::KeyNotFound { mount, key };
        }
        TransitError::Api {
            mount,
            key,
            source: err,
        }
    }
}

/// Fills in the version a retired ciphertext or signature names.
fn with_input_version(err: TransitError, input: &str) -> TransitError {
    match err {
        TransitError::VersionRetired {
            mount, key, what, ..
        } => TransitError::VersionRetired {
            mount,
            key,
            what,
            version: input_version(input),
        },
        other => other,
    }
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: Option<T>,
}

fn decode<T: DeserializeOwned>(reply: &crate::client::Reply, url: &str) -> Result<T, Error> {
    reply
        .decode::<Envelope<T>>(url)?
        .data
        .ok_or_else(|| Error::Decode {
            path: url.to_owned(),
            source: serde::de::Error::custom("the response has no data"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transit() -> (Client, &'static str) {
        let c = Client::new(crate::ClientConfig::from_address("http://127.0.0.1:1").expect("cfg"))
            .expect("client");
        (c, "transit")
    }

    fn refusal(msg: &str) -> Error {
        Error::from_status(
            400,
            "transit/decrypt/k",
            "http://x",
            format!(r#"{{"errors":["{msg}"]}}"#).as_bytes(),
        )
    }

    #[test]
    fn text_only_refusals_are_typed() {
        let (c, mount) = transit();
        let t = c.transit(mount);
        let e = with_input_version(
            t.classify(
                refusal("ciphertext or signature version is disallowed by policy (too old)"),
                "k",
                "decrypt",
            ),
            "vault:v1:abc",
        );
        assert!(
            matches!(
                e,
                TransitError::VersionRetired {
                    version: Some(1),
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("key version 1"), "{e}");
        assert!(matches!(
            t.classify(refusal("encryption key not found"), "k", "decrypt"),
            TransitError::KeyNotFound { .. }
        ));
        assert!(matches!(
            t.classify(refusal("invalid ciphertext: no prefix"), "k", "decrypt"),
            TransitError::InvalidCiphertext { .. }
        ));
        let e = t.classify(
            refusal("key type aes256-gcm96 does not support signing"),
            "k",
            "sign",
        );
        assert!(
            matches!(&e, TransitError::Unsupported { key_type, .. } if key_type == "aes256-gcm96"),
            "{e}"
        );
    }

    #[test]
    fn key_info_keeps_no_key_material() {
        let info: KeyInfo = serde_json::from_str(
            r#"{"name":"app-sig","type":"ecdsa-p256","latest_version":2,"min_decryption_version":1,
                "exportable":false,"keys":{"1":{"creation_time":"t1","name":"P-256",
                "public_key":"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"},
                "2":{"creation_time":"t2","public_key":"PEM"}}}"#,
        )
        .expect("parse");
        assert_eq!(info.versions.get(&2).map(String::as_str), Some("t2"));
        let json = serde_json::to_string(&info).expect("serialise");
        assert!(
            !json.contains("PUBLIC KEY") && !json.contains("PEM"),
            "{json}"
        );
        let aes: KeyInfo = serde_json::from_str(
            r#"{"name":"a","type":"aes256-gcm96","latest_version":1,"min_decryption_version":1,"keys":{"1":1795452723}}"#,
        )
        .expect("parse");
        assert_eq!(aes.versions.get(&1).map(String::as_str), Some("1795452723"));
    }

    #[test]
    fn plaintext_debug_hides_bytes() {
        let p = Plaintext(Zeroizing::new(b"card-4111".to_vec()));
        assert_eq!(format!("{p:?}"), "\"...\"");
        assert_eq!(p.to_base64().as_str(), "Y2FyZC00MTEx");
        assert_eq!(p.as_bytes(), b"card-4111");
    }

    #[test]
    fn input_version_reads_the_prefix() {
        assert_eq!(input_version("vault:v12:abc"), Some(12));
        assert_eq!(input_version(" vault:v1:x\n"), Some(1));
        assert_eq!(input_version("garbage"), None);
    }
}
