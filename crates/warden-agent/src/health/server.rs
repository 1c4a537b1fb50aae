//! The HTTP server behind `/health` and `/metrics`: hyper's HTTP/1.1 server on a loopback
//! TCP listener, hardened against clients that connect and never finish.
//!
//! Every local process can connect to the port, so nothing a client does may keep another
//! client's request waiting:
//!
//! - every connection is accepted at once and served by a task of its own; at most
//!   [`MAX_CONNECTIONS`] are open, and at that cap the one that has waited longest is closed to
//!   make room (`crate::slots`): idle and half-sent connections cannot fill the listener;
//! - a request head must arrive whole within [`HEADER_READ_TIMEOUT`] of the connection (hyper's
//!   `header_read_timeout`, which also covers a client that sends nothing), so a slow sender
//!   holds its slot for seconds, not for as long as it likes;
//! - one request per connection (no keep-alive: a health check or a scrape is one request a few
//!   seconds apart on loopback, where a new connection costs microseconds), and no connection
//!   lives longer than [`CONNECTION_LIFETIME`], whatever it does (a client that sends a body
//!   slowly, or does not read its answer);
//! - a request head is at most [`MAX_BUFFER`] bytes (hyper answers 431 beyond), which bounds
//!   what the cap's worth of connections can hold in memory.
//!
//! Why hyper rather than the hand-written HTTP/1.1 it replaces, and what it costs the agent's
//! binary: `docs/adr/0007-health-endpoint-server.md`.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::metrics::render_metrics;
use super::public::health_body;
use super::view::{Overall, StatusSource};
use crate::slots::{CloseAll, Slots};

/// The file under the state directory that holds the bound address.
pub const ADDR_FILE: &str = "health.addr";

/// Connections open at once. Far more than the few clients a health endpoint has (a
/// supervisor, a scraper, an operator's `curl`), so reaching it means a flood, and the flood's
/// idlest connections are the ones closed.
pub const MAX_CONNECTIONS: usize = 64;
/// A client has this long from connecting to send its whole request head. Requests here are
/// one line and a few headers sent in one write.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// No connection lives longer than this, whatever it does.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(5);
/// The largest request head read (hyper's smallest allowed buffer); requests here are a few
/// hundred bytes.
pub const MAX_BUFFER: usize = 8 * 1024;

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
            // Reached from the identity directory without following symlinks, like all state.
            let (dir, name) = (path.parent().unwrap_or(Path::new(".")), path.file_name());
            crate::state::StateDir::new(dir)
                .write_file(
                    &name.map(|n| n.to_string_lossy()).unwrap_or_default(),
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
    use std::io::Read as _;
    // Never blocks on a FIFO planted at the name: status tooling reads this.
    let (file, _) = warden_files::open_regular(path, 1024).ok()?;
    let mut text = String::new();
    file.take(1024).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

async fn accept_loop<S: StatusSource>(listener: TcpListener, source: Arc<S>) {
    let slots = Slots::new(MAX_CONNECTIONS);
    let _close_all = CloseAll(Arc::clone(&slots));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(false)
        .max_buf_size(MAX_BUFFER);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "health endpoint could not accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let source = Arc::clone(&source);
        let service = service_fn(move |req: Request<Incoming>| {
            let response = route(&req, source.as_ref());
            std::future::ready(Ok::<_, Infallible>(response))
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        // Nothing on a health connection is worth protecting from eviction: once its head
        // is in, the answer is computed and written at once.
        let spawned = slots.spawn(|_activity| async move {
            match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "health connection ended with an error"),
                Err(_) => tracing::debug!("closed a health connection that outlived its time"),
            }
        });
        if !spawned {
            tracing::debug!("health endpoint busy: dropped a new connection");
        }
        // Let the new connection read its head before the next accept, so a flood of
        // connects cannot push it out of its slot before it had a chance to be answered.
        tokio::task::yield_now().await;
    }
}

/// Answers one request: `GET`/`HEAD` of `/health` or `/metrics`.
fn route<S: StatusSource>(req: &Request<Incoming>, source: &S) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/health" => {
            let (overall, body) = health_body(&source.snapshot());
            // Degraded still serves: what is on disk works, the body says what is behind.
            let status = if overall == Overall::Failing {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            response(status, "application/json", body)
        }
        "/metrics" => response(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            render_metrics(&source.snapshot()),
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /health or /metrics\n",
        ),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    response(status, "text/plain; charset=utf-8", body.to_owned())
}

fn response(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::super::fixtures::{snapshot, view};
    use super::super::view::Freshness;
    use super::*;

    async fn fresh_server() -> HealthServer {
        HealthServer::start("127.0.0.1:0".parse().unwrap(), None, || {
            snapshot(vec![view("tls", Freshness::Fresh)])
        })
        .await
        .unwrap()
    }

    /// Sends `request` raw and reads until the server closes: (head, body).
    async fn exchange(addr: SocketAddr, request: &str) -> (String, String) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
            .await
            .expect("the server answers and closes")
            .unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        (head.to_owned(), body.to_owned())
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
        let addr = server.addr();

        // No `Connection: close` asked for: the server closes anyway (one request each).
        let (head, body) = exchange(addr, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        let head_lc = head.to_lowercase();
        assert!(
            head_lc.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        assert!(head_lc.contains("content-type: application/json"), "{head}");
        assert!(head_lc.contains("cache-control: no-store"), "{head}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "ok");
        assert_eq!(v["outputs"][0]["name"], "tls");
        assert_eq!(v["outputs"][0]["state"], "fresh");

        let (head, metrics) = exchange(addr, "GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(head.contains("version=0.0.4"), "{head}");
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
    async fn routing_answers_health_metrics_and_refuses_the_rest() {
        let server = fresh_server().await;
        let addr = server.addr();
        let (head, body) = exchange(addr, "HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(body.is_empty(), "HEAD has no body: {body}");
        let (head, _) = exchange(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 404"), "{head}");
        let (head, _) = exchange(addr, "POST /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 405"), "{head}");
        assert!(head.to_lowercase().contains("allow: get, head"), "{head}");
        let (head, _) = exchange(addr, "\r\n\r\nnonsense\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 400"), "{head}");

        let stale = HealthServer::start("127.0.0.1:0".parse().unwrap(), None, || {
            snapshot(vec![view("tls", Freshness::Stale)])
        })
        .await
        .unwrap();
        let (head, body) = exchange(stale.addr(), "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "degraded still serves: {head}"
        );
        assert!(body.contains("\"degraded\""), "{body}");
        let failed = HealthServer::start("127.0.0.1:0".parse().unwrap(), None, || {
            snapshot(vec![view("tls", Freshness::Failed)])
        })
        .await
        .unwrap();
        let (head, body) = exchange(failed.addr(), "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 503"), "{head}");
        assert!(body.contains("\"failing\""), "{body}");
    }

    #[test]
    fn the_address_file_is_read_without_blocking_on_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ADDR_FILE);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Returns at once (a blocking open would hang the test here).
        assert_eq!(read_addr_file(&path), None);
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "127.0.0.1:8080\n").unwrap();
        assert_eq!(
            read_addr_file(&path),
            Some("127.0.0.1:8080".parse().unwrap())
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
        let server = fresh_server().await;
        let mut s = TcpStream::connect(server.addr()).await.unwrap();
        let mut junk = b"GET /health HTTP/1.1\r\nX-Junk: ".to_vec();
        junk.resize(MAX_BUFFER * 4, b'a');
        // The server may close before everything is written; that is the point.
        let _ = s.write_all(&junk).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        assert!(
            String::from_utf8_lossy(&out).starts_with("HTTP/1.1 431"),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }

    #[tokio::test]
    async fn idle_and_slow_clients_cannot_starve_it() {
        let server = fresh_server().await;
        let addr = server.addr();
        // Twice the cap of connections that send nothing, and one that sends its head a
        // byte at a time.
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS * 2 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        let slow = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let start = Instant::now();
            for b in b"GET /health HTTP/1.1\r\nX-Slow: ".iter().cycle() {
                if s.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                if start.elapsed() > Duration::from_secs(10) {
                    break;
                }
            }
            start.elapsed()
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        for path in ["/health", "/metrics", "/health"] {
            let start = Instant::now();
            let (head, _) =
                exchange(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")).await;
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert!(
                start.elapsed() < Duration::from_secs(1),
                "{path} took {:?}",
                start.elapsed()
            );
        }
        let slow_for = slow.await.unwrap();
        assert!(
            slow_for < HEADER_READ_TIMEOUT + Duration::from_secs(2),
            "the slow sender was cut off after {slow_for:?}"
        );
    }
}
