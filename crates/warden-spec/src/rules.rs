//! The purpose rules, as pure functions of time: a credential's posture status, and whether a
//! renewal or new issuance may go ahead (fail closed). Posture, the agent and every command that
//! issues or rotates use these, so "due", "stale" and a refusal mean the same thing everywhere.
//!
//! Time is passed in (seconds since the Unix epoch), never read here: tests and `warden posture
//! --at` judge at any instant.

use std::fmt;

use serde::Serialize;

use crate::model::{DomainCert, Purpose, Spec};

/// A credential's posture, from best to worst (the order is the severity order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Younger than its rotation interval and not near expiry.
    Healthy,
    /// Past its rotation interval (or inside its renewal margin), still inside the grace window:
    /// rotate now.
    Due,
    /// Nothing observable: no agent report, not yet issued, or unreadable.
    Unknown,
    /// Past interval + grace without rotation: renewal is refused; what was issued keeps working
    /// until it expires.
    Stale,
    /// Past its expiry or its purpose's max age.
    Expired,
    /// Its purpose is revoked: nothing is issued or renewed under it.
    Revoked,
}

impl Status {
    /// Every status, best first.
    pub const ALL: [Self; 6] = [
        Self::Healthy,
        Self::Due,
        Self::Unknown,
        Self::Stale,
        Self::Expired,
        Self::Revoked,
    ];

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Due => "due",
            Self::Unknown => "unknown",
            Self::Stale => "stale",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }

    /// The status called `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known about one credential at the moment it is judged. Times are Unix seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observed {
    /// When the current credential (version, certificate, key) was issued or written.
    pub issued_at: Option<i64>,
    /// When it stops working, if it expires by itself.
    pub expires_at: Option<i64>,
    /// Renew this long before `expires_at` even if the rotation interval has not passed
    /// (a domain certificate's `renew_before`).
    pub renew_before_secs: Option<u64>,
}

/// The verdict with its reason and the instant rotation is due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Judgement {
    /// Status.
    pub status: Status,
    /// Why, in words: "issued 3d ago; rotation due in 17d".
    pub reason: String,
    /// When rotation is (or was) due.
    pub rotation_due_at: Option<i64>,
}

/// Judges `seen` under `purpose` at `now`.
pub fn judge(purpose: &Purpose, seen: &Observed, now: i64) -> Judgement {
    let rot = &purpose.rotation;
    let secs = |t: crate::model::Ttl| i64::try_from(t.as_secs()).unwrap_or(i64::MAX);
    // Due at the interval, or earlier when the credential expires by itself: `renew_before`
    // ahead of its expiry, or (no margin given) at two thirds of its lifetime, where agents
    // renew. A credential is never "due" only after it has expired.
    let due_at = seen.issued_at.map(|i| {
        let by_interval = i.saturating_add(secs(rot.interval));
        match seen.expires_at {
            Some(e) => {
                let margin = seen.renew_before_secs.map_or_else(
                    || e.saturating_sub(i).max(0) / 3,
                    |m| i64::try_from(m).unwrap_or(i64::MAX),
                );
                by_interval.min(e.saturating_sub(margin))
            }
            None => by_interval,
        }
    });
    let verdict = |status, reason: String| Judgement {
        status,
        reason,
        rotation_due_at: due_at,
    };
    if purpose.revoked {
        return verdict(
            Status::Revoked,
            format!("purpose `{}` is revoked", purpose.id),
        );
    }
    let Some(issued) = seen.issued_at else {
        return verdict(Status::Unknown, "nothing observed".to_owned());
    };
    let age = now.saturating_sub(issued);
    if let Some(e) = seen.expires_at
        && e <= now
    {
        return verdict(Status::Expired, format!("expired {} ago", human(now - e)));
    }
    if age >= secs(rot.max_age) {
        return verdict(
            Status::Expired,
            format!(
                "issued {} ago, beyond the max age of {}",
                human(age),
                human(secs(rot.max_age))
            ),
        );
    }
    let stale_at = issued
        .saturating_add(secs(rot.interval))
        .saturating_add(secs(rot.grace));
    if now >= stale_at {
        return verdict(
            Status::Stale,
            format!(
                "issued {} ago; not rotated within interval {} + grace {}",
                human(age),
                human(secs(rot.interval)),
                human(secs(rot.grace))
            ),
        );
    }
    let due = due_at.expect("issued_at is known");
    if now >= due {
        return verdict(
            Status::Due,
            format!(
                "rotation due since {} ago; grace ends in {}",
                human(now - due),
                human(stale_at - now)
            ),
        );
    }
    verdict(
        Status::Healthy,
        format!(
            "issued {} ago; rotation due in {}",
            human(age),
            human(due - now)
        ),
    )
}

/// Why a renewal or new issuance is refused (fail closed). Each names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The purpose is revoked.
    #[error("purpose `{purpose}` is revoked: nothing is issued or renewed under it")]
    Revoked {
        /// Purpose id.
        purpose: String,
    },
    /// The credential was not rotated within interval + grace (or is past max age).
    #[error(
        "renewal outside the grace window of purpose `{purpose}`: the credential was issued {age} ago, and interval {interval} + grace {grace} has passed"
    )]
    OutsideGrace {
        /// Purpose id.
        purpose: String,
        /// Age, human-readable.
        age: String,
        /// Interval, human-readable.
        interval: String,
        /// Grace, human-readable.
        grace: String,
    },
    /// No purpose covers the credential: nothing is issued without one.
    #[error("`{credential}` is governed by no purpose")]
    Ungoverned {
        /// The credential reference, e.g. `domain/api-example-com`.
        credential: String,
    },
    /// The issuer would expire before the leaf it would sign.
    #[error(
        "the issuer expires in {issuer_left}, before the {leaf_ttl} leaf it would sign: rotate the intermediate first"
    )]
    IssuerTooShort {
        /// Issuer's remaining life, human-readable.
        issuer_left: String,
        /// Requested leaf lifetime, human-readable.
        leaf_ttl: String,
    },
}

/// A purpose's renewal contract as the registry publishes it (`warden/data/registry/<id>`):
/// what an agent, which has no spec, checks before it issues anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contract {
    /// Purpose id.
    pub purpose: String,
    /// Nothing is issued or renewed under it.
    pub revoked: bool,
    /// Rotation interval, seconds.
    pub interval_secs: u64,
    /// Grace after the interval, seconds.
    pub grace_secs: u64,
    /// Maximum age, seconds.
    pub max_age_secs: u64,
}

impl Contract {
    /// The contract of `purpose`.
    pub fn of(purpose: &Purpose) -> Self {
        let rot = &purpose.rotation;
        Self {
            purpose: purpose.id.to_string(),
            revoked: purpose.revoked,
            interval_secs: rot.interval.as_secs(),
            grace_secs: rot.grace.as_secs(),
            max_age_secs: rot.max_age.as_secs(),
        }
    }
}

/// May a credential under `contract`, issued at `issued_at` (None: first issuance), be
/// renewed at `now`? Revoked: never. Older than interval + grace (or max age): no — a
/// credential left unrotated that long needs a human decision, not a silent re-issue.
pub fn check_contract(
    contract: &Contract,
    issued_at: Option<i64>,
    now: i64,
) -> Result<(), Refusal> {
    if contract.revoked {
        return Err(Refusal::Revoked {
            purpose: contract.purpose.clone(),
        });
    }
    if let Some(issued) = issued_at {
        let age = now.saturating_sub(issued);
        let window = contract.interval_secs.saturating_add(contract.grace_secs);
        if u64::try_from(age).unwrap_or(0) >= window.min(contract.max_age_secs) {
            return Err(Refusal::OutsideGrace {
                purpose: contract.purpose.clone(),
                age: human(age),
                interval: human(i64::try_from(contract.interval_secs).unwrap_or(i64::MAX)),
                grace: human(i64::try_from(contract.grace_secs).unwrap_or(i64::MAX)),
            });
        }
    }
    Ok(())
}

/// May a credential of `purpose` issued at `issued_at` (None: first issuance) be renewed now,
/// with a leaf of `leaf_ttl_secs` signed by an issuer valid until `issuer_not_after`?
pub fn check_renewal(
    purpose: &Purpose,
    issued_at: Option<i64>,
    issuer_not_after: Option<i64>,
    leaf_ttl_secs: Option<u64>,
    now: i64,
) -> Result<(), Refusal> {
    check_contract(&Contract::of(purpose), issued_at, now)?;
    if let (Some(na), Some(ttl)) = (issuer_not_after, leaf_ttl_secs) {
        let left = na.saturating_sub(now);
        if left < i64::try_from(ttl).unwrap_or(i64::MAX) {
            return Err(Refusal::IssuerTooShort {
                issuer_left: human(left.max(0)),
                leaf_ttl: human(i64::try_from(ttl).unwrap_or(i64::MAX)),
            });
        }
    }
    Ok(())
}

/// The credential reference of a domain certificate in purposes' `covers`:
/// `domain/<slug>`.
pub fn domain_credential(d: &DomainCert) -> String {
    format!("domain/{}", d.slug)
}

/// The purpose that governs domain certificate `d`, refused when none does or it is revoked.
/// Checked for every selected domain before anything is issued, so a renewal run never stops
/// halfway on a rule it could have known at the start.
pub fn domain_purpose<'s>(spec: &'s Spec, d: &DomainCert) -> Result<&'s Purpose, Refusal> {
    let credential = domain_credential(d);
    match spec.purpose_of(&credential) {
        Some(p) if p.revoked => Err(Refusal::Revoked {
            purpose: p.id.to_string(),
        }),
        Some(p) => Ok(p),
        None => Err(Refusal::Ungoverned { credential }),
    }
}

/// The fail-closed gate for renewing (or first issuing) domain certificate `d` at `now`: its
/// purpose must govern it and not be revoked, the stored certificate (issued at `issued_at`;
/// `None` when there is none) must still be inside interval + grace, and the issuer (valid
/// until `issuer_not_after`, when known) must outlive a leaf of `d`'s lifetime. A certificate
/// left unrotated past its window needs a human decision, not a silent re-issue; what was
/// issued keeps working until it expires.
pub fn check_domain_renewal<'s>(
    spec: &'s Spec,
    d: &DomainCert,
    issued_at: Option<i64>,
    issuer_not_after: Option<i64>,
    now: i64,
) -> Result<&'s Purpose, Refusal> {
    let purpose = domain_purpose(spec, d)?;
    check_renewal(
        purpose,
        issued_at,
        issuer_not_after,
        Some(d.ttl.as_secs()),
        now,
    )?;
    Ok(purpose)
}

/// `90s`, `12m`, `5h3m`, `3d4h`: an age or a time left in the duration grammar, rounded to
/// its two largest units ([`crate::format_approx`]); negative counts as zero.
pub fn human(secs: i64) -> String {
    crate::format_approx(std::time::Duration::from_secs(secs.max(0).unsigned_abs()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Delivery, RotationPolicy, Slug, StorageTier, Ttl};
    use std::time::Duration;

    fn purpose(interval: u64, grace: u64, max_age: u64) -> Purpose {
        Purpose {
            id: Slug::parse("p").expect("slug"),
            description: "d".into(),
            owner: "o".into(),
            tier: StorageTier::VaultKv,
            delivery: Delivery::AgentFile,
            rotation: RotationPolicy {
                interval: Ttl(Duration::from_secs(interval)),
                grace: Ttl(Duration::from_secs(grace)),
                max_age: Ttl(Duration::from_secs(max_age)),
            },
            custody: String::new(),
            evidence: "E".into(),
            covers: vec!["*/x".into()],
            revoked: false,
        }
    }

    fn at(issued: i64) -> Observed {
        Observed {
            issued_at: Some(issued),
            ..Observed::default()
        }
    }

    #[test]
    fn status_walks_from_healthy_to_expired_with_age() {
        let p = purpose(100, 50, 200);
        let s = |now| judge(&p, &at(0), now).status;
        assert_eq!(s(0), Status::Healthy);
        assert_eq!(s(99), Status::Healthy);
        assert_eq!(s(100), Status::Due);
        assert_eq!(s(149), Status::Due);
        assert_eq!(s(150), Status::Stale);
        assert_eq!(s(199), Status::Stale);
        assert_eq!(s(200), Status::Expired);
        assert_eq!(judge(&p, &at(0), 10).rotation_due_at, Some(100));
    }

    #[test]
    fn expiry_and_renewal_margin_come_before_the_interval() {
        let p = purpose(1000, 500, 5000);
        let seen = Observed {
            issued_at: Some(0),
            expires_at: Some(300),
            renew_before_secs: Some(100),
        };
        assert_eq!(judge(&p, &seen, 150).status, Status::Healthy);
        assert_eq!(judge(&p, &seen, 200).status, Status::Due);
        assert_eq!(judge(&p, &seen, 300).status, Status::Expired);
    }

    #[test]
    fn a_certificate_is_due_at_two_thirds_of_its_life_when_that_comes_first() {
        let p = purpose(1000, 500, 5000);
        let seen = Observed {
            issued_at: Some(0),
            expires_at: Some(300),
            renew_before_secs: None,
        };
        assert_eq!(judge(&p, &seen, 199).status, Status::Healthy);
        assert_eq!(judge(&p, &seen, 200).status, Status::Due);
        assert_eq!(judge(&p, &seen, 200).rotation_due_at, Some(200));
    }

    #[test]
    fn a_contract_refuses_like_its_purpose() {
        let mut p = purpose(1, 1, 3600);
        let c = Contract::of(&p);
        assert_eq!(check_contract(&c, None, 100), Ok(()));
        assert_eq!(check_contract(&c, Some(99), 100), Ok(()));
        assert!(matches!(
            check_contract(&c, Some(90), 100),
            Err(Refusal::OutsideGrace { .. })
        ));
        p.revoked = true;
        assert!(matches!(
            check_contract(&Contract::of(&p), None, 100),
            Err(Refusal::Revoked { .. })
        ));
    }

    #[test]
    fn revoked_and_unknown_need_no_time() {
        let mut p = purpose(10, 10, 20);
        assert_eq!(judge(&p, &Observed::default(), 5).status, Status::Unknown);
        p.revoked = true;
        assert_eq!(judge(&p, &at(0), 5).status, Status::Revoked);
        assert!(matches!(
            check_renewal(&p, Some(0), None, None, 1),
            Err(Refusal::Revoked { .. })
        ));
    }

    #[test]
    fn renewal_is_refused_outside_the_grace_window_and_by_a_short_issuer() {
        let p = purpose(100, 50, 1000);
        assert_eq!(check_renewal(&p, Some(0), None, None, 149), Ok(()));
        let e = check_renewal(&p, Some(0), None, None, 150).expect_err("outside grace");
        assert!(e.to_string().contains("outside the grace window"), "{e}");
        assert_eq!(check_renewal(&p, None, Some(1000), Some(900), 0), Ok(()));
        let e = check_renewal(&p, None, Some(1000), Some(900), 200).expect_err("issuer");
        assert!(matches!(e, Refusal::IssuerTooShort { .. }), "{e}");
    }

    /// One app in one environment with a 30-day domain certificate; `purpose` is appended.
    fn domain_spec(purpose: &str) -> Spec {
        let text = format!(
            r#"version = 1
[environments.test]
domain = "t.internal"
[apps.shop]
environments = ["test"]
[domains."shop.example.com"]
environments = ["test"]
app = "shop"
ttl = "30d"
renew_before = "10d"
{purpose}"#
        );
        crate::parse(&text, "w.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    const DOMAIN_PURPOSE: &str = r#"
[purposes.domain-tls]
description = "d"
owner = "o"
tier = "ephemeral"
delivery = "agent_file"
rotation = { interval = "60d", grace = "10d", max_age = "90d" }
evidence = "E"
covers = ["domain/*", "shop/*"]
"#;

    const DAY: i64 = 86_400;

    #[test]
    fn a_domain_certificate_is_renewed_only_inside_its_purposes_window() {
        let spec = domain_spec(DOMAIN_PURPOSE);
        let d = &spec.domains[0];
        assert_eq!(domain_credential(d), "domain/shop-example-com");
        let now = 1_000 * DAY;
        // First issuance, and a renewal inside interval + grace (70 days): allowed.
        let p = check_domain_renewal(&spec, d, None, None, now).expect("first issuance");
        assert_eq!(p.id.as_str(), "domain-tls");
        assert!(check_domain_renewal(&spec, d, Some(now - 69 * DAY), None, now).is_ok());
        // Left unrotated past the window: refused, fail closed.
        let e = check_domain_renewal(&spec, d, Some(now - 70 * DAY), None, now)
            .expect_err("outside grace");
        assert!(
            matches!(&e, Refusal::OutsideGrace { purpose, .. } if purpose == "domain-tls"),
            "{e}"
        );
        // An issuer with less life left than the 30-day leaf: refused, even on first issuance.
        let e = check_domain_renewal(&spec, d, None, Some(now + 29 * DAY), now)
            .expect_err("short issuer");
        assert!(matches!(e, Refusal::IssuerTooShort { .. }), "{e}");
        assert!(check_domain_renewal(&spec, d, None, Some(now + 30 * DAY), now).is_ok());
    }

    #[test]
    fn a_domain_certificate_without_a_live_purpose_is_refused_before_any_time_rule() {
        let spec = domain_spec(&format!("{DOMAIN_PURPOSE}revoked = true\n"));
        let d = &spec.domains[0];
        let e = domain_purpose(&spec, d).expect_err("revoked");
        assert_eq!(
            e,
            Refusal::Revoked {
                purpose: "domain-tls".into()
            }
        );
        assert!(check_domain_renewal(&spec, d, None, None, 0).is_err());

        let spec = domain_spec(&DOMAIN_PURPOSE.replace("\"domain/*\", ", ""));
        let e =
            check_domain_renewal(&spec, &spec.domains[0], None, None, 0).expect_err("ungoverned");
        assert_eq!(
            e,
            Refusal::Ungoverned {
                credential: "domain/shop-example-com".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "`domain/shop-example-com` is governed by no purpose"
        );
    }

    #[test]
    fn severity_order_is_the_declared_order() {
        let mut v = Status::ALL.to_vec();
        v.reverse();
        v.sort();
        assert_eq!(v, Status::ALL.to_vec());
        assert_eq!(Status::parse("stale"), Some(Status::Stale));
    }
}
