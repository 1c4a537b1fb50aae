//! `warden-provider`: the `SecretProvider` a service uses for every secret of its own identity
//! (issue 17, seed 004, AD-1). Guide: `docs/provider.md`; decision: ADR 0019.
//!
//! # Where to start
//!
//! | need | API |
//! |---|---|
//! | connect at start-up (the four `VAULT_*` timing variables, `VAULT_*`/`BAO_*` connection, AD-1) | [`ProviderConfig::from_env`], [`SecretProvider::connect`] |
//! | log in as the identity | [`Login::identity_dir`] (the agent-managed certificate), [`Login::Cert`], [`Login::approle`] |
//! | read a KV v2 / v1 secret | [`SecretProvider::kv2`], [`SecretProvider::kv1`], [`SecretProvider::get`] → [`Secret`] |
//! | rotate a secret with dual keys | [`SecretProvider::rotate_secret`], [`SecretProvider::dual_secret`] → [`DualSecret`] |
//! | be told when a secret changes | [`SecretProvider::watch`] → [`WatchHandle`] |
//! | database credentials with lease renewal | [`SecretProvider::database_credentials`] → [`DatabaseCredentials`] |
//! | transit (own keys) | [`SecretProvider::encrypt`], [`SecretProvider::decrypt`], [`SecretProvider::sign`], [`SecretProvider::verify`] |
//! | JWT signing keys (rotate, sign, verify, JWKS) | [`SecretProvider::signing_keys`] → [`warden_keys::SigningKeys`], [`SecretProvider::watch_signing_keys`] |
//!
//! # Guarantees
//! - **Start-up contract**: [`SecretProvider::connect`] retries while OpenBao is unreachable or
//!   sealed, with delays from `VAULT_RETRY_INITIAL_MS` (250) doubling to `VAULT_RETRY_MAX_MS`
//!   (16000), each logged (attempt, delay, reason); after `VAULT_INIT_TIMEOUT_SEC` (120) it
//!   returns [`Error::InitTimeout`], whose message names the address, the budget and the last
//!   failure. A service exits non-zero with it.
//! - **AD-1**: no secret is ever read from the environment; [`ProviderConfig::from_env`]
//!   refuses to start when a variable looks like one ([`secret_env_names`]), naming it.
//! - **Last good value**: reads during an outage (sealed, down, unreachable) return the last
//!   value read, marked [`Secret::is_stale`] with its [`Secret::age`]; an error only if the
//!   secret was never loaded. A denied or deleted secret is never served from the cache.
//! - **Secrets stay secret**: values are `SecretString`/`Zeroizing` (wiped on drop), every
//!   `Debug` prints `"..."` for them, logs carry paths and reasons only.
//!
//! # Example
//!
//! A service that starts under the contract, reads its database password and signs a token
//! (`no_run`: it needs a server):
//!
//! ```no_run
//! use secrecy::ExposeSecret;
//! use warden_keys::{KvLocation, SigningKeyConfig};
//! use warden_provider::{ProviderConfig, SecretProvider};
//! use warden_spec::SigningAlgorithm;
//!
//! # async fn service() -> Result<(), Box<dyn std::error::Error>> {
//! // VAULT_ADDR, VAULT_CACERT, WARDEN_IDENTITY_DIR, VAULT_INIT_TIMEOUT_SEC... from the environment.
//! let provider = SecretProvider::connect(ProviderConfig::from_env()?).await?;
//!
//! let db = provider.kv2("secret", "platform/billing/db").await?;
//! let password = db.field("password").expect("the secret has a password");
//! assert!(!password.expose_secret().is_empty());
//!
//! let keys = provider
//!     .signing_keys(SigningKeyConfig::new(
//!         KvLocation::new("secret", "platform/iam/jwt-keys"),
//!         SigningAlgorithm::Es256,
//!     ))
//!     .await?;
//! let _reload = provider.watch_signing_keys(&keys, |set| {
//!     tracing::info!(kid = %set.current().kid, "signing with a new key");
//! });
//! let token = keys.sign(&serde_json::json!({ "sub": "alice", "exp": 4_102_444_800_i64 }))?;
//! assert_eq!(keys.verify(&token).await?["sub"], "alice");
//! # Ok(()) }
//! ```
//!
//! The timing and the AD-1 rule need no server:
//!
//! ```
//! use std::time::Duration;
//! use warden_provider::{Settings, secret_env_names};
//!
//! let s = Settings::from_env_with(|name| (name == "VAULT_INIT_TIMEOUT_SEC").then(|| "3".into()))?;
//! assert_eq!(s.init_timeout, Duration::from_secs(3));
//! let delays: Vec<u128> = s.backoff().take(8).map(|d| d.as_millis()).collect();
//! assert_eq!(delays, [250, 500, 1000, 2000, 4000, 8000, 16000, 16000]);
//!
//! assert_eq!(secret_env_names(["HOME", "DB_PASSWORD", "VAULT_TOKEN"]), ["DB_PASSWORD", "VAULT_TOKEN"]);
//! # Ok::<(), warden_provider::Error>(())
//! ```

mod database;
mod error;
mod keys;
mod login;
mod provider;
mod secret;
mod settings;
mod transit;
mod watch;

pub use database::{DatabaseCredentials, DbCredentials};
pub use error::Error;
pub use login::Login;
pub use provider::{ProviderConfig, SecretProvider};
pub use secret::{DualSecret, Secret, SecretPath};
pub use settings::{SECRET_ENV_SUFFIXES, Settings, refuse_secret_env, secret_env_names};
pub use watch::WatchHandle;

/// Re-exported so services need not depend on these crates for the types they receive.
pub use secrecy::{ExposeSecret, SecretString};
pub use warden_keys::{SigningKeyConfig, SigningKeys};
