//! Leased secrets: issuing dynamic database credentials and keeping their leases alive.
//!
//! * [`Client::database_credentials`] reads `<mount>/creds/<role>` (every read creates a new
//!   database user) and decodes the password straight into a [`SecretString`] from the wiped
//!   response buffer, so it never sits in a plain `serde_json::Value`.
//! * [`Client::lease_renew`] and [`Client::lease_revoke`] use `sys/leases/renew` and
//!   `sys/leases/revoke` with the lease id in the *body* (what a policy granting `update` on
//!   those two exact paths allows).
//!
//! A lease id is not a credential (it cannot log in anywhere), but whoever holds it and may
//! revoke leases can cut a service off its database, so [`Lease`]'s `Debug` shows only the
//! path part of it.

use std::fmt;
use std::time::Duration;

use reqwest::Method;
use secrecy::SecretString;
use serde::Deserialize;

use crate::client::{Call, Client};
use crate::error::{Error, Result};
use crate::response::null_default;
use crate::retry::Idempotent;

/// A lease as OpenBao reports it when a secret is issued or renewed.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Lease {
    /// `<mount>/creds/<role>/<random>`.
    #[serde(default, deserialize_with = "null_default")]
    pub lease_id: String,
    /// Seconds the lease lives from now.
    #[serde(default, deserialize_with = "null_default")]
    pub lease_duration: u64,
    /// Whether `sys/leases/renew` can extend it.
    #[serde(default, deserialize_with = "null_default")]
    pub renewable: bool,
    /// Server warnings (a renewal capped by the role's `max_ttl` says so here).
    #[serde(default, deserialize_with = "null_default")]
    pub warnings: Vec<String>,
}

impl Lease {
    /// [`Lease::lease_duration`] as a `Duration`.
    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.lease_duration)
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("lease_id", &redacted_lease_id(&self.lease_id))
            .field("lease_duration", &self.lease_duration)
            .field("renewable", &self.renewable)
            .field("warnings", &self.warnings)
            .finish()
    }
}

/// `postgres/creds/billing/...`: the path part of a lease id, for logs and `Debug`.
pub fn redacted_lease_id(lease_id: &str) -> String {
    match lease_id.rsplit_once('/') {
        Some((path, _)) => format!("{path}/..."),
        None if lease_id.is_empty() => String::new(),
        None => "...".to_owned(),
    }
}

/// Dynamic database credentials and their lease. `Debug` never shows the password.
#[derive(Clone)]
#[non_exhaustive]
pub struct DatabaseCredentials {
    /// The lease.
    pub lease: Lease,
    /// The database user OpenBao created.
    pub username: String,
    /// Its password.
    pub password: SecretString,
}

impl fmt::Debug for DatabaseCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseCredentials")
            .field("lease", &self.lease)
            .field("username", &self.username)
            .field("password", &"...")
            .finish()
    }
}

#[derive(Deserialize)]
struct CredsEnvelope {
    #[serde(flatten)]
    lease: Lease,
    data: Option<CredsData>,
}

#[derive(Deserialize)]
struct CredsData {
    username: String,
    password: SecretString,
}

#[derive(serde::Serialize)]
struct LeaseBody<'a> {
    lease_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    increment: Option<u64>,
}

impl Client {
    /// Issues new credentials: `GET <path>` (`<mount>/creds/<role>`). Never retried once
    /// sent: each answer is a new database user with its own lease.
    ///
    /// Errors: [`Error::PermissionDenied`] when the policy does not grant `read` on the path,
    /// [`Error::Decode`] when the answer has no `username`/`password` (not a database
    /// credentials endpoint), and the usual transport errors.
    pub async fn database_credentials(&self, path: &str) -> Result<DatabaseCredentials> {
        let reply = self
            .send(Call::new(Method::GET, path, Idempotent::No))
            .await?;
        let envelope: CredsEnvelope = reply.decode(path)?;
        let data = envelope.data.ok_or_else(|| Error::Decode {
            path: path.to_owned(),
            source: serde::de::Error::custom("the answer carries no credentials (`data` is empty)"),
        })?;
        Ok(DatabaseCredentials {
            lease: envelope.lease,
            username: data.username,
            password: data.password,
        })
    }

    /// Renews a lease by `increment` from now (the server may grant less: a lease never
    /// outlives its role's `max_ttl`). Idempotent: repeating it asks for the same end time.
    ///
    /// A lease that expired or was revoked answers [`Error::BadRequest`] ("lease not found").
    pub async fn lease_renew(&self, lease_id: &str, increment: Option<Duration>) -> Result<Lease> {
        let path = "sys/leases/renew";
        let body = LeaseBody {
            lease_id,
            increment: increment.map(|d| d.as_secs().max(1)),
        };
        let reply = self
            .send(Call::new(Method::PUT, path, Idempotent::Yes).json(&body)?)
            .await?;
        reply.decode(path)
    }

    /// Revokes a lease now (the database engine drops the user). Revoking a lease that is
    /// already gone succeeds.
    pub async fn lease_revoke(&self, lease_id: &str) -> Result<()> {
        let path = "sys/leases/revoke";
        let body = LeaseBody {
            lease_id,
            increment: None,
        };
        self.send(Call::new(Method::PUT, path, Idempotent::Yes).json(&body)?)
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn credentials_decode_with_their_lease_and_hide_the_password() {
        let body =
            br#"{"request_id":"r","lease_id":"postgres/creds/billing/AbC123","renewable":true,
            "lease_duration":20,"data":{"username":"v-cert-billing-x","password":"Pw-SECRET-1"},
            "wrap_info":null,"warnings":null,"auth":null}"#;
        let env: CredsEnvelope = serde_json::from_slice(body).unwrap();
        let data = env.data.unwrap();
        let creds = DatabaseCredentials {
            lease: env.lease,
            username: data.username,
            password: data.password,
        };
        assert_eq!(creds.lease.lease_id, "postgres/creds/billing/AbC123");
        assert_eq!(creds.lease.duration(), Duration::from_secs(20));
        assert!(creds.lease.renewable);
        assert_eq!(creds.password.expose_secret(), "Pw-SECRET-1");
        let dbg = format!("{creds:?}");
        assert!(!dbg.contains("Pw-SECRET-1"), "{dbg}");
        assert!(!dbg.contains("AbC123"), "{dbg}");
        assert!(dbg.contains("postgres/creds/billing/..."), "{dbg}");
    }

    #[test]
    fn a_renewal_answer_decodes_with_nulls() {
        let lease: Lease = serde_json::from_str(
            r#"{"lease_id":"postgres/creds/billing/x","renewable":true,"lease_duration":13,"data":null,"warnings":["TTL of \"20s\" exceeded the effective max_ttl of \"13s\"; TTL value is capped accordingly"]}"#,
        )
        .unwrap();
        assert_eq!(lease.lease_duration, 13);
        assert_eq!(lease.warnings.len(), 1);
        let lease: Lease = serde_json::from_str(r#"{"lease_id":null,"warnings":null}"#).unwrap();
        assert_eq!(lease.lease_duration, 0);
    }

    #[test]
    fn lease_ids_are_shown_by_path_only() {
        assert_eq!(
            redacted_lease_id("postgres/creds/a/xyz"),
            "postgres/creds/a/..."
        );
        assert_eq!(redacted_lease_id("xyz"), "...");
        assert_eq!(redacted_lease_id(""), "");
    }
}
