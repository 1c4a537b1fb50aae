//! Warden's HTTP client for OpenBao (and Vault, same API).
//!
//! Why our own client rather than `vaultrs`: Warden rotates its own mTLS identity
//! ([`Client::set_identity`]), needs typed errors carrying status, path and OpenBao's
//! `errors[]` ([`Error`]), decides per endpoint whether a call may be retried
//! ([`Idempotent`]), and uses sys/lease/wrapping endpoints other clients lack.
//!
//! # Where to start
//! - [`ClientConfig`]: address, CA bundle, client certificate, token, retry policy; or
//!   [`ClientConfig::from_env`] for the standard `BAO_*`/`VAULT_*` variables.
//! - [`Client::new`], then [`Client::wait_ready`] at start-up.
//! - Typed endpoints, by module:
//!   - lifecycle ([`Client::health`], [`Client::seal_status`], [`Client::init`],
//!     [`Client::unseal`], [`Client::seal`]);
//!   - custody ([`Client::rotate_root_init`], [`Client::generate_root_start`],
//!     [`decode_root_token`], [`Client::token_create_orphan`], [`Client::token_revoke_accessor`]);
//!   - auth ([`Client::login_cert`], [`Client::token_lookup_self`]);
//!   - mounts ([`Client::enable_secrets_engine`], [`Client::list_mounts`],
//!     [`Client::enable_auth`], [`Client::list_auth`], [`Client::tune_mount`]);
//!   - policies ([`Client::put_policy`], [`Client::read_policy`]);
//!   - PKI ([`Client::pki_generate_intermediate_csr`], [`Client::pki_set_signed`],
//!     [`Client::pki_ca_chain`], [`Client::pki_read_issuers`], [`Client::pki_read_issuer`]);
//!   - KV v2 and v1 ([`Client::kv2`], [`Client::kv1`]: versions, check-and-set, rollback,
//!     [`ChangeRecord`]s), transit ([`Client::transit`]), JWT login ([`Client::login_jwt`]).
//! - Anything else: the raw [`Client::read`], [`Client::write`], [`Client::list`],
//!   [`Client::delete`] with `serde_json::Value`.
//!
//! # Guarantees
//! - Tokens travel only in the `X-Vault-Token` header (marked sensitive), are never logged,
//!   and every `Debug` of a type holding a secret prints `"..."`.
//! - With a CA bundle configured, it is the only trust anchor.
//! - Retries back off exponentially with jitter and are spaced client-wide, so a sealed or
//!   restarting server sees a bounded request rate, never a storm.

mod auth;
mod b64;
mod client;
mod config;
mod custody;
mod error;
mod jwt;
mod kv;
pub mod lease;
mod mounts;
mod pki;
mod policy;
mod response;
mod retry;
mod sys;
mod tls;
mod transit;

pub use auth::TokenInfo;
pub use client::{Client, ServerDate};
pub use config::{ClientConfig, DEFAULT_REQUEST_TIMEOUT};
pub use custody::{GenerateRootProgress, OrphanToken, RotateProgress, decode_root_token};
pub use error::{BoxError, CertProblem, Error, Result, TlsFailure};
pub use jwt::{JwtLoginError, JwtRefusal, unverified_claims};
pub use kv::{
    ChangeRecord, KeyChanges, Kv1, Kv2, KvData, KvError, KvMetadata, KvVersion, SecretValue,
    VersionMeta, VersionState,
};
pub use mounts::{MountConfig, MountInfo, MountOptions, MountTtls};
pub use pki::{IntermediateCsr, Issuer, IssuerSummary, KeyType, SetSigned};
pub use response::{Auth, Secret, WrapInfo};
pub use retry::{Idempotent, RetryPolicy, format_wait};
pub use sys::{Health, InitResponse, SealStatus};
pub use tls::ClientIdentity;
pub use transit::{
    Ciphertext, KeyInfo, Plaintext, Signature, Transit, TransitError, input_version,
};

/// Re-exported so callers need not depend on `secrecy` to pass tokens and keys.
pub use secrecy::{ExposeSecret, SecretString};

#[cfg(test)]
pub(crate) mod test_support {
    /// A throwaway self-signed certificate and key (PEM), generated in code.
    pub(crate) fn self_signed() -> (Vec<u8>, Vec<u8>) {
        let key = rcgen::KeyPair::generate().expect("keygen");
        let cert = rcgen::CertificateParams::new(vec!["client.test".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("self-sign");
        (cert.pem().into_bytes(), key.serialize_pem().into_bytes())
    }
}
