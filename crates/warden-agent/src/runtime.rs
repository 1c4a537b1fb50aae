//! The loop: one task per output plus the auth task, sharing one client and one token.
//!
//! ```text
//!   Agent::new(config) ──► Agent::run()            (until AgentHandle::shutdown / a signal)
//!                      └─► Agent::run_once()       (--once: every output once, then exit)
//!   Agent::handle() ──► AgentHandle: status(), rotate_now(name), shutdown()   (Clone, Send)
//! ```
//!
//! Each output task (`output_task`) sleeps until its output is due (a certificate at its
//! renewal point or its next poll, whichever comes first; a template or CA chain at its next
//! poll), checks what is on disk, renders, delivers, reloads if something changed and records
//! the result on the board (`board`). A failure backs off (1 s doubling to 5 min, jittered)
//! without touching what is on disk. A certificate set that still verifies and is not past its
//! renewal point is kept (drift such as a removed symlink or a widened mode is repaired from
//! it, `cert_disk`), which is what makes restarts and re-logins free of new certificates.
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
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Notify;
use warden_bao::ClientConfig;

use super::AgentError;
use super::auth::{self, Authenticator};
use super::board::Shared;
pub use super::board::{AgentStatus, AuthStatus, Health, OutputStatus};
use super::config::{Config, OutputKind};
use super::database::{self, LeaseBook};
use super::output_task::OutputTask;
use super::schedule::{Clock, SystemClock};
use super::state::StateDir;

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
            .field("identity", &self.shared.identity_name())
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

    /// The state every task shares (for `exec`, which runs beside the tasks).
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Asks the agent to stop: tasks finish the delivery in progress (never half a set) and
    /// [`Agent::run`] returns.
    pub fn shutdown(&self) {
        self.shared.request_shutdown();
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
    databases: Arc<LeaseBook>,
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
            // Whoever can rewrite the anchor chooses which server the agent trusts with its
            // token and secrets; the same check runs on every re-read (`trust::read`).
            Some(path) => crate::trust::read(path).map_err(|reason| AgentError::TrustAnchor {
                path: path.clone(),
                reason,
            })?,
            None => String::new(),
        };
        let identity = cfg
            .auth
            .tls_identity
            .as_ref()
            .map(auth::load_identity)
            .transpose()
            .map_err(AgentError::Auth)?;
        let mut base = ClientConfig::with_addresses(&cfg.openbao.addresses).map_err(|source| {
            AgentError::Client {
                source: Box::new(source),
            }
        })?;
        if !trust_anchor_pem.is_empty() {
            base = base.with_ca_pem(trust_anchor_pem.clone().into_bytes());
        }
        // An AppRole or JWT agent's TLS identity is a transport certificate (ADR 0010): its
        // renewals must name what the one on disk names (`<holder>.transport.<domain>`), not
        // the workload's own name, which no transport role allows.
        let tls_cn = match (&cfg.auth.method, &cfg.auth.tls_identity) {
            (crate::config::AuthMethod::Cert { .. }, _) | (_, None) => None,
            (_, Some(tls)) => std::fs::read_to_string(&tls.cert_file)
                .ok()
                .and_then(|pem| warden_pki::common_name(&pem)),
        };
        let trust = Arc::new(crate::trust::TrustFile::new(
            cfg.openbao.ca_file.clone(),
            trust_anchor_pem,
        ));
        let authn = Authenticator::new(
            cfg.auth.clone(),
            tls_cn.unwrap_or_else(|| cfg.identity.common_name.clone()),
            base,
            identity,
            trust.clone(),
        )
        .map_err(AgentError::Auth)?;
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
        let databases = Arc::new(databases);
        let shared = Arc::new(Shared::new(
            authn.client().clone(),
            cfg.renewal,
            trust,
            clock,
            cfg.identity.name.clone(),
            cfg.outputs
                .iter()
                .map(|o| (o.name.clone(), o.type_name()))
                .collect(),
            databases.clone(),
        ));
        Ok(Self {
            cfg: Arc::new(cfg),
            shared,
            auth: Arc::new(authn),
            rotate,
            databases,
        })
    }

    /// The credential reference of each `signing_key` output, for the delivery report: the
    /// key's name is the last component of its KV path (`warden_spec::naming::signing_key`).
    fn signing_refs(&self) -> super::report::SigningRefs {
        self.cfg
            .outputs
            .iter()
            .filter_map(|o| match &o.kind {
                OutputKind::SigningKey(k) => {
                    let key = k.kv_path.rsplit('/').next()?;
                    Some((
                        o.name.clone(),
                        format!("{}/signing-key/{key}", self.cfg.identity.name),
                    ))
                }
                _ => None,
            })
            .collect()
    }

    /// The validated configuration it runs.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// A handle for status, rotate-now and shutdown.
    pub fn handle(&self) -> AgentHandle {
        AgentHandle {
            shared: self.shared.clone(),
            rotate: self.rotate.clone(),
        }
    }

    /// The PKI mounts this agent issues certificates from or delivers the chain of (outputs
    /// and its own identity): the ones whose issuers are watched.
    fn issuer_mounts(&self) -> Vec<String> {
        let mut mounts: Vec<String> = self
            .cfg
            .outputs
            .iter()
            .filter_map(|o| match &o.kind {
                OutputKind::Certificate(c) => Some(c.pki_mount.clone()),
                OutputKind::CaChain(c) => Some(c.pki_mount.clone()),
                _ => None,
            })
            .collect();
        if let Some(m) = self.auth.identity_mount() {
            mounts.push(m.to_owned());
        }
        mounts.sort();
        mounts.dedup();
        mounts
    }

    /// Runs until [`AgentHandle::shutdown`]. Failures of outputs or of the login never end
    /// it: they are retried and reported in the status.
    pub async fn run(self) -> Result<(), AgentError> {
        StateDir::new(&self.cfg.state_dir)
            .ensure()
            .map_err(AgentError::State)?;
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(auth::run(self.auth.clone(), self.shared.clone()));
        tasks.spawn(crate::issuer_watch::run(
            self.shared.clone(),
            self.issuer_mounts(),
        ));
        for out in &self.cfg.outputs {
            let task = OutputTask::new(
                &self.shared,
                &self.databases,
                &self.rotate,
                &self.cfg.state_dir,
                &self.cfg.base_dir,
                out,
            );
            tasks.spawn(async move { task.run().await });
        }
        for i in 0..self.databases.len() {
            tasks.spawn(database::run_source(
                self.shared.clone(),
                self.databases.clone(),
                i,
            ));
        }
        tasks.spawn(super::report::run(
            self.shared.clone(),
            StateDir::new(&self.cfg.state_dir),
            self.signing_refs(),
        ));
        tracing::info!(identity = %self.cfg.identity.name, outputs = self.cfg.outputs.len(), databases = self.databases.len(), "agent started");
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
        if self.databases.holds_live_lease(self.shared.now()) {
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
            .map(|o| {
                OutputTask::new(
                    &self.shared,
                    &self.databases,
                    &self.rotate,
                    &self.cfg.state_dir,
                    &self.cfg.base_dir,
                    o,
                )
            })
            .collect();
        let mut logged_in = false;
        let mut auth_error = None;
        for task in &tasks {
            let mut state = task.load_state();
            if task.keep_on_disk(&mut state).is_some() {
                // Kept; a reload that failed before is run again.
                if let Err(e) = task.retry_reload(&mut state).await {
                    task.record_failure(&e.to_string());
                }
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
                self.databases.attempted(task.name());
            } else {
                task.record_failure(&format!(
                    "not logged in: {}",
                    auth_error.clone().unwrap_or_default()
                ));
            }
        }
        // The identity certificate goes into the report too: `warden revoke identity` finds
        // its serial there (the long-running agent learns it when it schedules renewal).
        if let Some(cert) = self.auth.identity_cert() {
            self.shared.identity_known(&cert);
        }
        if logged_in {
            super::report::write_once(
                &self.shared,
                &StateDir::new(&self.cfg.state_dir),
                &self.signing_refs(),
            )
            .await;
            self.databases.retire_all_previous(&self.shared).await;
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
