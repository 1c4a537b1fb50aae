//! Warden's HTTP client for OpenBao (and Vault, same API).
//!
//! Why our own client rather than `vaultrs`: Warden rotates its own mTLS identity
//! ([`Client::set_identity`]), needs typed errors carrying status, path and OpenBao's
//! `errors[]` ([`Error`]), decides per endpoint whether a call may be retried
//! ([`Idempotent`]), and uses sys/lease/wrapping endpoints other clients lack.
//!
//! # Where to start
//! - [`ClientConfig`]: address (or a cluster's several: [`ClientConfig::with_addresses`]), CA
//!   bundle, client certificate, token, retry policy; or [`ClientConfig::from_env`] for the
//!   standard `BAO_*`/`VAULT_*` variables (one address).
//! - [`Client::new`], then [`Client::wait_ready`] at start-up.
//! - Typed endpoints, by module:
//!   - lifecycle ([`Client::health`], [`Client::seal_status`], [`Client::init`],
//!     [`Client::unseal`], [`Client::seal`]);
//!   - custody ([`Client::rotate_root_init`], [`Client::generate_root_start`],
//!     [`decode_root_token`], [`Client::token_create_orphan`], [`Client::token_revoke_accessor`]);
//!   - auth ([`Client::login_cert`], [`Client::token_lookup_self`],
//!     [`Client::login_with_cert_on_demand`]);
//!   - mounts ([`Client::enable_secrets_engine`], [`Client::list_mounts`],
//!     [`Client::enable_auth`], [`Client::list_auth`], [`Client::tune_mount`]);
//!   - policies ([`Client::put_policy`], [`Client::read_policy`]);
//!   - PKI ([`Client::pki_generate_intermediate_csr`], [`Client::pki_set_signed`],
//!     [`Client::pki_ca_chain`], [`Client::pki_read_issuers`], [`Client::pki_read_issuer`]);
//!   - KV v2 and v1 ([`Client::kv2`], [`Client::kv1`]: versions, check-and-set, rollback,
//!     [`ChangeRecord`]s), transit ([`Client::transit`]), JWT login ([`Client::login_jwt`]).
//! - Anything else: the raw [`Client::read`], [`Client::write`], [`Client::list`],
//!   [`Client::delete`] with `serde_json::Value`.
//! - Reading any other server's answer over reqwest with the same size cap:
//!   [`body::read_capped`].
//!
//! # Failover
//!
//! A client built with several addresses ([`ClientConfig::with_addresses`]) keeps one
//! *current* node and sends every request there. It moves on, in the configured order and
//! wrapping around, when the current node cannot serve:
//!
//! - no connection (refused, connect timeout, DNS) or a failed TLS handshake;
//! - the node answers that it is sealed, not initialised, or a standby without an active node
//!   to forward to ([`Error::NotActive`]);
//! - for idempotent calls only ([`Idempotent::Yes`]): a request timeout, a connection lost
//!   mid-exchange, or a standby's redirect (307, which OpenBao sends when forwarding to the
//!   active node failed). For any other call these leave open whether the request was
//!   applied and only its answer lost, so it is never replayed, neither here nor elsewhere:
//!   the error is returned.
//!
//! A node that answers anything else (success, 403, 404, 400...) is live: the client sticks to
//! it, and its answer is the call's answer. One *round* tries every node at most once, without
//! waiting between nodes; when all fail, the round's error is [`Error::AllNodesFailed`],
//! naming every address and what each said, and the call's retry budget decides whether a
//! later round follows, with the usual backoff and client-wide spacing
//! ([`RetryPolicy`]). So a dead first address costs one refused connection, once: the
//! client then stays on the node that answered.
//!
//! OpenBao standbys forward writes to the active node and answer reads themselves, so any
//! unsealed node of a healthy cluster serves every request; but a standby's reads can lag the
//! active node. So a client with several addresses first asks `sys/health` which node is
//! active and starts there, at its first request and again after a node has failed (never
//! per request); when none says so (an election), the round goes on as above.
//! [`Client::wait_ready`] waits for an active node and makes it current.
//!
//! Requests that act on one node rather than on the cluster (`sys/health`,
//! `sys/seal-status`, `sys/init`, `sys/unseal`, `sys/seal`) never move: they go to the
//! current node. To address a given node, build a client for that address alone.
//!
//! The same rule governs retries on one node: a call with side effects
//! ([`Idempotent::No`]) is sent again only when no server acted on it
//! ([`Error::not_applied`]). [`Client::address`] names the current node (status pages and
//! metrics show it); [`Client::addresses`] lists them all.
//!
//! # Guarantees
//! - Tokens travel only in the `X-Vault-Token` header (marked sensitive), are never logged,
//!   and every `Debug` of a type holding a secret prints `"..."`.
//! - With a CA bundle configured, it is the only trust anchor.
//! - Retries back off exponentially with jitter and are spaced client-wide, so a sealed or
//!   restarting server sees a bounded request rate, never a storm.

mod auth;
mod b64;
pub mod body;
pub mod bounded;
mod cert_login;
mod client;
mod config;
mod custody;
mod error;
mod failover;
mod http_date;
mod jwt;
mod kv;
pub mod lease;
mod mounts;
mod pki;
mod policy;
mod raft;
mod response;
mod retry;
mod seal;
mod snapshot;
mod sys;
mod tls;
mod transit;

/// The largest answer read from OpenBao, in bytes. The largest Warden asks for are single
/// listings of a whole folder (every policy's text, every secret's metadata): 13 MB at
/// 10,000 identities. Forty times that is still a listing; past it, the answer is refused
/// before it is held whole ([`Error::TooLarge`]), so a misbehaving server or proxy cannot
/// stream a client out of memory.
pub const MAX_RESPONSE_BYTES: u64 = 512 * 1024 * 1024;

pub use auth::TokenInfo;
pub use client::{Client, ServerDate};
pub use config::{ClientConfig, DEFAULT_REQUEST_TIMEOUT};
pub use custody::{Attempt, GenerateRootProgress, OrphanToken, RotateProgress, decode_root_token};
pub use error::{BoxError, CertProblem, Error, Result, TlsFailure};
pub use failover::NodeFailure;
pub use jwt::{JwtLoginError, JwtRefusal, unverified_claims};
pub use kv::paged;
pub use kv::{
    ChangeRecord, KeyChanges, Kv1, Kv2, KvData, KvError, KvMetadata, KvVersion, SecretValue,
    VersionMeta, VersionState,
};
pub use mounts::{MountConfig, MountInfo, MountOptions, MountTtls};
pub use pki::{IntermediateCsr, Issuer, IssuerSummary, KeyType, SetSigned};
pub use raft::{AutopilotServer, AutopilotState, Leader, RaftServer};
pub use response::{Auth, Secret, WrapInfo};
pub use retry::{Idempotent, RetryPolicy, format_wait};
pub use seal::RecoveryInitResponse;
pub use snapshot::SnapshotError;
pub use sys::{Health, InitResponse, SealStatus};
pub use tls::{ClientIdentity, PEM_FILE_LIMIT};
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

    /// A loopback HTTP server that answers one request on one connection with `head` and then
    /// `chunks` (as given: the test writes the framing), and its address.
    pub(crate) async fn answering(head: String, chunks: Vec<Vec<u8>>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            conn.write_all(head.as_bytes()).await.expect("head");
            for c in chunks {
                if conn.write_all(&c).await.is_err() {
                    return; // the client stopped reading: what the test wants
                }
            }
        });
        format!("http://{addr}")
    }

    /// A chunked answer with `status`, one chunk of each size in `sizes`, for [`answering`].
    pub(crate) fn chunked(status: &str, sizes: &[usize]) -> (String, Vec<Vec<u8>>) {
        let chunk = |n: usize| format!("{n:x}\r\n{}\r\n", "a".repeat(n)).into_bytes();
        let mut chunks: Vec<Vec<u8>> = sizes.iter().map(|&n| chunk(n)).collect();
        chunks.push(b"0\r\n\r\n".to_vec());
        (
            format!("HTTP/1.1 {status}\r\nTransfer-Encoding: chunked\r\n\r\n"),
            chunks,
        )
    }
}
