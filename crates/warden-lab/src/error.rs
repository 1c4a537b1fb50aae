//! The lab's error type. Each variant names the environment and the file or step involved, so
//! the CLI can say what failed and where without guessing.

use std::path::{Path, PathBuf};

use crate::process::ProcessError;

/// Why a lab operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An option given for a new lab is not acceptable (threshold above shares, bad env name).
    #[error("invalid lab option: {0}")]
    InvalidOption(String),
    /// `lab.json` exists but cannot be understood.
    #[error("the lab settings in {path} are unreadable: {reason}")]
    CorruptLab {
        /// `lab.json`.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
    /// A command that needs an existing lab found none.
    #[error("{dir} is not a Warden lab (no lab.json)")]
    NotALab {
        /// The directory given.
        dir: PathBuf,
    },
    /// An environment name that the lab does not have.
    #[error("the lab has no environment {name:?} (it has {known})")]
    UnknownEnvironment {
        /// The name asked for.
        name: String,
        /// The names the lab has, comma-separated.
        known: String,
    },
    /// Reading or creating a file failed.
    #[error("could not {what} {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Writing a file through `warden-files` failed (the previous file is intact).
    #[error(transparent)]
    Files(#[from] warden_files::Error),
    /// The offline CA refused or failed.
    #[error("{env}: {what}: {source}")]
    Pki {
        /// Environment (or "lab" for lab-wide steps).
        env: String,
        /// The step.
        what: &'static str,
        /// The CA's error.
        #[source]
        source: Box<warden_pki::Error>,
    },
    /// A request to the environment's OpenBao failed.
    #[error("{env}: {what}: {source}")]
    Bao {
        /// Environment.
        env: String,
        /// The step.
        what: &'static str,
        /// The client's error.
        #[source]
        source: Box<warden_bao::Error>,
    },
    /// Starting, finding or stopping the server process failed.
    #[error("{env}: {source}")]
    Process {
        /// Environment.
        env: String,
        /// The process error.
        #[source]
        source: Box<ProcessError>,
    },
    /// The environment's port is held by a process that is not its server.
    #[error("{env}: port {port} on 127.0.0.1 is in use by another process{}", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    PortInUse {
        /// Environment.
        env: String,
        /// The port from lab.json.
        port: u16,
        /// The process holding it, when known.
        pid: Option<u32>,
    },
    /// The server is initialised but the lab holds no unseal keys for it.
    #[error("{env}: the server is initialised but {path} is missing, so it cannot be unsealed")]
    CustodyMissing {
        /// Environment.
        env: String,
        /// The expected custody file.
        path: PathBuf,
    },
    /// A seal precondition failed (a missing key or share, an unreachable seal-keeper, a
    /// migration that is not possible); nothing was changed.
    #[error("{env}: {what}")]
    SealPrecondition {
        /// Environment.
        env: String,
        /// What is missing or wrong.
        what: String,
    },
    /// Provisioning on the seal-keeper failed.
    #[error(transparent)]
    SealKeeper {
        /// The seal-keeper error.
        source: Box<warden_node::KeeperError>,
    },
    /// A seal migration step failed.
    #[error("{env}: seal migration: {source}")]
    SealMigration {
        /// Environment.
        env: String,
        /// The step's error.
        #[source]
        source: Box<warden_node::MigrateError>,
    },
    /// The lab's custody ceremony, unseal or root-token opening failed.
    #[error("{env}: lab custody: {source}")]
    Custody {
        /// Environment.
        env: String,
        /// What custody said.
        #[source]
        source: Box<warden_custody::Error>,
    },
    /// The lab's PostgreSQL could not be set up, started or stopped.
    #[error("lab postgres: {source}")]
    Postgres {
        /// What went wrong.
        #[source]
        source: Box<crate::postgres::PgError>,
    },
    /// The listener CA given is refused (`warden_node::listener_ca`); nothing was changed.
    #[error("{env}: {source}")]
    ListenerCa {
        /// Environment.
        env: String,
        /// Why it was refused.
        #[source]
        source: Box<warden_node::ListenerCaError>,
    },
    /// The server reached a state `up` cannot fix by itself.
    #[error("{env}: {what}")]
    ServerState {
        /// Environment.
        env: String,
        /// What is wrong.
        what: String,
    },
}

impl Error {
    pub(crate) fn io(path: &Path, what: &'static str, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            what,
            source,
        }
    }

    pub(crate) fn bao(env: &str, what: &'static str) -> impl FnOnce(warden_bao::Error) -> Self {
        let env = env.to_owned();
        move |source| Self::Bao {
            env,
            what,
            source: Box::new(source),
        }
    }

    pub(crate) fn pki(env: &str, what: &'static str) -> impl FnOnce(warden_pki::Error) -> Self {
        let env = env.to_owned();
        move |source| Self::Pki {
            env,
            what,
            source: Box::new(source),
        }
    }

    pub(crate) fn postgres(source: crate::postgres::PgError) -> Self {
        Self::Postgres {
            source: Box::new(source),
        }
    }

    pub(crate) fn process(env: &str) -> impl FnOnce(ProcessError) -> Self {
        let env = env.to_owned();
        move |source| Self::Process {
            env,
            source: Box::new(source),
        }
    }
}
