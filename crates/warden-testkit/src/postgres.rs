//! A throwaway PostgreSQL cluster per test.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::unistd::{Gid, Uid, User};
use secrecy::{ExposeSecret, SecretString};
use tempfile::TempDir;
use warden_files::{Mode, write_atomic};
use warden_lab::process;
use zeroize::Zeroizing;

use crate::Error;
use crate::random::hex_secret;

const WHAT: &str = "postgres";
/// `initdb` and `pg_ctl start` take 1–3 s here; generous for a loaded CI machine.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);
const SUPERUSER: &str = "postgres";
const DATABASE: &str = "postgres";
/// Overrides where `initdb`, `pg_ctl` and `pg_isready` are looked for.
const PG_BIN_DIR_ENV: &str = "WARDEN_PG_BIN_DIR";

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
    bin_dir: PathBuf,
    run_as: Option<RunAs>,
    data_dir: PathBuf,
    port: u16,
    password: SecretString,
    pid: u32,
    // Last, so the files are removed after the server is stopped.
    dir: TempDir,
}

/// The unprivileged identity PostgreSQL runs as when we are root.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: Uid,
    gid: Gid,
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
        let bin_dir = find_bin_dir().ok_or(Error::NoPostgres)?;
        let run_as = if Uid::effective().is_root() {
            let nobody = User::from_name("nobody")
                .ok()
                .flatten()
                .ok_or(Error::NoUnprivilegedUser)?;
            Some(RunAs {
                uid: nobody.uid,
                gid: nobody.gid,
            })
        } else {
            None
        };

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
        let root = dir.path().join("pg");
        let sock = root.join("sock");
        for d in [&root, &sock] {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(d)
                .map_err(|source| io_err("create", d, source))?;
        }
        if let Some(run_as) = run_as {
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711))
                .map_err(|source| io_err("chmod", dir.path(), source))?;
            for d in [&root, &sock] {
                chown(d, run_as)?;
            }
        }
        let data_dir = root.join("data");
        let log = root.join("postgres.log");
        let password =
            hex_secret().map_err(|source| io_err("read", Path::new("/dev/urandom"), source))?;

        let mut pg = Self {
            bin_dir,
            run_as,
            data_dir,
            port: 0,
            password,
            pid: 0,
            dir,
        };
        pg.initdb(&root).await?;
        pg.port = process::free_port()
            .map_err(|source| io_err("find a free port on", Path::new("127.0.0.1"), source))?;
        pg.configure(&sock)?;
        pg.run(
            "pg_ctl",
            [
                OsString::from("start"),
                "-D".into(),
                pg.data_dir.clone().into(),
                "-l".into(),
                log.clone().into(),
                "-w".into(),
                "-t".into(),
                SETUP_TIMEOUT.as_secs().to_string().into(),
                "-s".into(),
            ],
            &root,
        )
        .await
        .map_err(|e| with_log(e, &log))?;

        pg.pid = process::read_pid_file(&pg.data_dir.join("postmaster.pid")).ok_or_else(|| {
            Error::NotReady {
                what: WHAT,
                waited: Duration::ZERO,
                last: "pg_ctl started, but postmaster.pid holds no PID".into(),
                output: read_log(&log),
            }
        })?;
        process::wait_listening(pg.pid, pg.port, READY_TIMEOUT, Some(&log))
            .await
            .map_err(|source| Error::NotListening {
                what: WHAT,
                source,
                output: read_log(&log),
            })?;
        pg.wait_pg_isready(&log).await?;
        Ok(pg)
    }

    /// Runs `initdb`. The superuser password reaches it through a 0600 file owned by the pg
    /// user — never argv or the environment — which is deleted as soon as `initdb` returns,
    /// whether it succeeded or not.
    async fn initdb(&self, root: &Path) -> Result<(), Error> {
        let pwfile = root.join("pwfile");
        let _remove = RemoveOnDrop(&pwfile);
        let contents = Zeroizing::new(format!("{}\n", self.password.expose_secret()));
        write_atomic(&pwfile, contents.as_bytes(), Mode::OwnerOnly)?;
        if let Some(run_as) = self.run_as {
            chown(&pwfile, run_as)?;
        }
        self.run(
            "initdb",
            [
                OsString::from("-D"),
                self.data_dir.clone().into(),
                "-U".into(),
                SUPERUSER.into(),
                "--auth=scram-sha-256".into(),
                format!("--pwfile={}", pwfile.display()).into(),
                "-E".into(),
                "UTF8".into(),
                "--locale=C".into(),
                // The cluster dies with the test: skip the fsyncs, which are most of initdb's time.
                "--no-sync".into(),
                "--no-instructions".into(),
            ],
            root,
        )
        .await
    }

    /// Appends the harness's settings to `postgresql.conf` (later settings win).
    fn configure(&self, sock: &Path) -> Result<(), Error> {
        let conf = self.data_dir.join("postgresql.conf");
        let settings = format!(
            "\n# warden-testkit\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{sock}'\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             max_connections = 50\n",
            port = self.port,
            sock = sock.display(),
        );
        fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut f| f.write_all(settings.as_bytes()))
            .map_err(|source| io_err("append settings to", &conf, source))
    }

    async fn wait_pg_isready(&self, log: &Path) -> Result<(), Error> {
        let start = Instant::now();
        let port = self.port.to_string();
        loop {
            let args = ["-q", "-h", "127.0.0.1", "-p", port.as_str(), "-t", "2"];
            match self.run("pg_isready", args, &self.data_dir).await {
                Ok(()) => return Ok(()),
                Err(e) if start.elapsed() >= READY_TIMEOUT => {
                    return Err(Error::NotReady {
                        what: WHAT,
                        waited: start.elapsed(),
                        last: e.to_string(),
                        output: read_log(log),
                    });
                }
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// Runs one of the PostgreSQL programs as the pg user, with a cleared environment and a
    /// deadline; its output goes into the error when it fails.
    async fn run<I, S>(&self, program: &str, args: I, cwd: &Path) -> Result<(), Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let program = self.bin_dir.join(program);
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(args)
            .env_clear()
            .env("LC_ALL", "C")
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        if let Some(run_as) = self.run_as {
            cmd.uid(run_as.uid.as_raw()).gid(run_as.gid.as_raw());
        }
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            program: program.clone(),
            source,
        })?;
        match tokio::time::timeout(SETUP_TIMEOUT, child.wait_with_output()).await {
            Ok(Ok(out)) if out.status.success() => Ok(()),
            Ok(Ok(out)) => Err(Error::Command {
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
            Ok(Err(source)) => Err(Error::Spawn { program, source }),
            // The future owned the child; dropping it killed the child (`kill_on_drop`).
            Err(_) => Err(Error::Command {
                program,
                status: None,
                output: String::new(),
            }),
        }
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
        // test unwinds. `-m immediate` takes ~50 ms.
        if self.data_dir.join("postmaster.pid").exists() {
            let mut cmd = std::process::Command::new(self.bin_dir.join("pg_ctl"));
            cmd.args(["stop", "-m", "immediate", "-w", "-t", "10", "-s", "-D"])
                .arg(&self.data_dir)
                .env_clear()
                .env("LC_ALL", "C")
                .current_dir(self.dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Some(run_as) = self.run_as {
                std::os::unix::process::CommandExt::uid(&mut cmd, run_as.uid.as_raw());
                std::os::unix::process::CommandExt::gid(&mut cmd, run_as.gid.as_raw());
            }
            let _ = cmd.status();
        }
        // Whatever pg_ctl managed, the postmaster must not outlive the test.
        if self.pid > 1 && process::is_alive(self.pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let start = Instant::now();
            while process::is_alive(self.pid) && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// `$WARDEN_PG_BIN_DIR`, else the directory of the real `initdb` found on `PATH` (Debian puts
/// symlinks or wrappers on PATH; the real binaries sit together), else the newest
/// `/usr/lib/postgresql/<version>/bin`.
fn find_bin_dir() -> Option<PathBuf> {
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

fn chown(path: &Path, run_as: RunAs) -> Result<(), Error> {
    std::os::unix::fs::chown(path, Some(run_as.uid.as_raw()), Some(run_as.gid.as_raw()))
        .map_err(|source| io_err("chown", path, source))
}

fn io_err(what: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Adds the server log to a failed `pg_ctl start`, which only says "could not start server".
fn with_log(e: Error, log: &Path) -> Error {
    match e {
        Error::Command {
            program,
            status,
            output,
        } => Error::Command {
            program,
            status,
            output: format!("{output}\n--- server log ---\n{}", read_log(log)),
        },
        other => other,
    }
}

/// The last 40 lines of the server log (PostgreSQL never logs the password).
fn read_log(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Deletes a file when dropped, so the password file never survives `initdb`.
struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.0);
    }
}
