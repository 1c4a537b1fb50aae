//! A throwaway PostgreSQL cluster per test, on the lab's PostgreSQL primitives
//! ([`warden_lab::postgres::PgServer`]: binaries, the user it runs as, `initdb`, start with the
//! `/proc` ownership check, stop), so the lab's database and the tests' start the same way.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use tempfile::TempDir;
use warden_files::{Mode, write_atomic};
use warden_lab::postgres::{PgError, PgServer};
use warden_lab::process;
use zeroize::Zeroizing;

use crate::Error;
use crate::random::hex_secret;

const WHAT: &str = "postgres";
const SUPERUSER: &str = "postgres";
const DATABASE: &str = "postgres";

/// A running PostgreSQL cluster on `127.0.0.1:<free port>`, owned by the test that started it.
///
/// * `initdb` with `--auth=scram-sha-256` and a random superuser password; the password file
///   `initdb --pwfile` reads is created 0600 and deleted as soon as `initdb` has run.
/// * Listens on 127.0.0.1 only; its Unix socket lives in the temporary directory.
/// * PostgreSQL refuses to run as root: when the tests run as root, every PostgreSQL program
///   runs as `nobody` (its data directory chowned to it, the temporary directory made
///   traversable); otherwise as the current user.
/// * Before `start` returns, `/proc` has shown that the postmaster from `postmaster.pid` owns
///   the port, and `pg_isready` succeeds.
/// * Dropping it runs `pg_ctl stop -m immediate` (then `SIGKILL` if needed) and removes the
///   temporary directory. Durability is off (`fsync = off`): the cluster never outlives a test.
pub struct Postgres {
    server: PgServer,
    data_dir: PathBuf,
    port: u16,
    password: SecretString,
    pid: u32,
    // Last, so the files are removed after the server is stopped.
    _dir: TempDir,
}

impl Postgres {
    /// Starts a cluster. Panics with the server's log if it cannot.
    pub async fn start() -> Self {
        Self::try_start()
            .await
            .unwrap_or_else(|e| panic!("Postgres::start failed: {e}"))
    }

    /// [`start`](Self::start), returning the error instead of panicking.
    pub async fn try_start() -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("warden-pg-")
            .tempdir()
            .map_err(|source| {
                io_err(
                    "create a temporary directory in",
                    &std::env::temp_dir(),
                    source,
                )
            })?;
        // Layout: <tmp> (ours, 0711 so the pg user can traverse it) / pg (the pg user's, 0700)
        // holding data/, sock/ and the log.
        let server = PgServer::locate(dir.path().join("pg"))?;
        if server.needs_traversal() {
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711))
                .map_err(|source| io_err("chmod", dir.path(), source))?;
        }
        server.prepare_dirs()?;
        let password =
            hex_secret().map_err(|source| io_err("read", Path::new("/dev/urandom"), source))?;
        let mut pg = Self {
            data_dir: server.data_dir(),
            server,
            port: 0,
            password,
            pid: 0,
            _dir: dir,
        };
        pg.initdb().await?;
        pg.port = process::free_port()
            .map_err(|source| io_err("find a free port on", Path::new("127.0.0.1"), source))?;
        pg.server.append_settings(&format!(
            "\n# warden-testkit\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{sock}'\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             max_connections = 50\n",
            port = pg.port,
            sock = pg.server.sock_dir().display(),
        ))?;
        pg.pid = pg.server.start(pg.port).await?;
        Ok(pg)
    }

    /// Runs `initdb`. The superuser password reaches it through a 0600 file owned by the pg
    /// user — never argv or the environment — which is deleted as soon as `initdb` returns,
    /// whether it succeeded or not.
    async fn initdb(&self) -> Result<(), Error> {
        let pwfile = self.server.dir().join("pwfile");
        let _remove = RemoveOnDrop(&pwfile);
        let contents = Zeroizing::new(format!("{}\n", self.password.expose_secret()));
        write_atomic(&pwfile, contents.as_bytes(), Mode::OwnerOnly)?;
        self.server.chown(&pwfile)?;
        let args: Vec<OsString> = vec![
            "-U".into(),
            SUPERUSER.into(),
            "--auth=scram-sha-256".into(),
            format!("--pwfile={}", pwfile.display()).into(),
            // The cluster dies with the test: skip the fsyncs, which are most of initdb's time.
            "--no-sync".into(),
        ];
        Ok(self.server.initdb(&args).await?)
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's name (`postgres`).
    pub fn superuser(&self) -> &str {
        SUPERUSER
    }

    /// The superuser's password (random, 64 hex digits).
    pub fn password(&self) -> &SecretString {
        &self.password
    }

    /// The database that always exists (`postgres`).
    pub fn database(&self) -> &str {
        DATABASE
    }

    /// `postgres://postgres:<password>@127.0.0.1:<port>/postgres`. A secret, since it embeds
    /// the password (which is hex, so it needs no escaping).
    pub fn connection_url(&self) -> SecretString {
        SecretString::from(format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{DATABASE}",
            self.password.expose_secret(),
            self.port
        ))
    }

    /// The cluster's data directory (owned by `nobody` when the tests run as root).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The postmaster's PID.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl fmt::Debug for Postgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Postgres")
            .field("host", &self.host())
            .field("port", &self.port)
            .field("superuser", &SUPERUSER)
            .field("password", &"...")
            .field("pid", &self.pid)
            .field("data_dir", &self.data_dir)
            .finish()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Synchronous on purpose: Drop cannot await, and it must also work while a panicking
        // test unwinds. `-m immediate` takes ~50 ms; the postmaster is killed if it lingers.
        self.server
            .stop_blocking((self.pid > 1).then_some(self.pid), "immediate");
    }
}

fn io_err(what: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The lab's PostgreSQL errors in the harness's terms (what CI logs show).
impl From<PgError> for Error {
    fn from(e: PgError) -> Self {
        match e {
            PgError::NoBinaries => Self::NoPostgres,
            PgError::NoUnprivilegedUser => Self::NoUnprivilegedUser,
            PgError::Io { what, path, source } => Self::Io { what, path, source },
            PgError::Files(e) => Self::WriteFile(e),
            PgError::Spawn { program, source } => Self::Spawn { program, source },
            PgError::Command {
                program,
                status,
                output,
            } => Self::Command {
                program,
                status,
                output,
            },
            PgError::NotListening { source, log } => Self::NotListening {
                what: WHAT,
                source,
                output: log,
            },
            PgError::NotReady { waited, last, log } => Self::NotReady {
                what: WHAT,
                waited,
                last,
                output: log,
            },
            other => Self::Command {
                program: PathBuf::from(WHAT),
                status: None,
                output: other.to_string(),
            },
        }
    }
}

/// Deletes a file when dropped, so the password file never survives `initdb`.
struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.0);
    }
}
