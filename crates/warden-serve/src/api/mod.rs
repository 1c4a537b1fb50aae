//! The HTTP JSON API of `warden serve` (docs/serve.md#api, ADR 0025): views of one
//! environment's leader lease, job records and purposes, and a trigger to run a job now, over HTTPS with mutual TLS, on a loopback
//! address. The OpenAPI 3 document (`openapi.json`, served at `GET /openapi.json`) describes
//! every answer; the end-to-end test checks the live server against it with schemathesis.
//!
//! Bounded like the agent's health server (ADR 0007): at most [`MAX_CONNECTIONS`] at once
//! (more are dropped), a TLS handshake and a request head within [`HEADER_READ_TIMEOUT`], a
//! head of at most [`MAX_BUFFER`] bytes (hyper answers 431 beyond), no request body read
//! (a request that announces one is answered 413), an answer within [`ANSWER_TIMEOUT`] (else
//! 504), one request per connection and no connection older than [`CONNECTION_LIFETIME`].

mod routes;
mod tls;
mod trigger;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use warden_bao::Client;
use warden_spec::{Environment, Spec};

pub use tls::{Operators, server_config};
pub use trigger::Trigger;

/// Connections served at once; a new one beyond is closed at once.
pub const MAX_CONNECTIONS: usize = 64;
/// A client has this long to finish the TLS handshake, and then as long again to send its
/// request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// No connection lives longer than this.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// A route that has not answered by then (OpenBao slow or frozen) is answered `504`.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head read.
pub const MAX_BUFFER: usize = 16 * 1024;

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The address is not loopback: the API never listens beyond this host.
    #[error(
        "refusing to serve the API on {0}: only loopback addresses (127.0.0.1, ::1) are allowed"
    )]
    NotLoopback(SocketAddr),
    /// The address could not be bound.
    #[error("could not listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The certificate, key or client CA bundle is unusable.
    #[error("API TLS: {0}")]
    Tls(String),
}

/// What the API reads from: one environment, its client, and this replica's id.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The spec served.
    pub spec: Arc<Spec>,
    /// The environment.
    pub env: Environment,
    /// Its client (serve's own identity).
    pub client: Client,
    /// This replica's id (`--id`).
    pub replica: String,
    /// This process's lease nonce ([`crate::Settings::instance`]): a lease held under the
    /// same `--id` by another process is not this replica's.
    pub instance: String,
    /// The environment's job loop (the same as its [`crate::Target::trigger`]).
    pub trigger: Arc<Trigger>,
}

/// A bound API listener, not yet serving.
#[derive(Debug)]
pub struct Api {
    listener: TcpListener,
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
}

impl Api {
    /// Binds `listen` (loopback only; port 0: any free port).
    pub async fn bind(
        listen: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
    ) -> Result<Self, ApiError> {
        if !listen.ip().is_loopback() {
            return Err(ApiError::NotLoopback(listen));
        }
        let bind = |source| ApiError::Bind {
            addr: listen,
            source,
        };
        let listener = TcpListener::bind(listen).await.map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;
        Ok(Self {
            listener,
            addr,
            tls,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `state` until `shutdown` turns true.
    pub async fn serve(self, state: ApiState, mut shutdown: watch::Receiver<bool>) {
        let acceptor = TlsAcceptor::from(self.tls);
        let state = Arc::new(state);
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .keep_alive(false)
            .max_buf_size(MAX_BUFFER);
        let http = Arc::new(http);
        while !*shutdown.borrow() {
            let stream = tokio::select! {
                r = self.listener.accept() => match r {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "API could not accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = shutdown.changed() => break,
            };
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                tracing::debug!("API busy: dropped a new connection");
                continue;
            };
            let (acceptor, state, http) = (acceptor.clone(), Arc::clone(&state), Arc::clone(&http));
            tokio::spawn(async move {
                let _permit = permit;
                let tls = match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream))
                    .await
                {
                    Ok(Ok(tls)) => tls,
                    // No certificate, another environment's, a plain-HTTP client: refused here.
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "API TLS handshake refused");
                        return;
                    }
                    Err(_) => return,
                };
                let service = service_fn(move |req: Request<Incoming>| {
                    let state = Arc::clone(&state);
                    async move {
                        // A frozen OpenBao holds each read for the client's whole timeout
                        // (60 s): answer 504 well inside the connection's lifetime instead of
                        // closing it with no answer at all.
                        let reply =
                            tokio::time::timeout(ANSWER_TIMEOUT, routes::route(&req, &state))
                                .await
                                .unwrap_or_else(|_| routes::timed_out());
                        Ok::<_, Infallible>(reply)
                    }
                });
                let conn = http.serve_connection(TokioIo::new(tls), service);
                match tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(error = %e, "API connection ended with an error"),
                    Err(_) => tracing::debug!("closed an API connection that outlived its time"),
                }
            });
        }
    }
}
