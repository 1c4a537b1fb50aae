//! The crate's one error type. Every variant says *when* it happens and carries the context an
//! operator needs (path, dates, what was requested); advice on what to do next is the CLI's job.

use std::path::PathBuf;

use time::OffsetDateTime;

/// Everything that can go wrong in `warden-pki`.
///
/// A refusal (wrong passphrase, bad CSR, an expired root, a requested lifetime the root cannot
/// cover) is always reported *before* anything in the CA directory is touched, so any error from
/// [`crate::CaDir::sign_intermediate`] means the directory is unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `CaDir::init` was pointed at a directory that already holds a CA (`ca.json` or a root).
    #[error("{dir} already holds a CA; refusing to overwrite it")]
    AlreadyInitialized {
        /// The CA directory.
        dir: PathBuf,
    },
    /// `CaDir::init` was pointed at a directory that exists and has other files in it.
    #[error("{dir} exists and is not empty; a new CA needs an empty or missing directory")]
    DirNotEmpty {
        /// The directory.
        dir: PathBuf,
    },
    /// `CaDir::open` found no CA in the directory (`what` names the missing file).
    #[error("{dir} is not a Warden CA directory ({what} is missing)")]
    NotACaDir {
        /// The directory.
        dir: PathBuf,
        /// The file that should have been there.
        what: &'static str,
    },
    /// A file of the CA directory exists but cannot be understood (hand-edited, truncated, from
    /// another tool), or `root.crt` no longer matches the fingerprint recorded in `ca.json`.
    #[error("{path} is damaged: {reason}")]
    CorruptCaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading a file or directory failed.
    #[error("could not {step} {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done: "read", "lock", "list", ...
        step: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Writing a file of the CA directory failed (see `warden_files::Error` for the step).
    #[error(transparent)]
    Write(#[from] warden_files::Error),
    /// A restore was asked to replace a CA directory whose root is not the backup's: that would
    /// be another CA, not this one's history.
    #[error(
        "{dir} holds the root {existing}, the backup holds the root {backup}; refusing to replace one CA with another"
    )]
    RestoreDifferentRoot {
        /// The existing CA directory.
        dir: PathBuf,
        /// SHA-256 of the existing root.
        existing: String,
        /// SHA-256 of the backup's root.
        backup: String,
    },
    /// A restore would replace a ledger with one that lacks some of its signatures (an older
    /// backup, or a ledger that diverged): the ledger only ever grows.
    #[error(
        "{dir}'s ledger has {existing_entries} signature(s) that the backup's ledger ({backup_entries} signature(s)) does not continue; refusing to roll the ledger back"
    )]
    RestoreWouldRollBack {
        /// The existing CA directory.
        dir: PathBuf,
        /// Entries in the existing ledger.
        existing_entries: usize,
        /// Entries in the backup's ledger.
        backup_entries: usize,
    },
    /// The passphrase does not decrypt the root key: decryption failed or produced garbage.
    #[error("the passphrase does not decrypt {path}")]
    WrongPassphrase {
        /// The encrypted key file.
        path: PathBuf,
    },
    /// An empty passphrase was given where one is needed to encrypt or decrypt the root key.
    #[error("an empty passphrase is not allowed for the root key")]
    EmptyPassphrase,
    /// A private key (PEM or DER) could not be parsed or does not match its certificate.
    #[error("bad private key: {reason}")]
    BadKey {
        /// What is wrong.
        reason: String,
    },
    /// The CSR is not PEM, not a PKCS#10 request, its self-signature does not verify, or its
    /// subject cannot be carried over.
    #[error("bad certificate signing request: {reason}")]
    BadCsr {
        /// What is wrong.
        reason: String,
    },
    /// A certificate (or a PEM bundle) could not be parsed.
    #[error("bad certificate{}: {reason}", index.map(|i| format!(" #{}", i + 1)).unwrap_or_default())]
    BadCertificate {
        /// Position in the bundle (0-based), when the input was a bundle.
        index: Option<usize>,
        /// What is wrong.
        reason: String,
    },
    /// The root's validity window does not contain `now` (it has expired).
    #[error("the root expired at {}", ts(not_after))]
    RootExpired {
        /// The root's notAfter.
        not_after: OffsetDateTime,
    },
    /// The root's validity window starts after `now` (clock skew, or a root made on a machine
    /// whose clock was ahead).
    #[error("the root is not valid before {}", ts(not_before))]
    RootNotYetValid {
        /// The root's notBefore.
        not_before: OffsetDateTime,
    },
    /// The requested intermediate lifetime ends after the root's; a certificate must not outlive
    /// the one that vouches for it.
    #[error(
        "the root expires at {}, before the intermediate would ({})",
        ts(root_not_after),
        ts(requested_not_after)
    )]
    IntermediateOutlivesRoot {
        /// The root's notAfter.
        root_not_after: OffsetDateTime,
        /// The notAfter the request asked for.
        requested_not_after: OffsetDateTime,
    },
    /// The requested pathLenConstraint does not fit under the root's (an intermediate's
    /// constraint must be smaller than its issuer's).
    #[error(
        "the root allows {root_path_len} CA level(s) below it, so an intermediate may have path length at most {}, not {requested}",
        root_path_len.saturating_sub(1)
    )]
    PathLenTooLarge {
        /// The requested pathLenConstraint.
        requested: u8,
        /// The root's pathLenConstraint.
        root_path_len: u32,
    },
    /// `sign_intermediate` was asked for an intermediate without name constraints while the
    /// root signs for more than one environment (ADR 0013): whoever runs that environment could
    /// then issue certificates that every other environment's trust accepts. Refused unless the
    /// request says why (`unconstrained_because`, recorded in the ledger).
    #[error(
        "refusing to sign an unconstrained intermediate for `{environment}`: this root signs for {} environments ({}), and an intermediate without name constraints can issue names that every one of them accepts",
        environments.len(),
        environments.join(", ")
    )]
    UnconstrainedIntermediate {
        /// The environment the intermediate was requested for.
        environment: String,
        /// Every environment the root signs for, this one included.
        environments: Vec<String>,
    },
    /// `sign_intermediate` was asked for an intermediate whose name constraints reach names
    /// another environment's latest PKI intermediate holds (ADR 0013): `warden ca verify` would
    /// flag it as crossing the boundary, so it is refused before it exists.
    #[error(
        "refusing to sign `{environment}`'s intermediate: its name constraints permit `{other}`'s names ({}), so `{environment}` could issue certificates `{other}`'s trust accepts",
        names.join(", ")
    )]
    OverreachingIntermediate {
        /// The environment the intermediate was requested for.
        environment: String,
        /// The environment whose names it reaches.
        other: String,
        /// Those names (the other intermediate's permitted subtrees).
        names: Vec<String>,
    },
    /// The issuing certificate of a [`crate::LocalIssuer`] is not valid at `now`.
    #[error(
        "the issuer {subject} is not valid at {} (valid {} to {})",
        ts(now),
        ts(not_before),
        ts(not_after)
    )]
    IssuerNotValid {
        /// The issuer's subject.
        subject: String,
        /// Its notBefore.
        not_before: OffsetDateTime,
        /// Its notAfter.
        not_after: OffsetDateTime,
        /// The time of the request.
        now: OffsetDateTime,
    },
    /// A requested leaf lifetime ends after its issuer's.
    #[error(
        "the issuer {issuer} expires at {}, before the certificate would ({})",
        ts(issuer_not_after),
        ts(requested_not_after)
    )]
    LeafOutlivesIssuer {
        /// The issuer's subject.
        issuer: String,
        /// The issuer's notAfter.
        issuer_not_after: OffsetDateTime,
        /// The notAfter the request asked for.
        requested_not_after: OffsetDateTime,
    },
    /// A certificate meant to issue others lacks CA:true or the keyCertSign key usage.
    #[error("{subject} is not a CA certificate (needs CA:true and keyCertSign)")]
    NotACa {
        /// The certificate's subject.
        subject: String,
    },
    /// A request field is unusable (empty environment, a DNS name with spaces, a zero validity).
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidField {
        /// Which field.
        field: &'static str,
        /// The value given.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A key algorithm name is not one of `ecdsa-p256`, `ecdsa-p384`, `rsa-3072`.
    #[error("unknown key algorithm {input:?} (use ecdsa-p256, ecdsa-p384 or rsa-3072)")]
    BadKeyAlgorithm {
        /// The text given.
        input: String,
    },
    /// A line of `ledger.jsonl` is not a ledger entry.
    #[error("{path} line {line} is not a ledger entry: {source}")]
    Ledger {
        /// The ledger file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// Key generation, certificate or CSR construction failed inside rcgen; `step` says which.
    #[error("could not {step}: {source}")]
    Rcgen {
        /// What was being done.
        step: &'static str,
        /// The rcgen error.
        #[source]
        source: rcgen::Error,
    },
    /// Encrypting the root key (PKCS#8 PBES2) failed.
    #[error("could not encrypt the root key: {source}")]
    Encrypt {
        /// The pkcs8 error.
        #[source]
        source: pkcs8::Error,
    },
    /// A rollover step does not follow the rollover's recorded state (ADR 0030): `begin` while
    /// one is begun, `re-sign` or `promote` without one.
    #[error("{dir}: {step}: the root rollover is {state}")]
    RolloverOutOfOrder {
        /// The CA directory.
        dir: PathBuf,
        /// The step attempted (`begin`, `re-sign`, `promote`).
        step: &'static str,
        /// The recorded state (`none` when no rollover was begun).
        state: String,
    },
    /// `re-sign` was asked for an intermediate the current root never signed.
    #[error(
        "the ledger has no {profile} intermediate for {environment} signed by the current root: there is nothing to re-sign"
    )]
    NothingToResign {
        /// The environment asked for.
        environment: String,
        /// The profile asked for.
        profile: String,
    },
    /// `promote` while intermediates the old root signed, still valid, have no counterpart
    /// re-signed by the next root: once promoted, the rollover can no longer re-sign them.
    #[error(
        "{dir}: promote: the next root has not re-signed {pending}; once it is the root, `resign` is closed and those environments can only move to it by a new intermediate"
    )]
    PromoteBeforeResigned {
        /// The CA directory.
        dir: PathBuf,
        /// `environment profile (serial …)`, comma-separated.
        pending: String,
    },
    /// A date computation left the range `time` can represent (a validity of thousands of years).
    #[error("the validity {validity} overflows the calendar")]
    DateOverflow {
        /// The requested validity.
        validity: time::Duration,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn rcgen(step: &'static str) -> impl FnOnce(rcgen::Error) -> Self {
        move |source| Self::Rcgen { step, source }
    }

    pub(crate) fn io(
        step: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, step, source }
    }
}

/// RFC 3339 (`2031-01-01T12:00:00Z`), the form every message and file of this crate uses.
pub(crate) fn ts(t: &OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}
