//! [`SigningKeys::watch`]: a background task that polls the key's KV metadata and, when a
//! version is written, deleted or destroyed, reloads the set and calls back with it.
//!
//! Why metadata polling: one small read per interval (default 30 s) per key, no private key on
//! the wire unless something changed. When OpenBao is sealed, unreachable or refuses the
//! token, the last good set stays in force (tokens keep being signed and verified) and polls
//! back off exponentially up to `max_backoff`; the first successful poll resumes the normal
//! interval.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::keyset::KeySet;
use crate::kv;
use crate::provider::SigningKeys;
use crate::rotate;

/// Polling settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchOptions {
    /// Time between polls while all is well (default 30 s).
    pub interval: Duration,
    /// Longest wait between polls while they fail (default 5 min; never below `interval`).
    pub max_backoff: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            max_backoff: Duration::from_secs(300),
        }
    }
}

impl WatchOptions {
    /// Polls every `interval`.
    pub fn every(interval: Duration) -> Self {
        Self {
            interval,
            ..Self::default()
        }
    }

    /// With another backoff ceiling.
    #[must_use]
    pub fn with_max_backoff(mut self, max: Duration) -> Self {
        self.max_backoff = max;
        self
    }

    /// The wait before the next poll after `failures` consecutive failures.
    pub fn delay(&self, failures: u32) -> Duration {
        let ceiling = self.max_backoff.max(self.interval);
        self.interval
            .checked_mul(1u32 << failures.min(16))
            .map_or(ceiling, |d| d.min(ceiling))
    }
}

/// The running watcher. Dropping it (or [`WatchHandle::stop`]) ends the task.
#[derive(Debug)]
pub struct WatchHandle {
    task: JoinHandle<()>,
    stats: Arc<Stats>,
}

#[derive(Debug, Default)]
struct Stats {
    failures: AtomicU32,
    polls: AtomicU64,
    changes: AtomicU64,
}

impl WatchHandle {
    /// Polls that failed in a row (0 while healthy).
    pub fn consecutive_failures(&self) -> u32 {
        self.stats.failures.load(Ordering::Relaxed)
    }

    /// Polls made, successful or not.
    pub fn polls(&self) -> u64 {
        self.stats.polls.load(Ordering::Relaxed)
    }

    /// Changes delivered to the callback.
    pub fn changes(&self) -> u64 {
        self.stats.changes.load(Ordering::Relaxed)
    }

    /// Stops the task.
    pub fn stop(self) {}
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SigningKeys {
    /// Starts polling. `on_change` runs on the watcher's task with the new set each time the
    /// key's versions change (a rotation anywhere, including through [`SigningKeys::rotate`]
    /// of this very provider, or a version deleted to revoke it); several rotations between
    /// two polls are delivered once, as the latest set. It is not called at start.
    ///
    /// Needs a Tokio runtime.
    pub fn watch<F>(&self, options: WatchOptions, on_change: F) -> WatchHandle
    where
        F: Fn(Arc<KeySet>) + Send + Sync + 'static,
    {
        let stats = Arc::new(Stats::default());
        let keys = self.clone();
        let task_stats = stats.clone();
        let task = tokio::spawn(async move {
            let mut seen = keys
                .inner
                .state
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .fingerprint
                .clone();
            let mut failures = 0u32;
            loop {
                tokio::time::sleep(options.delay(failures)).await;
                task_stats.polls.fetch_add(1, Ordering::Relaxed);
                match keys.poll(&seen).await {
                    Ok(None) => failures = 0,
                    Ok(Some((fingerprint, set))) => {
                        failures = 0;
                        seen = fingerprint;
                        task_stats.changes.fetch_add(1, Ordering::Relaxed);
                        on_change(set);
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        tracing::warn!(
                            location = %keys.inner.config.location,
                            failures,
                            next_poll_in = %warden_bao::format_wait(options.delay(failures)),
                            error = %e,
                            "signing key poll failed; keeping the last good key set"
                        );
                    }
                }
                task_stats.failures.store(failures, Ordering::Relaxed);
            }
        });
        WatchHandle { task, stats }
    }

    /// One poll: `None` when nothing changed since `seen`, else the new fingerprint and set.
    async fn poll(
        &self,
        seen: &[(u64, bool)],
    ) -> crate::Result<Option<(Vec<(u64, bool)>, Arc<KeySet>)>> {
        let inner = &self.inner;
        let versions = kv::versions(&inner.client, &inner.config.location).await?;
        let fingerprint = versions.fingerprint();
        if fingerprint == seen {
            return Ok(None);
        }
        // Already loaded (by this provider's own rotate or refresh)? Then no second read.
        let loaded = {
            let state = inner
                .state
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (state.fingerprint == fingerprint).then(|| state.set.clone())
        };
        let set = match loaded {
            Some(set) => set,
            None => {
                let set = rotate::load_versions(
                    &inner.client,
                    &inner.config.location,
                    &versions,
                    inner.clock.now(),
                )
                .await?;
                self.publish(set, fingerprint.clone())
            }
        };
        Ok(Some((fingerprint, set)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_interval_and_is_bounded() {
        let o = WatchOptions::every(Duration::from_secs(30));
        assert_eq!(o.delay(0), Duration::from_secs(30));
        assert_eq!(o.delay(1), Duration::from_secs(60));
        assert_eq!(o.delay(3), Duration::from_secs(240));
        assert_eq!(o.delay(4), Duration::from_secs(300));
        assert_eq!(o.delay(u32::MAX), Duration::from_secs(300));
        // A ceiling below the interval never makes polls faster than the interval.
        let slow =
            WatchOptions::every(Duration::from_secs(600)).with_max_backoff(Duration::from_secs(1));
        assert_eq!(slow.delay(5), Duration::from_secs(600));
        assert_eq!(WatchOptions::default().interval, Duration::from_secs(30));
    }
}
