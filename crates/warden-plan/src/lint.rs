//! Least-privilege lint: checks what each identity's policy grants, in the spec's desired state
//! and in the live server, against the rules of the identity model — an identity reaches only
//! its own paths, proxies never issue, nobody holds `sudo`, nothing is shared.
//!
//! Findings are errors for `apply` unless the spec waives that rule for that identity with a
//! reason.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use serde::Serialize;
use warden_spec::naming::{self, policy::Grant};
use warden_spec::{Environment, Identity, IdentityKind, Spec};

use crate::policy;

/// Rule ids (also the names a waiver uses).
pub mod rules {
    /// A wildcard outside the identity's own prefix.
    pub const WILDCARD: &str = "wildcard-beyond-prefix";
    /// `sudo` capability.
    pub const SUDO: &str = "sudo";
    /// A policy or certificate name used by more than one identity.
    pub const SHARED: &str = "shared-identity";
    /// A proxy that can sign or issue certificates other than its own identity's.
    pub const PROXY_ISSUE: &str = "proxy-can-issue";
    /// An identity that can reach another identity's secrets or roles.
    pub const CROSS_APP: &str = "cross-app-read";
    /// An operator policy that reaches a root-only path (`sys/raw`, `sys/seal`, ...).
    pub const ROOT_ONLY: &str = "operator-root-only-path";
    /// An operator policy wildcard outside Warden's own mounts.
    pub const OPERATOR_WILDCARD: &str = "operator-wildcard-beyond-mounts";
    /// An environment's PKI intermediate that can issue names another environment's trust
    /// accepts (ADR 0013); its `identity` is the PKI mount.
    pub const ENV_ISOLATION: &str = "environment-isolation";
    /// A cert-auth role whose name constraints accept a transport certificate, which must open
    /// nothing (ADR 0010).
    pub const TRANSPORT_LOGIN: &str = "transport-can-log-in";
}

/// What a live cert-auth role accepts, as far as names go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertRoleNames {
    /// `auth/<mount>/certs/<role>`.
    pub path: String,
    /// `allowed_common_names` (globs allowed).
    pub common_names: Vec<String>,
    /// `allowed_dns_sans` (globs allowed).
    pub dns_sans: Vec<String>,
    /// `allowed_organizational_units`.
    pub organizational_units: Vec<String>,
}

impl CertRoleNames {
    /// Whether a certificate named `cn` (also its one DNS SAN) with OU `ou` passes the name
    /// constraints. A role with no name constraint at all accepts every certificate its CA
    /// signed. The pinned CA is not compared: the check errs on the side of a finding.
    pub fn accepts(&self, cn: &str, ou: &str) -> bool {
        if !self.organizational_units.is_empty()
            && !self.organizational_units.iter().any(|u| glob(u, ou))
        {
            return false;
        }
        if self.common_names.is_empty() && self.dns_sans.is_empty() {
            return true;
        }
        self.common_names
            .iter()
            .chain(&self.dns_sans)
            .any(|p| glob(p, cn))
    }
}

/// OpenBao's name globs: `*` matches any run of characters.
fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern.eq_ignore_ascii_case(name);
    }
    let name = name.to_ascii_lowercase();
    let mut rest = name.as_str();
    for (i, part) in parts.iter().enumerate() {
        let part = part.to_ascii_lowercase();
        if i == 0 {
            let Some(r) = rest.strip_prefix(part.as_str()) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part.as_str());
        } else {
            let Some(at) = rest.find(part.as_str()) else {
                return false;
            };
            rest = &rest[at + part.len()..];
        }
    }
    true
}

/// Transport certificates of `env`'s holders that a live cert-auth role would log in: one
/// finding per role and holder. Waivable by the holder's name, like other rules.
pub fn lint_transport_logins(
    spec: &Spec,
    env: &Environment,
    roles: &[CertRoleNames],
) -> Vec<Finding> {
    let mut out = Vec::new();
    for holder in spec.transport_in(env.name.as_str()) {
        let cn = naming::transport_common_name(&holder.name, env);
        for role in roles
            .iter()
            .filter(|r| r.accepts(&cn, naming::TRANSPORT_OU))
        {
            out.push(Finding {
                rule: rules::TRANSPORT_LOGIN,
                env: env.name.to_string(),
                identity: holder.name.to_string(),
                source: "live",
                message: format!(
                    "{} accepts the transport certificate {cn}: a transport certificate must open nothing; pin the role to its identity's exact name",
                    role.path
                ),
                waived: spec
                    .waived(rules::TRANSPORT_LOGIN, holder.name.as_str())
                    .map(|w| w.reason.clone()),
            });
        }
    }
    out
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Rule id.
    pub rule: &'static str,
    /// Environment.
    pub env: String,
    /// The identity whose policy it is.
    pub identity: String,
    /// `desired` (from the spec) or `live` (read from the server).
    pub source: &'static str,
    /// What is wrong.
    pub message: String,
    /// The waiver's reason, when the spec waives it.
    pub waived: Option<String>,
}

impl Finding {
    /// Whether it blocks `apply`.
    pub fn blocking(&self) -> bool {
        self.waived.is_none()
    }
}

/// Lints the grants of every identity of `env`. `grants_of` supplies the grants to check:
/// the rendered ones for the desired state, the parsed live policy for the live state.
pub fn lint(
    spec: &Spec,
    env: &Environment,
    source: &'static str,
    grants_of: &dyn Fn(&Identity) -> Option<Vec<Grant>>,
) -> Vec<Finding> {
    let here: Vec<&Identity> = spec.identities_in(env.name.as_str()).collect();
    let mut out = Vec::new();
    let mut push = |rule: &'static str, id: &Identity, message: String| {
        let waived = spec
            .waived(rule, id.name.as_str())
            .map(|w| w.reason.clone());
        out.push(Finding {
            rule,
            env: env.name.to_string(),
            identity: id.name.to_string(),
            source,
            message,
            waived,
        });
    };

    // Shared identities: one policy name for two identities. By map, not by pairs: 10,000
    // identities would be 5·10⁷ comparisons.
    let mut first_with: HashMap<String, &Identity> = HashMap::new();
    for b in &here {
        let name = naming::policy_name(spec, b);
        match first_with.get(&name) {
            Some(a) => push(
                rules::SHARED,
                b,
                format!("shares policy `{name}` with `{}`", a.name),
            ),
            None => {
                first_with.insert(name, b);
            }
        }
    }

    // Every identity's own prefixes, indexed once (identity index, prefix index): looking up a
    // grant's prefixes replaces comparing each grant with every other identity's prefixes.
    let mut owners: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
    for (oi, o) in here.iter().enumerate() {
        for (pi, prefix) in own_prefixes(spec, env, o).into_iter().enumerate() {
            owners.entry(prefix).or_default().push((oi, pi));
        }
    }
    // The same index by exact prefix, and the lengths the prefixes have: a grant's path is
    // looked up only at those lengths, by hash. Looking it up in the ordered map at every
    // character was 57 million string comparisons at 10,000 identities (a tenth of a no-op
    // apply's client time); the ordered map stays for the wildcards' range.
    let exact: HashMap<&str, &[(usize, usize)]> = owners
        .iter()
        .map(|(p, v)| (p.as_str(), v.as_slice()))
        .collect();
    let lengths: BTreeSet<usize> = owners.keys().map(String::len).collect();

    for id in &here {
        let Some(grants) = grants_of(id) else {
            continue;
        };
        let own = own_prefixes(spec, env, id);
        for g in &grants {
            if g.capabilities.iter().any(|c| c == "sudo") {
                push(rules::SUDO, id, format!("`sudo` on `{}`", g.path));
            }
            if let Some(star) = g.path.find(['*', '+']) {
                let literal = &g.path[..star];
                if !own
                    .iter()
                    .any(|p| p.ends_with('/') && literal.starts_with(p.as_str()))
                {
                    push(
                        rules::WILDCARD,
                        id,
                        format!("wildcard `{}` reaches beyond its own prefix", g.path),
                    );
                }
            }
            if id.kind == IdentityKind::Proxy
                && is_issuing(env, &g.path)
                && !own_identity_role(spec, env, id, &g.path)
            {
                push(
                    rules::PROXY_ISSUE,
                    id,
                    format!("a proxy may not issue certificates (`{}`)", g.path),
                );
            }
            let star = g.path.find(['*', '+']);
            let literal = star.map_or(g.path.as_str(), |i| &g.path[..i]);
            // Another identity's prefix the grant reaches: one its path starts with, or (a
            // wildcard) one that starts with the grant's literal part. The first in identity
            // and prefix order is named, as a walk over every identity would.
            let mut reached: Vec<(usize, usize)> = lengths
                .range(..=g.path.len())
                .filter_map(|&k| g.path.get(..k))
                .filter_map(|p| exact.get(p))
                .flat_map(|v| v.iter().copied())
                .collect();
            if star.is_some() {
                reached.extend(
                    owners
                        .range::<str, _>((Bound::Included(literal), Bound::Unbounded))
                        .take_while(|(p, _)| p.starts_with(literal))
                        .flat_map(|(_, v)| v.iter().copied()),
                );
            }
            let first = reached
                .into_iter()
                .filter(|(oi, _)| {
                    let o = here[*oi];
                    o.name != id.name && !is_own_app(id, o) && !is_own_app(o, id)
                })
                .min();
            if let Some((oi, pi)) = first {
                let other = here[oi];
                let prefix = &own_prefixes(spec, env, other)[pi];
                push(
                    rules::CROSS_APP,
                    id,
                    format!("`{}` reaches `{}`'s path `{prefix}`", g.path, other.name),
                );
            }
        }
    }
    out
}

/// Lints the desired state of `env` (policies exactly as apply would write them).
pub fn lint_desired(spec: &Spec, env: &Environment) -> Vec<Finding> {
    let mut out = lint(spec, env, "desired", &|id| {
        Some(policy::grants(spec, env, id))
    });
    let operator = crate::operator::grants(spec, env);
    out.extend(crate::operator::lint_operator(
        spec, env, "desired", &operator,
    ));
    let serve = crate::serve::grants(spec, env);
    out.extend(crate::serve::lint_serve(spec, env, "desired", &serve));
    out
}

/// A pipeline acts for its app: the app's prefix is its own.
fn is_own_app(id: &Identity, other: &Identity) -> bool {
    id.pipeline.as_ref().is_some_and(|p| p.app == other.name)
}

/// Paths (prefixes) that belong to `id` alone.
fn own_prefixes(spec: &Spec, env: &Environment, id: &Identity) -> Vec<String> {
    let m = &env.mounts;
    let n = &spec.naming;
    let name = match &id.pipeline {
        Some(p) => &p.app,
        None => &id.name,
    };
    let prefix = naming::kv_prefix(n, name);
    let mut own = vec![
        format!("{}/data/{prefix}/", m.kv),
        format!("{}/metadata/{prefix}/", m.kv),
        format!("{}/{prefix}/", m.kv_v1),
    ];
    // A pipeline writes its app's config but issues nothing; its PKI roles are not its own.
    if id.pipeline.is_none() {
        own.push(format!("{}/sign/{}", m.pki, n.pki_role.render(name)));
        own.push(format!("{}/sign/{}", m.pki, n.identity_role.render(name)));
        own.push(format!("{}/issue/{}", m.pki, n.pki_role.render(name)));
    }
    own
}

fn is_issuing(env: &Environment, path: &str) -> bool {
    let p = &env.mounts.pki;
    [
        "sign",
        "issue",
        "sign-verbatim",
        "root/sign-intermediate",
        "issuer",
    ]
    .iter()
    .any(|op| path.starts_with(&format!("{p}/{op}")))
        || path == format!("{p}/*")
        || path.starts_with(&format!("{p}/+"))
}

fn own_identity_role(spec: &Spec, env: &Environment, id: &Identity, path: &str) -> bool {
    path == format!(
        "{}/sign/{}",
        env.mounts.pki,
        spec.naming.identity_role.render(&id.name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"version = 1
[environments.test]
domain = "t.internal"
[apps.a]
environments = ["test"]
secrets = ["config"]
[apps.b]
environments = ["test"]
secrets = ["config"]
[proxies.p]
environments = ["test"]
[[waivers]]
rule = "sudo"
identity = "b"
reason = "b rotates its own transit key and needs sudo for it"
"#;

    fn g(path: &str, caps: &[&str]) -> Grant {
        Grant {
            path: path.to_owned(),
            capabilities: caps.iter().map(|c| (*c).to_owned()).collect(),
            allowed_parameters: Vec::new(),
        }
    }

    #[test]
    fn transport_names_against_cert_role_constraints() {
        let role = |cns: &[&str], dns: &[&str], ous: &[&str]| CertRoleNames {
            path: "auth/cert/certs/x".into(),
            common_names: cns.iter().map(|s| (*s).to_owned()).collect(),
            dns_sans: dns.iter().map(|s| (*s).to_owned()).collect(),
            organizational_units: ous.iter().map(|s| (*s).to_owned()).collect(),
        };
        let cn = "ci-runner.transport.test.warden.internal";
        let ou = naming::TRANSPORT_OU;
        assert!(!role(&["billing.identity.test.warden.internal"], &[], &[]).accepts(cn, ou));
        assert!(
            role(&[], &[], &[]).accepts(cn, ou),
            "no constraint accepts all"
        );
        assert!(role(&["*.test.warden.internal"], &[], &[]).accepts(cn, ou));
        assert!(role(&["*.transport.*"], &[], &[]).accepts(cn, ou));
        assert!(!role(&["*.identity.*"], &[], &[]).accepts(cn, ou));
        assert!(role(&["x"], &["ci-runner.*"], &[]).accepts(cn, ou));
        assert!(
            !role(&[], &[], &["platform"]).accepts(cn, ou),
            "OU pinned elsewhere"
        );
    }

    #[test]
    fn desired_state_of_a_clean_spec_has_no_findings() {
        let spec = warden_spec::parse(SPEC, "t").unwrap();
        let env = spec.environment("test").unwrap();
        assert_eq!(lint_desired(&spec, env), []);
    }

    #[test]
    fn broad_live_policies_are_found() {
        let spec = warden_spec::parse(SPEC, "t").unwrap();
        let env = spec.environment("test").unwrap();
        let findings = lint(&spec, env, "live", &|id| {
            Some(match id.name.as_str() {
                "a" => vec![
                    g("kvv2/data/*", &["read"]),
                    g("kvv2/data/b/config", &["read"]),
                ],
                "b" => vec![g("sys/rotate", &["sudo"]), g("kvv2/data/b/*", &["read"])],
                _ => vec![
                    g("pki_int/sign/a", &["update"]),
                    g("pki_int/sign/p-identity", &["update"]),
                ],
            })
        });
        let got: Vec<(&str, &str, bool)> = findings
            .iter()
            .map(|f| (f.identity.as_str(), f.rule, f.blocking()))
            .collect();
        assert!(got.contains(&("a", rules::WILDCARD, true)), "{got:?}");
        assert!(got.contains(&("a", rules::CROSS_APP, true)), "{got:?}");
        assert!(got.contains(&("b", rules::SUDO, false)), "waived: {got:?}");
        assert!(got.contains(&("p", rules::PROXY_ISSUE, true)), "{got:?}");
        assert!(
            !got.iter()
                .any(|(id, r, _)| *id == "b" && *r == rules::WILDCARD),
            "own-prefix wildcard is fine: {got:?}"
        );
        assert!(
            !got.iter().any(|(id, _, _)| *id == "p"
                && findings.iter().any(|f| f.message.contains("p-identity"))),
            "{got:?}"
        );
        // Each reaching grant is reported once, naming the first identity (spec order) and
        // its first prefix it reaches: `kvv2/data/*` reaches b's data prefix; the exact path
        // starts with it too.
        let cross: Vec<&str> = findings
            .iter()
            .filter(|f| f.identity == "a" && f.rule == rules::CROSS_APP)
            .map(|f| f.message.as_str())
            .collect();
        assert_eq!(
            cross,
            [
                "`kvv2/data/*` reaches `b`'s path `kvv2/data/b/`",
                "`kvv2/data/b/config` reaches `b`'s path `kvv2/data/b/`",
            ]
        );
    }
}
