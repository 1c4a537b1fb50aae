//! Logging in, keeping the token alive, and renewing the mTLS identity.
//!
//! * **Login** with the identity's own credential: cert auth over the mTLS connection (the TLS
//!   identity *is* the credential), AppRole (a role-id file plus a secret-id file, which may
//!   hold a response-wrapping token that is unwrapped once; the secret-id then lives only in
//!   memory, for re-login, and its file is removed), or JWT (the token file is read afresh at
//!   every login, because whoever writes it rotates it). After a login the token's policies
//!   are compared with `[auth] policy`; a difference is logged, not fatal (the server decides
//!   what the token may do, the check only makes drift visible).
//! * **Renewal** at 2/3 of the token's TTL with `renew-self`. When the server grants less than a
//!   third of the original TTL (the token is near its `max_ttl`), or refuses the renewal (the
//!   token was revoked), the agent logs in again. A renewal that fails because the server is
//!   sealed or unreachable is retried with backoff until the token's own expiry.
//! * **The mTLS identity** is renewed like a certificate output — at the renewal point of its
//!   lifetime — through `<pki_mount>/sign/<identity_role>` with a key generated here, checked
//!   (key matches, pinned CN, chain to the trust anchor), written key then certificate, and put
//!   into use at once with `Client::set_identity`. Both files are first staged as
//!   `<file>.next`, so a crash between the two writes is repaired at the next start instead of
//!   leaving a key that does not fit its certificate.
//!
//! Files: this one logs in and keeps the token; `identity` renews the mTLS identity; `task` is
//! the loop that drives both.
//!
//! Logins go through a second client that never carries a token: a revoked token sent to a
//! login endpoint would be refused before the credential is even looked at.

mod identity;
mod task;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use warden_bao::{Client, ClientConfig, ClientIdentity, Idempotent, RetryPolicy};
use zeroize::{Zeroize, Zeroizing};

use crate::board::Shared;
use crate::config::{AuthConfig, AuthMethod};
use crate::output::RenderError;

/// Per-request timeout of the agent's client. Short enough that a hung server is noticed, long
/// enough for an RSA sign on a busy server.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Why logging in, renewing or rotating the identity failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A credential file (role-id, secret-id, JWT, TLS identity) could not be read.
    #[error("could not read the {what} file {path}: {source}")]
    Credential {
        /// Which credential.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The secret-id file is gone (it is removed once read) and no secret-id is in memory: this
    /// process never read one, or it was lost with a restart.
    #[error(
        "no AppRole secret-id: {path} does not exist (it is removed after it is read) and none is held in memory"
    )]
    SecretIdGone {
        /// The secret-id file.
        path: PathBuf,
    },
    /// Unwrapping the wrapped secret-id failed (expired or already used wrapping token, or the
    /// server is unavailable).
    #[error("could not unwrap the secret-id from {path}: {source}")]
    Unwrap {
        /// The file that held the wrapping token.
        path: PathBuf,
        /// OpenBao's answer.
        #[source]
        source: Box<warden_bao::Error>,
    },
    /// A wrapped response did not contain a secret-id.
    #[error("the wrapping token in {path} did not wrap an AppRole secret-id")]
    NotASecretId {
        /// The file.
        path: PathBuf,
    },
    /// The login request failed.
    #[error("login with {method} at auth/{mount} failed: {source}")]
    Login {
        /// `cert`, `approle`, `jwt`.
        method: &'static str,
        /// The auth mount.
        mount: String,
        /// OpenBao's answer.
        #[source]
        source: Box<warden_bao::Error>,
    },
    /// The listener demands a client certificate and this AppRole or JWT agent presents none:
    /// a container or CI job presents its host's or runner's transport certificate (ADR 0010).
    #[error(
        "{what}: the server requires a client certificate and this {method} agent has none; a container or CI job presents its host's or runner's transport certificate: `warden transport issue --env ENV --holder HOST --out DIR` writes one, then set [auth] cert_file = \"DIR/cert.pem\" and key_file = \"DIR/key.pem\" (docs/agent.md, \"Transport certificate\")"
    )]
    NoTransport {
        /// "login", "unwrapping the secret-id".
        what: &'static str,
        /// `approle` or `jwt`.
        method: &'static str,
    },
    /// Renewing or looking up the token failed.
    #[error("{what} failed: {source}")]
    Token {
        /// "renew-self", "lookup-self".
        what: &'static str,
        /// OpenBao's answer.
        #[source]
        source: Box<warden_bao::Error>,
    },
    /// Renewing the mTLS identity failed before anything was written.
    #[error("renewing the mTLS identity failed: {source}")]
    IdentitySign {
        /// What went wrong.
        #[source]
        source: Box<RenderError>,
    },
    /// The identity files on disk (or a newly issued identity) are not usable.
    #[error("the mTLS identity ({cert}) is not usable: {reason}")]
    Identity {
        /// The certificate file.
        cert: PathBuf,
        /// Why.
        reason: String,
    },
    /// Writing the renewed identity failed; the previous one is still in place and in use.
    #[error("could not write the renewed mTLS identity: {source}")]
    IdentityWrite {
        /// The write error.
        #[source]
        source: warden_files::Error,
    },
    /// This host's clock is too far from the server's: no identity certificate is issued
    /// until it is fixed (a new one would look expired or not yet valid here).
    #[error("{}", crate::board::skew_message(*skew))]
    ClockSkew {
        /// This host's clock minus the server's.
        skew: time::Duration,
    },
    /// The agent's HTTP client could not be (re)built.
    #[error("could not build the OpenBao client: {source}")]
    Client {
        /// Why.
        #[source]
        source: Box<warden_bao::Error>,
    },
}

impl AuthError {
    /// Whether waiting may fix it (sealed, unreachable, 5xx) rather than needing a human.
    pub fn is_transient(&self) -> bool {
        let bao = match self {
            Self::Login { source, .. }
            | Self::Token { source, .. }
            | Self::Unwrap { source, .. } => source,
            Self::IdentitySign { source } => return source.is_transient(),
            Self::IdentityWrite { source } => return source.is_disk_full(),
            Self::ClockSkew { .. } => return true,
            _ => return false,
        };
        bao.is_retryable() || bao.is_sealed() || bao.is_unreachable()
    }

    /// Whether the token itself was refused (revoked or expired): log in again.
    pub fn token_refused(&self) -> bool {
        matches!(self, Self::Token { source, .. } if source.is_permission_denied() || source.status() == Some(400))
    }
}

// Plain data the board records; they live there so the board imports no task.
pub use crate::board::{IdentityCert, TokenGrant};

/// The login machinery of one agent. Shared by the auth task and `--once`.
pub(crate) struct Authenticator {
    cfg: AuthConfig,
    identity_cn: String,
    /// Address, CA and timeouts: the template for the login and unwrap clients.
    base: ClientConfig,
    /// The TLS identity in use (replaced on rotation).
    tls: Mutex<Option<ClientIdentity>>,
    /// The shared client (outputs use it; the token is set here).
    client: Client,
    /// The token-less client used for logins.
    login_client: Client,
    /// AppRole: the secret-id once read, for re-login.
    secret_id: Mutex<Option<SecretString>>,
    trust: Arc<crate::trust::TrustFile>,
    /// An identity issued whose check or write failed, installed at the next attempt.
    held: Mutex<Option<identity::Issued>>,
}

impl Authenticator {
    /// Builds the shared client and the login client. `base` carries address and CA;
    /// `identity` is the TLS identity loaded at start.
    pub(crate) fn new(
        cfg: AuthConfig,
        identity_cn: String,
        base: ClientConfig,
        identity: Option<ClientIdentity>,
        trust: Arc<crate::trust::TrustFile>,
    ) -> Result<Self, AuthError> {
        let base = base
            .with_retry(RetryPolicy::no_retries())
            .with_request_timeout(REQUEST_TIMEOUT);
        let build = |id: Option<&ClientIdentity>| {
            let mut c = base.clone();
            if let Some(id) = id {
                c = c.with_client_identity(id.clone());
            }
            Client::new(c).map_err(|source| AuthError::Client {
                source: Box::new(source),
            })
        };
        let client = build(identity.as_ref())?;
        let login_client = build(identity.as_ref())?;
        // Both follow the trust file from now on (a root rollover moves the listener's chain).
        trust.anchor(client.clone());
        trust.anchor(login_client.clone());
        Ok(Self {
            cfg,
            identity_cn,
            base,
            tls: Mutex::new(identity),
            client,
            login_client,
            secret_id: Mutex::new(None),
            trust,
            held: Mutex::new(None),
        })
    }

    /// The shared client.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Logs in and sets the new token on the shared client.
    pub(crate) async fn login(&self, shared: &Shared) -> Result<TokenGrant, AuthError> {
        // The trust file is re-read first, so the clients are re-anchored on its text as it is
        // now: before the first login nothing else reads it (the delivery report waits for a
        // token), and an agent whose connection cannot verify the listener (started with a
        // trust file holding only the old root after the listener moved) would otherwise retry
        // on the same anchors until restarted, however the trust file is fixed.
        self.trust.pem();
        let method = self.cfg.method.as_str();
        let mount = self.cfg.mount.clone();
        let path = format!("auth/{mount}/login");
        let auth = self.login_request(shared, &path, &mount).await;
        // Logins go through their own client: its answer tells the server's time too.
        shared.observe_date(&self.login_client);
        let auth = auth?;
        self.client.set_token(auth.client_token.clone());
        let mut policies = auth.policies.clone();
        policies.sort();
        policies.dedup();
        if policies != [self.cfg.policy.clone()] {
            tracing::warn!(
                expected = %self.cfg.policy,
                got = %policies.join(", "),
                "the token's policies are not exactly the configured policy"
            );
        }
        tracing::info!(method, mount = %self.cfg.mount, ttl_s = auth.lease_duration, "logged in");
        Ok(TokenGrant {
            ttl: auth.ttl(),
            renewable: auth.renewable,
            policies,
        })
    }

    async fn login_request(
        &self,
        shared: &Shared,
        path: &str,
        mount: &str,
    ) -> Result<warden_bao::Auth, AuthError> {
        let method = self.cfg.method.as_str();
        let login_err = |source: warden_bao::Error| {
            if source.is_client_certificate_missing() {
                return AuthError::NoTransport {
                    what: "login",
                    method,
                };
            }
            AuthError::Login {
                method,
                mount: mount.to_owned(),
                source: Box::new(source),
            }
        };
        let auth = match &self.cfg.method {
            AuthMethod::Cert { role } => {
                shared.count_request();
                self.login_client
                    .login_cert(mount, Some(role))
                    .await
                    .map_err(login_err)?
            }
            AuthMethod::AppRole {
                role_id_file,
                secret_id_file,
                secret_id_wrapped,
            } => {
                let role_id = read_secret_file("role-id", role_id_file)?;
                let secret_id = self
                    .secret_id(shared, secret_id_file, *secret_id_wrapped)
                    .await?;
                let body = WipeOnDrop(json!({
                    "role_id": role_id.expose_secret(),
                    "secret_id": secret_id.expose_secret(),
                }));
                shared.count_request();
                login_auth(&self.login_client, path, &body.0)
                    .await
                    .map_err(login_err)?
            }
            AuthMethod::Jwt { role, token_file } => {
                let jwt = read_secret_file("JWT", token_file)?;
                let body = WipeOnDrop(json!({ "role": role, "jwt": jwt.expose_secret() }));
                shared.count_request();
                login_auth(&self.login_client, path, &body.0)
                    .await
                    .map_err(login_err)?
            }
        };
        Ok(auth)
    }

    /// Whether `policies` are exactly the configured policy.
    pub(crate) fn policies_ok(&self, policies: &[String]) -> bool {
        policies == [self.cfg.policy.clone()]
    }

    /// Renews the current token.
    pub(crate) async fn renew(&self, shared: &Shared) -> Result<TokenGrant, AuthError> {
        shared.count_request();
        let auth = self
            .client
            .token_renew_self(None)
            .await
            .map_err(|source| AuthError::Token {
                what: "renew-self",
                source: Box::new(source),
            })?;
        let mut policies = auth.policies.clone();
        policies.sort();
        policies.dedup();
        Ok(TokenGrant {
            ttl: auth.ttl(),
            renewable: auth.renewable,
            policies,
        })
    }

    /// Checks the current token is still accepted.
    pub(crate) async fn lookup(&self, shared: &Shared) -> Result<(), AuthError> {
        shared.count_request();
        self.client
            .token_lookup_self()
            .await
            .map(drop)
            .map_err(|source| AuthError::Token {
                what: "lookup-self",
                source: Box::new(source),
            })
    }

    /// Revokes the token (clean shutdown). Best effort, bounded in time.
    pub(crate) async fn revoke(&self, shared: &Shared) {
        if !self.client.has_token() {
            return;
        }
        shared.count_request();
        match tokio::time::timeout(Duration::from_secs(3), self.client.token_revoke_self()).await {
            Ok(Ok(())) => tracing::info!("token revoked"),
            Ok(Err(e)) => tracing::debug!(error = %e, "could not revoke the token"),
            Err(_) => tracing::debug!("revoking the token timed out"),
        }
        self.client.clear_token();
    }

    /// The secret-id: from memory, else from the file (unwrapped if needed), which is then
    /// removed.
    async fn secret_id(
        &self,
        shared: &Shared,
        path: &Path,
        wrapped: bool,
    ) -> Result<SecretString, AuthError> {
        if let Some(s) = self
            .secret_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Ok(s);
        }
        let content = match read_secret_file("secret-id", path) {
            Ok(c) => c,
            Err(AuthError::Credential { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(AuthError::SecretIdGone {
                    path: path.to_path_buf(),
                });
            }
            Err(e) => return Err(e),
        };
        let secret_id = if wrapped {
            self.unwrap_secret_id(shared, path, content).await?
        } else {
            content
        };
        *self
            .secret_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(secret_id.clone());
        // Single delivery: once in memory, the file has no further use and would only be a
        // credential left lying around.
        if let Err(e) = remove_credential(path) {
            tracing::warn!(path = %path.display(), error = %e, "could not remove the secret-id file after reading it");
        }
        Ok(secret_id)
    }

    /// `POST sys/wrapping/unwrap` with the wrapping token as the request token.
    async fn unwrap_secret_id(
        &self,
        shared: &Shared,
        path: &Path,
        wrapping_token: SecretString,
    ) -> Result<SecretString, AuthError> {
        let mut cfg = self.base.clone().with_token(wrapping_token);
        // The anchors the shared client trusts now, not the file as it was at start.
        if let Some(pem) = self.trust.connection_pem() {
            cfg = cfg.with_ca_pem(pem.into_bytes());
        }
        if let Some(id) = self
            .tls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            cfg = cfg.with_client_identity(id);
        }
        let client = Client::new(cfg).map_err(|source| AuthError::Client {
            source: Box::new(source),
        })?;
        shared.count_request();
        let secret = client
            .write("sys/wrapping/unwrap", &json!({}), Idempotent::No)
            .await
            .map_err(|source| {
                if source.is_client_certificate_missing() {
                    return AuthError::NoTransport {
                        what: "unwrapping the secret-id",
                        method: "approle",
                    };
                }
                AuthError::Unwrap {
                    path: path.to_path_buf(),
                    source: Box::new(source),
                }
            })?;
        // The unwrapped answer holds the secret-id in plain `String`s: wiped when it drops.
        let data = WipeOnDrop(secret.and_then(|s| s.data).unwrap_or_default());
        let value = data
            .0
            .get("secret_id")
            .and_then(|v| v.as_str())
            .map(|s| SecretString::from(s.to_owned()));
        value.ok_or_else(|| AuthError::NotASecretId {
            path: path.to_path_buf(),
        })
    }
}

/// A JSON body that holds a credential (an AppRole secret-id, a JWT, an unwrapped secret-id).
/// `serde_json::Value` keeps its strings in plain `String`s, which `Drop` would free with the
/// credential still in them; this overwrites every string first. The bytes the client
/// serialises from it are wiped by the client itself (`warden_bao`'s request buffer).
struct WipeOnDrop(serde_json::Value);

impl WipeOnDrop {
    fn wipe(value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(s) => s.zeroize(),
            Value::Array(items) => items.iter_mut().for_each(Self::wipe),
            Value::Object(map) => map.values_mut().for_each(Self::wipe),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

impl Drop for WipeOnDrop {
    fn drop(&mut self) {
        Self::wipe(&mut self.0);
    }
}

/// POSTs a login body and returns its `auth` block.
async fn login_auth(
    client: &Client,
    path: &str,
    body: &serde_json::Value,
) -> Result<warden_bao::Auth, warden_bao::Error> {
    // A login mints a token per call; repeating one is harmless, but the agent's own backoff
    // decides about repeats.
    let secret = client.write(path, body, Idempotent::No).await?;
    secret
        .and_then(|s| s.auth)
        .ok_or_else(|| warden_bao::Error::Decode {
            path: path.to_owned(),
            source: serde::de::Error::custom("login response has no auth block"),
        })
}

/// Removes a single-use credential file through its directory reached without following a
/// symlink (and checked like the identity's): a swapped `approle/` must not make the agent
/// delete a file of the same name wherever it pointed.
fn remove_credential(path: &Path) -> Result<(), warden_files::Error> {
    let (dir, name) = identity::identity_dir(path)?;
    dir.remove_file(&name).map(drop)
}

/// The largest credential file read (a JWT is a few KiB).
const MAX_CREDENTIAL_BYTES: u64 = 64 * 1024;

/// Reads a credential file (role-id, secret-id, JWT). It is opened non-blocking and must be a
/// regular file of bounded size: this runs on the runtime's worker, and a FIFO planted at the
/// name would otherwise block it, and every login, forever. Symlinks are followed (a projected
/// service-account token is a chain of them).
fn read_secret_file(what: &'static str, path: &Path) -> Result<SecretString, AuthError> {
    use std::io::Read as _;
    let err = |source| AuthError::Credential {
        what,
        path: path.to_path_buf(),
        source,
    };
    let (file, meta) = warden_files::open_regular(path, MAX_CREDENTIAL_BYTES).map_err(err)?;
    // Sized up front, so reading never reallocates and leaves an unwiped copy behind.
    let mut bytes = Zeroizing::new(Vec::with_capacity(
        usize::try_from(meta.len()).unwrap_or(0) + 1,
    ));
    file.take(MAX_CREDENTIAL_BYTES)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    // Invalid UTF-8 makes `from_utf8_lossy` copy: that copy is wiped too.
    let text = Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned());
    Ok(SecretString::from(text.trim().to_owned()))
}

pub(crate) use identity::load_identity;
pub(crate) use task::run;

#[cfg(test)]
mod tests {
    use super::*;

    /// The single-use secret-id is removed only through a directory that is not a symlink:
    /// the file of that name where a swapped `approle/` points stays.
    #[test]
    fn a_used_secret_id_is_never_removed_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("secret-id"), "someone else's").unwrap();
        let id = dir.path().join("billing");
        std::fs::create_dir(&id).unwrap();
        std::os::unix::fs::symlink(&elsewhere, id.join("approle")).unwrap();
        let e = remove_credential(&id.join("approle/secret-id")).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(elsewhere.join("secret-id").exists());
        std::fs::remove_file(id.join("approle")).unwrap();
        std::fs::create_dir(id.join("approle")).unwrap();
        std::fs::write(id.join("approle/secret-id"), "used").unwrap();
        remove_credential(&id.join("approle/secret-id")).unwrap();
        assert!(!id.join("approle/secret-id").exists());
    }

    /// A FIFO at a credential's name is refused at once: reading it would block the runtime's
    /// worker (and every later login) until someone wrote to it.
    #[test]
    fn a_fifo_or_huge_file_at_a_credential_name_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("secret-id");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(read_secret_file("secret-id", &fifo).map(|_| ()));
        });
        let got = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("reading a FIFO credential must not block");
        let e = got.unwrap_err();
        assert!(e.to_string().contains("secret-id"), "{e}");

        let big = dir.path().join("token");
        std::fs::write(&big, vec![b'a'; 200 * 1024]).unwrap();
        assert!(read_secret_file("JWT", &big).is_err());
        let ok = dir.path().join("role-id");
        std::fs::write(&ok, "  role\n").unwrap();
        assert_eq!(
            read_secret_file("role-id", &ok).unwrap().expose_secret(),
            "role"
        );
    }

    struct NoDatabases;
    impl crate::board::DatabaseStatuses for NoDatabases {
        fn statuses(&self, _: time::OffsetDateTime) -> Vec<crate::board::DatabaseStatus> {
            Vec::new()
        }
    }

    /// Before its first login nothing else re-reads the trust file (the delivery report waits
    /// for a token): an agent started with anchors that cannot verify the listener (its trust
    /// file holds only a root the listener no longer chains to) follows the file once it is
    /// fixed, at its next login attempt, without a restart. Real OpenBao (`-dev-tls`).
    #[tokio::test]
    async fn a_login_follows_a_trust_file_fixed_after_start() {
        use warden_files::Mode;
        let dev = warden_testkit::BaoDev::start_tls().await;
        let ca = std::fs::read_to_string(dev.ca_cert_path().expect("a TLS dev server")).unwrap();
        let root = Client::new(
            ClientConfig::from_address(dev.addr())
                .unwrap()
                .with_ca_pem(ca.clone().into_bytes())
                .with_token(dev.root_token().clone())
                .with_retry(RetryPolicy::no_retries()),
        )
        .unwrap();
        root.write(
            "sys/auth/approle",
            &json!({"type": "approle"}),
            Idempotent::No,
        )
        .await
        .unwrap();
        root.write(
            "auth/approle/role/agent",
            &json!({"token_policies": "default"}),
            Idempotent::Yes,
        )
        .await
        .unwrap();
        let field = |s: Option<warden_bao::Secret>, k: &str| {
            s.and_then(|s| s.data)
                .and_then(|d| d.get(k).and_then(|v| v.as_str()).map(str::to_owned))
                .unwrap()
        };
        let role_id = field(
            Some(root.read("auth/approle/role/agent/role-id").await.unwrap()),
            "role_id",
        );
        let secret_id = field(
            root.write(
                "auth/approle/role/agent/secret-id",
                &json!({}),
                Idempotent::No,
            )
            .await
            .unwrap(),
            "secret_id",
        );
        let dir = tempfile::tempdir().unwrap();
        let (role_file, secret_file) = (dir.path().join("role-id"), dir.path().join("secret-id"));
        warden_files::write_atomic(&role_file, role_id.as_bytes(), Mode::OwnerOnly).unwrap();
        warden_files::write_atomic(&secret_file, secret_id.as_bytes(), Mode::OwnerOnly).unwrap();
        // The trust file at start: a root the listener does not chain to.
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "Old Root");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let wrong = p.self_signed(&key).unwrap().pem();
        let trust_path = dir.path().join("ca.pem");
        warden_files::write_atomic(&trust_path, wrong.as_bytes(), Mode::Public).unwrap();
        let trust = Arc::new(crate::trust::TrustFile::new(
            Some(trust_path.clone()),
            crate::trust::read(&trust_path).unwrap(),
        ));
        let cfg = AuthConfig {
            mount: "approle".into(),
            policy: "default".into(),
            tls_identity: None,
            method: AuthMethod::AppRole {
                role_id_file: role_file,
                secret_id_file: secret_file,
                secret_id_wrapped: false,
            },
        };
        let base = ClientConfig::from_address(dev.addr())
            .unwrap()
            .with_ca_pem(wrong.into_bytes());
        let auth = Authenticator::new(cfg, "agent".into(), base, None, trust.clone()).unwrap();
        let shared = Shared::new(
            auth.client().clone(),
            crate::config::RenewalConfig::default(),
            trust,
            Arc::new(warden_pki::SystemClock),
            "agent".into(),
            Vec::new(),
            Arc::new(NoDatabases),
        );
        assert!(
            auth.login(&shared).await.is_err(),
            "the listener does not chain to the root the agent trusts"
        );
        // The operator fixes the trust file: the next attempt logs in.
        warden_files::write_atomic(&trust_path, ca.as_bytes(), Mode::Public).unwrap();
        let grant = auth.login(&shared).await;
        assert!(grant.is_ok(), "{:?}", grant.err());
    }

    #[test]
    fn auth_errors_classify_transient_and_refused() {
        let sealed = AuthError::Login {
            method: "cert",
            mount: "cert".into(),
            source: Box::new(warden_bao::Error::Sealed {
                address: "a".into(),
            }),
        };
        assert!(sealed.is_transient());
        assert!(!sealed.token_refused());
        let denied = AuthError::Token {
            what: "renew-self",
            source: Box::new(warden_bao::Error::PermissionDenied {
                path: "auth/token/renew-self".into(),
                errors: vec![],
            }),
        };
        assert!(denied.token_refused());
        assert!(!denied.is_transient());
        let gone = AuthError::SecretIdGone { path: "/x".into() };
        assert!(!gone.is_transient());
        assert!(gone.to_string().contains("removed after it is read"));
    }

    #[test]
    fn credential_bodies_are_wiped_before_they_are_freed() {
        let mut body = json!({
            "role_id": "role-1234",
            "secret_id": "s3cr3t-id",
            "nested": { "jwt": "eyJhbGciOi", "list": ["a-secret", 7, true, null] },
        });
        WipeOnDrop::wipe(&mut body);
        fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::String(s) => out.push(s.clone()),
                serde_json::Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
                serde_json::Value::Object(m) => m.values().for_each(|v| strings(v, out)),
                _ => {}
            }
        }
        let mut left = Vec::new();
        strings(&body, &mut left);
        assert_eq!(left.len(), 4, "every string was visited: {body}");
        assert!(left.iter().all(String::is_empty), "not wiped: {left:?}");
        // The shape (keys, other values) stays: only the credential bytes go.
        assert_eq!(body["nested"]["list"][1], 7);
    }
}
