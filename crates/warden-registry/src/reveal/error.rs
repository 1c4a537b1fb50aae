//! Why a reveal-once operation failed. Each variant names the purpose, credential or path and
//! the rule it hit; the CLI adds what to do next.

use warden_spec::Refusal;

/// A reveal-once failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevealError {
    /// The spec has no purpose of that id.
    #[error("the spec has no purpose `{purpose}`{}", suggestion.as_ref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_default())]
    UnknownPurpose {
        /// The id asked for.
        purpose: String,
        /// The closest known id, if one is close.
        suggestion: Option<String>,
    },
    /// The purpose delivers another way: only `reveal_once` purposes hand out a wrapped token.
    #[error(
        "purpose `{purpose}` is delivered as `{delivery}`, not `reveal_once`: its credentials are never revealed"
    )]
    NotRevealOnce {
        /// Purpose id.
        purpose: String,
        /// Its delivery mode.
        delivery: &'static str,
    },
    /// The purpose covers no credential in this environment.
    #[error("purpose `{purpose}` covers no credential in environment `{env}`")]
    NothingInEnv {
        /// Purpose id.
        purpose: String,
        /// Environment.
        env: String,
    },
    /// The purpose covers several credentials here and none was named.
    #[error("purpose `{purpose}` covers {} credentials in this environment ({}); name one", candidates.len(), candidates.join(", "))]
    Ambiguous {
        /// Purpose id.
        purpose: String,
        /// The credentials it covers here.
        candidates: Vec<String>,
    },
    /// The identity or credential named is not one the purpose covers here.
    #[error("purpose `{purpose}` covers no credential `{wanted}` in this environment (it covers {})", candidates.join(", "))]
    NoSuchCredential {
        /// Purpose id.
        purpose: String,
        /// What was asked for.
        wanted: String,
        /// The credentials it covers here.
        candidates: Vec<String>,
    },
    /// A credential kind that cannot be revealed (validation normally refuses these).
    #[error(
        "credential `{credential}` cannot be revealed: only AppRole secret-ids and KV secrets are reveal-once"
    )]
    UnsupportedKind {
        /// Credential reference.
        credential: String,
    },
    /// The wrapping lifetime asked for is out of bounds.
    #[error("a reveal token must live between 1s and {max_secs}s, not {asked_secs}s")]
    Ttl {
        /// What was asked, in seconds.
        asked_secs: u64,
        /// The ceiling.
        max_secs: u64,
    },
    /// The purpose rules refuse new issuance (a revoked purpose).
    #[error("cannot mint `{credential}`: {source}")]
    Refused {
        /// Credential reference.
        credential: String,
        /// The rule.
        #[source]
        source: Refusal,
    },
    /// OpenBao refused to mint or wrap the credential.
    #[error("{env}: minting `{credential}` at {path}: {source}")]
    Mint {
        /// Environment.
        env: String,
        /// Credential reference.
        credential: String,
        /// The endpoint.
        path: String,
        /// The client error.
        #[source]
        source: Box<warden_bao::Error>,
    },
    /// The system random generator failed; nothing was minted.
    #[error("the system random generator failed; nothing was minted")]
    Random,
    /// The metadata record could not be written; the wrapping token was revoked (or, if
    /// `revoked` is false, expires unopened at the end of its short TTL).
    #[error("{env}: recording the reveal at {path} failed, so the token was {}: {source}", if *revoked { "revoked" } else { "not handed out (it expires on its own)" })]
    Record {
        /// Environment.
        env: String,
        /// The record's path.
        path: String,
        /// Whether the wrapping token was revoked.
        revoked: bool,
        /// The client error.
        #[source]
        source: Box<warden_bao::Error>,
    },
    /// The token was already opened, has expired, or was never a wrapping token.
    #[error(
        "this reveal token was already used or has expired — a reveal-once credential is shown exactly once; ask the owner for a new one"
    )]
    Spent,
    /// The token wraps something `warden reveal create` does not make: it is not opened.
    #[error(
        "this token was not made by `warden reveal create` (it wraps the answer of `{creation_path}`); it was not opened"
    )]
    NotAReveal {
        /// What the token wraps.
        creation_path: String,
    },
    /// Any other failure while opening (server unreachable, sealed, TLS).
    #[error("{step}: {source}")]
    Open {
        /// Which step.
        step: &'static str,
        /// The client error.
        #[source]
        source: Box<warden_bao::Error>,
    },
    /// OpenBao answered without the fields the step needs.
    #[error("{step}: unexpected answer from OpenBao: {what}")]
    Malformed {
        /// Which step.
        step: &'static str,
        /// What was missing.
        what: &'static str,
    },
    /// Reading reveal records or token state failed.
    #[error("{env}: reading {path}: {source}")]
    Read {
        /// Environment.
        env: String,
        /// The path.
        path: String,
        /// The client error.
        #[source]
        source: Box<warden_bao::Error>,
    },
}

impl RevealError {
    /// The token was already used or expired: the one outcome scripts must tell apart.
    pub fn is_spent(&self) -> bool {
        matches!(self, Self::Spent)
    }
}
