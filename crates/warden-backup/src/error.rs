//! Why a backup, a verification or a restore was refused.

use std::path::PathBuf;

/// Every refusal names the environment or file and what is wrong; the CLI adds the next step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The environment has no `[environments.E.backup]`.
    #[error("environment `{env}` declares no backups ([environments.{env}.backup] is missing)")]
    NotConfigured {
        /// Environment.
        env: String,
    },
    /// No recipient: nobody could open the backup.
    #[error("{env}: the backup has no recipients; nobody could open it")]
    NoRecipients {
        /// Environment.
        env: String,
    },
    /// A recipient does not parse.
    #[error("{env}: backup recipient `{recipient}` is not an age X25519 recipient: {reason}")]
    BadRecipient {
        /// Environment.
        env: String,
        /// The recipient.
        recipient: String,
        /// Why.
        reason: String,
    },
    /// The server could not be asked.
    #[error("{env}: {source}")]
    Server {
        /// Environment.
        env: String,
        /// The client error.
        #[source]
        source: Box<warden_bao::Error>,
    },
    /// A signed manifest that belongs to another backup file.
    #[error("the manifest {} was signed for {names}, not {file}: it belongs to another backup (renamed or swapped)", path.display())]
    ManifestNamesAnother {
        /// The manifest.
        path: PathBuf,
        /// The snapshot file it names.
        names: String,
        /// The snapshot file it was found beside.
        file: String,
    },
    /// The server is sealed.
    #[error(
        "{env}: OpenBao is sealed; a sealed server cannot take a snapshot, and nothing was written"
    )]
    Sealed {
        /// Environment.
        env: String,
    },
    /// Taking the snapshot failed.
    #[error("{env}: taking the raft snapshot: {source}; nothing was written")]
    Snapshot {
        /// Environment.
        env: String,
        /// The snapshot error.
        #[source]
        source: Box<warden_bao::SnapshotError>,
    },
    /// The backup directory cannot be used.
    #[error("backup directory {}: {reason}", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Writing failed (disk full, ...); the temp file is gone.
    #[error("writing {}: {source}; no partial backup was left behind", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Reading failed.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The snapshot is not sound.
    #[error("{what}: {source}")]
    Archive {
        /// What was checked.
        what: String,
        /// Why.
        #[source]
        source: crate::archive::ArchiveError,
    },
    /// The server went silent while the manifest was being signed (frozen just after the
    /// snapshot stream ended): the same stall bound as the transfer applies.
    #[error(
        "{env}: signing the manifest did not finish within {after:?} (the stall bound covers its requests together: a frozen or overloaded server); nothing was written. If the evidence signing key did not exist before, it may have been created: keep its public key (`warden evidence key`)"
    )]
    SignStalled {
        /// Environment.
        env: String,
        /// The stall bound that was reached.
        after: std::time::Duration,
    },
    /// Signing the manifest failed.
    #[error("{env}: signing the manifest: {source}; nothing was written")]
    Sign {
        /// Environment.
        env: String,
        /// The evidence error.
        #[source]
        source: Box<warden_registry::evidence::EvidenceError>,
    },
    /// No manifest beside the snapshot.
    #[error("no manifest at {}: a backup without its signed manifest is not trusted", path.display())]
    NoManifest {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The manifest does not parse.
    #[error("{} is not a backup manifest: {reason}", path.display())]
    NotAManifest {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The manifest's signature fails.
    #[error("the manifest {}'s signature fails: {source}", path.display())]
    ManifestSignature {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<warden_registry::evidence::VerifyError>,
    },
    /// The backup belongs to another environment.
    #[error("{} is a backup of environment `{found}`, not `{expected}`", path.display())]
    WrongEnvironment {
        /// The manifest.
        path: PathBuf,
        /// Its environment.
        found: String,
        /// The one asked for.
        expected: String,
    },
    /// The ciphertext is not what the manifest signed.
    #[error("{} is not the file its manifest signed: {size} bytes where the manifest says {expected_size}, or another SHA-256 (truncated or altered)", path.display())]
    CiphertextMismatch {
        /// The snapshot.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The manifest's.
        expected_size: u64,
    },
    /// The file is not age-encrypted (or is damaged).
    #[error("{} cannot be decrypted: {reason}", path.display())]
    NotAge {
        /// The snapshot.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The identity is not among the recipients.
    #[error("{} is not encrypted to the identity in {} (it was encrypted to someone else)", path.display(), identity.display())]
    NotForIdentity {
        /// The snapshot.
        path: PathBuf,
        /// The identity file.
        identity: PathBuf,
    },
    /// The snapshot's raft index is not the manifest's.
    #[error("{} holds raft index {found}, its manifest says {expected}", path.display())]
    IndexMismatch {
        /// The snapshot.
        path: PathBuf,
        /// In the snapshot.
        found: u64,
        /// In the manifest.
        expected: u64,
    },
}
