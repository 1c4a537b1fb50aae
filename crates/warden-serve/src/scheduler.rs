//! The scheduler: per environment, one task keeps the lease ([`crate::lease`]) and one runs
//! the jobs ([`crate::jobs`]) while — and only while — the lease is held.
//!
//! Fencing: the job task reads the lease's local deadline before it claims a run, before it
//! records one, and races every job body against it, so a leader that could not renew stops
//! acting at its deadline, before any other replica may take over. The claim and the result
//! carry the term and are written with check-and-set on the job record; a rotation itself is
//! check-and-set on the key's version. A leader killed between claim and result leaves a claim
//! of an older term, which the next leader overrides and re-checks against the live key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;
use warden_bao::Client;
use warden_spec::{Environment, Spec, naming};

use crate::clock::{server_now, unix_ms};
use crate::error::{Error, Result};
use crate::jobs::{self, Due, Job};
use crate::kvrec::{self, Cas};
use crate::lease::{Held, Lease, Step};
use crate::record::{BACKOFF_MAX, Claim, JobRecord, Outcome, Run};

/// How long a stop waits for the job task, then for the lease's release, before giving up on
/// each (a frozen OpenBao): well inside systemd's 30 s stop timeout in the shipped unit.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Leeway over [`BACKOFF_MAX`] before a stored retry time counts as not one serve wrote.
const BACKOFF_SLACK: Duration = Duration::from_secs(60);

/// How a replica runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This replica's id in the lease and in job records.
    pub holder: String,
    /// This process's nonce in the lease ([`crate::lease::new_instance`]): tells apart two
    /// processes started with the same `holder`.
    pub instance: String,
    /// Lease TTL ([`crate::lease::MIN_TTL`] at least); renewed every third of it.
    pub lease_ttl: Duration,
    /// How often the leader looks for due jobs.
    pub tick: Duration,
    /// Posture sweep period.
    pub posture_every: Duration,
}

impl Settings {
    /// Defaults: 30 s lease, a look every 5 s, posture every minute.
    pub fn new(holder: &str) -> Self {
        Self {
            holder: holder.to_owned(),
            instance: crate::lease::new_instance(),
            lease_ttl: Duration::from_secs(30),
            tick: Duration::from_secs(5),
            posture_every: Duration::from_secs(60),
        }
    }
}

/// One environment to serve and the client that acts there.
#[derive(Debug, Clone)]
pub struct Target {
    /// The environment.
    pub env: Environment,
    /// Its client (serve's own identity).
    pub client: Client,
    /// Where the API asks for a job to be checked now (`POST /v1/jobs/{job}/run`).
    pub trigger: Arc<crate::api::Trigger>,
    /// Where scheduled backups go and what the drill needs (`None`: the environment has no
    /// backup settings, and no backup or drill job runs).
    pub backups: Option<crate::ops::BackupTarget>,
}

/// The jobs this replica runs for `target`: [`jobs::jobs_for`], less a drill it was given no
/// inputs for and backups it was given no directory for.
pub fn scheduled_jobs(spec: &Spec, target: &Target) -> Vec<Job> {
    jobs::jobs_for(spec, &target.env)
        .into_iter()
        .filter(|j| match j.kind {
            jobs::JobKind::Backup { .. } => target.backups.is_some(),
            jobs::JobKind::Drill { .. } => {
                target.backups.as_ref().is_some_and(|b| b.drill.is_some())
            }
            _ => true,
        })
        .collect()
}

/// What a replica reports as it runs (the CLI prints one line each).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// This replica took the lease (a new term).
    Leader {
        /// Environment.
        env: String,
        /// Term.
        term: u64,
    },
    /// Another replica holds the lease.
    Follower {
        /// Environment.
        env: String,
        /// The holder.
        holder: String,
        /// Its term.
        term: u64,
    },
    /// This replica stopped acting as leader.
    Lost {
        /// Environment.
        env: String,
        /// The term it held.
        term: u64,
        /// Why.
        reason: String,
    },
    /// A job run was recorded.
    Run {
        /// Environment.
        env: String,
        /// Job id.
        job: String,
        /// The run.
        run: Run,
    },
    /// The lease was released at shutdown.
    Released {
        /// Environment.
        env: String,
        /// The term released.
        term: u64,
    },
    /// A step failed; it is retried later (lease: next renewal; job: after its backoff).
    Error {
        /// Environment.
        env: String,
        /// What failed.
        message: String,
    },
}

/// Where events go.
pub type Events = Arc<dyn Fn(Event) + Send + Sync>;

/// Serves every target until `shutdown` turns true, then stops the jobs and releases each
/// lease it holds.
pub async fn serve(
    spec: Arc<Spec>,
    targets: Vec<Target>,
    settings: Settings,
    shutdown: watch::Receiver<bool>,
    events: Events,
) -> Result<()> {
    let mut leases = Vec::new();
    for t in &targets {
        leases.push(
            Lease::new(t.env.name.as_str(), &settings.holder, settings.lease_ttl)?
                .with_instance(&settings.instance),
        );
    }
    let mut tasks = Vec::new();
    for (t, lease) in targets.into_iter().zip(leases) {
        tasks.push(tokio::spawn(env_worker(
            spec.clone(),
            t,
            lease,
            settings.clone(),
            shutdown.clone(),
            events.clone(),
        )));
    }
    for t in tasks {
        // A panicking worker is a bug; the others keep their own leases and release them.
        let _ = t.await;
    }
    Ok(())
}

async fn env_worker(
    spec: Arc<Spec>,
    target: Target,
    lease: Lease,
    settings: Settings,
    mut shutdown: watch::Receiver<bool>,
    events: Events,
) {
    let env = target.env.name.to_string();
    let settings_holder = settings.holder.clone();
    let client = target.client.clone();
    let (tx, rx) = watch::channel::<Option<Held>>(None);
    let jobs_task = tokio::spawn(job_loop(
        spec,
        target,
        rx,
        settings,
        shutdown.clone(),
        events.clone(),
    ));
    let mut seen: Option<(String, u64)> = None;
    while !*shutdown.borrow() {
        let mut held = *tx.borrow();
        // A frozen OpenBao holds a request for the client's whole timeout (60 s by default),
        // far past the lease's local deadline. The job loop stops at the deadline anyway (it
        // checks `Held::valid`), but the replica must also *say* so then — the `lost` event,
        // the leader gauge — instead of claiming leadership until the request gives up. The
        // step itself is not cancelled: a write on the wire may land, and the next step
        // reads what it left.
        let step = lease.step(&client);
        tokio::pin!(step);
        let result = loop {
            let deadline = held.map(|h| h.valid_until);
            tokio::select! {
                r = &mut step => break Some(r),
                // SIGTERM is not held up by a frozen OpenBao either.
                _ = shutdown.wait_for(|s| *s) => break None,
                () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now).into()), if deadline.is_some() => {
                    if let Some(h) = held.take() {
                        tx.send_replace(None);
                        events(Event::Lost {
                            env: env.clone(),
                            term: h.term,
                            reason: "OpenBao did not answer the renewal before the lease's deadline".into(),
                        });
                    }
                }
            }
        };
        let Some(result) = result else { break };
        match result {
            // Renewed, but the answer came after the deadline it gives: nothing may be done
            // under it (the job loop would refuse it too), so it is not reported as leadership.
            Ok(Step::Leader { held: new, .. }) if !new.valid() => {
                events(Event::Error {
                    env: env.clone(),
                    message: "lease: the renewal was answered after its own deadline (OpenBao slow or frozen); retried at the next renewal".into(),
                });
                if let Some(h) = held {
                    tx.send_replace(None);
                    events(Event::Lost {
                        env: env.clone(),
                        term: h.term,
                        reason: "could not renew the lease before its deadline".into(),
                    });
                }
            }
            Ok(Step::Leader { held: new, taken }) => {
                if taken || held.is_none_or(|h| h.term != new.term) {
                    events(Event::Leader {
                        env: env.clone(),
                        term: new.term,
                    });
                }
                seen = None;
                tx.send_replace(Some(new));
            }
            Ok(Step::Follower(rec)) => {
                if rec.holder == settings_holder && rec.expires_at_ms > 0 {
                    // Our id, another process: say so at every look, it is a mistake to fix.
                    events(Event::Error {
                        env: env.clone(),
                        message: format!(
                            "lease: another process holds the lease as `{}` (term {}): a second replica with this --id, or this replica's previous process until its lease expires; give every replica its own --id",
                            rec.holder, rec.term
                        ),
                    });
                }
                if let Some(h) = held {
                    tx.send_replace(None);
                    events(Event::Lost {
                        env: env.clone(),
                        term: h.term,
                        reason: format!("replica `{}` holds term {}", rec.holder, rec.term),
                    });
                }
                let now = (rec.holder.clone(), rec.term);
                if seen.as_ref() != Some(&now) {
                    events(Event::Follower {
                        env: env.clone(),
                        holder: rec.holder,
                        term: rec.term,
                    });
                    seen = Some(now);
                }
            }
            Err(e) => {
                events(Event::Error {
                    env: env.clone(),
                    message: format!("lease: {e}"),
                });
                if let Some(h) = held
                    && !h.valid()
                {
                    tx.send_replace(None);
                    events(Event::Lost {
                        env: env.clone(),
                        term: h.term,
                        reason: "could not renew the lease before its deadline".into(),
                    });
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(lease.renew_every()) => {}
            _ = shutdown.changed() => {}
        }
    }
    // Jobs first (they stop at the shutdown signal), then the lease, so nothing runs after it
    // was handed back. A job stuck on a frozen OpenBao (the client waits 60 s per request) is
    // given STOP_GRACE and then dropped; the lease is then *not* released (a write of the
    // dropped job may still be on the wire), so it ends by its TTL, as after a crash.
    let mut jobs_task = jobs_task;
    let jobs_stopped = tokio::time::timeout(STOP_GRACE, &mut jobs_task)
        .await
        .is_ok();
    if !jobs_stopped {
        jobs_task.abort();
        let _ = jobs_task.await;
    }
    let last = (*tx.borrow()).filter(|_| jobs_stopped);
    if let Some(h) = last {
        let released = tokio::time::timeout(STOP_GRACE, lease.release(&client, h.term))
            .await
            .unwrap_or_else(|_| {
                Err(Error::Settings(format!(
                    "OpenBao did not answer within {} s; the lease ends by its TTL",
                    STOP_GRACE.as_secs()
                )))
            });
        match released {
            Ok(true) => events(Event::Released {
                env: env.clone(),
                term: h.term,
            }),
            Ok(false) => {}
            Err(e) => events(Event::Error {
                env: env.clone(),
                message: format!("releasing the lease: {e}"),
            }),
        }
    }
}

/// The lease if it is still good now.
fn current(rx: &watch::Receiver<Option<Held>>) -> Option<Held> {
    (*rx.borrow()).filter(Held::valid)
}

/// Resolves when the lease is no longer good. Checked against the monotonic clock at every
/// poll, not only when its timer fires, so it is ready as soon as the deadline has passed.
fn fenced(rx: &watch::Receiver<Option<Held>>) -> impl Future<Output = ()> + '_ {
    let mut timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    std::future::poll_fn(move |cx| {
        let Some(h) = current(rx) else {
            return std::task::Poll::Ready(());
        };
        // Wake at the deadline, or within 100 ms if a renewal moved it.
        let at = h
            .valid_until
            .min(Instant::now() + Duration::from_millis(100));
        let t = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at.into())));
        if t.as_mut().poll(cx).is_ready() {
            t.as_mut().reset(at.into());
            let _ = t.as_mut().poll(cx);
        }
        std::task::Poll::Pending
    })
}

async fn job_loop(
    spec: Arc<Spec>,
    target: Target,
    rx: watch::Receiver<Option<Held>>,
    settings: Settings,
    mut shutdown: watch::Receiver<bool>,
    events: Events,
) {
    let jobs = scheduled_jobs(&spec, &target);
    let ctx = Ctx {
        spec: &spec,
        target: &target,
        settings: &settings,
        rx: &rx,
        events: &events,
    };
    while !*shutdown.borrow() {
        for job in &jobs {
            if *shutdown.borrow() {
                break;
            }
            let Some(held) = current(&rx) else { break };
            if let Err(e) = ctx.run_one(job, held).await {
                events(Event::Error {
                    env: target.env.name.to_string(),
                    message: format!("{}: {e}", job.id),
                });
            }
        }
        tokio::select! {
            () = tokio::time::sleep(settings.tick) => {}
            () = target.trigger.woken() => {}
            _ = shutdown.changed() => {}
        }
    }
}

struct Ctx<'a> {
    spec: &'a Spec,
    target: &'a Target,
    settings: &'a Settings,
    rx: &'a watch::Receiver<Option<Held>>,
    events: &'a Events,
}

impl Ctx<'_> {
    fn env(&self) -> String {
        self.target.env.name.to_string()
    }

    async fn read_record(&self, job: &Job) -> Result<(JobRecord, u64)> {
        let entry = naming::serve_job_record(&job.id);
        match kvrec::read(&self.target.client, &self.env(), &entry).await? {
            None => Ok((fresh(job), 0)),
            Some((Value::Null, v)) => Ok((fresh(job), v)),
            Some((data, v)) => {
                let rec = serde_json::from_value(data).map_err(|e| Error::Record {
                    env: self.env(),
                    path: entry.data_path(),
                    reason: e.to_string(),
                })?;
                Ok((rec, v))
            }
        }
    }

    async fn write_record(&self, job: &Job, rec: &JobRecord, cas: u64) -> Result<Cas> {
        let data = serde_json::to_value(rec).expect("a job record serializes");
        kvrec::write_cas(
            &self.target.client,
            &self.env(),
            &naming::serve_job_record(&job.id),
            data,
            cas,
        )
        .await
    }

    fn run_of(&self, slot: String, held: Held, started_ms: u64) -> Run {
        Run {
            slot,
            term: held.term,
            holder: self.settings.holder.clone(),
            started_ms,
            duration_ms: 0,
            outcome: Outcome::Ok,
            detail: String::new(),
            figures: std::collections::BTreeMap::new(),
        }
    }

    /// Checks `job` and runs it if it is due, recording the run.
    async fn run_one(&self, job: &Job, held: Held) -> Result<()> {
        let client = &self.target.client;
        let (mut rec, version) = self.read_record(job).await?;
        let now = unix_ms(server_now(client));
        // Asked for through the API: checked now, past the backoff wait.
        let asked = self.target.trigger.take(&job.id);
        // Serve never writes a wait longer than the backoff's cap from a run's end, which is
        // before `now`; a later `next_attempt_ms` was edited in (or the server's clock jumped
        // back) and would park the job silently until then. It is ignored: the job is checked
        // now, and its next recorded run writes a sound value.
        let cap = u64::try_from((BACKOFF_MAX + BACKOFF_SLACK).as_millis()).unwrap_or(u64::MAX);
        let waiting = rec.next_attempt_ms > now && rec.next_attempt_ms <= now.saturating_add(cap);
        if waiting && !asked {
            return Ok(());
        }
        if rec.claim.as_ref().is_some_and(|c| c.term > held.term) {
            // A newer term claimed this job: this replica's lease is stale, whatever its
            // local deadline says.
            return Ok(());
        }
        let due = match jobs::due(
            job,
            self.spec,
            &self.target.env,
            client,
            now,
            self.settings.posture_every,
        )
        .await
        {
            Ok(d) => d,
            Err(e) => {
                let mut run = self.run_of("due-check".into(), held, now);
                run.outcome = Outcome::Failed;
                run.detail = e.to_string();
                return self.finish(job, &mut rec, version, run, held).await;
            }
        };
        let last = rec.last();
        let (slot, work) = match due {
            Due::Later => return Ok(()),
            Due::Refused { slot, reason } => {
                if last.is_some_and(|l| l.slot == slot && l.outcome == Outcome::Refused) {
                    return Ok(());
                }
                let mut run = self.run_of(slot, held, now);
                run.outcome = Outcome::Refused;
                run.detail = reason.to_string();
                return self.finish(job, &mut rec, version, run, held).await;
            }
            Due::Run { slot, work } => (slot, work),
        };
        if last.is_some_and(|l| l.slot == slot && l.outcome == Outcome::Ok) {
            return Ok(());
        }
        // Claim the due run under this term.
        if !self.still_holds(held) {
            return Ok(());
        }
        rec.claim = Some(Claim {
            slot: slot.clone(),
            term: held.term,
            holder: self.settings.holder.clone(),
            started_ms: now,
        });
        let claimed = match self.write_record(job, &rec, version).await? {
            Cas::Written(v) => v,
            Cas::Lost => return Ok(()),
        };
        let start = Instant::now();
        // The deadline is polled first: a process resumed after a pause (SIGSTOP, a frozen VM)
        // drops the job before it sends anything more.
        let result = tokio::select! {
            biased;
            () = fenced(self.rx) => None,
            r = jobs::run(work, self.spec, &self.target.env, client, self.target.backups.as_ref()) => Some(r),
        };
        let Some(result) = result else {
            // The lease ran out mid-run: stop here. The claim stays with this (now old) term;
            // the next leader re-checks the live state and runs it if it is still due.
            return Ok(());
        };
        let mut run = self.run_of(slot, held, now);
        run.duration_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        match result {
            Ok(done) => {
                run.detail = done.detail;
                run.figures = done.figures;
                if done.failed {
                    run.outcome = Outcome::Failed;
                }
            }
            Err(Error::Keys { source, .. })
                if matches!(*source, warden_keys::Error::Conflict { .. }) =>
            {
                run.outcome = Outcome::Superseded;
                run.detail = source.to_string();
            }
            Err(e) => {
                run.outcome = Outcome::Failed;
                run.detail = e.to_string();
            }
        }
        self.finish(job, &mut rec, claimed, run, held).await
    }

    /// Whether the lease of `held`'s term is still good now. The lease as it is *now*, not
    /// the copy taken when the job started: a run longer than the lease's TTL (a backup, a
    /// drill) outlives that copy's deadline while the lease task keeps renewing the term.
    fn still_holds(&self, held: Held) -> bool {
        current(self.rx).is_some_and(|now| now.term == held.term)
    }

    /// Records `run` with check-and-set on `version`, unless the lease ran out.
    async fn finish(
        &self,
        job: &Job,
        rec: &mut JobRecord,
        version: u64,
        run: Run,
        held: Held,
    ) -> Result<()> {
        if !self.still_holds(held) {
            return Ok(());
        }
        rec.record(run.clone());
        // A lost write means another leader recorded in between: its record stands.
        if let Cas::Written(_) = self.write_record(job, rec, version).await? {
            (self.events)(Event::Run {
                env: self.env(),
                job: job.id.clone(),
                run,
            });
        }
        Ok(())
    }
}

fn fresh(job: &Job) -> JobRecord {
    JobRecord {
        job: job.id.clone(),
        ..JobRecord::default()
    }
}
