//! The generic OpenBao response envelope (`data`, `auth`, `wrap_info`, lease fields), used by
//! the raw calls and unwrapped by the typed ones.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};

/// The `auth` block of a login: the new token and what it may do. `Debug` hides the token.
#[derive(Clone, Deserialize)]
#[non_exhaustive]
pub struct Auth {
    /// The token to send as `X-Vault-Token`.
    pub client_token: SecretString,
    /// Accessor: names the token for lookup/revocation without granting its power.
    #[serde(default, deserialize_with = "null_default")]
    pub accessor: String,
    /// All policies attached (token + identity).
    #[serde(default, deserialize_with = "null_default")]
    pub policies: Vec<String>,
    /// Policies attached to the token itself.
    #[serde(default, deserialize_with = "null_default")]
    pub token_policies: Vec<String>,
    /// TTL in seconds.
    #[serde(default, deserialize_with = "null_default")]
    pub lease_duration: u64,
    /// Whether the token can be renewed.
    #[serde(default, deserialize_with = "null_default")]
    pub renewable: bool,
    /// Identity entity the login mapped to.
    #[serde(default, deserialize_with = "null_default")]
    pub entity_id: String,
    /// Auth-method metadata (e.g. the cert role name and common name).
    #[serde(default, deserialize_with = "null_default")]
    pub metadata: BTreeMap<String, String>,
}

impl Auth {
    /// The token's TTL.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.lease_duration)
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("client_token", &"...")
            .field("accessor", &self.accessor)
            .field("policies", &self.policies)
            .field("token_policies", &self.token_policies)
            .field("lease_duration", &self.lease_duration)
            .field("renewable", &self.renewable)
            .field("entity_id", &self.entity_id)
            .field("metadata", &self.metadata)
            .finish()
    }
}

/// A response envelope. `data` may hold secrets, so `Debug` shows only its top-level keys.
#[derive(Clone, Deserialize)]
#[non_exhaustive]
pub struct Secret {
    /// Server-side request id (for correlating with the audit log).
    #[serde(default, deserialize_with = "null_default")]
    pub request_id: String,
    /// Lease of a dynamic secret ("" when none).
    #[serde(default, deserialize_with = "null_default")]
    pub lease_id: String,
    /// Lease length in seconds.
    #[serde(default, deserialize_with = "null_default")]
    pub lease_duration: u64,
    /// Whether the lease can be renewed.
    #[serde(default, deserialize_with = "null_default")]
    pub renewable: bool,
    /// The payload.
    #[serde(default)]
    pub data: Option<serde_json::Value>,
    /// Server warnings (deprecated parameters, ignored fields...).
    #[serde(default, deserialize_with = "null_default")]
    pub warnings: Vec<String>,
    /// Present on logins and token creation.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// Present when the response was wrapped.
    #[serde(default)]
    pub wrap_info: Option<WrapInfo>,
}

impl Secret {
    /// Deserialises `data` into `T`; a missing `data` is a [`Error::Decode`].
    pub fn data_as<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let data = self.data.clone().unwrap_or(serde_json::Value::Null);
        serde_json::from_value(data).map_err(|source| Error::Decode {
            path: path.to_owned(),
            source,
        })
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Option<Vec<&String>> = self
            .data
            .as_ref()
            .and_then(serde_json::Value::as_object)
            .map(|m| m.keys().collect());
        f.debug_struct("Secret")
            .field("request_id", &self.request_id)
            .field("lease_id", &self.lease_id)
            .field("lease_duration", &self.lease_duration)
            .field("renewable", &self.renewable)
            .field("data_keys", &keys)
            .field("data", &self.data.as_ref().map(|_| "..."))
            .field("warnings", &self.warnings)
            .field("auth", &self.auth)
            .field("wrap_info", &self.wrap_info)
            .finish()
    }
}

/// A response-wrapping token and its metadata. `Debug` hides the token.
#[derive(Clone, Deserialize)]
#[non_exhaustive]
pub struct WrapInfo {
    /// The single-use wrapping token.
    pub token: SecretString,
    /// Its accessor.
    #[serde(default)]
    pub accessor: String,
    /// TTL in seconds.
    #[serde(default)]
    pub ttl: u64,
    /// When it was created (RFC 3339).
    #[serde(default)]
    pub creation_time: String,
    /// The path whose response was wrapped.
    #[serde(default)]
    pub creation_path: String,
}

impl fmt::Debug for WrapInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrapInfo")
            .field("token", &"...")
            .field("accessor", &self.accessor)
            .field("ttl", &self.ttl)
            .field("creation_time", &self.creation_time)
            .field("creation_path", &self.creation_path)
            .finish()
    }
}

/// OpenBao writes `null` for empty lists and strings in places; treat it as the default.
pub(crate) fn null_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_tolerates_nulls_and_hides_data() {
        let s: Secret = serde_json::from_str(
            r#"{"request_id":"r","lease_id":"","renewable":false,"lease_duration":0,
                "data":{"password":"hunter2-SECRET"},"wrap_info":null,"warnings":null,"auth":null}"#,
        )
        .expect("parse");
        assert_eq!(s.warnings, Vec::<String>::new());
        let dbg = format!("{s:?}");
        assert!(dbg.contains("password"), "{dbg}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
    }

    #[test]
    fn wrap_info_hides_token() {
        let s: Secret = serde_json::from_str(
            r#"{"wrap_info":{"token":"s.WRAPSECRET","accessor":"a","ttl":60,"creation_time":"t","creation_path":"p"}}"#,
        )
        .expect("parse");
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("WRAPSECRET"), "{dbg}");
        assert!(dbg.contains("\"...\""));
    }
}
