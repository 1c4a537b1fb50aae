//! One output's loop: sleep until due, render, deliver, reload, record.
//!
//! Each output task sleeps until its output is due (a certificate at its renewal point, a
//! template or CA chain at its next poll), renders, delivers, reloads if something changed and
//! records the result on the board. A failure backs off (1 s doubling to 5 min, jittered)
//! without touching what is on disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::Notify;

use super::board::{Shared, skew_message};
use super::cert_disk::{Check, Leaf, OnDisk};
use super::config::{CertificateOutput, OutputConfig, OutputKind, SigningKeyOutputConfig};
use super::database::{self, LeaseBook};
use super::deliver::{self, DeliverError, Expected, Outcome, Ownership};
use super::output::ca_chain::CaChainOutput;
use super::output::certificate::{self, CERT, CHAIN, FULLCHAIN, KEY};
use super::output::crl::CrlOutput;
use super::output::signing_key::{self, SigningKeyOutput};
use super::output::template::TemplateOutput;
use super::output::{RenderContext, RenderError, Rendered};
use super::reload;
use super::schedule::{self, Backoff, to_std};
use super::state::{OutputState, StateDir, sha256_hex};

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AttemptError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Deliver(#[from] DeliverError),
    /// This host's clock is too far from the server's: nothing is issued meanwhile.
    #[error("{}", skew_message(*skew))]
    ClockSkew { skew: time::Duration },
    /// The purpose governing the certificate refuses a new one (revoked, or the current one
    /// outlived interval + grace): fail closed, the valid certificate stays.
    #[error("refused by its purpose: {0}; the certificate on disk is kept until it expires")]
    Refused(#[from] warden_spec::Refusal),
    /// The purpose governing a signing key refuses delivering it (revoked, or the current
    /// version outlived interval + grace): the files on disk stay as they are.
    #[error("refused by its purpose: {0}; the signing key files on disk are kept as they are")]
    RefusedKey(warden_spec::Refusal),
    /// The service's reload after a delivery failed: it still runs on what it had before. Run
    /// again (with backoff) until it works; its output is in the log, not here (this message
    /// reaches the status and the delivery report).
    #[error(
        "the reload after the delivery failed (its output is in the agent's log); it is run again until it works"
    )]
    Reload,
    /// The purpose's registry entry could not be read or is not a contract: nothing is issued
    /// without knowing the rules.
    #[error(
        "cannot read the contract of purpose `{purpose}` at {path}: {detail}; nothing is issued until it can be checked"
    )]
    Contract {
        purpose: String,
        path: String,
        detail: String,
    },
}

impl AttemptError {
    fn permission_denied(&self) -> bool {
        matches!(self, Self::Render(r) if r.is_permission_denied())
    }
}

/// One output's loop.
pub(crate) struct OutputTask {
    cfg: OutputConfig,
    shared: Arc<Shared>,
    databases: Arc<LeaseBook>,
    rotate: Arc<Notify>,
    states: StateDir,
    /// The identity directory: every path the output writes is resolved from it without
    /// following symlinks.
    root: PathBuf,
    /// A certificate set issued but not delivered (disk full, refused by a check): the next
    /// attempt delivers it again instead of issuing another, while it is valid.
    held: Mutex<Option<Rendered>>,
    /// The serial last kept on disk, so keeping it is logged once, not at every poll.
    kept: Mutex<Option<String>>,
    /// A signing key output's last loaded set, read again only when the key's metadata changed.
    signing: Mutex<Option<signing_key::Loaded>>,
}

impl OutputTask {
    pub(crate) fn new(
        shared: &Arc<Shared>,
        databases: &Arc<LeaseBook>,
        rotate: &BTreeMap<String, Arc<Notify>>,
        state_dir: &Path,
        root: &Path,
        cfg: &OutputConfig,
    ) -> Self {
        Self {
            cfg: cfg.clone(),
            shared: shared.clone(),
            databases: databases.clone(),
            rotate: rotate[&cfg.name].clone(),
            states: StateDir::new(state_dir),
            root: root.to_path_buf(),
            held: Mutex::new(None),
            kept: Mutex::new(None),
            signing: Mutex::new(None),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.cfg.name
    }

    pub(crate) fn load_state(&self) -> OutputState {
        let state = self.states.load(self.name()).unwrap_or_default();
        let delivered_at = state.delivered_at;
        let last_reload = state.last_reload.clone();
        let on_disk = self.single_file_on_disk(&state);
        self.shared.update(self.name(), |e| {
            e.status.last_change = delivered_at;
            e.status.last_reload = last_reload;
            e.delivered = on_disk;
        });
        state
    }

    /// A template or CA chain file a previous run delivered is still in place, unchanged:
    /// usable, so a failure before this run's first delivery is `stale`, not `failed`.
    /// A signing key set is usable when the live set holds exactly the files recorded.
    fn single_file_on_disk(&self, state: &OutputState) -> bool {
        let owner = Ownership::resolve(
            self.name(),
            self.cfg.owner.as_deref(),
            self.cfg.group.as_deref(),
        )
        .unwrap_or_default();
        let path = match &self.cfg.kind {
            OutputKind::Template(t) => &t.path,
            OutputKind::CaChain(c) => &c.path,
            OutputKind::Crl(c) => &c.path,
            OutputKind::SigningKey(k) => {
                let names: Vec<&str> = state.files.keys().map(String::as_str).collect();
                return !names.is_empty()
                    && deliver::read_set(&self.root, &k.dir, &names, owner).is_some_and(|files| {
                        deliver::digests(&Rendered {
                            files,
                            ..Rendered::default()
                        }) == state.files
                    });
            }
            OutputKind::Certificate(_) => return false,
        };
        let Some(recorded) = state.files.get(&file_name(path)) else {
            return false;
        };
        deliver::read_file(&self.root, path, owner).is_some_and(|b| sha256_hex(&b) == *recorded)
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
        let mut issuers = self.shared.issuers.subscribe();
        let watches_issuers = matches!(
            self.cfg.kind,
            OutputKind::Certificate(_) | OutputKind::CaChain(_)
        );
        loop {
            let now = self.shared.now();
            if now < next {
                // Capped so a suspended host or a clock jump is noticed within the hour. A
                // "rotate now" cuts any wait short, a backoff included: someone asked.
                let wait = to_std(next - now).min(Duration::from_secs(3600));
                tokio::select! {
                    () = tokio::time::sleep(wait) => continue,
                    () = self.rotate.notified() => {
                        force = true;
                        // Asked for a new certificate: not the one a failed delivery left.
                        *lock(&self.held) = None;
                    }
                    // An intermediate rotation step: look again now (a CA chain takes in the
                    // new issuer; a certificate recomputes when it is due), not forced.
                    Ok(()) = issuers.changed(), if watches_issuers => {}
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

    /// For a certificate output: checks the set on disk (repairing drift the delivered
    /// material can undo); if it is good and not yet due, keeps it and returns when to look
    /// again (the next poll, or the renewal point if sooner). Updates status and the state
    /// record.
    pub(crate) fn keep_on_disk(&self, state: &mut OutputState) -> Option<OffsetDateTime> {
        let OutputKind::Certificate(spec) = &self.cfg.kind else {
            return None;
        };
        match self.check_disk(spec, state) {
            OnDisk::Good(leaf) | OnDisk::Repaired(leaf, _) => {
                let now = self.shared.trusted_now();
                let due = self.due(&leaf, now);
                // On a skewed host the set only checks by the server's clock; services here
                // see it expired or not yet valid. Go on to the attempt, which names the skew.
                if self.shared.skewed().is_some() {
                    self.shared.update(self.name(), |e| {
                        e.delivered = true;
                        e.status.serial = Some(leaf.serial.clone());
                        e.status.not_after = Some(leaf.not_after);
                        e.status.issuer.clone_from(&leaf.issuer);
                    });
                    return None;
                }
                if due <= now {
                    tracing::info!(output = %self.name(), serial = %leaf.serial, "the certificate on disk is due for renewal");
                    // What is on disk checks and is in use: a renewal that fails (or is refused
                    // by its purpose) leaves the output stale, not failed.
                    self.shared.update(self.name(), |e| {
                        e.delivered = true;
                        e.status.serial = Some(leaf.serial.clone());
                        e.status.not_after = Some(leaf.not_after);
                        e.status.issuer.clone_from(&leaf.issuer);
                    });
                    return None;
                }
                // Said once per certificate; every poll after that is a quiet check.
                let first =
                    lock(&self.kept).replace(leaf.serial.clone()) != Some(leaf.serial.clone());
                if first {
                    tracing::info!(output = %self.name(), serial = %leaf.serial, due = %due, "keeping the valid certificate on disk");
                } else {
                    tracing::debug!(output = %self.name(), serial = %leaf.serial, "the certificate on disk checks");
                }
                // `due` is on the server's clock; sleeps run on this host's.
                let local_due = due + (self.shared.now() - now);
                let next = local_due.min(self.next_poll(self.shared.now(), None));
                self.shared.update(self.name(), |e| {
                    e.delivered = true;
                    e.status.serial = Some(leaf.serial.clone());
                    e.status.not_after = Some(leaf.not_after);
                    e.status.issuer.clone_from(&leaf.issuer);
                    e.status.next_due = Some(next);
                    e.status.last_error = None;
                    e.status.failures = 0;
                });
                Some(next)
            }
            OnDisk::Usable(leaf, why) => {
                tracing::info!(output = %self.name(), serial = %leaf.serial, reason = %why, "the certificate on disk still works but will be replaced");
                self.shared.update(self.name(), |e| {
                    e.delivered = true;
                    e.status.serial = Some(leaf.serial.clone());
                    e.status.not_after = Some(leaf.not_after);
                    e.status.issuer.clone_from(&leaf.issuer);
                });
                None
            }
            OnDisk::Unusable(why) => {
                tracing::info!(output = %self.name(), reason = %why, "no usable certificate on disk");
                self.shared.update(self.name(), |e| e.delivered = false);
                None
            }
        }
    }

    /// Runs the on-disk check, logging and counting a repair and recording a missing or
    /// outdated state.
    fn check_disk(&self, spec: &CertificateOutput, state: &mut OutputState) -> OnDisk {
        let owner = Ownership::resolve(
            self.name(),
            self.cfg.owner.as_deref(),
            self.cfg.group.as_deref(),
        )
        .unwrap_or_default();
        let trust_anchor = self.shared.trust.pem();
        let verdict = Check {
            output: self.name(),
            root: &self.root,
            spec,
            owner,
            trust_anchor_pem: &trust_anchor,
            now: self.shared.trusted_now(),
            delivered: &state.files,
        }
        .run();
        if let OnDisk::Repaired(leaf, what) = &verdict {
            tracing::warn!(output = %self.name(), serial = %leaf.serial, drift = %what, "repaired the certificate on disk from the delivered version");
            self.shared.repaired(self.name());
        }
        if let OnDisk::Good(leaf) | OnDisk::Repaired(leaf, _) = &verdict
            && let Some(files) =
                deliver::read_set(&self.root, &spec.dir, &[CERT, KEY, CHAIN, FULLCHAIN], owner)
        {
            let digests = deliver::digests(&Rendered {
                files,
                ..Rendered::default()
            });
            if state.serial.as_deref() != Some(leaf.serial.as_str()) || state.files != digests {
                state.serial = Some(leaf.serial.clone());
                state.not_before = Some(leaf.not_before);
                state.not_after = Some(leaf.not_after);
                state.files = digests;
                if let Err(e) = self.states.save(self.name(), state) {
                    tracing::warn!(output = %self.name(), error = %e, "could not record state");
                }
            }
        }
        verdict
    }

    /// When the certificate is due: its renewal point, or sooner its point in the reissue
    /// window when the mount's default issuer is no longer the one that signed it.
    fn due(&self, leaf: &Leaf, now: OffsetDateTime) -> OffsetDateTime {
        let planned = schedule::cert_due(
            &self.shared.renewal,
            leaf.not_before,
            leaf.not_after,
            schedule::serial_jitter(&leaf.serial),
            now,
        );
        let OutputKind::Certificate(spec) = &self.cfg.kind else {
            return planned;
        };
        match self.shared.issuers.due(
            &spec.pki_mount,
            leaf.issuer.as_deref(),
            &leaf.serial,
            self.shared.renewal.issuer_window,
        ) {
            Some(moved) => planned.min(moved.max(now)),
            None => planned,
        }
    }

    fn next_poll(&self, after: OffsetDateTime, refresh_within: Option<Duration>) -> OffsetDateTime {
        let mut poll = self.shared.renewal.poll;
        if let Some(r) = refresh_within {
            poll = poll.min(r);
        }
        after
            + time::Duration::try_from(schedule::poll_delay(poll, schedule::random_unit()))
                .unwrap_or(time::Duration::HOUR)
    }

    /// One check → render → deliver → reload → record. Returns when the output is next due.
    pub(crate) async fn attempt(
        &self,
        state: &mut OutputState,
        force: bool,
    ) -> Result<OffsetDateTime, AttemptError> {
        if !force && let Some(next) = self.keep_on_disk(state) {
            // Kept, but the service may not run on it yet.
            if let Err(e) = self.retry_reload(state).await {
                self.record_failure(&e.to_string());
                return Err(e);
            }
            return Ok(next);
        }
        let result = self.render_and_deliver(state).await;
        if let Err(e) = &result {
            self.record_failure(&e.to_string());
        }
        result
    }

    pub(crate) fn record_failure(&self, message: &str) {
        self.shared.update(self.name(), |e| {
            e.status.failures += 1;
            e.status.render_errors += 1;
            e.status.last_error = Some(message.to_owned());
        });
    }

    /// The certificate set to deliver: the one a failed delivery left, while it is not due,
    /// else a new one — unless this host's clock is skewed.
    async fn certificate(
        &self,
        spec: &CertificateOutput,
        ctx: &RenderContext<'_>,
    ) -> Result<Rendered, AttemptError> {
        let held = lock(&self.held).take();
        if let Some(r) = held {
            let now = self.shared.trusted_now();
            if let Some(leaf) = Leaf::of(&r.files)
                && self.due(&leaf, now) > now
            {
                tracing::info!(output = %self.name(), serial = %leaf.serial, "delivering the certificate already issued again");
                return Ok(r);
            }
        }
        self.skew_gate().await?;
        self.shared.count_request();
        Ok(certificate::render(self.name(), spec, ctx).await?)
    }

    /// Fail closed: reads the contract of `purpose` from the registry and refuses a new
    /// certificate when the purpose is revoked or the current one (issued at the state's
    /// `not_before`) outlived interval + grace. Checked at every attempt, so a purpose revoked
    /// by `warden apply` stops the next renewal without a restart.
    async fn purpose_gate(&self, purpose: &str, state: &OutputState) -> Result<(), AttemptError> {
        let issued = state
            .serial
            .as_ref()
            .and(state.not_before)
            .or_else(|| self.issued_on_disk())
            .map(OffsetDateTime::unix_timestamp);
        let contract = self.read_contract(purpose).await?;
        let now = self.shared.trusted_now().unix_timestamp();
        warden_spec::rules::check_contract(&contract, issued, now).map_err(|refusal| {
            tracing::warn!(output = %self.name(), purpose, %refusal, "no new certificate: refused by its purpose; keeping the one on disk");
            AttemptError::Refused(refusal)
        })
    }

    /// When the newest certificate of this output on disk was issued, usable or not (its key
    /// gone, expired): without the state's record the rule still judges the certificate in
    /// use, never a "first issuance" that an `rm -rf state` would make of an overdue one.
    fn issued_on_disk(&self) -> Option<OffsetDateTime> {
        let OutputKind::Certificate(spec) = &self.cfg.kind else {
            return None;
        };
        let owner = Ownership::resolve(
            self.name(),
            self.cfg.owner.as_deref(),
            self.cfg.group.as_deref(),
        )
        .unwrap_or_default();
        let live = deliver::read_set(&self.root, &spec.dir, &[CERT], owner);
        let kept = deliver::read_versions(&self.root, &spec.dir, &[CERT], owner);
        live.into_iter()
            .chain(kept.into_iter().map(|(_, files)| files))
            .filter_map(|files| Leaf::of(&files).map(|l| l.not_before))
            .max()
    }

    /// Fail closed for a signing key: the contract of `purpose` checked against the current
    /// version's creation (its rotation). A revoked purpose, or a key left unrotated past
    /// interval + grace, keeps the files on disk as they are, including a rotation not yet
    /// delivered.
    async fn key_purpose_gate(
        &self,
        purpose: &str,
        rotated: OffsetDateTime,
    ) -> Result<(), AttemptError> {
        let contract = self.read_contract(purpose).await?;
        let now = self.shared.trusted_now().unix_timestamp();
        warden_spec::rules::check_contract(&contract, Some(rotated.unix_timestamp()), now).map_err(
            |refusal| {
                tracing::warn!(output = %self.name(), purpose, %refusal, "signing key not delivered: refused by its purpose; keeping the files on disk");
                AttemptError::RefusedKey(refusal)
            },
        )
    }

    /// Loads, checks and delivers a signing key set. `delivered` is the digests of the set last
    /// delivered: the purpose is checked only before something new would be delivered, as a
    /// certificate's is before an issuance (a poll that finds nothing new costs one request).
    async fn deliver_signing_key(
        &self,
        spec: &SigningKeyOutputConfig,
        owner: Ownership,
        delivered: &BTreeMap<String, String>,
    ) -> Result<(Rendered, Outcome), AttemptError> {
        let name = self.name();
        let out = SigningKeyOutput {
            name: name.to_owned(),
            location: warden_keys::KvLocation::new(&spec.kv_mount, &spec.kv_path),
            mode: spec.mode,
            key_mode: spec.key_mode,
        };
        // Windows end on the server's clock (the rotation's `created_time`).
        let now = self.shared.trusted_now();
        let previous = lock(&self.signing).clone();
        self.shared.count_request();
        let loaded = out.load(&self.shared.client, previous, now).await?;
        *lock(&self.signing) = Some(loaded.clone());
        let rendered = out.render(&loaded, now)?;
        let base = SigningKeyOutput::version_name(&loaded, &rendered);
        // A set repaired earlier lives under `<base>-r<time>`: the same content, so it is kept.
        let live = live_version_name(&spec.dir);
        let version = match &live {
            Some(l) if l.starts_with(&format!("{base}-r")) => l.clone(),
            _ => base.clone(),
        };
        let same =
            live.as_deref() == Some(version.as_str()) && deliver::digests(&rendered) == *delivered;
        if let Some(purpose) = spec.purpose.as_deref().filter(|_| !same) {
            self.key_purpose_gate(purpose, loaded.current_created())
                .await?;
        }
        let files = &rendered.files;
        let outcome = match deliver::deliver_set(
            name, &self.root, &spec.dir, &version, files, owner,
        ) {
            // The live set was changed on disk after the agent delivered it (a set is never
            // rewritten in place): deliver the same content as a new version, which replaces
            // it, as a certificate set is repaired from its delivered version.
            Err(DeliverError::Refused { reason, .. })
                if live.as_deref() == Some(version.as_str()) =>
            {
                let repaired = format!("{base}-r{}", OffsetDateTime::now_utc().unix_timestamp());
                tracing::warn!(output = %name, drift = %reason, version = %repaired, "repaired the signing key set on disk");
                self.shared.repaired(name);
                deliver::deliver_set(name, &self.root, &spec.dir, &repaired, files, owner)?
            }
            other => other?,
        };
        Ok((rendered, outcome))
    }

    /// The contract of `purpose` as the registry holds it now.
    async fn read_contract(
        &self,
        purpose: &str,
    ) -> Result<warden_spec::rules::Contract, AttemptError> {
        let path = warden_spec::naming::registry_entry(purpose).data_path();
        let fail = |detail: String| AttemptError::Contract {
            purpose: purpose.to_owned(),
            path: path.clone(),
            detail,
        };
        self.shared.count_request();
        let entry = self
            .shared
            .client
            .read(&path)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let data = entry
            .data
            .and_then(|d| d.get("data").cloned())
            .ok_or_else(|| fail("the entry is empty".to_owned()))?;
        let secs = |k: &str| {
            data.get(k)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| fail(format!("no `{k}`")))
        };
        let contract = warden_spec::rules::Contract {
            purpose: purpose.to_owned(),
            revoked: data
                .get("revoked")
                .and_then(serde_json::Value::as_bool)
                .ok_or_else(|| fail("no `revoked`".to_owned()))?,
            interval_secs: secs("rotation_interval_secs")?,
            grace_secs: secs("rotation_grace_secs")?,
            max_age_secs: secs("max_age_secs")?,
        };
        Ok(contract)
    }

    /// Refuses to issue while this host's clock is skewed. One cheap request refreshes the
    /// server's `Date` when it is unknown or said the clock was off, so a fixed clock is
    /// noticed at the next attempt.
    async fn skew_gate(&self) -> Result<(), AttemptError> {
        if self.shared.clock_skew().is_none() || self.shared.skewed().is_some() {
            self.shared.count_request();
            let _ = self.shared.client.health().await;
        }
        match self.shared.skewed() {
            Some(skew) => Err(AttemptError::ClockSkew { skew }),
            None => Ok(()),
        }
    }

    /// A new certificate that is not valid by this host's clock right after issuance shows a
    /// skewed clock (measured by `Date`, else estimated from the certificate itself).
    fn skew_in(&self, rendered: &Rendered) -> Option<time::Duration> {
        let leaf = Leaf::of(&rendered.files)?;
        let now = self.shared.now();
        self.shared
            .skew_of_new_certificate(leaf.not_before, leaf.not_after, now)
    }

    /// Checks and delivers a certificate set; on failure it is held for the next attempt.
    fn deliver_certificate(
        &self,
        spec: &CertificateOutput,
        rendered: Rendered,
        owner: Ownership,
    ) -> Result<(Rendered, Outcome), AttemptError> {
        let name = self.name();
        let result = match self.skew_in(&rendered) {
            Some(skew) => Err(AttemptError::ClockSkew { skew }),
            None => deliver::verify_certificate_set(
                name,
                &rendered.files,
                &self.shared.trust.pem(),
                Expected {
                    common_name: &spec.common_name,
                    sans: &spec.sans,
                },
                self.shared.now(),
            )
            .and_then(|()| {
                let version = rendered.serial.clone().unwrap_or_default();
                deliver::deliver_set(
                    name,
                    &self.root,
                    &spec.dir,
                    &version,
                    &rendered.files,
                    owner,
                )
            })
            .map_err(AttemptError::from),
        };
        match result {
            Ok(outcome) => Ok((rendered, outcome)),
            Err(e) => {
                *lock(&self.held) = Some(rendered);
                Err(e)
            }
        }
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
        let trust_anchor = self.shared.trust.pem();
        let ctx = RenderContext {
            client: &self.shared.client,
            trust_anchor_pem: &trust_anchor,
            now,
            databases: Some(&reader),
        };
        let name = self.name();
        let owner = Ownership::resolve(name, self.cfg.owner.as_deref(), self.cfg.group.as_deref())?;
        let (rendered, outcome) = match &self.cfg.kind {
            OutputKind::Certificate(spec) => {
                if let Some(purpose) = &spec.purpose {
                    self.purpose_gate(purpose, state).await?;
                }
                let rendered = self.certificate(spec, &ctx).await?;
                self.deliver_certificate(spec, rendered, owner)?
            }
            OutputKind::Template(spec) => {
                let t = TemplateOutput {
                    name: name.to_owned(),
                    source: spec.source.clone(),
                    file_name: file_name(&spec.path),
                    mode: spec.mode,
                };
                self.shared.count_request();
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
                self.shared.count_request();
                let rendered = c.render(&ctx).await?;
                let outcome = deliver_single(name, &self.root, &spec.path, &rendered, owner)?;
                (rendered, outcome)
            }
            OutputKind::SigningKey(spec) => {
                self.deliver_signing_key(spec, owner, &state.files).await?
            }
            OutputKind::Crl(spec) => {
                let c = CrlOutput {
                    name: name.to_owned(),
                    pki_mount: spec.pki_mount.clone(),
                    file_name: file_name(&spec.path),
                    mode: spec.mode,
                };
                self.shared.count_request();
                let rendered = c.render(&ctx).await?;
                let outcome = deliver_single(name, &self.root, &spec.path, &rendered, owner)?;
                (rendered, outcome)
            }
        };
        self.delivered(state, &rendered, outcome).await
    }

    /// Whether the last reload failed and is to be run again: the service still runs on what
    /// it had before the delivery (a certificate that will expire, a password that will be
    /// retired), whether or not anything new is delivered now.
    fn reload_pending(&self, state: &OutputState) -> bool {
        self.cfg.reload.is_some() && state.last_reload.as_ref().is_some_and(|r| !r.ok)
    }

    /// Runs the reload that failed again (nothing new was delivered) and records it; an error
    /// while it still fails, so the output is not `fresh` and the attempt is retried with
    /// backoff.
    pub(crate) async fn retry_reload(&self, state: &mut OutputState) -> Result<(), AttemptError> {
        let (true, Some(r)) = (self.reload_pending(state), &self.cfg.reload) else {
            return Ok(());
        };
        let name = self.name();
        tracing::info!(output = %name, "running the reload that failed again");
        let record = reload::run(name, r).await;
        let ok = record.ok;
        state.last_reload = Some(record.clone());
        if let Err(e) = self.states.save(name, state) {
            tracing::warn!(output = %name, error = %e, "could not record state");
        }
        self.shared
            .update(name, |e| e.status.last_reload = Some(record));
        if ok {
            Ok(())
        } else {
            Err(AttemptError::Reload)
        }
    }

    /// Records a delivery (state, reload, status) and returns when the output is next due; an
    /// error when its reload failed (everything else recorded).
    async fn delivered(
        &self,
        state: &mut OutputState,
        rendered: &Rendered,
        outcome: Outcome,
    ) -> Result<OffsetDateTime, AttemptError> {
        let name = self.name();
        let after = self.shared.now();
        // On disk now (changed or already identical): the lease book may retire what it replaced.
        self.databases
            .delivered(name, &rendered.database_generations);
        let is_cert = matches!(self.cfg.kind, OutputKind::Certificate(_));
        if is_cert || outcome == Outcome::Changed || state.files.is_empty() {
            state.files = deliver::digests(rendered);
        }
        state.serial.clone_from(&rendered.serial);
        state.not_before = rendered.not_before;
        state.not_after = rendered.not_after;
        let mut reload_record = None;
        // A reload that failed before is run again even when nothing changed now.
        let retry = self.reload_pending(state);
        if outcome == Outcome::Changed {
            state.delivered_at = Some(after);
            tracing::info!(output = %name, serial = %rendered.serial.as_deref().unwrap_or("none"), "delivered new content");
        } else {
            tracing::debug!(output = %name, "content unchanged");
        }
        if (outcome == Outcome::Changed || retry)
            && let Some(r) = &self.cfg.reload
        {
            if outcome == Outcome::Unchanged {
                tracing::info!(output = %name, "running the reload that failed again");
            }
            let record = reload::run(name, r).await;
            state.last_reload = Some(record.clone());
            reload_record = Some(record);
        }
        let reload_failed = reload_record.as_ref().is_some_and(|r| !r.ok);
        if let Err(e) = self.states.save(name, state) {
            tracing::warn!(output = %name, error = %e, "could not record state");
        }
        let due = match Leaf::of(&rendered.files).filter(|_| is_cert) {
            // Certificates are looked at every poll too, for drift on disk.
            Some(leaf) => self.due(&leaf, after).min(self.next_poll(after, None)),
            None if is_cert => after + time::Duration::hours(1),
            None => {
                let poll = self.next_poll(after, rendered.refresh_within);
                // `changes_at` is on the server's clock; a second later the window is over.
                match rendered.changes_at {
                    Some(at) => {
                        poll.min(at + (after - self.shared.trusted_now()) + time::Duration::SECOND)
                    }
                    None => poll,
                }
            }
        };
        self.shared.update(name, |e| {
            e.delivered = true;
            e.status.failures = 0;
            e.status.last_error = None;
            e.status.renders += 1;
            e.status.last_render = Some(after);
            e.status.next_due = Some(due);
            if is_cert
                || matches!(
                    self.cfg.kind,
                    OutputKind::CaChain(_) | OutputKind::SigningKey(_)
                )
            {
                e.status.serial.clone_from(&rendered.serial);
                e.status.not_after = rendered.not_after;
                if is_cert {
                    e.status.issuer = Leaf::of(&rendered.files).and_then(|l| l.issuer);
                }
            }
            if outcome == Outcome::Changed {
                e.status.changes += 1;
                e.status.last_change = Some(after);
            }
            if let Some(r) = reload_record {
                e.status.last_reload = Some(r);
            }
        });
        if is_cert && outcome == Outcome::Changed {
            self.shared.nudge_report();
        }
        if reload_failed {
            return Err(AttemptError::Reload);
        }
        Ok(due)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn deliver_single(
    name: &str,
    root: &Path,
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
    deliver::deliver_file(name, root, path, file, owner)
}

/// The version the symlink `dir` names (`<dir>.d/<version>`), read without following it. Only
/// chooses a name: delivery itself walks the path safely and checks what is there.
fn live_version_name(dir: &Path) -> Option<String> {
    let target = std::fs::read_link(dir).ok()?;
    target.file_name()?.to_str().map(str::to_owned)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
