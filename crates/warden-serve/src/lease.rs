//! The leader lease: one KV v2 record per environment (`warden/serve/lease`,
//! [`warden_spec::naming::serve_lease`]) holding the holder's id, a term and when the lease
//! ends by the server's clock. Every change is a check-and-set on the version just read, so of
//! two replicas racing for an expired lease exactly one wins, and the winner's term is one
//! more than the last: a record written under an older term is recognisably stale.
//!
//! The holder renews every TTL/3. It trusts its own lease only until a local deadline computed
//! *before* the read that preceded the write, minus the `Date` header's one second and a
//! margin, so it stops acting strictly before any other replica may take over (which needs the
//! server's clock past `expires_at`).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use warden_bao::Client;
use warden_spec::naming;

use crate::clock::{DATE_SLACK, server_now, unix_ms};
use crate::error::{Error, Result};
use crate::kvrec::{self, Cas};

/// The shortest TTL that leaves a holder time to act: the local deadline is TTL minus the
/// `Date` slack (1 s) minus a tenth, and renewals come every TTL/3.
pub const MIN_TTL: Duration = Duration::from_secs(3);

/// The longest TTL: a holder that dies leaves the lease unusable for up to a TTL, and a
/// larger one (`--lease-ttl 1000000y`) overflowed the monotonic clock when the local deadline
/// was computed, a panic that silently ended the environment's worker.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// The lease as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Replica id of the holder (`--id`, default host name and process id).
    pub holder: String,
    /// Leadership term: 1 for the first holder, one more at every takeover.
    pub term: u64,
    /// When the lease ends, Unix milliseconds by the server's clock (0: released).
    pub expires_at_ms: u64,
    /// The TTL the holder renews with, milliseconds.
    pub ttl_ms: u64,
    /// When this term began (server's clock, Unix milliseconds).
    pub since_ms: u64,
    /// The holding process: a nonce drawn at start. Two processes started with the same
    /// `--id` (a careless copy of a unit) would otherwise each read the lease as their own and
    /// both renew it and run jobs; with it, the second follows. Empty in records written
    /// before it existed (such a lease is another process's until it expires).
    #[serde(default)]
    pub instance: String,
}

/// A fresh process nonce for [`Lease::with_instance`]: 64 bits from the standard library's
/// per-process random hash keys, mixed with the process id and the time. Not a secret; it
/// only has to differ between two processes.
pub fn new_instance() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    format!("{:016x}", h.finish())
}

/// The lease held now: its term and until when this process may act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Leadership term.
    pub term: u64,
    /// The local deadline: after it, nothing is done under this term.
    pub valid_until: Instant,
}

impl Held {
    /// Still usable now?
    pub fn valid(&self) -> bool {
        Instant::now() < self.valid_until
    }
}

/// What one lease step found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// This replica holds the lease (`taken`: it just became the holder).
    Leader {
        /// The lease.
        held: Held,
        /// Whether this step took it (a new term), rather than renewed it.
        taken: bool,
    },
    /// Another replica holds an unexpired lease.
    Follower(LeaseRecord),
}

/// One replica's side of the lease in one environment.
#[derive(Debug, Clone)]
pub struct Lease {
    env: String,
    holder: String,
    instance: String,
    ttl: Duration,
}

impl Lease {
    /// `holder`'s lease in `env`, renewed with `ttl` ([`MIN_TTL`] at least).
    pub fn new(env: &str, holder: &str, ttl: Duration) -> Result<Self> {
        if ttl < MIN_TTL {
            return Err(Error::Settings(format!(
                "lease TTL {} ms is below the minimum of {} s: the holder would have no time to act before its lease may pass to another replica",
                ttl.as_millis(),
                MIN_TTL.as_secs()
            )));
        }
        if ttl > MAX_TTL {
            return Err(Error::Settings(format!(
                "lease TTL {} s is above the maximum of {} s: a replica that dies would hold the lease that long",
                ttl.as_secs(),
                MAX_TTL.as_secs()
            )));
        }
        if holder.is_empty() {
            return Err(Error::Settings("the replica id is empty".into()));
        }
        Ok(Self {
            env: env.to_owned(),
            holder: holder.to_owned(),
            instance: new_instance(),
            ttl,
        })
    }

    /// The same lease held by the process `instance` ([`new_instance`]; the API compares it
    /// too, so it must be the process's one nonce).
    #[must_use]
    pub fn with_instance(mut self, instance: &str) -> Self {
        instance.clone_into(&mut self.instance);
        self
    }

    /// Whether `rec` was written by this very process (not merely by the same `--id`).
    pub fn is_mine(&self, rec: &LeaseRecord) -> bool {
        rec.holder == self.holder && rec.instance == self.instance
    }

    /// How often the holder renews (and a follower looks): TTL/3.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    fn deadline(&self, before: Instant) -> Instant {
        before + self.ttl - DATE_SLACK - self.ttl / 10
    }

    /// The stored lease, if any.
    pub async fn read(&self, client: &Client) -> Result<Option<(LeaseRecord, u64)>> {
        let entry = naming::serve_lease();
        match kvrec::read(client, &self.env, &entry).await? {
            None => Ok(None),
            Some((Value::Null, v)) => Ok(Some((released(), v))),
            Some((data, v)) => {
                let rec = serde_json::from_value(data).map_err(|e| Error::Record {
                    env: self.env.clone(),
                    path: entry.data_path(),
                    reason: e.to_string(),
                })?;
                Ok(Some((rec, v)))
            }
        }
    }

    /// Takes the lease if it is free or expired, renews it if this replica holds it, or
    /// reports the holder. A lost check-and-set race is reported as the winner's record.
    pub async fn step(&self, client: &Client) -> Result<Step> {
        let before = Instant::now();
        let current = self.read(client).await?;
        let now = unix_ms(server_now(client));
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let (record, cas, taken) = match current {
            None => (self.record(1, now, now, ttl_ms), 0, true),
            Some((rec, v)) if rec.expires_at_ms <= now => {
                (self.record(rec.term + 1, now, now, ttl_ms), v, true)
            }
            Some((rec, v)) if self.is_mine(&rec) => {
                (self.record(rec.term, rec.since_ms, now, ttl_ms), v, false)
            }
            Some((rec, _)) => return Ok(Step::Follower(rec)),
        };
        let term = record.term;
        let data = serde_json::to_value(&record).expect("a lease record serializes");
        match kvrec::write_cas(client, &self.env, &naming::serve_lease(), data, cas).await? {
            Cas::Written(_) => Ok(Step::Leader {
                held: Held {
                    term,
                    valid_until: self.deadline(before),
                },
                taken,
            }),
            Cas::Lost => match self.read(client).await? {
                Some((rec, _)) => Ok(Step::Follower(rec)),
                None => Ok(Step::Follower(released())),
            },
        }
    }

    /// Ends this replica's lease now (graceful shutdown), so another replica need not wait for
    /// the TTL. Does nothing when another replica holds it.
    pub async fn release(&self, client: &Client, term: u64) -> Result<bool> {
        let Some((rec, v)) = self.read(client).await? else {
            return Ok(false);
        };
        if !self.is_mine(&rec) || rec.term != term {
            return Ok(false);
        }
        let mut done = rec;
        done.expires_at_ms = 0;
        let data = serde_json::to_value(&done).expect("a lease record serializes");
        Ok(matches!(
            kvrec::write_cas(client, &self.env, &naming::serve_lease(), data, v).await?,
            Cas::Written(_)
        ))
    }

    fn record(&self, term: u64, since_ms: u64, now: u64, ttl_ms: u64) -> LeaseRecord {
        LeaseRecord {
            holder: self.holder.clone(),
            term,
            expires_at_ms: now.saturating_add(ttl_ms),
            ttl_ms,
            since_ms,
            instance: self.instance.clone(),
        }
    }
}

/// A lease whose newest version was deleted by hand: free, and its term unknown (0).
fn released() -> LeaseRecord {
    LeaseRecord {
        holder: String::new(),
        term: 0,
        expires_at_ms: 0,
        ttl_ms: 0,
        since_ms: 0,
        instance: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_ttl_is_refused_with_the_reason() {
        let err = Lease::new("test", "a", Duration::from_secs(2)).unwrap_err();
        assert!(
            err.to_string().contains("below the minimum of 3 s"),
            "{err}"
        );
        assert!(Lease::new("test", "a", MIN_TTL).is_ok());
        assert!(Lease::new("test", "a", MAX_TTL).is_ok());
        let err = Lease::new("test", "a", Duration::from_secs(u64::MAX)).unwrap_err();
        assert!(err.to_string().contains("above the maximum"), "{err}");
    }

    #[test]
    fn the_local_deadline_ends_before_the_server_side_expiry() {
        let lease = Lease::new("test", "a", Duration::from_secs(3)).unwrap();
        let before = Instant::now();
        let until = lease.deadline(before);
        // 3 s TTL: 1 s of Date slack and 300 ms of margin come off.
        assert_eq!(until - before, Duration::from_millis(1700));
        assert!(lease.renew_every() < until - before);
    }
}
