//! [`SecretProvider::watch`]: poll a KV secret and call back when it changes.
//!
//! Polling, at `VAULT_WATCH_INTERVAL_SEC` (30 s by default): one read per interval per watched
//! secret. A KV v2 secret changes when its version does; a KV v1 secret (no versions) when its
//! data does. While OpenBao is sealed or unreachable the poll fails, is logged (path and
//! reason, never a value), and the last good value stays in the cache; the next successful poll
//! delivers whatever changed meanwhile, once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;

use warden_bao::KvError;

use crate::error::Error;
use crate::provider::SecretProvider;
use crate::secret::{Secret, SecretPath};

/// A running watch. Dropping it (or [`WatchHandle::stop`]) ends the polling task.
#[derive(Debug)]
pub struct WatchHandle {
    task: JoinHandle<()>,
    stats: Arc<Stats>,
}

#[derive(Debug, Default)]
struct Stats {
    polls: AtomicU64,
    failures: AtomicU64,
    changes: AtomicU64,
}

impl WatchHandle {
    /// Polls made.
    pub fn polls(&self) -> u64 {
        self.stats.polls.load(Ordering::Relaxed)
    }

    /// Polls that failed (OpenBao unavailable, denied...).
    pub fn failures(&self) -> u64 {
        self.stats.failures.load(Ordering::Relaxed)
    }

    /// Changes delivered to the callback.
    pub fn changes(&self) -> u64 {
        self.stats.changes.load(Ordering::Relaxed)
    }

    /// Stops polling.
    pub fn stop(self) {}
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SecretProvider {
    /// Polls `path` every `VAULT_WATCH_INTERVAL_SEC` and calls `on_change` with the new value
    /// each time it changes (not at start). See [`SecretProvider::watch_every`].
    pub fn watch<F>(&self, path: SecretPath, on_change: F) -> WatchHandle
    where
        F: Fn(&Secret) + Send + Sync + 'static,
    {
        self.watch_every(path, self.settings().watch_interval, on_change)
    }

    /// Like [`SecretProvider::watch`] with an explicit interval. The baseline is the cached
    /// value if this provider has read the secret, else an immediate first read; a secret absent then
    /// and written later is a change. Every
    /// successful poll refreshes the cache, so [`SecretProvider::get`] serves it as the last
    /// good value during an outage. Needs a Tokio runtime.
    pub fn watch_every<F>(&self, path: SecretPath, interval: Duration, on_change: F) -> WatchHandle
    where
        F: Fn(&Secret) + Send + Sync + 'static,
    {
        let stats = Arc::new(Stats::default());
        let provider = self.clone();
        let task_stats = stats.clone();
        let task = tokio::spawn(async move {
            // `None`: not known yet; `Some(None)`: known to be absent (its creation is a change).
            let mut seen: Option<Option<Secret>> = provider.cached(&path).map(Some);
            if seen.is_none() {
                seen = match provider.fetch(&path).await {
                    Ok(now) => {
                        provider.remember(&now);
                        Some(Some(now))
                    }
                    Err(Error::Kv(e)) if matches!(*e, KvError::NotFound { .. }) => Some(None),
                    Err(_) => None,
                };
            }
            loop {
                tokio::time::sleep(interval).await;
                task_stats.polls.fetch_add(1, Ordering::Relaxed);
                match provider.fetch(&path).await {
                    Ok(now) => {
                        provider.remember(&now);
                        let changed = match &seen {
                            None => false,
                            Some(None) => true,
                            Some(Some(old)) => match now.version {
                                Some(v) => old.version != Some(v),
                                None => *old.data != *now.data,
                            },
                        };
                        if changed {
                            task_stats.changes.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(secret = %path, version = now.version, "secret changed");
                            on_change(&now);
                        }
                        seen = Some(Some(now));
                    }
                    Err(Error::Kv(e))
                        if matches!(*e, KvError::NotFound { .. })
                            && !matches!(seen, Some(Some(_))) =>
                    {
                        seen = Some(None);
                    }
                    Err(e) => {
                        task_stats.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(secret = %path, reason = %e, "watch poll failed; keeping the last good value");
                    }
                }
            }
        });
        WatchHandle { task, stats }
    }
}
