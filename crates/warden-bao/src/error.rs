//! One error type for every call, so callers can branch on *what happened* (sealed, denied,
//! missing, unreachable, TLS) instead of parsing strings.
//!
//! Every variant carries the context an operator needs to act: the request path, the server
//! address, the HTTP status and OpenBao's own `errors[]` array.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Boxed source error: keeps `reqwest`/`hyper` types out of the public API.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong talking to OpenBao.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered 503 "Vault is sealed": it is running but cannot serve secrets until
    /// enough unseal keys are submitted (or auto-unseal succeeds). Retryable: an operator or
    /// auto-unseal may fix it.
    #[error(
        "OpenBao at {address} is sealed: unseal it (`bao operator unseal`) or check auto-unseal"
    )]
    Sealed {
        /// Server address the request went to.
        address: String,
    },

    /// The server has never been initialised (`sys/init`), so it has no keys and no root token.
    /// Not retryable: someone has to run init.
    #[error("OpenBao at {address} is not initialized: run init before using it")]
    NotInitialized {
        /// Server address the request went to.
        address: String,
    },

    /// A standby node that cannot serve the request now: it knows no active node to forward
    /// to (an election is in progress), or the operation runs on the active node only
    /// (OpenBao: 500 "local node not active but active cluster node not found", 503 "no
    /// active Vault instance found" / "node is not active", 400 "Vault is in standby mode").
    /// The node did not act on the request. Retryable: an election ends within seconds.
    #[error(
        "OpenBao at {address} is a standby that cannot serve this now{}",
        fmt_errors(errors)
    )]
    NotActive {
        /// Server address the request went to.
        address: String,
        /// OpenBao's `errors[]`.
        errors: Vec<String>,
    },

    /// A client with several node addresses tried each of them in one round and none could
    /// serve the request; one entry per node, in the order tried. See
    /// [`crate::Client`]'s failover contract.
    #[error("{}", crate::failover::describe(failures))]
    AllNodesFailed {
        /// What each node answered (or why it could not be reached).
        failures: Vec<crate::NodeFailure>,
    },

    /// 403: the token lacks a policy granting this path (or the token is invalid/expired:
    /// OpenBao does not distinguish the two).
    #[error(
        "permission denied on {path}{}: check the token's policies or log in again",
        fmt_errors(errors)
    )]
    PermissionDenied {
        /// Request path, relative to `/v1/`.
        path: String,
        /// OpenBao's `errors[]`.
        errors: Vec<String>,
    },

    /// 404 without any data: nothing stored at the path. When `errors` is non-empty the route
    /// itself does not exist (e.g. "no handler for route": the mount is missing).
    #[error("nothing found at {path}{}", fmt_errors(errors))]
    NotFound {
        /// Request path, relative to `/v1/`.
        path: String,
        /// OpenBao's `errors[]` and `warnings[]`; empty for a plain miss.
        errors: Vec<String>,
    },

    /// 400: the request was understood but refused. Note that OpenBao returns 400 (not 403)
    /// for a cert-auth login whose role constraints do not match the presented certificate.
    #[error("OpenBao rejected the request to {path}{}", fmt_errors(errors))]
    BadRequest {
        /// Request path, relative to `/v1/`.
        path: String,
        /// OpenBao's `errors[]`.
        errors: Vec<String>,
    },

    /// Any other non-success status (5xx, 429 rate limit/standby, 412, a 3xx redirect that we
    /// refuse to follow...).
    #[error("OpenBao answered HTTP {status} for {path}{}", fmt_errors(errors))]
    Server {
        /// HTTP status code.
        status: u16,
        /// Request path, relative to `/v1/`.
        path: String,
        /// OpenBao's `errors[]` (or the start of a non-JSON body).
        errors: Vec<String>,
    },

    /// No connection could be made: connection refused, connect timeout, DNS failure. The
    /// request never reached the server, so even non-idempotent calls may be retried.
    #[error(
        "cannot reach OpenBao at {address}: {}; is the server running and the address right?",
        root_cause(source.as_ref())
    )]
    Unreachable {
        /// Server address.
        address: String,
        /// Underlying transport error.
        #[source]
        source: BoxError,
    },

    /// The TLS handshake failed; [`TlsFailure`] says whose certificate was refused and why.
    #[error("TLS with OpenBao at {address} failed: {failure}")]
    Tls {
        /// Server address.
        address: String,
        /// Which side refused which certificate.
        failure: TlsFailure,
    },

    /// The request was sent but no complete response arrived within `request_timeout`.
    #[error("request to {path} timed out after {after:?}")]
    Timeout {
        /// Request path, relative to `/v1/`.
        path: String,
        /// The configured request timeout.
        after: Duration,
    },

    /// A transport failure after the connection was made that is neither TLS nor a timeout
    /// (e.g. the connection was reset mid-response, a malformed HTTP frame). The request may
    /// or may not have been processed, so only idempotent calls retry it.
    #[error("HTTP exchange with OpenBao for {path} failed: {}", root_cause(source.as_ref()))]
    Transport {
        /// Request path, relative to `/v1/`.
        path: String,
        /// Underlying transport error.
        #[source]
        source: BoxError,
    },

    /// A request body could not be serialised (a caller-supplied map with non-string keys...).
    #[error("cannot encode the request body for {path}: {source}")]
    Encode {
        /// Request path, relative to `/v1/`.
        path: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },

    /// The server answered success but the body did not have the expected shape.
    #[error("unexpected response body from {path}: {source}")]
    Decode {
        /// Request path, relative to `/v1/`.
        path: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },

    /// The answer was larger than any answer Warden reads ([`crate::MAX_RESPONSE_BYTES`]): a
    /// misbehaving server or proxy, or a listing grown past what one request should carry.
    /// Refused before it is held whole, never retried.
    #[error(
        "OpenBao at {address} answered {path} with success but more than {}; Warden stopped reading there instead of holding it (a proxy or server misbehaving, or a listing that has outgrown one request; a write it answered was applied)",
        fmt_bytes(*limit)
    )]
    TooLarge {
        /// Request path, relative to `/v1/`.
        path: String,
        /// The node that answered.
        address: String,
        /// The limit, in bytes.
        limit: u64,
    },

    /// A request path that would not stay under `/v1/` or is ambiguous (`..`, `.`, empty).
    /// A caller bug, never retried.
    #[error("invalid request path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The client configuration is unusable (bad address, bad PEM, key not matching the
    /// certificate, unsupported environment variable...). `what` names the setting.
    #[error("invalid OpenBao client configuration: {what}")]
    Config {
        /// Which setting is wrong, and why.
        what: String,
    },

    /// A file named in the configuration (CA bundle, client certificate or key) could not be
    /// read: it is missing or unreadable, or it is not a regular file of at most
    /// [`crate::PEM_FILE_LIMIT`] bytes (a FIFO, a device such as `/dev/zero`, a directory, an
    /// oversized file), which is refused at once rather than waited on or read without end.
    #[error("cannot read the {what} {path}: {source}{}", refusal_advice(source))]
    ReadFile {
        /// What the file should hold: "CA bundle", "client certificate" or "client key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A retried call kept failing with a retryable error until its time budget ran out.
    /// `last` is the final failure; the `is_*` helpers look through to it.
    #[error("{what}: gave up after {attempts} attempts in {}; last error: {last}", crate::format_wait(*.waited))]
    GaveUp {
        /// What was being attempted (e.g. "wait_ready", "GET secret/data/x").
        what: String,
        /// How many requests were sent (or attempted).
        attempts: u32,
        /// How long it kept trying.
        waited: Duration,
        /// The last error seen.
        #[source]
        last: Box<Self>,
    },
}

/// What to do about a file [`warden_files::read_regular`] refused (its `InvalidInput`: not a
/// regular file, or over the limit); nothing for a missing or unreadable file, whose own
/// message says it all.
fn refusal_advice(source: &std::io::Error) -> &'static str {
    if source.kind() == std::io::ErrorKind::InvalidInput {
        "; name a regular PEM file instead (a FIFO, a device or a directory is never read)"
    } else {
        ""
    }
}

/// The innermost error's message: "Connection refused (os error 111)" says more than
/// reqwest's "error sending request for url (...)".
pub(crate) fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

fn fmt_errors(errors: &[String]) -> String {
    if errors.is_empty() {
        String::new()
    } else {
        format!(": {}", errors.join("; "))
    }
}

impl Error {
    /// The underlying error: for [`Error::GaveUp`] the last failure, otherwise `self`.
    pub fn root(&self) -> &Self {
        match self {
            Self::GaveUp { last, .. } => last.root(),
            other => other,
        }
    }

    /// Whether trying again later may succeed without anyone changing the request:
    /// unreachable server, sealed server, a standby without an active node, request timeout,
    /// a connection broken mid-exchange, and HTTP 412/429/502/503/504 (standby, rate limit,
    /// proxy errors); for [`Error::AllNodesFailed`], when any node's failure is. A plain 500
    /// is not retried: OpenBao uses it for deterministic failures (bad plugin config...) where
    /// retrying only adds load.
    pub fn is_retryable(&self) -> bool {
        match self.root() {
            Self::AllNodesFailed { failures } => failures.iter().any(|f| f.error.is_retryable()),
            Self::Unreachable { .. }
            | Self::Sealed { .. }
            | Self::NotActive { .. }
            | Self::Timeout { .. }
            | Self::Transport { .. } => true,
            Self::Server { status, .. } => matches!(status, 412 | 429 | 502 | 503 | 504),
            // A KV v2 mount enabled a moment ago upgrades its storage first and refuses every
            // request meanwhile ("... will resume service shortly"): refused without effect,
            // and over within milliseconds. Seen when apply writes its ownership record right
            // after creating Warden's own mount.
            Self::BadRequest { errors, .. } => errors.iter().any(|m| m.contains(KV_UPGRADING)),
            _ => false,
        }
    }

    /// Whether the request certainly never reached the server (no connection was made; for
    /// [`Error::AllNodesFailed`], to no node).
    pub fn request_not_sent(&self) -> bool {
        self.every(|e| matches!(e, Self::Unreachable { .. }))
    }

    /// Whether no server acted on the request, so even a non-idempotent call may be sent
    /// again (to the same node or another): it was never sent, the TLS handshake failed, or
    /// the node refused it outright because it is sealed, not initialised, or a standby
    /// without an active node. A timeout or a connection broken mid-exchange is not such a
    /// proof: the request may have been applied and only the answer lost.
    pub fn not_applied(&self) -> bool {
        self.every(|e| {
            matches!(
                e,
                Self::Unreachable { .. }
                    | Self::Tls { .. }
                    | Self::Sealed { .. }
                    | Self::NotInitialized { .. }
                    | Self::NotActive { .. }
            )
        })
    }

    /// `test` of the underlying error, or of every node's failure for
    /// [`Error::AllNodesFailed`] (so "sealed" means every node was sealed).
    fn every(&self, test: impl Fn(&Self) -> bool) -> bool {
        self.every_dyn(&test)
    }

    fn every_dyn(&self, test: &dyn Fn(&Self) -> bool) -> bool {
        match self.root() {
            Self::AllNodesFailed { failures } => failures.iter().all(|f| f.error.every_dyn(test)),
            other => test(other),
        }
    }

    /// The server is sealed (every node, for a client with several).
    pub fn is_sealed(&self) -> bool {
        self.every(|e| matches!(e, Self::Sealed { .. }))
    }

    /// The server is not initialised (every node, for a client with several).
    pub fn is_not_initialized(&self) -> bool {
        self.every(|e| matches!(e, Self::NotInitialized { .. }))
    }

    /// 404 with no data.
    pub fn is_not_found(&self) -> bool {
        matches!(self.root(), Self::NotFound { .. })
    }

    /// OpenBao's answer under a path where no backend is mounted: 400/404/405 saying "no
    /// handler for route" or "unsupported path". For a reader, nothing is there (yet).
    pub fn is_unmounted(&self) -> bool {
        matches!(self.status(), Some(400 | 404 | 405))
            && self
                .server_errors()
                .iter()
                .any(|m| m.contains("no handler for route") || m.contains("unsupported path"))
    }

    /// 403.
    pub fn is_permission_denied(&self) -> bool {
        matches!(self.root(), Self::PermissionDenied { .. })
    }

    /// No connection could be made (to any node, for a client with several).
    pub fn is_unreachable(&self) -> bool {
        self.every(|e| matches!(e, Self::Unreachable { .. }))
    }

    /// The server demanded a client certificate and none was configured (with every node).
    pub fn is_client_certificate_missing(&self) -> bool {
        self.every(|e| {
            matches!(
                e,
                Self::Tls {
                    failure: TlsFailure::ClientCertificateRejected {
                        presented: false,
                        ..
                    },
                    ..
                }
            )
        })
    }

    /// The TLS handshake failed (with every node, for a client with several).
    pub fn is_tls(&self) -> bool {
        self.every(|e| matches!(e, Self::Tls { .. }))
    }

    /// The HTTP status OpenBao answered with, if the failure was an HTTP answer.
    pub fn status(&self) -> Option<u16> {
        match self.root() {
            Self::Sealed { .. } => Some(503),
            Self::PermissionDenied { .. } => Some(403),
            Self::NotFound { .. } => Some(404),
            Self::BadRequest { .. } => Some(400),
            Self::Server { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// OpenBao's `errors[]` for HTTP failures (empty otherwise).
    pub fn server_errors(&self) -> &[String] {
        match self.root() {
            Self::PermissionDenied { errors, .. }
            | Self::NotActive { errors, .. }
            | Self::NotFound { errors, .. }
            | Self::BadRequest { errors, .. }
            | Self::Server { errors, .. } => errors,
            _ => &[],
        }
    }

    pub(crate) fn config(what: impl Into<String>) -> Self {
        Self::Config { what: what.into() }
    }

    /// Map a non-success HTTP answer to a typed error. Pure, so it is unit-tested directly.
    pub(crate) fn from_status(status: u16, path: &str, address: &str, body: &[u8]) -> Self {
        let errors = body_errors(body);
        let mentions = |needle: &str| {
            errors
                .iter()
                .any(|e| e.to_ascii_lowercase().contains(needle))
        };
        let path = path.to_owned();
        // A standby's refusals (internal/http/handler.go `forwardRequest`, `respondStandby`;
        // consts.ErrStandby): the node did nothing, another node may serve it.
        if mentions("active cluster node not found")
            || mentions("no active vault instance found")
            || mentions("node is not active")
            || mentions("is in standby mode")
        {
            return Self::NotActive {
                address: address.to_owned(),
                errors,
            };
        }
        match status {
            400 if mentions("not initialized") => Self::NotInitialized {
                address: address.to_owned(),
            },
            400 => Self::BadRequest { path, errors },
            403 => Self::PermissionDenied { path, errors },
            404 => Self::NotFound { path, errors },
            503 if mentions("is sealed") => Self::Sealed {
                address: address.to_owned(),
            },
            _ => Self::Server {
                status,
                path,
                errors,
            },
        }
    }
}

/// Pull `errors[]` (and `warnings[]`, which is where OpenBao explains some 404s) out of an
/// error body. A non-JSON body (from a proxy, say) is kept as its first 200 characters.
fn body_errors(body: &[u8]) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        #[serde(default)]
        errors: Option<Vec<String>>,
        #[serde(default)]
        warnings: Option<Vec<String>>,
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => {
            let mut all = b.errors.unwrap_or_default();
            all.extend(b.warnings.unwrap_or_default());
            all
        }
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                Vec::new()
            } else {
                vec![text.chars().take(200).collect()]
            }
        }
    }
}

/// Which side of the TLS handshake refused which certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsFailure {
    /// *We* refused the server's certificate. `subject`/`issuer` describe the server's leaf
    /// certificate (when it could be parsed), so the operator knows which certificate to fix.
    ServerCertificate {
        /// Subject DN of the server's leaf certificate.
        subject: Option<String>,
        /// Issuer DN of the server's leaf certificate.
        issuer: Option<String>,
        /// Why it was refused.
        reason: CertProblem,
    },
    /// *The server* refused our client certificate, or demanded one we did not send
    /// (TLS alerts `certificate_required`, `bad_certificate`, `unknown_ca`, ...).
    ClientCertificateRejected {
        /// The TLS alert the server sent, e.g. "CertificateRequired".
        alert: String,
        /// Whether we had a client certificate configured at all.
        presented: bool,
    },
    /// Any other handshake failure (no common protocol version or cipher suite, malformed
    /// messages, a plain-HTTP server on an `https://` address...).
    Handshake {
        /// The TLS library's description.
        detail: String,
    },
}

/// Why the server's certificate failed our verification.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertProblem {
    /// The chain does not lead to any CA we trust (wrong or missing CA bundle).
    UnknownIssuer,
    /// The certificate has expired.
    Expired,
    /// The certificate is not valid yet (clock skew, or issued for the future).
    NotYetValid,
    /// The certificate does not name the host we connected to.
    NameMismatch {
        /// The host name or IP we expected.
        expected: String,
        /// The names in the certificate.
        presented: Vec<String>,
    },
    /// The certificate has been revoked.
    Revoked,
    /// A signature in the chain does not verify.
    BadSignature,
    /// The certificate is not allowed for TLS server authentication (extended key usage).
    WrongPurpose,
    /// Anything else the verifier reported.
    Other(String),
}

impl fmt::Display for CertProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownIssuer => f.write_str("unknown issuer"),
            Self::Expired => f.write_str("expired"),
            Self::NotYetValid => f.write_str("not valid yet"),
            Self::NameMismatch {
                expected,
                presented,
            } => write!(
                f,
                "name mismatch (expected {expected}, certificate names {})",
                presented.join(", ")
            ),
            Self::Revoked => f.write_str("revoked"),
            Self::BadSignature => f.write_str("bad signature"),
            Self::WrongPurpose => f.write_str("not valid for TLS server authentication"),
            Self::Other(d) => f.write_str(d),
        }
    }
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ServerCertificate {
                subject,
                issuer,
                reason,
            } => {
                let subject = subject.as_deref().unwrap_or("<unparsable>");
                let issuer = issuer.as_deref().unwrap_or("<unparsable>");
                write!(
                    f,
                    "the server certificate (subject \"{subject}\", issuer \"{issuer}\") failed verification: {reason}"
                )?;
                match reason {
                    CertProblem::UnknownIssuer => f.write_str(
                        "; configure the CA that signed it (ca_cert / VAULT_CACERT / BAO_CACERT)",
                    ),
                    CertProblem::NameMismatch { .. } => {
                        f.write_str("; connect using a name the certificate lists")
                    }
                    CertProblem::Expired | CertProblem::NotYetValid => {
                        f.write_str("; renew the server certificate or check the clocks")
                    }
                    _ => Ok(()),
                }
            }
            Self::ClientCertificateRejected { alert, presented } => {
                if *presented {
                    write!(
                        f,
                        "the server rejected our client certificate (alert {alert}); check it is signed by a CA the listener trusts and is not expired"
                    )
                } else {
                    write!(
                        f,
                        "the server requires a client certificate (alert {alert}) and none is configured; set client_cert/client_key (VAULT_CLIENT_CERT/VAULT_CLIENT_KEY)"
                    )
                }
            }
            Self::Handshake { detail } => write!(f, "handshake failed: {detail}"),
        }
    }
}

/// The start of OpenBao's answer while a new KV v2 mount upgrades its storage.
const KV_UPGRADING: &str = "Upgrading from non-versioned to versioned data";

/// `n` bytes for a message: MiB when it is a whole number of them, bytes otherwise.
fn fmt_bytes(n: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDR: &str = "http://127.0.0.1:8200";

    #[test]
    fn sealed_503_is_typed_and_retryable() {
        let e = Error::from_status(503, "secret/x", ADDR, br#"{"errors":["Vault is sealed"]}"#);
        assert!(
            matches!(&e, Error::Sealed { address } if address == ADDR),
            "{e:?}"
        );
        assert!(e.is_sealed());
        assert!(e.is_retryable());
        assert!(!e.request_not_sent());
    }

    #[test]
    fn a_kv_mount_upgrading_is_retryable_other_400s_are_not() {
        let upgrading = Error::from_status(
            400,
            "warden/data/owned",
            ADDR,
            br#"{"errors":["Upgrading from non-versioned to versioned data. This backend will be unavailable for a brief period and will resume service shortly."]}"#,
        );
        assert!(
            matches!(&upgrading, Error::BadRequest { .. }),
            "{upgrading:?}"
        );
        assert!(upgrading.is_retryable());
        let refused = Error::from_status(400, "secret/data/x", ADDR, br#"{"errors":["bad"]}"#);
        assert!(!refused.is_retryable());
    }

    #[test]
    fn other_503_is_server_and_retryable() {
        let e = Error::from_status(503, "sys/x", ADDR, br#"{"errors":["standby"]}"#);
        assert!(matches!(&e, Error::Server { status: 503, .. }), "{e:?}");
        assert!(e.is_retryable());
    }

    #[test]
    fn forbidden_carries_path_and_errors() {
        let e = Error::from_status(
            403,
            "secret/data/x",
            ADDR,
            br#"{"errors":["permission denied"]}"#,
        );
        match &e {
            Error::PermissionDenied { path, errors } => {
                assert_eq!(path, "secret/data/x");
                assert_eq!(errors, &["permission denied".to_owned()]);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(!e.is_retryable());
        assert_eq!(e.status(), Some(403));
        assert!(e.to_string().contains("secret/data/x"));
    }

    #[test]
    fn not_found_keeps_warnings_and_route_errors() {
        let plain = Error::from_status(404, "secret/data/x", ADDR, br#"{"errors":[]}"#);
        assert!(matches!(&plain, Error::NotFound { errors, .. } if errors.is_empty()));
        let route = Error::from_status(
            404,
            "nomount/x",
            ADDR,
            br#"{"errors":["no handler for route \"nomount/x\". route entry not found."]}"#,
        );
        assert!(route.is_not_found());
        assert_eq!(route.server_errors().len(), 1);
        let warned = Error::from_status(
            404,
            "secret/x",
            ADDR,
            br#"{"data":null,"warnings":["Invalid path for a versioned K/V secrets engine."]}"#,
        );
        assert!(warned.server_errors()[0].contains("versioned"));
    }

    #[test]
    fn bad_request_and_not_initialized() {
        let e = Error::from_status(
            400,
            "auth/cert/login",
            ADDR,
            br#"{"errors":["invalid certificate or no client certificate supplied"]}"#,
        );
        assert!(matches!(e, Error::BadRequest { .. }));
        let e = Error::from_status(
            400,
            "sys/unseal",
            ADDR,
            br#"{"errors":["Vault is not initialized"]}"#,
        );
        assert!(e.is_not_initialized());
    }

    #[test]
    fn retryable_statuses() {
        for (status, retry) in [
            (429, true),
            (412, true),
            (502, true),
            (504, true),
            (500, false),
            (501, false),
            (307, false),
        ] {
            let e = Error::from_status(status, "p", ADDR, b"");
            assert_eq!(e.is_retryable(), retry, "status {status}");
            assert_eq!(e.status(), Some(status));
        }
    }

    #[test]
    fn non_json_body_is_kept_short() {
        let body = "x".repeat(1000);
        let e = Error::from_status(502, "p", ADDR, body.as_bytes());
        assert_eq!(e.server_errors()[0].len(), 200);
    }

    #[test]
    fn unreachable_shows_the_root_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        #[derive(Debug, thiserror::Error)]
        #[error("error sending request")]
        struct Wrapper(#[source] std::io::Error);
        let e = Error::Unreachable {
            address: ADDR.into(),
            source: Box::new(Wrapper(io)),
        };
        let text = e.to_string();
        assert!(
            text.contains("Connection refused") && text.contains(ADDR),
            "{text}"
        );
        assert!(e.request_not_sent() && e.is_retryable());
    }

    #[test]
    fn gave_up_looks_through_to_last() {
        let e = Error::GaveUp {
            what: "GET secret/x".into(),
            attempts: 3,
            waited: Duration::from_secs(1),
            last: Box::new(Error::Sealed {
                address: ADDR.into(),
            }),
        };
        assert!(e.is_sealed());
        assert!(e.is_retryable());
        assert!(e.to_string().contains("3 attempts"));
    }

    #[test]
    fn tls_messages_say_what_to_do() {
        let f = TlsFailure::ServerCertificate {
            subject: Some("CN=vm".into()),
            issuer: Some("CN=Vault Dev CA".into()),
            reason: CertProblem::UnknownIssuer,
        };
        let s = f.to_string();
        assert!(
            s.contains("CN=vm") && s.contains("unknown issuer") && s.contains("VAULT_CACERT"),
            "{s}"
        );
        let f = TlsFailure::ClientCertificateRejected {
            alert: "CertificateRequired".into(),
            presented: false,
        };
        assert!(f.to_string().contains("none is configured"));
    }
}
