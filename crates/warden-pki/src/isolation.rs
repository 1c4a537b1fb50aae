//! Environment isolation in the chain (ADR 0013): does one environment's PKI intermediate let
//! it issue names that another environment's trust accepts?
//!
//! Every environment's intermediate chains to the same offline root, and relying parties
//! (proxies, agents, OpenBao's cert auth) anchor at that root. What keeps `test` from issuing
//! `billing.prod.warden.internal` is therefore the test intermediate's name constraints alone:
//! an intermediate without them, or with a subtree that reaches into another environment's
//! names, breaks the boundary. This module judges that from the intermediates' permitted DNS
//! subtrees and the names each environment legitimately issues; it reads nothing itself, so
//! `warden ca verify`, `lint` and `posture` share one verdict.
//!
//! Subtrees follow RFC 5280 DNS constraints as webpki and OpenSSL apply them: `example.com`
//! covers itself and every name below it; a leading `.` (subdomains only) is compared as if it
//! were absent, which can only over-report.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::error::Result;
use crate::inspect::CertInfo;
use crate::root::CaDir;

/// The PKI intermediates' signing profile: the intermediates whose names must stay apart.
pub const PKI_PROFILE: &str = "vault-pki";

/// The isolation verdict on a bundle's intermediates, from the root's ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BundleIsolation {
    /// How many of the bundle's CA certificates the ledger knows (and so were judged).
    pub judged: usize,
    /// What breaks the boundary (or, non-blocking, names shared on purpose).
    pub findings: Vec<IsolationFinding>,
    /// Intermediates of the bundle signed without constraints with a reason on record.
    pub accepted: Vec<AcceptedUnconstrained>,
}

impl BundleIsolation {
    /// Whether any finding breaks the boundary.
    pub fn blocking(&self) -> bool {
        self.findings.iter().any(IsolationFinding::blocking)
    }
}

/// An unconstrained intermediate whose signature recorded why (`--unconstrained-because`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcceptedUnconstrained {
    /// Its environment.
    pub env: String,
    /// Its profile (`vault-pki`, `listener-ca`).
    pub profile: String,
    /// The reason recorded in the ledger.
    pub reason: String,
}

impl CaDir {
    /// Judges the intermediates in `certs` (a checked bundle) against every other environment
    /// this root signs for, offline: each environment's names are taken to be its latest PKI
    /// intermediate's permitted subtrees, as the ledger records them. Certificates the ledger
    /// does not know are skipped (chain verification judges their signature).
    pub fn isolation_of(&self, certs: &[CertInfo]) -> Result<BundleIsolation> {
        let ledger = self.ledger()?;
        // The latest PKI intermediate per environment.
        let mut latest: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for e in ledger.iter().filter(|e| e.profile == PKI_PROFILE) {
            latest.insert(e.environment.clone(), e.permitted_dns.clone());
        }
        let signed_for = self.environments_with("")?;
        let mut out = BundleIsolation::default();
        for cert in certs.iter().filter(|c| c.is_ca && !c.self_signed) {
            let Some(entry) = ledger.iter().find(|e| e.sha256 == cert.sha256) else {
                continue;
            };
            out.judged += 1;
            let others: Vec<String> = signed_for
                .iter()
                .filter(|e| !e.is_empty() && **e != entry.environment)
                .cloned()
                .collect();
            if let Some(reason) = &entry.unconstrained_because {
                out.accepted.push(AcceptedUnconstrained {
                    env: entry.environment.clone(),
                    profile: entry.profile.clone(),
                    reason: reason.clone(),
                });
                continue;
            }
            if unconstrained(&cert.permitted_dns) {
                if !others.is_empty() {
                    out.findings.push(IsolationFinding::Unconstrained {
                        env: entry.environment.clone(),
                        accepted_by: others,
                    });
                }
                continue;
            }
            let mut envs = vec![EnvChain {
                env: entry.environment.clone(),
                names: cert.permitted_dns.clone(),
                permitted_dns: cert.permitted_dns.clone(),
            }];
            envs.extend(
                latest
                    .iter()
                    .filter(|(env, _)| **env != entry.environment)
                    .map(|(env, permitted)| EnvChain {
                        env: env.clone(),
                        names: permitted.clone(),
                        permitted_dns: permitted.clone(),
                    }),
            );
            out.findings.extend(
                check_isolation(&envs)
                    .into_iter()
                    .filter(|f| f.env() == entry.environment || !f.blocking()),
            );
        }
        Ok(out)
    }
}

impl CaDir {
    /// Whether an intermediate for `env` constrained to `permitted` would reach another
    /// environment's names, judged as [`CaDir::isolation_of`] will judge it once signed: the
    /// other environments' names are their latest PKI intermediates' permitted subtrees. The
    /// first environment reached and its names, if any.
    pub(crate) fn overreach(
        &self,
        env: &str,
        permitted: &[String],
    ) -> Result<Option<(String, Vec<String>)>> {
        let mut latest: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for e in self
            .ledger()?
            .into_iter()
            .filter(|e| e.profile == PKI_PROFILE && e.environment != env)
        {
            latest.insert(e.environment, e.permitted_dns);
        }
        let mut envs = vec![EnvChain {
            env: env.to_owned(),
            names: permitted.to_vec(),
            permitted_dns: permitted.to_vec(),
        }];
        envs.extend(latest.into_iter().map(|(env, permitted)| EnvChain {
            env,
            names: permitted.clone(),
            permitted_dns: permitted,
        }));
        Ok(check_isolation(&envs).into_iter().find_map(|f| match f {
            IsolationFinding::Overreach {
                env: e,
                other,
                names,
            } if e == env => Some((other, names)),
            _ => None,
        }))
    }
}

/// One environment's intermediate, as the isolation check sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvChain {
    /// Environment name.
    pub env: String,
    /// The names the environment legitimately issues (its domain, domain certificates, any
    /// certificate name outside its domain), from the spec (`warden_spec::naming::environment_names`).
    pub names: Vec<String>,
    /// The intermediate's permitted DNS subtrees; empty means unconstrained.
    pub permitted_dns: Vec<String>,
}

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum IsolationFinding {
    /// `env`'s intermediate carries no name constraints: any certificate it issues, for any
    /// name, is accepted by the trust of every environment in `accepted_by`.
    Unconstrained {
        /// The environment whose intermediate is unconstrained.
        env: String,
        /// The other environments under the same root.
        accepted_by: Vec<String>,
    },
    /// `env`'s constraints permit names that belong to `other`.
    Overreach {
        /// The environment whose intermediate permits too much.
        env: String,
        /// The environment whose names it reaches.
        other: String,
        /// `other`'s names that `env` may issue.
        names: Vec<String>,
    },
    /// `env` issues names its own intermediate does not permit: relying parties refuse those
    /// certificates (a spec domain added after the intermediate was signed).
    OwnNamesOutside {
        /// The environment.
        env: String,
        /// Its names outside the constraints.
        names: Vec<String>,
    },
    /// The spec declares `name` in several environments (a domain certificate listed for both):
    /// each may issue it, and each one's trust accepts the other's. Declared, so not blocking.
    SharedName {
        /// The name.
        name: String,
        /// The environments that issue it.
        envs: Vec<String>,
    },
}

impl IsolationFinding {
    /// Whether the finding breaks the boundary: an unconstrained intermediate or one that
    /// reaches another environment's names. A name the spec shares on purpose, or one of the
    /// environment's own names its intermediate does not permit (its certificates fail, nobody
    /// else's are accepted), is reported but does not block.
    pub fn blocking(&self) -> bool {
        matches!(self, Self::Unconstrained { .. } | Self::Overreach { .. })
    }

    /// The environment the finding is about (the first one, for a shared name).
    pub fn env(&self) -> &str {
        match self {
            Self::Unconstrained { env, .. }
            | Self::Overreach { env, .. }
            | Self::OwnNamesOutside { env, .. } => env,
            Self::SharedName { envs, .. } => envs.first().map_or("", String::as_str),
        }
    }
}

impl fmt::Display for IsolationFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unconstrained { env, accepted_by } => write!(
                f,
                "{env}'s PKI intermediate has no name constraints: a certificate it issues for any name (a {} service's included) is accepted by {}'s trust",
                accepted_by.join("/"),
                accepted_by.join(", ")
            ),
            Self::Overreach { env, other, names } => write!(
                f,
                "{env}'s PKI intermediate permits {other}'s names ({}): {env} can issue certificates {other}'s trust accepts",
                names.join(", ")
            ),
            Self::OwnNamesOutside { env, names } => write!(
                f,
                "{env} issues names its PKI intermediate does not permit ({}): relying parties refuse those certificates",
                names.join(", ")
            ),
            Self::SharedName { name, envs } => write!(
                f,
                "{name} is declared in {} alike: each may issue it and each one's trust accepts the other's",
                envs.join(" and ")
            ),
        }
    }
}

/// Judges the environments under one root. Findings come in environment order, shared names
/// last.
pub fn check_isolation(envs: &[EnvChain]) -> Vec<IsolationFinding> {
    let mut out = Vec::new();
    for a in envs {
        let others: Vec<&EnvChain> = envs.iter().filter(|b| b.env != a.env).collect();
        if unconstrained(&a.permitted_dns) {
            if !others.is_empty() {
                out.push(IsolationFinding::Unconstrained {
                    env: a.env.clone(),
                    accepted_by: others.iter().map(|b| b.env.clone()).collect(),
                });
            }
            continue;
        }
        let outside: Vec<String> = a
            .names
            .iter()
            .filter(|n| !a.permitted_dns.iter().any(|c| within(n, c)))
            .cloned()
            .collect();
        if !outside.is_empty() {
            out.push(IsolationFinding::OwnNamesOutside {
                env: a.env.clone(),
                names: outside,
            });
        }
        for b in others {
            let reached: Vec<String> = b
                .names
                .iter()
                // A name both declare is reported once, as shared, not as an overreach.
                .filter(|n| !a.names.iter().any(|m| same(m, n)))
                .filter(|n| a.permitted_dns.iter().any(|c| overlap(n, c)))
                .cloned()
                .collect();
            if !reached.is_empty() {
                out.push(IsolationFinding::Overreach {
                    env: a.env.clone(),
                    other: b.env.clone(),
                    names: reached,
                });
            }
        }
    }
    let mut shared: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in envs {
        for n in &e.names {
            shared
                .entry(norm(n).to_owned())
                .or_default()
                .push(e.env.clone());
        }
    }
    for (name, mut who) in shared {
        who.dedup();
        if who.len() > 1 {
            out.push(IsolationFinding::SharedName { name, envs: who });
        }
    }
    out
}

/// Whether permitted subtrees `permitted` constrain nothing: none at all, or one that is empty
/// once its dots go (`""`, `.`), which Go (OpenBao's cert auth) and NSS match against every
/// name. An intermediate signed elsewhere, or by hand, can carry one; `sign-intermediate`
/// refuses to write it.
fn unconstrained(permitted: &[String]) -> bool {
    permitted.is_empty() || permitted.iter().any(|c| norm(c).is_empty())
}

fn norm(n: &str) -> &str {
    n.trim_start_matches('.').trim_end_matches('.')
}

fn same(a: &str, b: &str) -> bool {
    norm(a).eq_ignore_ascii_case(norm(b))
}

/// Whether `name` (or anything below it) lies inside subtree `c`.
fn within(name: &str, c: &str) -> bool {
    let (n, c) = (
        norm(name).to_ascii_lowercase(),
        norm(c).to_ascii_lowercase(),
    );
    n == c || n.ends_with(&format!(".{c}"))
}

/// Whether subtree `c` and the names under `name` meet: one lies inside the other.
fn overlap(name: &str, c: &str) -> bool {
    within(name, c) || within(c, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str, names: &[&str], permitted: &[&str]) -> EnvChain {
        EnvChain {
            env: name.to_owned(),
            names: names.iter().map(|s| (*s).to_owned()).collect(),
            permitted_dns: permitted.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn constrained_environments_are_isolated() {
        let f = check_isolation(&[
            env("test", &["test.warden.internal"], &["test.warden.internal"]),
            env("prod", &["prod.warden.internal"], &["prod.warden.internal"]),
        ]);
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn an_unconstrained_intermediate_is_accepted_by_every_other_environment() {
        let f = check_isolation(&[
            env("test", &["test.warden.internal"], &[]),
            env("prod", &["prod.warden.internal"], &["prod.warden.internal"]),
            env("dev", &["dev.warden.internal"], &["dev.warden.internal"]),
        ]);
        assert_eq!(
            f,
            [IsolationFinding::Unconstrained {
                env: "test".into(),
                accepted_by: vec!["prod".into(), "dev".into()]
            }]
        );
        assert!(f[0].blocking());
        assert!(f[0].to_string().contains("no name constraints"), "{}", f[0]);
        // A subtree that is empty once its dots go permits every name to Go and NSS.
        for permitted in [".", "", ".."] {
            let f = check_isolation(&[
                env(
                    "test",
                    &["test.warden.internal"],
                    &["test.warden.internal", permitted],
                ),
                env("prod", &["prod.warden.internal"], &["prod.warden.internal"]),
            ]);
            assert!(
                matches!(&f[..], [IsolationFinding::Unconstrained { env, .. }] if env == "test"),
                "{permitted:?}: {f:?}"
            );
        }
        // Alone under its root, an unconstrained intermediate crosses no boundary.
        assert!(check_isolation(&[env("test", &["t.internal"], &[])]).is_empty());
    }

    #[test]
    fn a_parent_domain_or_a_subtree_of_another_environment_is_an_overreach() {
        let f = check_isolation(&[
            env("test", &["test.warden.internal"], &["warden.internal"]),
            env("prod", &["prod.warden.internal"], &["prod.warden.internal"]),
        ]);
        assert_eq!(
            f,
            [IsolationFinding::Overreach {
                env: "test".into(),
                other: "prod".into(),
                names: vec!["prod.warden.internal".into()]
            }]
        );
        let f = check_isolation(&[
            env(
                "test",
                &["test.warden.internal"],
                &["test.warden.internal", "billing.PROD.warden.internal."],
            ),
            env("prod", &["prod.warden.internal"], &["prod.warden.internal"]),
        ]);
        assert!(
            matches!(&f[..], [IsolationFinding::Overreach { env, .. }] if env == "test"),
            "{f:?}"
        );
        // A sibling that merely ends in the same letters is not below it.
        let f = check_isolation(&[
            env("test", &["xprod.internal"], &["xprod.internal"]),
            env("prod", &["prod.internal"], &["prod.internal"]),
        ]);
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn own_names_outside_the_constraints_and_shared_names_are_reported() {
        let f = check_isolation(&[
            env(
                "test",
                &["test.warden.internal", "shop.example", "new.example"],
                &["test.warden.internal", ".shop.example"],
            ),
            env(
                "prod",
                &["prod.warden.internal", "shop.example"],
                &["prod.warden.internal", "shop.example"],
            ),
        ]);
        assert_eq!(
            f,
            [
                IsolationFinding::OwnNamesOutside {
                    env: "test".into(),
                    names: vec!["new.example".into()]
                },
                IsolationFinding::SharedName {
                    name: "shop.example".into(),
                    envs: vec!["test".into(), "prod".into()]
                },
            ]
        );
        assert!(
            !f[0].blocking(),
            "a misfit of one's own names crosses no boundary"
        );
        assert!(!f[1].blocking());
    }
}
