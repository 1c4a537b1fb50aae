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
        }
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
    fn default_policy_rotates_at_two_thirds() {
        let c = CaPolicy::default().cadence(0, 300, 0);
        assert_eq!(c.rotation_due_at, 200);
        assert!(Fraction::new(0.0).is_none() && Fraction::new(1.0).is_none());
        assert!(Fraction::new(f64::NAN).is_none());
    }
}
