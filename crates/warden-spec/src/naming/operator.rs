//! Operators: the people who run `apply`, `posture`, `secret`, `rotate`, `reveal` and
//! `evidence` for an environment, each with their own mTLS client certificate, once bootstrap
//! has revoked the root token.
//!
//! Everything an operator is in OpenBao is named here, once: the cert-auth mount operators log
//! in at ([`OPERATOR_AUTH_MOUNT`], apart from the apps' mount so `apply --prune` and an app's
//! role can never touch an operator's), the PKI role that signs their certificates
//! ([`OPERATOR_PKI_ROLE`]), their common name ([`operator_common_name`]) and the one policy they
//! all carry ([`OPERATOR_POLICY`], its grants: [`grants`]). The grants live here and not in the
//! planner because the lab's bootstrap, which cannot depend on the planner (the planner's tests
//! stand on the lab), must write the same policy the planner keeps up to date.
//!
//! The policy is written from the requests the commands make (see `docs/identity.md`,
//! "Operators"), scoped to the environment's mounts: wildcards only inside Warden's own mounts,
//! `sudo` only where OpenBao demands it for a Warden mount, and none of [`ROOT_ONLY_PATHS`].

use super::policy::{self, Grant, grant};
use super::{DELIVERED_PREFIX, META_MOUNT, Naming, REGISTRY_READER_POLICY, Template};
use crate::model::Mounts;

/// The policy every operator's token carries.
pub const OPERATOR_POLICY: &str = "warden-operator";

/// The cert-auth mount operators log in at: `auth/warden-operators/certs/<operator>`.
pub const OPERATOR_AUTH_MOUNT: &str = "warden-operators";

/// The PKI role (in the environment's PKI mount) that signs operator certificates: client
/// certificates for `<name>.operator.<domain>` only.
pub const OPERATOR_PKI_ROLE: &str = "warden-operator";

/// Lifetime of an operator's certificate.
pub const OPERATOR_CERT_TTL_SECS: u64 = 90 * 24 * 3600;

/// Lifetime of an operator's token. Every command logs in afresh, so nothing needs longer; it
/// also bounds how long a removed operator's last token still works.
pub const OPERATOR_TOKEN_TTL_SECS: u64 = 3600;

/// The longest an operator's token lives, renewals included: no longer than its TTL.
pub const OPERATOR_TOKEN_MAX_TTL_SECS: u64 = OPERATOR_TOKEN_TTL_SECS;

/// The lab's own operator (the certificate under `<lab>/envs/<env>/operator/`).
pub const LAB_OPERATOR: &str = "lab";

/// Paths only the root token (or a break-glass token) may reach: an operator policy that
/// grants any of them, or a wildcard covering one, is a lint finding.
pub const ROOT_ONLY_PATHS: &[&str] = &[
    "sys/raw",
    "sys/seal",
    "sys/unseal",
    "sys/init",
    "sys/generate-root",
    "sys/rekey",
    "sys/rekey-recovery-key",
    "sys/rotate",
    "sys/audit",
    "sys/audit-hash",
    "sys/config/auditing",
    "sys/step-down",
    "sys/storage",
    "sys/plugins",
    "sys/remount",
    "sys/revoke-prefix",
    "sys/revoke-force",
    "sys/leases/revoke-prefix",
    "sys/leases/revoke-force",
    "sys/policies/acl/root",
    "sys/policies/acl/default",
    "auth/token/create",
    "auth/token/create-orphan",
    "auth/token/roles",
];

/// Read-only system paths under a root-only prefix that operators may still read: the raft
/// peer set (`sys/storage` is root-only for writes — removing a peer, restoring a snapshot —
/// but who the voters are is what an operator paged about a node needs to see), and the raft
/// snapshot itself (`warden backup create`: the store under the barrier's encryption, useless
/// without the unseal keys; restoring one stays root-only, ADR 0011).
pub const OPERATOR_READABLE_SYSTEM_PATHS: &[&str] = &[
    "sys/storage/raft/configuration",
    "sys/storage/raft/snapshot",
];

/// The common name of operator `name`'s certificate in an environment whose domain is
/// `domain`: pinned in the operator's cert-auth role, and the only shape the operator PKI role
/// signs. Apart from identities' `<app>.identity.<domain>`, so no app certificate is an operator.
pub fn operator_common_name(name: &str, domain: &str) -> String {
    format!("{name}.operator.{domain}")
}

/// The cert-auth role of operator `name`: `auth/warden-operators/certs/<name>`.
pub fn operator_role_path(name: &str) -> String {
    format!("auth/{OPERATOR_AUTH_MOUNT}/certs/{name}")
}

/// Whether `name` is a usable operator name: a slug (lowercase letters, digits, `-`), 1 to 63
/// characters, starting with a letter. It becomes a DNS label and a path segment.
pub fn valid_operator_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && !name.ends_with('-')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// A naming template as an ACL pattern covering every name it can render: a segment holding
/// `<app>` becomes `+` (one segment), except a last segment with a fixed start (`app-<app>`),
/// which becomes `app-*` (OpenBao globs only at the end), so names without it stay out.
fn pattern(t: &Template) -> String {
    let segs: Vec<&str> = t.as_str().split('/').collect();
    let last = segs.len() - 1;
    segs.iter()
        .enumerate()
        .map(|(i, seg)| match seg.find("<app>") {
            None => (*seg).to_owned(),
            Some(0) => "+".to_owned(),
            Some(start) if i == last => format!("{}*", &seg[..start]),
            Some(_) => "+".to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

const CRUD: &[&str] = &["create", "read", "update", "delete", "list"];

/// The operator policy's grants for an environment with `mounts`, whose identities are named
/// by `naming`. Depends on no identity of the spec, so the same policy lets an operator apply
/// any spec over these mounts, including the first one.
pub fn grants(mounts: &Mounts, naming: &Naming) -> Vec<Grant> {
    let m = mounts;
    let mut out = vec![
        // Every operator token carries no `default` policy, so these three come explicitly.
        grant("auth/token/lookup-self".into(), &["read"]),
        grant("auth/token/renew-self".into(), &["update"]),
        grant("auth/token/revoke-self".into(), &["update"]),
        // reveal: state of wrapping tokens by accessor, and revoking one early; enroll revokes
        // the test login it made by accessor.
        grant("auth/token/lookup-accessor".into(), &["update"]),
        grant("auth/token/revoke-accessor".into(), &["update"]),
        // reveal create: a random value wrapped for one read.
        grant("sys/wrapping/wrap".into(), &["update"]),
        grant("sys/wrapping/lookup".into(), &["update"]),
        // plan/apply read the mount tables.
        grant("sys/mounts".into(), &["read"]),
        // `lab status` and HA checks: the raft peer set, read-only.
        grant("sys/storage/raft/configuration".into(), &["read"]),
        // `warden backup create`: take a snapshot (reading it; restoring is root-only).
        grant("sys/storage/raft/snapshot".into(), &["read"]),
        grant("sys/auth".into(), &["read"]),
        // posture: the live leases of each app's database role, and their times.
        grant("sys/leases/lookup".into(), &["update"]),
        grant(
            format!("sys/leases/lookup/{}/creds/*", m.database),
            &["list", "sudo"],
        ),
        // evidence lists every policy to say who can reach each credential.
        grant("sys/policies/acl".into(), &["list"]),
        // ... in one request where the server has it (ADR 0034): every policy's text.
        grant("sys/policies/detailed/acl".into(), &["list"]),
        grant(format!("sys/policies/acl/{REGISTRY_READER_POLICY}"), CRUD),
        // Kept current by apply; never deleted (that would lock every operator out).
        grant(
            format!("sys/policies/acl/{OPERATOR_POLICY}"),
            &["create", "read", "update"],
        ),
    ];
    // Identities' policies (runtime and CI) by their templates. `default` and `root` may match
    // a one-segment pattern; the more specific grant below keeps them read-only.
    for t in [&naming.policy, &naming.ops_policy] {
        let p = format!("sys/policies/acl/{}", pattern(t));
        if !out.iter().any(|g| g.path == p) {
            out.push(grant(p, CRUD));
        }
    }
    out.push(grant("sys/policies/acl/default".into(), &["read"]));
    out.push(grant("sys/policies/acl/root".into(), &["read"]));

    // Secrets engines apply creates (PKI is bootstrap's), and what lives in them.
    for mount in [META_MOUNT, &m.kv, &m.kv_v1, &m.transit, &m.database] {
        out.push(grant(
            format!("sys/mounts/{mount}"),
            &["create", "read", "update"],
        ));
    }
    for mount in [META_MOUNT, &m.kv, &m.kv_v1, &m.database] {
        out.push(grant(format!("{mount}/*"), CRUD));
    }
    // posture: every secret's version times in one request (`SCAN detailed-metadata`, ADR
    // 0027) instead of one metadata read per secret. Metadata only, never a value.
    out.push(grant(
        format!("{}/detailed-metadata/*", m.kv),
        &["list", "scan"],
    ));
    // ... and every agent's delivery report in one request (ADR 0036).
    out.push(grant(
        format!("{META_MOUNT}/detailed-metadata/{DELIVERED_PREFIX}/"),
        &["list", "scan"],
    ));
    // Transit keys are never deleted: that destroys every ciphertext under them.
    out.push(grant(
        format!("{}/*", m.transit),
        &["create", "read", "update", "list"],
    ));
    // PKI: roles (apply), signing (enrollment, domain certificates, operator approval) and the
    // public chain; never a new root or intermediate (the offline CA's ceremony).
    out.push(grant(format!("sys/mounts/{}", m.pki), &["read"]));
    out.push(grant(format!("{}/roles/*", m.pki), CRUD));
    for op in ["sign", "issue"] {
        out.push(grant(format!("{}/{op}/*", m.pki), &["create", "update"]));
    }
    // revoke: certificates by serial (the CRL is rebuilt on each), and the identity behind a
    // revoked certificate disabled (its tokens stop working, its logins are refused). An
    // entity is updated by id through `identity/entity` itself, so no wildcard is needed.
    out.push(grant(format!("{}/revoke", m.pki), &["update"]));
    out.push(grant("identity/lookup/entity".into(), &["update"]));
    out.push(grant("identity/entity".into(), &["create", "update"]));
    out.push(grant("identity/entity-alias".into(), &["create", "update"]));
    for read in ["cert/*", "ca_chain", "ca/pem", "issuers"] {
        out.push(grant(format!("{}/{read}", m.pki), &["read", "list"]));
    }
    // Retiring an intermediate after its rotation's overlap deletes its issuer (ADR 0029).
    out.push(grant(
        format!("{}/issuer/*", m.pki),
        &["read", "list", "delete"],
    ));
    // Transport certificates (ADR 0010): list the stored serials, revoke a holder's.
    out.push(grant(format!("{}/certs", m.pki), &["list"]));
    out.push(grant(format!("{}/revoke", m.pki), &["update"]));
    // Installing a new PKI intermediate (rotation): the key is generated inside OpenBao and
    // never exported, the offline root signs the CSR, the signed bundle is imported and made
    // the default issuer. Never `root/*` (a root inside OpenBao) nor `generate/exported`.
    out.push(grant(
        format!("{}/intermediate/generate/internal", m.pki),
        &["update"],
    ));
    // A root rollover re-signs the intermediate's existing key (ADR 0030): a CSR for a key
    // already in the mount, nothing generated or exported.
    out.push(grant(
        format!("{}/intermediate/generate/existing", m.pki),
        &["update"],
    ));
    out.push(grant(
        format!("{}/intermediate/set-signed", m.pki),
        &["update"],
    ));
    out.push(grant(
        format!("{}/config/issuers", m.pki),
        &["read", "update"],
    ));
    // Auth backends apply enables (OpenBao demands `sudo` on sys/auth/<path>) and their roles.
    for mount in [&m.cert_auth, &m.approle, &m.jwt, &m.kubernetes] {
        out.push(grant(
            format!("sys/auth/{mount}"),
            &["create", "read", "update", "sudo"],
        ));
        out.push(grant(format!("auth/{mount}/*"), CRUD));
    }
    // Operators manage operators (approve, list, remove).
    out.push(grant(format!("sys/auth/{OPERATOR_AUTH_MOUNT}"), &["read"]));
    out.push(grant(format!("auth/{OPERATOR_AUTH_MOUNT}/certs/*"), CRUD));
    // The planners' login (ADR 0038): apply enables it, mirrors each operator's role there
    // and keeps its read-only policy (kept, never deleted).
    let planner = super::planner::PLANNER_AUTH_MOUNT;
    out.push(grant(
        format!("sys/auth/{planner}"),
        &["create", "read", "update", "sudo"],
    ));
    out.push(grant(format!("auth/{planner}/certs/*"), CRUD));
    out.push(grant(
        format!("sys/policies/acl/{}", super::planner::PLANNER_POLICY),
        &["create", "read", "update"],
    ));
    // `warden serve`'s own login, which apply enables and keeps (ADR 0026).
    let serve = super::serve::SERVE_AUTH_MOUNT;
    out.push(grant(
        format!("sys/auth/{serve}"),
        &["create", "read", "update", "sudo"],
    ));
    out.push(grant(format!("auth/{serve}/certs/*"), CRUD));
    // …and its policy, whatever the spec's policy names look like (kept, never deleted).
    out.push(grant(
        format!("sys/policies/acl/{}", super::serve::SERVE_POLICY),
        &["create", "read", "update"],
    ));
    out
}

/// The operator policy as HCL, marked as Warden's.
pub fn render(grants: &[Grant]) -> String {
    policy::render(
        "operators: apply, posture, secret, rotate, reveal, evidence; nothing root-only",
        grants,
    )
}

/// The operator policy for the default mounts (PKI at `pki_mount`) and naming: what a lab's
/// bootstrap writes before any spec is applied (apply then rewrites it for the spec's mounts).
pub fn default_policy(pki_mount: &str) -> String {
    let mounts = super::default_mounts::with_pki(pki_mount);
    render(&grants(&mounts, &Naming::defaults()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_become_one_segment_patterns() {
        let t = |s: &str| Template::new(s.to_owned());
        assert_eq!(pattern(&t("<app>")), "+");
        assert_eq!(pattern(&t("<app>-ops")), "+");
        assert_eq!(pattern(&t("apps/<app>/ops")), "apps/+/ops");
        assert_eq!(pattern(&t("app-<app>")), "app-*");
        assert_eq!(pattern(&t("team/app-<app>-ops")), "team/app-*");
    }

    #[test]
    fn operator_names_are_dns_labels() {
        for ok in ["alice", "bob-2", "a"] {
            assert!(valid_operator_name(ok), "{ok}");
        }
        for bad in ["", "Alice", "-a", "a-", "a.b", "a/b", "1a", &"a".repeat(64)] {
            assert!(!valid_operator_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_default_policy_reads_back_and_grants_no_root_only_path_exactly() {
        let g = policy::parse(&default_policy("pki_int")).unwrap();
        assert!(g.iter().any(|g| g.path == "kvv2/*"));
        for root in ROOT_ONLY_PATHS {
            let hit = g.iter().find(|g| g.path == *root);
            assert!(
                hit.is_none_or(|g| g.capabilities == ["read"]),
                "{root}: {hit:?}"
            );
        }
    }
}
