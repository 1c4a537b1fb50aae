//! When and how often a failed call is tried again.
//!
//! Two rules keep retries from hurting a struggling server:
//! 1. each caller backs off exponentially with jitter, never below `initial / 2`;
//! 2. all retries of one [`crate::Client`] share a gate that spaces them at least
//!    `min_spacing` apart, so a hundred tasks failing together still send at most
//!    `1 / min_spacing` retries per second instead of a storm.
//!
//! Only calls that are safe to repeat are retried after the request was sent
//! ([`Idempotent::Yes`]); the rest are retried only when no connection was made.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::error::Error;

/// Backoff and budgets. Defaults: 250 ms doubling to 16 s, 120 s for start-up waits,
/// 30 s for ordinary calls, retries spaced ≥ 100 ms per client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// First backoff delay (before jitter).
    pub initial: Duration,
    /// Backoff ceiling.
    pub max: Duration,
    /// How long [`crate::Client::wait_ready`] keeps trying: a server starting or waiting for
    /// unseal can legitimately take minutes.
    pub startup_timeout: Duration,
    /// How long an ordinary retryable call keeps trying before it gives up with
    /// [`Error::GaveUp`]. Zero disables retries.
    pub call_budget: Duration,
    /// Minimum spacing between any two retries of the same client (the storm bound).
    pub min_spacing: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(16),
            startup_timeout: Duration::from_secs(120),
            call_budget: Duration::from_secs(30),
            min_spacing: Duration::from_millis(100),
        }
    }
}

impl RetryPolicy {
    /// No retries for ordinary calls (`call_budget` zero); `wait_ready` still waits
    /// `startup_timeout`.
    pub fn no_retries() -> Self {
        Self {
            call_budget: Duration::ZERO,
            ..Self::default()
        }
    }

    /// Set `initial` and `max`.
    #[must_use]
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial = initial;
        self.max = max.max(initial);
        self
    }

    /// Set `startup_timeout`.
    #[must_use]
    pub fn with_startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Set `call_budget`.
    #[must_use]
    pub fn with_call_budget(mut self, budget: Duration) -> Self {
        self.call_budget = budget;
        self
    }

    /// Set `min_spacing`.
    #[must_use]
    pub fn with_min_spacing(mut self, spacing: Duration) -> Self {
        self.min_spacing = spacing;
        self
    }
}

/// Whether repeating a request that may already have been processed is harmless.
///
/// The same rule decides retries on one node and failover to another node of a cluster: a
/// call is sent again (anywhere) only if repeating it is harmless or no server acted on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotent {
    /// Reads, deletes, and writes that set a fixed state (policy, role, mount tune): retried
    /// on any retryable error.
    Yes,
    /// Calls with side effects per request (PKI issue/sign, unwrap, init, unseal): retried
    /// only when no server acted on the request ([`Error::not_applied`]: never sent, or
    /// refused by a sealed node or a standby without an active node), never after a timeout
    /// or a connection lost mid-exchange, where the answer, not the request, may be what was
    /// lost.
    No,
}

impl Idempotent {
    /// Whether `err` may be retried for a call of this kind.
    pub fn may_retry(self, err: &Error) -> bool {
        match self {
            Self::Yes => err.is_retryable(),
            Self::No => err.is_retryable() && err.not_applied(),
        }
    }
}

/// The deterministic part of the backoff: base delays double from `initial` to `max`, each
/// jittered into `[base/2, base)`, and the schedule ends when the next sleep would cross the
/// budget. Kept pure (jitter passed in) so the schedule is unit-tested exactly.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    next_base: Duration,
    max: Duration,
    budget: Duration,
}

impl Schedule {
    pub(crate) fn new(policy: &RetryPolicy, budget: Duration) -> Self {
        Self {
            next_base: policy.initial.max(Duration::from_millis(1)),
            max: policy.max.max(policy.initial),
            budget,
        }
    }

    /// Delay before the next attempt, or `None` to give up. `elapsed` is time since the first
    /// attempt; `unit` in `[0, 1)` picks the jitter.
    pub(crate) fn next_delay(&mut self, elapsed: Duration, unit: f64) -> Option<Duration> {
        let base = self.next_base;
        self.next_base = (base * 2).min(self.max);
        let half = base / 2;
        let delay = half + half.mul_f64(unit.clamp(0.0, 1.0));
        if elapsed + delay > self.budget {
            None
        } else {
            Some(delay)
        }
    }
}

/// A wait as an operator reads it in logs and messages: seconds to the millisecond, without
/// trailing zeros (`1.5s`, `0.25s`, `30s`), where `Debug` would print `1.500000321s`.
pub fn format_wait(d: Duration) -> String {
    let ms = d.as_millis();
    let (secs, frac) = (ms / 1000, ms % 1000);
    if frac == 0 {
        format!("{secs}s")
    } else {
        let frac = format!("{frac:03}");
        format!("{secs}.{}s", frac.trim_end_matches('0'))
    }
}

/// A jitter value in `[0, 1)`. Randomness quality does not matter here, only that clients
/// started together do not stay in lock-step; std's per-process random hasher keys suffice.
pub(crate) fn jitter_unit() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let h = RandomState::new().hash_one(n);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Spaces retries of one client at least `min_spacing` apart, across all tasks.
#[derive(Debug)]
pub(crate) struct RetryGate {
    next_slot: Mutex<Option<Instant>>,
}

impl RetryGate {
    pub(crate) fn new() -> Self {
        Self {
            next_slot: Mutex::new(None),
        }
    }

    /// Reserves the first free slot at or after `earliest` (slots are `spacing` apart), or
    /// returns `None` without reserving when that slot would fall after `deadline`: a call
    /// that cannot get a slot within its budget gives up instead of queueing past it.
    pub(crate) async fn reserve(
        &self,
        earliest: Instant,
        spacing: Duration,
        deadline: Instant,
    ) -> Option<Instant> {
        let mut next = self.next_slot.lock().await;
        let slot = next.map_or(earliest, |n| n.max(earliest));
        if slot > deadline {
            return None;
        }
        *next = Some(slot + spacing);
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_read_as_seconds() {
        assert_eq!(format_wait(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_wait(Duration::from_millis(250)), "0.25s");
        assert_eq!(format_wait(Duration::from_micros(1_500_321)), "1.5s");
        assert_eq!(format_wait(Duration::from_secs(30)), "30s");
        assert_eq!(format_wait(Duration::ZERO), "0s");
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn defaults_match_the_design() {
        let p = RetryPolicy::default();
        assert_eq!(
            (p.initial, p.max, p.startup_timeout),
            (ms(250), Duration::from_secs(16), Duration::from_secs(120))
        );
    }

    #[test]
    fn backoff_doubles_to_max_then_stays() {
        let p = RetryPolicy::default();
        let mut s = Schedule::new(&p, Duration::from_secs(3600));
        // With jitter at its top the delay approaches the base; at 0 it is half the base.
        let bases: Vec<Duration> = (0..10)
            .map(|_| s.next_delay(Duration::ZERO, 0.0).expect("within budget") * 2)
            .collect();
        assert_eq!(
            bases,
            [250, 500, 1000, 2000, 4000, 8000, 16000, 16000, 16000, 16000]
                .map(ms)
                .to_vec()
        );
    }

    #[test]
    fn jitter_stays_in_half_open_band() {
        let p = RetryPolicy::default();
        let mut lo = Schedule::new(&p, Duration::from_secs(3600));
        let mut hi = lo.clone();
        for _ in 0..8 {
            let a = lo.next_delay(Duration::ZERO, 0.0).expect("a");
            let b = hi.next_delay(Duration::ZERO, 0.999).expect("b");
            assert!(b >= a && b < a * 2, "{a:?} {b:?}");
        }
        for _ in 0..1000 {
            let u = jitter_unit();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
    }

    #[test]
    fn schedule_stops_at_the_budget() {
        let p = RetryPolicy::default();
        let budget = Duration::from_secs(10);
        let mut s = Schedule::new(&p, budget);
        let mut elapsed = Duration::ZERO;
        let mut attempts = 1;
        while let Some(d) = s.next_delay(elapsed, 0.5) {
            elapsed += d;
            attempts += 1;
            assert!(elapsed <= budget);
        }
        // 187.5+375+750+1500+3000 = 5812.5 ms; the next (6000) would cross 10 s.
        assert_eq!(attempts, 6);
        assert!(elapsed > Duration::from_secs(5));
    }

    #[test]
    fn zero_budget_means_no_retry() {
        let mut s = Schedule::new(&RetryPolicy::no_retries(), Duration::ZERO);
        assert_eq!(s.next_delay(Duration::ZERO, 0.0), None);
    }

    #[test]
    fn idempotency_decides_what_is_retried() {
        let sealed = Error::Sealed {
            address: "a".into(),
        };
        let unreachable = Error::Unreachable {
            address: "a".into(),
            source: "refused".into(),
        };
        let denied = Error::PermissionDenied {
            path: "p".into(),
            errors: vec![],
        };
        let lost = Error::Timeout {
            path: "p".into(),
            after: Duration::from_secs(1),
        };
        assert!(Idempotent::Yes.may_retry(&sealed));
        // A sealed node refused the request outright (nothing was applied), so even a
        // non-idempotent call may be sent again: to this node later, or to another node.
        assert!(Idempotent::No.may_retry(&sealed));
        assert!(Idempotent::No.may_retry(&unreachable));
        // A timeout may have lost only the answer: never replayed unless idempotent.
        assert!(Idempotent::Yes.may_retry(&lost));
        assert!(!Idempotent::No.may_retry(&lost));
        assert!(!Idempotent::Yes.may_retry(&denied));
    }

    #[tokio::test(start_paused = true)]
    async fn gate_spaces_concurrent_retries_and_respects_deadlines() {
        let gate = RetryGate::new();
        let now = Instant::now();
        let far = now + Duration::from_secs(60);
        let mut slots = Vec::new();
        for _ in 0..10 {
            slots.push(gate.reserve(now, ms(100), far).await.expect("slot") - now);
        }
        assert_eq!(slots, (0..10).map(|i| ms(100 * i)).collect::<Vec<_>>());
        // The next free slot is at 1 s: a caller whose budget ends earlier is refused and
        // does not consume it.
        assert_eq!(gate.reserve(now, ms(100), now + ms(500)).await, None);
        assert_eq!(
            gate.reserve(now, ms(100), far).await.map(|s| s - now),
            Some(ms(1000))
        );
        // A caller asking for a later time gets that time.
        assert_eq!(
            gate.reserve(now + ms(5000), ms(100), far)
                .await
                .map(|s| s - now),
            Some(ms(5000))
        );
    }
}
