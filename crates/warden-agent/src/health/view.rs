//! The status snapshot: what `/health` and the control socket report about a running agent.
//!
//! These types are the *wire format* tools are written against, kept apart from the runtime's
//! in-memory [`OutputStatus`] so that the contract does not move whenever the runtime's
//! bookkeeping does. The control socket serves them whole to the agent's owner; `/health`
//! serves every local user a reduced form of them (see [`public`](super::public)); `/metrics`
//! derives its figures from them ([`metrics`](super::metrics)). All of them live in this one
//! module on purpose: a change to the status vocabulary is a change here and nowhere else.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::database::DatabaseStatus;
use crate::runtime::{AgentHandle, AgentStatus, Health, OutputStatus};

/// How an output is doing, as health and the control socket report it (the runtime's
/// [`Health`], in the wire format's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Freshness {
    /// Delivered, and not past its due time.
    Fresh,
    /// Not delivered yet, and no failure yet (the agent is starting or logging in).
    Pending,
    /// Usable material is on disk, but the last refresh or repair failed (sealed, unreachable,
    /// disk full, a refused certificate, a skewed clock, a bad template...): degraded.
    Stale,
    /// Failing with nothing usable on disk (never delivered, removed, or the certificate
    /// expired).
    Failed,
}

impl Freshness {
    /// The word used in JSON and text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fresh => "fresh",
            Self::Pending => "pending",
            Self::Stale => "stale",
            Self::Failed => "failed",
        }
    }
}

impl From<Health> for Freshness {
    fn from(h: Health) -> Self {
        match h {
            Health::Fresh => Self::Fresh,
            Health::Pending => Self::Pending,
            Health::Stale => Self::Stale,
            Health::Failed => Self::Failed,
        }
    }
}

/// What is known about one output. Holds no secret.
///
/// This and [`Snapshot`] are the *wire format* of `/health` and of the control socket, kept
/// apart from the runtime's in-memory [`OutputStatus`] so that the contract tools are written
/// against does not move whenever the runtime's bookkeeping does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputView {
    /// The output's name from `agent.toml`.
    pub name: String,
    /// `certificate`, `template` or `ca_chain`.
    pub kind: String,
    /// Fresh, pending, stale or failed.
    pub state: Freshness,
    /// For certificates: the delivered serial (for CA chains: the issuing CA's; for signing
    /// keys: the current `kid`).
    pub serial: Option<String>,
    /// For certificates: when the delivered one expires.
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
    /// When the output was last rendered successfully (delivered, or found unchanged).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_render: Option<OffsetDateTime>,
    /// When its content on disk last changed.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_change: Option<OffsetDateTime>,
    /// When it is next due (renewal or poll).
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_due: Option<OffsetDateTime>,
    /// Successful renders since the agent started.
    pub renders: u64,
    /// Deliveries that changed content since the agent started.
    pub changes: u64,
    /// Failed renders or deliveries since the agent started.
    pub render_errors: u64,
    /// The last failure, while the output is failing.
    pub last_error: Option<String>,
    /// Whether the last reload worked (`None`: none ran).
    pub last_reload_ok: Option<bool>,
    /// Drift on disk repaired since the agent started.
    #[serde(default)]
    pub repairs: u64,
}

impl From<&OutputStatus> for OutputView {
    fn from(o: &OutputStatus) -> Self {
        Self {
            name: o.name.clone(),
            kind: o.kind.to_owned(),
            state: o.health.into(),
            serial: o.serial.clone(),
            not_after: o.not_after,
            last_render: o.last_render,
            last_change: o.last_change,
            next_due: o.next_due,
            renders: o.renders,
            changes: o.changes,
            render_errors: o.render_errors,
            last_error: o.last_error.clone(),
            last_reload_ok: o.last_reload.as_ref().map(|r| r.ok),
            repairs: o.repairs,
        }
    }
}

/// A `[[database]]` source, as health and the control socket report it. Holds no credential
/// and no lease id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseView {
    /// The source's name from `agent.toml`.
    pub name: String,
    /// `<mount>/creds/<role>`.
    pub path: String,
    /// Fresh, pending (nothing issued yet), stale or failed.
    pub state: Freshness,
    /// Credentials issued since the agent started.
    pub generation: u64,
    /// When the current lease ends as last granted.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires: Option<OffsetDateTime>,
    /// The lease can no longer be extended; new credentials come before it ends.
    pub final_expiry: bool,
    /// `renew` or `reissue`.
    pub next_step: Option<String>,
    /// When that is due.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_due: Option<OffsetDateTime>,
    /// Credentials issued since start.
    pub issues: u64,
    /// Renewals since start.
    pub renewals: u64,
    /// Failed issues, renewals and revocations since start.
    pub errors: u64,
    /// The last failure, while failing.
    pub last_error: Option<String>,
}

impl From<&DatabaseStatus> for DatabaseView {
    fn from(d: &DatabaseStatus) -> Self {
        Self {
            name: d.name.clone(),
            path: d.path.clone(),
            state: d.health.into(),
            generation: d.generation,
            expires: d.expires,
            final_expiry: d.final_expiry,
            next_step: d.next_step.map(str::to_owned),
            next_due: d.next_due,
            issues: d.issues,
            renewals: d.renewals,
            errors: d.errors,
            last_error: d.last_error.clone(),
        }
    }
}

/// The login, as far as health is concerned. Holds no token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthView {
    /// A token is held.
    pub logged_in: bool,
    /// When the token expires.
    #[serde(with = "time::serde::rfc3339::option")]
    pub token_expires: Option<OffsetDateTime>,
    /// The token carries exactly the configured policy.
    pub policies_ok: bool,
    /// Failed logins, token renewals and identity renewals since start.
    pub errors: u64,
    /// The last failure, while failing.
    pub last_error: Option<String>,
    /// The mTLS identity certificate in use.
    pub identity_serial: Option<String>,
    /// When it expires.
    #[serde(with = "time::serde::rfc3339::option")]
    pub identity_not_after: Option<OffsetDateTime>,
}

/// A consistent picture of the agent at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The identity the agent runs for.
    pub identity: String,
    /// When the snapshot was taken: expiry figures are relative to it.
    #[serde(with = "time::serde::rfc3339")]
    pub taken_at: OffsetDateTime,
    /// When the agent started.
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    /// The login.
    pub auth: AuthView,
    /// Every output, in config order.
    pub outputs: Vec<OutputView>,
    /// Requests sent to OpenBao since start.
    pub requests_total: u64,
    /// Failed logins and token renewals since start.
    pub auth_errors_total: u64,
    /// Every `[[database]]` source, in config order.
    #[serde(default)]
    pub databases: Vec<DatabaseView>,
    /// This host's clock minus the server's, once known.
    #[serde(default)]
    pub clock_skew_seconds: Option<i64>,
    /// The OpenBao node the agent talks to now (with several addresses, the one that last
    /// answered); absent from agents that predate it.
    #[serde(default)]
    pub server: Option<String>,
}

impl Snapshot {
    /// The wire view of the runtime's status at `now`.
    pub fn from_status(status: &AgentStatus, now: OffsetDateTime) -> Self {
        let a = &status.auth;
        Self {
            identity: status.identity.clone(),
            taken_at: now,
            started_at: Some(status.started_at),
            auth: AuthView {
                logged_in: a.logged_in,
                token_expires: a.token_expires,
                policies_ok: a.policies_ok,
                errors: a.errors,
                last_error: a.last_error.clone(),
                identity_serial: a.identity_serial.clone(),
                identity_not_after: a.identity_not_after,
            },
            outputs: status.outputs.iter().map(OutputView::from).collect(),
            requests_total: status.requests,
            auth_errors_total: a.errors,
            databases: status.databases.iter().map(DatabaseView::from).collect(),
            clock_skew_seconds: status.clock_skew_seconds,
            server: Some(status.server.clone()),
        }
    }

    /// The verdict of `/health`: the outputs', made worse by a database source that is stale
    /// (degraded) or failed (failing). A source nothing has used yet (pending) counts for
    /// nothing: its readers are pending themselves.
    pub fn overall(&self) -> Overall {
        let outputs = Overall::of(&self.outputs);
        let db = if self.databases.iter().any(|d| d.state == Freshness::Failed) {
            Overall::Failing
        } else if self.databases.iter().any(|d| d.state == Freshness::Stale) {
            Overall::Degraded
        } else {
            Overall::Ok
        };
        outputs.max(db)
    }
}

/// Where the health endpoints get their figures. Called once per request.
pub trait StatusSource: Send + Sync + 'static {
    /// The current snapshot.
    fn snapshot(&self) -> Snapshot;
}

impl<F> StatusSource for F
where
    F: Fn() -> Snapshot + Send + Sync + 'static,
{
    fn snapshot(&self) -> Snapshot {
        self()
    }
}

impl StatusSource for AgentHandle {
    fn snapshot(&self) -> Snapshot {
        Snapshot::from_status(&self.status(), OffsetDateTime::now_utc())
    }
}

/// The overall verdict of `/health` (ordered from best to worst).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Overall {
    /// Every output is fresh.
    Ok,
    /// Some output is pending or stale: starting, or serving the previous material while
    /// renewal fails.
    Degraded,
    /// Some output failed with nothing usable on disk.
    Failing,
}

impl Overall {
    /// The verdict for a set of outputs. An agent without outputs is `ok`: it has nothing to
    /// fail at.
    pub fn of(outputs: &[OutputView]) -> Self {
        if outputs.iter().any(|o| o.state == Freshness::Failed) {
            Self::Failing
        } else if outputs.iter().all(|o| o.state == Freshness::Fresh) {
            Self::Ok
        } else {
            Self::Degraded
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{NOW, db, snapshot, view};
    use super::*;

    #[test]
    fn overall_verdict_follows_the_worst_output() {
        use Freshness::*;
        let of = |states: &[Freshness]| {
            Overall::of(&states.iter().map(|s| view("x", *s)).collect::<Vec<_>>())
        };
        assert_eq!(of(&[]), Overall::Ok);
        assert_eq!(of(&[Fresh, Fresh]), Overall::Ok);
        assert_eq!(of(&[Fresh, Stale]), Overall::Degraded);
        assert_eq!(of(&[Pending]), Overall::Degraded);
        assert_eq!(of(&[Fresh, Stale, Failed]), Overall::Failing);
    }

    #[test]
    fn database_sources_count_in_the_verdict_unless_unused() {
        let mut s = snapshot(vec![view("tls", Freshness::Fresh)]);
        s.databases = vec![
            db("main", Freshness::Fresh),
            db("pending", Freshness::Pending),
        ];
        // Pending does not degrade; stale and failed do.
        assert_eq!(s.overall(), Overall::Ok);
        s.databases[0].state = Freshness::Stale;
        assert_eq!(s.overall(), Overall::Degraded);
        s.databases[0].state = Freshness::Failed;
        assert_eq!(s.overall(), Overall::Failing);
    }

    #[test]
    fn the_runtime_status_maps_onto_the_wire_format() {
        use crate::runtime::AuthStatus;
        use crate::state::ReloadRecord;
        let out = OutputStatus {
            name: "tls".into(),
            kind: "certificate",
            health: Health::Stale,
            serial: Some("0a1b".into()),
            not_after: Some(NOW + time::Duration::hours(1)),
            issuer: None,
            next_due: Some(NOW),
            last_render: Some(NOW - time::Duration::hours(2)),
            last_change: Some(NOW - time::Duration::hours(2)),
            last_error: Some("sealed".into()),
            failures: 3,
            renders: 4,
            render_errors: 3,
            changes: 2,
            last_reload: Some(ReloadRecord {
                at: NOW,
                ok: false,
                message: "exit 1".into(),
            }),
            repairs: 1,
        };
        let status = AgentStatus {
            identity: "billing".into(),
            started_at: NOW - time::Duration::hours(3),
            requests: 42,
            auth: AuthStatus {
                logged_in: true,
                errors: 2,
                ..AuthStatus::default()
            },
            outputs: vec![out],
            databases: Vec::new(),
            clock_skew_seconds: Some(-86_400),
            server: "https://10.0.0.12:8200".into(),
        };
        let s = Snapshot::from_status(&status, NOW);
        assert_eq!(s.requests_total, 42);
        assert_eq!(s.auth_errors_total, 2);
        assert!(s.auth.logged_in);
        let v = &s.outputs[0];
        assert_eq!(
            (v.state, v.kind.as_str(), v.renders, v.render_errors),
            (Freshness::Stale, "certificate", 4, 3)
        );
        assert_eq!(v.last_reload_ok, Some(false));
        assert_eq!(v.last_error.as_deref(), Some("sealed"));
        assert_eq!(Overall::of(&s.outputs), Overall::Degraded);
        assert_eq!((v.repairs, s.clock_skew_seconds), (1, Some(-86_400)));
        assert_eq!(s.server.as_deref(), Some("https://10.0.0.12:8200"));
        let text = super::super::render_metrics(&s);
        assert!(text.contains("warden_agent_output_repairs_total{output=\"tls\"} 1\n"));
        assert!(text.contains("warden_agent_clock_skew_seconds -86400\n"));
    }

    /// The JSON keys of a serialisable value, sorted.
    fn keys(v: impl Serialize) -> Vec<String> {
        let mut keys: Vec<String> = serde_json::to_value(v)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn nothing_secret_can_appear_in_a_snapshot() {
        // The snapshot types carry names, serials, times, counters and messages only; this
        // pins their JSON keys so a new field is a deliberate decision.
        assert_eq!(
            keys(view("tls", Freshness::Fresh)),
            [
                "changes",
                "kind",
                "last_change",
                "last_error",
                "last_reload_ok",
                "last_render",
                "name",
                "next_due",
                "not_after",
                "render_errors",
                "renders",
                "repairs",
                "serial",
                "state"
            ]
        );
        // No credential or lease id can be in a database view.
        assert_eq!(
            keys(db("main", Freshness::Fresh)),
            [
                "errors",
                "expires",
                "final_expiry",
                "generation",
                "issues",
                "last_error",
                "name",
                "next_due",
                "next_step",
                "path",
                "renewals",
                "state"
            ]
        );
    }
}
