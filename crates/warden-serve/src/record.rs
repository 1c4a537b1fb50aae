//! Job records: one KV v2 entry per job (`warden/serve/jobs/<job>`,
//! [`warden_spec::naming::serve_job_record`]) with its last [`MAX_RUNS`] runs, the current
//! claim and the backoff. Bounded by construction: the runs are one string of JSON lines,
//! trimmed to the newest [`MAX_RUNS`], so the entry never approaches OpenBao's limits (ADR
//! 0014) however long serve runs; KV v2's own version history keeps the older states.
//!
//! Every write is check-and-set on the version read: a claim and its result are written by
//! one leader, and a second leader with a stale view loses the write instead of recording the
//! same due run twice.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Runs kept in a record.
pub const MAX_RUNS: usize = 50;

/// First retry delay after a failure; doubled per consecutive failure up to [`BACKOFF_MAX`].
pub const BACKOFF_BASE: Duration = Duration::from_secs(2);

/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done.
    Ok,
    /// Failed; retried after the backoff.
    Failed,
    /// Refused by a purpose rule (fail closed); not retried until the due run changes.
    Refused,
    /// Another writer got there first (a check-and-set lost): nothing done.
    Superseded,
}

/// One run of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// The due run it served (`v3`: the key version it rotated from; `t29581`: the posture
    /// period).
    pub slot: String,
    /// Leadership term it ran under.
    pub term: u64,
    /// Replica id.
    pub holder: String,
    /// Start, Unix milliseconds by the server's clock.
    pub started_ms: u64,
    /// How long it took.
    pub duration_ms: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// What it did or why it failed (never a secret).
    pub detail: String,
    /// Figures of the run the metrics read back (a backup's `generated_at`, `bytes`; a
    /// drill's `rto_seconds`, `rpo_seconds`, `passed`); absent for jobs that have none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub figures: BTreeMap<String, f64>,
}

/// A job run claimed and not yet recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The due run.
    pub slot: String,
    /// Term of the claimer.
    pub term: u64,
    /// Replica id.
    pub holder: String,
    /// Unix milliseconds by the server's clock.
    pub started_ms: u64,
}

/// A job's record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job id.
    pub job: String,
    /// Consecutive failures.
    #[serde(default)]
    pub failures: u32,
    /// No attempt before this (Unix milliseconds, server's clock): the backoff.
    #[serde(default)]
    pub next_attempt_ms: u64,
    /// The run in progress, if one was claimed.
    #[serde(default)]
    pub claim: Option<Claim>,
    /// Runs recorded since the record began (not only those kept).
    #[serde(default)]
    pub total_runs: u64,
    /// The newest [`MAX_RUNS`] runs, one JSON object per line, oldest first.
    #[serde(default)]
    pub runs: String,
}

impl JobRecord {
    /// The runs kept, oldest first (lines that do not parse are skipped).
    pub fn runs(&self) -> Vec<Run> {
        self.runs
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The newest run.
    pub fn last(&self) -> Option<Run> {
        self.runs
            .lines()
            .next_back()
            .and_then(|l| serde_json::from_str(l).ok())
    }

    /// The newest run that ended `ok` among those kept.
    pub fn last_ok(&self) -> Option<Run> {
        self.runs
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<Run>(l).ok())
            .find(|r| r.outcome == Outcome::Ok)
    }

    /// The newest run that ended `ok` or `failed` (a verdict, not a refusal or a lost race).
    pub fn last_verdict(&self) -> Option<Run> {
        self.runs
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<Run>(l).ok())
            .find(|r| matches!(r.outcome, Outcome::Ok | Outcome::Failed))
    }

    /// Appends `run`, keeps the newest [`MAX_RUNS`], clears the claim and sets the backoff:
    /// a failure waits [`backoff`] of the consecutive failures from `run`'s end; anything
    /// else resets it.
    pub fn record(&mut self, run: Run) {
        let end = run.started_ms.saturating_add(run.duration_ms);
        if run.outcome == Outcome::Failed {
            self.failures = self.failures.saturating_add(1);
            let wait = u64::try_from(backoff(self.failures).as_millis()).unwrap_or(u64::MAX);
            self.next_attempt_ms = end.saturating_add(wait);
        } else {
            self.failures = 0;
            self.next_attempt_ms = 0;
        }
        let mut lines: Vec<String> = self.runs.lines().map(str::to_owned).collect();
        lines.push(serde_json::to_string(&run).expect("a run serializes"));
        let skip = lines.len().saturating_sub(MAX_RUNS);
        self.runs = lines[skip..].join("\n");
        self.total_runs += 1;
        self.claim = None;
    }
}

/// The wait after `failures` consecutive failures: 2 s, 4 s, 8 s... up to 5 minutes. Never
/// zero, so a failing job never spins.
pub fn backoff(failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1u32 << shift).min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(n: u64, outcome: Outcome) -> Run {
        Run {
            slot: format!("v{n}"),
            term: 1,
            holder: "a".into(),
            started_ms: n * 1000,
            duration_ms: 10,
            outcome,
            detail: String::new(),
            figures: BTreeMap::new(),
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert_eq!(backoff(9), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
        assert!(backoff(0) > Duration::ZERO);
    }

    #[test]
    fn the_record_keeps_the_newest_runs_only() {
        let mut r = JobRecord::default();
        for n in 0..(MAX_RUNS as u64 + 7) {
            r.record(run(n, Outcome::Ok));
        }
        let runs = r.runs();
        assert_eq!(runs.len(), MAX_RUNS);
        assert_eq!(runs[0].slot, "v7");
        assert_eq!(r.last().unwrap().slot, format!("v{}", MAX_RUNS + 6));
        assert_eq!(r.total_runs, MAX_RUNS as u64 + 7);
    }

    #[test]
    fn a_failure_sets_the_backoff_and_a_success_clears_it() {
        let mut r = JobRecord::default();
        r.record(run(1, Outcome::Failed));
        assert_eq!(r.failures, 1);
        assert_eq!(r.next_attempt_ms, 1010 + 2000);
        r.record(run(2, Outcome::Failed));
        assert_eq!(r.next_attempt_ms, 2010 + 4000);
        r.record(run(3, Outcome::Ok));
        assert_eq!((r.failures, r.next_attempt_ms), (0, 0));
    }
}
