//! Logging in and inspecting the current token.
//!
//! Cert auth is the primary method: the TLS client certificate of the connection *is* the
//! login credential, so the machine's mTLS identity and its OpenBao identity are one thing.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;

use crate::client::{Call, Client};
use crate::error::{Error, Result};
use crate::response::Auth;
use crate::response::{Secret, null_default};
use crate::retry::Idempotent;

/// What `auth/token/lookup-self` says about the current token. The token itself (`id`) is
/// deliberately not deserialised.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct TokenInfo {
    /// Accessor of the token.
    #[serde(default, deserialize_with = "null_default")]
    pub accessor: String,
    /// Policies attached.
    #[serde(default, deserialize_with = "null_default")]
    pub policies: Vec<String>,
    /// Remaining TTL in seconds (0 = never expires, e.g. root).
    #[serde(default, deserialize_with = "null_default")]
    pub ttl: u64,
    /// Absolute expiry (RFC 3339), if any.
    #[serde(default)]
    pub expire_time: Option<String>,
    /// Whether it can be renewed.
    #[serde(default, deserialize_with = "null_default")]
    pub renewable: bool,
    /// Display name (e.g. "cert-agent").
    #[serde(default, deserialize_with = "null_default")]
    pub display_name: String,
    /// Identity entity.
    #[serde(default, deserialize_with = "null_default")]
    pub entity_id: String,
    /// Path that created it (e.g. "auth/cert/login").
    #[serde(default, deserialize_with = "null_default")]
    pub path: String,
    /// Whether it has no parent.
    #[serde(default, deserialize_with = "null_default")]
    pub orphan: bool,
    /// Remaining uses (0 = unlimited).
    #[serde(default, deserialize_with = "null_default")]
    pub num_uses: u64,
    /// "service" or "batch".
    #[serde(default, rename = "type", deserialize_with = "null_default")]
    pub token_type: String,
    /// Metadata.
    #[serde(default, deserialize_with = "null_default")]
    pub meta: BTreeMap<String, String>,
}

impl Client {
    /// Logs in with the TLS client certificate of this connection (cert auth at `mount`,
    /// e.g. "cert"), optionally naming the role. Does not change this client's token: call
    /// [`Client::set_token`] with the result if this client should use it.
    ///
    /// Retried like an idempotent call: a repeated login only mints a second token, which
    /// expires on its own. A role whose constraints don't match the certificate is a 400
    /// ([`Error::BadRequest`]), not a 403, in OpenBao.
    pub async fn login_cert(&self, mount: &str, role: Option<&str>) -> Result<Auth> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            name: Option<&'a str>,
        }
        let path = format!("auth/{}/login", mount.trim_matches('/'));
        let reply = self
            .send(
                Call::new(Method::POST, &path, Idempotent::Yes)
                    .unauthenticated()
                    .json(&Body { name: role })?,
            )
            .await?;
        let secret: Secret = reply.decode(&path)?;
        secret.auth.ok_or_else(|| Error::Decode {
            path,
            source: serde::de::Error::custom("login response has no auth block"),
        })
    }

    /// Describes the current token. Also the cheapest way to check a token is still valid.
    pub async fn token_lookup_self(&self) -> Result<TokenInfo> {
        let path = "auth/token/lookup-self";
        let secret: Secret = self.send(Call::get(path)).await?.decode(path)?;
        secret.data_as(path)
    }

    /// Renews the current token by `increment` (the server may grant less). Idempotent: a
    /// renewal repeated resets the same TTL.
    pub async fn token_renew_self(&self, increment: Option<Duration>) -> Result<Auth> {
        #[derive(serde::Serialize)]
        struct Body {
            #[serde(skip_serializing_if = "Option::is_none")]
            increment: Option<String>,
        }
        let path = "auth/token/renew-self";
        let body = Body {
            increment: increment.map(|d| format!("{}s", d.as_secs())),
        };
        let reply = self
            .send(Call::new(Method::POST, path, Idempotent::Yes).json(&body)?)
            .await?;
        let secret: Secret = reply.decode(path)?;
        secret.auth.ok_or_else(|| Error::Decode {
            path: path.to_owned(),
            source: serde::de::Error::custom("renew response has no auth block"),
        })
    }

    /// Revokes the current token (and its children). Idempotent in effect; a retry after
    /// success answers 403 because the token is gone, which the caller may ignore.
    pub async fn token_revoke_self(&self) -> Result<()> {
        self.send(Call::new(
            Method::POST,
            "auth/token/revoke-self",
            Idempotent::No,
        ))
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_debug_hides_token() {
        let auth: Auth = serde_json::from_str(
            r#"{"client_token":"s.SUPERSECRET","accessor":"acc","policies":["default","reader"],
                "token_policies":null,"lease_duration":3600,"renewable":true,"metadata":null}"#,
        )
        .expect("parse");
        let dbg = format!("{auth:?}");
        assert!(!dbg.contains("SUPERSECRET"), "{dbg}");
        assert!(dbg.contains("reader") && dbg.contains("\"...\""), "{dbg}");
        assert_eq!(auth.ttl(), Duration::from_secs(3600));
    }

    #[test]
    fn token_info_skips_the_token_id() {
        let info: TokenInfo = serde_json::from_str(
            r#"{"id":"s.THETOKEN","accessor":"a","policies":["root"],"ttl":0,"type":"service","meta":null}"#,
        )
        .expect("parse");
        assert!(!format!("{info:?}").contains("THETOKEN"));
        assert_eq!(info.token_type, "service");
    }
}
