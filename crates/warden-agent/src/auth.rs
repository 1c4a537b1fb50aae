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
//! Logins go through a second client that never carries a token: a revoked token sent to a
//! login endpoint would be refused before the credential is even looked at.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use time::OffsetDateTime;
use warden_bao::{Client, ClientConfig, ClientIdentity, Idempotent, RetryPolicy};
use zeroize::{Zeroize, Zeroizing};

use super::config::{AuthConfig, AuthMethod, KeyType, TlsIdentity};
use super::output::RenderError;
use super::output::certificate;
use super::runtime::Shared;
use super::schedule::{self, Backoff};

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
            _ => return false,
        };
        bao.is_retryable() || bao.is_sealed() || bao.is_unreachable()
    }

    /// Whether the token itself was refused (revoked or expired): log in again.
    pub fn token_refused(&self) -> bool {
        matches!(self, Self::Token { source, .. } if source.is_permission_denied() || source.status() == Some(400))
    }
}

/// What a login or renewal gave.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    /// Its TTL (zero: does not expire).
    pub ttl: Duration,
    /// Whether `renew-self` can extend it.
    pub renewable: bool,
    /// Its policies, sorted.
    pub policies: Vec<String>,
}

/// The identity certificate in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityCert {
    /// Serial (hex).
    pub serial: String,
    /// Validity start.
    pub not_before: OffsetDateTime,
    /// Validity end.
    pub not_after: OffsetDateTime,
}

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
    trust_anchor_pem: String,
}

impl Authenticator {
    /// Builds the shared client and the login client. `base` carries address and CA;
    /// `identity` is the TLS identity loaded at start.
    pub(crate) fn new(
        cfg: AuthConfig,
        identity_cn: String,
        base: ClientConfig,
        identity: Option<ClientIdentity>,
        trust_anchor_pem: String,
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
        Ok(Self {
            cfg,
            identity_cn,
            base,
            tls: Mutex::new(identity),
            client,
            login_client,
            secret_id: Mutex::new(None),
            trust_anchor_pem,
        })
    }

    /// The shared client.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Logs in and sets the new token on the shared client.
    pub(crate) async fn login(&self, shared: &Shared) -> Result<TokenGrant, AuthError> {
        let method = self.cfg.method.as_str();
        let mount = self.cfg.mount.clone();
        let login_err = |source: warden_bao::Error| AuthError::Login {
            method,
            mount: mount.clone(),
            source: Box::new(source),
        };
        let path = format!("auth/{mount}/login");
        let auth = match &self.cfg.method {
            AuthMethod::Cert { role } => {
                shared.count_request();
                self.login_client
                    .login_cert(&mount, Some(role))
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
                login_auth(&self.login_client, &path, &body.0)
                    .await
                    .map_err(login_err)?
            }
            AuthMethod::Jwt { role, token_file } => {
                let jwt = read_secret_file("JWT", token_file)?;
                let body = WipeOnDrop(json!({ "role": role, "jwt": jwt.expose_secret() }));
                shared.count_request();
                login_auth(&self.login_client, &path, &body.0)
                    .await
                    .map_err(login_err)?
            }
        };
        self.client.set_token(auth.client_token.clone());
        let mut policies = auth.policies.clone();
        policies.sort();
        policies.dedup();
        if policies != [self.cfg.policy.clone()] {
            tracing::warn!(
                expected = %self.cfg.policy,
                got = ?policies,
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
        if let Err(e) = std::fs::remove_file(path) {
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
            .map_err(|source| AuthError::Unwrap {
                path: path.to_path_buf(),
                source: Box::new(source),
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

    /// The TLS identity certificate in use, if renewal is configured for it.
    pub(crate) fn identity_cert(&self) -> Option<IdentityCert> {
        let tls = self.cfg.tls_identity.as_ref()?;
        tls.renew_with.as_ref()?;
        let pem = std::fs::read_to_string(&tls.cert_file).ok()?;
        let leaf = warden_pki::parse_pem_bundle(&pem)
            .ok()?
            .into_iter()
            .next()?;
        Some(IdentityCert {
            serial: leaf.serial,
            not_before: leaf.not_before,
            not_after: leaf.not_after,
        })
    }

    /// Issues a new identity certificate, checks it, writes it and switches both clients to it.
    pub(crate) async fn renew_identity(
        &self,
        shared: &Shared,
        now: OffsetDateTime,
    ) -> Result<IdentityCert, AuthError> {
        let Some(TlsIdentity {
            cert_file,
            key_file,
            renew_with: Some((mount, role)),
        }) = &self.cfg.tls_identity
        else {
            return Err(AuthError::Identity {
                cert: PathBuf::new(),
                reason: "identity renewal is not configured".to_owned(),
            });
        };
        let sign_err = |source: RenderError| AuthError::IdentitySign {
            source: Box::new(source),
        };
        let key_type = std::fs::read_to_string(key_file)
            .ok()
            .and_then(|pem| warden_pki::GeneratedKey::from_pem(&pem).ok())
            .and_then(|k| k.algorithm())
            .map_or(KeyType::EcP256, |a| match a {
                warden_pki::KeyAlgorithm::EcdsaP384 => KeyType::EcP384,
                warden_pki::KeyAlgorithm::Rsa3072 => KeyType::Rsa3072,
                _ => KeyType::EcP256,
            });
        let key = certificate::generate_key(key_type).map_err(|e| {
            sign_err(RenderError::Local {
                output: "identity".to_owned(),
                what: "generate the key".to_owned(),
                reason: e.to_string(),
            })
        })?;
        shared.count_request();
        let signed = certificate::sign(
            &self.client,
            "identity",
            mount,
            role,
            &self.identity_cn,
            &[],
            None,
            &key,
        )
        .await
        .map_err(sign_err)?;
        let chain = format!("{}{}", signed.leaf_pem, signed.chain_pem);
        let key_pem = key.private_key_pem();
        let bad = |reason: String| AuthError::Identity {
            cert: cert_file.clone(),
            reason,
        };
        let identity = check_identity(
            chain.as_bytes(),
            key_pem.as_bytes(),
            &self.identity_cn,
            &self.trust_anchor_pem,
            now,
        )
        .map_err(bad)?;
        write_identity(cert_file, key_file, chain.as_bytes(), key_pem.as_bytes())
            .map_err(|source| AuthError::IdentityWrite { source })?;
        self.client
            .set_identity(Some(identity.clone()))
            .and_then(|()| self.login_client.set_identity(Some(identity.clone())))
            .map_err(|source| AuthError::Client {
                source: Box::new(source),
            })?;
        *self.tls.lock().unwrap_or_else(PoisonError::into_inner) = Some(identity);
        let leaf = warden_pki::parse_pem_bundle(&chain)
            .map_err(|e| bad(e.to_string()))?
            .swap_remove(0);
        tracing::info!(serial = %leaf.serial, not_after = %leaf.not_after, "mTLS identity renewed and in use");
        Ok(IdentityCert {
            serial: leaf.serial,
            not_before: leaf.not_before,
            not_after: leaf.not_after,
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

fn read_secret_file(what: &'static str, path: &Path) -> Result<SecretString, AuthError> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| AuthError::Credential {
        what,
        path: path.to_path_buf(),
        source,
    })?);
    // Invalid UTF-8 makes `from_utf8_lossy` copy: that copy is wiped too.
    let text = Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned());
    Ok(SecretString::from(text.trim().to_owned()))
}

/// Checks a TLS identity: parses, the key fits, the leaf names `cn`, the chain verifies to a
/// trust anchor at `now`.
pub(crate) fn check_identity(
    chain_pem: &[u8],
    key_pem: &[u8],
    cn: &str,
    trust_anchor_pem: &str,
    now: OffsetDateTime,
) -> Result<ClientIdentity, String> {
    let identity = ClientIdentity::from_pem(chain_pem.to_vec(), Zeroizing::new(key_pem.to_vec()))
        .map_err(|e| e.to_string())?;
    let text =
        std::str::from_utf8(chain_pem).map_err(|_| "the certificate is not text".to_owned())?;
    match warden_pki::common_name(text) {
        Some(got) if got == cn => {}
        other => {
            return Err(format!(
                "it names {:?}, not the pinned {cn}",
                other.unwrap_or_default()
            ));
        }
    }
    let anchors = certificate::pem_blocks(trust_anchor_pem);
    let mut problems = Vec::new();
    for anchor in &anchors {
        match warden_pki::verify_chain(text, Some(anchor), now) {
            Ok(r) if r.valid => return Ok(identity),
            Ok(r) => problems.extend(r.problems.iter().map(ToString::to_string)),
            Err(e) => problems.push(e.to_string()),
        }
    }
    Err(format!(
        "it does not verify to the trust anchor: {}",
        problems.join("; ")
    ))
}

/// `<file>.next` next to `file`.
fn staged(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".next");
    file.with_file_name(name)
}

/// Stages both files, then replaces key and certificate, then drops the staging copies.
fn write_identity(
    cert_file: &Path,
    key_file: &Path,
    chain: &[u8],
    key: &[u8],
) -> Result<(), warden_files::Error> {
    use warden_files::{Mode, write_atomic};
    write_atomic(&staged(key_file), key, Mode::OwnerOnly)?;
    write_atomic(&staged(cert_file), chain, Mode::Public)?;
    write_atomic(key_file, key, Mode::OwnerOnly)?;
    write_atomic(cert_file, chain, Mode::Public)?;
    let _ = std::fs::remove_file(staged(key_file));
    let _ = std::fs::remove_file(staged(cert_file));
    Ok(())
}

/// Loads the TLS identity at start. If the pair on disk does not fit together but a staged
/// pair (`.next`) does, a renewal was interrupted between the two writes: the staged pair is
/// installed, completing it.
pub(crate) fn load_identity(tls: &TlsIdentity) -> Result<ClientIdentity, AuthError> {
    let read = |what, p: &Path| {
        std::fs::read(p)
            .map(Zeroizing::new)
            .map_err(|source| AuthError::Credential {
                what,
                path: p.to_path_buf(),
                source,
            })
    };
    let bad = |reason: String| AuthError::Identity {
        cert: tls.cert_file.clone(),
        reason,
    };
    let cert = read("TLS certificate", &tls.cert_file)?;
    let key = read("TLS key", &tls.key_file)?;
    match ClientIdentity::from_pem(cert.to_vec(), key) {
        Ok(id) => {
            let _ = std::fs::remove_file(staged(&tls.key_file));
            let _ = std::fs::remove_file(staged(&tls.cert_file));
            Ok(id)
        }
        Err(first) => {
            let (Ok(sc), Ok(sk)) = (
                read("TLS certificate", &staged(&tls.cert_file)),
                read("TLS key", &staged(&tls.key_file)),
            ) else {
                return Err(bad(first.to_string()));
            };
            let id = ClientIdentity::from_pem(sc.to_vec(), sk.clone())
                .map_err(|_| bad(first.to_string()))?;
            write_identity(&tls.cert_file, &tls.key_file, &sc, &sk)
                .map_err(|e| bad(e.to_string()))?;
            tracing::warn!(cert = %tls.cert_file.display(), "completed an interrupted identity renewal");
            Ok(id)
        }
    }
}

/// The auth task: logs in, keeps the token alive, renews the identity, until shutdown.
pub(crate) async fn run(auth: Arc<Authenticator>, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown_signal();
    let mut login_backoff = Backoff::default();
    'login: loop {
        if shared.stopping() {
            return;
        }
        let grant = match auth.login(&shared).await {
            Ok(g) => g,
            Err(e) => {
                let wait = login_backoff.fail(schedule::random_unit());
                tracing::warn!(error = %e, retry_in_s = wait.as_secs_f32(), "login failed");
                shared.auth_error(&e);
                tokio::select! {
                    () = tokio::time::sleep(wait) => continue 'login,
                    _ = shutdown.changed() => return,
                }
            }
        };
        login_backoff.reset();
        let original_ttl = grant.ttl;
        let mut expires = tokio::time::Instant::now() + grant.ttl;
        shared.logged_in(&grant, auth.policies_ok(&grant.policies));
        let mut renew_at = renew_point(&grant);
        let mut renew_backoff = Backoff::default();
        let mut identity_at = identity_due(&auth, &shared);
        let mut identity_backoff = Backoff::default();
        loop {
            let wake = [renew_at, identity_at]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            let hinted = tokio::select! {
                () = tokio::time::sleep_until(wake) => false,
                () = shared.relogin_hint() => true,
                _ = shutdown.changed() => return,
            };
            if hinted {
                // An output was refused: is it the token?
                match auth.lookup(&shared).await {
                    Err(e) if e.token_refused() => {
                        tracing::info!("the token is no longer accepted; logging in again");
                        continue 'login;
                    }
                    _ => continue,
                }
            }
            let now = tokio::time::Instant::now();
            if identity_at.is_some_and(|t| t <= now) {
                match auth.renew_identity(&shared, shared.now()).await {
                    Ok(cert) => {
                        identity_backoff.reset();
                        shared.identity_renewed(&cert);
                        identity_at = identity_due(&auth, &shared);
                    }
                    Err(e) => {
                        let wait = identity_backoff.fail(schedule::random_unit());
                        tracing::warn!(error = %e, retry_in_s = wait.as_secs_f32(), "identity renewal failed");
                        shared.auth_error(&e);
                        identity_at = Some(now + wait);
                    }
                }
            }
            if renew_at.is_some_and(|t| t <= now) {
                if !grant.renewable {
                    continue 'login;
                }
                match auth.renew(&shared).await {
                    Ok(g) if g.ttl * 3 >= original_ttl && !g.ttl.is_zero() => {
                        renew_backoff.reset();
                        expires = tokio::time::Instant::now() + g.ttl;
                        renew_at = renew_point(&g);
                        shared.token_renewed(&g);
                    }
                    Ok(_) => {
                        tracing::info!("the token is near its maximum lifetime; logging in again");
                        continue 'login;
                    }
                    Err(e) if e.token_refused() => {
                        tracing::info!(error = %e, "the token was refused; logging in again");
                        continue 'login;
                    }
                    Err(e) => {
                        shared.auth_error(&e);
                        if tokio::time::Instant::now() >= expires {
                            continue 'login;
                        }
                        let wait = renew_backoff.fail(schedule::random_unit());
                        renew_at = Some((tokio::time::Instant::now() + wait).min(expires));
                    }
                }
            }
        }
    }
}

/// 2/3 of the token's TTL from now; `None` for a token that does not expire.
fn renew_point(grant: &TokenGrant) -> Option<tokio::time::Instant> {
    (!grant.ttl.is_zero()).then(|| tokio::time::Instant::now() + grant.ttl * 2 / 3)
}

/// When the identity is due for renewal (`None` when renewal is not configured).
fn identity_due(auth: &Authenticator, shared: &Shared) -> Option<tokio::time::Instant> {
    let cert = auth.identity_cert()?;
    shared.identity_known(&cert);
    let now = shared.now();
    let due = schedule::cert_due(
        &shared.renewal,
        cert.not_before,
        cert.not_after,
        schedule::serial_jitter(&cert.serial),
        now,
    );
    Some(tokio::time::Instant::now() + to_std(due - now))
}

/// A non-negative `time::Duration` as `std`.
pub(crate) fn to_std(d: time::Duration) -> Duration {
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn staged_names_sit_next_to_the_file() {
        assert_eq!(
            staged(Path::new("/id/identity/client.key")),
            Path::new("/id/identity/client.key.next")
        );
    }

    fn issue(issuer: &warden_pki::LocalIssuer, cn: &str) -> (String, Zeroizing<String>) {
        let key = warden_pki::generate_key(warden_pki::KeyAlgorithm::EcdsaP256).unwrap();
        let leaf = issuer
            .issue_client(
                &key.public_key_der(),
                cn,
                time::Duration::days(30),
                OffsetDateTime::now_utc(),
            )
            .unwrap();
        (format!("{}\n", leaf.trim()), key.private_key_pem())
    }

    fn ca() -> warden_pki::LocalIssuer {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, "ca");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.not_before = OffsetDateTime::now_utc() - time::Duration::days(1);
        p.not_after = OffsetDateTime::now_utc() + time::Duration::days(3650);
        let cert = p.self_signed(&key).unwrap();
        warden_pki::LocalIssuer::from_pem(&cert.pem(), &key.serialize_pem()).unwrap()
    }

    #[test]
    fn an_identity_is_checked_for_key_name_and_anchor() {
        let ca = ca();
        let now = OffsetDateTime::now_utc();
        let (cert, key) = issue(&ca, "a.identity");
        check_identity(
            cert.as_bytes(),
            key.as_bytes(),
            "a.identity",
            ca.cert_pem(),
            now,
        )
        .unwrap();
        let e = check_identity(
            cert.as_bytes(),
            key.as_bytes(),
            "b.identity",
            ca.cert_pem(),
            now,
        )
        .unwrap_err();
        assert!(e.contains("not the pinned"), "{e}");
        let (_, other_key) = issue(&ca, "a.identity");
        assert!(
            check_identity(
                cert.as_bytes(),
                other_key.as_bytes(),
                "a.identity",
                ca.cert_pem(),
                now
            )
            .is_err()
        );
        let stranger = self::ca();
        let e = check_identity(
            cert.as_bytes(),
            key.as_bytes(),
            "a.identity",
            stranger.cert_pem(),
            now,
        )
        .unwrap_err();
        assert!(e.contains("trust anchor"), "{e}");
    }

    #[test]
    fn an_interrupted_identity_write_is_completed_at_start() {
        let ca = ca();
        let tmp = tempfile::tempdir().unwrap();
        let tls = TlsIdentity {
            cert_file: tmp.path().join("client.crt"),
            key_file: tmp.path().join("client.key"),
            renew_with: None,
        };
        let (old_cert, old_key) = issue(&ca, "a");
        let (new_cert, new_key) = issue(&ca, "a");
        write_identity(
            &tls.cert_file,
            &tls.key_file,
            old_cert.as_bytes(),
            old_key.as_bytes(),
        )
        .unwrap();
        load_identity(&tls).unwrap();
        // The crash: both staged, the key replaced, the certificate not yet.
        warden_files::write_atomic(
            &staged(&tls.key_file),
            new_key.as_bytes(),
            warden_files::Mode::OwnerOnly,
        )
        .unwrap();
        warden_files::write_atomic(
            &staged(&tls.cert_file),
            new_cert.as_bytes(),
            warden_files::Mode::Public,
        )
        .unwrap();
        warden_files::write_atomic(
            &tls.key_file,
            new_key.as_bytes(),
            warden_files::Mode::OwnerOnly,
        )
        .unwrap();
        load_identity(&tls).unwrap();
        assert_eq!(std::fs::read_to_string(&tls.cert_file).unwrap(), new_cert);
        assert!(!staged(&tls.cert_file).exists() && !staged(&tls.key_file).exists());
        // A mismatch with nothing staged is an error naming the file.
        warden_files::write_atomic(
            &tls.key_file,
            old_key.as_bytes(),
            warden_files::Mode::OwnerOnly,
        )
        .unwrap();
        let e = load_identity(&tls).unwrap_err();
        assert!(e.to_string().contains("client.crt"), "{e}");
    }
}
