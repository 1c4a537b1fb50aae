//! [`SecretProvider`]: connect under the start-up contract, keep the token alive, read KV
//! secrets with a last-good-value cache, rotate dual-key secrets.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use warden_bao::{Client, ClientConfig, KvData, KvError, RetryPolicy, SecretValue};

use crate::error::Error;
use crate::login::{Login, LoginError};
use crate::secret::{DualSecret, Secret, SecretPath};
use crate::settings::{Settings, refuse_secret_env};

/// Everything [`SecretProvider::connect`] needs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProviderConfig {
    /// Where OpenBao is and whom to trust (`VAULT_*`/`BAO_*`). Its token, if any, is ignored:
    /// the provider logs in with `login`.
    pub client: ClientConfig,
    /// How the service logs in.
    pub login: Login,
    /// Start-up and watch timing.
    pub settings: Settings,
    /// The transit mount of [`SecretProvider::encrypt`] and friends (default `transit`).
    pub transit_mount: String,
}

impl ProviderConfig {
    /// A config from explicit parts, with the seed's default timing.
    pub fn new(client: ClientConfig, login: Login) -> Self {
        Self {
            client,
            login,
            settings: Settings::default(),
            transit_mount: "transit".to_owned(),
        }
    }

    /// With other timing.
    #[must_use]
    pub fn with_settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// With another transit mount.
    #[must_use]
    pub fn with_transit_mount(mut self, mount: impl Into<String>) -> Self {
        self.transit_mount = mount.into();
        self
    }

    /// The process environment: first the AD-1 refusal ([`refuse_secret_env`]), then
    /// [`ProviderConfig::from_env_with`].
    pub fn from_env() -> Result<Self, Error> {
        refuse_secret_env()?;
        Self::from_env_with(|name| std::env::var(name).ok())
    }

    /// Builds the config from environment-style variables: the connection from
    /// `BAO_*`/`VAULT_*` (`ADDR`, `CACERT`, `NAMESPACE`, `CLIENT_TIMEOUT`, …, through
    /// [`ClientConfig::from_env_with`]; `TOKEN` is never used), the login from
    /// [`Login::from_env_with`], the timing from [`Settings::from_env_with`], the transit mount
    /// from `WARDEN_TRANSIT_MOUNT`. With `WARDEN_IDENTITY_DIR` and no `CACERT`, the identity's
    /// `trust/ca.pem` is the CA bundle.
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let no_token = |name: &str| match name {
            "BAO_TOKEN" | "VAULT_TOKEN" => None,
            other => lookup(other),
        };
        let mut client = ClientConfig::from_env_with(no_token).map_err(Error::client)?;
        let login = Login::from_env_with(&lookup)?;
        if client.ca_cert_pem.is_none()
            && let Some(dir) = lookup("WARDEN_IDENTITY_DIR").filter(|d| !d.trim().is_empty())
        {
            let ca = warden_enroll::IdentityLayout::at(dir).ca_bundle();
            if ca.exists() {
                client = client.with_ca_file(&ca).map_err(Error::client)?;
            }
        }
        let settings = Settings::from_env_with(&lookup)?;
        let mut cfg = Self::new(client, login).with_settings(settings);
        if let Some(m) = lookup("WARDEN_TRANSIT_MOUNT").filter(|m| !m.trim().is_empty()) {
            cfg.transit_mount = m;
        }
        Ok(cfg)
    }
}

/// A service's one handle on its secrets. Cheap to clone; clones share the token, the cache
/// and the background token keeper (stopped when the last clone is dropped).
#[derive(Clone)]
pub struct SecretProvider {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) client: Client,
    pub(crate) settings: Settings,
    pub(crate) transit_mount: String,
    cache: Mutex<HashMap<SecretPath, Secret>>,
    keeper: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

impl fmt::Debug for SecretProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretProvider")
            .field("address", &self.inner.client.address().as_str())
            .field("settings", &self.inner.settings)
            .field("cached", &self.lock_cache().len())
            .finish_non_exhaustive()
    }
}

impl SecretProvider {
    /// Connects and logs in, retrying while OpenBao is unreachable, sealed or not ready:
    /// delays start at `VAULT_RETRY_INITIAL_MS` and double up to `VAULT_RETRY_MAX_MS` (no
    /// jitter; the last one is cut to what is left of the budget), each logged at `warn` with
    /// `attempt`, `delay_ms` and `reason` (an error message, never a value). After
    /// `VAULT_INIT_TIMEOUT_SEC` it returns [`Error::InitTimeout`]. A credential file that does
    /// not exist yet (the agent has not written the certificate) is waited for the same way. A
    /// refused login (bad credentials, unknown role), an empty or unreadable file, or a
    /// certificate that does not parse fails at once: waiting cannot fix it.
    ///
    /// Needs a Tokio runtime: a background task renews the token (or logs in again) before it
    /// expires.
    pub async fn connect(config: ProviderConfig) -> Result<Self, Error> {
        // One crypto stack (aws-lc-rs) for every TLS connection; a service should not have to
        // know. Already installed (by the service or an earlier provider): nothing happens.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let ProviderConfig {
            client,
            login,
            settings,
            transit_mount,
        } = config;
        // A cert login loads the identity's certificate at each login (`Login::login`), so a
        // certificate the agent has not written yet is waited for like an unreachable server.
        let mut client = client;
        // Reads fail fast and fall back to the cache; start-up retries are paced here, on the
        // contract's schedule, not inside the client.
        client.token = None;
        let client =
            Client::new(client.with_retry(RetryPolicy::no_retries())).map_err(Error::client)?;
        let ttl = startup(&client, &login, &settings).await?;
        let keeper = tokio::spawn(keep_token(client.clone(), login, settings, ttl));
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                settings,
                transit_mount,
                cache: Mutex::new(HashMap::new()),
                keeper,
            }),
        })
    }

    /// The logged-in client, for calls this type does not wrap.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The timing in force.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<SecretPath, Secret>> {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn remember(&self, secret: &Secret) {
        self.lock_cache()
            .insert(secret.path.clone(), secret.clone());
    }

    pub(crate) fn cached(&self, path: &SecretPath) -> Option<Secret> {
        self.lock_cache().get(path).cloned()
    }

    /// Reads a KV secret. When OpenBao is sealed, down or unreachable and this provider has
    /// read the secret before, the last good value is returned with [`Secret::is_stale`] set
    /// (and a `warn` log with its age); with no earlier value, the error. A denied or missing
    /// secret is always an error: the cache never hides a revoked grant.
    pub async fn get(&self, path: &SecretPath) -> Result<Secret, Error> {
        match self.fetch(path).await {
            Ok(secret) => {
                self.remember(&secret);
                Ok(secret)
            }
            Err(e) if is_unavailable(&e) => match self.cached(path) {
                Some(last) => {
                    tracing::warn!(
                        secret = %path,
                        age_ms = u64::try_from(last.age().as_millis()).unwrap_or(u64::MAX),
                        reason = %e,
                        "OpenBao unavailable; serving the last good value"
                    );
                    Ok(last.as_stale())
                }
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// [`SecretProvider::get`] of a KV v2 secret.
    pub async fn kv2(&self, mount: &str, path: &str) -> Result<Secret, Error> {
        self.get(&SecretPath::kv2(mount, path)).await
    }

    /// [`SecretProvider::get`] of a KV v1 secret.
    pub async fn kv1(&self, mount: &str, path: &str) -> Result<Secret, Error> {
        self.get(&SecretPath::kv1(mount, path)).await
    }

    /// One read, no cache.
    pub(crate) async fn fetch(&self, path: &SecretPath) -> Result<Secret, Error> {
        let client = &self.inner.client;
        let (data, version) = match path {
            SecretPath::Kv2 { mount, path: p } => {
                let v = client.kv2(mount).read(p, None).await?;
                (v.data, Some(v.meta.version))
            }
            SecretPath::Kv1 { mount, path: p } => (client.kv1(mount).read(p).await?, None),
        };
        Ok(Secret {
            path: path.clone(),
            data: Arc::new(data),
            version,
            loaded_at: std::time::Instant::now(),
            stale: false,
        })
    }

    /// Dual-key rotation of a KV v2 secret (seed 004's `RotateSecret`): writes `new` as the
    /// field `current` and the value it replaces as `previous`, in one new version, with
    /// check-and-set on the version read first, so two concurrent rotations cannot both win
    /// and `previous` is never lost ([`Error::Conflict`], nothing written). Consumers read both
    /// with [`SecretProvider::dual_secret`] and accept either until the next rotation.
    pub async fn rotate_secret(
        &self,
        mount: &str,
        path: &str,
        new: &SecretString,
    ) -> Result<DualSecret, Error> {
        let kv = self.inner.client.kv2(mount);
        let (expected, previous) = match kv.read(path, None).await {
            Ok(v) => (v.meta.version, v.data.get("current").cloned()),
            Err(KvError::NotFound { .. }) => (0, None),
            // The current version was deleted or destroyed: nothing to keep as previous.
            Err(
                KvError::VersionDeleted { version, .. } | KvError::VersionDestroyed { version, .. },
            ) => (version, None),
            Err(e) => return Err(e.into()),
        };
        let mut data = KvData::new();
        data.insert("current", SecretValue::text(new.expose_secret().to_owned()));
        if let Some(p) = previous {
            data.insert("previous", p);
        }
        let meta = kv
            .write(path, &data, Some(expected))
            .await
            .map_err(|e| match e {
                KvError::CasMismatch { .. } => Error::Conflict {
                    path: format!("{}/{}", mount.trim_matches('/'), path.trim_matches('/')),
                    expected,
                },
                other => other.into(),
            })?;
        tracing::info!(
            secret = %SecretPath::kv2(mount, path),
            version = meta.version,
            "rotated: new current, previous kept"
        );
        let secret = Secret {
            path: SecretPath::kv2(mount, path),
            data: Arc::new(data),
            version: Some(meta.version),
            loaded_at: std::time::Instant::now(),
            stale: false,
        };
        self.remember(&secret);
        dual_of(&secret)
    }

    /// Reads a dual-key secret written by [`SecretProvider::rotate_secret`] (through the cache
    /// rules of [`SecretProvider::get`]).
    pub async fn dual_secret(&self, mount: &str, path: &str) -> Result<DualSecret, Error> {
        dual_of(&self.kv2(mount, path).await?)
    }
}

fn dual_of(secret: &Secret) -> Result<DualSecret, Error> {
    let current = secret.field("current").ok_or_else(|| Error::NotDualKey {
        path: format!("{}/{}", secret.path.mount(), secret.path.path()),
    })?;
    Ok(DualSecret {
        current,
        previous: secret.field("previous"),
        version: secret.version.unwrap_or(0),
        stale: secret.stale,
    })
}

/// Whether `e` means "OpenBao cannot answer now" (down, sealed, unreachable, overloaded), the
/// case the cache covers.
pub(crate) fn is_unavailable(e: &Error) -> bool {
    e.bao_error().is_some_and(warden_bao::Error::is_retryable)
}

/// The start-up loop; returns the token's TTL.
async fn startup(client: &Client, login: &Login, settings: &Settings) -> Result<Duration, Error> {
    let started = Instant::now();
    let mut delays = settings.backoff();
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        // Each attempt gets only what is left of the budget: a server that accepts the
        // connection and never answers (frozen, overloaded) would otherwise hold one attempt
        // for the client's whole request timeout (60 s by default), far past
        // VAULT_INIT_TIMEOUT_SEC.
        let budget = settings
            .init_timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(1));
        let outcome = match tokio::time::timeout(budget, login.login(client)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(LoginError::Server(warden_bao::Error::Timeout {
                path: format!("auth/{}/login", login.mount().trim_matches('/')),
                after: budget,
            })),
        };
        let err = match outcome {
            Ok(auth) => {
                let ttl = auth.ttl();
                client.set_token(auth.client_token);
                tracing::info!(
                    attempt,
                    elapsed_ms = millis(started.elapsed()),
                    address = %client.address(),
                    "logged in to OpenBao"
                );
                return Ok(ttl);
            }
            Err(e) => match classify(e, login) {
                (true, err) => err,
                (false, err) => return Err(err),
            },
        };
        let elapsed = started.elapsed();
        let Some(left) = settings
            .init_timeout
            .checked_sub(elapsed)
            .filter(|l| !l.is_zero())
        else {
            tracing::error!(
                attempt,
                elapsed_ms = millis(elapsed),
                reason = %err,
                "OpenBao not usable within VAULT_INIT_TIMEOUT_SEC; giving up"
            );
            return Err(Error::InitTimeout {
                address: client.address().to_string(),
                timeout: settings.init_timeout,
                attempts: attempt,
                last: Box::new(err),
            });
        };
        let delay = delays.next().unwrap_or(settings.retry_max).min(left);
        tracing::warn!(
            attempt,
            delay_ms = millis(delay),
            reason = %err,
            "OpenBao not usable yet; retrying"
        );
        tokio::time::sleep(delay).await;
    }
}

/// Whether a failed login may succeed later, and the error to report. Worth waiting for: an
/// unavailable server, and a credential file that does not exist *yet* (at boot the service can
/// start before its agent has written the identity's certificate). Not worth it: a refusal,
/// an unreadable or empty file, a certificate that does not parse.
fn classify(e: LoginError, login: &Login) -> (bool, Error) {
    let missing = |io: &std::io::Error| io.kind() == std::io::ErrorKind::NotFound;
    match e {
        LoginError::Server(e) if e.is_retryable() => (true, Error::client(e)),
        LoginError::Server(e) => (
            false,
            Error::LoginRefused {
                mount: login.mount().to_owned(),
                source: Box::new(e),
            },
        ),
        LoginError::NoAuth => (
            false,
            Error::NoToken {
                mount: login.mount().to_owned(),
            },
        ),
        LoginError::Setup(e) => {
            let retry = matches!(&e, warden_bao::Error::ReadFile { source, .. } if missing(source));
            (retry, Error::client(e))
        }
        LoginError::File(e) => {
            let retry = matches!(&e, Error::ReadFile { source, .. } if missing(source));
            (retry, e)
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Keeps the token valid: at two thirds of its TTL, renews it, or logs in again when the
/// renewal fails or was capped (the token nears its max TTL). Failures retry on the start-up
/// backoff; reads meanwhile fall back to the cache.
async fn keep_token(client: Client, login: Login, settings: Settings, mut ttl: Duration) {
    if ttl.is_zero() {
        return; // a token that never expires
    }
    loop {
        tokio::time::sleep((ttl * 2 / 3).max(Duration::from_secs(1))).await;
        let mut delays = settings.backoff();
        ttl = loop {
            match client.token_renew_self(Some(ttl)).await {
                Ok(auth) if auth.ttl() * 2 > ttl => break auth.ttl(),
                Ok(_) | Err(_) => {}
            }
            match login.login(&client).await {
                Ok(auth) => {
                    let t = auth.ttl();
                    client.set_token(auth.client_token);
                    tracing::info!("logged in to OpenBao again (token near its end)");
                    break t;
                }
                Err(e) => {
                    let delay = delays.next().unwrap_or(settings.retry_max);
                    tracing::warn!(
                        delay_ms = millis(delay),
                        reason = %login_reason(&e),
                        "token renewal and login failed; retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        };
        if ttl.is_zero() {
            return;
        }
    }
}

fn login_reason(e: &LoginError) -> String {
    match e {
        LoginError::File(e) => e.to_string(),
        LoginError::Setup(e) | LoginError::Server(e) => e.to_string(),
        LoginError::NoAuth => "the login answer carries no token".to_owned(),
    }
}
