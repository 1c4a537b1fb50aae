//! The operator policy of an environment, as apply writes it, and its lint.
//!
//! The grants themselves are [`warden_spec::naming::operator::grants`] (one home, shared with
//! the lab's bootstrap); this module puts them into the desired state and checks them: an
//! operator policy must grant none of the root-only paths
//! ([`warden_spec::naming::operator::ROOT_ONLY_PATHS`]) and no wildcard outside Warden's own
//! mounts. The same check runs on the live policy, so a hand-widened operator policy shows up.

use serde_json::json;
use warden_spec::naming::META_MOUNT;
use warden_spec::naming::operator::{
    self, OPERATOR_AUTH_MOUNT, OPERATOR_CERT_TTL_SECS, OPERATOR_PKI_ROLE, OPERATOR_POLICY,
    OPERATOR_READABLE_SYSTEM_PATHS, ROOT_ONLY_PATHS,
};
use warden_spec::naming::policy::Grant;
use warden_spec::{Environment, Spec};

use crate::lint::{Finding, rules};
use crate::object::{Desired, Kind};

/// The operator policy's grants for `env`.
pub fn grants(spec: &Spec, env: &Environment) -> Vec<Grant> {
    operator::grants(&env.mounts, &spec.naming)
}

/// The operator policy's HCL for `env` (what bootstrap writes first and apply keeps current).
pub fn policy_hcl(spec: &Spec, env: &Environment) -> String {
    operator::render(&grants(spec, env))
}

/// The operator PKI role of `env`: its API path and body (bootstrap writes it, apply keeps it).
pub fn pki_role(env: &Environment) -> (String, serde_json::Value) {
    let d = desired_pki_role(env);
    (d.path, d.body)
}

/// The operator policy's API path: `sys/policies/acl/warden-operator`.
fn policy_path() -> String {
    format!("sys/policies/acl/{OPERATOR_POLICY}")
}

/// Whether `path` is the operator policy's (without allocating: plans sort on it).
pub(crate) fn is_policy_path(path: &str) -> bool {
    path.strip_prefix("sys/policies/acl/") == Some(OPERATOR_POLICY)
}

/// The operator policy as apply writes it (`sys/policies/acl/warden-operator`).
pub(crate) fn desired(spec: &Spec, env: &Environment) -> Desired {
    Desired {
        kind: Kind::Policy,
        path: policy_path(),
        body: json!({ "policy": policy_hcl(spec, env) }),
        identity: None,
        password_file: None,
    }
}

/// The PKI role that signs operators' certificates in `env`: client certificates for
/// `<name>.operator.<domain>` only, common name from the request (never the CSR), no SANs.
pub(crate) fn desired_pki_role(env: &Environment) -> Desired {
    let mut body = json!({
        "allowed_domains": [format!("operator.{}", env.domain)],
        "allow_bare_domains": false,
        "allow_subdomains": true,
        "server_flag": false,
        "client_flag": true,
        "key_type": "any",
        "ttl": OPERATOR_CERT_TTL_SECS,
        "max_ttl": OPERATOR_CERT_TTL_SECS,
        "no_store": false,
        "require_cn": true,
        "use_csr_common_name": false,
        "use_csr_sans": false,
        "allowed_uri_sans": [],
        "allowed_other_sans": [],
        "ext_key_usage": [],
        "issuer_ref": "default",
    });
    crate::desired::lock_names(&mut body);
    Desired {
        kind: Kind::PkiRole,
        path: format!("{}/roles/{OPERATOR_PKI_ROLE}", env.mounts.pki),
        body,
        identity: None,
        password_file: None,
    }
}

/// Prefixes under which a wildcard stays inside what Warden manages in `env`.
fn warden_prefixes(env: &Environment) -> Vec<String> {
    let m = &env.mounts;
    let mut out: Vec<String> = [META_MOUNT, &m.kv, &m.kv_v1, &m.transit, &m.database, &m.pki]
        .iter()
        .map(|s| format!("{s}/"))
        .collect();
    out.extend(
        [
            &m.cert_auth,
            &m.approle,
            &m.jwt,
            &m.kubernetes,
            OPERATOR_AUTH_MOUNT,
            warden_spec::naming::serve::SERVE_AUTH_MOUNT,
            warden_spec::naming::planner::PLANNER_AUTH_MOUNT,
        ]
        .iter()
        .map(|s| format!("auth/{s}/")),
    );
    out.push("sys/policies/acl/".to_owned());
    out.push(format!("sys/leases/lookup/{}/", m.database));
    out
}

/// Whether the ACL pattern `pattern` reaches the root-only path `root` (or anything under it):
/// `+` matches one segment, a trailing `*` any suffix.
fn reaches(pattern: &str, root: &str) -> bool {
    let (literal, glob) = match pattern.find(['*', '+']) {
        Some(i) => (&pattern[..i], true),
        None => (pattern, false),
    };
    if !glob {
        return pattern == root || pattern.starts_with(&format!("{root}/"));
    }
    if pattern.contains('+') {
        // Segment by segment, as far as the pattern goes.
        let ps: Vec<&str> = pattern.split('/').collect();
        let rs: Vec<&str> = root.split('/').collect();
        for (i, p) in ps.iter().enumerate() {
            let Some(r) = rs.get(i) else {
                return true; // the pattern goes below the root-only path
            };
            if *p == "+" {
                continue;
            }
            if let Some(prefix) = p.strip_suffix('*') {
                return r.starts_with(prefix);
            }
            if p != r {
                return false;
            }
        }
        return ps.len() >= rs.len();
    }
    root.starts_with(literal) || literal.starts_with(root)
}

/// Lints an operator policy's grants for `env`: root-only paths and wildcards beyond Warden's
/// mounts. The grants that make an exact root-only path read-only (`default`, `root`) pass.
pub fn lint_operator(
    spec: &Spec,
    env: &Environment,
    source: &'static str,
    grants: &[Grant],
) -> Vec<Finding> {
    let prefixes = warden_prefixes(env);
    let mut out = Vec::new();
    let mut push = |rule: &'static str, message: String| {
        let waived = spec.waived(rule, OPERATOR_POLICY).map(|w| w.reason.clone());
        out.push(Finding {
            rule,
            env: env.name.to_string(),
            identity: OPERATOR_POLICY.to_owned(),
            source,
            message,
            waived,
        });
    };
    for g in grants {
        if g.capabilities.iter().all(|c| c == "deny") {
            continue;
        }
        let only_reads = g.capabilities.iter().all(|c| c == "read" || c == "list");
        for root in ROOT_ONLY_PATHS {
            // A policy may read `default` and `root` (evidence reads every policy); it may not
            // write them, nor reach any other root-only path at all.
            let readable = only_reads
                && ((root.starts_with("sys/policies/acl/") && g.path == *root)
                    || OPERATOR_READABLE_SYSTEM_PATHS.contains(&g.path.as_str()));
            if reaches(&g.path, root) && !readable {
                // Specific grants decide in OpenBao: a wildcard over `sys/policies/acl/` is
                // fine when the policy also pins `default` and `root` read-only.
                let pinned = grants.iter().any(|o| {
                    o.path == *root && o.capabilities.iter().all(|c| c == "read" || c == "deny")
                });
                if g.path != *root && pinned {
                    continue;
                }
                push(
                    rules::ROOT_ONLY,
                    format!("`{}` reaches the root-only path `{root}`", g.path),
                );
                break;
            }
        }
        if g.path.contains(['*', '+']) && !prefixes.iter().any(|p| g.path.starts_with(p.as_str())) {
            push(
                rules::OPERATOR_WILDCARD,
                format!(
                    "wildcard `{}` reaches beyond Warden's mounts ({})",
                    g.path,
                    prefixes.join(", ")
                ),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"version = 1
[environments.test]
domain = "t.internal"
[environments.test.mounts]
kv = "apps-kv"
[apps.a]
environments = ["test"]
secrets = ["config"]
"#;

    fn g(path: &str, caps: &[&str]) -> Grant {
        Grant {
            path: path.to_owned(),
            capabilities: caps.iter().map(|c| (*c).to_owned()).collect(),
            allowed_parameters: Vec::new(),
        }
    }

    fn spec() -> Spec {
        warden_spec::parse(SPEC, "t").unwrap()
    }

    #[test]
    fn the_rendered_policy_follows_the_environments_mounts() {
        let spec = spec();
        let env = spec.environment("test").unwrap();
        let hcl = desired(&spec, env).body["policy"]
            .as_str()
            .unwrap()
            .to_owned();
        let parsed = warden_spec::naming::policy::parse(&hcl).unwrap();
        assert_eq!(parsed, grants(&spec, env), "renders what it reads back");
        let paths: Vec<&str> = parsed.iter().map(|g| g.path.as_str()).collect();
        assert!(paths.contains(&"apps-kv/*"), "{paths:?}");
        assert!(
            !paths.contains(&"kvv2/*"),
            "the default kv mount is not this env's: {paths:?}"
        );
        assert!(paths.contains(&"sys/policies/acl/+"), "{paths:?}");
        assert!(
            paths.contains(&"auth/warden-operators/certs/*"),
            "{paths:?}"
        );
        for never in [
            "sys/raw",
            "sys/seal",
            "sys/generate-root",
            "sys/rekey",
            "sys/audit",
            "auth/token/create",
            "*",
            "sys/*",
        ] {
            assert!(!paths.contains(&never), "{never}");
        }
        assert!(
            hcl.contains("path \"sys/policies/acl/default\" {\n  capabilities = [\"read\"]\n}"),
            "{hcl}"
        );
    }

    #[test]
    fn the_rendered_policy_is_lint_clean() {
        let spec = spec();
        let env = spec.environment("test").unwrap();
        assert_eq!(
            lint_operator(&spec, env, "desired", &grants(&spec, env)),
            []
        );
        assert!(crate::lint::lint_desired(&spec, env).is_empty());
    }

    #[test]
    fn root_only_paths_and_broad_wildcards_are_found() {
        let spec = spec();
        let env = spec.environment("test").unwrap();
        let bad = [
            g("sys/raw/*", &["read"]),
            g("sys/seal", &["update", "sudo"]),
            g("sys/generate-root/attempt", &["update"]),
            g("sys/*", &["read"]),
            g("auth/token/create", &["update"]),
            g("sys/policies/acl/default", &["update"]),
            g("secret/*", &["read"]),
            g("+/data/x", &["read"]),
            g("sys/audit", &["read"]),
        ];
        let findings = lint_operator(&spec, env, "live", &bad);
        let by_path = |p: &str, rule: &str| {
            findings
                .iter()
                .any(|f| f.rule == rule && f.message.contains(&format!("`{p}`")))
        };
        for p in [
            "sys/raw/*",
            "sys/seal",
            "sys/generate-root/attempt",
            "sys/*",
            "auth/token/create",
            "sys/policies/acl/default",
            "sys/audit",
        ] {
            assert!(by_path(p, rules::ROOT_ONLY), "{p}: {findings:#?}");
        }
        for p in ["sys/*", "secret/*", "+/data/x", "sys/raw/*"] {
            assert!(by_path(p, rules::OPERATOR_WILDCARD), "{p}: {findings:#?}");
        }
        assert!(
            findings
                .iter()
                .all(|f| f.identity == OPERATOR_POLICY && f.blocking())
        );
    }

    #[test]
    fn the_raft_peer_set_and_snapshot_are_readable_but_not_writable() {
        let spec = spec();
        let env = spec.environment("test").unwrap();
        // Taking a snapshot (backup) is a read; restoring one stays root-only (ADR 0011).
        for path in [
            "sys/storage/raft/configuration",
            "sys/storage/raft/snapshot",
        ] {
            let read = g(path, &["read"]);
            assert_eq!(lint_operator(&spec, env, "live", &[read]), []);
        }
        for bad in [
            g("sys/storage/raft/configuration", &["update"]),
            g("sys/storage/raft/remove-peer", &["update"]),
            g("sys/storage/raft/snapshot", &["update"]),
            g("sys/storage/raft/snapshot-force", &["update"]),
        ] {
            let f = lint_operator(&spec, env, "live", std::slice::from_ref(&bad));
            assert!(
                f.iter().any(|f| f.rule == rules::ROOT_ONLY),
                "{bad:?}: {f:#?}"
            );
        }
    }

    #[test]
    fn a_policy_wildcard_with_default_unpinned_is_found() {
        let spec = spec();
        let env = spec.environment("test").unwrap();
        let f = lint_operator(&spec, env, "live", &[g("sys/policies/acl/+", &["update"])]);
        assert!(f.iter().any(|f| f.rule == rules::ROOT_ONLY), "{f:#?}");
        let f = lint_operator(
            &spec,
            env,
            "live",
            &[
                g("sys/policies/acl/+", &["update"]),
                g("sys/policies/acl/default", &["read"]),
                g("sys/policies/acl/root", &["read"]),
            ],
        );
        assert_eq!(f, []);
    }
}
