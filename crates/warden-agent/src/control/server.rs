//! The agent's side of the control socket: bind it owner-only, check each peer's uid, and
//! answer requests without letting any connection hold up another.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

use super::{ControlError, Controller, Reply, Request, RotateError};
use crate::health::OutputView;
use crate::runtime::{AgentHandle, OutputStatus};
use crate::slots::{Activity, CloseAll, Slots};

/// Longest request line accepted. Requests are a few dozen bytes.
const MAX_LINE: u64 = 4 * 1024;
/// A client has this long to send each request line, counted from the connection or from the
/// previous reply. The clients are programs that write their request at once; a connection
/// that sends nothing, or a byte now and then, is closed within seconds and holds nobody up.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// A client has this long to take a reply (a few KiB) before the connection is closed.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections open at once; at the cap the idlest is closed to make room. Far more than the
/// one operator or script that talks to an agent at a time.
pub const MAX_CONNECTIONS: usize = 32;
/// How long the agent waits for a rotation it was asked for before answering that it is not
/// done (shorter than [`super::ROTATE_TIMEOUT`], so the client gets the reason rather than a
/// timeout).
const ROTATE_WAIT: Duration = Duration::from_secs(100);

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

/// A running control socket. Dropping it stops serving, closes its connections and removes the
/// socket file.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    inode: u64,
    pub(super) task: JoinHandle<()>,
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
        socket_dir(path).map_err(|e| ControlError::Socket {
            path: path.to_path_buf(),
            step: "secure the directory of",
            source: io::Error::other(e),
        })?;
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

/// Makes sure the socket's directory is one only root or the agent's user can change, reached
/// without following a symlink from the directory holding it (`state/` in the identity
/// directory), as every directory the agent writes into. The socket is bound, chmodded and
/// later removed by path: in a directory another user owns, or one that is a symlink to such a
/// place, that user could swap the fresh socket for a symlink before the chmod (which follows
/// it) and have the agent change the mode of a file of their choosing. Created (0700) only when
/// missing: an existing directory's mode is not ours to change.
fn socket_dir(path: &Path) -> Result<(), warden_files::Error> {
    let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    let trusted = warden_files::Trusted::process;
    let holder = parent.parent().filter(|g| !g.as_os_str().is_empty());
    match (holder, parent.file_name()) {
        (Some(holder), Some(name)) => {
            if !holder.exists() {
                warden_files::ensure_private_dir(holder)?;
            }
            warden_files::Dir::open_root(holder, trusted())?.create_dirs(Path::new(name), 0o700)
        }
        _ => warden_files::Dir::open_root(parent, trusted()),
    }
    .map(drop)
}

async fn accept_loop<C: Controller>(
    listener: UnixListener,
    controller: Arc<C>,
    allowed: Arc<Vec<u32>>,
) {
    let slots = Slots::new(MAX_CONNECTIONS);
    let _close_all = CloseAll(Arc::clone(&slots));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "control socket could not accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let controller = Arc::clone(&controller);
        let allowed = Arc::clone(&allowed);
        let spawned = slots.spawn(move |activity| async move {
            if let Err(e) = serve_connection(stream, controller.as_ref(), &allowed, &activity).await
            {
                tracing::debug!(error = %e, "control connection ended with an error");
            }
        });
        if !spawned {
            tracing::warn!("control socket: every connection is busy answering; dropped a new one");
        }
        // Let the new connection read its request before the next accept (see `crate::slots`).
        tokio::task::yield_now().await;
    }
}

async fn serve_connection<C: Controller>(
    stream: UnixStream,
    controller: &C,
    allowed: &[u32],
    activity: &Activity,
) -> io::Result<()> {
    let cred = stream.peer_cred()?;
    let (read, mut write) = stream.into_split();
    if !allowed.contains(&cred.uid()) {
        return refuse(read, write, cred).await;
    }
    let mut reader = BufReader::new(read.take(MAX_LINE * 16));
    let mut line = String::new();
    loop {
        line.clear();
        let mut limited = (&mut reader).take(MAX_LINE);
        let n = match tokio::time::timeout(REQUEST_TIMEOUT, limited.read_line(&mut line)).await {
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
        // Busy from here to the reply: a rotation can take a minute, and closing it to make
        // room for another connection would lose its answer.
        let _busy = activity.busy();
        let reply = match serde_json::from_str::<Request>(trimmed) {
            Ok(req) => handle(req, controller).await,
            Err(e) => Reply::error(format!(
                "bad request ({e}); expected {{\"op\":\"status\"}} or {{\"op\":\"rotate\",\"output\":\"NAME\"}}"
            )),
        };
        write_reply(&mut write, &reply).await?;
    }
}

/// Answers a peer of another uid with one refusal line, then closes.
async fn refuse(
    read: tokio::net::unix::OwnedReadHalf,
    mut write: tokio::net::unix::OwnedWriteHalf,
    cred: tokio::net::unix::UCred,
) -> io::Result<()> {
    tracing::warn!(
        uid = cred.uid(),
        pid = %cred.pid().map_or_else(|| "unknown".to_owned(), |p| p.to_string()),
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
    Ok(())
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

/// Writes one reply line; a client that does not take it within [`WRITE_TIMEOUT`] is dropped.
async fn write_reply<W: AsyncWriteExt + Unpin>(w: &mut W, reply: &Reply) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(reply).map_err(io::Error::other)?;
    bytes.push(b'\n');
    let write = async {
        w.write_all(&bytes).await?;
        w.flush().await
    };
    tokio::time::timeout(WRITE_TIMEOUT, write)
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}
