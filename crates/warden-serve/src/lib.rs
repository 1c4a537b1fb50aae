//! `warden-serve`: the long-running side of Warden (`warden serve`, docs/serve.md, ADR 0022).
//! Several replicas may run; a leader lease in OpenBao lets exactly one of them run jobs at a
//! time in each environment, and every job run is recorded next to the environment it touched.
//!
//! # Where to start
//!
//! | need | API |
//! |---|---|
//! | run replicas until shutdown | [`serve`] with [`Settings`], [`Target`]s and an [`Events`] sink |
//! | the lease alone (take, renew, release; check-and-set, server's clock) | [`Lease`], [`LeaseRecord`], [`Held`] |
//! | which jobs an environment has | [`jobs_for`] → [`Job`]; what this replica runs: [`scheduled_jobs`] |
//! | scheduled backups and DR drills (the work is `warden_backup`'s) | [`BackupTarget`], [`DrillInputs`] |
//! | what a job record holds (bounded runs, backoff) | [`JobRecord`], [`Run`], [`Outcome`], [`backoff`] |
//! | the HTTP JSON API over mTLS (`--listen`) | [`api::Api`], [`api::ApiState`], [`api::server_config`] |
//! | the posture dashboard page (HTML, no JavaScript) | [`dashboard::collect_env`] → [`dashboard::DashboardData`] → [`dashboard::render`] |
//!
//! Modules: `lease` (the lease record and its steps), `scheduler` (the lease task, the job
//! task, fencing), `jobs` (due checks under the purpose rules, and the work: signing-key
//! rotation through `warden_keys`, the posture sweep through `warden_registry`), `ops`
//! (scheduled backups and lab DR drills through `warden_backup`, ADR 0028), `record`
//! (job records), `kvrec` (the raw KV v2 reads and check-and-set writes they share), `clock`
//! (the server's clock from `Date`), `error`.
//!
//! # Guarantees
//! - Lease and job records are written with check-and-set on the version just read; the lease
//!   term grows by one at every takeover and every run records the term it ran under.
//! - A holder acts only before a local deadline that ends before the server-side expiry (the
//!   `Date` header's second and a tenth of the TTL come off), and a job body is dropped when
//!   that deadline passes.
//! - A rotation is check-and-set on the key version the due check saw: it happens at most once
//!   per due run, whichever replica runs it.
//! - Purpose rules are checked before any rotation (fail closed): a revoked or missing purpose,
//!   or a key past its purpose's interval + grace, is refused and recorded, never rotated.
//! - A failed run waits 2 s, 4 s, 8 s... (at most 5 min) before the next attempt, and the wait
//!   is kept in the record, so a new leader honours it too.
//! - Nothing here reads or prints a secret value: key material stays inside `warden_keys`.

pub mod api;
mod clock;
pub mod dashboard;
mod error;
mod jobs;
mod kvrec;
mod lease;
pub mod metrics;
mod ops;
mod record;
mod scheduler;

pub use clock::{DATE_SLACK, server_now, unix_ms};
pub use error::{Error, Result};
pub use jobs::{BACKUP_JOB, DRILL_JOB, Job, JobKind, jobs_for};
pub use lease::{Held, Lease, LeaseRecord, MAX_TTL, MIN_TTL, Step, new_instance};
pub use metrics::{Metrics, MetricsError, MetricsServer};
pub use ops::{BackupTarget, DrillInputs};
pub use record::{BACKOFF_BASE, BACKOFF_MAX, Claim, JobRecord, MAX_RUNS, Outcome, Run, backoff};
pub use scheduler::{Event, Events, Settings, Target, scheduled_jobs, serve};
