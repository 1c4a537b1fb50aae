//! The client side of the control socket: what `warden agent status | rotate` call.

use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::{ControlError, ROTATE_TIMEOUT, Reply, Request, STATUS_TIMEOUT};
use crate::health::{OutputView, Overall, Snapshot};

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
    let overall = Overall::of(&snapshot.outputs);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}: {} ({} requests to OpenBao, {} auth errors)",
        snapshot.identity,
        match overall {
            Overall::Ok => "ok",
            Overall::Degraded => "degraded",
            Overall::Failing => "failing",
        },
        snapshot.requests_total,
        snapshot.auth_errors_total
    );
    if let Some(server) = &snapshot.server {
        let _ = writeln!(s, "  server: {server}");
    }
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
            // The duration grammar, two units at most, as everywhere else Warden prints one.
            let left = (t - snapshot.taken_at).whole_seconds();
            let span = warden_spec::format_approx(Duration::from_secs(left.unsigned_abs()));
            let _ = if left >= 0 {
                write!(s, ", expires {} (in {span})", ts(t))
            } else {
                write!(s, ", expired {} ({span} ago)", ts(t))
            };
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
