//! The crate's two error types: [`Error`] for talking to OpenBao and handling key material,
//! [`VerifyError`] for a token that does not verify (an expected outcome, kept apart so a
//! service can answer 401 without inspecting infrastructure failures).

use time::OffsetDateTime;

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong loading, rotating, publishing or renewing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An OpenBao call failed (unreachable, sealed, denied...); `source` says which.
    #[error("{what} {path}: {source}")]
    Bao {
        /// What was being done (`read metadata of`, `write`...).
        what: &'static str,
        /// The request path, relative to `/v1/`.
        path: String,
        /// The client's typed error (boxed: it is large, and errors travel by value).
        #[source]
        source: Box<warden_bao::Error>,
    },

    /// A KV v2 call failed (unreachable, sealed, denied...); `source` names mount and path.
    #[error("could not {what} {source}")]
    Kv {
        /// What was being done (`read`, `write`...).
        what: &'static str,
        /// The KV error (boxed, as above).
        #[source]
        source: Box<warden_bao::KvError>,
    },

    /// Check-and-set refused the write: someone else wrote a new version after we read
    /// version `expected`. Nothing of ours was written; the other writer won.
    #[error(
        "{path} changed while we were writing it: expected version {expected} to be current, but another rotation or renewal wrote a newer one first (nothing of ours was written)"
    )]
    Conflict {
        /// The KV v2 data path.
        path: String,
        /// The version our write was conditioned on (0 = "must not exist yet").
        expected: u64,
    },

    /// The path holds no live version yet (never written, or every version deleted).
    #[error("no signing key at {path} yet: rotate once to create its first version")]
    NotProvisioned {
        /// The KV v2 data path.
        path: String,
    },

    /// A stored version does not have the shape this crate writes.
    #[error("{path} version {version} is malformed: {reason}")]
    Malformed {
        /// The KV v2 data path.
        path: String,
        /// The version.
        version: u64,
        /// What is wrong.
        reason: String,
    },

    /// The crypto library refused an operation (key generation, parsing, signing).
    #[error("could not {what}")]
    Crypto {
        /// What failed, in the form "generate an ES256 key".
        what: String,
    },

    /// Claims to sign could not be serialised as a JSON object.
    #[error("claims to sign must serialise to a JSON object: {reason}")]
    Claims {
        /// Why not.
        reason: String,
    },

    /// The claims' `exp` is missing or further away than the signing version's declared
    /// `max_token_lifetime`: such a token could outlive its key's window after a rotation.
    /// Nothing was signed.
    #[error(
        "refusing to sign: {}; the signing key declares max_token_lifetime {}s, so `exp` must be at most {limit} (unix seconds): sign a shorter-lived token, or raise the key's max_token_lifetime (and its grace)",
        match .exp { Some(e) => format!("`exp` {e} is beyond the limit"), None => "the claims have no numeric `exp`".to_owned() },
        .max_token_lifetime.as_secs()
    )]
    TokenLifetime {
        /// The claims' `exp`, if numeric.
        exp: Option<i64>,
        /// The latest `exp` allowed: the signer's now plus the lifetime.
        limit: i64,
        /// The declared lifetime.
        max_token_lifetime: std::time::Duration,
    },

    /// A certificate could not be issued for a domain, or what came back is not what was
    /// asked for (and so was not stored).
    #[error("domain {domain}: {reason}")]
    Issue {
        /// The domain.
        domain: String,
        /// What went wrong.
        reason: String,
    },

    /// The ACME CA refused or failed a step other than the challenge (account, order,
    /// finalize, download). Nothing was stored.
    #[error("domain {domain}: ACME at {directory}: could not {reason}")]
    Acme {
        /// The domain.
        domain: String,
        /// The directory URL.
        directory: String,
        /// The step and the CA's (or the transport's) words.
        reason: String,
    },

    /// The ACME challenge failed: Warden could not answer it, or the CA could not validate
    /// the answer in time. Nothing was stored; the certificate in KV is unchanged.
    #[error("domain {domain}: the {challenge} challenge failed: {reason}")]
    Challenge {
        /// The domain.
        domain: String,
        /// `http-01`.
        challenge: String,
        /// Why, in the CA's words where it gave any.
        reason: String,
    },

    /// Key or CSR generation in `warden-pki` failed.
    #[error("domain {domain}: {source}")]
    Pki {
        /// The domain.
        domain: String,
        /// The PKI error.
        #[source]
        source: warden_pki::Error,
    },
}

impl Error {
    pub(crate) fn bao(what: &'static str, path: &str, source: warden_bao::Error) -> Self {
        Self::Bao {
            what,
            path: path.to_owned(),
            source: Box::new(source),
        }
    }

    pub(crate) fn kv(what: &'static str, source: warden_bao::KvError) -> Self {
        Self::Kv {
            what,
            source: Box::new(source),
        }
    }

    /// The OpenBao client error underneath, when there is one (sealed, unreachable, denied).
    pub fn bao_error(&self) -> Option<&warden_bao::Error> {
        match self {
            Self::Bao { source, .. } => Some(source.as_ref()),
            Self::Kv { source, .. } => source.api(),
            _ => None,
        }
    }

    /// A check-and-set loss: another writer won a concurrent rotation or renewal.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }
}

/// Why a token was refused. Every variant is a reason to answer "unauthorised"; the detail is
/// for logs, not for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Not three base64url parts, bad JSON, or a header without `alg`/`kid`.
    #[error("malformed token: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// `alg` is not ES256, EdDSA or RS256 (including `none`).
    #[error("unsupported algorithm `{alg}`")]
    UnsupportedAlgorithm {
        /// The header's `alg`.
        alg: String,
    },
    /// The header lists `crit` extensions, which this verifier does not implement.
    #[error("the token requires extensions this verifier does not understand (`crit`)")]
    CriticalHeader,
    /// No key with this `kid` is known.
    #[error("no key with kid `{kid}`")]
    UnknownKey {
        /// The header's `kid`.
        kid: String,
    },
    /// The key exists but its grace period ended: it was rotated out.
    #[error("key `{kid}` was rotated out; it stopped verifying at {until}")]
    KeyRetired {
        /// The header's `kid`.
        kid: String,
        /// End of its grace period.
        until: OffsetDateTime,
    },
    /// The header's `alg` is not the key's algorithm (algorithm confusion).
    #[error("token says `{alg}` but key `{kid}` is {expected}")]
    AlgorithmMismatch {
        /// The header's `alg`.
        alg: String,
        /// The key.
        kid: String,
        /// The key's algorithm.
        expected: &'static str,
    },
    /// The signature does not match header and payload under the key.
    #[error("bad signature")]
    BadSignature,
    /// No numeric `exp` claim: tokens without an end are refused.
    #[error("the token has no numeric `exp` claim")]
    MissingExpiry,
    /// `exp` is not after now.
    #[error("the token expired at {exp} (unix seconds)")]
    Expired {
        /// The `exp` claim.
        exp: i64,
    },
    /// `nbf` is after now.
    #[error("the token is not valid before {nbf} (unix seconds)")]
    NotYetValid {
        /// The `nbf` claim.
        nbf: i64,
    },
}
