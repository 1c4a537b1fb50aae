//! [`SigningKeys`]: what a service holds. It keeps the last good [`KeySet`] in memory, signs
//! with its current version, verifies against every version still in its grace window,
//! rotates (check-and-set), publishes the JWKS, and reloads without a restart through
//! [`SigningKeys::watch`].

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use warden_bao::Client;

use crate::clock::Clock;
use crate::error::{Result, VerifyError};
use crate::jwk::Jwks;
use crate::jws::Claims;
use crate::keyset::KeySet;
use crate::kv;
use crate::rotate::{self, Rotation, SharedClock, SigningKeyConfig};

/// How often a token with an unknown `kid` may trigger a reload: a verifier learns about a
/// rotation at once, but a flood of made-up `kid`s cannot turn into a flood of reads.
pub const UNKNOWN_KID_RELOAD_SPACING: Duration = Duration::from_secs(10);

/// A signing key as a service uses it. Cheap to clone; clones share the loaded set.
#[derive(Clone)]
pub struct SigningKeys {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) client: Client,
    pub(crate) config: SigningKeyConfig,
    pub(crate) clock: SharedClock,
    pub(crate) state: RwLock<State>,
    last_kid_reload: Mutex<Option<Instant>>,
}

/// The last good set and the metadata fingerprint it was loaded from.
pub(crate) struct State {
    pub(crate) set: Arc<KeySet>,
    pub(crate) fingerprint: Vec<(u64, bool)>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("config", &self.inner.config)
            .field("set", &self.get())
            .finish_non_exhaustive()
    }
}

impl SigningKeys {
    /// Loads the key's versions. Fails with [`crate::Error::NotProvisioned`] if the key has
    /// never been rotated (created); a service should refuse to start rather than run without
    /// keys.
    pub async fn load(
        client: Client,
        config: SigningKeyConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        let versions = kv::versions(&client, &config.location).await?;
        let set = rotate::load_versions(&client, &config.location, &versions, clock.now()).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                config,
                clock,
                state: RwLock::new(State {
                    set: Arc::new(set),
                    fingerprint: versions.fingerprint(),
                }),
                last_kid_reload: Mutex::new(None),
            }),
        })
    }

    /// The current set (no I/O): the last one loaded successfully.
    pub fn get(&self) -> Arc<KeySet> {
        self.inner
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .set
            .clone()
    }

    /// The key's configuration.
    pub fn config(&self) -> &SigningKeyConfig {
        &self.inner.config
    }

    /// Reloads from OpenBao. On failure the previous set stays in place.
    pub async fn refresh(&self) -> Result<Arc<KeySet>> {
        let loc = &self.inner.config.location;
        let versions = kv::versions(&self.inner.client, loc).await?;
        let set = rotate::load_versions(&self.inner.client, loc, &versions, self.inner.clock.now())
            .await?;
        Ok(self.publish(set, versions.fingerprint()))
    }

    pub(crate) fn publish(&self, set: KeySet, fingerprint: Vec<(u64, bool)>) -> Arc<KeySet> {
        let set = Arc::new(set);
        *self
            .inner
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner) = State {
            set: set.clone(),
            fingerprint,
        };
        set
    }

    /// Rotates (see [`rotate::rotate`]) and then reloads, so this process signs with the new
    /// version at once.
    pub async fn rotate(&self) -> Result<Rotation> {
        let rotation =
            rotate::rotate(&self.inner.client, &self.inner.config, &*self.inner.clock).await?;
        self.refresh().await?;
        Ok(rotation)
    }

    /// Signs `claims` with the current version, as of the injected clock: a version that
    /// declares a `max_token_lifetime` refuses claims whose `exp` is further away
    /// ([`KeySet::sign_at`]).
    pub fn sign(&self, claims: &impl Serialize) -> Result<String> {
        self.get().sign_at(claims, self.inner.clock.now())
    }

    /// Verifies `token` against the versions valid now. A `kid` this process has not seen yet
    /// (a rotation elsewhere, before the watcher noticed) triggers one reload, at most every
    /// [`UNKNOWN_KID_RELOAD_SPACING`], so tokens signed with a new version verify from the
    /// start.
    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        let first = self.get().verify(token, self.inner.clock.now());
        match first {
            Err(VerifyError::UnknownKey { .. }) if self.may_reload_for_kid() => {
                if let Err(e) = self.refresh().await {
                    tracing::warn!(location = %self.inner.config.location, error = %e, "reload for an unknown kid failed; keeping the current set");
                    return first;
                }
                self.get().verify(token, self.inner.clock.now())
            }
            other => other,
        }
    }

    fn may_reload_for_kid(&self) -> bool {
        let mut last = self
            .inner
            .last_kid_reload
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < UNKNOWN_KID_RELOAD_SPACING) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// The RFC 7517 JWK Set of every key valid now.
    pub fn jwks(&self) -> Jwks {
        self.get().jwks(self.inner.clock.now())
    }
}
