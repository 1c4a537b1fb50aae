//! The planner's login (ADR 0038): `warden plan`, and the planning half of `warden apply`,
//! read an environment with a token that can only read what planning reads.
//!
//! Every operator has a twin role at a cert-auth mount of its own ([`PLANNER_AUTH_MOUNT`]): the
//! same certificate constraints as the operator's role, the same short token lifetime, and only
//! [`PLANNER_POLICY`]. A separate mount, not a second role beside the operator's, because an
//! operator logs in without naming a role ("whichever operator the certificate was issued
//! to"): two roles at one mount matching one certificate would make that login ambiguous.
//!
//! Why a token of its own, when the operator's could read all of it:
//! - **Least privilege.** A plan cannot write, whatever a bug or a hostile spec makes it
//!   request; a read-only login is what a reviewer or a CI job that only plans should hold.
//! - **Cost.** OpenBao builds a token's ACL from its policies' paths on every request. The
//!   operator policy has about 65 paths; this one about 25. At 10,000 identities a plan is
//!   30,000 reads, and the smaller ACL takes a sixth off the server's CPU for them
//!   (docs/benchmarks.md).
//!
//! What the grants leave out, on purpose: any value (KV data of apps, database credentials,
//! transit exports, snapshots), anything that creates (a `read` on `<database>/creds/*` mints
//! a credential, so the database grants name `config/` and `roles/` only), and every write but
//! giving its own token back (`auth/token/revoke-self`).

use super::policy::{self, Grant, grant};
use super::{META_MOUNT, OWNED_RECORD, PAGES_PREFIX, REGISTRY_PREFIX};
use crate::model::Mounts;

/// The policy a planner token carries, and nothing else (no `default`).
pub const PLANNER_POLICY: &str = "warden-planner";

/// The cert-auth mount the planner logs in at: `auth/warden-planners/certs/<operator>`.
pub const PLANNER_AUTH_MOUNT: &str = "warden-planners";

/// The planner role of operator `name`: `auth/warden-planners/certs/<name>`.
pub fn planner_role_path(name: &str) -> String {
    format!("auth/{PLANNER_AUTH_MOUNT}/certs/{name}")
}

const READ: &[&str] = &["read"];
const READ_LIST: &[&str] = &["read", "list"];

/// The planner policy's grants for an environment with `mounts`: read (and list where
/// planning lists a folder) on exactly the folders of the objects apply manages.
pub fn grants(mounts: &Mounts) -> Vec<Grant> {
    let m = mounts;
    let mut out = vec![
        // No `default` policy: a plan gives its token back when it is done.
        grant("auth/token/revoke-self".into(), &["update"]),
        // The mount and auth tables (mounts and auth backends are compared against them).
        grant("sys/mounts".into(), READ),
        grant("sys/auth".into(), READ),
        // Every policy's text in one request (ADR 0034), each one where that is refused.
        grant("sys/policies/detailed/acl".into(), &["list"]),
        grant("sys/policies/acl/*".into(), READ_LIST),
        // Warden's own records: what it owns, the registry and their pages, the CA records.
        grant(format!("{META_MOUNT}/data/{OWNED_RECORD}"), READ),
        grant(format!("{META_MOUNT}/data/{REGISTRY_PREFIX}/*"), READ),
        grant(format!("{META_MOUNT}/data/{PAGES_PREFIX}/*"), READ),
        grant(format!("{META_MOUNT}/data/ca/*"), READ),
        // PKI: roles, and the issuers every cert-auth role is pinned to.
        grant(format!("{}/roles/*", m.pki), READ_LIST),
        grant(format!("{}/issuers", m.pki), &["list"]),
        grant(format!("{}/issuer/*", m.pki), READ),
        // Engines: transit keys (names and versions; never an export), database connections
        // and roles (never `creds/`).
        grant(format!("{}/keys/*", m.transit), READ_LIST),
        grant(format!("{}/config/*", m.database), READ_LIST),
        grant(format!("{}/roles/*", m.database), READ_LIST),
        // Logins: the apps' cert roles, AppRole roles, JWT and Kubernetes configs and roles.
        grant(format!("auth/{}/certs/*", m.cert_auth), READ_LIST),
        // One segment: the roles themselves, never their `role-id` or `secret-id` children.
        grant(format!("auth/{}/role", m.approle), &["list"]),
        grant(format!("auth/{}/role/+", m.approle), READ),
    ];
    for mount in [&m.jwt, &m.kubernetes] {
        out.push(grant(format!("auth/{mount}/config"), READ));
        out.push(grant(format!("auth/{mount}/role/*"), READ_LIST));
    }
    // Warden's own logins: serve's, and the operators' (each planner role mirrors one) and
    // the planners' themselves.
    for mount in [
        super::serve::SERVE_AUTH_MOUNT,
        super::operator::OPERATOR_AUTH_MOUNT,
        PLANNER_AUTH_MOUNT,
    ] {
        out.push(grant(format!("auth/{mount}/certs/*"), READ_LIST));
    }
    out
}

/// The planner policy as HCL, marked as Warden's.
pub fn render(grants: &[Grant]) -> String {
    policy::render("planner: what plan reads, read-only (ADR 0038)", grants)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts() -> Mounts {
        crate::naming::default_mounts::with_pki("pki_int")
    }

    #[test]
    fn the_planner_reads_and_lists_only() {
        for g in grants(&mounts()) {
            if g.path == "auth/token/revoke-self" {
                assert_eq!(g.capabilities, ["update"]);
                continue;
            }
            for c in &g.capabilities {
                assert!(c == "read" || c == "list", "{} grants {c}", g.path);
            }
        }
    }

    #[test]
    fn the_planner_reaches_no_value_and_mints_nothing() {
        let m = mounts();
        let g = policy::parse(&render(&grants(&m))).unwrap();
        // A path each grant must not cover: app secrets, credentials that a read creates, key
        // exports, snapshots, tokens, and the write side of every engine.
        let forbidden = [
            format!("{}/data/apps/billing/config", m.kv),
            format!("{}/billing/config", m.kv_v1),
            format!("{}/creds/billing", m.database),
            format!("{}/static-creds/billing", m.database),
            format!("{}/export/encryption-key/billing", m.transit),
            format!("{}/issue/billing", m.pki),
            format!("{}/sign/billing", m.pki),
            format!("{META_MOUNT}/data/custody"),
            format!("{META_MOUNT}/data/reveal/p/x"),
            "sys/storage/raft/snapshot".to_owned(),
            "auth/token/create".to_owned(),
            "sys/wrapping/unwrap".to_owned(),
            format!("auth/{}/role/ci/secret-id", m.approle),
            format!("auth/{}/role/ci/role-id", m.approle),
        ];
        for path in &forbidden {
            let reached: Vec<&str> = g
                .iter()
                .filter(|g| covers(&g.path, path))
                .map(|g| g.path.as_str())
                .collect();
            assert!(reached.is_empty(), "{path} is reached by {reached:?}");
        }
    }

    /// Whether ACL pattern `p` (exact, `+` for one segment, a trailing `*` glob) covers `path`.
    fn covers(p: &str, path: &str) -> bool {
        if let Some(prefix) = p.strip_suffix('*') {
            return path.starts_with(prefix);
        }
        let (ps, xs): (Vec<&str>, Vec<&str>) = (p.split('/').collect(), path.split('/').collect());
        ps.len() == xs.len() && ps.iter().zip(&xs).all(|(a, b)| *a == "+" || a == b)
    }
}
