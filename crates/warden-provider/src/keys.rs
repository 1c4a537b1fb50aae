//! Signing keys: the dual-key JWT keys of `warden-keys`, loaded with the provider's login and
//! watched at `VAULT_WATCH_INTERVAL_SEC`. Rotation, signing, verification and the JWKS are
//! [`SigningKeys`]'s own ([`SigningKeys::rotate`], [`SigningKeys::sign`],
//! [`SigningKeys::verify`], [`SigningKeys::jwks`]); this module only connects them.

use std::sync::Arc;

use warden_keys::{KeySet, SigningKeyConfig, SigningKeys, SystemClock, WatchHandle, WatchOptions};

use crate::error::Error;
use crate::provider::SecretProvider;

impl SecretProvider {
    /// Loads a signing key's versions with this provider's client (its token is kept alive by
    /// the provider). The returned [`SigningKeys`] keeps its last good set through an outage.
    pub async fn signing_keys(&self, config: SigningKeyConfig) -> Result<SigningKeys, Error> {
        Ok(SigningKeys::load(self.client().clone(), config, Arc::new(SystemClock)).await?)
    }

    /// Reloads `keys` on rotation, polling every `VAULT_WATCH_INTERVAL_SEC` (failed polls back
    /// off up to `VAULT_RETRY_MAX_MS` or the interval, whichever is longer), and calls
    /// `on_change` with the new set.
    pub fn watch_signing_keys<F>(&self, keys: &SigningKeys, on_change: F) -> WatchHandle
    where
        F: Fn(Arc<KeySet>) + Send + Sync + 'static,
    {
        let s = self.settings();
        keys.watch(
            WatchOptions::every(s.watch_interval).with_max_backoff(s.retry_max),
            on_change,
        )
    }
}
