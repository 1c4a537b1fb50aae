//! `token-service`: a tiny HTTP service that signs and verifies JWTs with a dual-key ES256
//! signing key, every secret through [`warden_provider::SecretProvider`] (docs/provider.md).
//!
//! Configuration is the environment, as for any service using the provider:
//! `VAULT_ADDR`/`BAO_ADDR`, `VAULT_CACERT`, the login (`WARDEN_IDENTITY_DIR`, or
//! `WARDEN_APPROLE_ROLE_ID_FILE` + `WARDEN_APPROLE_SECRET_ID_FILE`), the start-up contract
//! (`VAULT_INIT_TIMEOUT_SEC`, `VAULT_RETRY_INITIAL_MS`, `VAULT_RETRY_MAX_MS`,
//! `VAULT_WATCH_INTERVAL_SEC`), and its own:
//!
//! - `TOKEN_SERVICE_KEY_PATH` (required): the signing key's path in the KV v2 mount;
//! - `TOKEN_SERVICE_KEY_MOUNT` (default `secret`);
//! - `TOKEN_SERVICE_LISTEN` (default `127.0.0.1:0`; the address bound is printed on stdout as
//!   `listening on http://ADDR`).
//!
//! Endpoints: `GET /token?sub=NAME` (a JWT valid 5 minutes), `POST /verify` (body: a JWT;
//! 200 with its `sub`, 401 with the reason), `GET /jwks`, `GET /health`.
//!
//! Exit codes: 0 after SIGINT/SIGTERM, 1 when OpenBao was not usable within
//! `VAULT_INIT_TIMEOUT_SEC` or the key could not be loaded, 2 for a configuration error
//! (including AD-1: a secret in the environment).

// A binary prints its address and its fatal error; the library lints are for libraries.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use warden_keys::{KvLocation, SigningKeyConfig, SigningKeys};
use warden_provider::{Error, ProviderConfig, SecretProvider};
use warden_spec::SigningAlgorithm;

/// Lifetime of the tokens this service signs.
const TOKEN_LIFETIME_S: u64 = 300;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

async fn run() -> Result<(), (u8, String)> {
    let config = ProviderConfig::from_env().map_err(|e| (2, e.to_string()))?;
    let get = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let path = get("TOKEN_SERVICE_KEY_PATH").ok_or((
        2,
        "TOKEN_SERVICE_KEY_PATH is not set: name the signing key's path in KV v2".to_owned(),
    ))?;
    let mount = get("TOKEN_SERVICE_KEY_MOUNT").unwrap_or_else(|| "secret".to_owned());
    let listen: SocketAddr = get("TOKEN_SERVICE_LISTEN")
        .unwrap_or_else(|| "127.0.0.1:0".to_owned())
        .parse()
        .map_err(|e| (2, format!("TOKEN_SERVICE_LISTEN is not an address: {e}")))?;

    // Error::InitTimeout's message already names the address, the budget and the last failure.
    let provider = SecretProvider::connect(config)
        .await
        .map_err(|e: Error| (1, e.to_string()))?;
    let keys = provider
        .signing_keys(SigningKeyConfig::new(
            KvLocation::new(mount, path),
            SigningAlgorithm::Es256,
        ))
        .await
        .map_err(|e| (1, format!("cannot load the signing key: {e}")))?;
    let _reload = provider.watch_signing_keys(&keys, |set| {
        tracing::info!(kid = %set.current().kid, "signing key rotated; now signing with the new version");
    });

    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| (1, format!("cannot listen on {listen}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| (1, format!("cannot read the bound address: {e}")))?;
    println!("listening on http://{bound}");
    tracing::info!(%bound, kid = %keys.get().current().kid, "token-service ready");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| (1, format!("cannot handle SIGTERM: {e}")))?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let keys = keys.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(keys.clone(), req));
                    if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
        }
    }
}

async fn handle(
    keys: SigningKeys,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        Ok(r)
    };
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/health") => reply(StatusCode::OK, "ok".to_owned()),
        (&Method::GET, "/jwks") => match serde_json::to_string(&keys.jwks()) {
            Ok(body) => reply(StatusCode::OK, body),
            Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        (&Method::GET, "/token") => {
            let sub = req
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("sub=")))
                .unwrap_or("anonymous")
                .to_owned();
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let claims =
                serde_json::json!({ "sub": sub, "iat": now, "exp": now + TOKEN_LIFETIME_S });
            match keys.sign(&claims) {
                Ok(token) => reply(StatusCode::OK, token),
                Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        (&Method::POST, "/verify") => {
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return reply(StatusCode::BAD_REQUEST, e.to_string()),
            };
            let token = String::from_utf8_lossy(&body);
            match keys.verify(token.trim()).await {
                Ok(claims) => reply(
                    StatusCode::OK,
                    claims["sub"].as_str().unwrap_or("").to_owned(),
                ),
                Err(e) => {
                    tracing::warn!(reason = %e, "token refused");
                    reply(StatusCode::UNAUTHORIZED, e.to_string())
                }
            }
        }
        _ => reply(StatusCode::NOT_FOUND, "not found".to_owned()),
    }
}
