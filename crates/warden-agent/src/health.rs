//! `/health` and `/metrics`: what a supervisor and Prometheus see of a running agent.
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /health` | JSON: `status` (`ok`, `degraded` or `failing`) and each output's state, serial, expiry, last render and error count. **200** while usable material is in place (`ok`, or `degraded`: something is pending or stale, and the body says what), **503** when something failed with nothing usable on disk (`failing`), so a plain HTTP check (systemd, a load balancer, `curl -f`) needs no JSON parsing. |
//! | `GET /metrics` | Prometheus text exposition (format 0.0.4), names below. |
//!
//! Metric names are a contract (dashboards and alerts are written against them), so they are
//! constants here and tested:
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `warden_agent_output_expiry_seconds{output}` | gauge | seconds until the delivered certificate expires (negative once expired; absent for outputs without one) |
//! | `warden_agent_output_last_render_timestamp_seconds{output}` | gauge | Unix time of the last successful render (absent until the first) |
//! | `warden_agent_output_fresh{output}` | gauge | 1 when the output is fresh, 0 otherwise (what `/health` aggregates) |
//! | `warden_agent_render_errors_total{output}` | counter | failed renders or deliveries of the output since start |
//! | `warden_agent_output_repairs_total{output}` | counter | drift on disk (a removed file or symlink, a changed mode or owner) repaired since start |
//! | `warden_agent_clock_skew_seconds` | gauge | this host's clock minus the server's, from the last response's `Date` (absent until known) |
//! | `warden_agent_auth_errors_total` | counter | failed logins and token renewals since start |
//! | `warden_agent_requests_total` | counter | requests sent to OpenBao since start |
//! | `warden_agent_database_lease_expiry_seconds{database}` | gauge | seconds until the `[[database]]` source's current lease ends as last granted (absent until first issued) |
//! | `warden_agent_database_fresh{database}` | gauge | 1 when the source holds a live lease and is not failing |
//! | `warden_agent_database_issues_total{database}` | counter | credentials issued for the source since start |
//! | `warden_agent_database_renewals_total{database}` | counter | successful renewals of its leases since start |
//! | `warden_agent_database_errors_total{database}` | counter | failed issues, renewals and revocations since start |
//!
//! `/health` also lists each database source (state, generation, lease end, counters). A source
//! that is stale or failed degrades the verdict like an output; one not used yet does not.
//!
//! Nothing secret is served: the snapshot holds names, serials, times, counters and error
//! messages (which, like the logs, never carry tokens, keys or secret values).
//!
//! The listener is loopback only (refused otherwise, [`HealthError::NotLoopback`]): the
//! endpoints are unauthenticated, and the agent's state is nobody else's business. Port 0
//! picks a free port; the bound address is written to `state/health.addr` so tools find it.
//!
//! **Why hand-written HTTP and exposition.** Two read-only `GET` endpoints answered with
//! `Connection: close` need about a hundred lines over `tokio::net`, while a framework (axum +
//! hyper server) would add measurable resident memory to a process whose benchmark target is a
//! tenth of `bao agent`'s. The same goes for `prometheus-client`: its model is instruments
//! registered up front and updated in place, whereas every figure here is derived from one
//! status snapshot at scrape time (expiry is "now minus not-after", not a stored value), which
//! would need a custom `Collector` and buy nothing the exposition format does not already
//! specify. The format (HELP/TYPE lines, label escaping) is small, stable and tested below.
//!
//! Generic over a [`StatusSource`] (any `Fn() -> Snapshot` is one), so it is tested without an
//! agent running.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::database::DatabaseStatus;
use super::runtime::{AgentHandle, AgentStatus, Health, OutputStatus};

/// `warden_agent_output_expiry_seconds`.
pub const METRIC_EXPIRY: &str = "warden_agent_output_expiry_seconds";
/// `warden_agent_output_last_render_timestamp_seconds`.
pub const METRIC_LAST_RENDER: &str = "warden_agent_output_last_render_timestamp_seconds";
/// `warden_agent_output_fresh`.
pub const METRIC_FRESH: &str = "warden_agent_output_fresh";
/// `warden_agent_render_errors_total`.
pub const METRIC_RENDER_ERRORS: &str = "warden_agent_render_errors_total";
/// `warden_agent_output_repairs_total`.
pub const METRIC_REPAIRS: &str = "warden_agent_output_repairs_total";
/// `warden_agent_clock_skew_seconds`.
pub const METRIC_CLOCK_SKEW: &str = "warden_agent_clock_skew_seconds";
/// `warden_agent_auth_errors_total`.
pub const METRIC_AUTH_ERRORS: &str = "warden_agent_auth_errors_total";
/// `warden_agent_requests_total`.
pub const METRIC_REQUESTS: &str = "warden_agent_requests_total";
/// `warden_agent_database_lease_expiry_seconds`.
pub const METRIC_DB_EXPIRY: &str = "warden_agent_database_lease_expiry_seconds";
/// `warden_agent_database_fresh`.
pub const METRIC_DB_FRESH: &str = "warden_agent_database_fresh";
/// `warden_agent_database_issues_total`.
pub const METRIC_DB_ISSUES: &str = "warden_agent_database_issues_total";
/// `warden_agent_database_renewals_total`.
pub const METRIC_DB_RENEWALS: &str = "warden_agent_database_renewals_total";
/// `warden_agent_database_errors_total`.
pub const METRIC_DB_ERRORS: &str = "warden_agent_database_errors_total";

/// The file under the state directory that holds the bound address.
pub const ADDR_FILE: &str = "health.addr";

/// Largest request head read. Requests here are one line and a few headers; anything bigger is
/// not a health check.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// A client has this long to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more wait. Bounds what a misbehaving local scraper can cost.
const MAX_CONNECTIONS: usize = 16;

/// How an output is doing, as health and the control socket report it (the runtime's
/// [`Health`], in the wire format's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Freshness {
    /// Delivered, and not past its due time.
    Fresh,
    /// Not delivered yet, and no failure yet (the agent is starting or logging in).
    Pending,
    /// Usable material is on disk, but the last refresh or repair failed (sealed, unreachable,
    /// disk full, a refused certificate, a skewed clock, a bad template...): degraded.
    Stale,
    /// Failing with nothing usable on disk (never delivered, removed, or the certificate
    /// expired).
    Failed,
}

impl Freshness {
    /// The word used in JSON and text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fresh => "fresh",
            Self::Pending => "pending",
            Self::Stale => "stale",
            Self::Failed => "failed",
        }
    }
}

impl From<Health> for Freshness {
    fn from(h: Health) -> Self {
        match h {
            Health::Fresh => Self::Fresh,
            Health::Pending => Self::Pending,
            Health::Stale => Self::Stale,
            Health::Failed => Self::Failed,
        }
    }
}

/// What is known about one output. Holds no secret.
///
/// This and [`Snapshot`] are the *wire format* of `/health` and of the control socket, kept
/// apart from the runtime's in-memory [`OutputStatus`] so that the contract tools are written
/// against does not move whenever the runtime's bookkeeping does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputView {
    /// The output's name from `agent.toml`.
    pub name: String,
    /// `certificate`, `template` or `ca_chain`.
    pub kind: String,
    /// Fresh, pending, stale or failed.
    pub state: Freshness,
    /// For certificates: the delivered serial (for CA chains: the issuing CA's).
    pub serial: Option<String>,
    /// For certificates: when the delivered one expires.
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
    /// When the output was last rendered successfully (delivered, or found unchanged).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_render: Option<OffsetDateTime>,
    /// When its content on disk last changed.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_change: Option<OffsetDateTime>,
    /// When it is next due (renewal or poll).
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_due: Option<OffsetDateTime>,
    /// Successful renders since the agent started.
    pub renders: u64,
    /// Deliveries that changed content since the agent started.
    pub changes: u64,
    /// Failed renders or deliveries since the agent started.
    pub render_errors: u64,
    /// The last failure, while the output is failing.
    pub last_error: Option<String>,
    /// Whether the last reload worked (`None`: none ran).
    pub last_reload_ok: Option<bool>,
    /// Drift on disk repaired since the agent started.
    #[serde(default)]
    pub repairs: u64,
}

impl From<&OutputStatus> for OutputView {
    fn from(o: &OutputStatus) -> Self {
        Self {
            name: o.name.clone(),
            kind: o.kind.to_owned(),
            state: o.health.into(),
            serial: o.serial.clone(),
            not_after: o.not_after,
            last_render: o.last_render,
            last_change: o.last_change,
            next_due: o.next_due,
            renders: o.renders,
            changes: o.changes,
            render_errors: o.render_errors,
            last_error: o.last_error.clone(),
            last_reload_ok: o.last_reload.as_ref().map(|r| r.ok),
            repairs: o.repairs,
        }
    }
}

/// A `[[database]]` source, as health and the control socket report it. Holds no credential
/// and no lease id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseView {
    /// The source's name from `agent.toml`.
    pub name: String,
    /// `<mount>/creds/<role>`.
    pub path: String,
    /// Fresh, pending (nothing issued yet), stale or failed.
    pub state: Freshness,
    /// Credentials issued since the agent started.
    pub generation: u64,
    /// When the current lease ends as last granted.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires: Option<OffsetDateTime>,
    /// The lease can no longer be extended; new credentials come before it ends.
    pub final_expiry: bool,
    /// `renew` or `reissue`.
    pub next_step: Option<String>,
    /// When that is due.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_due: Option<OffsetDateTime>,
    /// Credentials issued since start.
    pub issues: u64,
    /// Renewals since start.
    pub renewals: u64,
    /// Failed issues, renewals and revocations since start.
    pub errors: u64,
    /// The last failure, while failing.
    pub last_error: Option<String>,
}

impl From<&DatabaseStatus> for DatabaseView {
    fn from(d: &DatabaseStatus) -> Self {
        Self {
            name: d.name.clone(),
            path: d.path.clone(),
            state: d.health.into(),
            generation: d.generation,
            expires: d.expires,
            final_expiry: d.final_expiry,
            next_step: d.next_step.map(str::to_owned),
            next_due: d.next_due,
            issues: d.issues,
            renewals: d.renewals,
            errors: d.errors,
            last_error: d.last_error.clone(),
        }
    }
}

/// The login, as far as health is concerned. Holds no token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthView {
    /// A token is held.
    pub logged_in: bool,
    /// When the token expires.
    #[serde(with = "time::serde::rfc3339::option")]
    pub token_expires: Option<OffsetDateTime>,
    /// The token carries exactly the configured policy.
    pub policies_ok: bool,
    /// Failed logins, token renewals and identity renewals since start.
    pub errors: u64,
    /// The last failure, while failing.
    pub last_error: Option<String>,
    /// The mTLS identity certificate in use.
    pub identity_serial: Option<String>,
    /// When it expires.
    #[serde(with = "time::serde::rfc3339::option")]
    pub identity_not_after: Option<OffsetDateTime>,
}

/// A consistent picture of the agent at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The identity the agent runs for.
    pub identity: String,
    /// When the snapshot was taken: expiry figures are relative to it.
    #[serde(with = "time::serde::rfc3339")]
    pub taken_at: OffsetDateTime,
    /// When the agent started.
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    /// The login.
    pub auth: AuthView,
    /// Every output, in config order.
    pub outputs: Vec<OutputView>,
    /// Requests sent to OpenBao since start.
    pub requests_total: u64,
    /// Failed logins and token renewals since start.
    pub auth_errors_total: u64,
    /// Every `[[database]]` source, in config order.
    #[serde(default)]
    pub databases: Vec<DatabaseView>,
    /// This host's clock minus the server's, once known.
    #[serde(default)]
    pub clock_skew_seconds: Option<i64>,
}

impl Snapshot {
    /// The wire view of the runtime's status at `now`.
    pub fn from_status(status: &AgentStatus, now: OffsetDateTime) -> Self {
        let a = &status.auth;
        Self {
            identity: status.identity.clone(),
            taken_at: now,
            started_at: Some(status.started_at),
            auth: AuthView {
                logged_in: a.logged_in,
                token_expires: a.token_expires,
                policies_ok: a.policies_ok,
                errors: a.errors,
                last_error: a.last_error.clone(),
                identity_serial: a.identity_serial.clone(),
                identity_not_after: a.identity_not_after,
            },
            outputs: status.outputs.iter().map(OutputView::from).collect(),
            requests_total: status.requests,
            auth_errors_total: a.errors,
            databases: status.databases.iter().map(DatabaseView::from).collect(),
            clock_skew_seconds: status.clock_skew_seconds,
        }
    }

    /// The verdict of `/health`: the outputs', made worse by a database source that is stale
    /// (degraded) or failed (failing). A source nothing has used yet (pending) counts for
    /// nothing: its readers are pending themselves.
    pub fn overall(&self) -> Overall {
        let outputs = Overall::of(&self.outputs);
        let db = if self.databases.iter().any(|d| d.state == Freshness::Failed) {
            Overall::Failing
        } else if self.databases.iter().any(|d| d.state == Freshness::Stale) {
            Overall::Degraded
        } else {
            Overall::Ok
        };
        outputs.max(db)
    }
}

/// Where the health endpoints get their figures. Called once per request.
pub trait StatusSource: Send + Sync + 'static {
    /// The current snapshot.
    fn snapshot(&self) -> Snapshot;
}

impl<F> StatusSource for F
where
    F: Fn() -> Snapshot + Send + Sync + 'static,
{
    fn snapshot(&self) -> Snapshot {
        self()
    }
}

impl StatusSource for AgentHandle {
    fn snapshot(&self) -> Snapshot {
        Snapshot::from_status(&self.status(), OffsetDateTime::now_utc())
    }
}

/// The overall verdict of `/health` (ordered from best to worst).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Overall {
    /// Every output is fresh.
    Ok,
    /// Some output is pending or stale: starting, or serving the previous material while
    /// renewal fails.
    Degraded,
    /// Some output failed with nothing usable on disk.
    Failing,
}

impl Overall {
    /// The verdict for a set of outputs. An agent without outputs is `ok`: it has nothing to
    /// fail at.
    pub fn of(outputs: &[OutputView]) -> Self {
        if outputs.iter().any(|o| o.state == Freshness::Failed) {
            Self::Failing
        } else if outputs.iter().all(|o| o.state == Freshness::Fresh) {
            Self::Ok
        } else {
            Self::Degraded
        }
    }
}

/// Why the health endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HealthError {
    /// `[health] listen` is not a loopback address. The endpoints are unauthenticated, so they
    /// are never exposed beyond this host.
    #[error(
        "refusing to serve /health on {addr}: only loopback addresses (127.0.0.1, ::1) are allowed"
    )]
    NotLoopback {
        /// The configured address.
        addr: SocketAddr,
    },
    /// The address could not be bound (port in use, no such address).
    #[error("could not listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// The bound address could not be recorded in `state/health.addr`.
    #[error("could not record the health address in {}: {source}", path.display())]
    AddrFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: warden_files::Error,
    },
}

/// A running health endpoint. Dropping it stops the server.
#[derive(Debug)]
pub struct HealthServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HealthServer {
    /// Binds `listen` (loopback only; port 0 = any free port), records the bound address in
    /// `addr_file` when given (normally `state/health.addr`), and serves `source` until dropped.
    pub async fn start<S: StatusSource>(
        listen: SocketAddr,
        addr_file: Option<&Path>,
        source: S,
    ) -> Result<Self, HealthError> {
        if !listen.ip().is_loopback() {
            return Err(HealthError::NotLoopback { addr: listen });
        }
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| HealthError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| HealthError::Bind {
            addr: listen,
            source,
        })?;
        if let Some(path) = addr_file {
            // Created (0700) only when missing: the agent may start its endpoints before its
            // first delivery made `state/`, and an existing directory's mode is not ours to change.
            if let Some(parent) = path.parent().filter(|p| !p.exists()) {
                warden_files::ensure_private_dir(parent).map_err(|source| {
                    HealthError::AddrFile {
                        path: path.to_path_buf(),
                        source,
                    }
                })?;
            }
            warden_files::write_atomic(
                path,
                format!("{addr}\n").as_bytes(),
                warden_files::Mode::Public,
            )
            .map_err(|source| HealthError::AddrFile {
                path: path.to_path_buf(),
                source,
            })?;
        }
        tracing::info!(%addr, "health endpoint listening");
        let task = tokio::spawn(accept_loop(listener, Arc::new(source)));
        Ok(Self { addr, task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads `state/health.addr` (written by a running agent).
pub fn read_addr_file(path: &Path) -> Option<SocketAddr> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

async fn accept_loop<S: StatusSource>(listener: TcpListener, source: Arc<S>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _peer)) => {
                let source = Arc::clone(&source);
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Err(e) = serve_connection(stream, source.as_ref()).await {
                        tracing::debug!(error = %e, "health connection ended with an error");
                    }
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "health endpoint could not accept a connection");
                drop(permit);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_connection<S: StatusSource>(mut stream: TcpStream, source: &S) -> io::Result<()> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => head,
        Ok(Ok(None)) => {
            let r = Response::text(
                431,
                "Request Header Fields Too Large",
                "request too large\n",
            );
            stream.write_all(&r.into_bytes(false)).await?;
            stream.shutdown().await?;
            // Closing with unread input would reset the connection and could destroy the
            // answer in flight; drain briefly so the client gets to read it.
            let mut sink = [0u8; 1024];
            let drain = async {
                let mut total = 0usize;
                while total < 64 * 1024 {
                    match stream.read(&mut sink).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => total += n,
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
            return Ok(());
        }
        Ok(Err(e)) => return Err(e),
        Err(_) => return Ok(()),
    };
    let (response, head_only) = respond(&head, source);
    stream.write_all(&response.into_bytes(head_only)).await?;
    stream.shutdown().await
}

/// Reads up to the blank line that ends the request head. `None` when it is too large.
async fn read_head(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(buf));
        }
        if buf.len() > MAX_REQUEST_HEAD {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            // Closed early: answer what we have (a bare request line is fine for `nc`).
            return Ok(Some(buf));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A response to write.
#[derive(Debug)]
struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    extra_headers: &'static str,
    body: String,
}

impl Response {
    fn text(status: u16, reason: &'static str, body: &str) -> Self {
        Self {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            extra_headers: "",
            body: body.to_owned(),
        }
    }

    fn into_bytes(self, head_only: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n{}\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len(),
            self.extra_headers,
        )
        .into_bytes();
        if !head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

/// Routes one request. Returns the response and whether to send only its head (`HEAD`).
fn respond<S: StatusSource>(head: &[u8], source: &S) -> (Response, bool) {
    let line = head
        .split(|&b| b == b'\n')
        .next()
        .map(|l| String::from_utf8_lossy(l).trim_end().to_owned())
        .unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return (Response::text(400, "Bad Request", "bad request\n"), false);
    };
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        let mut r = Response::text(405, "Method Not Allowed", "only GET and HEAD\n");
        r.extra_headers = "Allow: GET, HEAD\r\n";
        return (r, false);
    }
    let path = target.split('?').next().unwrap_or(target);
    let response = match path {
        "/health" => health_response(&source.snapshot()),
        "/metrics" => Response {
            status: 200,
            reason: "OK",
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            extra_headers: "",
            body: render_metrics(&source.snapshot()),
        },
        _ => Response::text(404, "Not Found", "not found: try /health or /metrics\n"),
    };
    (response, head_only)
}

/// The JSON body of `/health`.
#[derive(Debug, Serialize)]
struct HealthBody<'a> {
    status: Overall,
    identity: &'a str,
    #[serde(with = "time::serde::rfc3339")]
    checked_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    started_at: Option<OffsetDateTime>,
    auth: &'a AuthView,
    requests_total: u64,
    auth_errors_total: u64,
    outputs: Vec<OutputHealth<'a>>,
    databases: Vec<DatabaseHealth<'a>>,
}

#[derive(Debug, Serialize)]
struct DatabaseHealth<'a> {
    #[serde(flatten)]
    view: &'a DatabaseView,
    expires_in_seconds: Option<i64>,
}

#[derive(Debug, Serialize)]
struct OutputHealth<'a> {
    #[serde(flatten)]
    view: &'a OutputView,
    expires_in_seconds: Option<i64>,
}

fn health_response(snapshot: &Snapshot) -> Response {
    let overall = snapshot.overall();
    let body = HealthBody {
        status: overall,
        identity: &snapshot.identity,
        checked_at: snapshot.taken_at,
        started_at: snapshot.started_at,
        auth: &snapshot.auth,
        requests_total: snapshot.requests_total,
        auth_errors_total: snapshot.auth_errors_total,
        outputs: snapshot
            .outputs
            .iter()
            .map(|view| OutputHealth {
                view,
                expires_in_seconds: view
                    .not_after
                    .map(|t| (t - snapshot.taken_at).whole_seconds()),
            })
            .collect(),
        databases: snapshot
            .databases
            .iter()
            .map(|view| DatabaseHealth {
                view,
                expires_in_seconds: view
                    .expires
                    .map(|t| (t - snapshot.taken_at).whole_seconds()),
            })
            .collect(),
    };
    let mut json = serde_json::to_string_pretty(&body).unwrap_or_else(|_| "{}".to_owned());
    json.push('\n');
    // Degraded still serves: what is on disk works, the body says what is behind.
    let (status, reason) = if overall == Overall::Failing {
        (503, "Service Unavailable")
    } else {
        (200, "OK")
    };
    Response {
        status,
        reason,
        content_type: "application/json",
        extra_headers: "",
        body: json,
    }
}

/// The Prometheus text exposition of a snapshot.
pub fn render_metrics(snapshot: &Snapshot) -> String {
    let mut s = String::with_capacity(1024);
    let now = snapshot.taken_at;
    let mut labelled =
        |label: &str, name: &str, kind: &str, help: &str, rows: Vec<(Option<&str>, String)>| {
            if rows.is_empty() {
                return;
            }
            let _ = writeln!(s, "# HELP {name} {help}");
            let _ = writeln!(s, "# TYPE {name} {kind}");
            for (value_of, value) in rows {
                match value_of {
                    Some(o) => {
                        let _ = writeln!(s, "{name}{{{label}=\"{}\"}} {value}", escape_label(o));
                    }
                    None => {
                        let _ = writeln!(s, "{name} {value}");
                    }
                }
            }
        };
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(Option<&str>, String)>| {
        labelled("output", name, kind, help, rows);
    };
    let outputs = &snapshot.outputs;
    family(
        METRIC_EXPIRY,
        "gauge",
        "Seconds until the delivered certificate of the output expires (negative once expired).",
        outputs
            .iter()
            .filter_map(|o| {
                o.not_after.map(|t| {
                    (
                        Some(o.name.as_str()),
                        float((t - now).as_seconds_f64().floor()),
                    )
                })
            })
            .collect(),
    );
    family(
        METRIC_LAST_RENDER,
        "gauge",
        "Unix time of the output's last successful render.",
        outputs
            .iter()
            .filter_map(|o| {
                o.last_render.map(|t| {
                    (
                        Some(o.name.as_str()),
                        float(t.unix_timestamp_nanos() as f64 / 1e9),
                    )
                })
            })
            .collect(),
    );
    family(
        METRIC_FRESH,
        "gauge",
        "1 when the output is fresh, 0 when pending, stale or failing.",
        outputs
            .iter()
            .map(|o| {
                (
                    Some(o.name.as_str()),
                    u8::from(o.state == Freshness::Fresh).to_string(),
                )
            })
            .collect(),
    );
    family(
        METRIC_RENDER_ERRORS,
        "counter",
        "Failed renders or deliveries of the output since the agent started.",
        outputs
            .iter()
            .map(|o| (Some(o.name.as_str()), o.render_errors.to_string()))
            .collect(),
    );
    family(
        METRIC_REPAIRS,
        "counter",
        "Drift on disk of the output (a removed file or symlink, a changed mode or owner) repaired since the agent started.",
        outputs
            .iter()
            .map(|o| (Some(o.name.as_str()), o.repairs.to_string()))
            .collect(),
    );
    family(
        METRIC_CLOCK_SKEW,
        "gauge",
        "This host's clock minus the OpenBao server's, from the last response's Date header.",
        snapshot
            .clock_skew_seconds
            .map(|s| (None, s.to_string()))
            .into_iter()
            .collect(),
    );
    family(
        METRIC_AUTH_ERRORS,
        "counter",
        "Failed logins and token renewals since the agent started.",
        vec![(None, snapshot.auth_errors_total.to_string())],
    );
    family(
        METRIC_REQUESTS,
        "counter",
        "Requests sent to OpenBao since the agent started.",
        vec![(None, snapshot.requests_total.to_string())],
    );
    let dbs = &snapshot.databases;
    let mut db_family = |name: &str, kind: &str, help: &str, rows: Vec<(Option<&str>, String)>| {
        labelled("database", name, kind, help, rows);
    };
    db_family(
        METRIC_DB_EXPIRY,
        "gauge",
        "Seconds until the database source's current lease ends as last granted (negative once over).",
        dbs.iter()
            .filter_map(|d| {
                d.expires.map(|t| {
                    (
                        Some(d.name.as_str()),
                        float((t - now).as_seconds_f64().floor()),
                    )
                })
            })
            .collect(),
    );
    db_family(
        METRIC_DB_FRESH,
        "gauge",
        "1 when the database source holds a live lease and is not failing.",
        dbs.iter()
            .map(|d| {
                (
                    Some(d.name.as_str()),
                    u8::from(d.state == Freshness::Fresh).to_string(),
                )
            })
            .collect(),
    );
    db_family(
        METRIC_DB_ISSUES,
        "counter",
        "Credentials issued for the database source since the agent started.",
        dbs.iter()
            .map(|d| (Some(d.name.as_str()), d.issues.to_string()))
            .collect(),
    );
    db_family(
        METRIC_DB_RENEWALS,
        "counter",
        "Renewals of the database source's leases since the agent started.",
        dbs.iter()
            .map(|d| (Some(d.name.as_str()), d.renewals.to_string()))
            .collect(),
    );
    db_family(
        METRIC_DB_ERRORS,
        "counter",
        "Failed issues, renewals and revocations of the database source since the agent started.",
        dbs.iter()
            .map(|d| (Some(d.name.as_str()), d.errors.to_string()))
            .collect(),
    );
    s
}

/// A float as Prometheus reads it (no exponent surprises for ordinary values).
fn float(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// Label values escape `\`, `"` and newlines (exposition format 0.0.4).
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2030-01-01 00:00:00 UTC);

    fn view(name: &str, state: Freshness) -> OutputView {
        OutputView {
            name: name.to_owned(),
            kind: "certificate".to_owned(),
            state,
            serial: Some("0a:1b".to_owned()),
            not_after: Some(NOW + time::Duration::hours(72)),
            last_render: Some(NOW - time::Duration::seconds(30)),
            last_change: Some(NOW - time::Duration::seconds(30)),
            next_due: Some(NOW + time::Duration::hours(48)),
            renders: 1,
            changes: 1,
            render_errors: 0,
            last_error: None,
            last_reload_ok: None,
            repairs: 0,
        }
    }

    fn snapshot(outputs: Vec<OutputView>) -> Snapshot {
        Snapshot {
            identity: "billing".to_owned(),
            taken_at: NOW,
            started_at: Some(NOW - time::Duration::minutes(5)),
            auth: AuthView::default(),
            outputs,
            requests_total: 7,
            auth_errors_total: 1,
            databases: Vec::new(),
            clock_skew_seconds: None,
        }
    }

    fn db(name: &str, state: Freshness) -> DatabaseView {
        DatabaseView {
            name: name.to_owned(),
            path: "postgres/creds/billing".to_owned(),
            state,
            generation: 2,
            expires: Some(NOW + time::Duration::seconds(20)),
            final_expiry: false,
            next_step: Some("renew".to_owned()),
            next_due: Some(NOW + time::Duration::seconds(13)),
            issues: 2,
            renewals: 5,
            errors: 1,
            last_error: None,
        }
    }

    #[test]
    fn database_sources_have_metrics_and_count_in_the_verdict() {
        let mut s = snapshot(vec![view("tls", Freshness::Fresh)]);
        s.databases = vec![
            db("main", Freshness::Fresh),
            db("pending", Freshness::Pending),
        ];
        s.databases[1].expires = None;
        let text = render_metrics(&s);
        for line in [
            "# TYPE warden_agent_database_lease_expiry_seconds gauge",
            "warden_agent_database_lease_expiry_seconds{database=\"main\"} 20",
            "warden_agent_database_fresh{database=\"main\"} 1",
            "warden_agent_database_fresh{database=\"pending\"} 0",
            "# TYPE warden_agent_database_issues_total counter",
            "warden_agent_database_issues_total{database=\"main\"} 2",
            "warden_agent_database_renewals_total{database=\"main\"} 5",
            "warden_agent_database_errors_total{database=\"main\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        assert!(
            !text.contains("expiry_seconds{database=\"pending\"}"),
            "{text}"
        );
        // Pending does not degrade; stale and failed do.
        assert_eq!(s.overall(), Overall::Ok);
        s.databases[0].state = Freshness::Stale;
        assert_eq!(s.overall(), Overall::Degraded);
        s.databases[0].state = Freshness::Failed;
        assert_eq!(s.overall(), Overall::Failing);
        let r = health_response(&s);
        assert_eq!(r.status, 503);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["databases"][0]["name"], "main");
        assert_eq!(v["databases"][0]["expires_in_seconds"], 20);
        // No credential or lease id can be in a database view: pin its keys.
        let mut keys: Vec<String> = serde_json::to_value(db("main", Freshness::Fresh))
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "errors",
                "expires",
                "final_expiry",
                "generation",
                "issues",
                "last_error",
                "name",
                "next_due",
                "next_step",
                "path",
                "renewals",
                "state"
            ]
        );
    }

    #[test]
    fn overall_verdict_follows_the_worst_output() {
        use Freshness::*;
        let of = |states: &[Freshness]| {
            Overall::of(&states.iter().map(|s| view("x", *s)).collect::<Vec<_>>())
        };
        assert_eq!(of(&[]), Overall::Ok);
        assert_eq!(of(&[Fresh, Fresh]), Overall::Ok);
        assert_eq!(of(&[Fresh, Stale]), Overall::Degraded);
        assert_eq!(of(&[Pending]), Overall::Degraded);
        assert_eq!(of(&[Fresh, Stale, Failed]), Overall::Failing);
    }

    #[test]
    fn metrics_have_the_documented_names_and_values() {
        let mut tpl = view("config", Freshness::Stale);
        tpl.kind = "template".to_owned();
        tpl.not_after = None;
        tpl.serial = None;
        tpl.render_errors = 3;
        let text = render_metrics(&snapshot(vec![view("tls", Freshness::Fresh), tpl]));
        let expected_lines = [
            "# TYPE warden_agent_output_expiry_seconds gauge",
            "warden_agent_output_expiry_seconds{output=\"tls\"} 259200",
            "# TYPE warden_agent_output_last_render_timestamp_seconds gauge",
            "warden_agent_output_last_render_timestamp_seconds{output=\"tls\"} 1893455970",
            "warden_agent_output_last_render_timestamp_seconds{output=\"config\"} 1893455970",
            "warden_agent_output_fresh{output=\"tls\"} 1",
            "warden_agent_output_fresh{output=\"config\"} 0",
            "# TYPE warden_agent_render_errors_total counter",
            "warden_agent_render_errors_total{output=\"tls\"} 0",
            "warden_agent_render_errors_total{output=\"config\"} 3",
            "# TYPE warden_agent_auth_errors_total counter",
            "warden_agent_auth_errors_total 1",
            "# TYPE warden_agent_requests_total counter",
            "warden_agent_requests_total 7",
        ];
        for line in expected_lines {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        // A template has no expiry: no sample rather than a made-up zero.
        assert!(
            !text.contains("expiry_seconds{output=\"config\"}"),
            "{text}"
        );
        // Every sample line is `name{labels} value` or `name value`, each family declared once.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = l.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{l}");
        }
        for name in [
            METRIC_EXPIRY,
            METRIC_LAST_RENDER,
            METRIC_FRESH,
            METRIC_RENDER_ERRORS,
            METRIC_AUTH_ERRORS,
            METRIC_REQUESTS,
        ] {
            assert_eq!(
                text.matches(&format!("# TYPE {name} ")).count(),
                1,
                "{name}"
            );
        }
    }

    #[test]
    fn expired_certificates_count_down_below_zero() {
        let mut v = view("tls", Freshness::Failed);
        v.not_after = Some(NOW - time::Duration::seconds(90));
        let text = render_metrics(&snapshot(vec![v]));
        assert!(
            text.contains("warden_agent_output_expiry_seconds{output=\"tls\"} -90\n"),
            "{text}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("a\nb"), "a\\nb");
        let text = render_metrics(&snapshot(vec![view("we\"ird", Freshness::Fresh)]));
        assert!(text.contains("{output=\"we\\\"ird\"}"), "{text}");
    }

    #[test]
    fn routing_answers_health_metrics_and_refuses_the_rest() {
        let source = || snapshot(vec![view("tls", Freshness::Fresh)]);
        let (r, head) = respond(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", &source);
        assert_eq!((r.status, head), (200, false));
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["status"], "ok");
        assert_eq!(v["outputs"][0]["name"], "tls");
        assert_eq!(v["outputs"][0]["state"], "fresh");
        assert_eq!(v["outputs"][0]["expires_in_seconds"], 259_200);
        assert_eq!(v["outputs"][0]["not_after"], "2030-01-04T00:00:00Z");

        let (r, _) = respond(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n", &source);
        assert_eq!(r.status, 200);
        assert!(r.content_type.contains("version=0.0.4"));
        let (r, head) = respond(b"HEAD /health HTTP/1.1\r\n\r\n", &source);
        assert_eq!((r.status, head), (200, true));
        assert!(!String::from_utf8(r.into_bytes(true)).unwrap().contains('{'));
        assert_eq!(respond(b"GET / HTTP/1.1\r\n\r\n", &source).0.status, 404);
        assert_eq!(
            respond(b"POST /health HTTP/1.1\r\n\r\n", &source).0.status,
            405
        );
        assert_eq!(respond(b"\r\n\r\n", &source).0.status, 400);

        let stale = || snapshot(vec![view("tls", Freshness::Stale)]);
        let (r, _) = respond(b"GET /health HTTP/1.1\r\n\r\n", &stale);
        assert_eq!(r.status, 200, "degraded still serves");
        assert!(r.body.contains("\"degraded\""), "{}", r.body);
        let failed = || snapshot(vec![view("tls", Freshness::Failed)]);
        let (r, _) = respond(b"GET /health HTTP/1.1\r\n\r\n", &failed);
        assert_eq!(r.status, 503);
    }

    #[tokio::test]
    async fn serves_over_tcp_on_loopback_and_records_its_address() {
        let dir = tempfile::tempdir().unwrap();
        let addr_file = dir.path().join(ADDR_FILE);
        let server = HealthServer::start("127.0.0.1:0".parse().unwrap(), Some(&addr_file), || {
            snapshot(vec![view("tls", Freshness::Fresh)])
        })
        .await
        .unwrap();
        assert_ne!(server.addr().port(), 0);
        assert_eq!(read_addr_file(&addr_file), Some(server.addr()));

        let addr = read_addr_file(&addr_file).unwrap();
        let get = |path: &'static str| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let health = get("/health").await;
        assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
        let (head, body) = health.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        let metrics = get("/metrics").await;
        assert!(
            metrics.contains("warden_agent_requests_total 7"),
            "{metrics}"
        );

        drop(server);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "dropping the server closes the port"
        );
    }

    #[tokio::test]
    async fn only_loopback_is_served() {
        let err = HealthServer::start("0.0.0.0:0".parse().unwrap(), None, || snapshot(vec![]))
            .await
            .unwrap_err();
        assert!(matches!(err, HealthError::NotLoopback { .. }), "{err}");
        assert!(err.to_string().contains("loopback"));
    }

    #[tokio::test]
    async fn an_oversized_request_is_refused_without_reading_forever() {
        let server = HealthServer::start("127.0.0.1:0".parse().unwrap(), None, || snapshot(vec![]))
            .await
            .unwrap();
        let mut s = TcpStream::connect(server.addr()).await.unwrap();
        let junk = vec![b'a'; MAX_REQUEST_HEAD + 2048];
        // The server may close before everything is written; that is the point.
        let _ = s.write_all(&junk).await;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        assert!(
            String::from_utf8_lossy(&out).starts_with("HTTP/1.1 431"),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }

    #[test]
    fn the_runtime_status_maps_onto_the_wire_format() {
        use super::super::runtime::AuthStatus;
        use super::super::state::ReloadRecord;
        let out = OutputStatus {
            name: "tls".into(),
            kind: "certificate",
            health: Health::Stale,
            serial: Some("0a1b".into()),
            not_after: Some(NOW + time::Duration::hours(1)),
            next_due: Some(NOW),
            last_render: Some(NOW - time::Duration::hours(2)),
            last_change: Some(NOW - time::Duration::hours(2)),
            last_error: Some("sealed".into()),
            failures: 3,
            renders: 4,
            render_errors: 3,
            changes: 2,
            last_reload: Some(ReloadRecord {
                at: NOW,
                ok: false,
                message: "exit 1".into(),
            }),
            repairs: 1,
        };
        let status = AgentStatus {
            identity: "billing".into(),
            started_at: NOW - time::Duration::hours(3),
            requests: 42,
            auth: AuthStatus {
                logged_in: true,
                errors: 2,
                ..AuthStatus::default()
            },
            outputs: vec![out],
            databases: Vec::new(),
            clock_skew_seconds: Some(-86_400),
        };
        let s = Snapshot::from_status(&status, NOW);
        assert_eq!(s.requests_total, 42);
        assert_eq!(s.auth_errors_total, 2);
        assert!(s.auth.logged_in);
        let v = &s.outputs[0];
        assert_eq!(
            (v.state, v.kind.as_str(), v.renders, v.render_errors),
            (Freshness::Stale, "certificate", 4, 3)
        );
        assert_eq!(v.last_reload_ok, Some(false));
        assert_eq!(Overall::of(&s.outputs), Overall::Degraded);
        let text = render_metrics(&s);
        assert!(text.contains("warden_agent_output_expiry_seconds{output=\"tls\"} 3600\n"));
        assert!(text.contains("warden_agent_render_errors_total{output=\"tls\"} 3\n"));
        assert!(text.contains("warden_agent_output_repairs_total{output=\"tls\"} 1\n"));
        assert!(text.contains("warden_agent_clock_skew_seconds -86400\n"));
    }

    #[test]
    fn nothing_secret_can_appear_in_a_snapshot() {
        // The snapshot types carry names, serials, times, counters and messages only; this
        // pins their JSON keys so a new field is a deliberate decision.
        let v = serde_json::to_value(view("tls", Freshness::Fresh)).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "changes",
                "kind",
                "last_change",
                "last_error",
                "last_reload_ok",
                "last_render",
                "name",
                "next_due",
                "not_after",
                "render_errors",
                "renders",
                "repairs",
                "serial",
                "state"
            ]
        );
    }
}
