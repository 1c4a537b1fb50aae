//! Dynamic database credentials (`<mount>/creds/<role>`) with their lease kept alive.
//!
//! [`SecretProvider::database_credentials`] issues a user and starts a task that renews the
//! lease at two thirds of its duration. When a renewal is refused (the lease is gone) or capped
//! (the role's `max_ttl` is near), the task issues new credentials and swaps them in:
//! [`DatabaseCredentials::current`] always returns the pair to use, and
//! [`DatabaseCredentials::generation`] tells a connection pool when to reconnect. While
//! OpenBao is unreachable the current pair is kept (it is valid until its lease ends) and the
//! task retries on the start-up backoff.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use secrecy::SecretString;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use warden_bao::Client;
use warden_bao::lease::redacted_lease_id;

use crate::error::Error;
use crate::provider::SecretProvider;
use crate::settings::Settings;

/// One database user: name, password (wiped on drop, never printed) and its lease.
#[derive(Clone)]
pub struct DbCredentials {
    /// The database user OpenBao created.
    pub username: String,
    /// Its password.
    pub password: SecretString,
    /// The lease id (needed to revoke; printed redacted).
    pub lease_id: String,
    /// The lease's duration when last issued or renewed.
    pub lease_duration: Duration,
}

impl fmt::Debug for DbCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbCredentials")
            .field("username", &self.username)
            .field("password", &"...")
            .field("lease_id", &redacted_lease_id(&self.lease_id))
            .field("lease_duration", &self.lease_duration)
            .finish()
    }
}

/// Credentials kept alive in the background. Dropping it stops renewing (the lease then ends
/// on its own); [`DatabaseCredentials::revoke`] drops the user now.
pub struct DatabaseCredentials {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Shared {
    current: RwLock<Arc<DbCredentials>>,
    renewals: AtomicU64,
    generation: AtomicU64,
}

impl fmt::Debug for DatabaseCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseCredentials")
            .field("current", &self.current())
            .field("renewals", &self.renewals())
            .field("generation", &self.generation())
            .finish()
    }
}

impl DatabaseCredentials {
    /// The pair to use now.
    pub fn current(&self) -> Arc<DbCredentials> {
        self.shared
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Successful lease renewals so far.
    pub fn renewals(&self) -> u64 {
        self.shared.renewals.load(Ordering::Relaxed)
    }

    /// 0 for the first pair, +1 each time new credentials replaced the old ones.
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Relaxed)
    }

    /// Stops renewing and revokes the current lease (the database drops the user).
    pub async fn revoke(self, provider: &SecretProvider) -> Result<(), Error> {
        self.task.abort();
        let lease = self.current().lease_id.clone();
        provider
            .client()
            .lease_revoke(&lease)
            .await
            .map_err(|e| Error::Unavailable {
                path: redacted_lease_id(&lease),
                source: Box::new(e),
            })
    }
}

impl Drop for DatabaseCredentials {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SecretProvider {
    /// Issues credentials from `<mount>/creds/<role>` and keeps them alive (module docs).
    pub async fn database_credentials(
        &self,
        mount: &str,
        role: &str,
    ) -> Result<DatabaseCredentials, Error> {
        let path = format!(
            "{}/creds/{}",
            mount.trim_matches('/'),
            role.trim_matches('/')
        );
        let first = issue(self.client(), &path).await?;
        tracing::info!(creds = %path, username = %first.username, ttl_s = first.lease_duration.as_secs(), "database credentials issued");
        let shared = Arc::new(Shared {
            current: RwLock::new(Arc::new(first)),
            renewals: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        });
        let task = tokio::spawn(keep_alive(
            self.client().clone(),
            *self.settings(),
            path,
            shared.clone(),
        ));
        Ok(DatabaseCredentials { shared, task })
    }
}

async fn issue(client: &Client, path: &str) -> Result<DbCredentials, Error> {
    let c = client
        .database_credentials(path)
        .await
        .map_err(|e| Error::Unavailable {
            path: path.to_owned(),
            source: Box::new(e),
        })?;
    Ok(DbCredentials {
        username: c.username,
        password: c.password,
        lease_id: c.lease.lease_id.clone(),
        lease_duration: c.lease.duration(),
    })
}

async fn keep_alive(client: Client, settings: Settings, path: String, shared: Arc<Shared>) {
    loop {
        let now = shared
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if now.lease_duration.is_zero() {
            return; // not leased: nothing to renew
        }
        let renew_at = Instant::now() + (now.lease_duration * 2 / 3).max(Duration::from_secs(1));
        tokio::time::sleep_until(renew_at).await;
        let mut delays = settings.backoff();
        loop {
            let renewed = client
                .lease_renew(&now.lease_id, Some(now.lease_duration))
                .await;
            let replace = match renewed {
                // Granted at least half of what was asked: keep this user.
                Ok(lease) if lease.duration() * 2 >= now.lease_duration => {
                    let mut next = (*now).clone();
                    next.lease_duration = lease.duration();
                    *shared
                        .current
                        .write()
                        .unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
                    shared.renewals.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(creds = %path, ttl_s = lease.duration().as_secs(), "lease renewed");
                    break;
                }
                // Capped by max_ttl, or the lease is gone: a new user.
                Ok(_) => true,
                Err(e) if !e.is_retryable() => true,
                Err(e) => {
                    let delay = delays.next().unwrap_or(settings.retry_max);
                    tracing::warn!(creds = %path, delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), reason = %e, "lease renewal failed; keeping the current credentials");
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            if replace {
                match issue(&client, &path).await {
                    Ok(fresh) => {
                        tracing::info!(creds = %path, username = %fresh.username, "database credentials replaced");
                        *shared
                            .current
                            .write()
                            .unwrap_or_else(PoisonError::into_inner) = Arc::new(fresh);
                        shared.generation.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Err(e) => {
                        let delay = delays.next().unwrap_or(settings.retry_max);
                        tracing::warn!(creds = %path, delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), reason = %e, "issuing new database credentials failed; retrying");
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        }
    }
}
