//! The [`Client`]: pooled keep-alive connections to one server (or to the nodes of one
//! cluster, with failover: see `failover`), the request pipeline (URL building, headers, status
//! mapping, retries) and the raw `read/write/list/delete` escape hatch for endpoints without a
//! typed wrapper.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;
use url::Url;
use zeroize::Zeroizing;

use crate::body::{BodyError, Overflow};
use crate::config::{ClientConfig, check_address};
use crate::error::{Error, Result};
use crate::failover::Nodes;
use crate::http_date::parse_http_date;
use crate::response::Secret;
use crate::retry::{Idempotent, RetryGate, RetryPolicy, Schedule, jitter_unit};
use crate::tls::ClientIdentity;
use crate::tls::{self, RecordingVerifier};

/// How much of a refusal's body is read: its `errors` are at the start, and only their first
/// few hundred characters are shown.
const ERROR_BODY_BYTES: u64 = 64 * 1024;

/// A connection to one OpenBao server, or to the nodes of one cluster. Cheap to clone (clones
/// share the connection pool, the token, the retry gate and the current node).
///
/// Why one long-lived client: opening a TLS connection per request (what a CLI call per
/// object does) costs ~45× more than reusing a keep-alive connection.
///
/// With several addresses ([`ClientConfig::with_addresses`]) the client talks to one current
/// node and fails over to the next live one without a restart; the failover contract (when
/// it moves, and why a request that may have been applied is never replayed) is in the
/// crate docs under "Failover".
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.address().as_str())
            .field("nodes", &self.inner.nodes.len())
            .field("token", &self.has_token().then_some("..."))
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    nodes: Nodes,
    http: RwLock<reqwest::Client>,
    /// The TLS configuration `http` was built with, for the diagnostic handshake in
    /// [`Client::diagnose`].
    tls_config: RwLock<Arc<rustls::ClientConfig>>,
    /// The server certificate verifier `http` was built with: the CA bundle's roots (replaced
    /// by [`Client::set_ca_pem`]).
    verifier: RwLock<Arc<RecordingVerifier>>,
    /// The TLS client identity `http` was built with, so that a new CA bundle keeps it.
    identity: RwLock<Option<ClientIdentity>>,
    /// Held while `http`, `tls_config`, `verifier` and `identity` are rebuilt together, so that
    /// a CA swap and an identity swap racing each other cannot undo one another.
    rebuild: Mutex<()>,
    token: RwLock<Option<SecretString>>,
    namespace: Option<HeaderValue>,
    retry: RetryPolicy,
    gate: RetryGate,
    request_timeout: Duration,
    /// The `Date` of the last response that carried one, and when it arrived.
    last_date: Mutex<Option<ServerDate>>,
    /// Log in with the certificate when a token is needed and none is set (`cert_login`).
    pub(crate) cert_login: RwLock<Option<crate::cert_login::CertLogin>>,
    pub(crate) login_lock: tokio::sync::Mutex<()>,
}

/// The server's clock as its last response told it (`Date` header), for clock-skew checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerDate {
    /// The server's time (the header has one-second resolution).
    pub date: SystemTime,
    /// When the response arrived, on this process's monotonic clock.
    pub received: Instant,
}

/// One HTTP exchange to build. Internal: endpoint modules fill it in.
pub(crate) struct Call<'a> {
    pub(crate) method: Method,
    pub(crate) path: &'a str,
    pub(crate) query: &'a [(&'a str, &'a str)],
    /// JSON body, in a buffer wiped on drop (it may hold unseal keys or passwords).
    pub(crate) body: Option<Zeroizing<Vec<u8>>>,
    pub(crate) idempotent: Idempotent,
    /// Send `X-Vault-Token`? Off for unauthenticated sys endpoints, so the token travels to as
    /// few places as possible.
    pub(crate) authenticated: bool,
    /// Non-2xx statuses whose body the caller wants instead of an error (sys/health).
    pub(crate) accept: &'a [u16],
    /// Ask OpenBao to response-wrap the answer for this many seconds (`X-Vault-Wrap-TTL`).
    pub(crate) wrap_ttl_secs: Option<u64>,
}

impl<'a> Call<'a> {
    pub(crate) fn new(method: Method, path: &'a str, idempotent: Idempotent) -> Self {
        Self {
            method,
            path,
            query: &[],
            body: None,
            idempotent,
            authenticated: true,
            accept: &[],
            wrap_ttl_secs: None,
        }
    }

    pub(crate) fn get(path: &'a str) -> Self {
        Self::new(Method::GET, path, Idempotent::Yes)
    }

    pub(crate) fn json(mut self, body: &impl Serialize) -> Result<Self> {
        let mut buf = Zeroizing::new(Vec::new());
        serde_json::to_writer(&mut *buf, body).map_err(|source| Error::Encode {
            path: self.path.to_owned(),
            source,
        })?;
        self.body = Some(buf);
        Ok(self)
    }

    pub(crate) fn query(mut self, query: &'a [(&'a str, &'a str)]) -> Self {
        self.query = query;
        self
    }

    pub(crate) fn unauthenticated(mut self) -> Self {
        self.authenticated = false;
        self
    }

    pub(crate) fn accept(mut self, statuses: &'a [u16]) -> Self {
        self.accept = statuses;
        self
    }
}

/// A raw answer: status and body bytes (the body may hold secrets, so it is wiped on drop).
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Zeroizing<Vec<u8>>,
}

impl Reply {
    pub(crate) fn decode<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|source| Error::Decode {
            path: path.to_owned(),
            source,
        })
    }
}

impl Client {
    /// Builds the client. Nothing is sent yet: a wrong address shows up on the first call
    /// (use [`Client::wait_ready`] at start-up).
    ///
    /// TLS: rustls with aws-lc-rs; the configured CA bundle is the only trust anchor (platform
    /// roots are used only when none is configured); the client identity, if any, is offered
    /// to every server that asks. No redirects are followed (a standby's 307 becomes an
    /// error rather than silently moving the token to another host), and no proxy is used.
    pub fn new(cfg: ClientConfig) -> Result<Self> {
        let addresses: Vec<Url> = cfg.addresses().into_iter().cloned().collect();
        for address in &addresses {
            check_address(address)?;
            if address.scheme() == "http"
                && (cfg.ca_cert_pem.is_some() || cfg.client_identity.is_some())
            {
                return Err(Error::config(format!(
                    "address {address} is plain http but TLS material (CA or client certificate) is configured; use https://"
                )));
            }
        }
        if cfg.request_timeout.is_zero() {
            return Err(Error::config("request_timeout must be greater than zero"));
        }
        let verifier = tls::verifier(cfg.ca_cert_pem.as_deref())?;
        let (http, tls_config) = build_http(
            verifier.clone(),
            cfg.client_identity.as_ref(),
            cfg.request_timeout,
        )?;
        let nodes = Nodes::new(addresses)?;
        let namespace = cfg
            .namespace
            .as_deref()
            .map(|ns| {
                HeaderValue::from_str(ns).map_err(|_| {
                    Error::config(format!("namespace {ns:?} is not a valid header value"))
                })
            })
            .transpose()?;
        Ok(Self {
            inner: Arc::new(Inner {
                nodes,
                http: RwLock::new(http),
                tls_config: RwLock::new(tls_config),
                verifier: RwLock::new(verifier),
                identity: RwLock::new(cfg.client_identity),
                rebuild: Mutex::new(()),
                token: RwLock::new(cfg.token),
                namespace,
                retry: cfg.retry,
                gate: RetryGate::new(),
                request_timeout: cfg.request_timeout,
                last_date: Mutex::new(None),
                cert_login: RwLock::new(None),
                login_lock: tokio::sync::Mutex::new(()),
            }),
        })
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// The `Date` of the last response that carried a readable one (any status), or `None`
    /// before the first. Lets a caller tell its own clock from the server's.
    pub fn last_server_date(&self) -> Option<ServerDate> {
        *self
            .inner
            .last_date
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The server's time now, estimated from the last response's `Date` plus the time since it
    /// arrived; this host's clock before any response. `Date` has one-second resolution and is
    /// truncated, so the estimate is at most about one second behind the server. Deadlines
    /// that several hosts judge (a lease, a CA overlap) use it, so hosts whose clocks disagree
    /// still agree on when a deadline passes.
    pub fn server_now(&self) -> SystemTime {
        match self.last_server_date() {
            Some(d) => d.date + d.received.elapsed(),
            None => SystemTime::now(),
        }
    }

    fn note_date(&self, headers: &HeaderMap) {
        let date = headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_http_date);
        if let Some(date) = date {
            *self
                .inner
                .last_date
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(ServerDate {
                date,
                received: Instant::now(),
            });
        }
    }

    /// The address of the node requests go to now: the configured one for a single-address
    /// client; for several, the one that last answered (status pages and metrics show it).
    pub fn address(&self) -> &Url {
        &self.inner.nodes.node(self.inner.nodes.current()).address
    }

    /// Every configured address, in the order failover tries them.
    pub fn addresses(&self) -> Vec<&Url> {
        self.inner.nodes.addresses().collect()
    }

    pub(crate) fn nodes(&self) -> &Nodes {
        &self.inner.nodes
    }

    /// The retry policy in force.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// Replaces the token used by this client and all its clones (e.g. after a login).
    pub fn set_token(&self, token: SecretString) {
        *self
            .inner
            .token
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(token);
    }

    /// Forgets the token: later calls are unauthenticated until [`Client::set_token`].
    pub fn clear_token(&self) {
        *self
            .inner
            .token
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Whether a token is set.
    pub fn has_token(&self) -> bool {
        self.inner
            .token
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// The HTTP client every request of this client goes through (the configured CA as the only
    /// trust anchor, the client certificate offered, no redirects, no proxy). For protocols
    /// OpenBao serves outside its JSON API (ACME, `warden-keys`), which must reach the server
    /// with the same TLS. A later [`Client::set_identity`] or [`Client::set_ca_pem`] does not
    /// change a client already handed out.
    pub fn http_client(&self) -> reqwest::Client {
        self.inner
            .http
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Swaps the TLS client identity (after a certificate rotation) for this client and all
    /// its clones.
    ///
    /// Why a new connection pool rather than only a new certificate: OpenBao binds cert-auth
    /// to the certificate of the *connection*, and a kept-alive connection would go on
    /// presenting the old one. Requests already in flight finish on the old pool. The new
    /// identity is validated (key matches certificate) before anything is swapped.
    pub fn set_identity(&self, identity: Option<ClientIdentity>) -> Result<()> {
        let _rebuilding = self
            .inner
            .rebuild
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let verifier = self.verifier();
        self.install(verifier, identity)
    }

    /// Replaces the trust anchors (the CA bundle) for this client and all its clones: every
    /// connection opened from now on verifies the server against `ca_pem`'s certificates only.
    ///
    /// Why: an agent's trust file changes while it runs (a root rollover, ADR 0030), and once
    /// the listener's certificate chains to the new root a client still anchored at the old one
    /// cannot reconnect. Like [`Client::set_identity`] this builds a new connection pool, so
    /// kept-alive connections verified under the old anchors are not reused; requests already
    /// in flight finish on the old pool. The bundle is parsed and the verifier built before
    /// anything is swapped: a bundle without a usable certificate is refused
    /// ([`Error::Config`]) and the client keeps its anchors — it never drops to an empty trust.
    pub fn set_ca_pem(&self, ca_pem: &[u8]) -> Result<()> {
        let verifier = tls::verifier(Some(ca_pem))?;
        let _rebuilding = self
            .inner
            .rebuild
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let identity = self
            .inner
            .identity
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        self.install(verifier, identity)
    }

    /// Whether this client presents a TLS identity (a handshake refusal then may be about it).
    fn identity_present(&self) -> bool {
        self.inner
            .identity
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    fn verifier(&self) -> Arc<RecordingVerifier> {
        self.inner
            .verifier
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Builds the pool for `verifier` and `identity`, then swaps all of it in. The caller holds
    /// `rebuild`.
    fn install(
        &self,
        verifier: Arc<RecordingVerifier>,
        identity: Option<ClientIdentity>,
    ) -> Result<()> {
        let (http, tls_config) = build_http(
            verifier.clone(),
            identity.as_ref(),
            self.inner.request_timeout,
        )?;
        *self
            .inner
            .http
            .write()
            .unwrap_or_else(PoisonError::into_inner) = http;
        *self
            .inner
            .tls_config
            .write()
            .unwrap_or_else(PoisonError::into_inner) = tls_config;
        *self
            .inner
            .verifier
            .write()
            .unwrap_or_else(PoisonError::into_inner) = verifier;
        *self
            .inner
            .identity
            .write()
            .unwrap_or_else(PoisonError::into_inner) = identity;
        Ok(())
    }

    // ---- raw escape hatch -------------------------------------------------------------

    /// GET `path` (relative to `/v1/`), retried on retryable errors within the call budget.
    ///
    /// A 404 that still carries `data` (KV v2 reports a deleted/destroyed version that way)
    /// is returned as a [`Secret`]; a 404 without data is [`Error::NotFound`].
    pub async fn read(&self, path: &str) -> Result<Secret> {
        let reply = self.send(Call::get(path).accept(&[404])).await?;
        let addr = self.address().as_str();
        if reply.status == 404 {
            let secret: Option<Secret> = serde_json::from_slice(&reply.body).ok();
            return match secret {
                Some(s) if s.data.as_ref().is_some_and(|d| !d.is_null()) => Ok(s),
                _ => Err(Error::from_status(404, path, addr, &reply.body)),
            };
        }
        reply.decode(path)
    }

    /// Writes `body` to `path` (POST). Returns `None` for a 204 (most config endpoints).
    /// `idempotent` decides whether it may be retried after being sent (see [`Idempotent`]).
    pub async fn write(
        &self,
        path: &str,
        body: &serde_json::Value,
        idempotent: Idempotent,
    ) -> Result<Option<Secret>> {
        let reply = self
            .send(Call::new(Method::POST, path, idempotent).json(body)?)
            .await?;
        optional_secret(&reply, path)
    }

    /// Writes `body` to `path` and asks OpenBao to response-wrap the answer for `ttl`: the
    /// caller gets a single-use wrapping token instead of the secret itself (for example an
    /// AppRole secret-id to hand to a container). Never retried once sent: a second wrapped
    /// answer would be a second secret.
    pub async fn write_wrapped(
        &self,
        path: &str,
        body: &serde_json::Value,
        ttl: Duration,
    ) -> Result<crate::WrapInfo> {
        let mut call = Call::new(Method::POST, path, Idempotent::No).json(body)?;
        call.wrap_ttl_secs = Some(ttl.as_secs().max(1));
        let reply = self.send(call).await?;
        let secret: Secret = reply.decode(path)?;
        secret.wrap_info.ok_or_else(|| Error::Decode {
            path: path.to_owned(),
            source: serde::de::Error::custom("OpenBao returned no wrap_info for a wrapped request"),
        })
    }

    /// Lists the keys under `path` (GET `?list=true`). A missing folder lists as empty (that
    /// is how OpenBao reports "no keys"); a missing *mount* is still [`Error::NotFound`] with
    /// the server's explanation in `errors`.
    pub async fn list(&self, path: &str) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Keys {
            #[serde(default)]
            keys: Vec<String>,
        }
        match self.send(Call::get(path).query(&[("list", "true")])).await {
            Ok(reply) => {
                let secret: Secret = reply.decode(path)?;
                Ok(secret.data_as::<Keys>(path)?.keys)
            }
            Err(Error::NotFound { errors, .. }) if errors.is_empty() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// DELETE `path`. Idempotent, so retried.
    pub async fn delete(&self, path: &str) -> Result<()> {
        self.send(Call::new(Method::DELETE, path, Idempotent::Yes))
            .await
            .map(drop)
    }

    // ---- pipeline ----------------------------------------------------------------------

    /// Sends a call, retrying as its idempotency and the policy's `call_budget` allow.
    pub(crate) async fn send(&self, call: Call<'_>) -> Result<Reply> {
        if call.authenticated {
            self.ensure_token().await?;
        }
        let what = format!("{} {}", call.method, call.path);
        let idem = call.idempotent;
        self.retrying(
            &what,
            self.inner.retry.call_budget,
            |e| idem.may_retry(e),
            // Each attempt is one failover round over the client's nodes.
            || self.send_round(&call),
        )
        .await
    }

    /// Runs `op` until it succeeds, fails with an error `retry_on` refuses, or `budget` is
    /// spent. Each retry waits its backoff delay *and* its slot in the client-wide gate; a
    /// retry whose slot would land after the budget is not made.
    pub(crate) async fn retrying<T, F, Fut>(
        &self,
        what: &str,
        budget: Duration,
        retry_on: impl Fn(&Error) -> bool,
        mut op: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let start = tokio::time::Instant::now();
        let mut schedule = Schedule::new(&self.inner.retry, budget);
        let mut attempts: u32 = 0;
        loop {
            attempts += 1;
            let err = match op().await {
                Ok(v) => return Ok(v),
                Err(e) if retry_on(&e) => e,
                Err(e) => return Err(e),
            };
            let elapsed = start.elapsed();
            let give_up = |err: Error| {
                if attempts == 1 {
                    err
                } else {
                    Error::GaveUp {
                        what: what.to_owned(),
                        attempts,
                        waited: elapsed,
                        last: Box::new(err),
                    }
                }
            };
            let Some(delay) = schedule.next_delay(elapsed, jitter_unit()) else {
                return Err(give_up(err));
            };
            let Some(slot) = self
                .inner
                .gate
                .reserve(
                    tokio::time::Instant::now() + delay,
                    self.inner.retry.min_spacing,
                    start + budget,
                )
                .await
            else {
                return Err(give_up(err));
            };
            tracing::debug!(
                what,
                attempts,
                delay = %crate::format_wait(delay),
                error = %err,
                "retrying OpenBao call"
            );
            tokio::time::sleep_until(slot).await;
        }
    }

    fn url(base: &Url, path: &str, query: &[(&str, &str)]) -> Result<Url> {
        let trimmed = path.trim_start_matches('/');
        if trimmed.is_empty() {
            return Err(Error::InvalidPath {
                path: path.to_owned(),
                reason: "empty",
            });
        }
        if trimmed.split('/').any(|s| s == "." || s == "..") {
            return Err(Error::InvalidPath {
                path: path.to_owned(),
                reason: "contains a '.' or '..' segment",
            });
        }
        let mut url = base.clone();
        {
            // Segment-wise: '?', '#' and '%' in a path are encoded, never interpreted.
            let mut segs = url
                .path_segments_mut()
                .map_err(|()| Error::config("address cannot be a base URL"))?;
            segs.extend(trimmed.split('/'));
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    fn headers(&self, authenticated: bool) -> Result<HeaderMap> {
        let mut headers = HeaderMap::new();
        headers.insert("X-Vault-Request", HeaderValue::from_static("true"));
        if let Some(ns) = &self.inner.namespace {
            headers.insert("X-Vault-Namespace", ns.clone());
        }
        if authenticated {
            let token = self
                .inner
                .token
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(token) = token.as_ref() {
                let mut value = HeaderValue::from_str(token.expose_secret()).map_err(|_| {
                    Error::config("token contains characters not allowed in a header")
                })?;
                // Keeps hyper/reqwest from ever printing it.
                value.set_sensitive(true);
                headers.insert("X-Vault-Token", value);
            }
        }
        Ok(headers)
    }

    /// One exchange with node `i`.
    pub(crate) async fn send_to(&self, i: usize, call: &Call<'_>) -> Result<Reply> {
        let node = self.inner.nodes.node(i);
        let url = Self::url(&node.api_base, call.path, call.query)?;
        let http = self
            .inner
            .http
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut req = http
            .request(call.method.clone(), url)
            .headers(self.headers(call.authenticated)?);
        if let Some(ttl) = call.wrap_ttl_secs {
            req = req.header("X-Vault-Wrap-TTL", format!("{ttl}s"));
        }
        if let Some(body) = &call.body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        // The span names the request; the token is in a header and never recorded.
        let span = tracing::debug_span!(
            "bao_request",
            method = %call.method,
            path = call.path,
            node = %node.address,
            status = tracing::field::Empty
        );
        async {
            let resp = match req.send().await {
                Ok(resp) => resp,
                Err(e) => {
                    return Err(self
                        .diagnose(
                            &node.address,
                            self.transport_error(&node.address, call.path, e),
                        )
                        .await);
                }
            };
            let status = resp.status().as_u16();
            tracing::Span::current().record("status", status);
            self.note_date(resp.headers());
            let wanted = (200..300).contains(&status) || call.accept.contains(&status);
            // A refusal is read only as far as its message: an oversized error page must not
            // turn a retryable 503 into a refused answer, nor hold memory.
            let body = if wanted {
                self.read_body(
                    resp,
                    &node.address,
                    call.path,
                    Overflow::Refuse(crate::MAX_RESPONSE_BYTES),
                )
                .await?
            } else {
                self.read_body(
                    resp,
                    &node.address,
                    call.path,
                    Overflow::Cut(ERROR_BODY_BYTES),
                )
                .await?
            };
            if wanted {
                Ok(Reply { status, body })
            } else {
                let err = Error::from_status(status, call.path, node.address.as_str(), &body);
                tracing::debug!(error = %err, "OpenBao refused the request");
                Err(err)
            }
        }
        .instrument(span)
        .await
    }

    /// One exchange with node `i` whose body is raw bytes (not JSON) and whose answer is
    /// handed back unread, for the endpoints that move whole files (raft snapshots): the
    /// caller streams the response. Non-2xx statuses are mapped to the usual typed errors.
    /// No retry and no failover: a stream half consumed cannot be replayed.
    pub(crate) async fn exchange_raw(
        &self,
        i: usize,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<reqwest::Response> {
        self.ensure_token().await?;
        let node = self.inner.nodes.node(i);
        let url = Self::url(&node.api_base, path, &[])?;
        let http = self
            .inner
            .http
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut req = http
            .request(method, url)
            .headers(self.headers(true)?)
            .timeout(timeout);
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(body);
        }
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => {
                return Err(self
                    .diagnose(&node.address, self.transport_error(&node.address, path, e))
                    .await);
            }
        };
        self.note_date(resp.headers());
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let body = self
            .read_body(resp, &node.address, path, Overflow::Cut(ERROR_BODY_BYTES))
            .await?;
        Err(Error::from_status(
            status,
            path,
            node.address.as_str(),
            &body,
        ))
    }

    /// The body of `resp`, bounded as `overflow` says ([`crate::body::read_capped`]: one
    /// buffer of exactly its length, wiped on drop), its failures named after the request.
    async fn read_body(
        &self,
        resp: reqwest::Response,
        address: &Url,
        path: &str,
        overflow: Overflow,
    ) -> Result<Zeroizing<Vec<u8>>> {
        crate::body::read_capped(resp, overflow)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge { limit } => Error::TooLarge {
                    path: path.to_owned(),
                    address: address.to_string(),
                    limit,
                },
                BodyError::Transport(e) => self.transport_error(address, path, e),
            })
    }

    /// Reads the next chunk of a streamed response from node address `address`.
    pub(crate) async fn next_chunk(
        &self,
        resp: &mut reqwest::Response,
        address: &Url,
        path: &str,
    ) -> Result<Option<Vec<u8>>> {
        resp.chunk()
            .await
            .map(|c| c.map(|b| b.to_vec()))
            .map_err(|e| self.transport_error(address, path, e))
    }

    /// A bare transport error on an HTTPS connection ("connection was not ready", "connection
    /// closed before message completed") is often a TLS 1.3 refusal in disguise: the server
    /// rejects our client certificate *after* the client considers the handshake done, and
    /// whether hyper reports the alert or just a dead connection is a race. One bounded
    /// diagnostic handshake with the same TLS configuration reads the alert, so callers always
    /// get the typed `Error::Tls` for a refused certificate. Anything else is returned as is.
    async fn diagnose(&self, address: &Url, err: Error) -> Error {
        if !matches!(err, Error::Transport { .. }) || address.scheme() != "https" {
            return err;
        }
        let config = self
            .inner
            .tls_config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match tls::probe(address, config).await {
            Some(rustls_err) => Error::Tls {
                address: address.to_string(),
                failure: tls::classify(
                    &rustls_err,
                    self.verifier().take_rejected(),
                    self.identity_present(),
                ),
            },
            None => err,
        }
    }

    fn transport_error(&self, address: &Url, path: &str, err: reqwest::Error) -> Error {
        let address = address.to_string();
        if let Some(rustls_err) = tls::find_rustls_error(&err) {
            return Error::Tls {
                address,
                failure: tls::classify(
                    rustls_err,
                    self.verifier().take_rejected(),
                    self.identity_present(),
                ),
            };
        }
        if err.is_connect() {
            Error::Unreachable {
                address,
                source: Box::new(err),
            }
        } else if err.is_timeout() {
            Error::Timeout {
                path: path.to_owned(),
                after: self.inner.request_timeout,
            }
        } else {
            Error::Transport {
                path: path.to_owned(),
                source: Box::new(err),
            }
        }
    }
}

pub(crate) fn optional_secret(reply: &Reply, path: &str) -> Result<Option<Secret>> {
    if reply.status == 204 || reply.body.iter().all(u8::is_ascii_whitespace) {
        Ok(None)
    } else {
        reply.decode(path).map(Some)
    }
}

fn build_http(
    verifier: Arc<RecordingVerifier>,
    identity: Option<&ClientIdentity>,
    timeout: Duration,
) -> Result<(reqwest::Client, Arc<rustls::ClientConfig>)> {
    let tls = tls::client_config(verifier, identity)?;
    let kept = Arc::new(tls.clone());
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .http1_only()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_keepalive(Duration::from_secs(30))
        .user_agent(concat!("warden-bao/", env!("CARGO_PKG_VERSION")))
        .build()
        .map(|http| (http, kept))
        .map_err(|e| Error::config(format!("HTTP client: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{answering, chunked};

    fn client(addr: &str) -> Client {
        Client::new(ClientConfig::from_address(addr).expect("cfg")).expect("client")
    }

    /// Red-team regression: a server (or a proxy in front of it) announcing or streaming an
    /// endless answer was read whole into memory. It is refused at the announced length, and a
    /// chunked stream is cut at the limit, both as `TooLarge` naming the request, never
    /// retried. (How far each overflow reads is `body`'s to test.)
    #[tokio::test]
    async fn an_answer_past_the_limit_is_refused_before_it_is_held() {
        let announced = crate::MAX_RESPONSE_BYTES + 1;
        let addr = answering(
            format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {announced}\r\n\r\n"),
            vec![b"{".to_vec()],
        )
        .await;
        let err = client(&addr).read("sys/huge").await.expect_err("too large");
        assert!(matches!(err.root(), Error::TooLarge { .. }), "{err:?}");
        assert!(!err.is_retryable());
        assert!(
            err.to_string()
                .contains("answered sys/huge with success but more than 512 MiB"),
            "{err}"
        );

        // Chunked, no length announced: cut where it passes the limit (1 KiB here).
        let (head, chunks) = chunked("200 OK", &[600, 600]);
        let addr = answering(head, chunks).await;
        let c = client(&addr);
        let url = Url::parse(&format!("{addr}/v1/x")).expect("url");
        let resp = c.http_client().get(url.clone()).send().await.expect("get");
        let err = c
            .read_body(resp, &url, "x", Overflow::Refuse(1024))
            .await
            .expect_err("too large");
        assert!(
            matches!(&err, Error::TooLarge { limit: 1024, path, .. } if path == "x"),
            "{err:?}"
        );
    }

    #[test]
    fn urls_stay_under_v1() {
        let c = client("http://127.0.0.1:8200");
        assert_eq!(
            Client::url(&c.inner.nodes.node(0).api_base, "secret/data/a", &[])
                .expect("url")
                .as_str(),
            "http://127.0.0.1:8200/v1/secret/data/a"
        );
        assert_eq!(
            Client::url(
                &c.inner.nodes.node(0).api_base,
                "/secret/metadata/",
                &[("list", "true")]
            )
            .expect("url")
            .as_str(),
            "http://127.0.0.1:8200/v1/secret/metadata/?list=true"
        );
        // Characters that would change the URL's meaning are encoded, not interpreted.
        assert_eq!(
            Client::url(&c.inner.nodes.node(0).api_base, "secret/a?b#c", &[])
                .expect("url")
                .as_str(),
            "http://127.0.0.1:8200/v1/secret/a%3Fb%23c"
        );
        assert!(matches!(
            Client::url(&c.inner.nodes.node(0).api_base, "secret/../sys", &[]),
            Err(Error::InvalidPath { .. })
        ));
        assert!(matches!(
            Client::url(&c.inner.nodes.node(0).api_base, "", &[]),
            Err(Error::InvalidPath { .. })
        ));
        let prefixed = client("https://proxy.test/bao/");
        assert_eq!(
            Client::url(&prefixed.inner.nodes.node(0).api_base, "sys/health", &[])
                .expect("url")
                .as_str(),
            "https://proxy.test/bao/v1/sys/health"
        );
    }

    #[test]
    fn tls_material_on_plain_http_is_refused() {
        let cfg = ClientConfig::from_address("http://127.0.0.1:8200")
            .expect("cfg")
            .with_ca_pem(crate::test_support::self_signed().0);
        assert!(matches!(Client::new(cfg), Err(Error::Config { .. })));
    }

    #[test]
    fn token_header_is_sensitive_and_absent_when_unauthenticated() {
        let c = client("http://127.0.0.1:8200");
        c.set_token(SecretString::from("s.TOKEN"));
        let h = c.headers(true).expect("headers");
        let v = h.get("X-Vault-Token").expect("token header");
        assert!(v.is_sensitive());
        assert!(!format!("{h:?}").contains("s.TOKEN"));
        assert!(
            c.headers(false)
                .expect("headers")
                .get("X-Vault-Token")
                .is_none()
        );
        assert!(!format!("{c:?}").contains("s.TOKEN"));
        c.clear_token();
        assert!(!c.has_token());
        assert!(
            c.headers(true)
                .expect("headers")
                .get("X-Vault-Token")
                .is_none()
        );
    }

    #[test]
    fn identity_can_be_swapped() {
        let (cert, key) = crate::test_support::self_signed();
        let c = client("https://127.0.0.1:8200");
        let id = ClientIdentity::from_pem(cert, Zeroizing::new(key)).expect("id");
        c.set_identity(Some(id)).expect("swap");
        assert!(c.identity_present());
        c.set_identity(None).expect("swap back");
        assert!(!c.identity_present());
    }

    /// A CA with a server certificate for 127.0.0.1 it issued: (CA PEM, chain PEM, key PEM).
    fn server_pki(cn: &str) -> (String, String, String) {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().expect("keygen");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.distinguished_name.push(DnType::CommonName, cn);
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).expect("self-sign");
        let key = KeyPair::generate().expect("keygen");
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .expect("params")
            .signed_by(&key, &Issuer::new(ca, &ca_key))
            .expect("sign");
        (ca_cert.pem(), leaf.pem(), key.serialize_pem())
    }

    /// A loopback TLS server presenting `chain`, answering every request with a 404; its
    /// address.
    async fn tls_server(chain: String, key: String) -> String {
        use rustls_pki_types::pem::PemObject as _;
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let certs = rustls_pki_types::CertificateDer::pem_slice_iter(chain.as_bytes())
            .collect::<std::result::Result<Vec<_>, _>>()
            .expect("chain");
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
        let config = rustls::ServerConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = [0u8; 4096];
                    let _ = tls.read(&mut buf).await;
                    let body = r#"{"errors":[]}"#;
                    let head = format!(
                        "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(head.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        format!("https://{addr}")
    }

    /// Issue 14 (root rollover): a client re-anchored on a new CA bundle reaches a server whose
    /// chain moved to that root; a bundle that does not parse changes nothing.
    #[tokio::test]
    async fn issue_14_the_trust_anchors_can_be_swapped_and_never_dropped() {
        let (old_ca, _, _) = server_pki("Old Root");
        let (new_ca, chain, key) = server_pki("New Root");
        let address = tls_server(chain, key).await;
        let c = Client::new(
            ClientConfig::from_address(&address)
                .expect("cfg")
                .with_ca_pem(old_ca.clone().into_bytes())
                .with_retry(RetryPolicy::no_retries()),
        )
        .expect("client");
        let err = c
            .read("secret/x")
            .await
            .expect_err("anchored at the old root");
        assert!(matches!(err, Error::Tls { .. }), "{err}");
        // Not PEM, or no certificate: refused, the anchors stay.
        assert!(c.set_ca_pem(b"garbage").is_err());
        assert!(c.set_ca_pem(b"").is_err());
        let err = c.read("secret/x").await.expect_err("still the old root");
        assert!(matches!(err, Error::Tls { .. }), "{err}");
        // Both roots, then the new one alone: the server's chain verifies.
        c.set_ca_pem(format!("{old_ca}{new_ca}").as_bytes())
            .expect("both roots");
        let err = c.read("secret/x").await.expect_err("a 404");
        assert!(err.is_not_found(), "{err}");
        c.set_ca_pem(new_ca.as_bytes()).expect("the new root");
        let err = c.clone().read("secret/x").await.expect_err("a 404");
        assert!(err.is_not_found(), "{err}");
        // An identity set later keeps the new anchors.
        c.set_identity(None).expect("identity");
        assert!(c.read("secret/x").await.expect_err("a 404").is_not_found());
        c.set_ca_pem(old_ca.as_bytes())
            .expect("back to the old root");
        assert!(matches!(
            c.read("secret/x").await.expect_err("refused"),
            Error::Tls { .. }
        ));
    }
}
