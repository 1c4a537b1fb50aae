//! The status board: what the agent's tasks know and write, and the signals they share.
//!
//! Every task (auth, the output tasks, the database sources, the delivery report) writes its
//! status here and reads the shared signals (token generation, "log in again", shutdown, the
//! clock). The board imports none of the tasks, so the arrows go one way: `runtime` starts the
//! tasks, the tasks write to the board, the health and control endpoints read it through
//! [`crate::AgentHandle`].
//!
//! One vocabulary, one meaning ([`Health`]), used by `/health`, `/metrics`, `agent status`,
//! the delivery report and posture:
//!
//! | state     | meaning |
//! |-----------|---------|
//! | `pending` | nothing issued or delivered yet, and no failure yet |
//! | `fresh`   | what is on disk is current and checked |
//! | `stale`   | usable material is on disk, but the last refresh or repair failed (degraded) |
//! | `failed`  | nothing usable is on disk (never delivered, missing, expired) and refreshing fails |

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::{Notify, watch};
use warden_bao::{Client, ServerDate};

use super::config::RenewalConfig;
use super::schedule::Clock;
use super::state::ReloadRecord;

/// How a `[[database]]` source is doing. Holds no credential and no lease id.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseStatus {
    /// The source's name.
    pub name: String,
    /// `<mount>/creds/<role>`.
    pub path: String,
    /// `pending` (nothing issued yet), `fresh`, `stale` (failing inside the lease) or `failed`
    /// (failing with the lease over, or a refusal waiting will not fix).
    pub health: Health,
    /// Credentials issued since start (the generation templates last got).
    pub generation: u64,
    /// When the current credentials were issued.
    #[serde(with = "time::serde::rfc3339::option")]
    pub issued_at: Option<OffsetDateTime>,
    /// When the current lease ends as last granted.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires: Option<OffsetDateTime>,
    /// The lease can no longer be extended (its end is final; new credentials come first).
    pub final_expiry: bool,
    /// `renew` or `reissue`.
    pub next_step: Option<&'static str>,
    /// When that is due.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_due: Option<OffsetDateTime>,
    /// Credentials issued since start.
    pub issues: u64,
    /// Successful renewals since start.
    pub renewals: u64,
    /// Leases of a previous run revoked since start.
    pub revocations: u64,
    /// Failed issues, renewals and revocations since start.
    pub errors: u64,
    /// Consecutive failures.
    pub failures: u32,
    /// The last failure, while failing.
    pub last_error: Option<String>,
}

/// How an output (or a database source) is doing; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Nothing delivered yet and no failure yet (starting, or waiting for the first login).
    Pending,
    /// What is on disk is current and checked.
    Fresh,
    /// Usable material is on disk, but the last refresh or repair failed, whatever the cause
    /// (sealed, unreachable, disk full, a refused certificate, a skewed clock, a bad template).
    Stale,
    /// Failing with nothing usable on disk (never delivered, removed, or expired).
    Failed,
}

/// The status of one output.
#[derive(Debug, Clone, Serialize)]
pub struct OutputStatus {
    /// Output name.
    pub name: String,
    /// `certificate`, `template`, `ca_chain`, `crl`, `signing_key`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Overall state.
    pub health: Health,
    /// Delivered certificate serial (certificates), issuing CA serial (CA chains) or current
    /// `kid` (signing keys).
    pub serial: Option<String>,
    /// When the delivered certificate expires.
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
    /// Certificates: the key id of the issuer that signed the delivered one (its
    /// AuthorityKeyIdentifier, hex), for the delivery report (ADR 0029). Not on the endpoints.
    #[serde(skip)]
    pub issuer: Option<String>,
    /// When it is next rendered.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_due: Option<OffsetDateTime>,
    /// Last successful render (content checked, whether or not it changed).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_render: Option<OffsetDateTime>,
    /// Last time content on disk changed.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_change: Option<OffsetDateTime>,
    /// The last failure, while failing.
    pub last_error: Option<String>,
    /// Consecutive failures.
    pub failures: u32,
    /// Successful renders since start.
    pub renders: u64,
    /// Failed renders or deliveries since start.
    pub render_errors: u64,
    /// Deliveries that changed content since start.
    pub changes: u64,
    /// The last reload.
    pub last_reload: Option<ReloadRecord>,
    /// Drift on disk (a missing file or symlink, a mode or owner changed) repaired since start.
    pub repairs: u64,
}

/// The status of the login.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuthStatus {
    /// A token is held.
    pub logged_in: bool,
    /// When it expires (as last granted).
    #[serde(with = "time::serde::rfc3339::option")]
    pub token_expires: Option<OffsetDateTime>,
    /// Its policies.
    pub policies: Vec<String>,
    /// They are exactly the configured policy.
    pub policies_ok: bool,
    /// Successful logins since start.
    pub logins: u64,
    /// Failed logins, renewals and identity renewals since start.
    pub errors: u64,
    /// The last failure, while failing.
    pub last_error: Option<String>,
    /// The mTLS identity in use (when its renewal is configured).
    pub identity_serial: Option<String>,
    /// The key id of its issuer (AuthorityKeyIdentifier, hex), for the delivery report.
    #[serde(skip)]
    pub identity_issuer: Option<String>,
    /// When it was issued.
    #[serde(with = "time::serde::rfc3339::option")]
    pub identity_not_before: Option<OffsetDateTime>,
    /// When it expires.
    #[serde(with = "time::serde::rfc3339::option")]
    pub identity_not_after: Option<OffsetDateTime>,
    /// Identity renewals since start.
    pub identity_renewals: u64,
    /// Why the last identity renewal failed, while it is failing (the identity in use is
    /// still valid until `identity_not_after`).
    pub identity_error: Option<String>,
}

/// Everything the agent knows about itself.
#[derive(Debug, Clone, Serialize)]
pub struct AgentStatus {
    /// The identity.
    pub identity: String,
    /// Started at.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// Requests sent to OpenBao since start (see the module documentation).
    pub requests: u64,
    /// The login.
    pub auth: AuthStatus,
    /// Every output, in config order.
    pub outputs: Vec<OutputStatus>,
    /// Every `[[database]]` source, in config order.
    pub databases: Vec<DatabaseStatus>,
    /// This host's clock minus the server's (from the last response's `Date`), once known.
    pub clock_skew_seconds: Option<i64>,
    /// The OpenBao node the agent talks to now: its one address, or — with several (a
    /// cluster's nodes, failed over between) — the one that last answered.
    pub server: String,
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
    /// The key id of the issuer that signed it (AuthorityKeyIdentifier, hex): compared with
    /// the mount's default issuer to notice an intermediate rotation.
    pub issuer: Option<String>,
}

/// Per-output bookkeeping behind [`OutputStatus`].
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) status: OutputStatus,
    /// Usable content is on disk (present, and for a certificate: the key fits, not expired).
    pub(crate) delivered: bool,
}

impl Entry {
    fn new(name: String, kind: &'static str) -> Self {
        Self {
            status: OutputStatus {
                name,
                kind,
                health: Health::Pending,
                serial: None,
                not_after: None,
                issuer: None,
                next_due: None,
                last_render: None,
                last_change: None,
                last_error: None,
                failures: 0,
                renders: 0,
                render_errors: 0,
                changes: 0,
                last_reload: None,
                repairs: 0,
            },
            delivered: false,
        }
    }

    /// The status at `now` (the server's time when the local clock is skewed). `failed` is
    /// kept for "nothing usable on disk": a failure with usable material on disk is `stale`,
    /// whatever its cause, because the service still has something that works.
    fn view(&self, now: OffsetDateTime, trusted_now: OffsetDateTime) -> OutputStatus {
        let mut s = self.status.clone();
        let expired = s.not_after.is_some_and(|na| na <= trusted_now);
        let usable = self.delivered && !expired;
        // A message without a failure is "waiting for the first login": it matters once due.
        let failing =
            s.failures > 0 || (s.last_error.is_some() && s.next_due.is_none_or(|d| d <= now));
        s.health = match (failing, usable) {
            (false, true) => Health::Fresh,
            (true, true) => Health::Stale,
            (false, false) if !self.delivered => Health::Pending,
            _ => Health::Failed,
        };
        s
    }
}

/// A clock further than this from the server's is skewed: certificates issued now would look
/// expired or not yet valid here (OpenBao backdates `not_before` by 30 s), so none is issued.
pub(crate) const SKEW_TOLERANCE: time::Duration = time::Duration::seconds(60);

/// "clock skew: local clock is 100 days ahead of the server (8640000 s)".
pub(crate) fn skew_message(skew: time::Duration) -> String {
    let secs = skew.whole_seconds();
    let a = secs.unsigned_abs();
    // Rounded to the nearest unit: the `Date` header has one-second resolution.
    let human = match a {
        0..120 => format!("{a} s"),
        120..7200 => format!("{} min", (a + 30) / 60),
        7200..172_800 => format!("{} h", (a + 1800) / 3600),
        _ => format!("{} days", (a + 43_200) / 86_400),
    };
    let way = if secs >= 0 { "ahead of" } else { "behind" };
    format!(
        "clock skew: local clock is {human} {way} the server ({secs} s); no certificate is issued until the host's time is fixed (NTP)"
    )
}

/// State shared by the tasks of one agent.
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) renewal: RenewalConfig,
    /// The trust file, re-read on use (a root rollover, ADR 0030).
    pub(crate) trust: Arc<crate::trust::TrustFile>,
    clock: Arc<dyn Clock>,
    requests: AtomicU64,
    board: Mutex<Board>,
    token_gen: watch::Sender<u64>,
    relogin: Notify,
    /// A new certificate was delivered: the delivery report looks now, not at its next look.
    report_nudge: Notify,
    shutdown: watch::Sender<bool>,
    identity: String,
    started_at: OffsetDateTime,
    /// The `[[database]]` sources' statuses (the lease book writes them).
    databases: Arc<dyn DatabaseStatuses>,
    /// Skew seen in a certificate's own validity when no `Date` was known.
    cert_skew: Mutex<Option<time::Duration>>,
    /// The newest `Date` seen by another client (logins go through their own).
    other_date: Mutex<Option<ServerDate>>,
    /// Each PKI mount's default issuer as last seen (an intermediate rotation, ADR 0029).
    pub(crate) issuers: crate::issuer_watch::IssuerBook,
}

/// Where the board reads the status of `[[database]]` sources (the lease book).
pub(crate) trait DatabaseStatuses: Send + Sync {
    /// Every source's status at `now`, in config order.
    fn statuses(&self, now: OffsetDateTime) -> Vec<DatabaseStatus>;
}

struct Board {
    outputs: Vec<Entry>,
    auth: AuthStatus,
}

impl Shared {
    /// A board for `outputs` (in config order), nothing known yet.
    #[allow(clippy::too_many_arguments)] // built once, by the runtime
    pub(crate) fn new(
        client: Client,
        renewal: RenewalConfig,
        trust: Arc<crate::trust::TrustFile>,
        clock: Arc<dyn Clock>,
        identity: String,
        outputs: Vec<(String, &'static str)>,
        databases: Arc<dyn DatabaseStatuses>,
    ) -> Self {
        let started_at = clock.now();
        let outputs = outputs
            .into_iter()
            .map(|(name, kind)| Entry::new(name, kind))
            .collect();
        Self {
            client,
            renewal,
            trust,
            clock,
            requests: AtomicU64::new(0),
            board: Mutex::new(Board {
                outputs,
                auth: AuthStatus::default(),
            }),
            token_gen: watch::channel(0).0,
            relogin: Notify::new(),
            report_nudge: Notify::new(),
            shutdown: watch::channel(false).0,
            identity,
            started_at,
            databases,
            cert_skew: Mutex::new(None),
            other_date: Mutex::new(None),
            issuers: crate::issuer_watch::IssuerBook::default(),
        }
    }

    /// Takes note of the server's time as `client` last saw it.
    pub(crate) fn observe_date(&self, client: &Client) {
        if let Some(d) = client.last_server_date() {
            let mut other = self
                .other_date
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if other.is_none_or(|o| o.received < d.received) {
                *other = Some(d);
            }
        }
    }

    /// This host's clock minus the server's: from the last response's `Date` (one-second
    /// resolution), else from a new certificate's validity; `None` before either is known.
    pub(crate) fn clock_skew(&self) -> Option<time::Duration> {
        let other = *self
            .other_date
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let newest = match (self.client.last_server_date(), other) {
            (Some(a), Some(b)) => Some(if a.received >= b.received { a } else { b }),
            (a, b) => a.or(b),
        };
        match newest {
            Some(d) => {
                let server_now = OffsetDateTime::from(d.date)
                    + time::Duration::try_from(d.received.elapsed()).unwrap_or_default();
                Some(self.now() - server_now)
            }
            None => *self
                .cert_skew
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        }
    }

    /// A skew a new certificate showed (see [`Shared::clock_skew`]).
    pub(crate) fn note_cert_skew(&self, skew: time::Duration) {
        *self
            .cert_skew
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(skew);
    }

    /// The skew a certificate issued just now shows when it is not valid at `now` (already
    /// expired, or not yet valid): the measured skew when that is beyond [`SKEW_TOLERANCE`],
    /// else — with nothing measured — the certificate's own estimate, which is recorded.
    /// `None` when the certificate is valid now or the measured clocks agree.
    pub(crate) fn skew_of_new_certificate(
        &self,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Option<time::Duration> {
        let estimate = if not_after <= now {
            now - not_after
        } else if not_before > now {
            now - not_before
        } else {
            return None;
        };
        match self.clock_skew() {
            Some(measured) if measured.abs() > SKEW_TOLERANCE => Some(measured),
            Some(_) => None,
            None => {
                self.note_cert_skew(estimate);
                Some(estimate)
            }
        }
    }

    /// The skew, when it is beyond [`SKEW_TOLERANCE`].
    pub(crate) fn skewed(&self) -> Option<time::Duration> {
        self.clock_skew().filter(|s| s.abs() > SKEW_TOLERANCE)
    }

    /// Now by the server's clock when this host's is skewed, else now: what "expired" and
    /// "still usable" are judged by, so a wrong local clock does not throw away good files.
    pub(crate) fn trusted_now(&self) -> OffsetDateTime {
        self.now() - self.skewed().unwrap_or_default()
    }

    /// Records drift on disk that was repaired.
    pub(crate) fn repaired(&self, name: &str) {
        self.update(name, |e| e.status.repairs += 1);
    }

    /// Asks every task to stop.
    pub(crate) fn request_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub(crate) fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    pub(crate) fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub(crate) fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// How many logins there have been (0: not logged in yet). A new login means a new token.
    pub(crate) fn token_generation(&self) -> u64 {
        *self.token_gen.borrow()
    }

    /// Follows [`Shared::token_generation`].
    pub(crate) fn token_receiver(&self) -> watch::Receiver<u64> {
        self.token_gen.subscribe()
    }

    /// Something was refused: asks the auth task to check the token.
    pub(crate) fn hint_relogin(&self) {
        self.relogin.notify_one();
    }

    pub(crate) async fn relogin_hint(&self) {
        self.relogin.notified().await;
    }

    /// A certificate (or the identity's) was just replaced: the report task looks at once, so
    /// its write follows the sign on the same connection a moment later instead of arriving at
    /// the server alone up to a look period later.
    pub(crate) fn nudge_report(&self) {
        self.report_nudge.notify_one();
    }

    pub(crate) async fn report_nudged(&self) {
        self.report_nudge.notified().await;
    }

    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn update(&self, name: &str, f: impl FnOnce(&mut Entry)) {
        if let Some(e) = self
            .board()
            .outputs
            .iter_mut()
            .find(|e| e.status.name == name)
        {
            f(e);
        }
    }

    pub(crate) fn logged_in(&self, grant: &TokenGrant, policies_ok: bool) {
        let now = self.now();
        {
            let mut b = self.board();
            b.auth.logged_in = true;
            b.auth.logins += 1;
            b.auth.token_expires = expiry(now, grant.ttl);
            b.auth.policies = grant.policies.clone();
            b.auth.policies_ok = policies_ok;
            b.auth.last_error = None;
        }
        self.token_gen.send_modify(|g| *g += 1);
    }

    pub(crate) fn token_renewed(&self, grant: &TokenGrant) {
        let now = self.now();
        let mut b = self.board();
        b.auth.token_expires = expiry(now, grant.ttl);
        b.auth.last_error = None;
    }

    pub(crate) fn auth_error(&self, e: &dyn std::fmt::Display) {
        let mut b = self.board();
        b.auth.errors += 1;
        b.auth.last_error = Some(e.to_string());
    }

    pub(crate) fn identity_known(&self, cert: &IdentityCert) {
        let mut b = self.board();
        b.auth.identity_serial = Some(cert.serial.clone());
        b.auth.identity_issuer.clone_from(&cert.issuer);
        b.auth.identity_not_before = Some(cert.not_before);
        b.auth.identity_not_after = Some(cert.not_after);
    }

    pub(crate) fn identity_renewed(&self, cert: &IdentityCert) {
        self.identity_known(cert);
        {
            let mut b = self.board();
            b.auth.identity_renewals += 1;
            b.auth.last_error = None;
            b.auth.identity_error = None;
        }
        self.nudge_report();
    }

    /// An identity renewal failed: counted with the auth errors, and kept apart so the
    /// identity's own state can say `stale` while the one in use is still valid.
    pub(crate) fn identity_error(&self, e: &dyn std::fmt::Display) {
        let mut b = self.board();
        b.auth.errors += 1;
        b.auth.last_error = Some(e.to_string());
        b.auth.identity_error = Some(e.to_string());
    }

    /// The identity's name.
    pub(crate) fn identity_name(&self) -> &str {
        &self.identity
    }

    /// Everything the agent knows, as the status endpoints show it.
    pub(crate) fn status_snapshot(&self) -> AgentStatus {
        self.snapshot()
    }

    pub(crate) fn snapshot(&self) -> AgentStatus {
        let now = self.now();
        let skew = self.clock_skew();
        let trusted_now = now
            - skew
                .filter(|s| s.abs() > SKEW_TOLERANCE)
                .unwrap_or_default();
        let never_logged_in = *self.token_gen.borrow() == 0;
        let b = self.board();
        // Before the first login nothing can be rendered: an output that is due shows why.
        let waiting = b
            .auth
            .last_error
            .as_ref()
            .filter(|_| never_logged_in)
            .map(|e| format!("not logged in: {e}"));
        let outputs = b
            .outputs
            .iter()
            .map(|e| {
                let mut e = e.clone();
                if let Some(w) = &waiting
                    && e.status.last_error.is_none()
                    && e.status.next_due.is_none_or(|d| d <= now)
                {
                    e.status.last_error = Some(w.clone());
                }
                e.view(now, trusted_now)
            })
            .collect();
        let auth = b.auth.clone();
        drop(b);
        AgentStatus {
            identity: self.identity.clone(),
            started_at: self.started_at,
            requests: self.requests.load(Ordering::Relaxed),
            auth,
            outputs,
            databases: self.databases.statuses(trusted_now),
            clock_skew_seconds: skew.map(|s| s.whole_seconds()),
            server: self
                .client
                .address()
                .as_str()
                .trim_end_matches('/')
                .to_owned(),
        }
    }
}

fn expiry(now: OffsetDateTime, ttl: Duration) -> Option<OffsetDateTime> {
    (!ttl.is_zero()).then(|| now + time::Duration::try_from(ttl).unwrap_or(time::Duration::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(delivered: bool, failures: u32) -> Entry {
        Entry {
            status: OutputStatus {
                name: "tls".into(),
                kind: "certificate",
                health: Health::Pending,
                serial: None,
                not_after: None,
                issuer: None,
                next_due: None,
                last_render: None,
                last_change: None,
                last_error: (failures > 0).then(|| "sealed".to_owned()),
                failures,
                renders: 0,
                render_errors: 0,
                changes: 0,
                last_reload: None,
                repairs: 0,
            },
            delivered,
        }
    }

    #[test]
    fn health_follows_delivery_failures_and_time() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(100);
        let view = |e: &Entry| e.view(now, now).health;
        assert_eq!(view(&entry(false, 0)), Health::Pending);
        assert_eq!(view(&entry(true, 0)), Health::Fresh);
        // Failing with usable material on disk: stale, whatever the cause.
        assert_eq!(view(&entry(true, 2)), Health::Stale);
        // Failing with nothing on disk: failed.
        assert_eq!(view(&entry(false, 1)), Health::Failed);
        // Expired on disk: failed even without a failure recorded yet.
        let mut e = entry(true, 0);
        e.status.not_after = Some(now - time::Duration::seconds(1));
        assert_eq!(view(&e), Health::Failed);
        // ... judged by the server's time when the local clock is skewed.
        let server_now = now - time::Duration::days(2);
        assert_eq!(e.view(now, server_now).health, Health::Fresh);
        // Waiting for a login past due: stale.
        let mut e = entry(true, 0);
        e.status.last_error = Some("not logged in".into());
        e.status.next_due = Some(now - time::Duration::seconds(5));
        assert_eq!(view(&e), Health::Stale);
        e.status.next_due = Some(now + time::Duration::seconds(5));
        assert_eq!(view(&e), Health::Fresh);
    }

    #[test]
    fn skew_is_named_with_its_size_and_direction() {
        let m = skew_message(time::Duration::days(100));
        assert!(
            m.starts_with("clock skew: local clock is 100 days ahead of the server"),
            "{m}"
        );
        let m = skew_message(-time::Duration::days(1));
        assert!(m.contains("is 24 h behind the server (-86400 s)"), "{m}");
        assert!(skew_message(time::Duration::seconds(-90)).contains("90 s behind"));
        // One second off either way (the header's resolution) reads the same.
        assert!(skew_message(time::Duration::seconds(-86_399)).contains("24 h behind"));
        assert!(skew_message(time::Duration::seconds(8_639_999)).contains("100 days ahead"));
    }

    #[test]
    fn status_serialises_for_the_endpoints() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let v = serde_json::to_value(entry(true, 1).view(now, now)).unwrap();
        assert_eq!(v["health"], "stale");
        assert_eq!(v["type"], "certificate");
        assert_eq!(v["last_error"], "sealed");
        assert_eq!(v["repairs"], 0);
    }
}
