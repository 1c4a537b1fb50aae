//! Who can reach a credential: the API paths that read, write, issue, mint or use it, matched
//! against the ACL policies live on the server. Pure, so the matching rules are unit-tested.
//!
//! Matching follows OpenBao's ACL semantics: `+` stands for one path segment, a trailing `*`
//! for any suffix, and when several paths of one policy match, the most specific one decides
//! (the documented priority: first wildcard later, no trailing `*`, fewer `+`, longer, then
//! lexically greater). A decisive `deny` grants nothing. Root tokens bypass policies and so
//! never appear here; the packet says so.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use warden_spec::naming::{self, Location, policy::Grant};
use warden_spec::{Credential, CredentialKind, Environment, Spec};

/// One way to reach a credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessPath {
    /// The API path.
    pub path: String,
    /// `read`, `write`, `issue`, `mint` or `use`.
    pub how: &'static str,
    /// Any one of these capabilities on `path` is enough.
    pub capabilities: &'static [&'static str],
}

const READ: &[&str] = &["read"];
const WRITE: &[&str] = &["create", "update"];

fn access(path: String, how: &'static str, capabilities: &'static [&'static str]) -> AccessPath {
    AccessPath {
        path,
        how,
        capabilities,
    }
}

/// The paths through which `cred` can be obtained or used in `env`. A CI token is obtained by
/// logging in with the pipeline's own OIDC token, which no policy grants: it has none.
pub fn access_paths(spec: &Spec, env: &Environment, cred: &Credential) -> Vec<AccessPath> {
    let pki = |mount: &str, role: &str| {
        vec![
            access(format!("{mount}/sign/{role}"), "issue", WRITE),
            access(format!("{mount}/issue/{role}"), "issue", WRITE),
        ]
    };
    let Some(location) = naming::location(spec, env, cred) else {
        return Vec::new();
    };
    let mut out = match location {
        Location::Kv(entry) => vec![
            access(entry.data_path(), "read", READ),
            access(entry.data_path(), "write", WRITE),
        ],
        Location::PkiRole { mount, role } => pki(&mount, &role),
        Location::DatabaseRole { mount, role } => {
            vec![access(format!("{mount}/creds/{role}"), "read", READ)]
        }
        Location::AppRole { mount, role } => vec![access(
            format!("auth/{mount}/role/{role}/secret-id"),
            "mint",
            WRITE,
        )],
        Location::JwtRole { .. } => Vec::new(),
        Location::TransitKey { mount, key } => ["encrypt", "decrypt", "sign", "verify", "rewrap"]
            .into_iter()
            .map(|op| access(format!("{mount}/{op}/{key}"), "use", WRITE))
            .collect(),
    };
    // A domain certificate lives in KV but is issued by its own PKI role.
    if let CredentialKind::DomainCert(slug) = &cred.kind
        && let Some(d) = spec.domains.iter().find(|d| d.slug.as_str() == slug)
    {
        out.extend(pki(&env.mounts.pki, &d.pki_role()));
    }
    out
}

/// Whether the ACL path `pattern` covers `path`. Called for every grant of every candidate
/// policy of every credential (millions of times at 10,000 identities), so it allocates
/// nothing and rejects on the pattern's literal start first.
pub fn grant_matches(pattern: &str, path: &str) -> bool {
    let literal = &pattern[..pattern.find(['+', '*']).unwrap_or(pattern.len())];
    if !path.starts_with(literal) {
        return false;
    }
    let Some(prefix) = pattern.strip_suffix('*') else {
        // Segment by segment, `+` standing for any one segment; same number of segments.
        let (mut pats, mut segs) = (pattern.split('/'), path.split('/'));
        loop {
            match (pats.next(), segs.next()) {
                (None, None) => return true,
                (Some(p), Some(s)) if p == "+" || p == s => {}
                _ => return false,
            }
        }
    };
    // Every segment of `prefix` but the last is a whole segment of `path` (or `+`); the last
    // is the start of the rest of `path`, whatever it holds (`+`: anything).
    let mut pats = prefix.split('/');
    let mut last = pats.next().unwrap_or_default();
    let mut rest = path;
    for next in pats {
        let Some((seg, tail)) = rest.split_once('/') else {
            return false;
        };
        if last != "+" && last != seg {
            return false;
        }
        rest = tail;
        last = next;
    }
    last == "+" || rest.starts_with(last)
}

/// OpenBao's priority of a matching path: the greatest key wins.
fn priority(pattern: &str) -> (usize, bool, isize, usize, &str) {
    let first_wild = pattern.find(['+', '*']).unwrap_or(usize::MAX);
    let plus = pattern.split('/').filter(|s| *s == "+").count();
    (
        first_wild,
        !pattern.ends_with('*'),
        -isize::try_from(plus).unwrap_or(isize::MAX),
        pattern.len(),
        pattern,
    )
}

/// The grant of one policy that decides access to `path`, if any matches.
pub fn deciding_grant<'g>(grants: &'g [Grant], path: &str) -> Option<&'g Grant> {
    grants
        .iter()
        .filter(|g| grant_matches(&g.path, path))
        .max_by(|a, b| priority(&a.path).cmp(&priority(&b.path)))
}

/// One access a policy gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reach {
    /// The credential's API path.
    pub path: String,
    /// `read`, `write`, `issue`, `mint` or `use`.
    pub how: &'static str,
    /// The policy path that decides it.
    pub grant: String,
    /// Its capabilities.
    pub capabilities: Vec<String>,
}

/// A policy that reaches a credential, with the identities that log in with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reader {
    /// Policy name.
    pub policy: String,
    /// Identities of the spec whose tokens carry it (empty: not an identity's policy).
    pub identities: Vec<String>,
    /// What it can do.
    pub reaches: Vec<Reach>,
}

/// Which policies could reach a path at all, found without matching every policy: a grant
/// can only match paths that start with its literal prefix (the pattern up to its first `+`
/// or `*`), so the candidates for a path are the policies with a grant whose literal prefix
/// is one of the path's prefixes. With 10,000 identities (10,000 policies) and 30,000
/// credentials this turns 3·10⁸ pattern matches into a few dozen map lookups per path.
pub struct GrantIndex<'p> {
    by_prefix: std::collections::HashMap<&'p str, BTreeSet<&'p str>>,
    /// The lengths of the literal prefixes indexed: a path's prefixes of other lengths cannot
    /// be keys, so they are never looked up.
    lengths: Vec<usize>,
}

impl<'p> GrantIndex<'p> {
    /// Indexes `policies` (name → grants).
    pub fn new(policies: &'p BTreeMap<String, Vec<Grant>>) -> Self {
        let mut by_prefix: std::collections::HashMap<&'p str, BTreeSet<&'p str>> =
            std::collections::HashMap::new();
        for (name, grants) in policies {
            for g in grants {
                let literal = &g.path[..g.path.find(['+', '*']).unwrap_or(g.path.len())];
                by_prefix.entry(literal).or_default().insert(name.as_str());
            }
        }
        let mut lengths: Vec<usize> = by_prefix.keys().map(|k| k.len()).collect();
        lengths.sort_unstable();
        lengths.dedup();
        Self { by_prefix, lengths }
    }

    /// Policies with a grant that may match one of `paths`, by name.
    fn candidates(&self, paths: &[AccessPath]) -> BTreeSet<&'p str> {
        let mut out = BTreeSet::new();
        for a in paths {
            for &k in self.lengths.iter().take_while(|&&k| k <= a.path.len()) {
                if let Some(names) = a.path.get(..k).and_then(|p| self.by_prefix.get(p)) {
                    out.extend(names.iter().copied());
                }
            }
        }
        out
    }
}

/// Which of `policies` (name → grants) reach any of `paths`; `holders` maps a policy to the
/// identities that carry it. Sorted by policy name.
pub fn readers(
    paths: &[AccessPath],
    policies: &BTreeMap<String, Vec<Grant>>,
    holders: &BTreeMap<String, Vec<String>>,
) -> Vec<Reader> {
    readers_indexed(paths, policies, &GrantIndex::new(policies), holders)
}

/// [`readers`], with the candidates taken from `index` (built once over `policies`).
pub fn readers_indexed(
    paths: &[AccessPath],
    policies: &BTreeMap<String, Vec<Grant>>,
    index: &GrantIndex<'_>,
    holders: &BTreeMap<String, Vec<String>>,
) -> Vec<Reader> {
    let mut out = Vec::new();
    for name in index.candidates(paths) {
        let Some(grants) = policies.get(name) else {
            continue;
        };
        let reaches: Vec<Reach> = paths
            .iter()
            .filter_map(|a| {
                let g = deciding_grant(grants, &a.path)?;
                let has = |c: &str| g.capabilities.iter().any(|x| x == c);
                if has("deny") || !a.capabilities.iter().any(|c| has(c)) {
                    return None;
                }
                Some(Reach {
                    path: a.path.clone(),
                    how: a.how,
                    grant: g.path.clone(),
                    capabilities: g.capabilities.clone(),
                })
            })
            .collect();
        if !reaches.is_empty() {
            out.push(Reader {
                policy: name.to_owned(),
                identities: holders.get(name).cloned().unwrap_or_default(),
                reaches,
            });
        }
    }
    out
}

/// Policy name → identities of `spec` in `env` that log in with it.
pub fn policy_holders(spec: &Spec, env: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for id in spec.identities_in(env) {
        out.entry(naming::policy_name(spec, id))
            .or_default()
            .push(id.name.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(hcl: &str) -> Vec<Grant> {
        naming::policy::parse(hcl).expect("policy")
    }

    /// OpenBao's matching written the plain way (segments collected, then compared): the
    /// oracle for the allocation-free [`grant_matches`].
    fn plain_matches(pattern: &str, path: &str) -> bool {
        let segs: Vec<&str> = path.split('/').collect();
        let Some(prefix) = pattern.strip_suffix('*') else {
            let pats: Vec<&str> = pattern.split('/').collect();
            return pats.len() == segs.len()
                && pats.iter().zip(&segs).all(|(p, s)| *p == "+" || p == s);
        };
        let pats: Vec<&str> = prefix.split('/').collect();
        let (last, whole) = pats.split_last().expect("one item at least");
        segs.len() >= pats.len()
            && whole.iter().zip(&segs).all(|(p, s)| *p == "+" || p == s)
            && (*last == "+" || segs[whole.len()..].join("/").starts_with(last))
    }

    #[test]
    fn grant_matching_agrees_with_the_plain_form() {
        let patterns = [
            "*",
            "kv/*",
            "kv/data/*",
            "kv/data/app-*",
            "kv/data/+/config",
            "kv/data/+",
            "kv/+/app/*",
            "kv/data/app",
            "kv/data/app/",
            "+/data/*",
            "kv/data/+*",
            "kv/",
            "kv",
            "+",
            "+/+",
            "kv/data/app/config/*",
            "kv/data/ap*",
            "",
        ];
        let paths = [
            "kv/data/app/config",
            "kv/data/app",
            "kv/data/app-1/config",
            "kv/data/",
            "kv",
            "kv/",
            "kv/metadata/app/config",
            "other/data/app",
            "kv/data/app/config/x",
            "",
            "kv/data/apple",
            "kv//app",
        ];
        for pattern in patterns {
            for path in paths {
                assert_eq!(
                    grant_matches(pattern, path),
                    plain_matches(pattern, path),
                    "pattern {pattern:?}, path {path:?}"
                );
            }
        }
        assert!(grant_matches("kv/data/+/config", "kv/data/app/config"));
        assert!(!grant_matches("kv/data/+/config", "kv/data/app/other"));
        assert!(grant_matches("kv/data/app-*", "kv/data/app-1/config"));
    }

    #[test]
    fn exact_glob_and_segment_wildcards_match_like_openbao() {
        let p = "kvv2/data/billing/config";
        assert!(grant_matches("kvv2/data/billing/config", p));
        assert!(grant_matches("kvv2/data/billing/*", p));
        assert!(grant_matches("kvv2/data/bill*", p));
        assert!(grant_matches("kvv2/*", p));
        assert!(grant_matches("kvv2/data/+/config", p));
        assert!(grant_matches("+/data/+/*", p));
        assert!(!grant_matches("kvv2/data/billing", p));
        assert!(!grant_matches("kvv2/data/billing/config/x", p));
        assert!(!grant_matches("kvv2/data/+/stripe", p));
        assert!(!grant_matches("kvv2/data/ledger/*", p));
        // A glob needs something after its prefix's last full segment.
        assert!(!grant_matches("kvv2/data/billing/config/*", p));
    }

    #[test]
    fn the_most_specific_path_of_a_policy_decides_and_deny_wins_there() {
        let g = grants(
            r#"
path "kvv2/data/billing/*" { capabilities = ["read"] }
path "kvv2/data/billing/config" { capabilities = ["deny"] }
path "kvv2/data/+/stripe" { capabilities = ["read"] }
"#,
        );
        assert_eq!(
            deciding_grant(&g, "kvv2/data/billing/config").map(|g| g.path.as_str()),
            Some("kvv2/data/billing/config")
        );
        // `billing/*` (wildcard at 18) outranks `+/stripe` (wildcard at 10).
        assert_eq!(
            deciding_grant(&g, "kvv2/data/billing/stripe").map(|g| g.path.as_str()),
            Some("kvv2/data/billing/*")
        );
        let paths = [access("kvv2/data/billing/config".into(), "read", READ)];
        let pol = BTreeMap::from([("p".to_owned(), g)]);
        assert!(readers(&paths, &pol, &BTreeMap::new()).is_empty());
    }

    #[test]
    fn readers_name_policies_identities_and_what_they_can_do() {
        let policies = BTreeMap::from([
            (
                "billing".to_owned(),
                grants(r#"path "kvv2/data/billing/config" { capabilities = ["read"] }"#),
            ),
            (
                "billing-ops".to_owned(),
                grants(
                    r#"path "kvv2/data/billing/config" { capabilities = ["create", "update", "read"] }"#,
                ),
            ),
            (
                "lister".to_owned(),
                grants(r#"path "kvv2/data/*" { capabilities = ["list"] }"#),
            ),
            (
                "admin".to_owned(),
                grants(r#"path "kvv2/*" { capabilities = ["read"] }"#),
            ),
        ]);
        let holders = BTreeMap::from([
            ("billing".to_owned(), vec!["billing".to_owned()]),
            ("billing-ops".to_owned(), vec!["billing-ci".to_owned()]),
        ]);
        let paths = [
            access("kvv2/data/billing/config".into(), "read", READ),
            access("kvv2/data/billing/config".into(), "write", WRITE),
        ];
        let r = readers(&paths, &policies, &holders);
        let names: Vec<&str> = r.iter().map(|r| r.policy.as_str()).collect();
        assert_eq!(names, ["admin", "billing", "billing-ops"]);
        assert!(r[0].identities.is_empty());
        assert_eq!(r[0].reaches[0].grant, "kvv2/*");
        assert_eq!(r[1].identities, ["billing"]);
        assert_eq!(r[1].reaches.len(), 1);
        assert_eq!(r[1].reaches[0].how, "read");
        let ops: Vec<&str> = r[2].reaches.iter().map(|x| x.how).collect();
        assert_eq!(ops, ["read", "write"]);
    }

    #[test]
    fn the_index_finds_exactly_the_policies_brute_force_finds() {
        let policies: BTreeMap<String, Vec<Grant>> = [
            (
                "exact",
                r#"path "kvv2/data/billing/config" { capabilities = ["read"] }"#,
            ),
            (
                "glob",
                r#"path "kvv2/data/bill*" { capabilities = ["read"] }"#,
            ),
            (
                "plus-first",
                r#"path "+/data/+/config" { capabilities = ["read"] }"#,
            ),
            ("everything", r#"path "*" { capabilities = ["read"] }"#),
            (
                "other",
                r#"path "kvv2/data/ledger/config" { capabilities = ["read"] }"#,
            ),
            (
                "pki",
                r#"path "pki_int/sign/billing" { capabilities = ["update"] }"#,
            ),
        ]
        .into_iter()
        .map(|(n, h)| (n.to_owned(), grants(h)))
        .collect();
        let paths = [
            access("kvv2/data/billing/config".into(), "read", READ),
            access("pki_int/sign/billing".into(), "issue", WRITE),
        ];
        let brute: Vec<String> = policies
            .iter()
            .filter(|(_, g)| {
                paths.iter().any(|a| {
                    deciding_grant(g, &a.path).is_some_and(|d| {
                        a.capabilities
                            .iter()
                            .any(|c| d.capabilities.iter().any(|x| x == c))
                    })
                })
            })
            .map(|(n, _)| n.clone())
            .collect();
        let found: Vec<String> = readers(&paths, &policies, &BTreeMap::new())
            .into_iter()
            .map(|r| r.policy)
            .collect();
        assert_eq!(found, brute);
        assert_eq!(found, ["everything", "exact", "glob", "pki", "plus-first"]);
    }

    #[test]
    fn every_credential_kind_has_its_paths() {
        let spec = warden_spec::parse(
            r#"
version = 1
[environments.test]
domain = "t.example"
runtime_owner = "w"
app_root = "/srv"
[apps.billing]
environments = ["test"]
secrets = ["config"]
transit_keys = [{ name = "payments", type = "aes256-gcm96" }]
[containers.worker]
environments = ["test"]
"#,
            "t.toml",
        )
        .expect("spec");
        let env = spec.environment("test").expect("env");
        let by_id = |id: &str| {
            let c = spec
                .credentials()
                .into_iter()
                .find(|c| c.id == id)
                .expect("credential");
            access_paths(&spec, env, &c)
        };
        let secret = by_id("billing/secret/config");
        assert_eq!(secret[0].path, "kvv2/data/billing/config");
        assert_eq!(
            by_id("worker/secret-id")[0].path,
            "auth/approle/role/worker/secret-id"
        );
        assert!(
            by_id("billing/transit/payments")
                .iter()
                .any(|a| a.path == "transit/encrypt/billing-payments")
        );
        assert_eq!(
            by_id("billing/identity-cert")[0].path,
            "pki_int/sign/billing-identity"
        );
    }
}
