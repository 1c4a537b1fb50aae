//! The one error type of `warden-serve`.

/// Why a lease or job step failed. Each variant names the environment and what was touched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An OpenBao call failed (unreachable, sealed, denied...; `source` says which).
    #[error("{env}: {what}: {source}")]
    Bao {
        /// Environment.
        env: String,
        /// What was being read or written.
        what: String,
        /// The client's error.
        #[source]
        source: Box<warden_bao::Error>,
    },
    /// A KV v2 call failed.
    #[error("{env}: {what}: {source}")]
    Kv {
        /// Environment.
        env: String,
        /// What was being read.
        what: String,
        /// The KV error.
        #[source]
        source: Box<warden_bao::KvError>,
    },
    /// A record under `warden/serve/` does not have the shape serve writes (edited by hand,
    /// or written by a newer version).
    #[error(
        "{env}: {path} is not a record `warden serve` reads ({reason}); delete it (`bao kv metadata delete`) and serve writes a fresh one"
    )]
    Record {
        /// Environment.
        env: String,
        /// `warden/data/serve/...`.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A signing-key step failed.
    #[error("{env}: {source}")]
    Keys {
        /// Environment.
        env: String,
        /// The keys library's error.
        #[source]
        source: Box<warden_keys::Error>,
    },
    /// Posture could not be read.
    #[error(transparent)]
    Posture(Box<warden_registry::posture::Error>),
    /// A purpose's registry entry could not be read (whether it is revoked live).
    #[error("{env}: {source}")]
    Registry {
        /// Environment.
        env: String,
        /// The registry's error.
        #[source]
        source: Box<warden_registry::revoke::RevokeError>,
    },
    /// A backup or a drill could not be made (the backup library's error).
    #[error("{env}: {source}")]
    Backup {
        /// Environment.
        env: String,
        /// The backup library's error.
        #[source]
        source: Box<warden_backup::BackupError>,
    },
    /// The settings cannot give a safe lease.
    #[error("{0}")]
    Settings(String),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
