//! The control socket: each output's state, and "rotate now" for one output.
//!
//! A Unix socket (`state/control.sock` by default) speaking one JSON object per line:
//!
//! | request | reply |
//! |---|---|
//! | `{"op":"status"}` | `{"ok":true,"status":{identity, taken_at, outputs:[…], requests_total, auth_errors_total}}` |
//! | `{"op":"rotate","output":"tls"}` | `{"ok":true,"rotated":{name, state, serial, not_after, …}}` once the output was re-rendered and delivered |
//! | anything else, or a failure | `{"ok":false,"error":"…"}` |
//!
//! Who may talk to it: the agent's own user and root, nobody else. Three layers say so, each
//! enough on its own for the common case: the state directory is 0700; the socket is chmod 0600
//! right after it is bound; and every connection's peer credentials (`SO_PEERCRED`, which the
//! kernel fills in at `connect` and the peer cannot forge) are checked before a byte is parsed
//! — a peer whose uid is neither ours nor 0 gets one refusal line and is disconnected. The third
//! layer is the one that does not depend on file modes a deployment might loosen (a group-
//! readable state directory, a socket path outside it). The credentials are read through
//! tokio's `UnixStream::peer_cred`, which is `getsockopt(SO_PEERCRED)` on Linux; it avoids
//! enabling nix's `socket` feature for one call.
//!
//! "Rotate" is the operator's lever for a suspected key compromise or a changed profile: the
//! output is re-issued now, whatever its schedule says. It is not a way to get more than one
//! output re-issued by mistake: the request names exactly one.
//!
//! The server is generic over a [`Controller`] so it is tested without an agent; the client
//! side ([`status`], [`rotate`]) is what `warden agent status | rotate` call.

use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::health::{OutputView, Snapshot, StatusSource};
use super::runtime::{AgentHandle, OutputStatus};

/// The socket's file name under the state directory (the default `[control] socket`).
pub const SOCKET_FILE: &str = "control.sock";

/// Longest request line accepted. Requests are a few dozen bytes.
const MAX_LINE: u64 = 4 * 1024;
/// A connection that sends nothing for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once.
const MAX_CONNECTIONS: usize = 8;
/// How long the client waits for a status reply.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the client waits for a rotation: a login, a signature and a delivery, possibly
/// behind the agent's own backoff while the server is briefly unavailable.
pub const ROTATE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the agent waits for a rotation it was asked for before answering that it is not
/// done (shorter than [`ROTATE_TIMEOUT`], so the client gets the reason rather than a timeout).
const ROTATE_WAIT: Duration = Duration::from_secs(100);

/// One request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Every output's state.
    Status,
    /// Re-issue one output now.
    Rotate {
        /// The output's name.
        output: String,
    },
}

/// One reply line. Exactly one of `status`, `rotated` and `error` is present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the request succeeded.
    pub ok: bool,
    /// For `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Snapshot>,
    /// For `rotate`: the output after it was re-issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated: Option<OutputView>,
    /// Why the request failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    fn error(message: impl Into<String>) -> Self {
        Self {
            ok: false,
            status: None,
            rotated: None,
            error: Some(message.into()),
        }
    }
}

/// Why a rotation did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RotateError {
    /// The agent has no output of that name.
    #[error("no output named `{name}` (this agent has: {})", known.join(", "))]
    UnknownOutput {
        /// The name asked for.
        name: String,
        /// The outputs it does have.
        known: Vec<String>,
    },
    /// The re-issue was attempted and failed; what was on disk stays.
    #[error("rotating `{output}` failed, the previous files stay in place: {reason}")]
    Failed {
        /// The output.
        output: String,
        /// What went wrong (no secret: the same text the agent logs).
        reason: String,
    },
    /// The agent is shutting down or the output's task is gone.
    #[error("the agent cannot rotate `{output}` now: {reason}")]
    Unavailable {
        /// The output.
        output: String,
        /// Why.
        reason: String,
    },
}

/// What the control socket drives: the running agent, or a stand-in in tests.
pub trait Controller: StatusSource {
    /// Re-issues `output` now and resolves once it was delivered (or failed).
    fn rotate(&self, output: &str) -> impl Future<Output = Result<OutputView, RotateError>> + Send;
}

/// The running agent: "rotate" wakes the output's task ([`AgentHandle::rotate_now`]) and
/// waits until that task reports a render (success) or a render error (failure) it had not
/// reported before.
impl Controller for AgentHandle {
    async fn rotate(&self, output: &str) -> Result<OutputView, RotateError> {
        let find = |outputs: Vec<OutputStatus>| outputs.into_iter().find(|o| o.name == output);
        let before = find(self.outputs());
        self.rotate_now(output)
            .map_err(|e| RotateError::UnknownOutput {
                name: e.name,
                known: e.known,
            })?;
        let (renders, errors) = before.map_or((0, 0), |o| (o.renders, o.render_errors));
        let deadline = tokio::time::Instant::now() + ROTATE_WAIT;
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let unavailable = |reason: &str| RotateError::Unavailable {
                output: output.to_owned(),
                reason: reason.to_owned(),
            };
            if self.is_stopping() {
                return Err(unavailable("it is shutting down"));
            }
            let Some(now) = find(self.outputs()) else {
                return Err(unavailable("the output vanished from the status"));
            };
            if now.renders > renders {
                return Ok(OutputView::from(&now));
            }
            if now.render_errors > errors {
                return Err(RotateError::Failed {
                    output: output.to_owned(),
                    reason: now
                        .last_error
                        .unwrap_or_else(|| "no reason recorded".to_owned()),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(unavailable(
                    "the rotation did not finish within 100 s; it goes on, see `warden agent status`",
                ));
            }
        }
    }
}

/// Why the control socket could not be served or reached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// Another agent already answers on this socket (two agents for one identity would fight
    /// over its files).
    #[error("another agent is already listening on {}", path.display())]
    AlreadyRunning {
        /// The socket.
        path: PathBuf,
    },
    /// Something that is not a socket sits at the socket's path; it is left alone rather than
    /// deleted.
    #[error("{} exists and is not a socket; refusing to replace it", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// Binding, securing or cleaning up the socket file failed.
    #[error("could not {step} the control socket {}: {source}", path.display())]
    Socket {
        /// The socket.
        path: PathBuf,
        /// `bind`, `chmod`, `remove the stale`, `inspect`.
        step: &'static str,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// The client could not connect: no agent is running (`NotFound`, `ConnectionRefused`) or
    /// this user may not open the socket (`PermissionDenied`).
    #[error("could not connect to the agent at {}: {source}", path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// The conversation broke off (the agent exited mid-request).
    #[error("lost the connection to the agent at {}: {source}", path.display())]
    Io {
        /// The socket.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// The agent did not answer in time.
    #[error("the agent at {} did not answer within {waited:?}", path.display())]
    Timeout {
        /// The socket.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
    /// The reply was not what the protocol says (a different program on the socket, or an
    /// agent of another version).
    #[error("unexpected reply from {}: {reason}", path.display())]
    BadReply {
        /// The socket.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The agent answered with an error (unknown output, rotation failed, peer refused).
    #[error("the agent refused: {message}")]
    Refused {
        /// The agent's message.
        message: String,
    },
}

impl ControlError {
    /// Whether the failure means "no agent is running there".
    pub fn is_not_running(&self) -> bool {
        matches!(self, Self::Connect { source, .. }
            if matches!(source.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused))
    }
}

/// A running control socket. Dropping it stops serving and removes the socket file.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    inode: u64,
    task: JoinHandle<()>,
}

impl ControlServer {
    /// Binds `path` (0600), and serves `controller` to connections from this process's user or
    /// root until dropped. A stale socket left by a crashed agent is replaced; a live one is
    /// [`ControlError::AlreadyRunning`].
    pub async fn start<C: Controller>(path: &Path, controller: C) -> Result<Self, ControlError> {
        let allowed = vec![nix::unistd::geteuid().as_raw(), 0];
        Self::start_allowing(path, controller, allowed).await
    }

    /// As [`start`](Self::start) with an explicit set of allowed uids (tests use it to prove
    /// the refusal without needing a second user).
    pub(crate) async fn start_allowing<C: Controller>(
        path: &Path,
        controller: C,
        allowed_uids: Vec<u32>,
    ) -> Result<Self, ControlError> {
        let sock_err = |step: &'static str| {
            let path = path.to_path_buf();
            move |source| ControlError::Socket { path, step, source }
        };
        // Created (0700) only when missing: an existing directory's mode is not ours to change.
        if let Some(parent) = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty() && !p.exists())
        {
            warden_files::ensure_private_dir(parent).map_err(|e| ControlError::Socket {
                path: path.to_path_buf(),
                step: "create the directory of",
                source: io::Error::other(e),
            })?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                if UnixStream::connect(path).await.is_ok() {
                    return Err(ControlError::AlreadyRunning {
                        path: path.to_path_buf(),
                    });
                }
                std::fs::remove_file(path).map_err(sock_err("remove the stale"))?;
            }
            Ok(_) => {
                return Err(ControlError::NotASocket {
                    path: path.to_path_buf(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(sock_err("inspect")(e)),
        }
        let listener = UnixListener::bind(path).map_err(sock_err("bind"))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(sock_err("chmod"))?;
        let inode = std::fs::symlink_metadata(path)
            .map_err(sock_err("inspect"))?
            .ino();
        tracing::info!(path = %path.display(), "control socket listening");
        let task = tokio::spawn(accept_loop(
            listener,
            Arc::new(controller),
            Arc::new(allowed_uids),
        ));
        Ok(Self {
            path: path.to_path_buf(),
            inode,
            task,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
        // Only our own socket: a newer agent may have replaced it already.
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

async fn accept_loop<C: Controller>(
    listener: UnixListener,
    controller: Arc<C>,
    allowed: Arc<Vec<u32>>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                let controller = Arc::clone(&controller);
                let allowed = Arc::clone(&allowed);
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Err(e) = serve_connection(stream, controller.as_ref(), &allowed).await {
                        tracing::debug!(error = %e, "control connection ended with an error");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "control socket could not accept a connection");
                drop(permit);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_connection<C: Controller>(
    stream: UnixStream,
    controller: &C,
    allowed: &[u32],
) -> io::Result<()> {
    let cred = stream.peer_cred()?;
    let (read, mut write) = stream.into_split();
    if !allowed.contains(&cred.uid()) {
        tracing::warn!(
            uid = cred.uid(),
            pid = ?cred.pid(),
            "control socket: refused a connection from another user"
        );
        let reply = Reply::error(format!(
            "permission denied: uid {} may not use this agent's control socket (only the agent's own user and root may)",
            cred.uid()
        ));
        write_reply(&mut write, &reply).await?;
        // Read (and discard, never parse) what the peer sends for a moment before closing:
        // closing first would make a simple client's request write fail with EPIPE before it
        // gets to read the refusal.
        let mut sink = [0u8; 512];
        let mut read = read.take(MAX_LINE);
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while matches!(read.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
        return Ok(());
    }
    let mut reader = BufReader::new(read.take(MAX_LINE * 16));
    let mut line = String::new();
    loop {
        line.clear();
        let n = match tokio::time::timeout(
            IDLE_TIMEOUT,
            (&mut reader).take(MAX_LINE).read_line(&mut line),
        )
        .await
        {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        if !line.ends_with('\n') && n as u64 >= MAX_LINE {
            return write_reply(&mut write, &Reply::error("request line too long")).await;
        }
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Request>(trimmed) {
            Ok(req) => handle(req, controller).await,
            Err(e) => Reply::error(format!(
                "bad request ({e}); expected {{\"op\":\"status\"}} or {{\"op\":\"rotate\",\"output\":\"NAME\"}}"
            )),
        };
        write_reply(&mut write, &reply).await?;
    }
}

async fn handle<C: Controller>(req: Request, controller: &C) -> Reply {
    match req {
        Request::Status => Reply {
            ok: true,
            status: Some(controller.snapshot()),
            rotated: None,
            error: None,
        },
        Request::Rotate { output } => {
            tracing::info!(output = %output, "rotation requested on the control socket");
            match controller.rotate(&output).await {
                Ok(view) => Reply {
                    ok: true,
                    status: None,
                    rotated: Some(view),
                    error: None,
                },
                Err(e) => Reply::error(e.to_string()),
            }
        }
    }
}

async fn write_reply<W: AsyncWriteExt + Unpin>(w: &mut W, reply: &Reply) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(reply).map_err(io::Error::other)?;
    bytes.push(b'\n');
    w.write_all(&bytes).await?;
    w.flush().await
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// Sends one request and reads its reply. An `ok: false` reply is returned as is; [`status`]
/// and [`rotate`] turn it into [`ControlError::Refused`].
pub async fn request(
    socket: &Path,
    req: &Request,
    timeout: Duration,
) -> Result<Reply, ControlError> {
    let path = socket.to_path_buf();
    let exchange = async {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|source| ControlError::Connect {
                path: path.clone(),
                source,
            })?;
        let io_err = |source| ControlError::Io {
            path: path.clone(),
            source,
        };
        let (read, mut write) = stream.into_split();
        let mut line = serde_json::to_vec(req).map_err(|e| io_err(io::Error::other(e)))?;
        line.push(b'\n');
        // The agent may refuse before reading (wrong user) and close: its answer is still
        // waiting to be read, so a failed write is not the end of the story.
        let sent = write.write_all(&line).await;
        let mut reply = String::new();
        let read = BufReader::new(read.take(1 << 20))
            .read_line(&mut reply)
            .await;
        match (sent, read) {
            (_, Ok(n)) if n > 0 => {}
            (Err(e), _) | (Ok(()), Err(e)) => return Err(io_err(e)),
            (Ok(()), Ok(_)) => {
                return Err(ControlError::BadReply {
                    path: path.clone(),
                    reason: "the connection closed without a reply".to_owned(),
                });
            }
        }
        serde_json::from_str::<Reply>(reply.trim()).map_err(|e| ControlError::BadReply {
            path: path.clone(),
            reason: e.to_string(),
        })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(ControlError::Timeout {
            path,
            waited: timeout,
        }),
    }
}

/// The agent's state, as `warden agent status` shows it.
pub async fn status(socket: &Path) -> Result<Snapshot, ControlError> {
    let reply = request(socket, &Request::Status, STATUS_TIMEOUT).await?;
    match reply {
        Reply {
            ok: true,
            status: Some(s),
            ..
        } => Ok(s),
        other => Err(refusal(socket, other)),
    }
}

/// Has the agent re-issue `output` now; resolves with the output as delivered.
pub async fn rotate(socket: &Path, output: &str) -> Result<OutputView, ControlError> {
    let req = Request::Rotate {
        output: output.to_owned(),
    };
    let reply = request(socket, &req, ROTATE_TIMEOUT).await?;
    match reply {
        Reply {
            ok: true,
            rotated: Some(v),
            ..
        } => Ok(v),
        other => Err(refusal(socket, other)),
    }
}

/// A plain-text rendering of a status, for `warden agent status` (the library prints nothing;
/// the CLI decides where this goes).
pub fn describe(snapshot: &Snapshot) -> String {
    use std::fmt::Write as _;
    let ts = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| t.to_string())
    };
    let overall = super::health::Overall::of(&snapshot.outputs);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}: {} ({} requests to OpenBao, {} auth errors)",
        snapshot.identity,
        match overall {
            super::health::Overall::Ok => "ok",
            super::health::Overall::Degraded => "degraded",
            super::health::Overall::Failing => "failing",
        },
        snapshot.requests_total,
        snapshot.auth_errors_total
    );
    let a = &snapshot.auth;
    let _ = write!(
        s,
        "  login: {}",
        if a.logged_in {
            "logged in"
        } else {
            "not logged in"
        }
    );
    if let Some(t) = a.token_expires {
        let _ = write!(s, ", token until {}", ts(t));
    }
    if let Some(t) = a.identity_not_after {
        let _ = write!(s, ", identity certificate until {}", ts(t));
    }
    s.push('\n');
    if let Some(e) = &a.last_error {
        let _ = writeln!(s, "    last error: {e}");
    }
    for o in &snapshot.outputs {
        let _ = write!(s, "  {} ({}): {}", o.name, o.kind, o.state.as_str());
        if let Some(serial) = &o.serial {
            let _ = write!(s, ", serial {serial}");
        }
        if let Some(t) = o.not_after {
            let left = (t - snapshot.taken_at).whole_seconds();
            let _ = write!(s, ", expires {} (in {left} s)", ts(t));
        }
        if let Some(t) = o.last_render {
            let _ = write!(s, ", rendered {}", ts(t));
        }
        if let Some(t) = o.next_due {
            let _ = write!(s, ", next {}", ts(t));
        }
        if o.render_errors > 0 {
            let _ = write!(s, ", {} render errors", o.render_errors);
        }
        s.push('\n');
        if let Some(e) = &o.last_error {
            let _ = writeln!(s, "    last error: {e}");
        }
    }
    s
}

fn refusal(socket: &Path, reply: Reply) -> ControlError {
    match reply.error {
        Some(message) if !reply.ok => ControlError::Refused { message },
        _ => ControlError::BadReply {
            path: socket.to_path_buf(),
            reason: "the reply is missing its result".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use time::OffsetDateTime;

    use super::super::health::Freshness;
    use super::*;

    /// A stand-in agent: two outputs; rotating bumps the serial.
    struct Fake {
        serials: Mutex<Vec<(String, u32)>>,
    }

    impl Fake {
        fn new() -> Self {
            Self {
                serials: Mutex::new(vec![("tls".into(), 1), ("config".into(), 0)]),
            }
        }
        fn view(name: &str, serial: u32) -> OutputView {
            OutputView {
                name: name.to_owned(),
                kind: if serial > 0 {
                    "certificate"
                } else {
                    "template"
                }
                .to_owned(),
                state: Freshness::Fresh,
                serial: (serial > 0).then(|| format!("{serial:02x}")),
                not_after: None,
                last_render: None,
                last_change: None,
                next_due: None,
                renders: u64::from(serial),
                changes: u64::from(serial),
                render_errors: 0,
                last_error: None,
                last_reload_ok: None,
                repairs: 0,
            }
        }
    }

    impl StatusSource for Fake {
        fn snapshot(&self) -> Snapshot {
            Snapshot {
                identity: "billing".into(),
                taken_at: OffsetDateTime::UNIX_EPOCH,
                started_at: None,
                auth: Default::default(),
                outputs: self
                    .serials
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(n, s)| Self::view(n, *s))
                    .collect(),
                requests_total: 3,
                auth_errors_total: 0,
                databases: Vec::new(),
                clock_skew_seconds: None,
            }
        }
    }

    impl Controller for Fake {
        async fn rotate(&self, output: &str) -> Result<OutputView, RotateError> {
            let mut serials = self.serials.lock().unwrap();
            let known = serials.iter().map(|(n, _)| n.clone()).collect();
            let Some((name, serial)) = serials.iter_mut().find(|(n, _)| n == output) else {
                return Err(RotateError::UnknownOutput {
                    name: output.to_owned(),
                    known,
                });
            };
            if *serial > 0 {
                *serial += 1;
            }
            Ok(Self::view(name, *serial))
        }
    }

    #[tokio::test]
    async fn status_and_rotate_over_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join(SOCKET_FILE);
        let server = ControlServer::start(&path, Fake::new()).await.unwrap();
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            dir_mode & 0o777,
            0o700,
            "a missing state dir is created private"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");

        let s = status(&path).await.unwrap();
        assert_eq!(s.identity, "billing");
        assert_eq!(s.outputs[0].serial.as_deref(), Some("01"));

        let v = rotate(&path, "tls").await.unwrap();
        assert_eq!(v.serial.as_deref(), Some("02"));
        let s = status(&path).await.unwrap();
        assert_eq!(s.outputs[0].serial.as_deref(), Some("02"));
        assert_eq!(
            s.outputs[1].serial, None,
            "the other output was not touched"
        );

        let err = rotate(&path, "tsl").await.unwrap_err();
        assert!(
            matches!(&err, ControlError::Refused { message } if message.contains("tls, config")),
            "{err}"
        );

        drop(server);
        assert!(!path.exists(), "the socket is removed on shutdown");
        let err = status(&path).await.unwrap_err();
        assert!(err.is_not_running(), "{err:?}");
    }

    #[tokio::test]
    async fn several_requests_on_one_connection_and_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SOCKET_FILE);
        let _server = ControlServer::start(&path, Fake::new()).await.unwrap();
        let stream = UnixStream::connect(&path).await.unwrap();
        let (read, mut write) = stream.into_split();
        write
            .write_all(b"{\"op\":\"status\"}\n\n{\"op\":\"launch\"}\nnot json\n{\"op\":\"rotate\",\"output\":\"tls\",\"extra\":1}\n")
            .await
            .unwrap();
        write.shutdown().await.unwrap();
        let mut lines = BufReader::new(read).lines();
        let mut replies = Vec::new();
        while let Some(l) = lines.next_line().await.unwrap() {
            replies.push(serde_json::from_str::<Reply>(&l).unwrap());
        }
        assert_eq!(replies.len(), 4, "{replies:?}");
        assert!(replies[0].ok && replies[0].status.is_some());
        for r in &replies[1..] {
            assert!(!r.ok);
            assert!(r.error.as_deref().unwrap().contains("bad request"), "{r:?}");
        }
    }

    #[tokio::test]
    async fn a_peer_of_another_uid_is_refused_before_anything_is_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SOCKET_FILE);
        // Allow only a uid that is certainly not ours: we are now "another user".
        let me = nix::unistd::geteuid().as_raw();
        let other = if me == 4_000_000 {
            4_000_001
        } else {
            4_000_000
        };
        let fake = Arc::new(Fake::new());
        let _server = ControlServer::start_allowing(&path, FakeRef(Arc::clone(&fake)), vec![other])
            .await
            .unwrap();
        let err = rotate(&path, "tls").await.unwrap_err();
        assert!(
            matches!(&err, ControlError::Refused { message } if message.contains(&format!("uid {me}"))),
            "{err:?}"
        );
        assert_eq!(
            fake.snapshot().outputs[0].serial.as_deref(),
            Some("01"),
            "a refused rotate changed nothing"
        );
    }

    struct FakeRef(Arc<Fake>);
    impl StatusSource for FakeRef {
        fn snapshot(&self) -> Snapshot {
            self.0.snapshot()
        }
    }
    impl Controller for FakeRef {
        async fn rotate(&self, output: &str) -> Result<OutputView, RotateError> {
            self.0.rotate(output).await
        }
    }

    #[tokio::test]
    async fn a_live_socket_is_not_stolen_and_a_stale_one_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SOCKET_FILE);
        let mut first = ControlServer::start(&path, Fake::new()).await.unwrap();
        let err = ControlServer::start(&path, Fake::new()).await.unwrap_err();
        assert!(matches!(err, ControlError::AlreadyRunning { .. }), "{err}");
        // A crashed agent leaves its socket file behind: simulate by leaking the file.
        first.task.abort();
        let _ = (&mut first.task).await;
        std::mem::forget(first);
        assert!(path.exists());
        let second = ControlServer::start(&path, Fake::new()).await.unwrap();
        assert!(status(&path).await.is_ok());
        drop(second);

        std::fs::write(&path, b"not a socket").unwrap();
        let err = ControlServer::start(&path, Fake::new()).await.unwrap_err();
        assert!(matches!(err, ControlError::NotASocket { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
    }

    #[test]
    fn the_text_status_names_every_output_and_its_state() {
        let text = describe(&Fake::new().snapshot());
        assert!(text.starts_with("billing: ok (3 requests"), "{text}");
        assert!(
            text.contains("  tls (certificate): fresh, serial 01"),
            "{text}"
        );
        assert!(text.contains("  config (template): fresh"), "{text}");
    }

    #[test]
    fn the_wire_format_is_the_documented_one() {
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"op":"status"}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::Rotate {
                output: "tls".into()
            })
            .unwrap(),
            r#"{"op":"rotate","output":"tls"}"#
        );
        assert_eq!(
            serde_json::to_string(&Reply::error("x")).unwrap(),
            r#"{"ok":false,"error":"x"}"#
        );
    }
}
