//! When things happen: certificate renewal, polling, and backoff after failures.
//!
//! Everything here is arithmetic on times handed in: the clock ([`Clock`]) and the randomness
//! (a jitter value in `[-1, 1]` or `[0, 1)`) are parameters, so each rule is unit-tested exactly.
//!
//! * **Renewal** (`cert_due`): at `not_before + fraction·lifetime ± jitter·lifetime`, but never
//!   later than `not_after − margin`; if that moment has passed, now. A margin longer than half
//!   the lifetime is cut to half, so a short-lived certificate (a 2-minute one in a test, or a
//!   role whose `max_ttl` is shorter than the margin) is renewed at mid-life instead of being
//!   due again the moment it arrives.
//! * **Jitter per certificate** (`serial_jitter`): derived from the serial, so a restarted
//!   agent computes the same due time for the same certificate, while a fleet's certificates
//!   still spread out.
//! * **Database leases** (`lease_next`): renew at 2/3 of what the last issue or renewal
//!   granted; once a renewal grants less than asked (the role's `max_ttl` is near), the lease
//!   is not renewable or renewing it is refused, issue new credentials [`reissue_margin`]
//!   before the lease ends — a third of the lease, at least 10 s, at most half of it — but never
//!   earlier than half-way through the new lease, so a lease that is short from the start cannot
//!   cause an issuing loop. A renewal that fails for a passing reason (sealed, unreachable) is
//!   retried, paced by the backoff, until the lease is over: renewing keeps the service's
//!   credentials, and a server that cannot renew cannot issue either.
//! * **Backoff** ([`Backoff`]): 1 s doubling to 5 min, each delay drawn from `[base/2, base)`,
//!   reset by a success. It is what keeps a sealed or unreachable server from being hammered.

use std::time::Duration;

use time::OffsetDateTime;

use super::config::RenewalConfig;

/// The source of "now", injected so renewal and expiry are testable: the workspace's one clock.
pub use warden_pki::{Clock, SystemClock};

/// A non-negative `time::Duration` as `std`.
pub(crate) fn to_std(d: time::Duration) -> Duration {
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

/// When a certificate valid from `not_before` to `not_after` is due for renewal.
/// `jitter_unit` is in `[-1, 1]` (see [`serial_jitter`]).
pub fn cert_due(
    policy: &RenewalConfig,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    jitter_unit: f64,
    now: OffsetDateTime,
) -> OffsetDateTime {
    let lifetime = (not_after - not_before).max(time::Duration::ZERO);
    let secs = lifetime.as_seconds_f64();
    let offset = secs * (policy.fraction + policy.jitter * jitter_unit.clamp(-1.0, 1.0));
    let planned = not_before + time::Duration::seconds_f64(offset.max(0.0));
    let margin = time::Duration::try_from(policy.margin)
        .unwrap_or(time::Duration::MAX)
        .min(lifetime / 2);
    let latest = not_after - margin;
    planned.min(latest).max(now)
}

/// Whether a certificate is past its renewal point at `now`.
pub fn renewal_due(
    policy: &RenewalConfig,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    jitter_unit: f64,
    now: OffsetDateTime,
) -> bool {
    cert_due(policy, not_before, not_after, jitter_unit, now) <= now
}

/// A stable jitter value in `[-1, 1]` for a certificate serial (SHA-256 of the serial mapped
/// onto the interval).
pub fn serial_jitter(serial: &str) -> f64 {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, serial.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest.as_ref()[..8]);
    unit_from_u64(u64::from_be_bytes(b)) * 2.0 - 1.0
}

/// What to do next with a database lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseStep {
    /// Extend it (`sys/leases/renew`).
    Renew,
    /// Issue new credentials: the lease cannot (or can no longer) be extended.
    Reissue,
}

impl LeaseStep {
    /// `renew` or `reissue`, for status and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Renew => "renew",
            Self::Reissue => "reissue",
        }
    }
}

/// The facts of one lease that decide its schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimes {
    /// When the credentials were issued.
    pub issued_at: OffsetDateTime,
    /// The lease duration they were issued with (also the increment renewals ask for).
    pub ttl: Duration,
    /// When the last issue or renewal happened.
    pub granted_at: OffsetDateTime,
    /// What it granted.
    pub granted: Duration,
    /// OpenBao said the lease can be renewed.
    pub renewable: bool,
    /// A renewal granted less than asked: the lease ends at [`LeaseTimes::expires`] whatever
    /// the agent does.
    pub capped: bool,
    /// Renewing was refused (permission denied): only new credentials can help.
    pub renew_refused: bool,
}

impl LeaseTimes {
    /// When the lease ends as last granted.
    pub fn expires(&self) -> OffsetDateTime {
        self.granted_at + time::Duration::try_from(self.granted).unwrap_or(time::Duration::MAX)
    }
}

/// The least time before a lease ends at which new credentials are issued.
pub const LEASE_MARGIN_FLOOR: Duration = Duration::from_secs(10);

/// How long before a lease of `ttl` ends its replacement is issued: a third of the lease, at
/// least [`LEASE_MARGIN_FLOOR`], at most half of it (the service needs the time to pick the
/// new credentials up; the floor matters for short test leases).
pub fn reissue_margin(ttl: Duration) -> Duration {
    (ttl / 3).max(LEASE_MARGIN_FLOOR).min(ttl / 2)
}

/// The next step for a lease and when it is due (possibly in the past: then now). `None` for
/// a lease that does not expire.
///
/// A renewable lease is renewed at 2/3 of each grant; while renewals fail for a passing reason
/// it is still renewed (the caller's backoff paces the attempts) until it is over, when new
/// credentials are issued. A lease that cannot be extended — not renewable, capped by the
/// role's `max_ttl`, or its renewal refused — is replaced `reissue_margin` before it ends, but
/// not before half of its first grant has passed.
pub fn lease_next(l: &LeaseTimes, now: OffsetDateTime) -> Option<(LeaseStep, OffsetDateTime)> {
    if l.ttl.is_zero() || l.granted.is_zero() {
        return None;
    }
    let dur = |d: Duration| time::Duration::try_from(d).unwrap_or(time::Duration::MAX);
    if l.renewable && !l.capped && !l.renew_refused {
        if now >= l.expires() {
            return Some((LeaseStep::Reissue, now));
        }
        return Some((LeaseStep::Renew, l.granted_at + dur(l.granted * 2 / 3)));
    }
    let last_call = l.expires() - dur(reissue_margin(l.ttl));
    let not_before = l.issued_at + dur(l.ttl / 2);
    Some((LeaseStep::Reissue, last_call.max(not_before)))
}

/// The next poll of a template or CA chain: `poll` ± 10 %, so outputs started together drift
/// apart. `unit` is in `[0, 1)`.
pub fn poll_delay(poll: Duration, unit: f64) -> Duration {
    poll.mul_f64(0.9 + 0.2 * unit.clamp(0.0, 1.0))
}

/// Exponential backoff with jitter: 1 s, 2 s, 4 s ... capped at 5 min; each delay is drawn
/// from `[base/2, base)`.
#[derive(Debug, Clone)]
pub struct Backoff {
    failures: u32,
    initial: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(300))
    }
}

impl Backoff {
    /// A backoff from `initial` doubling to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            failures: 0,
            initial,
            max: max.max(initial),
        }
    }

    /// Records a failure and returns how long to wait before the next attempt. `unit` is in
    /// `[0, 1)`.
    pub fn fail(&mut self, unit: f64) -> Duration {
        let base = self.base(self.failures);
        self.failures = self.failures.saturating_add(1);
        base.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
    }

    /// A success: the next failure starts from `initial` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    fn base(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.min(31));
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// A uniformly distributed value in `[0, 1)` from the system CSPRNG. Jitter does not need a
/// CSPRNG, but aws-lc-rs is already here and avoids a second source of randomness.
pub fn random_unit() -> f64 {
    use aws_lc_rs::rand::SecureRandom;
    let mut b = [0u8; 8];
    // A failing system RNG is not a reason to stop renewing: fall back to the clock.
    if aws_lc_rs::rand::SystemRandom::new().fill(&mut b).is_err() {
        let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
        b = (nanos as u64).to_be_bytes();
    }
    unit_from_u64(u64::from_be_bytes(b))
}

fn unit_from_u64(v: u64) -> f64 {
    // 53 random bits → [0, 1) exactly representable.
    (v >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn policy() -> RenewalConfig {
        RenewalConfig {
            fraction: 2.0 / 3.0,
            jitter: 0.05,
            margin: Duration::from_secs(120),
            poll: Duration::from_secs(300),
            issuer_window: Duration::from_secs(3600),
        }
    }

    #[derive(Debug)]
    struct Fixed(OffsetDateTime);
    impl Clock for Fixed {
        fn now(&self) -> OffsetDateTime {
            self.0
        }
    }

    #[test]
    fn due_at_the_fraction_with_jitter_either_way() {
        let nb = datetime!(2030-01-01 0:00 UTC);
        let na = nb + time::Duration::hours(72);
        let clock = Fixed(nb);
        let p = policy();
        assert_eq!(
            cert_due(&p, nb, na, 0.0, clock.now()),
            nb + time::Duration::hours(48)
        );
        // ±5 % of 72 h = ±3.6 h.
        assert_eq!(
            cert_due(&p, nb, na, 1.0, clock.now()),
            nb + time::Duration::hours(48) + time::Duration::minutes(216)
        );
        assert_eq!(
            cert_due(&p, nb, na, -1.0, clock.now()),
            nb + time::Duration::hours(48) - time::Duration::minutes(216)
        );
        // Out-of-range jitter is clamped.
        assert_eq!(
            cert_due(&p, nb, na, 7.0, clock.now()),
            cert_due(&p, nb, na, 1.0, clock.now())
        );
    }

    #[test]
    fn the_margin_is_a_floor_and_the_past_means_now() {
        let nb = datetime!(2030-01-01 0:00 UTC);
        let na = nb + time::Duration::hours(1);
        let mut p = policy();
        p.fraction = 0.95;
        p.jitter = 0.0;
        p.margin = Duration::from_secs(600);
        // 95 % of an hour is 57 min, but the margin says no later than 50 min.
        assert_eq!(
            cert_due(&p, nb, na, 0.0, nb),
            nb + time::Duration::minutes(50)
        );
        // Already past: now.
        let late = nb + time::Duration::minutes(59);
        assert_eq!(cert_due(&p, nb, na, 0.0, late), late);
        assert!(renewal_due(&p, nb, na, 0.0, late));
        assert!(!renewal_due(
            &p,
            nb,
            na,
            0.0,
            nb + time::Duration::minutes(49)
        ));
        // Expired long ago: now.
        let much_later = na + time::Duration::days(3);
        assert_eq!(cert_due(&p, nb, na, 0.0, much_later), much_later);
    }

    #[test]
    fn a_margin_longer_than_the_lifetime_is_cut_to_half_of_it() {
        // A 2-minute certificate (plus OpenBao's 30 s backdating) with the default 2 m margin:
        // renewed at mid-life, not immediately.
        let issued = datetime!(2030-01-01 0:00 UTC);
        let nb = issued - time::Duration::seconds(30);
        let na = issued + time::Duration::seconds(120);
        let due = cert_due(&policy(), nb, na, 0.0, issued);
        assert_eq!(due, nb + time::Duration::seconds(75));
        assert!(due > issued);
    }

    #[test]
    fn serial_jitter_is_stable_and_in_range() {
        let a = serial_jitter("1a:2b:3c");
        assert_eq!(a, serial_jitter("1a:2b:3c"));
        assert_ne!(a, serial_jitter("1a:2b:3d"));
        for i in 0..1000 {
            let j = serial_jitter(&format!("{i:x}"));
            assert!((-1.0..=1.0).contains(&j), "{j}");
        }
        // Spread both ways.
        let (neg, pos): (Vec<f64>, Vec<f64>) = (0..200)
            .map(|i| serial_jitter(&i.to_string()))
            .partition(|j| *j < 0.0);
        assert!(neg.len() > 50 && pos.len() > 50);
    }

    #[test]
    fn backoff_doubles_from_one_second_to_five_minutes_and_resets() {
        let mut b = Backoff::default();
        // unit = 1.0 → the base itself; 0.0 → half of it.
        let bases: Vec<u64> = (0..12).map(|_| b.fail(1.0).as_secs()).collect();
        assert_eq!(bases, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(b.failures(), 12);
        b.reset();
        assert_eq!(b.fail(0.0), Duration::from_millis(500));
        assert_eq!(b.fail(0.5), Duration::from_millis(1500));
        // Never overflows, however long the outage.
        let mut b = Backoff::default();
        for _ in 0..10_000 {
            assert!(b.fail(1.0) <= Duration::from_secs(300));
        }
    }

    #[test]
    fn backoff_bounds_attempts_over_an_outage() {
        // Worst case (always the short end of the jitter): how many attempts fit in 10 min?
        let mut b = Backoff::default();
        let mut t = Duration::ZERO;
        let mut attempts = 0;
        while t < Duration::from_secs(600) {
            attempts += 1;
            t += b.fail(0.0);
        }
        assert!(attempts <= 13, "{attempts}");
    }

    fn lease(ttl: u64) -> LeaseTimes {
        let t0 = datetime!(2030-01-01 0:00 UTC);
        LeaseTimes {
            issued_at: t0,
            ttl: Duration::from_secs(ttl),
            granted_at: t0,
            granted: Duration::from_secs(ttl),
            renewable: true,
            capped: false,
            renew_refused: false,
        }
    }

    #[test]
    fn a_lease_is_renewed_at_two_thirds_then_replaced_before_its_max_ttl() {
        // default_ttl 30 s, max_ttl 60 s.
        let mut l = lease(30);
        let t0 = l.issued_at;
        let s = |n: i64| t0 + time::Duration::seconds(n);
        assert_eq!(lease_next(&l, t0), Some((LeaseStep::Renew, s(20))));
        // Renewed at 20 s for the full 30 s.
        l.granted_at = s(20);
        assert_eq!(lease_next(&l, s(20)), Some((LeaseStep::Renew, s(40))));
        // Renewed at 40 s: only 20 s are left before max_ttl, so the grant is capped.
        l.granted_at = s(40);
        l.granted = Duration::from_secs(20);
        l.capped = true;
        assert_eq!(l.expires(), s(60));
        // Replaced 10 s (a third of 30 s) before it ends, whatever the time now.
        assert_eq!(lease_next(&l, s(40)), Some((LeaseStep::Reissue, s(50))));
        assert_eq!(lease_next(&l, s(55)), Some((LeaseStep::Reissue, s(50))));
    }

    #[test]
    fn margins_are_a_third_with_a_floor_and_a_ceiling() {
        assert_eq!(
            reissue_margin(Duration::from_secs(3600)),
            Duration::from_secs(1200)
        );
        assert_eq!(
            reissue_margin(Duration::from_secs(20)),
            Duration::from_secs(10)
        );
        assert_eq!(
            reissue_margin(Duration::from_secs(12)),
            Duration::from_secs(6)
        );
    }

    #[test]
    fn unrenewable_short_and_failing_leases() {
        // Not renewable: replaced a third before its end.
        let mut l = lease(3600);
        l.renewable = false;
        let t0 = l.issued_at;
        assert_eq!(
            lease_next(&l, t0),
            Some((LeaseStep::Reissue, t0 + time::Duration::minutes(40)))
        );
        // Capped right at the first renewal (max_ttl = default_ttl): never earlier than half
        // of the lease, so a short lease cannot loop.
        let mut l = lease(20);
        l.granted = Duration::from_secs(2);
        l.capped = true;
        assert_eq!(
            lease_next(&l, t0),
            Some((LeaseStep::Reissue, t0 + time::Duration::seconds(10)))
        );
        // Renewals failing for a passing reason: keep renewing (the backoff paces it) until
        // the lease is over, then issue.
        let l = lease(60);
        let at = |n: i64| t0 + time::Duration::seconds(n);
        assert_eq!(lease_next(&l, at(59)), Some((LeaseStep::Renew, at(40))));
        assert_eq!(lease_next(&l, at(60)), Some((LeaseStep::Reissue, at(60))));
        // Renewing refused: replaced before the end like a capped lease.
        let mut l = lease(60);
        l.renew_refused = true;
        assert_eq!(lease_next(&l, at(41)), Some((LeaseStep::Reissue, at(40))));
        // A lease without a TTL needs nothing.
        assert_eq!(lease_next(&lease(0), t0), None);
    }

    #[test]
    fn poll_delay_spreads_by_ten_percent() {
        let p = Duration::from_secs(300);
        assert_eq!(poll_delay(p, 0.0), Duration::from_secs(270));
        assert_eq!(poll_delay(p, 0.5), Duration::from_secs(300));
        assert!(poll_delay(p, 0.999_999) < Duration::from_secs(330));
    }

    #[test]
    fn random_units_are_in_range() {
        for _ in 0..1000 {
            let u = random_unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
