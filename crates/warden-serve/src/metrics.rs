//! `/metrics`: what Prometheus sees of a running `warden serve` (docs/serve.md "Metrics",
//! alert rules in `deploy/prometheus/warden-rules.yml`).
//!
//! Two sources feed one [`Metrics`] state:
//! - the replica's own [`Event`]s ([`Metrics::observe`]): leadership and term per environment,
//!   and every recorded job run (outcome counters, last duration, whether the last run failed);
//! - a collector task ([`collect`]) that, every posture period, reads per environment the
//!   posture report (`warden_registry::posture::collect`, the same judgement the posture job
//!   records), the seal state and the PKI intermediate's expiry. It runs on every replica, not
//!   only the leader, so any replica's `/metrics` answers; it reads only metadata (no secret).
//!
//! Times until expiry and rotation are computed at scrape time from the instants the last
//! collection saw, so they keep counting down between collections. The exposition is written
//! by hand like the agent's (ADR 0007 and `warden_agent::health::metrics` say why); the HTTP
//! side follows the agent's server too: loopback only, a capped number of connections, a short
//! header timeout, one request per connection, a bounded lifetime.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use warden_registry::posture::Report;
use warden_spec::Spec;
use warden_spec::rules::Status;

use crate::record::Outcome;
use crate::scheduler::{Event, Target};

/// Connections served at once; beyond, new ones are closed at once (a scraper and an
/// operator's `curl` are the only expected clients).
pub const MAX_CONNECTIONS: usize = 32;
/// A client has this long to send its request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// No connection lives longer than this.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(5);

/// Why the metrics listener could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// Not a loopback address: `/metrics` is unauthenticated.
    #[error(
        "refusing to serve /metrics on {addr}: only loopback addresses (127.0.0.1, ::1) are allowed"
    )]
    NotLoopback {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The address could not be bound.
    #[error("could not listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Default)]
struct JobStats {
    runs: BTreeMap<&'static str, u64>,
    last_duration_ms: u64,
    last_started_ms: u64,
    failing: bool,
}

#[derive(Debug, Default)]
struct EnvState {
    leader: bool,
    term: u64,
    posture: Option<Report>,
    sealed: Option<bool>,
    up: bool,
    ca_not_after: Option<(String, i64)>,
    /// The spec's backup and drill periods, seconds (the alerts' yardsticks).
    backup_every: Option<u64>,
    drill_every: Option<u64>,
    /// When the newest good backup was made (Unix seconds), from the backup job's record.
    backup_ok_at: Option<f64>,
    /// The newest drill's verdict, from the drill job's record.
    drill: Option<DrillSeen>,
    /// Autopilot's view of each raft node.
    raft: Option<warden_bao::AutopilotState>,
}

#[derive(Debug, Clone, Copy)]
struct DrillSeen {
    at: f64,
    passed: bool,
    rto: Option<f64>,
}

#[derive(Debug, Default)]
struct State {
    envs: BTreeMap<String, EnvState>,
    jobs: BTreeMap<(String, String), JobStats>,
    /// Purpose id → rotation grace (s), from the spec.
    grace: BTreeMap<String, u64>,
}

/// The figures `/metrics` serves, shared between the event sink, the collector and the
/// listener.
#[derive(Debug, Default)]
pub struct Metrics {
    state: Mutex<State>,
}

fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Failed => "failed",
        Outcome::Refused => "refused",
        Outcome::Superseded => "superseded",
    }
}

impl Metrics {
    /// A state for `spec`'s environments `envs` (all start as followers, nothing collected).
    pub fn new(spec: &Spec, envs: &[String]) -> Arc<Self> {
        let mut s = State::default();
        for e in envs {
            let backup = spec.environment(e).and_then(|env| env.backup.as_ref());
            s.envs.insert(
                e.clone(),
                EnvState {
                    backup_every: backup.and_then(|b| b.every).map(|d| d.as_secs()),
                    drill_every: backup.and_then(|b| b.drill_every).map(|d| d.as_secs()),
                    ..EnvState::default()
                },
            );
        }
        for p in &spec.purposes {
            s.grace.insert(p.id.to_string(), p.rotation.grace.as_secs());
        }
        Arc::new(Self {
            state: Mutex::new(s),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere leaves figures, not invariants: keep serving them.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes in one of the replica's events.
    pub fn observe(&self, e: &Event) {
        let mut s = self.lock();
        match e {
            Event::Leader { env, term } => {
                let st = s.envs.entry(env.clone()).or_default();
                st.leader = true;
                st.term = *term;
            }
            Event::Follower { env, term, .. } => {
                let st = s.envs.entry(env.clone()).or_default();
                st.leader = false;
                st.term = *term;
            }
            Event::Lost { env, .. } | Event::Released { env, .. } => {
                s.envs.entry(env.clone()).or_default().leader = false;
            }
            Event::Run { env, job, run } => {
                let j = s.jobs.entry((env.clone(), job.clone())).or_default();
                *j.runs.entry(outcome_word(run.outcome)).or_default() += 1;
                j.last_duration_ms = run.duration_ms;
                j.last_started_ms = run.started_ms;
                // Superseded means another run did the work: not a failure, not a success.
                match run.outcome {
                    Outcome::Failed => j.failing = true,
                    Outcome::Ok | Outcome::Refused => j.failing = false,
                    Outcome::Superseded => {}
                }
            }
            Event::Error { .. } => {}
        }
    }

    /// The Prometheus text exposition (format 0.0.4) at `now` (Unix seconds).
    pub fn render(&self, now: i64) -> String {
        let s = self.lock();
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(out, "{name}{{{labels}}} {v}");
            }
        };
        let envs = || s.envs.iter();
        family(
            METRIC_LEADER,
            "gauge",
            "1 while this replica holds the environment's leader lease, 0 otherwise.",
            envs()
                .map(|(e, st)| (labels(&[("env", e)]), f64::from(u8::from(st.leader))))
                .collect(),
        );
        family(
            METRIC_TERM,
            "gauge",
            "The lease term this replica last saw (its own while leader).",
            envs()
                .map(|(e, st)| (labels(&[("env", e)]), st.term as f64))
                .collect(),
        );
        family(
            METRIC_UP,
            "gauge",
            "1 when the last collection reached OpenBao for the environment.",
            envs()
                .map(|(e, st)| (labels(&[("env", e)]), f64::from(u8::from(st.up))))
                .collect(),
        );
        family(
            METRIC_SEALED,
            "gauge",
            "1 when the environment's OpenBao node reports itself sealed.",
            envs()
                .filter_map(|(e, st)| {
                    st.sealed
                        .map(|x| (labels(&[("env", e)]), f64::from(u8::from(x))))
                })
                .collect(),
        );
        family(
            METRIC_CA_EXPIRY,
            "gauge",
            "Seconds until the environment's PKI intermediate (the issuer of every leaf) expires.",
            envs()
                .filter_map(|(e, st)| {
                    st.ca_not_after.as_ref().map(|(mount, na)| {
                        (labels(&[("env", e), ("mount", mount)]), (na - now) as f64)
                    })
                })
                .collect(),
        );
        family(
            METRIC_SWEEP,
            "gauge",
            "Unix time of the last posture collection.",
            envs()
                .filter_map(|(e, st)| {
                    st.posture
                        .as_ref()
                        .map(|r| (labels(&[("env", e)]), r.at as f64))
                })
                .collect(),
        );
        let creds = || {
            envs().flat_map(|(e, st)| {
                st.posture.iter().flat_map(move |r| {
                    r.purposes.iter().flat_map(move |p| {
                        p.credentials
                            .iter()
                            .map(move |c| (e, p.purpose.as_str(), c))
                    })
                })
            })
        };
        let cred_labels = |e: &str, p: &str, id: &str, kind: &str| {
            labels(&[
                ("env", e),
                ("purpose", p),
                ("credential", id),
                ("kind", kind),
            ])
        };
        family(
            METRIC_CRED_STATUS,
            "gauge",
            "1 for the credential's posture status, 0 for the others (from the last collection).",
            creds()
                .flat_map(|(e, p, c)| {
                    Status::ALL.into_iter().map(move |st| {
                        (
                            labels(&[
                                ("env", e),
                                ("purpose", p),
                                ("credential", &c.id),
                                ("kind", c.kind),
                                ("status", st.as_str()),
                            ]),
                            f64::from(u8::from(st == c.status)),
                        )
                    })
                })
                .collect(),
        );
        family(
            METRIC_CRED_EXPIRY,
            "gauge",
            "Seconds until the credential expires (negative once expired; absent when it does not expire by itself or is unknown).",
            creds()
                .filter_map(|(e, p, c)| {
                    c.expires_at
                        .map(|t| (cred_labels(e, p, &c.id, c.kind), (t - now) as f64))
                })
                .collect(),
        );
        family(
            METRIC_CRED_ROTATION,
            "gauge",
            "Seconds until the credential's rotation is due (negative once due).",
            creds()
                .filter_map(|(e, p, c)| {
                    c.rotation_due_at
                        .map(|t| (cred_labels(e, p, &c.id, c.kind), (t - now) as f64))
                })
                .collect(),
        );
        family(
            METRIC_PURPOSE_GRACE,
            "gauge",
            "The purpose's rotation grace window in seconds (from the spec).",
            s.grace
                .iter()
                .map(|(p, g)| (labels(&[("purpose", p)]), *g as f64))
                .collect(),
        );
        family(
            METRIC_BACKUP_INTERVAL,
            "gauge",
            "The spec's backup period (`backup.every`) in seconds.",
            envs()
                .filter_map(|(e, st)| st.backup_every.map(|x| (labels(&[("env", e)]), x as f64)))
                .collect(),
        );
        family(
            METRIC_BACKUP_LAST,
            "gauge",
            "Unix time of the newest good backup (from the backup job's record).",
            envs()
                .filter_map(|(e, st)| st.backup_ok_at.map(|x| (labels(&[("env", e)]), x)))
                .collect(),
        );
        family(
            METRIC_BACKUP_AGE,
            "gauge",
            "Seconds since the newest good backup.",
            envs()
                .filter_map(|(e, st)| {
                    st.backup_ok_at
                        .map(|x| (labels(&[("env", e)]), now as f64 - x))
                })
                .collect(),
        );
        family(
            METRIC_DRILL_INTERVAL,
            "gauge",
            "The spec's drill period (`backup.drill_every`) in seconds.",
            envs()
                .filter_map(|(e, st)| st.drill_every.map(|x| (labels(&[("env", e)]), x as f64)))
                .collect(),
        );
        family(
            METRIC_DRILL_LAST,
            "gauge",
            "Unix time the newest DR drill started.",
            envs()
                .filter_map(|(e, st)| st.drill.map(|d| (labels(&[("env", e)]), d.at)))
                .collect(),
        );
        family(
            METRIC_DRILL_SUCCESS,
            "gauge",
            "1 when the newest DR drill passed every check, 0 when it failed.",
            envs()
                .filter_map(|(e, st)| {
                    st.drill
                        .map(|d| (labels(&[("env", e)]), f64::from(u8::from(d.passed))))
                })
                .collect(),
        );
        family(
            METRIC_DRILL_RTO,
            "gauge",
            "RTO of the newest DR drill: start to verified (or to its failed check), seconds.",
            envs()
                .filter_map(|(e, st)| {
                    st.drill
                        .and_then(|d| d.rto.map(|r| (labels(&[("env", e)]), r)))
                })
                .collect(),
        );
        let raft = || {
            envs().flat_map(|(e, st)| {
                st.raft
                    .iter()
                    .flat_map(move |r| r.servers.values().map(move |n| (e, n)))
            })
        };
        family(
            METRIC_RAFT_HEALTHY,
            "gauge",
            "1 when autopilot judges the raft node healthy (in contact, caught up), else 0.",
            raft()
                .map(|(e, n)| {
                    (
                        labels(&[("env", e), ("node", &n.id), ("status", &n.status)]),
                        f64::from(u8::from(n.healthy)),
                    )
                })
                .collect(),
        );
        family(
            METRIC_RAFT_TOLERANCE,
            "gauge",
            "Voters the environment's raft cluster can lose and keep its quorum (autopilot).",
            envs()
                .filter_map(|(e, st)| {
                    st.raft
                        .as_ref()
                        .map(|r| (labels(&[("env", e)]), r.failure_tolerance as f64))
                })
                .collect(),
        );
        family(
            METRIC_JOB_RUNS,
            "counter",
            "Job runs this replica recorded since start, by outcome.",
            s.jobs
                .iter()
                .flat_map(|((e, j), st)| {
                    st.runs.iter().map(move |(o, n)| {
                        (labels(&[("env", e), ("job", j), ("outcome", o)]), *n as f64)
                    })
                })
                .collect(),
        );
        family(
            METRIC_JOB_DURATION,
            "gauge",
            "Duration of the job's last recorded run, in seconds.",
            s.jobs
                .iter()
                .map(|((e, j), st)| {
                    (
                        labels(&[("env", e), ("job", j)]),
                        st.last_duration_ms as f64 / 1000.0,
                    )
                })
                .collect(),
        );
        family(
            METRIC_JOB_LAST_RUN,
            "gauge",
            "Unix time the job's last recorded run started.",
            s.jobs
                .iter()
                .map(|((e, j), st)| {
                    (
                        labels(&[("env", e), ("job", j)]),
                        st.last_started_ms as f64 / 1000.0,
                    )
                })
                .collect(),
        );
        family(
            METRIC_JOB_FAILING,
            "gauge",
            "1 when the job's last recorded run failed (it is retried with backoff).",
            s.jobs
                .iter()
                .map(|((e, j), st)| {
                    (
                        labels(&[("env", e), ("job", j)]),
                        f64::from(u8::from(st.failing)),
                    )
                })
                .collect(),
        );
        out
    }
}

/// `warden_serve_leader{env}`.
pub const METRIC_LEADER: &str = "warden_serve_leader";
/// `warden_serve_leader_term{env}`.
pub const METRIC_TERM: &str = "warden_serve_leader_term";
/// `warden_serve_openbao_up{env}`.
pub const METRIC_UP: &str = "warden_serve_openbao_up";
/// `warden_serve_openbao_sealed{env}`.
pub const METRIC_SEALED: &str = "warden_serve_openbao_sealed";
/// `warden_serve_ca_expiry_seconds{env,mount}`.
pub const METRIC_CA_EXPIRY: &str = "warden_serve_ca_expiry_seconds";
/// `warden_serve_posture_timestamp_seconds{env}`.
pub const METRIC_SWEEP: &str = "warden_serve_posture_timestamp_seconds";
/// `warden_serve_credential_status{env,purpose,credential,kind,status}`.
pub const METRIC_CRED_STATUS: &str = "warden_serve_credential_status";
/// `warden_serve_credential_expiry_seconds{env,purpose,credential,kind}`.
pub const METRIC_CRED_EXPIRY: &str = "warden_serve_credential_expiry_seconds";
/// `warden_serve_credential_rotation_due_seconds{env,purpose,credential,kind}`.
pub const METRIC_CRED_ROTATION: &str = "warden_serve_credential_rotation_due_seconds";
/// `warden_serve_purpose_grace_seconds{purpose}`.
pub const METRIC_PURPOSE_GRACE: &str = "warden_serve_purpose_grace_seconds";
/// `warden_serve_job_runs_total{env,job,outcome}`.
pub const METRIC_JOB_RUNS: &str = "warden_serve_job_runs_total";
/// `warden_serve_job_last_duration_seconds{env,job}`.
pub const METRIC_JOB_DURATION: &str = "warden_serve_job_last_duration_seconds";
/// `warden_serve_job_last_run_timestamp_seconds{env,job}`.
pub const METRIC_JOB_LAST_RUN: &str = "warden_serve_job_last_run_timestamp_seconds";
/// `warden_serve_job_failing{env,job}`.
pub const METRIC_JOB_FAILING: &str = "warden_serve_job_failing";
/// `backup.every`, seconds.
pub const METRIC_BACKUP_INTERVAL: &str = "warden_serve_backup_interval_seconds";
/// Unix time of the newest good backup.
pub const METRIC_BACKUP_LAST: &str = "warden_serve_backup_last_success_timestamp_seconds";
/// Seconds since the newest good backup.
pub const METRIC_BACKUP_AGE: &str = "warden_serve_backup_age_seconds";
/// `backup.drill_every`, seconds.
pub const METRIC_DRILL_INTERVAL: &str = "warden_serve_drill_interval_seconds";
/// Unix time the newest drill started.
pub const METRIC_DRILL_LAST: &str = "warden_serve_drill_last_timestamp_seconds";
/// 1 passed, 0 failed.
pub const METRIC_DRILL_SUCCESS: &str = "warden_serve_drill_last_success";
/// The newest drill's RTO, seconds.
pub const METRIC_DRILL_RTO: &str = "warden_serve_drill_last_rto_seconds";
/// Per raft node: healthy by autopilot.
pub const METRIC_RAFT_HEALTHY: &str = "warden_serve_raft_node_healthy";
/// Voters the cluster can lose.
pub const METRIC_RAFT_TOLERANCE: &str = "warden_serve_raft_failure_tolerance";

/// `k="v",…` with the exposition format's escaping (backslash, quote, newline).
fn labels(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        for ch in v.chars() {
            match ch {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Collects posture, seal state and the intermediate's expiry for every target, now and then
/// every `every`, until `shutdown` turns true. A failed read keeps the last good figures and
/// sets `warden_serve_openbao_up` to 0.
pub async fn collect(
    spec: Arc<Spec>,
    targets: Vec<Target>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
) {
    loop {
        for t in &targets {
            let env = t.env.name.to_string();
            let sealed = t.client.seal_status().await.map(|s| s.sealed);
            let posture =
                warden_registry::posture::collect(&t.client, &spec, &t.env, now_s()).await;
            let ca = t
                .client
                .pki_ca_cert(&t.env.mounts.pki)
                .await
                .ok()
                .and_then(|pem| {
                    warden_pki::parse_pem_bundle(&pem)
                        .ok()
                        .and_then(|c| c.first().map(|c| c.not_after.unix_timestamp()))
                });
            if let Err(e) = &posture {
                tracing::warn!(env = %env, error = %e, "metrics: posture collection failed");
            }
            let raft = t.client.raft_autopilot_state().await;
            if let Err(e) = &raft {
                tracing::warn!(env = %env, error = %e, "metrics: raft autopilot state not read");
            }
            let backup = last_runs(t, crate::jobs::BACKUP_JOB).await;
            let drill = last_runs(t, crate::jobs::DRILL_JOB).await;
            let mut s = metrics.lock();
            let st = s.envs.entry(env).or_default();
            st.up = sealed.is_ok() && posture.is_ok();
            if let Ok(x) = sealed {
                st.sealed = Some(x);
            }
            if let Ok(r) = posture {
                st.posture = Some(r);
            }
            if let Some(na) = ca {
                st.ca_not_after = Some((t.env.mounts.pki.to_string(), na));
            }
            // A failed read keeps the last figures: the age keeps growing from them.
            if let Ok(r) = raft {
                st.raft = Some(r);
            }
            if let Some(rec) = backup
                && let Some(ok) = rec.last_ok()
            {
                st.backup_ok_at = Some(
                    ok.figures
                        .get("generated_at")
                        .copied()
                        .unwrap_or(ok.started_ms.saturating_add(ok.duration_ms) as f64 / 1000.0),
                );
            }
            if let Some(rec) = drill
                && let Some(v) = rec.last_verdict()
            {
                st.drill = Some(DrillSeen {
                    at: v.started_ms as f64 / 1000.0,
                    passed: v.outcome == Outcome::Ok,
                    rto: v.figures.get("rto_seconds").copied(),
                });
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// The job record of `job` in `t`'s environment, when the environment has that job and its
/// record reads (a missing or unreadable record: `None`, and the last figures stand).
async fn last_runs(t: &Target, job: &str) -> Option<crate::record::JobRecord> {
    if !crate::jobs::jobs_for_env_has(&t.env, job) {
        return None;
    }
    let entry = warden_spec::naming::serve_job_record(job);
    match crate::kvrec::read(&t.client, t.env.name.as_str(), &entry).await {
        Ok(Some((data, _))) if !data.is_null() => serde_json::from_value(data).ok(),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(env = %t.env.name, job, error = %e, "metrics: job record not read");
            None
        }
    }
}

/// A running `/metrics` listener. Dropping it stops it.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Binds `listen` (loopback only; port 0 picks a free one) and serves `metrics`.
    pub async fn start(listen: SocketAddr, metrics: Arc<Metrics>) -> Result<Self, MetricsError> {
        if !listen.ip().is_loopback() {
            return Err(MetricsError::NotLoopback { addr: listen });
        }
        let bind = |source| MetricsError::Bind {
            addr: listen,
            source,
        };
        let listener = TcpListener::bind(listen).await.map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;
        let task = tokio::spawn(accept_loop(listener, metrics));
        Ok(Self { addr, task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, metrics: Arc<Metrics>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(false)
        .max_buf_size(8 * 1024);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint could not accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            // At the cap: this connection is closed unanswered.
            continue;
        };
        let metrics = Arc::clone(&metrics);
        let service = service_fn(move |req: Request<Incoming>| {
            std::future::ready(Ok::<_, Infallible>(route(&req, &metrics)))
        });
        let conn = http.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
        });
    }
}

fn route(req: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, ctype, body) = if req.method() != Method::GET && req.method() != Method::HEAD {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET and HEAD\n".to_owned(),
        )
    } else if req.uri().path() == "/metrics" {
        (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(now_s()),
        )
    } else {
        (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: try /metrics\n".to_owned(),
        )
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Run;

    #[test]
    fn events_become_series() {
        let m = Arc::new(Metrics::default());
        m.observe(&Event::Leader {
            env: "test".into(),
            term: 3,
        });
        let run = |outcome| Run {
            slot: "t1".into(),
            term: 3,
            holder: "a".into(),
            started_ms: 2_000,
            duration_ms: 1_500,
            outcome,
            detail: String::new(),
            figures: BTreeMap::new(),
        };
        m.observe(&Event::Run {
            env: "test".into(),
            job: "renew-domain/x\"y".into(),
            run: run(Outcome::Failed),
        });
        let text = m.render(0);
        assert!(
            text.contains("warden_serve_leader{env=\"test\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("warden_serve_leader_term{env=\"test\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "warden_serve_job_runs_total{env=\"test\",job=\"renew-domain/x\\\"y\",outcome=\"failed\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("warden_serve_job_failing{env=\"test\",job=\"renew-domain/x\\\"y\"} 1\n")
        );
        assert!(text.contains(
            "warden_serve_job_last_duration_seconds{env=\"test\",job=\"renew-domain/x\\\"y\"} 1.5\n"
        ));
        m.observe(&Event::Run {
            env: "test".into(),
            job: "renew-domain/x\"y".into(),
            run: run(Outcome::Ok),
        });
        m.observe(&Event::Lost {
            env: "test".into(),
            term: 3,
            reason: "expired".into(),
        });
        let text = m.render(0);
        assert!(
            text.contains("warden_serve_job_failing{env=\"test\",job=\"renew-domain/x\\\"y\"} 0\n")
        );
        assert!(
            text.contains("warden_serve_leader{env=\"test\"} 0\n"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn refuses_non_loopback_and_serves_on_loopback() {
        let m = Arc::new(Metrics::default());
        let err = MetricsServer::start("0.0.0.0:0".parse().expect("addr"), Arc::clone(&m))
            .await
            .expect_err("0.0.0.0 refused");
        assert!(matches!(err, MetricsError::NotLoopback { .. }), "{err}");
        let server = MetricsServer::start("127.0.0.1:0".parse().expect("addr"), m)
            .await
            .expect("loopback");
        assert!(server.addr().ip().is_loopback());
        assert_ne!(server.addr().port(), 0);
    }
}
