//! `warden-keys`: dual-key rotated JWT signing keys and domain TLS certificates, both kept in
//! OpenBao KV v2.
//!
//! A signing key lives at `<kv mount>/data/<kv_prefix>/signing/<name>`
//! ([`warden_spec::naming::signing_key`]); every rotation is a new KV version holding a fresh
//! key pair. The version it replaces keeps verifying for a grace period (default 24 h) after
//! the rotation, so tokens already handed out stay good while every service picks up the new
//! key; then it stops. A service holds a [`SigningKeys`],
//! signs with the current version, verifies against the versions still in their window,
//! publishes them as a JWKS, and reloads without a restart through [`SigningKeys::watch`].
//!
//! # Where to start
//!
//! | need | API |
//! |---|---|
//! | name a key (from the spec or by hand) | [`SigningKeyConfig::from_spec`], [`SigningKeyConfig::new`], [`KvLocation`] |
//! | load it in a service | [`SigningKeys::load`], then [`SigningKeys::get`] → [`KeySet`] |
//! | sign / verify a JWT | [`SigningKeys::sign`], [`SigningKeys::verify`]; offline: [`sign`], [`verify`] with a [`KeySet`] or [`Jwks`] |
//! | publish the JWKS | [`SigningKeys::jwks`], [`KeySet::jwks`] |
//! | rotate (CAS: one concurrent rotation wins) | [`SigningKeys::rotate`]; without loading: [`rotate()`], or [`current_version`] then [`rotate_if_current`] (preview, then act) |
//! | reload on rotation | [`SigningKeys::watch`] with [`WatchOptions`] → [`WatchHandle`] |
//! | time | [`Clock`]: [`SystemClock`] in production, [`ManualClock`] in tests |
//! | domain certificates | [`DomainStore::status`], [`DomainStore::renew_if_due`] with an [`Issuer`] ([`PkiIssuer`] or [`AcmeIssuer`], ADR 0031), [`DomainStore::current`] |
//!
//! Modules: `provider` ([`SigningKeys`], what a service holds), `keyset` (one key's versions
//! and their grace windows), `rotate` (loading and rotating in KV v2, shared by the provider,
//! the watcher and `warden rotate`), `watch` (reloading on rotation), `kv` (the few KV v2
//! calls), `material`, `jwk` and `jws` (keys, JWKS, compact JWS), `clock` (injected time),
//! `domain` (domain certificates), `error`.
//!
//! # Guarantees
//! - A version verifies while it is current, or until the next version's creation time (the
//!   server's clock) plus that version's grace — or plus its own declared
//!   `max_token_lifetime` when that is longer, so a token it signed verifies until its `exp`;
//!   see [`keyset`](KeySet) for the exact rule. A version with a declared lifetime refuses to
//!   sign a token that would live longer ([`Error::TokenLifetime`]).
//! - Algorithms: ES256, EdDSA and RS256 (RSA 2048 or 3072 bits, [`PrivateKey::generate_rsa`],
//!   [`SigningKeyConfig::with_rsa_bits`]).
//! - Writes are check-and-set on the version read first; a lost race is [`Error::Conflict`]
//!   with nothing written. The first write also makes the secret check-and-set only.
//! - Private keys are held by aws-lc-rs or in `Zeroizing` buffers; response bodies that carried
//!   them are wiped after parsing; no `Debug` prints key bytes.
//! - Time is injected ([`Clock`]); nothing here sleeps to decide validity.
//! - Nothing is printed: errors are [`Error`] (infrastructure, key material) and
//!   [`VerifyError`] (a token refused).
//!
//! # Example
//! ```no_run
//! # async fn demo(client: warden_bao::Client) -> Result<(), warden_keys::Error> {
//! use std::sync::Arc;
//! use warden_keys::{KvLocation, SigningKeyConfig, SigningKeys, SystemClock, WatchOptions};
//! use warden_spec::SigningAlgorithm;
//!
//! let config = SigningKeyConfig::new(
//!     KvLocation::new("kvv2", "billing/signing/jwt"),
//!     SigningAlgorithm::Es256,
//! );
//! let keys = SigningKeys::load(client, config, Arc::new(SystemClock)).await?;
//! let _watch = keys.watch(WatchOptions::default(), |set| {
//!     tracing::info!(kid = %set.current().kid, "now signing with a new key");
//! });
//! let token = keys.sign(&serde_json::json!({ "sub": "alice", "exp": 4_102_444_800_i64 }))?;
//! let claims = keys.verify(&token).await.expect("own token verifies");
//! assert_eq!(claims["sub"], "alice");
//! # Ok(()) }
//! ```

mod clock;
mod domain;
mod error;
mod jwk;
mod jws;
mod keyset;
mod kv;
mod material;
mod provider;
mod rotate;
mod watch;

pub use clock::{Clock, ManualClock, SystemClock};
pub use domain::{
    AcmeIssuer, DomainState, DomainStatus, DomainStore, Issuer, PkiIssuer, Renewal,
    StoredCertificate,
};
pub use error::{Error, Result, VerifyError};
pub use jwk::{Jwk, Jwks};
pub use jws::{Claims, KeyLookup, sign, verify};
pub use keyset::{KeySet, VersionKey};
pub use kv::{KvLocation, VersionInfo};
pub use material::{PrivateKey, PublicKey};
pub use provider::{SigningKeys, UNKNOWN_KID_RELOAD_SPACING};
pub use rotate::{
    MAX_VERSIONS_SCANNED, Retiring, Rotation, SigningKeyConfig, current_version, load, rotate,
    rotate_if_current,
};
pub use watch::{WatchHandle, WatchOptions};
