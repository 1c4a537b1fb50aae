//! Why a provider call failed. Messages name variables, files and OpenBao paths, never a value.

use std::path::PathBuf;
use std::time::Duration;

/// Every failure of the provider.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A start-up variable has a value the provider cannot use.
    #[error("{variable}={value:?} is not valid: expected {expected}")]
    Setting {
        /// The variable.
        variable: String,
        /// What it holds (timing settings only: never a secret).
        value: String,
        /// What it should hold.
        expected: &'static str,
    },
    /// AD-1: the environment carries variables that look like secrets. The provider reads
    /// secrets from OpenBao only; the values were not read.
    #[error(
        "refusing to start: the environment holds {} that look like secrets ({}); secrets come \
         from OpenBao only (AD-1), so unset {} and store the value in OpenBao",
        if names.len() == 1 { "a variable" } else { "variables" },
        names.join(", "),
        if names.len() == 1 { "it" } else { "them" }
    )]
    SecretInEnvironment {
        /// The variables' names.
        names: Vec<String>,
    },
    /// No way to log in was configured.
    #[error(
        "no login configured: set WARDEN_IDENTITY_DIR (the agent-managed identity directory), \
         BAO_CLIENT_CERT + BAO_CLIENT_KEY, or WARDEN_APPROLE_ROLE_ID_FILE + \
         WARDEN_APPROLE_SECRET_ID_FILE"
    )]
    NoLogin,
    /// A credential file could not be read.
    #[error("cannot read {what} from {}: {source}", path.display())]
    ReadFile {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A credential file any user of the host may read or write: the credential is as good as
    /// public, so it is not used.
    #[error("refusing {what} file {}: its mode {mode:04o} lets every user of the host read or write it", path.display())]
    ExposedFile {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A credential file is empty.
    #[error("{what} file {} is empty", path.display())]
    EmptyFile {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// OpenBao did not become usable within `VAULT_INIT_TIMEOUT_SEC`.
    #[error(
        "OpenBao at {address} was not usable within VAULT_INIT_TIMEOUT_SEC={}s ({attempts} attempts); \
         last error: {last}",
        timeout.as_secs()
    )]
    InitTimeout {
        /// The server address.
        address: String,
        /// The budget.
        timeout: Duration,
        /// Attempts made.
        attempts: u32,
        /// The last attempt's failure (the server unavailable, or a credential file not there
        /// yet).
        #[source]
        last: Box<Self>,
    },
    /// Login was refused (wrong credentials, role or policy): retrying cannot help.
    #[error("login at auth/{mount} was refused: {source}")]
    LoginRefused {
        /// The auth mount.
        mount: String,
        /// The server's answer.
        #[source]
        source: Box<warden_bao::Error>,
    },
    /// The login succeeded but its answer carried no token (not an auth method's mount?).
    #[error("login at auth/{mount} answered without a token; is {mount} an auth mount?")]
    NoToken {
        /// The auth mount.
        mount: String,
    },
    /// The client configuration (`VAULT_*`/`BAO_*`) is invalid.
    #[error(transparent)]
    Client(Box<warden_bao::Error>),
    /// A call failed and no earlier value of the secret is cached.
    #[error("{path}: {source}")]
    Unavailable {
        /// The secret's path (`mount/path`).
        path: String,
        /// The failure.
        #[source]
        source: Box<warden_bao::Error>,
    },
    /// A KV call failed (not found, denied, check-and-set...).
    #[error(transparent)]
    Kv(Box<warden_bao::KvError>),
    /// A transit call failed.
    #[error(transparent)]
    Transit(Box<warden_bao::TransitError>),
    /// A signing-key call failed.
    #[error(transparent)]
    Keys(Box<warden_keys::Error>),
    /// `rotate_secret` lost a race: someone else wrote the secret between the read and the
    /// check-and-set write. Nothing was written; read again and retry.
    #[error(
        "{path}: another writer changed the secret (expected version {expected}); nothing was written"
    )]
    Conflict {
        /// The secret's path (`mount/path`).
        path: String,
        /// The version the rotation read.
        expected: u64,
    },
    /// A dual-key secret lacks its `current` field.
    #[error("{path} has no `current` field: it was not written by rotate_secret")]
    NotDualKey {
        /// The secret's path (`mount/path`).
        path: String,
    },
}

// Boxed: the client's errors carry paths and the server's messages, and an `Error` travels
// through every `Result` of a service's hot path.
impl From<warden_bao::KvError> for Error {
    fn from(e: warden_bao::KvError) -> Self {
        Self::Kv(Box::new(e))
    }
}

impl From<warden_bao::TransitError> for Error {
    fn from(e: warden_bao::TransitError) -> Self {
        Self::Transit(Box::new(e))
    }
}

impl From<warden_keys::Error> for Error {
    fn from(e: warden_keys::Error) -> Self {
        Self::Keys(Box::new(e))
    }
}

impl Error {
    pub(crate) fn client(e: warden_bao::Error) -> Self {
        Self::Client(Box::new(e))
    }

    /// The OpenBao client error underneath, if any.
    pub fn bao_error(&self) -> Option<&warden_bao::Error> {
        match self {
            Self::InitTimeout { last, .. } => last.bao_error(),
            Self::LoginRefused { source: e, .. } | Self::Unavailable { source: e, .. } => Some(e),
            Self::Client(e) => Some(e),
            Self::Kv(e) => e.api(),
            _ => None,
        }
    }
}
