//! Server lifecycle: health, init, seal/unseal, and waiting for a usable server.

use std::fmt;

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::client::{Call, Client};
use crate::error::{Error, Result};
use crate::response::null_default;
use crate::retry::Idempotent;

/// `sys/health`. OpenBao encodes state in the HTTP status (429 standby, 472/473 DR/perf
/// standby, 501 not initialised, 503 sealed); the body says the same, so both are returned.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// `sys/init` has been done.
    pub initialized: bool,
    /// The barrier is sealed.
    pub sealed: bool,
    /// This node is a standby (also true while sealed).
    pub standby: bool,
    /// Performance standby (Enterprise-style; false on a single OpenBao node).
    #[serde(default, deserialize_with = "null_default")]
    pub performance_standby: bool,
    /// Server version, e.g. "2.7.2".
    #[serde(default, deserialize_with = "null_default")]
    pub version: String,
    /// Cluster name (absent while sealed).
    #[serde(default)]
    pub cluster_name: Option<String>,
    /// Cluster id (absent while sealed).
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// Server clock, Unix seconds: useful to detect clock skew before issuing certificates.
    #[serde(default)]
    pub server_time_utc: Option<u64>,
    /// The HTTP status the server answered with.
    #[serde(skip)]
    pub http_status: u16,
}

impl Health {
    /// Initialised, unsealed and active: ready to serve.
    pub fn is_ready(&self) -> bool {
        self.initialized && !self.sealed && !self.standby
    }
}

/// `sys/seal-status`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct SealStatus {
    /// Seal type: "shamir", "static", "transit"...
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub seal_type: String,
    /// `sys/init` has been done.
    pub initialized: bool,
    /// The barrier is sealed.
    pub sealed: bool,
    /// Key shares needed to unseal.
    #[serde(rename = "t", default)]
    pub threshold: u8,
    /// Key shares in total.
    #[serde(rename = "n", default)]
    pub shares: u8,
    /// Shares submitted so far in the current unseal attempt.
    #[serde(default)]
    pub progress: u8,
    /// Nonce of the current unseal attempt.
    #[serde(default, deserialize_with = "null_default")]
    pub nonce: String,
    /// Server version.
    #[serde(default, deserialize_with = "null_default")]
    pub version: String,
    /// Storage backend ("raft", "inmem"...).
    #[serde(default)]
    pub storage_type: Option<String>,
    /// A seal migration is pending or running (the configured seal differs from the stored
    /// one); shares must then be sent with `migrate=true`.
    #[serde(default)]
    pub migration: bool,
    /// The server uses recovery keys (an auto-seal); `t`/`n` then describe them.
    #[serde(default)]
    pub recovery_seal: bool,
}

/// Result of `sys/init`: the unseal key shares and the initial root token. The most
/// sensitive thing OpenBao ever returns; `Debug` prints only how many keys there are.
#[derive(Clone, Deserialize)]
#[non_exhaustive]
pub struct InitResponse {
    /// Unseal key shares, hex.
    pub keys: Vec<SecretString>,
    /// The same shares, base64.
    #[serde(default)]
    pub keys_base64: Vec<SecretString>,
    /// Initial root token: revoke it once the real auth methods are set up.
    pub root_token: SecretString,
}

impl fmt::Debug for InitResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitResponse")
            .field("keys", &format_args!("[...; {}]", self.keys.len()))
            .field(
                "keys_base64",
                &format_args!("[...; {}]", self.keys_base64.len()),
            )
            .field("root_token", &"...")
            .finish()
    }
}

impl Client {
    /// One `sys/health` probe, no retry. Answers with a [`Health`] for every state the
    /// server can report (including sealed and uninitialised); errors only when there is
    /// no answer (unreachable, TLS) or an unexpected status.
    /// Asks the current node (see [`Client::address`]).
    pub async fn health(&self) -> Result<Health> {
        self.health_at(self.nodes().current()).await
    }

    /// [`Client::health`] of node `i`.
    pub(crate) async fn health_at(&self, i: usize) -> Result<Health> {
        let path = "sys/health";
        let call = Call::get(path)
            .unauthenticated()
            .accept(&[429, 472, 473, 501, 503]);
        let reply = self.send_to(i, &call).await?;
        let mut health: Health = reply.decode(path)?;
        health.http_status = reply.status;
        Ok(health)
    }

    /// Waits until the server answers at all (any state), retrying unreachable/timeout/5xx
    /// failures until `startup_timeout`. For init flows that must see an uninitialised or
    /// sealed server rather than fail on it.
    pub async fn wait_reachable(&self) -> Result<Health> {
        let budget = self.retry_policy().startup_timeout;
        self.retrying("wait_reachable", budget, Error::is_retryable, || {
            self.health()
        })
        .await
    }

    /// Waits until the server is initialised, unsealed and active, retrying while it is
    /// unreachable, sealed or standby, with backoff, until `startup_timeout`; then
    /// [`Error::GaveUp`] (whose `last` says which state it was stuck in). With several
    /// addresses, the first active node found becomes the current one.
    ///
    /// Returns [`Error::NotInitialized`] at once: nobody is going to initialise the server
    /// while we wait, so waiting would only delay the real fix.
    pub async fn wait_ready(&self) -> Result<Health> {
        let budget = self.retry_policy().startup_timeout;
        self.retrying("wait_ready", budget, Error::is_retryable, || {
            self.ready_round()
        })
        .await
    }

    /// `sys/seal-status` (unauthenticated).
    pub async fn seal_status(&self) -> Result<SealStatus> {
        let path = "sys/seal-status";
        self.send(Call::get(path).unauthenticated())
            .await?
            .decode(path)
    }

    /// Initialises the server with Shamir `shares`/`threshold`. Never retried once sent: a
    /// second init fails ("already initialized") and the first answer would be lost.
    pub async fn init(&self, shares: u8, threshold: u8) -> Result<InitResponse> {
        #[derive(serde::Serialize)]
        struct Body {
            secret_shares: u8,
            secret_threshold: u8,
        }
        check_split("threshold", shares, threshold)?;
        self.put_unauthenticated(
            "sys/init",
            &Body {
                secret_shares: shares,
                secret_threshold: threshold,
            },
        )
        .await
    }

    /// The one way a call that moves the server's unseal state is sent (init, an unseal share,
    /// a generate-root share): unauthenticated, because a sealed or uninitialised server has no
    /// tokens, and never retried once sent, because a repeat would be refused or would count
    /// the share twice and the first answer would be lost.
    pub(crate) async fn put_unauthenticated<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T> {
        self.send(
            Call::new(Method::PUT, path, Idempotent::No)
                .unauthenticated()
                .json(body)?,
        )
        .await?
        .decode(path)
    }

    /// Submits one unseal key share; the answer says the progress.
    pub async fn unseal(&self, key: &SecretString) -> Result<SealStatus> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            key: &'a str,
        }
        self.put_unauthenticated(
            "sys/unseal",
            &Body {
                key: key.expose_secret(),
            },
        )
        .await
    }

    /// Seals the server (needs a root/sudo token). Emergency brake: every client loses access.
    pub async fn seal(&self) -> Result<()> {
        self.send(Call::new(Method::PUT, "sys/seal", Idempotent::No))
            .await
            .map(drop)
    }
}

/// Refuses a key split OpenBao would refuse anyway, before anything is sent: `what` names the
/// threshold in the message ("threshold", "recovery threshold").
pub(crate) fn check_split(what: &str, shares: u8, threshold: u8) -> Result<()> {
    if threshold == 0 || threshold > shares {
        return Err(Error::config(format!(
            "init: {what} {threshold} must be between 1 and shares ({shares})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_parses_sealed_body() {
        let h: Health = serde_json::from_str(
            r#"{"initialized":true,"sealed":true,"standby":true,"replication_performance_mode":"unknown",
                "replication_dr_mode":"unknown","server_time_utc":1795442884,"version":"2.7.2"}"#,
        )
        .expect("parse");
        assert!(h.sealed && h.initialized && !h.is_ready());
        assert_eq!(h.cluster_name, None);
    }

    #[test]
    fn seal_status_maps_t_and_n() {
        let s: SealStatus = serde_json::from_str(
            r#"{"type":"shamir","initialized":true,"sealed":false,"t":2,"n":3,"progress":0,"nonce":"",
                "version":"2.7.2","storage_type":"raft"}"#,
        )
        .expect("parse");
        assert_eq!(
            (s.threshold, s.shares, s.seal_type.as_str()),
            (2, 3, "shamir")
        );
    }

    #[test]
    fn init_response_debug_is_redacted() {
        let r: InitResponse = serde_json::from_str(
            r#"{"keys":["aa11KEYONE","bb22KEYTWO"],"keys_base64":["KEYB64"],"root_token":"s.ROOTTOKEN"}"#,
        )
        .expect("parse");
        let dbg = format!("{r:?}");
        for secret in ["KEYONE", "KEYTWO", "KEYB64", "ROOTTOKEN"] {
            assert!(!dbg.contains(secret), "{dbg}");
        }
        assert!(dbg.contains("[...; 2]"), "{dbg}");
    }
}
