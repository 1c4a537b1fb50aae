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
//! No connection can keep another waiting: each is served by a task of its own, a request line
//! must arrive within [`server::REQUEST_TIMEOUT`] (so an idle or dribbling client is cut off
//! within seconds), a reply must be taken within [`server::WRITE_TIMEOUT`], and at most
//! [`server::MAX_CONNECTIONS`] are open, the idlest closed to make room for a new one while a
//! connection whose request is being answered is never closed (see `crate::slots`). A
//! `warden agent status` is answered at once however many other clients sit on the socket.
//!
//! | module | side |
//! |---|---|
//! | this one | the protocol: [`Request`], [`Reply`], [`RotateError`], [`ControlError`], [`Controller`] |
//! | [`server`] | [`ControlServer`]: binding, peer check, limits, the running agent as a [`Controller`] |
//! | [`client`] | [`status`], [`rotate`], [`describe`]: what `warden agent status | rotate` call |
//!
//! The server is generic over a [`Controller`] so it is tested without an agent.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::health::{OutputView, Snapshot, StatusSource};

pub mod client;
pub mod server;
#[cfg(test)]
mod tests;

pub use client::{describe, request, rotate, status};
pub use server::ControlServer;

/// The socket's file name under the state directory (the default `[control] socket`).
pub const SOCKET_FILE: &str = "control.sock";
/// How long the client waits for a status reply.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the client waits for a rotation: a login, a signature and a delivery, possibly
/// behind the agent's own backoff while the server is briefly unavailable.
pub const ROTATE_TIMEOUT: Duration = Duration::from_secs(120);

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
