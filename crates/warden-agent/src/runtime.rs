//! The loop: one task per output plus the auth task, sharing one client and one token.
//!
//! ```text
//!   Agent::new(config) ──► Agent::run()            (until AgentHandle::shutdown / a signal)
//!                      └─► Agent::run_once()       (--once: every output once, then exit)
//!   Agent::handle() ──► AgentHandle: status(), rotate_now(name), shutdown()   (Clone, Send)
//! ```
//!
//! Each output task sleeps until its output is due (a certificate at its renewal point, a
//! template or CA chain at its next poll), renders, delivers, reloads if something changed and
//! records the result. A failure backs off (1 s doubling to 5 min, jittered) without touching
//! what is on disk. At start a certificate output first looks at the files it delivered
//! before: if they still verify and are not past their renewal point they are kept, which is
//! what makes restarts and re-logins free of new certificates.
//!
//! Templates that read `[[database]]` sources get their credentials from one lease book
//! shared by the agent (`database`), with one more task per source that renews its lease and
//! replaces it before it ends, re-rendering the templates that read it.
//!
//! Status ([`OutputStatus`], [`AgentStatus`]) is kept in memory for the health and control
//! endpoints; `requests` counts every request the agent sends to OpenBao (a template render
//! counts once, however many secrets it reads: a render stops at its first failed read, so
//! while the server is sealed or unreachable the count is exact).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::{Notify, watch};
use warden_bao::{Client, ClientConfig};

use super::AgentError;
use super::auth::{self, AuthError, Authenticator, IdentityCert, TokenGrant, to_std};
use super::config::{Config, OutputConfig, OutputKind};
use super::database::{self, DatabaseStatus, LeaseBook};
use super::deliver::{self, DeliverError, Expected, Outcome, Ownership};
use super::output::ca_chain::CaChainOutput;
use super::output::certificate::{self, CERT, CHAIN, FULLCHAIN, KEY};
use super::output::template::TemplateOutput;
use super::output::{RenderContext, RenderError, Rendered};
use super::reload;
use super::schedule::{self, Backoff, Clock, SystemClock};
use super::state::{OutputState, ReloadRecord, StateDir};

/// How an output is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Nothing delivered yet and no failure yet (starting, or waiting for the first login).
    Pending,
    /// What is on disk is current.
    Fresh,
    /// Past due and failing (server sealed or unreachable...): the files on disk are the
    /// previous, still valid ones.
    Stale,
    /// Failing with nothing usable on disk (never delivered, or the certificate expired), or
    /// failing for a reason waiting will not fix (bad template, refused certificate).
    Failed,
}

/// The status of one output.
#[derive(Debug, Clone, Serialize)]
pub struct OutputStatus {
    /// Output name.
    pub name: String,
    /// `certificate`, `template`, `ca_chain`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Overall state.
    pub health: Health,
    /// Delivered certificate serial (certificates) or issuing CA serial (CA chains).
    pub serial: Option<String>,
    /// When the delivered certificate expires.
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
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
    /// When it was issued.
    #[serde(with = "time::serde::rfc3339::option")]
    pub identity_not_before: Option<OffsetDateTime>,
    /// When it expires.
    #[serde(with = "time::serde::rfc3339::option")]
    pub identity_not_after: Option<OffsetDateTime>,
    /// Identity renewals since start.
    pub identity_renewals: u64,
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
}

/// Per-output bookkeeping behind [`OutputStatus`].
#[derive(Debug, Clone)]
struct Entry {
    status: OutputStatus,
    /// Valid content is on disk.
    delivered: bool,
    /// The last failure is one waiting will not fix.
    permanent: bool,
}

impl Entry {
    fn view(&self, now: OffsetDateTime) -> OutputStatus {
        let mut s = self.status.clone();
        let expired = s.not_after.is_some_and(|na| na <= now);
        let failing = s.failures > 0 || s.last_error.is_some();
        s.health = if !failing {
            if self.delivered && !expired {
                Health::Fresh
            } else if self.delivered {
                Health::Failed
            } else {
                Health::Pending
            }
        } else if !self.delivered || expired || self.permanent {
            Health::Failed
        } else if s.next_due.is_some_and(|d| d <= now) || s.failures > 0 {
            Health::Stale
        } else {
            Health::Fresh
        };
        s
    }
}

/// State shared by the tasks of one agent.
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) renewal: super::config::RenewalConfig,
    trust_anchor_pem: String,
    clock: Arc<dyn Clock>,
    requests: AtomicU64,
    board: Mutex<Board>,
    token_gen: watch::Sender<u64>,
    relogin: Notify,
    shutdown: watch::Sender<bool>,
    identity: String,
    started_at: OffsetDateTime,
    /// The leases of `[[database]]` sources.
    pub(crate) databases: LeaseBook,
}

struct Board {
    outputs: Vec<Entry>,
    auth: AuthStatus,
}

impl Shared {
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

    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut Entry)) {
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

    pub(crate) fn auth_error(&self, e: &AuthError) {
        let mut b = self.board();
        b.auth.errors += 1;
        b.auth.last_error = Some(e.to_string());
    }

    pub(crate) fn identity_known(&self, cert: &IdentityCert) {
        let mut b = self.board();
        b.auth.identity_serial = Some(cert.serial.clone());
        b.auth.identity_not_before = Some(cert.not_before);
        b.auth.identity_not_after = Some(cert.not_after);
    }

    pub(crate) fn identity_renewed(&self, cert: &IdentityCert) {
        self.identity_known(cert);
        let mut b = self.board();
        b.auth.identity_renewals += 1;
        b.auth.last_error = None;
    }

    /// The identity's name.
    pub(crate) fn identity_name(&self) -> &str {
        &self.identity
    }

    /// Everything the agent knows, as the status endpoints show it.
    pub(crate) fn status_snapshot(&self) -> AgentStatus {
        self.snapshot()
    }

    fn snapshot(&self) -> AgentStatus {
        let now = self.now();
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
                e.view(now)
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
            databases: self.databases.statuses(now),
        }
    }
}

fn expiry(now: OffsetDateTime, ttl: Duration) -> Option<OffsetDateTime> {
    (!ttl.is_zero()).then(|| now + time::Duration::try_from(ttl).unwrap_or(time::Duration::MAX))
}

/// A handle on a running agent, for the health and control endpoints (and tests). Cheap to
/// clone; every method returns at once.
#[derive(Clone)]
pub struct AgentHandle {
    shared: Arc<Shared>,
    rotate: Arc<BTreeMap<String, Arc<Notify>>>,
}

impl std::fmt::Debug for AgentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHandle")
            .field("identity", &self.shared.identity)
            .finish_non_exhaustive()
    }
}

/// `rotate_now` was asked for an output the agent does not have.
#[derive(Debug, thiserror::Error)]
#[error("no output called `{name}` (outputs: {})", known.join(", "))]
pub struct UnknownOutput {
    /// The name asked for.
    pub name: String,
    /// The outputs there are.
    pub known: Vec<String>,
}

impl AgentHandle {
    /// The whole status.
    pub fn status(&self) -> AgentStatus {
        self.shared.snapshot()
    }

    /// The status of every output, in config order.
    pub fn outputs(&self) -> Vec<OutputStatus> {
        self.shared.snapshot().outputs
    }

    /// Renders `name` now, whatever its schedule: a certificate is re-issued even though the
    /// one on disk is valid, a template or chain is re-read. The result shows in the status.
    pub fn rotate_now(&self, name: &str) -> Result<(), UnknownOutput> {
        match self.rotate.get(name) {
            Some(n) => {
                n.notify_one();
                Ok(())
            }
            None => Err(UnknownOutput {
                name: name.to_owned(),
                known: self.rotate.keys().cloned().collect(),
            }),
        }
    }

    /// Asks the agent to stop: tasks finish the delivery in progress (never half a set) and
    /// [`Agent::run`] returns.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }

    /// Whether a stop was asked for.
    pub fn is_stopping(&self) -> bool {
        self.shared.stopping()
    }
}

/// What `--once` did.
#[derive(Debug, Clone, Serialize)]
pub struct OnceReport {
    /// Every output's final status.
    pub outputs: Vec<OutputStatus>,
    /// The login failure, if logging in failed.
    pub auth_error: Option<String>,
    /// Requests sent to OpenBao.
    pub requests: u64,
}

impl OnceReport {
    /// Every output was delivered (or was already valid) and its reload, if any ran, worked.
    pub fn ok(&self) -> bool {
        self.auth_error.is_none()
            && self
                .outputs
                .iter()
                .all(|o| o.health == Health::Fresh && o.last_reload.as_ref().is_none_or(|r| r.ok))
    }
}

/// One agent: its config, client, login and outputs.
pub struct Agent {
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    auth: Arc<Authenticator>,
    rotate: Arc<BTreeMap<String, Arc<Notify>>>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("identity", &self.cfg.identity.name)
            .field("outputs", &self.cfg.outputs.len())
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Prepares an agent: reads the trust anchor and the TLS identity (completing an
    /// interrupted identity renewal), builds the client. Contacts nothing.
    pub fn new(cfg: Config) -> Result<Self, AgentError> {
        Self::with_clock(cfg, Arc::new(SystemClock))
    }

    /// [`Agent::new`] with an injected clock.
    pub fn with_clock(cfg: Config, clock: Arc<dyn Clock>) -> Result<Self, AgentError> {
        let trust_anchor_pem = match &cfg.openbao.ca_file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| AgentError::TrustAnchor {
                        path: path.clone(),
                        reason: source.to_string(),
                    })?;
                if certificate::pem_blocks(&text).is_empty()
                    || warden_pki::parse_pem_bundle(&text).is_err()
                {
                    return Err(AgentError::TrustAnchor {
                        path: path.clone(),
                        reason: "it holds no usable PEM certificate".to_owned(),
                    });
                }
                text
            }
            None => String::new(),
        };
        let identity = cfg
            .auth
            .tls_identity
            .as_ref()
            .map(auth::load_identity)
            .transpose()
            .map_err(AgentError::Auth)?;
        let mut base = ClientConfig::from_address(&cfg.openbao.address).map_err(|source| {
            AgentError::Client {
                source: Box::new(source),
            }
        })?;
        if !trust_anchor_pem.is_empty() {
            base = base.with_ca_pem(trust_anchor_pem.clone().into_bytes());
        }
        let authn = Authenticator::new(
            cfg.auth.clone(),
            cfg.identity.common_name.clone(),
            base,
            identity,
            trust_anchor_pem.clone(),
        )
        .map_err(AgentError::Auth)?;
        let now = clock.now();
        let outputs = cfg
            .outputs
            .iter()
            .map(|o| Entry {
                status: OutputStatus {
                    name: o.name.clone(),
                    kind: o.type_name(),
                    health: Health::Pending,
                    serial: None,
                    not_after: None,
                    next_due: None,
                    last_render: None,
                    last_change: None,
                    last_error: None,
                    failures: 0,
                    renders: 0,
                    render_errors: 0,
                    changes: 0,
                    last_reload: None,
                },
                delivered: false,
                permanent: false,
            })
            .collect();
        let (token_gen, _) = watch::channel(0);
        let (shutdown, _) = watch::channel(false);
        let rotate: Arc<BTreeMap<String, Arc<Notify>>> = Arc::new(
            cfg.outputs
                .iter()
                .map(|o| (o.name.clone(), Arc::new(Notify::new())))
                .collect(),
        );
        let wake = {
            let rotate = rotate.clone();
            Box::new(move |output: &str| {
                if let Some(n) = rotate.get(output) {
                    n.notify_one();
                }
            })
        };
        let templates = cfg
            .outputs
            .iter()
            .filter(|o| matches!(o.kind, OutputKind::Template(_)))
            .map(|o| o.name.clone())
            .collect();
        let databases = LeaseBook::new(
            &cfg.databases,
            templates,
            StateDir::new(&cfg.state_dir),
            wake,
        );
        let shared = Arc::new(Shared {
            client: authn.client().clone(),
            renewal: cfg.renewal,
            trust_anchor_pem,
            clock,
            requests: AtomicU64::new(0),
            board: Mutex::new(Board {
                outputs,
                auth: AuthStatus::default(),
            }),
            token_gen,
            relogin: Notify::new(),
            shutdown,
            identity: cfg.identity.name.clone(),
            started_at: now,
            databases,
        });
        Ok(Self {
            cfg: Arc::new(cfg),
            shared,
            auth: Arc::new(authn),
            rotate,
        })
    }

    /// A handle for status, rotate-now and shutdown.
    pub fn handle(&self) -> AgentHandle {
        AgentHandle {
            shared: self.shared.clone(),
            rotate: self.rotate.clone(),
        }
    }

    /// Runs until [`AgentHandle::shutdown`]. Failures of outputs or of the login never end
    /// it: they are retried and reported in the status.
    pub async fn run(self) -> Result<(), AgentError> {
        StateDir::new(&self.cfg.state_dir)
            .ensure()
            .map_err(AgentError::State)?;
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(auth::run(self.auth.clone(), self.shared.clone()));
        for out in &self.cfg.outputs {
            let task = OutputTask::new(&self, out);
            tasks.spawn(async move { task.run().await });
        }
        for i in 0..self.shared.databases.len() {
            tasks.spawn(database::run_source(self.shared.clone(), i));
        }
        tasks.spawn(super::report::run(
            self.shared.clone(),
            StateDir::new(&self.cfg.state_dir),
        ));
        tracing::info!(identity = %self.cfg.identity.name, outputs = self.cfg.outputs.len(), databases = self.shared.databases.len(), "agent started");
        while let Some(res) = tasks.join_next().await {
            if let Err(e) = res {
                tracing::error!(error = %e, "an agent task ended unexpectedly");
            }
        }
        self.revoke_token_unless_leases().await;
        tracing::info!("agent stopped");
        Ok(())
    }

    /// Revokes the token at the end of a run, unless a database lease it created is still
    /// live: OpenBao revokes a token's leases with it, which would cut the service off its
    /// database. The token then simply expires (nobody else ever held it); the next start
    /// revokes that lease once its replacement is delivered.
    async fn revoke_token_unless_leases(&self) {
        if self.shared.databases.holds_live_lease(self.shared.now()) {
            tracing::info!(
                "keeping the token: revoking it would revoke the delivered database credentials (the next start replaces them and revokes their lease)"
            );
            return;
        }
        self.auth.revoke(&self.shared).await;
    }

    /// Renders every output once (a certificate still valid on disk counts as delivered) and
    /// reports. Logs in only if an output needs the server.
    pub async fn run_once(self) -> OnceReport {
        if let Err(e) = StateDir::new(&self.cfg.state_dir).ensure() {
            tracing::warn!(error = %e, "cannot create the state directory");
        }
        let tasks: Vec<OutputTask> = self
            .cfg
            .outputs
            .iter()
            .map(|o| OutputTask::new(&self, o))
            .collect();
        let mut logged_in = false;
        let mut auth_error = None;
        for task in &tasks {
            let mut state = task.load_state();
            if task.keep_on_disk(&mut state).is_some() {
                continue;
            }
            if !logged_in && auth_error.is_none() {
                match self.auth.login(&self.shared).await {
                    Ok(grant) => {
                        self.shared
                            .logged_in(&grant, self.auth.policies_ok(&grant.policies));
                        logged_in = true;
                    }
                    Err(e) => {
                        self.shared.auth_error(&e);
                        auth_error = Some(e.to_string());
                    }
                }
            }
            if logged_in {
                let _ = task.attempt(&mut state, true).await;
                task.shared.databases.attempted(task.name());
            } else {
                task.record_failure(
                    &format!("not logged in: {}", auth_error.clone().unwrap_or_default()),
                    false,
                );
            }
        }
        if logged_in {
            super::report::write_once(&self.shared, &StateDir::new(&self.cfg.state_dir)).await;
            self.shared
                .databases
                .retire_all_previous(&self.shared)
                .await;
            self.revoke_token_unless_leases().await;
        }
        let status = self.shared.snapshot();
        OnceReport {
            outputs: status.outputs,
            auth_error,
            requests: status.requests,
        }
    }
}

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Deliver(#[from] DeliverError),
}

impl AttemptError {
    fn is_transient(&self) -> bool {
        match self {
            Self::Render(e) => e.is_transient(),
            Self::Deliver(e) => e.is_disk_full() || matches!(e, DeliverError::Io { .. }),
        }
    }

    fn permission_denied(&self) -> bool {
        matches!(self, Self::Render(RenderError::Bao { source, .. }) if source.is_permission_denied())
    }
}

/// One output's loop.
struct OutputTask {
    cfg: OutputConfig,
    shared: Arc<Shared>,
    rotate: Arc<Notify>,
    states: StateDir,
    /// The identity directory: every path the output writes is resolved from it.
    root: std::path::PathBuf,
}

impl OutputTask {
    fn new(agent: &Agent, cfg: &OutputConfig) -> Self {
        Self {
            cfg: cfg.clone(),
            shared: agent.shared.clone(),
            rotate: agent.rotate[&cfg.name].clone(),
            states: StateDir::new(&agent.cfg.state_dir),
            root: agent.cfg.base_dir.clone(),
        }
    }

    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn load_state(&self) -> OutputState {
        let state = self.states.load(self.name()).unwrap_or_default();
        let delivered_at = state.delivered_at;
        let last_reload = state.last_reload.clone();
        self.shared.update(self.name(), |e| {
            e.status.last_change = delivered_at;
            e.status.last_reload = last_reload;
        });
        state
    }

    async fn run(self) {
        let mut shutdown = self.shared.shutdown_signal();
        let mut tokens = self.shared.token_gen.subscribe();
        let mut state = self.load_state();
        let mut backoff = Backoff::default();
        let mut next = match self.keep_on_disk(&mut state) {
            Some(due) => due,
            None => self.shared.now(),
        };
        let mut force = false;
        loop {
            let now = self.shared.now();
            if now < next {
                // Capped so a suspended host or a clock jump is noticed within the hour. A
                // "rotate now" cuts any wait short, a backoff included: someone asked.
                let wait = to_std(next - now).min(Duration::from_secs(3600));
                tokio::select! {
                    () = tokio::time::sleep(wait) => continue,
                    () = self.rotate.notified() => force = true,
                    _ = shutdown.changed() => return,
                }
            }
            // Nothing can be rendered before the first login.
            if *tokens.borrow_and_update() == 0 {
                tokio::select! {
                    _ = tokens.changed() => continue,
                    _ = shutdown.changed() => return,
                }
            }
            let attempt = tokio::select! {
                r = self.attempt(&mut state, force) => r,
                // Dropping an attempt mid-render is safe: nothing is written before delivery,
                // and delivery itself does not yield.
                _ = shutdown.changed() => return,
            };
            if matches!(self.cfg.kind, OutputKind::Template(_)) {
                self.shared.databases.attempted(self.name());
            }
            match attempt {
                Ok(due) => {
                    // A rotation asked for during an outage is kept until it succeeds.
                    force = false;
                    backoff.reset();
                    next = due;
                }
                Err(e) => {
                    let wait = backoff.fail(schedule::random_unit());
                    tracing::warn!(output = %self.name(), error = %e, retry_in_s = wait.as_secs_f32(), "output failed");
                    if e.permission_denied() {
                        self.shared.relogin.notify_one();
                    }
                    next = self.shared.now()
                        + time::Duration::try_from(wait).unwrap_or(time::Duration::MAX);
                    self.shared
                        .update(self.name(), |e| e.status.next_due = Some(next));
                }
            }
        }
    }

    /// For a certificate output: if the set on disk verifies and is not yet due, keeps it and
    /// returns when it is due. Updates status (and a missing or outdated state record).
    fn keep_on_disk(&self, state: &mut OutputState) -> Option<OffsetDateTime> {
        let OutputKind::Certificate(spec) = &self.cfg.kind else {
            return None;
        };
        let now = self.shared.now();
        let owner = Ownership::resolve(
            self.name(),
            self.cfg.owner.as_deref(),
            self.cfg.group.as_deref(),
        );
        let files = deliver::read_set(
            &self.root,
            &spec.dir,
            &[CERT, KEY, CHAIN, FULLCHAIN],
            owner.unwrap_or_default(),
        )?;
        let expected = Expected {
            common_name: &spec.common_name,
            sans: &spec.sans,
        };
        if let Err(e) = deliver::verify_certificate_set(
            self.name(),
            &files,
            &self.shared.trust_anchor_pem,
            expected,
            now,
        ) {
            tracing::info!(output = %self.name(), reason = %e, "the certificate on disk will be replaced");
            return None;
        }
        let text = String::from_utf8_lossy(&files[0].contents).into_owned();
        let leaf = warden_pki::parse_pem_bundle(&text).ok()?.swap_remove(0);
        let due = schedule::cert_due(
            &self.shared.renewal,
            leaf.not_before,
            leaf.not_after,
            schedule::serial_jitter(&leaf.serial),
            now,
        );
        if due <= now {
            tracing::info!(output = %self.name(), serial = %leaf.serial, "the certificate on disk is due for renewal");
            return None;
        }
        let rendered = Rendered {
            files,
            not_after: Some(leaf.not_after),
            not_before: Some(leaf.not_before),
            serial: Some(leaf.serial.clone()),
            refresh_within: None,
            database_generations: BTreeMap::new(),
        };
        let digests = deliver::digests(&rendered);
        if state.serial.as_deref() != Some(leaf.serial.as_str()) || state.files != digests {
            state.serial = Some(leaf.serial.clone());
            state.not_before = Some(leaf.not_before);
            state.not_after = Some(leaf.not_after);
            state.files = digests;
            if let Err(e) = self.states.save(self.name(), state) {
                tracing::warn!(output = %self.name(), error = %e, "could not record state");
            }
        }
        tracing::info!(output = %self.name(), serial = %leaf.serial, due = %due, "keeping the valid certificate on disk");
        self.shared.update(self.name(), |e| {
            e.delivered = true;
            e.permanent = false;
            e.status.serial = Some(leaf.serial.clone());
            e.status.not_after = Some(leaf.not_after);
            e.status.next_due = Some(due);
            e.status.last_error = None;
            e.status.failures = 0;
        });
        Some(due)
    }

    /// One render → deliver → reload → record. Returns when the output is next due.
    async fn attempt(
        &self,
        state: &mut OutputState,
        force: bool,
    ) -> Result<OffsetDateTime, AttemptError> {
        if !force && let Some(due) = self.keep_on_disk(state) {
            return Ok(due);
        }
        let result = self.render_and_deliver(state).await;
        match &result {
            Ok(_) => {}
            Err(e) => self.record_failure(&e.to_string(), !e.is_transient()),
        }
        result
    }

    fn record_failure(&self, message: &str, permanent: bool) {
        self.shared.update(self.name(), |e| {
            e.status.failures += 1;
            e.status.render_errors += 1;
            e.status.last_error = Some(message.to_owned());
            e.permanent = permanent;
        });
    }

    async fn render_and_deliver(
        &self,
        state: &mut OutputState,
    ) -> Result<OffsetDateTime, AttemptError> {
        let now = self.shared.now();
        let ctx = RenderContext {
            client: &self.shared.client,
            trust_anchor_pem: &self.shared.trust_anchor_pem,
            now,
            databases: Some(&*self.shared),
        };
        let name = self.name();
        let owner = Ownership::resolve(name, self.cfg.owner.as_deref(), self.cfg.group.as_deref())?;
        self.shared.count_request();
        let (rendered, outcome) = match &self.cfg.kind {
            OutputKind::Certificate(spec) => {
                let rendered = certificate::render(name, spec, &ctx).await?;
                deliver::verify_certificate_set(
                    name,
                    &rendered.files,
                    &self.shared.trust_anchor_pem,
                    Expected {
                        common_name: &spec.common_name,
                        sans: &spec.sans,
                    },
                    self.shared.now(),
                )?;
                let version = rendered.serial.clone().unwrap_or_default();
                let outcome = deliver::deliver_set(
                    name,
                    &self.root,
                    &spec.dir,
                    &version,
                    &rendered.files,
                    owner,
                )?;
                (rendered, outcome)
            }
            OutputKind::Template(spec) => {
                let t = TemplateOutput {
                    name: name.to_owned(),
                    source: spec.source.clone(),
                    file_name: file_name(&spec.path),
                    mode: spec.mode,
                };
                let rendered = t.render(&ctx).await?;
                let outcome = deliver_single(name, &self.root, &spec.path, &rendered, owner)?;
                (rendered, outcome)
            }
            OutputKind::CaChain(spec) => {
                let c = CaChainOutput {
                    name: name.to_owned(),
                    pki_mount: spec.pki_mount.clone(),
                    full_chain: spec.full_chain,
                    file_name: file_name(&spec.path),
                    mode: spec.mode,
                };
                let rendered = c.render(&ctx).await?;
                let outcome = deliver_single(name, &self.root, &spec.path, &rendered, owner)?;
                (rendered, outcome)
            }
        };
        let after = self.shared.now();
        // On disk now (changed or already identical): the lease book may retire what it replaced.
        self.shared
            .databases
            .delivered(name, &rendered.database_generations);
        let is_cert = matches!(self.cfg.kind, OutputKind::Certificate(_));
        if is_cert || outcome == Outcome::Changed || state.files.is_empty() {
            state.files = deliver::digests(&rendered);
        }
        state.serial.clone_from(&rendered.serial);
        state.not_before = rendered.not_before;
        state.not_after = rendered.not_after;
        let mut reload_record = None;
        if outcome == Outcome::Changed {
            state.delivered_at = Some(after);
            tracing::info!(output = %name, serial = ?rendered.serial, "delivered new content");
            if let Some(r) = &self.cfg.reload {
                let record = reload::run(name, r).await;
                state.last_reload = Some(record.clone());
                reload_record = Some(record);
            }
        } else {
            tracing::debug!(output = %name, "content unchanged");
        }
        if let Err(e) = self.states.save(name, state) {
            tracing::warn!(output = %name, error = %e, "could not record state");
        }
        let due = if is_cert {
            match (rendered.not_before, rendered.not_after) {
                (Some(nb), Some(na)) => schedule::cert_due(
                    &self.shared.renewal,
                    nb,
                    na,
                    schedule::serial_jitter(rendered.serial.as_deref().unwrap_or("")),
                    after,
                ),
                _ => after + time::Duration::hours(1),
            }
        } else {
            let mut poll = self.shared.renewal.poll;
            if let Some(r) = rendered.refresh_within {
                poll = poll.min(r);
            }
            after
                + time::Duration::try_from(schedule::poll_delay(poll, schedule::random_unit()))
                    .unwrap_or(time::Duration::HOUR)
        };
        self.shared.update(name, |e| {
            e.delivered = true;
            e.permanent = false;
            e.status.failures = 0;
            e.status.last_error = None;
            e.status.renders += 1;
            e.status.last_render = Some(after);
            e.status.next_due = Some(due);
            if is_cert || matches!(self.cfg.kind, OutputKind::CaChain(_)) {
                e.status.serial.clone_from(&rendered.serial);
                e.status.not_after = rendered.not_after;
            }
            if outcome == Outcome::Changed {
                e.status.changes += 1;
                e.status.last_change = Some(after);
            }
            if let Some(r) = reload_record {
                e.status.last_reload = Some(r);
            }
        });
        Ok(due)
    }
}

fn deliver_single(
    name: &str,
    root: &std::path::Path,
    path: &std::path::Path,
    rendered: &Rendered,
    owner: Ownership,
) -> Result<Outcome, DeliverError> {
    let [file] = rendered.files.as_slice() else {
        return Err(DeliverError::Refused {
            output: name.to_owned(),
            reason: format!("expected one rendered file, got {}", rendered.files.len()),
        });
    };
    deliver::deliver_file(name, root, path, file, owner)
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(delivered: bool, failures: u32, permanent: bool) -> Entry {
        Entry {
            status: OutputStatus {
                name: "tls".into(),
                kind: "certificate",
                health: Health::Pending,
                serial: None,
                not_after: None,
                next_due: None,
                last_render: None,
                last_change: None,
                last_error: (failures > 0).then(|| "sealed".to_owned()),
                failures,
                renders: 0,
                render_errors: 0,
                changes: 0,
                last_reload: None,
            },
            delivered,
            permanent,
        }
    }

    #[test]
    fn health_follows_delivery_failures_and_time() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(100);
        assert_eq!(entry(false, 0, false).view(now).health, Health::Pending);
        assert_eq!(entry(true, 0, false).view(now).health, Health::Fresh);
        // Failing with valid material on disk: stale.
        assert_eq!(entry(true, 2, false).view(now).health, Health::Stale);
        // Failing with nothing on disk, or a mistake: failed.
        assert_eq!(entry(false, 1, false).view(now).health, Health::Failed);
        assert_eq!(entry(true, 1, true).view(now).health, Health::Failed);
        // Expired on disk: failed even without a failure recorded yet.
        let mut e = entry(true, 0, false);
        e.status.not_after = Some(now - time::Duration::seconds(1));
        assert_eq!(e.view(now).health, Health::Failed);
        // Waiting for a login past due: stale.
        let mut e = entry(true, 0, false);
        e.status.last_error = Some("not logged in".into());
        e.status.next_due = Some(now - time::Duration::seconds(5));
        assert_eq!(e.view(now).health, Health::Stale);
        e.status.next_due = Some(now + time::Duration::seconds(5));
        assert_eq!(e.view(now).health, Health::Fresh);
    }

    #[test]
    fn status_serialises_for_the_endpoints() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let v = serde_json::to_value(entry(true, 1, false).view(now)).unwrap();
        assert_eq!(v["health"], "stale");
        assert_eq!(v["type"], "certificate");
        assert_eq!(v["last_error"], "sealed");
    }
}
