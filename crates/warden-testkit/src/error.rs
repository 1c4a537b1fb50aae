//! Why a fixture could not be started.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use warden_lab::process::ProcessError;

/// Why [`BaoDev`](crate::BaoDev) or [`Postgres`](crate::Postgres) could not be started, or an
/// [`http::get`](crate::http::get) failed. Every variant that concerns a started server carries
/// the last lines it printed (secrets redacted), which is what a failing CI log needs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No usable `bao` binary: not installed, or not the expected release.
    #[error("no usable OpenBao binary: {0}")]
    Bao(#[source] ProcessError),
    /// A file or directory of the fixture could not be created or changed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done ("create the temporary directory", "chown", ...).
        what: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A file holding a secret could not be written through `warden_files::write_atomic`.
    #[error("could not write a fixture file: {0}")]
    WriteFile(#[from] warden_files::Error),
    /// A program could not be started at all.
    #[error("could not start {}: {source}", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A setup command (`initdb`, `pg_ctl start`) failed or did not finish in time.
    #[error("`{}` failed ({}):\n{output}", program.display(), status.map_or_else(|| "timed out".to_owned(), |s| s.to_string()))]
    Command {
        /// The program.
        program: PathBuf,
        /// Its exit status, `None` when it was killed at the deadline.
        status: Option<ExitStatus>,
        /// What it printed.
        output: String,
    },
    /// The server process did not come to listen on its port: it exited, the port was taken
    /// by another process, or it was too slow.
    #[error("{what} did not start listening: {source}\n--- its last output ---\n{output}")]
    NotListening {
        /// "bao server -dev" or "postgres".
        what: &'static str,
        /// What [`wait_listening`](crate::process::wait_listening) saw.
        #[source]
        source: ProcessError,
        /// Its last output lines.
        output: String,
    },
    /// The server listened but never became ready (OpenBao: health not initialized+unsealed,
    /// or no root token printed; PostgreSQL: `pg_isready` never succeeded).
    #[error("{what} was not ready after {waited:?}: {last}\n--- its last output ---\n{output}")]
    NotReady {
        /// "bao server -dev" or "postgres".
        what: &'static str,
        /// How long we waited.
        waited: Duration,
        /// The last thing the readiness check observed.
        last: String,
        /// Its last output lines.
        output: String,
    },
    /// When the tests run as root, PostgreSQL needs an unprivileged user; `nobody` is missing.
    #[error("running as root, and there is no `nobody` user to run PostgreSQL as")]
    NoUnprivilegedUser,
    /// No PostgreSQL server binaries (`initdb`, `pg_ctl`, `pg_isready`) were found.
    #[error(
        "PostgreSQL server binaries not found (looked at $WARDEN_PG_BIN_DIR, `initdb` on PATH, /usr/lib/postgresql/*/bin)"
    )]
    NoPostgres,
    /// An URL given to [`http::get`](crate::http::get) is not `http(s)://127.0.0.1:PORT`. The
    /// harness talks to loopback only.
    #[error("not a loopback http(s) address: {0:?}")]
    NotLoopback(String),
    /// The HTTP exchange failed (connect, TLS handshake, read, timeout, unparsable response).
    #[error("GET {url}: {source}")]
    Http {
        /// The URL.
        url: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The CA file given for an HTTPS request holds no usable certificate.
    #[error("no usable CA certificate in {}: {reason}", path.display())]
    CaFile {
        /// The CA file.
        path: PathBuf,
        /// The parser's or verifier's complaint.
        reason: String,
    },
}
