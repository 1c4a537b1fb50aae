//! Dynamic database credentials: one lease per `[[database]]` source, shared by every template
//! that reads it, kept alive and replaced before it ends.
//!
//! ```text
//!  template renders database("main") ──► LeaseBook::credentials ──► current lease? ─ yes ─► it
//!                                                                      └─ no/expired ─► issue
//!  source task ("main") ──► renew at 2/3 of each grant (sys/leases/renew)
//!                      └──► issue new credentials `reissue_margin` before the end once the lease
//!                           cannot be extended (max_ttl reached, not renewable, renewal refused,
//!                           lease gone, or the token that created it is being replaced)
//!                           ──► wakes every template that used the source: it re-renders,
//!                               delivers atomically and runs its reload once
//! ```
//!
//! **One lease per source, never one per render.** The book holds the current lease behind an
//! async mutex; a render takes it, and only a render that finds no usable lease issues one
//! (every other render, concurrent or later, gets the same). Polls re-render templates
//! from the same lease, so their bytes do not change and nothing is reloaded.
//!
//! **Why a token change means new credentials.** OpenBao revokes a token's leases when the
//! token ends. The auth task replaces the token near its maximum lifetime (or when it is
//! refused), so the lease the old token created would die with it: the source issues new
//! credentials with the new token at once.
//!
//! **Restarts.** The password lives in memory only (state files never hold secrets), so a
//! restarted agent cannot reuse the credentials it delivered before: the first render issues
//! new ones. The previous run's lease id is in `state/database/<source>.json`; once every
//! template has had its first attempt and every template that reads the source has delivered
//! the new credentials, that lease is revoked (`sys/leases/revoke`), so restarts do not pile up
//! live database users while a service is never left holding revoked credentials.
//!
//! **Stopping.** A stopping agent normally revokes its token; while it holds a live database
//! lease it does not (see `runtime`), because revoking the token revokes the lease and would
//! cut the service off its database until the next start.
//!
//! **Outages.** A failed renewal is retried with the output backoff (1 s doubling to 5 min)
//! until the lease is over (renewing keeps the service's credentials; a server that cannot
//! renew cannot issue either), then new credentials are tried the same way; the templates keep
//! what they delivered, and the source reports `stale` (still inside its lease) or `failed`
//! (lease over). A refused renewal (permission denied) is treated like a capped lease.
//!
//! Nothing here logs or records a username or password; lease ids appear in logs by their path
//! only (`postgres/creds/billing/...`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use secrecy::SecretString;
use time::OffsetDateTime;
use tokio::sync::watch;
use warden_bao::lease::redacted_lease_id;

pub use super::board::DatabaseStatus;
use super::board::{DatabaseStatuses, Health, Shared};
use super::config::DatabaseSource;
use super::output::{BoxFuture, DatabaseCredentials, DbCredentials, DbCredentialsError};
use super::schedule::{self, Backoff, LeaseStep, LeaseTimes, to_std};
use super::state::{DatabaseState, StateDir};

/// Every source's lease, and who has delivered what.
pub(crate) struct LeaseBook {
    slots: Vec<Arc<Slot>>,
    /// Template outputs: the first round is over when each has had an attempt.
    templates: BTreeSet<String>,
    progress: Mutex<Progress>,
    /// Bumped whenever `progress` changes, so source tasks re-check what they wait for.
    progress_tx: watch::Sender<u64>,
    states: StateDir,
    /// Wakes an output task (re-renders it).
    wake: Box<dyn Fn(&str) + Send + Sync>,
}

#[derive(Default)]
struct Progress {
    /// Template outputs that have had at least one attempt.
    attempted: BTreeSet<String>,
    /// Source → outputs that read it.
    users: BTreeMap<String, BTreeSet<String>>,
    /// (source, output) → generation of the credentials last delivered.
    delivered: BTreeMap<(String, String), u64>,
}

struct Slot {
    source: DatabaseSource,
    lease: tokio::sync::Mutex<Option<Held>>,
    board: Mutex<Board>,
    /// A render issued credentials: the source task has a lease to look after now.
    issued: tokio::sync::Notify,
    /// The previous run's lease, to revoke once the new credentials are delivered.
    previous: Mutex<Option<DatabaseState>>,
}

/// The lease held, with its credentials. Never logged, never written.
struct Held {
    id: String,
    username: String,
    password: SecretString,
    generation: u64,
    /// The login (token generation) that issued it.
    token_gen: u64,
    times: LeaseTimes,
    /// The lease's end as issued (what templates see as `expires`).
    issued_expires: OffsetDateTime,
    /// A renewal said the lease is gone (expired, revoked): replace it now.
    gone: bool,
}

impl Held {
    fn view(&self) -> DbCredentials {
        DbCredentials {
            username: self.username.clone(),
            password: self.password.clone(),
            expires: self.issued_expires,
            generation: self.generation,
        }
    }
}

/// What status shows of a slot (mirrors the lease without its secrets).
#[derive(Default)]
struct Board {
    generation: u64,
    issued_at: Option<OffsetDateTime>,
    expires: Option<OffsetDateTime>,
    final_expiry: bool,
    next: Option<(LeaseStep, OffsetDateTime)>,
    issues: u64,
    renewals: u64,
    revocations: u64,
    errors: u64,
    failures: u32,
    last_error: Option<String>,
    /// The last failure is one waiting will not fix (permission denied, not a creds path).
    permanent: bool,
}

impl Board {
    fn health(&self, now: OffsetDateTime) -> Health {
        let live = self.expires.is_some_and(|e| e > now);
        let failing = self.failures > 0;
        match (self.generation > 0, live, failing) {
            (false, _, false) => Health::Pending,
            (true, true, false) => Health::Fresh,
            // The delivered credentials still work while the lease lives, whatever the failure.
            (true, true, true) => Health::Stale,
            _ => Health::Failed,
        }
    }

    fn failed(&mut self, message: String, permanent: bool) {
        self.errors += 1;
        self.failures += 1;
        self.last_error = Some(message);
        self.permanent = permanent;
    }

    fn succeeded(&mut self) {
        self.failures = 0;
        self.last_error = None;
        self.permanent = false;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A renewal or revocation answered that the lease does not exist (any more).
fn lease_gone(e: &warden_bao::Error) -> bool {
    e.is_not_found() || e.status() == Some(400)
}

impl LeaseBook {
    /// The book for `sources`. Reads each source's previous lease from `states` (to revoke it
    /// once replaced). `templates` are the template outputs; `wake` re-renders an output.
    pub(crate) fn new(
        sources: &[DatabaseSource],
        templates: BTreeSet<String>,
        states: StateDir,
        wake: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Self {
        let slots = sources
            .iter()
            .map(|s| {
                let previous = states
                    .load_database(&s.name)
                    .filter(|p| p.path == s.path && !p.lease_id.is_empty());
                Arc::new(Slot {
                    source: s.clone(),
                    lease: tokio::sync::Mutex::new(None),
                    board: Mutex::new(Board::default()),
                    issued: tokio::sync::Notify::new(),
                    previous: Mutex::new(previous),
                })
            })
            .collect();
        let (progress_tx, _) = watch::channel(0);
        Self {
            slots,
            templates,
            progress: Mutex::new(Progress::default()),
            progress_tx,
            states,
            wake,
        }
    }

    /// How many sources there are (one task each).
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    fn slot(&self, name: &str) -> Option<&Arc<Slot>> {
        self.slots.iter().find(|s| s.source.name == name)
    }

    /// The current credentials of `source` for `output`, issuing them when there are none (or
    /// the lease is over). `output` is recorded as a user of the source.
    pub(crate) async fn credentials(
        &self,
        shared: &Shared,
        source: &str,
        output: &str,
    ) -> Result<DbCredentials, DbCredentialsError> {
        let Some(slot) = self.slot(source) else {
            return Err(DbCredentialsError::UnknownSource {
                name: source.to_owned(),
                known: self.slots.iter().map(|s| s.source.name.clone()).collect(),
            });
        };
        lock(&self.progress)
            .users
            .entry(source.to_owned())
            .or_default()
            .insert(output.to_owned());
        let mut held = slot.lease.lock().await;
        if let Some(h) = held.as_ref()
            && h.times.expires() > shared.now()
        {
            return Ok(h.view());
        }
        let new = self.issue(shared, slot).await?;
        let view = new.view();
        *held = Some(new);
        drop(held);
        slot.issued.notify_one();
        self.wake_users(source, Some(output));
        Ok(view)
    }

    /// Issues new credentials for `slot` (one request) and records them: status, state file,
    /// log (by lease path only).
    async fn issue(&self, shared: &Shared, slot: &Slot) -> Result<Held, DbCredentialsError> {
        let path = &slot.source.path;
        let token_gen = shared.token_generation();
        shared.count_request();
        let creds = match shared.client.database_credentials(path).await {
            Ok(c) => c,
            Err(e) => {
                let permanent = !(e.is_retryable() || e.is_sealed() || e.is_unreachable());
                lock(&slot.board).failed(format!("issuing credentials: {e}"), permanent);
                if e.is_permission_denied() {
                    shared.hint_relogin();
                }
                return Err(DbCredentialsError::Bao {
                    path: path.clone(),
                    source: Box::new(e),
                });
            }
        };
        let now = shared.now();
        let ttl = creds.lease.duration();
        let times = LeaseTimes {
            issued_at: now,
            ttl,
            granted_at: now,
            granted: ttl,
            renewable: creds.lease.renewable,
            capped: false,
            renew_refused: false,
        };
        let generation = {
            let mut b = lock(&slot.board);
            b.generation += 1;
            b.issues += 1;
            b.issued_at = Some(now);
            b.expires = Some(times.expires());
            b.final_expiry = !times.renewable;
            b.succeeded();
            b.generation
        };
        let held = Held {
            id: creds.lease.lease_id,
            username: creds.username,
            password: creds.password,
            generation,
            token_gen,
            issued_expires: times.expires(),
            times,
            gone: false,
        };
        tracing::info!(
            database = %slot.source.name,
            lease = %redacted_lease_id(&held.id),
            generation,
            ttl_s = ttl.as_secs(),
            renewable = times.renewable,
            "issued database credentials"
        );
        self.record(slot, &held);
        Ok(held)
    }

    /// Writes `state/database/<source>.json` for `held` (id and times only).
    fn record(&self, slot: &Slot, held: &Held) {
        let state = DatabaseState {
            path: slot.source.path.clone(),
            lease_id: held.id.clone(),
            issued_at: held.times.issued_at,
            expires: held.times.expires(),
            generation: held.generation,
        };
        if let Err(e) = self.states.save_database(&slot.source.name, &state) {
            tracing::warn!(database = %slot.source.name, error = %e, "could not record the lease");
        }
    }

    /// Re-renders every output that read `source` (except `except`, which is rendering now).
    fn wake_users(&self, source: &str, except: Option<&str>) {
        let users: Vec<String> = lock(&self.progress)
            .users
            .get(source)
            .map(|u| {
                u.iter()
                    .filter(|o| Some(o.as_str()) != except)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for u in users {
            (self.wake)(&u);
        }
    }

    /// A template output finished an attempt (delivered or not).
    pub(crate) fn attempted(&self, output: &str) {
        if self.slots.is_empty() {
            return;
        }
        if lock(&self.progress).attempted.insert(output.to_owned()) {
            self.progress_tx.send_modify(|n| *n += 1);
        }
    }

    /// `output` delivered content rendered from these sources and generations.
    pub(crate) fn delivered(&self, output: &str, generations: &BTreeMap<String, u64>) {
        if generations.is_empty() {
            return;
        }
        {
            let mut p = lock(&self.progress);
            for (source, g) in generations {
                p.delivered.insert((source.clone(), output.to_owned()), *g);
            }
        }
        self.progress_tx.send_modify(|n| *n += 1);
    }

    /// Every template has had its first attempt and every reader of `source` has delivered
    /// credentials from this run: the previous run's lease is no longer in any file.
    fn replaced_everywhere(&self, source: &str) -> bool {
        let p = lock(&self.progress);
        self.templates.iter().all(|t| p.attempted.contains(t))
            && p.users.get(source).is_none_or(|users| {
                users
                    .iter()
                    .all(|u| p.delivered.contains_key(&(source.to_owned(), u.clone())))
            })
    }

    /// Revokes the previous run's lease of `slot` once it is replaced everywhere. Best effort:
    /// a policy without `sys/leases/revoke` or a lease already gone ends the attempt; an outage
    /// leaves it for the next wake (the lease ends on its own anyway).
    async fn retire_previous(&self, shared: &Shared, slot: &Slot) {
        let Some(prev) = lock(&slot.previous).clone() else {
            return;
        };
        let name = &slot.source.name;
        if prev.expires <= shared.now() {
            *lock(&slot.previous) = None;
            return;
        }
        if !self.replaced_everywhere(name) {
            return;
        }
        let lease = redacted_lease_id(&prev.lease_id);
        shared.count_request();
        match shared.client.lease_revoke(&prev.lease_id).await {
            Ok(()) => {
                tracing::info!(database = %name, %lease, "revoked the previous run's lease");
                lock(&slot.board).revocations += 1;
                *lock(&slot.previous) = None;
            }
            Err(e) if lease_gone(&e) => {
                *lock(&slot.previous) = None;
            }
            Err(e) if e.is_permission_denied() => {
                tracing::warn!(database = %name, %lease, expires = %prev.expires, error = %e, "cannot revoke the previous run's lease (the policy needs `update` on sys/leases/revoke); it ends on its own");
                lock(&slot.board).errors += 1;
                *lock(&slot.previous) = None;
            }
            Err(e) => {
                tracing::debug!(database = %name, %lease, error = %e, "revoking the previous run's lease failed; will retry");
            }
        }
    }

    /// `--once`: revokes what the previous run left, where it is replaced everywhere.
    pub(crate) async fn retire_all_previous(&self, shared: &Shared) {
        for slot in &self.slots {
            self.retire_previous(shared, slot).await;
        }
    }

    /// Some source holds a lease that has not ended.
    pub(crate) fn holds_live_lease(&self, now: OffsetDateTime) -> bool {
        self.slots
            .iter()
            .any(|s| lock(&s.board).expires.is_some_and(|e| e > now))
    }

    /// Every source's status, in config order.
    pub(crate) fn statuses(&self, now: OffsetDateTime) -> Vec<DatabaseStatus> {
        self.slots
            .iter()
            .map(|s| {
                let b = lock(&s.board);
                DatabaseStatus {
                    name: s.source.name.clone(),
                    path: s.source.path.clone(),
                    health: b.health(now),
                    generation: b.generation,
                    issued_at: b.issued_at,
                    expires: b.expires,
                    final_expiry: b.final_expiry,
                    next_step: b.next.map(|(s, _)| s.as_str()),
                    next_due: b.next.map(|(_, t)| t),
                    issues: b.issues,
                    renewals: b.renewals,
                    revocations: b.revocations,
                    errors: b.errors,
                    failures: b.failures,
                    last_error: b.last_error.clone(),
                }
            })
            .collect()
    }

    /// What `slot` does next, or `None` while it holds no lease.
    async fn plan(
        &self,
        slot: &Slot,
        now: OffsetDateTime,
        token_gen: u64,
    ) -> Option<(LeaseStep, OffsetDateTime)> {
        let held = slot.lease.lock().await;
        let h = held.as_ref()?;
        if h.gone || h.token_gen < token_gen {
            return Some((LeaseStep::Reissue, now));
        }
        schedule::lease_next(&h.times, now)
    }

    /// Carries out `step`. `Err(())` when it failed (recorded in the status) and should be
    /// retried after a backoff.
    async fn act(&self, shared: &Shared, slot: &Slot, step: LeaseStep) -> Result<(), ()> {
        let name = &slot.source.name;
        let mut held = slot.lease.lock().await;
        match step {
            LeaseStep::Renew => {
                let Some(h) = held.as_mut() else {
                    return Ok(());
                };
                shared.count_request();
                match shared.client.lease_renew(&h.id, Some(h.times.ttl)).await {
                    Ok(lease) => {
                        let now = shared.now();
                        let granted = lease.duration();
                        h.times.granted_at = now;
                        h.times.granted = granted;
                        h.times.renew_refused = false;
                        if granted < h.times.ttl || !lease.renewable {
                            h.times.capped = true;
                        }
                        {
                            let mut b = lock(&slot.board);
                            b.renewals += 1;
                            b.expires = Some(h.times.expires());
                            b.final_expiry = h.times.capped;
                            b.succeeded();
                        }
                        tracing::debug!(database = %name, lease = %redacted_lease_id(&h.id), granted_s = granted.as_secs(), capped = h.times.capped, "renewed the database lease");
                        if h.times.capped {
                            tracing::info!(database = %name, expires = %h.times.expires(), "the database lease cannot be extended further; new credentials follow before it ends");
                        }
                        self.record(slot, h);
                        Ok(())
                    }
                    Err(e) if lease_gone(&e) => {
                        tracing::info!(database = %name, error = %e, "the database lease is gone; issuing new credentials");
                        h.gone = true;
                        Ok(())
                    }
                    Err(e) => {
                        let permanent = e.is_permission_denied();
                        if permanent {
                            // Maybe the token; if not, only new credentials can help.
                            h.times.renew_refused = true;
                            shared.hint_relogin();
                        }
                        tracing::warn!(database = %name, error = %e, "renewing the database lease failed");
                        lock(&slot.board).failed(format!("renewing the lease: {e}"), permanent);
                        Err(())
                    }
                }
            }
            LeaseStep::Reissue => match self.issue(shared, slot).await {
                Ok(new) => {
                    *held = Some(new);
                    drop(held);
                    self.wake_users(name, None);
                    Ok(())
                }
                Err(e) => {
                    tracing::warn!(database = %name, error = %e, "issuing new database credentials failed");
                    Err(())
                }
            },
        }
    }
}

/// The task of one source: renews its lease and replaces it before it ends, revokes the
/// previous run's lease once replaced, until shutdown.
pub(crate) async fn run_source(shared: Arc<Shared>, book: Arc<LeaseBook>, index: usize) {
    let Some(slot) = book.slots.get(index).cloned() else {
        return;
    };
    let mut shutdown = shared.shutdown_signal();
    let mut tokens = shared.token_receiver();
    let mut progress = book.progress_tx.subscribe();
    let mut backoff = Backoff::default();
    let mut retry_at: Option<OffsetDateTime> = None;
    loop {
        if shared.stopping() {
            return;
        }
        let token_gen = *tokens.borrow_and_update();
        progress.borrow_and_update();
        if token_gen > 0 {
            book.retire_previous(&shared, &slot).await;
        }
        let now = shared.now();
        let plan = book
            .plan(&slot, now, token_gen)
            .await
            .map(|(step, at)| (step, retry_at.map_or(at, |r| at.max(r))));
        lock(&slot.board).next = plan;
        let wait = match plan {
            Some((_, at)) if at <= now => None,
            Some((_, at)) => Some(to_std(at - now).min(Duration::from_secs(3600))),
            None => Some(Duration::from_secs(3600)),
        };
        if let Some(wait) = wait {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = slot.issued.notified() => {}
                _ = tokens.changed() => {}
                _ = progress.changed() => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        let Some((step, _)) = plan else { continue };
        let result = tokio::select! {
            r = book.act(&shared, &slot, step) => r,
            _ = shutdown.changed() => return,
        };
        match result {
            Ok(()) => {
                backoff.reset();
                retry_at = None;
            }
            Err(()) => {
                let wait = backoff.fail(schedule::random_unit());
                retry_at = Some(
                    shared.now() + time::Duration::try_from(wait).unwrap_or(time::Duration::MAX),
                );
            }
        }
    }
}

/// What a template render reads `database()` through: the book, and the board it counts
/// requests on.
pub(crate) struct Reader<'a> {
    pub(crate) book: &'a LeaseBook,
    pub(crate) shared: &'a Shared,
}

impl DatabaseCredentials for Reader<'_> {
    fn credentials<'a>(
        &'a self,
        source: &'a str,
        output: &'a str,
    ) -> BoxFuture<'a, Result<DbCredentials, DbCredentialsError>> {
        Box::pin(self.book.credentials(self.shared, source, output))
    }
}

impl DatabaseStatuses for LeaseBook {
    fn statuses(&self, now: OffsetDateTime) -> Vec<DatabaseStatus> {
        Self::statuses(self, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_pending_fresh_stale_or_failed() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(1);
        let mut b = Board::default();
        assert_eq!(b.health(now), Health::Pending);
        b.failed("sealed".into(), false);
        assert_eq!(b.health(now), Health::Failed, "failing with nothing issued");
        b.generation = 1;
        b.expires = Some(now + time::Duration::seconds(5));
        b.succeeded();
        assert_eq!(b.health(now), Health::Fresh);
        b.failed("sealed".into(), false);
        assert_eq!(b.health(now), Health::Stale, "failing inside the lease");
        b.failed("permission denied".into(), true);
        assert_eq!(
            b.health(now),
            Health::Stale,
            "a refusal inside the lease: the delivered credentials still work"
        );
        b.succeeded();
        b.expires = Some(now - time::Duration::seconds(1));
        assert_eq!(b.health(now), Health::Failed, "the lease is over");
    }

    fn book(dir: &std::path::Path) -> LeaseBook {
        LeaseBook::new(
            &[DatabaseSource {
                name: "main".into(),
                path: "postgres/creds/billing".into(),
            }],
            ["db".to_owned(), "other".to_owned()].into(),
            StateDir::new(dir),
            Box::new(|_| {}),
        )
    }

    #[tokio::test]
    async fn a_new_login_or_a_vanished_lease_means_new_credentials_now() {
        let tmp = tempfile::tempdir().unwrap();
        let book = book(tmp.path());
        let slot = book.slots[0].clone();
        let t0 = OffsetDateTime::UNIX_EPOCH + time::Duration::days(1);
        assert_eq!(book.plan(&slot, t0, 1).await, None, "nothing issued yet");
        let ttl = Duration::from_secs(30);
        *slot.lease.lock().await = Some(Held {
            id: "postgres/creds/billing/x".into(),
            username: "u".into(),
            password: SecretString::from("p".to_owned()),
            generation: 1,
            token_gen: 1,
            times: LeaseTimes {
                issued_at: t0,
                ttl,
                granted_at: t0,
                granted: ttl,
                renewable: true,
                capped: false,
                renew_refused: false,
            },
            issued_expires: t0 + time::Duration::seconds(30),
            gone: false,
        });
        assert_eq!(
            book.plan(&slot, t0, 1).await,
            Some((LeaseStep::Renew, t0 + time::Duration::seconds(20)))
        );
        // Logged in again: the old token's leases die with it.
        assert_eq!(
            book.plan(&slot, t0, 2).await,
            Some((LeaseStep::Reissue, t0))
        );
        slot.lease.lock().await.as_mut().unwrap().gone = true;
        assert_eq!(
            book.plan(&slot, t0, 1).await,
            Some((LeaseStep::Reissue, t0))
        );
        // The view a template gets: the end as issued, and no password in Debug.
        let view = slot.lease.lock().await.as_ref().unwrap().view();
        assert_eq!(view.generation, 1);
        assert!(!format!("{view:?}").contains("\"p\""));
    }

    #[test]
    fn the_previous_lease_waits_for_every_reader_and_the_first_round() {
        let tmp = tempfile::tempdir().unwrap();
        let book = book(tmp.path());
        assert!(!book.replaced_everywhere("main"), "no attempt yet");
        lock(&book.progress)
            .users
            .entry("main".into())
            .or_default()
            .insert("db".into());
        book.attempted("db");
        book.attempted("other");
        assert!(!book.replaced_everywhere("main"), "db has not delivered");
        book.delivered("db", &[("main".to_owned(), 1)].into());
        assert!(book.replaced_everywhere("main"));
        assert_eq!(*book.progress_tx.borrow(), 3);
    }
}
