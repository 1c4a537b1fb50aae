//! One output's loop: sleep until due, render, deliver, reload, record.
//!
//! Each output task sleeps until its output is due (a certificate at its renewal point, a
//! template or CA chain at its next poll), renders, delivers, reloads if something changed and
//! records the result on the board. A failure backs off (1 s doubling to 5 min, jittered)
//! without touching what is on disk.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::Notify;

use super::board::Shared;
use super::config::{OutputConfig, OutputKind};
use super::database::{self, LeaseBook};
use super::deliver::{self, DeliverError, Expected, Outcome, Ownership};
use super::output::ca_chain::CaChainOutput;
use super::output::certificate::{self, CERT, CHAIN, FULLCHAIN, KEY};
use super::output::template::TemplateOutput;
use super::output::{RenderContext, RenderError, Rendered};
use super::reload;
use super::schedule::{self, Backoff, to_std};
use super::state::{OutputState, StateDir};

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AttemptError {
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
pub(crate) struct OutputTask {
    cfg: OutputConfig,
    shared: Arc<Shared>,
    databases: Arc<LeaseBook>,
    rotate: Arc<Notify>,
    states: StateDir,
}

impl OutputTask {
    pub(crate) fn new(
        shared: &Arc<Shared>,
        databases: &Arc<LeaseBook>,
        rotate: &BTreeMap<String, Arc<Notify>>,
        state_dir: &Path,
        cfg: &OutputConfig,
    ) -> Self {
        Self {
            cfg: cfg.clone(),
            shared: shared.clone(),
            databases: databases.clone(),
            rotate: rotate[&cfg.name].clone(),
            states: StateDir::new(state_dir),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.cfg.name
    }

    pub(crate) fn load_state(&self) -> OutputState {
        let state = self.states.load(self.name()).unwrap_or_default();
        let delivered_at = state.delivered_at;
        let last_reload = state.last_reload.clone();
        self.shared.update(self.name(), |e| {
            e.status.last_change = delivered_at;
            e.status.last_reload = last_reload;
        });
        state
    }

    pub(crate) async fn run(self) {
        let mut shutdown = self.shared.shutdown_signal();
        let mut tokens = self.shared.token_receiver();
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
                self.databases.attempted(self.name());
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
                        self.shared.hint_relogin();
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
    pub(crate) fn keep_on_disk(&self, state: &mut OutputState) -> Option<OffsetDateTime> {
        let OutputKind::Certificate(spec) = &self.cfg.kind else {
            return None;
        };
        let now = self.shared.now();
        let files = deliver::read_set(&spec.dir, &[CERT, KEY, CHAIN, FULLCHAIN])?;
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
    pub(crate) async fn attempt(
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

    pub(crate) fn record_failure(&self, message: &str, permanent: bool) {
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
        let reader = database::Reader {
            book: &self.databases,
            shared: &self.shared,
        };
        let ctx = RenderContext {
            client: &self.shared.client,
            trust_anchor_pem: &self.shared.trust_anchor_pem,
            now,
            databases: Some(&reader),
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
                let outcome =
                    deliver::deliver_set(name, &spec.dir, &version, &rendered.files, owner)?;
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
                let outcome = deliver_single(name, &spec.path, &rendered, owner)?;
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
                let outcome = deliver_single(name, &spec.path, &rendered, owner)?;
                (rendered, outcome)
            }
        };
        let after = self.shared.now();
        // On disk now (changed or already identical): the lease book may retire what it replaced.
        self.databases
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
    path: &Path,
    rendered: &Rendered,
    owner: Ownership,
) -> Result<Outcome, DeliverError> {
    let [file] = rendered.files.as_slice() else {
        return Err(DeliverError::Refused {
            output: name.to_owned(),
            reason: format!("expected one rendered file, got {}", rendered.files.len()),
        });
    };
    deliver::deliver_file(name, path, file, owner)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
