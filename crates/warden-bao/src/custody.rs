//! The endpoints of custody: rotating the unseal shares (`sys/rotate/root/*`, OpenBao's
//! authenticated rekey), generating a root token from shares (`sys/generate-root/*`, with an
//! OTP) and the token operations break-glass needs (orphan tokens, accessors).
//!
//! Why `sys/rotate/root` and not `sys/rekey`: OpenBao 2.5 switched the unauthenticated
//! `sys/rekey/*` off by default (`disable_unauthed_rekey_endpoints`); the rotate endpoints do the
//! same with a token. `sys/generate-root/*` is also off by default
//! (`disable_unauthed_generate_root_endpoints`): a listener that should allow break-glass must
//! set it to `false` (docs/openbao.md, difference 9).

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::auth::TokenInfo;
use crate::client::{Call, Client};
use crate::error::{Error, Result};
use crate::response::{Auth, Secret, null_default};
use crate::retry::Idempotent;

/// Progress of a share rotation (`sys/rotate/root/init` and `…/update`). When `complete`, `keys`
/// holds the new shares: `Debug` prints only how many.
#[derive(Clone, Deserialize, Default)]
#[non_exhaustive]
pub struct RotateProgress {
    /// Started, nonce, progress and whether it is complete.
    #[serde(flatten)]
    pub attempt: Attempt,
    /// New share count.
    #[serde(default)]
    pub n: u8,
    /// New threshold.
    #[serde(default)]
    pub t: u8,
    /// The new shares (hex), only when complete.
    #[serde(default)]
    pub keys: Vec<SecretString>,
}

impl fmt::Debug for RotateProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotateProgress")
            .field("attempt", &self.attempt)
            .field("keys", &format_args!("[...; {}]", self.keys.len()))
            .finish()
    }
}

/// Progress of a root-token generation (`sys/generate-root/*`). The OTP decodes the final
/// `encoded_token`; `Debug` prints neither.
#[derive(Clone, Deserialize, Default)]
#[non_exhaustive]
pub struct GenerateRootProgress {
    /// Started, nonce, progress and whether it is complete (the token is then ready in
    /// `encoded_token`).
    #[serde(flatten)]
    pub attempt: Attempt,
    /// The new root token XORed with the OTP, base64 without padding.
    #[serde(default, deserialize_with = "null_default")]
    pub encoded_token: String,
    /// The OTP the server generated for this attempt (only in the `attempt` answer).
    #[serde(default)]
    pub otp: Option<SecretString>,
}

impl fmt::Debug for GenerateRootProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenerateRootProgress")
            .field("attempt", &self.attempt)
            .field("encoded_token", &"...")
            .field("otp", &"...")
            .finish()
    }
}

/// What both share-collecting attempts (rotation, generate-root) report: what an operator
/// follows, never a secret. Each progress type adds its own (redacted) fields.
#[derive(Debug, Clone, Deserialize, Default)]
#[non_exhaustive]
pub struct Attempt {
    /// An attempt is under way.
    #[serde(default)]
    pub started: bool,
    /// Its nonce: every share submitted must name it.
    #[serde(default, deserialize_with = "null_default")]
    pub nonce: String,
    /// Shares submitted so far.
    #[serde(default)]
    pub progress: u8,
    /// Shares needed.
    #[serde(default)]
    pub required: u8,
    /// The attempt finished (new shares, or the encoded root token, are in the answer).
    #[serde(default)]
    pub complete: bool,
}

/// Decodes a generate-root `encoded_token` with the attempt's OTP: base64 (no padding), then
/// XOR with the OTP's bytes. The result lives in zeroized memory only.
pub fn decode_root_token(encoded: &str, otp: &SecretString) -> Result<SecretString> {
    let bad = |why: &str| Error::Decode {
        path: "sys/generate-root/update".to_owned(),
        source: serde::de::Error::custom(why),
    };
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(encoded.trim_end_matches('='))
            .map_err(|_| bad("encoded_token is not base64"))?,
    );
    let otp = otp.expose_secret().as_bytes();
    if bytes.len() != otp.len() {
        return Err(bad("encoded_token and OTP differ in length"));
    }
    let token: Zeroizing<Vec<u8>> =
        Zeroizing::new(bytes.iter().zip(otp).map(|(a, b)| a ^ b).collect());
    let text = std::str::from_utf8(&token).map_err(|_| bad("decoded token is not text"))?;
    Ok(SecretString::from(text.to_owned()))
}

/// What an orphan token is created with (`auth/token/create-orphan`).
#[derive(Debug, Clone)]
pub struct OrphanToken<'a> {
    /// Policies (never `default` unless named).
    pub policies: &'a [String],
    /// TTL; also the explicit max TTL, so no renewal can stretch it.
    pub ttl: Duration,
    /// Display name (shown in audit logs).
    pub display_name: &'a str,
    /// Metadata (shown in lookups and audit logs).
    pub meta: std::collections::BTreeMap<String, String>,
}

impl Client {
    /// `GET sys/rotate/root/init`: the share rotation under way, if any.
    pub async fn rotate_root_status(&self) -> Result<RotateProgress> {
        let path = "sys/rotate/root/init";
        let secret: Secret = self.send(Call::get(path)).await?.decode(path)?;
        secret.data_as(path)
    }

    /// Starts a share rotation to `shares`/`threshold` (needs a token allowed on
    /// `sys/rotate/root/init`). Not retried: a second start would fail or replace the nonce.
    pub async fn rotate_root_init(&self, shares: u8, threshold: u8) -> Result<RotateProgress> {
        let path = "sys/rotate/root/init";
        let body = serde_json::json!({ "secret_shares": shares, "secret_threshold": threshold });
        let reply = self
            .send(Call::new(Method::POST, path, Idempotent::No).json(&body)?)
            .await?;
        let secret: Secret = reply.decode(path)?;
        secret.data_as(path)
    }

    /// Submits one current share to the rotation `nonce`. When the last one is in, the answer
    /// is `complete` and carries the new shares.
    pub async fn rotate_root_update(
        &self,
        key: &SecretString,
        nonce: &str,
    ) -> Result<RotateProgress> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            key: &'a str,
            nonce: &'a str,
        }
        let path = "sys/rotate/root/update";
        let body = Body {
            key: key.expose_secret(),
            nonce,
        };
        let reply = self
            .send(Call::new(Method::POST, path, Idempotent::No).json(&body)?)
            .await?;
        let secret: Secret = reply.decode(path)?;
        secret.data_as(path)
    }

    /// Cancels the share rotation under way (its submitted shares are forgotten).
    pub async fn rotate_root_cancel(&self) -> Result<()> {
        self.send(Call::new(
            Method::DELETE,
            "sys/rotate/root/init",
            Idempotent::Yes,
        ))
        .await
        .map(drop)
    }

    /// `GET sys/generate-root/attempt`: the attempt under way, if any (unauthenticated).
    pub async fn generate_root_status(&self) -> Result<GenerateRootProgress> {
        let path = "sys/generate-root/attempt";
        self.send(Call::get(path).unauthenticated())
            .await?
            .decode(path)
    }

    /// Starts a root-token generation; the server chooses the OTP and returns it once.
    pub async fn generate_root_start(&self) -> Result<GenerateRootProgress> {
        self.put_unauthenticated("sys/generate-root/attempt", &serde_json::json!({}))
            .await
    }

    /// Submits one share to the generation `nonce`.
    pub async fn generate_root_update(
        &self,
        key: &SecretString,
        nonce: &str,
    ) -> Result<GenerateRootProgress> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            key: &'a str,
            nonce: &'a str,
        }
        self.put_unauthenticated(
            "sys/generate-root/update",
            &Body {
                key: key.expose_secret(),
                nonce,
            },
        )
        .await
    }

    /// Cancels the generation under way.
    pub async fn generate_root_cancel(&self) -> Result<()> {
        self.send(
            Call::new(Method::DELETE, "sys/generate-root/attempt", Idempotent::Yes)
                .unauthenticated(),
        )
        .await
        .map(drop)
    }

    /// Creates an orphan token (`auth/token/create-orphan`; needs root or sudo): no parent, so
    /// revoking the token that created it leaves it alive; TTL = explicit max TTL, not
    /// renewable, no `default` policy.
    pub async fn token_create_orphan(&self, spec: &OrphanToken<'_>) -> Result<Auth> {
        let path = "auth/token/create-orphan";
        let ttl = format!("{}s", spec.ttl.as_secs().max(1));
        let body = serde_json::json!({
            "policies": spec.policies,
            "no_default_policy": true,
            "ttl": ttl,
            "explicit_max_ttl": ttl,
            "renewable": false,
            "display_name": spec.display_name,
            "meta": spec.meta,
        });
        let reply = self
            .send(Call::new(Method::POST, path, Idempotent::No).json(&body)?)
            .await?;
        let secret: Secret = reply.decode(path)?;
        secret.auth.ok_or_else(|| Error::Decode {
            path: path.to_owned(),
            source: serde::de::Error::custom("token create response has no auth block"),
        })
    }

    /// Describes the token with `accessor` (`auth/token/lookup-accessor`). A revoked or expired
    /// token answers 400/403 "invalid accessor".
    pub async fn token_lookup_accessor(&self, accessor: &str) -> Result<TokenInfo> {
        let path = "auth/token/lookup-accessor";
        let body = serde_json::json!({ "accessor": accessor });
        let reply = self
            .send(Call::new(Method::POST, path, Idempotent::Yes).json(&body)?)
            .await?;
        let secret: Secret = reply.decode(path)?;
        secret.data_as(path)
    }

    /// Revokes the token with `accessor` (and its children).
    pub async fn token_revoke_accessor(&self, accessor: &str) -> Result<()> {
        let body = serde_json::json!({ "accessor": accessor });
        self.send(
            Call::new(Method::POST, "auth/token/revoke-accessor", Idempotent::Yes).json(&body)?,
        )
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_an_otp_encoded_token() {
        // Captured from OpenBao 2.7.2 (a throwaway server): OTP, encoded token, token.
        let otp = SecretString::from("WYdmc9jWJGlhUVU1VKIvKfZpTw".to_owned());
        let token = decode_root_token("JHcKHBcIMiIbKjkAICMCeAwMIBARABxEBxE", &otp).expect("decode");
        assert_eq!(token.expose_secret(), "s.nqt1XuQmUhuuWIZGifZfF4Sf");
        let short = SecretString::from("abc".to_owned());
        assert!(decode_root_token("JHcKHBcIMiIbKjkAICMCeAwMIBARABxEBxE", &short).is_err());
    }

    #[test]
    fn progress_debug_hides_keys_and_otp() {
        let p: GenerateRootProgress = serde_json::from_str(
            r#"{"nonce":"n","started":true,"progress":0,"required":3,"complete":false,
                "encoded_token":"SECRETENC","otp":"SECRETOTP","otp_length":26}"#,
        )
        .expect("parse");
        let dbg = format!("{p:?}");
        assert!(
            !dbg.contains("SECRETENC") && !dbg.contains("SECRETOTP"),
            "{dbg}"
        );
        let r: RotateProgress =
            serde_json::from_str(r#"{"complete":true,"keys":["SECRETKEY"],"nonce":"n"}"#)
                .expect("parse");
        assert!(!format!("{r:?}").contains("SECRETKEY"));
    }
}
