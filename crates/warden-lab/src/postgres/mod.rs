//! PostgreSQL server processes, shared by the lab's own database ([`LabPostgres`]) and the test
//! harness's throwaway clusters (`warden_testkit::Postgres`): finding the server binaries,
//! choosing the unprivileged user PostgreSQL runs as when we are root, running `initdb`,
//! `pg_ctl`, `pg_isready` and `psql` with a cleared environment and a deadline, and starting a
//! cluster only once `/proc` shows that *our* postmaster owns the port
//! ([`crate::process::wait_listening`]).
//!
//! Start with [`PgServer::locate`], then [`PgServer::prepare_dirs`], [`PgServer::initdb`],
//! [`PgServer::start`] and [`PgServer::stop_blocking`]. What the lab does with them (its data
//! directory under the lab, peer authentication on its own socket, the roles and grants of the
//! spec's databases) is [`LabPostgres`].

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::unistd::{Gid, Uid, User};
use tokio::io::AsyncWriteExt as _;

use crate::process::{self, ProcessError};

mod lab;
mod scram;

pub use lab::{
    LAB_POSTGRES_HOST, LabPostgres, PostgresConfig, PostgresStatus, PostgresUpReport, bind,
    without_lab_databases,
};

/// Overrides where `initdb`, `pg_ctl` and `pg_isready` (and first `psql`) are looked for.
pub const PG_BIN_DIR_ENV: &str = "WARDEN_PG_BIN_DIR";
/// `initdb` and `pg_ctl start` take 1–3 s here; generous for a loaded CI machine.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `start` waits for the port and for `pg_isready`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

/// Why a PostgreSQL program could not be found, run or brought up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// No directory holds `initdb`, `pg_ctl` and `pg_isready` together.
    #[error(
        "PostgreSQL server binaries not found (looked at ${PG_BIN_DIR_ENV}, `initdb` on PATH, /usr/lib/postgresql/*/bin); `scripts/bootstrap` installs them"
    )]
    NoBinaries,
    /// We are root (PostgreSQL refuses to run as root) and there is no `nobody` to run it as.
    #[error("running as root, and there is no `nobody` user to run PostgreSQL as")]
    NoUnprivilegedUser,
    /// A file or directory could not be created or changed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A file holding a secret could not be written (the previous one, if any, is intact).
    #[error(transparent)]
    Files(#[from] warden_files::Error),
    /// A program could not be started at all.
    #[error("could not start {}: {source}", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A program failed or did not finish in time.
    #[error("`{}` failed ({}):\n{output}", program.display(), status.map_or_else(|| "timed out".to_owned(), |s| s.to_string()))]
    Command {
        /// The program.
        program: PathBuf,
        /// Its exit status, `None` when it was killed at the deadline.
        status: Option<ExitStatus>,
        /// What it printed (PostgreSQL's programs never print a password).
        output: String,
    },
    /// The postmaster did not come to listen on its port (it exited, another process holds the
    /// port, or it was too slow).
    #[error("postgres did not start listening: {source}\n--- its last log lines ---\n{log}")]
    NotListening {
        /// What the `/proc` check saw.
        #[source]
        source: ProcessError,
        /// The server log's last lines.
        log: String,
    },
    /// It listened but `pg_isready` never succeeded, or `pg_ctl` left no `postmaster.pid`.
    #[error("postgres was not ready after {waited:?}: {last}\n--- its last log lines ---\n{log}")]
    NotReady {
        /// How long we waited.
        waited: Duration,
        /// The last thing the check observed.
        last: String,
        /// The server log's last lines.
        log: String,
    },
}

impl PgError {
    /// Whether the server could not start because another process holds its port (taken
    /// between choosing a free port and binding it): trying another port is the fix.
    pub fn is_port_taken(&self) -> bool {
        match self {
            Self::NotListening {
                source: ProcessError::PortTakenByOther { .. },
                ..
            } => true,
            Self::Command { output, .. } | Self::NotListening { log: output, .. } => {
                output.contains("could not create any TCP/IP sockets")
                    || output.contains("Address already in use")
            }
            _ => false,
        }
    }

    fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io { what, path, source }
    }
}

/// The unprivileged identity PostgreSQL runs as when we are root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    /// Its uid.
    pub uid: Uid,
    /// Its primary gid.
    pub gid: Gid,
}

/// One PostgreSQL cluster on disk: `<dir>/data` (the data directory), `<dir>/sock` (its Unix
/// socket, never world-reachable) and `<dir>/postgres.log`. `dir` belongs to the PostgreSQL
/// user (0700); whoever creates it makes its parent traversable for that user when it is not
/// us ([`PgServer::needs_traversal`]).
#[derive(Debug, Clone)]
pub struct PgServer {
    bin_dir: PathBuf,
    run_as: Option<RunAs>,
    dir: PathBuf,
}

impl PgServer {
    /// Finds the binaries and decides who PostgreSQL runs as: the current user, or `nobody`
    /// when we are root. Touches nothing on disk.
    pub fn locate(dir: impl Into<PathBuf>) -> Result<Self, PgError> {
        let bin_dir = find_bin_dir().ok_or(PgError::NoBinaries)?;
        let run_as = if Uid::effective().is_root() {
            let nobody = User::from_name("nobody")
                .ok()
                .flatten()
                .ok_or(PgError::NoUnprivilegedUser)?;
            Some(RunAs {
                uid: nobody.uid,
                gid: nobody.gid,
            })
        } else {
            None
        };
        Ok(Self {
            bin_dir,
            run_as,
            dir: dir.into(),
        })
    }

    /// Whether PostgreSQL runs as another user than us (we are root), so the directories above
    /// [`dir`](Self::dir) must let it traverse (mode 0711).
    pub fn needs_traversal(&self) -> bool {
        self.run_as.is_some()
    }

    /// The OS user name PostgreSQL runs as (what peer authentication on its socket sees when
    /// [`psql`](Self::psql) connects).
    pub fn os_user(&self) -> String {
        let uid = self.run_as.map_or_else(Uid::effective, |r| r.uid);
        User::from_uid(uid)
            .ok()
            .flatten()
            .map_or_else(|| uid.to_string(), |u| u.name)
    }

    /// The cluster's own directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The directory holding the Unix socket.
    pub fn sock_dir(&self) -> PathBuf {
        self.dir.join("sock")
    }

    /// The server log.
    pub fn log(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// Whether `initdb` has run here.
    pub fn initialised(&self) -> bool {
        self.data_dir().join("PG_VERSION").is_file()
    }

    /// Creates [`dir`](Self::dir) and the socket directory, 0700 and owned by the PostgreSQL
    /// user.
    pub fn prepare_dirs(&self) -> Result<(), PgError> {
        for d in [self.dir.clone(), self.sock_dir()] {
            match fs::DirBuilder::new().mode(0o700).create(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(PgError::io("create", &d)(e)),
            }
            self.chown(&d)?;
        }
        Ok(())
    }

    /// Hands `path` to the PostgreSQL user (nothing to do when that is us).
    pub fn chown(&self, path: &Path) -> Result<(), PgError> {
        if let Some(r) = self.run_as {
            std::os::unix::fs::chown(path, Some(r.uid.as_raw()), Some(r.gid.as_raw()))
                .map_err(PgError::io("chown", path))?;
        }
        Ok(())
    }

    /// Runs `initdb` on the data directory (UTF8, C locale, no instructions) with `extra`
    /// arguments (superuser, authentication, password file).
    pub async fn initdb(&self, extra: &[OsString]) -> Result<(), PgError> {
        let mut args: Vec<OsString> = vec![
            "-D".into(),
            self.data_dir().into(),
            "-E".into(),
            "UTF8".into(),
            "--locale=C".into(),
            "--no-instructions".into(),
        ];
        args.extend(extra.iter().cloned());
        self.run("initdb", &args, None).await.map(drop)
    }

    /// Writes `name` in the data directory (configuration files), owned by the PostgreSQL
    /// user, replacing it atomically.
    pub fn write_config(&self, name: &str, contents: &str) -> Result<(), PgError> {
        let path = self.data_dir().join(name);
        warden_files::write_atomic(&path, contents.as_bytes(), warden_files::Mode::OwnerOnly)?;
        self.chown(&path)
    }

    /// Appends `settings` to `postgresql.conf` (later settings win).
    pub fn append_settings(&self, settings: &str) -> Result<(), PgError> {
        use std::io::Write as _;
        let conf = self.data_dir().join("postgresql.conf");
        fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut f| f.write_all(settings.as_bytes()))
            .map_err(PgError::io("append settings to", &conf))
    }

    /// `pg_ctl start`, then waits until `/proc` shows the postmaster of `postmaster.pid`
    /// listening on 127.0.0.1:`port` and `pg_isready` answers. Returns the postmaster's PID.
    pub async fn start(&self, port: u16) -> Result<u32, PgError> {
        let log = self.log();
        let args: Vec<OsString> = vec![
            "start".into(),
            "-D".into(),
            self.data_dir().into(),
            "-l".into(),
            log.clone().into(),
            "-w".into(),
            "-t".into(),
            SETUP_TIMEOUT.as_secs().to_string().into(),
            "-s".into(),
        ];
        self.run("pg_ctl", &args, None)
            .await
            .map_err(|e| self.with_log(e))?;
        let pid = self.pid().ok_or_else(|| PgError::NotReady {
            waited: Duration::ZERO,
            last: "pg_ctl started, but postmaster.pid holds no live PID".into(),
            log: read_log(&log),
        })?;
        process::wait_listening(pid, port, READY_TIMEOUT, Some(&log))
            .await
            .map_err(|source| PgError::NotListening {
                source,
                log: read_log(&log),
            })?;
        self.wait_ready(port).await?;
        Ok(pid)
    }

    /// The running postmaster's PID, from `postmaster.pid`, when it is alive.
    pub fn pid(&self) -> Option<u32> {
        process::read_pid_file(&self.data_dir().join("postmaster.pid"))
            .filter(|&p| process::is_alive(p))
    }

    async fn wait_ready(&self, port: u16) -> Result<(), PgError> {
        let start = Instant::now();
        let port = port.to_string();
        loop {
            let args = ["-q", "-h", "127.0.0.1", "-p", port.as_str(), "-t", "2"];
            let args: Vec<OsString> = args.iter().map(OsString::from).collect();
            match self.run("pg_isready", &args, None).await {
                Ok(_) => return Ok(()),
                Err(e) if start.elapsed() >= READY_TIMEOUT => {
                    return Err(PgError::NotReady {
                        waited: start.elapsed(),
                        last: e.to_string(),
                        log: read_log(&self.log()),
                    });
                }
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// Stops the cluster: `pg_ctl stop -m <mode>` (`fast` closes sessions cleanly,
    /// `immediate` skips the shutdown checkpoint), then `SIGKILL` to `pid` if it is still
    /// there after 10 s. Synchronous, so a `Drop` can call it while a test unwinds. Returns
    /// whether a server was running.
    pub fn stop_blocking(&self, pid: Option<u32>, mode: &str) -> bool {
        let running =
            pid.is_some_and(process::is_alive) || self.data_dir().join("postmaster.pid").exists();
        if !running {
            return false;
        }
        let mut cmd = std::process::Command::new(self.bin_dir.join("pg_ctl"));
        cmd.args(["stop", "-m", mode, "-w", "-t", "10", "-s", "-D"])
            .arg(self.data_dir())
            .env_clear()
            .env("LC_ALL", "C")
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(r) = self.run_as {
            std::os::unix::process::CommandExt::uid(&mut cmd, r.uid.as_raw());
            std::os::unix::process::CommandExt::gid(&mut cmd, r.gid.as_raw());
        }
        let _ = cmd.status();
        // Whatever pg_ctl managed, the postmaster must not outlive this call.
        if let Some(pid) = pid.filter(|&p| p > 1 && process::is_alive(p)) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let start = Instant::now();
            while process::is_alive(pid) && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        true
    }

    /// Runs `sql` through `psql` as the PostgreSQL OS user over the cluster's Unix socket (the
    /// lab's `pg_hba.conf` maps that user to the superuser by peer authentication, so no
    /// password exists anywhere). The SQL goes through stdin, never argv. Returns what psql
    /// printed (unaligned, tuples only).
    pub async fn psql(
        &self,
        port: u16,
        superuser: &str,
        database: &str,
        sql: &str,
    ) -> Result<String, PgError> {
        let args: Vec<OsString> = [
            "-h",
            &self.sock_dir().to_string_lossy(),
            "-p",
            &port.to_string(),
            "-U",
            superuser,
            "-d",
            database,
            "-X",
            "-q",
            "-t",
            "-A",
            "-w",
            "-v",
            "ON_ERROR_STOP=1",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        self.run("psql", &args, Some(sql.as_bytes())).await
    }

    /// Runs one of the PostgreSQL programs as the PostgreSQL user, in [`dir`](Self::dir), with
    /// a cleared environment (PATH and `LC_ALL=C` only) and a deadline; `stdin` is written to
    /// it when given. Its output goes into the error when it fails.
    pub async fn run(
        &self,
        program: &str,
        args: &[OsString],
        stdin: Option<&[u8]>,
    ) -> Result<String, PgError> {
        // The server programs sit together; `psql` usually beside them, else on PATH (a
        // separate client package).
        let program = match self.bin_dir.join(program) {
            p if p.is_file() => p,
            _ => PathBuf::from(program),
        };
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(args)
            .env_clear()
            .env("LC_ALL", "C")
            .current_dir(if self.dir.is_dir() {
                self.dir.as_path()
            } else {
                Path::new("/")
            })
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        if let Some(r) = self.run_as {
            cmd.uid(r.uid.as_raw()).gid(r.gid.as_raw());
        }
        let mut child = cmd.spawn().map_err(|source| PgError::Spawn {
            program: program.clone(),
            source,
        })?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input)
                .await
                .map_err(|source| PgError::Spawn {
                    program: program.clone(),
                    source,
                })?;
            drop(pipe);
        }
        match tokio::time::timeout(SETUP_TIMEOUT, child.wait_with_output()).await {
            Ok(Ok(out)) if out.status.success() => {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            }
            Ok(Ok(out)) => Err(PgError::Command {
                program,
                status: Some(out.status),
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )
                .trim()
                .to_owned(),
            }),
            Ok(Err(source)) => Err(PgError::Spawn { program, source }),
            // The future owned the child; dropping it killed the child (`kill_on_drop`).
            Err(_) => Err(PgError::Command {
                program,
                status: None,
                output: String::new(),
            }),
        }
    }

    /// Adds the server log to a failed `pg_ctl start`, which only says "could not start server".
    fn with_log(&self, e: PgError) -> PgError {
        match e {
            PgError::Command {
                program,
                status,
                output,
            } => PgError::Command {
                program,
                status,
                output: format!("{output}\n--- server log ---\n{}", read_log(&self.log())),
            },
            other => other,
        }
    }
}

/// `$WARDEN_PG_BIN_DIR`, else the directory of the real `initdb` found on `PATH` (Debian puts
/// symlinks or wrappers on PATH; the real binaries sit together), else the newest
/// `/usr/lib/postgresql/<version>/bin`.
pub fn find_bin_dir() -> Option<PathBuf> {
    let complete = |d: &Path| {
        ["initdb", "pg_ctl", "pg_isready"]
            .iter()
            .all(|p| d.join(p).is_file())
    };
    if let Some(dir) = std::env::var_os(PG_BIN_DIR_ENV).map(PathBuf::from) {
        return complete(&dir).then_some(dir);
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("initdb"))
            .find(|p| p.is_file())
            .and_then(|p| fs::canonicalize(p).ok())
            .and_then(|p| p.parent().map(Path::to_path_buf))
    });
    if let Some(dir) = on_path.filter(|d| complete(d)) {
        return Some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| complete(d))
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d)
}

/// The last 40 lines of a server log (PostgreSQL never logs a password; the lab also keeps
/// statements out of it).
pub fn read_log(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Quotes a PostgreSQL identifier (`"…"`, inner quotes doubled).
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
