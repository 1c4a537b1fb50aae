//! `[ca]`: the cadence of the chain — how long the root and each environment's PKI intermediate
//! live, when in its life a CA is due for rotation, and how long an old intermediate stays
//! trusted beside its successor (ADR 0029). Pure: the judgements are functions of time.

use std::time::Duration;

use super::Ttl;

/// A fraction strictly between 0 and 1, kept in millionths so the model stays `Eq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fraction(u32);

impl Fraction {
    /// `v` when 0 < v < 1 (to the millionth), else `None`.
    pub fn new(v: f64) -> Option<Self> {
        if !(v > 0.0 && v < 1.0) {
            return None;
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let m = (v * 1_000_000.0).round() as u32;
        (1..1_000_000).contains(&m).then_some(Self(m))
    }

    /// The fraction of `secs`, rounded down.
    pub fn of(self, secs: u64) -> u64 {
        u64::try_from(u128::from(secs) * u128::from(self.0) / 1_000_000).unwrap_or(u64::MAX)
    }

    /// As a float, for display.
    pub fn get(self) -> f64 {
        f64::from(self.0) / 1_000_000.0
    }
}

/// The CA policy. Every field has a default, so a spec without `[ca]` has a policy too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaPolicy {
    /// Lifetime of the offline root (`warden ca init --validity`).
    pub root_lifetime: Ttl,
    /// Lifetime of each PKI intermediate (`warden ca sign-intermediate --validity`).
    pub intermediate_lifetime: Ttl,
    /// Fraction of a CA's life after which it is due for rotation (0 < f < 1).
    pub rotate_at: Fraction,
    /// How long the old intermediate stays trusted beside the new one once the new one is
    /// active; after it, `retire` no longer waits for leaves to move.
    pub overlap: Ttl,
    /// The window within which agents re-issue their certificates once they see a new
    /// default issuer, each at a random point in it (no renewal storm).
    pub reissue_window: Ttl,
    /// The most certificate re-issues a minute the environment's server should see during a
    /// rotation (`None`: no ceiling declared). Agents cannot coordinate, so the ceiling is held
    /// by sizing: `activate` refuses a rotation whose live certificates, spread over
    /// `reissue_window`, would put the busiest minute above it (ADR 0035).
    pub reissue_rate: Option<u32>,
}

impl Default for CaPolicy {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Self {
            root_lifetime: Ttl(Duration::from_secs(10 * 365 * DAY)),
            intermediate_lifetime: Ttl(Duration::from_secs(2 * 365 * DAY)),
            rotate_at: Fraction(666_667),
            overlap: Ttl(Duration::from_secs(30 * DAY)),
            reissue_window: Ttl(Duration::from_secs(3600)),
            reissue_rate: None,
        }
    }
}

/// The chance the busiest minute of a whole window may exceed the figure the check gives: one
/// in a thousand. It is shared among the window's minutes (a union bound), so a day-long window
/// is judged at a higher percentile per minute than a five-minute one — otherwise each of its
/// 1,440 minutes would get its own one-in-a-thousand chance, and some minute would almost
/// surely cross a ceiling the check said holds.
const WINDOW_TAIL: f64 = 0.001;

/// The upper tail of the standard normal, `P(Z > x)` for `x > 0`, by Laplace's continued
/// fraction for Mills' ratio (accurate to many digits for `x ≥ 2`, the only range used here:
/// the tails wanted are at most 1/1000, `x ≥ 3.09`).
fn normal_tail(x: f64) -> f64 {
    let mut t = x;
    for k in (1..=80_u32).rev() {
        t = x + f64::from(k) / t;
    }
    (-x * x / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt() / t
}

/// The z-score whose upper tail is `alpha` (bisection; `normal_tail` falls as `x` grows).
fn z_for_tail(alpha: f64) -> f64 {
    let (mut lo, mut hi) = (0.5_f64, 40.0_f64);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if normal_tail(mid) > alpha {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// The z-score the busiest minute of a window of `window_secs` is judged at: the whole
/// window's one-in-a-thousand shared among its minutes.
fn z_for_window(window_secs: u64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let minutes = window_secs.max(1).div_ceil(60) as f64;
    z_for_tail(WINDOW_TAIL / minutes)
}

/// What a rotation's spread gives against the declared ceiling ([`CaPolicy::rate_check`]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RateCheck {
    /// Live certificates that will move (those chaining to the intermediate being replaced).
    pub certificates: u64,
    /// The reissue window, seconds.
    pub window_secs: u64,
    /// Mean re-issues per minute over the window.
    pub mean_per_minute: f64,
    /// The count that any minute of the window exceeds with probability at most 1/1000 (each
    /// certificate's point is independent and uniform in the window, so a minute's count is
    /// binomial; the 1/1000 is shared among the window's minutes).
    pub busiest_minute: u64,
    /// The declared ceiling, per minute.
    pub rate: u32,
    /// The shortest window that keeps the busiest minute at or under the ceiling.
    pub min_window_secs: u64,
    /// Certificates held by agents configured with a shorter window than the spec's (their
    /// `[renewal] issuer_window`): counted at their own window, which crowds the first minutes.
    pub on_shorter_windows: u64,
}

impl RateCheck {
    /// Whether the busiest minute stays at or under the ceiling.
    pub fn holds(&self) -> bool {
        self.busiest_minute <= u64::from(self.rate)
    }
}

/// The count no minute of a window of `window_secs` exceeds but once in a thousand windows,
/// when `n` points fall uniformly in it (normal approximation of the binomial, rounded up).
fn busiest_minute(n: u64, window_secs: u64) -> u64 {
    busiest_first_minute(&[(n, window_secs)], window_secs)
}

/// The same for groups of `(points, window)` all starting together: the first minute holds a
/// share of every group (all of a group whose window is a minute or less), so it is the
/// busiest; its count is a sum of binomials (means and variances add). `window_secs` is the
/// whole rotation's, whose minutes share the tail.
fn busiest_first_minute(groups: &[(u64, u64)], window_secs: u64) -> u64 {
    let (mut mean, mut var, mut total) = (0.0_f64, 0.0_f64, 0_u64);
    for &(n, window_secs) in groups {
        total = total.saturating_add(n);
        #[allow(clippy::cast_precision_loss)]
        let (nf, p) = (n as f64, (60.0 / window_secs.max(1) as f64).min(1.0));
        mean += nf * p;
        var += nf * p * (1.0 - p);
    }
    if total == 0 {
        return 0;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let b = (mean + z_for_window(window_secs) * var.sqrt()).ceil() as u64;
    b.min(total)
}

impl CaPolicy {
    /// How `certificates` re-issues over this policy's window sit against `reissue_rate`;
    /// `None` when no ceiling is declared.
    pub fn rate_check(&self, certificates: u64) -> Option<RateCheck> {
        self.rate_check_with(certificates, &[])
    }

    /// [`Self::rate_check`] where `shorter` are certificates whose agents are configured with a
    /// window shorter than this policy's, as `(certificates, window seconds)`; they are part of
    /// `certificates`. The shortest window that fits is the policy's, assuming those agents are
    /// brought to it.
    pub fn rate_check_with(&self, certificates: u64, shorter: &[(u64, u64)]) -> Option<RateCheck> {
        let rate = self.reissue_rate?;
        let window_secs = self.reissue_window.as_secs().max(1);
        let on_shorter: u64 = shorter
            .iter()
            .map(|(n, _)| *n)
            .sum::<u64>()
            .min(certificates);
        let mut groups = vec![(certificates - on_shorter, window_secs)];
        groups.extend(shorter.iter().copied());
        // The smallest window whose busiest minute fits: the count falls as the window grows,
        // so a binary search over seconds finds it (capped at ten years: a ceiling that low is
        // reported as unreachable by its size).
        let (mut lo, mut hi) = (1_u64, 10 * 365 * 86_400);
        if busiest_minute(certificates, hi) > u64::from(rate) {
            lo = hi;
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if busiest_minute(certificates, mid) <= u64::from(rate) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        #[allow(clippy::cast_precision_loss)]
        let mean_per_minute = certificates as f64 * 60.0 / window_secs as f64;
        Some(RateCheck {
            certificates,
            window_secs,
            mean_per_minute,
            busiest_minute: busiest_first_minute(&groups, window_secs),
            rate,
            min_window_secs: lo,
            on_shorter_windows: on_shorter,
        })
    }
}

/// Where one CA stands in its life, by the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaCadence {
    /// Unix seconds at which rotation is due (`not_before + rotate_at × lifetime`).
    pub rotation_due_at: i64,
    /// Whether `now` is at or past that instant.
    pub rotation_due: bool,
    /// Whether the CA has expired at `now`.
    pub expired: bool,
}

impl CaPolicy {
    /// The cadence of a CA valid from `not_before` to `not_after` (Unix seconds) at `now`.
    /// The lifetime is the certificate's own, not the policy's, so a CA signed for longer or
    /// shorter than the policy says is still judged by when it really ends.
    pub fn cadence(&self, not_before: i64, not_after: i64, now: i64) -> CaCadence {
        let life = u64::try_from(not_after - not_before).unwrap_or(0);
        let due = not_before.saturating_add(i64::try_from(self.rotate_at.of(life)).unwrap_or(0));
        CaCadence {
            rotation_due_at: due,
            rotation_due: now >= due,
            expired: now >= not_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_is_due_at_the_fraction_of_the_real_lifetime() {
        let p = CaPolicy {
            rotate_at: Fraction::new(0.5).unwrap(),
            ..CaPolicy::default()
        };
        let c = p.cadence(1_000, 3_000, 1_999);
        assert_eq!(c.rotation_due_at, 2_000);
        assert!(!c.rotation_due);
        assert!(p.cadence(1_000, 3_000, 2_000).rotation_due);
        assert!(!p.cadence(1_000, 3_000, 2_999).expired);
        assert!(p.cadence(1_000, 3_000, 3_000).expired);
    }

    #[test]
    fn the_rate_check_sizes_the_window_for_the_busiest_minute() {
        let p = |window: u64, rate: Option<u32>| CaPolicy {
            reissue_window: Ttl(Duration::from_secs(window)),
            reissue_rate: rate,
            ..CaPolicy::default()
        };
        assert!(
            p(240, None).rate_check(600).is_none(),
            "no ceiling, no check"
        );
        // 600 certificates over 240 s: 150 a minute on average, the busiest minute well above.
        let c = p(240, Some(150)).rate_check(600).expect("check");
        assert!((c.mean_per_minute - 150.0).abs() < 1e-9);
        assert!(c.busiest_minute > 150 && c.busiest_minute < 200, "{c:?}");
        assert!(!c.holds());
        // The window it asks for holds, one second less does not.
        let w = c.min_window_secs;
        assert!(w > 240 && w < 400, "{w}");
        assert!(p(w, Some(150)).rate_check(600).expect("check").holds());
        assert!(!p(w - 1, Some(150)).rate_check(600).expect("check").holds());
        // A window under a minute puts everything in one minute.
        assert_eq!(
            p(30, Some(1_000))
                .rate_check(600)
                .expect("check")
                .busiest_minute,
            600
        );
        // Nothing to move always holds; an unreachable ceiling is reported by its size.
        assert!(p(240, Some(1)).rate_check(0).expect("check").holds());
        assert!(
            p(240, Some(1))
                .rate_check(1_000_000)
                .expect("check")
                .min_window_secs
                >= 10 * 365 * 86_400
        );
        // Agents on a shorter window than the spec's crowd the first minute: 100 of the 600
        // within 60 s put it over a ceiling the spec's window alone would hold.
        let fits = p(330, Some(150));
        assert!(fits.rate_check(600).expect("check").holds());
        let crowded = fits.rate_check_with(600, &[(100, 60)]).expect("check");
        assert_eq!(crowded.on_shorter_windows, 100);
        assert!(!crowded.holds(), "{crowded:?}");
        assert!(crowded.busiest_minute > 180, "{crowded:?}");
    }

    #[test]
    fn the_busiest_minute_is_judged_over_the_whole_window() {
        // One minute: the 99.9th percentile of a normal (3.09).
        assert!(
            (z_for_window(60) - 3.0902).abs() < 1e-3,
            "{}",
            z_for_window(60)
        );
        assert!((normal_tail(3.0902) - 0.001).abs() < 1e-6);
        // A day shares the same one in a thousand among 1,440 minutes.
        let day = z_for_window(86_400);
        assert!((day - 4.8266).abs() < 1e-3, "{day}");
        // So a day's figure is higher than one minute's would be: 1,000,000 certificates over a
        // day average 694 a minute, and a single minute's 99.9th percentile (≈ 776) is crossed
        // by the busiest of 1,440 minutes most of the time.
        let p = CaPolicy {
            reissue_window: Ttl(Duration::from_secs(86_400)),
            reissue_rate: Some(780),
            ..CaPolicy::default()
        };
        let c = p.rate_check(1_000_000).expect("check");
        assert!(c.busiest_minute > 810, "{c:?}");
        assert!(!c.holds());
    }

    #[test]
    fn default_policy_rotates_at_two_thirds() {
        let c = CaPolicy::default().cadence(0, 300, 0);
        assert_eq!(c.rotation_due_at, 200);
        assert!(Fraction::new(0.0).is_none() && Fraction::new(1.0).is_none());
        assert!(Fraction::new(f64::NAN).is_none());
    }
}
