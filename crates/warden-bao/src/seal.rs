//! Auto-unseal lifecycle: initialising with recovery keys, seal migration, and the periodic
//! orphan token a transit seal uses against its seal-keeper.

use std::fmt;
use std::time::Duration;

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::client::{Call, Client};
use crate::error::{Error, Result};
use crate::response::{Auth, Secret};
use crate::retry::Idempotent;
use crate::sys::{SealStatus, check_split};

/// Result of `sys/init` on a server with an auto-seal: recovery key shares (they authorise
/// rekey, generate-root and seal migration; they cannot unseal) and the initial root token.
/// `Debug` prints only how many keys there are.
#[derive(Clone, Deserialize)]
#[non_exhaustive]
pub struct RecoveryInitResponse {
    /// Recovery key shares, hex.
    pub recovery_keys: Vec<SecretString>,
    /// The same shares, base64.
    #[serde(default)]
    pub recovery_keys_base64: Vec<SecretString>,
    /// Initial root token.
    pub root_token: SecretString,
}

impl fmt::Debug for RecoveryInitResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecoveryInitResponse")
            .field(
                "recovery_keys",
                &format_args!("[...; {}]", self.recovery_keys.len()),
            )
            .field("root_token", &"...")
            .finish()
    }
}

impl Client {
    /// Initialises a server whose seal is an auto-seal (static, transit): the root key is
    /// protected by the seal, and `shares`/`threshold` split a *recovery* key instead. Never
    /// retried once sent (a second init fails and the first answer would be lost).
    pub async fn init_with_recovery(
        &self,
        shares: u8,
        threshold: u8,
    ) -> Result<RecoveryInitResponse> {
        #[derive(serde::Serialize)]
        struct Body {
            recovery_shares: u8,
            recovery_threshold: u8,
        }
        check_split("recovery threshold", shares, threshold)?;
        self.put_unauthenticated(
            "sys/init",
            &Body {
                recovery_shares: shares,
                recovery_threshold: threshold,
            },
        )
        .await
    }

    /// Submits one share of the *old* seal during a seal migration (`migrate=true`): Shamir
    /// unseal shares when leaving Shamir, recovery keys when leaving an auto-seal. The server
    /// refuses shares without the flag while a migration is pending.
    pub async fn unseal_migrate(&self, key: &SecretString) -> Result<SealStatus> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            key: &'a str,
            migrate: bool,
        }
        self.put_unauthenticated(
            "sys/unseal",
            &Body {
                key: key.expose_secret(),
                migrate: true,
            },
        )
        .await
    }

    /// Creates an orphan periodic service token with exactly `policies` (no `default`
    /// policy): the credential of a transit seal, which renews it itself and must not die
    /// with the token that created it.
    pub async fn create_orphan_periodic_token(
        &self,
        policies: &[&str],
        period: Duration,
        display_name: &str,
    ) -> Result<Auth> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            policies: &'a [&'a str],
            period: String,
            no_default_policy: bool,
            display_name: &'a str,
            renewable: bool,
        }
        let path = "auth/token/create-orphan";
        let reply = self
            .send(Call::new(Method::POST, path, Idempotent::No).json(&Body {
                policies,
                period: format!("{}s", period.as_secs()),
                no_default_policy: true,
                display_name,
                renewable: true,
            })?)
            .await?;
        let secret: Secret = reply.decode(path)?;
        secret.auth.ok_or_else(|| Error::Decode {
            path: path.to_owned(),
            source: serde::de::Error::custom("token create response has no auth block"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_init_debug_is_redacted() {
        let r: RecoveryInitResponse = serde_json::from_str(
            r#"{"keys":[],"keys_base64":[],"recovery_keys":["aaRECONE","bbRECTWO"],
                "recovery_keys_base64":["RECB64"],"root_token":"s.ROOTTOKEN"}"#,
        )
        .expect("parse");
        let dbg = format!("{r:?}");
        for secret in ["RECONE", "RECTWO", "RECB64", "ROOTTOKEN"] {
            assert!(!dbg.contains(secret), "{dbg}");
        }
        assert!(dbg.contains("[...; 2]"), "{dbg}");
    }
}
