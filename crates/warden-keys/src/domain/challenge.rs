//! The two network pieces of an ACME order: [`ReqwestHttp`], which carries the ACME client's
//! requests over warden-bao's HTTP client (one TLS stack, the environment's CA, the client
//! certificate the listener demands), and [`ChallengeServer`], the small HTTP/1.1 server that
//! answers `GET /.well-known/acme-challenge/<token>` while an order is open, and nothing else.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use warden_bao::body::{BodyError, Overflow, read_capped};
use zeroize::Zeroizing;

/// instant-acme's HTTP client, backed by a `reqwest::Client`.
pub(crate) struct ReqwestHttp(pub(crate) reqwest::Client);

impl HttpClient for ReqwestHttp {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.0.clone();
        Box::pin(async move {
            let other = |e: Box<dyn std::error::Error + Send + Sync>| instant_acme::Error::Other(e);
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let url = parts.uri.to_string();
            let mut builder = client.request(parts.method, url).body(body);
            for (name, value) in &parts.headers {
                builder = builder.header(name, value);
            }
            let rsp = builder.send().await.map_err(|e| other(Box::new(e)))?;
            let status = rsp.status();
            let headers = rsp.headers().clone();
            let url = rsp.url().clone();
            let mut body = read_capped(rsp, Overflow::Refuse(ACME_ANSWER_BYTES))
                .await
                .map_err(|e| match e {
                    BodyError::TooLarge { limit } => other(
                        format!("the ACME server answered {url} with more than {limit} bytes")
                            .into(),
                    ),
                    e => other(Box::new(e)),
                })?;
            // An ACME answer holds no secret (a directory, orders, authorizations, a public
            // certificate chain), so the bytes move out of the wiping buffer without a copy.
            let mut out = Response::new(Full::new(Bytes::from(std::mem::take(&mut *body))));
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            Ok(BytesResponse::from(out))
        })
    }
}

/// The largest answer read from an ACME server: its directory, orders, authorizations and a
/// certificate chain are kilobytes. A server streaming more is refused before it is held.
pub(crate) const ACME_ANSWER_BYTES: u64 = 4 * 1024 * 1024;

type Answers = Arc<Mutex<HashMap<String, Zeroizing<String>>>>;

/// Answers http-01 challenges on one address until dropped.
pub(crate) struct ChallengeServer {
    answers: Answers,
    task: JoinHandle<()>,
}

impl ChallengeServer {
    /// Listens on `addr` (the spec has already refused a non-loopback one unless the operator
    /// allowed it). Each connection gets HTTP/1.1; only known tokens answer 200.
    pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let answers: Answers = Arc::default();
        let served = answers.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let answers = served.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let rsp = respond(&answers, req.uri().path(), peer);
                        async move { Ok::<_, std::convert::Infallible>(rsp) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { answers, task })
    }

    /// Serves `key_authorization` at `/.well-known/acme-challenge/<token>`.
    pub(crate) fn answer(&self, token: String, key_authorization: Zeroizing<String>) {
        self.answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token, key_authorization);
    }
}

impl Drop for ChallengeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn respond(answers: &Answers, path: &str, peer: SocketAddr) -> Response<Full<Bytes>> {
    let found = path
        .strip_prefix("/.well-known/acme-challenge/")
        .and_then(|token| {
            answers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(token)
                .map(|k| Bytes::from(k.as_str().to_owned()))
        });
    tracing::debug!(%peer, path, answered = found.is_some(), "http-01 challenge request");
    match found {
        Some(body) => Response::new(Full::new(body)),
        None => {
            let mut rsp = Response::new(Full::new(Bytes::from_static(b"not found\n")));
            *rsp.status_mut() = StatusCode::NOT_FOUND;
            rsp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_known_tokens_only() {
        let server = ChallengeServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        server.answer("tok".into(), Zeroizing::new("tok.thumb".into()));
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let ok = respond(&server.answers, "/.well-known/acme-challenge/tok", peer);
        assert_eq!(ok.status(), StatusCode::OK);
        let body = ok.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"tok.thumb");
        for path in ["/.well-known/acme-challenge/other", "/", "/tok"] {
            assert_eq!(
                respond(&server.answers, path, peer).status(),
                StatusCode::NOT_FOUND,
                "{path}"
            );
        }
    }
}
