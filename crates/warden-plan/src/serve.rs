//! `warden serve`'s own identity in an environment (issue 15, ADR 0026): the policy generated
//! for exactly its jobs, the PKI role that signs its one client name, the cert-auth mount and
//! role it logs in with, and the lint its policy must pass. Names: [`warden_spec::naming::serve`].
//!
//! The grants follow the jobs `warden serve` runs (`warden_serve::jobs_for`):
//!
//! | job | grants |
//! |---|---|
//! | leader lease, job records | `warden/data/serve/*` read + check-and-set writes, `warden/metadata/serve/*` read/list: serve's own folder, the policy's only wildcard |
//! | rotate a signing key | the key's KV metadata (versions; check-and-set required on first write); its data read (the previous `kid`) and written (a new version, check-and-set) |
//! | renew a domain certificate | the certificate's KV data and metadata; `<pki>/sign/<domain role>`; the intermediate (`<pki>/cert/ca`) |
//! | posture | per governed credential, where its truth lives (KV *metadata* only, transit key, secret-id accessors, JWT role); the registry entries; the delivery reports (list, read). Not database leases: listing them needs `sudo`, so serve judges database credentials from the agents' reports |
//! | metrics: raft health per node | `sys/storage/raft/autopilot/state` read |
//! | backup (`backup.every` set) | `sys/storage/raft/snapshot` read (the snapshot streams out; restoring stays root-only); the evidence key `<transit>/keys/warden-evidence` read and `<transit>/sign/warden-evidence` update (the manifest's signature) |
//! | DR drill (`backup.drill_every` set; lab only) | the backup's grants (the report is signed with the same key); the scratch cluster is reached with the lab's own credentials, not serve's |
//!
//! Nothing else: no app secret's data, no policy, no auth configuration, no `sys/` write, and
//! of `sys/storage` only those two reads.
//! Seal status and health are unauthenticated and need no grant.

use serde_json::json;
use warden_spec::naming::policy::{Grant, grant};
use warden_spec::naming::serve::{
    SERVE_AUTH_MOUNT, SERVE_CERT_TTL_SECS, SERVE_PKI_ROLE, SERVE_POLICY, SERVE_TOKEN_MAX_TTL_SECS,
    SERVE_TOKEN_TTL_SECS, serve_common_name, serve_role_path,
};
use warden_spec::naming::{self, DELIVERED_PREFIX, Location, META_MOUNT, SERVE_PREFIX};
use warden_spec::{CredentialKind, Environment, Spec};

use crate::desired::{EnvInputs, MOUNT_DESCRIPTION};
use crate::lint::{Finding, rules};
use crate::object::{Desired, Kind};

/// Serve's grants in `env`.
pub fn grants(spec: &Spec, env: &Environment) -> Vec<Grant> {
    let m = &env.mounts;
    let mut out = vec![
        grant("auth/token/lookup-self".to_owned(), &["read"]),
        grant("auth/token/renew-self".to_owned(), &["update"]),
        grant("auth/token/revoke-self".to_owned(), &["update"]),
        // Its own folder: the lease and one record per job (ids follow the spec's keys and
        // domains, so the folder, not each path, is granted).
        grant(
            format!("{META_MOUNT}/data/{SERVE_PREFIX}/*"),
            &["create", "update", "read"],
        ),
        grant(
            format!("{META_MOUNT}/metadata/{SERVE_PREFIX}/*"),
            &["read", "list"],
        ),
    ];
    let mut seen: std::collections::HashSet<String> = out.iter().map(|g| g.path.clone()).collect();
    // Posture's reads of each secret's metadata and each identity's delivery report, kept apart
    // until their number is known (see EXACT_READS_MAX).
    let mut reads: Vec<Grant> = Vec::new();
    let mut push = |g: Grant| {
        if seen.insert(g.path.clone()) {
            out.push(g);
        }
    };
    let creds: Vec<_> = spec
        .credentials()
        .into_iter()
        .filter(|c| c.environments.contains(&env.name))
        .collect();
    let mut domains = false;
    for c in &creds {
        let location = naming::location(spec, env, c);
        match (&c.kind, location) {
            (CredentialKind::SigningKey(_), Some(Location::Kv(e))) => {
                // Rotation: reads the versions and the previous kid, writes the next version;
                // the first write makes check-and-set required on the key (metadata update).
                push(grant(e.metadata_path(), &["create", "update", "read"]));
                push(grant(e.data_path(), &["create", "update", "read"]));
            }
            (CredentialKind::DomainCert(slug), Some(Location::Kv(e))) => {
                domains = true;
                push(grant(e.metadata_path(), &["create", "update", "read"]));
                push(grant(e.data_path(), &["create", "update", "read"]));
                if let Some(d) = spec.domains.iter().find(|d| d.slug.as_str() == slug) {
                    push(grant(
                        format!("{}/sign/{}", m.pki, d.pki_role()),
                        &["create", "update"],
                    ));
                    if matches!(d.issuer, warden_spec::DomainIssuer::Acme(_)) {
                        // The ACME account beside the certificate (ADR 0031); the ACME
                        // endpoints themselves take no token.
                        let account = naming::domain_acme_account_path(&d.domain);
                        push(grant(
                            format!("{}/metadata/{account}", m.kv),
                            &["create", "update", "read"],
                        ));
                        push(grant(
                            format!("{}/data/{account}", m.kv),
                            &["create", "update", "read"],
                        ));
                    }
                }
            }
            // Posture reads only where each credential's age lives, never a secret's value.
            (CredentialKind::Secret(_), Some(Location::Kv(e))) => {
                reads.push(grant(e.metadata_path(), &["read"]));
            }
            (_, Some(Location::TransitKey { mount, key })) => {
                push(grant(format!("{mount}/keys/{key}"), &["read"]));
            }
            (_, Some(Location::AppRole { mount, role })) => {
                let base = format!("auth/{mount}/role/{role}/secret-id");
                push(grant(base.clone(), &["list"]));
                push(grant(format!("{base}-accessor/lookup"), &["update"]));
            }
            // Database credentials: OpenBao lists leases only with `sudo`, which serve never
            // gets (its lint refuses it); posture judges them from the agent's delivery
            // report (below), and says the leases were not listable.
            (_, Some(loc @ Location::JwtRole { .. })) => {
                push(grant(loc.to_string(), &["read"]));
            }
            _ => {}
        }
    }
    if domains {
        // A renewed leaf must not outlive its issuer: serve reads the intermediate.
        push(grant(format!("{}/cert/ca", m.pki), &["read"]));
    }
    // `/metrics`: raft health per node.
    push(grant(RAFT_AUTOPILOT_STATE.to_owned(), &["read"]));
    if env
        .backup
        .as_ref()
        .is_some_and(|b| b.every.is_some() || b.drill_every.is_some())
    {
        // Scheduled backups: the snapshot is a GET (read); the manifest (and a drill's report)
        // is signed with the evidence key, which apply creates.
        push(grant(RAFT_SNAPSHOT.to_owned(), &["read"]));
        push(grant(
            format!("{}/keys/{}", m.transit, naming::EVIDENCE_KEY),
            &["read"],
        ));
        push(grant(
            format!("{}/sign/{}", m.transit, naming::EVIDENCE_KEY),
            &["update"],
        ));
    }
    for p in &spec.purposes {
        push(grant(
            naming::registry_entry(p.id.as_str()).data_path(),
            &["read"],
        ));
    }
    if !spec.purposes.is_empty() {
        push(grant(naming::delivery_reports().metadata_path(), &["list"]));
        // Every report in one scan (ADR 0036): the folder itself, read-only.
        push(grant(
            format!("{META_MOUNT}/detailed-metadata/{DELIVERED_PREFIX}/"),
            &["list", "scan"],
        ));
        let mut who: Vec<&str> = creds.iter().map(|c| c.identity.as_str()).collect();
        who.sort_unstable();
        who.dedup();
        for id in who {
            reads.push(grant(
                naming::delivery_report(id).metadata_path(),
                &["read"],
            ));
            reads.push(grant(naming::delivery_report(id).data_path(), &["read"]));
        }
    }
    if reads.len() > EXACT_READS_MAX {
        // Metadata and delivery reports only: never a value (lint_serve checks it).
        push(grant(format!("{}/metadata/*", m.kv), &["read"]));
        push(grant(
            format!("{}/detailed-metadata/*", m.kv),
            &["list", "scan"],
        ));
        push(grant(
            format!("{}/*", naming::delivery_reports().data_path()),
            &["read"],
        ));
        push(grant(
            format!("{}/*", naming::delivery_reports().metadata_path()),
            &["read"],
        ));
    } else {
        for g in reads {
            push(g);
        }
    }
    out
}

/// Above this many posture reads (one grant per secret's metadata and per identity's delivery
/// report), serve's policy grants the two folders instead, read-only (ADR 0027): a policy is
/// one storage entry, raft's limit is 1 MiB, and at 10,000 identities the exact grants made a
/// 1.5 MB policy that OpenBao refused to store. 2,000 exact grants are ≈ 150 KB.
const EXACT_READS_MAX: usize = 2_000;

/// Folders serve's policy may reach with a wildcard beyond its own, and then only to read
/// metadata or delivery reports (`read`, `list`, `scan`).
fn read_folders(env: &Environment) -> [String; 4] {
    [
        format!("{}/metadata/", env.mounts.kv),
        format!("{}/detailed-metadata/", env.mounts.kv),
        format!("{}/", naming::delivery_reports().data_path()),
        format!("{}/", naming::delivery_reports().metadata_path()),
    ]
}

/// Taking a raft snapshot (a GET on the active node).
pub const RAFT_SNAPSHOT: &str = "sys/storage/raft/snapshot";
/// Autopilot's view of every raft node (health, voter, leader).
pub const RAFT_AUTOPILOT_STATE: &str = "sys/storage/raft/autopilot/state";

/// Serve's policy document in `env`.
pub fn policy_hcl(spec: &Spec, env: &Environment) -> String {
    naming::policy::render("warden serve (generated from its jobs)", &grants(spec, env))
}

/// What apply writes for serve in `env`: its policy, its PKI role, its cert-auth mount and
/// role (pinned to the environment's intermediate and to serve's one common name).
pub(crate) fn desired(spec: &Spec, env: &Environment, inputs: &EnvInputs) -> Vec<Desired> {
    let cn = serve_common_name(&env.domain);
    let mut pki = json!({
        "allowed_domains": [cn],
        "allow_bare_domains": true,
        "allow_subdomains": false,
        "server_flag": false,
        "client_flag": true,
        "key_type": "any",
        "ttl": SERVE_CERT_TTL_SECS,
        "max_ttl": SERVE_CERT_TTL_SECS,
        "no_store": false,
        "require_cn": true,
        "use_csr_common_name": false,
        "use_csr_sans": false,
        "allowed_uri_sans": [],
        "allowed_other_sans": [],
        "ext_key_usage": [],
        "issuer_ref": "default",
    });
    crate::desired::lock_names(&mut pki);
    let node = Desired::env_object;
    vec![
        node(
            Kind::Policy,
            format!("sys/policies/acl/{SERVE_POLICY}"),
            json!({ "policy": policy_hcl(spec, env) }),
        ),
        node(
            Kind::PkiRole,
            format!("{}/roles/{SERVE_PKI_ROLE}", env.mounts.pki),
            pki,
        ),
        node(
            Kind::Auth,
            format!("sys/auth/{SERVE_AUTH_MOUNT}"),
            json!({ "type": "cert", "description": MOUNT_DESCRIPTION }),
        ),
        node(
            Kind::CertRole,
            serve_role_path(),
            json!({
                "certificate": inputs.identity_ca_pem.trim(),
                "allowed_common_names": [cn],
                "display_name": "warden-serve",
                "token_policies": [SERVE_POLICY],
                "token_no_default_policy": true,
                "token_period": 0,
                "token_explicit_max_ttl": 0,
                "token_ttl": SERVE_TOKEN_TTL_SECS,
                "token_max_ttl": SERVE_TOKEN_MAX_TTL_SECS,
            }),
        ),
    ]
}

/// Lints serve's grants: no `sudo`, wildcards only in serve's own folder, no write outside
/// its keys, domains and folder, no `sys/policies`, no auth configuration, and never an app
/// secret's data (only metadata).
pub fn lint_serve(
    spec: &Spec,
    env: &Environment,
    source: &'static str,
    grants: &[Grant],
) -> Vec<Finding> {
    let own = [
        format!("{META_MOUNT}/data/{SERVE_PREFIX}/"),
        format!("{META_MOUNT}/metadata/{SERVE_PREFIX}/"),
    ];
    let secret_data: Vec<String> = spec
        .credentials()
        .into_iter()
        .filter(|c| c.environments.contains(&env.name))
        .filter(|c| matches!(c.kind, CredentialKind::Secret(_)))
        .filter_map(|c| match naming::location(spec, env, &c) {
            Some(Location::Kv(e)) => Some(e.data_path()),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    let mut push = |rule: &'static str, message: String| {
        let waived = spec.waived(rule, SERVE_POLICY).map(|w| w.reason.clone());
        out.push(Finding {
            rule,
            env: env.name.to_string(),
            identity: SERVE_POLICY.to_owned(),
            source,
            message,
            waived,
        });
    };
    for g in grants {
        if g.capabilities.iter().any(|c| c == "sudo") {
            push(rules::SUDO, format!("`sudo` on `{}`", g.path));
        }
        let reads_only = g
            .capabilities
            .iter()
            .all(|c| c == "read" || c == "list" || c == "scan");
        if let Some(star) = g.path.find(['*', '+']) {
            let literal = &g.path[..star];
            let read_folder = reads_only && read_folders(env).iter().any(|p| literal == p);
            if !own.iter().any(|p| literal.starts_with(p.as_str())) && !read_folder {
                push(
                    rules::WILDCARD,
                    format!("wildcard `{}` reaches beyond serve's own folder", g.path),
                );
            }
        }
        let writes = !reads_only;
        // Of `sys/storage`, serve reads the snapshot (backups) and autopilot's state
        // (metrics), nothing else: restore, snapshot-force, remove-peer and the raft
        // configuration's writes are root-only and stay so.
        if g.path.starts_with("sys/storage")
            && (writes || ![RAFT_SNAPSHOT, RAFT_AUTOPILOT_STATE].contains(&g.path.as_str()))
        {
            push(
                rules::ROOT_ONLY,
                format!(
                    "serve may only read `{RAFT_SNAPSHOT}` and `{RAFT_AUTOPILOT_STATE}` under sys/storage (`{}`)",
                    g.path
                ),
            );
        }
        let login_config = g.path.starts_with("auth/")
            && !g.path.starts_with("auth/token/")
            && !g.path.ends_with("/secret-id-accessor/lookup")
            && writes;
        if ["sys/policies", "sys/auth", "sys/mounts"]
            .iter()
            .any(|p| g.path.starts_with(p))
            || login_config
        {
            push(
                rules::ROOT_ONLY,
                format!("serve may not change policies or logins (`{}`)", g.path),
            );
        }
        let literal = g
            .path
            .find(['*', '+'])
            .map_or(g.path.as_str(), |i| &g.path[..i]);
        if let Some(s) = secret_data
            .iter()
            .find(|s| **s == g.path || (literal != g.path && s.starts_with(literal)))
        {
            push(
                rules::CROSS_APP,
                format!("`{}` reaches an app's secret value `{s}`", g.path),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = include_str!("../../../examples/lab/warden.toml");

    #[test]
    fn the_generated_policy_is_exact_and_passes_its_lint() {
        let spec = warden_spec::parse(SPEC, "warden.toml").expect("example spec");
        let env = spec.environment("test").expect("test env");
        let g = grants(&spec, env);
        assert!(lint_serve(&spec, env, "desired", &g).is_empty());
        // Never a secret's value, never a policy.
        let billing = naming::secret(
            &spec.naming,
            &env.mounts,
            &warden_spec::Slug::parse("billing").expect("slug"),
            "config",
        );
        assert!(!g.iter().any(|x| x.path == billing.data_path()), "{g:?}");
        assert!(g.iter().any(|x| x.path == billing.metadata_path()), "{g:?}");
        assert!(!g.iter().any(|x| x.path.starts_with("sys/policies")));
        // The signing keys it rotates are writable.
        let key = naming::signing_key(
            &spec.naming,
            &env.mounts,
            &warden_spec::Slug::parse("billing").expect("slug"),
            "jwt",
        );
        assert!(
            g.iter()
                .any(|x| x.path == key.data_path() && x.capabilities.iter().any(|c| c == "update")),
            "{g:?}"
        );
    }

    #[test]
    fn a_large_spec_gets_read_folders_that_pass_its_lint() {
        let mut text = String::from(
            "version = 1\n[environments.test]\ndomain = \"test.warden.internal\"\n\
             [purposes.all]\ndescription = \"all\"\nowner = \"p\"\ntier = \"vault_kv\"\n\
             delivery = \"agent_file\"\nrotation = { interval = \"20d\", grace = \"5d\" }\n\
             evidence = \"EV\"\ncovers = [\"*/identity-cert\", \"*/certificate\", \"*/secret/config\"]\n",
        );
        for i in 0..1_200 {
            text.push_str(&format!(
                "[apps.app-{i:05}]\nenvironments = [\"test\"]\nsecrets = [\"config\"]\n[apps.app-{i:05}.certificate]\n"
            ));
        }
        let spec = warden_spec::parse(&text, "big.toml").expect("spec");
        let env = spec.environment("test").expect("test env");
        let g = grants(&spec, env);
        assert!(lint_serve(&spec, env, "desired", &g).is_empty());
        assert!(g.len() < 50, "{} grants", g.len());
        assert!(policy_hcl(&spec, env).len() < 64 * 1024);
        // Metadata and reports only, never a value.
        assert!(
            g.iter()
                .any(|x| x.path == "kvv2/metadata/*" && x.capabilities == ["read"])
        );
        assert!(!g.iter().any(|x| x.path.starts_with("kvv2/data")), "{g:?}");
        // The same folders with a write, or a value's folder, fail the lint.
        for (path, caps) in [
            ("kvv2/metadata/*", &["read", "update"][..]),
            ("kvv2/*", &["read"][..]),
        ] {
            let mut wider = g.clone();
            wider.push(grant(path.to_owned(), caps));
            let rules: Vec<&str> = lint_serve(&spec, env, "live", &wider)
                .iter()
                .map(|f| f.rule)
                .collect();
            assert!(!rules.is_empty(), "{path} {caps:?}");
        }
    }

    #[test]
    fn the_lint_catches_a_widened_policy() {
        let spec = warden_spec::parse(SPEC, "warden.toml").expect("example spec");
        let env = spec.environment("test").expect("test env");
        let mut g = grants(&spec, env);
        g.push(grant(format!("{}/data/*", env.mounts.kv), &["read"]));
        g.push(grant("sys/policies/acl/x".to_owned(), &["update"]));
        g.push(grant(
            "sys/storage/raft/snapshot-force".to_owned(),
            &["update"],
        ));
        let rules: Vec<&str> = lint_serve(&spec, env, "live", &g)
            .iter()
            .map(|f| f.rule)
            .collect();
        assert!(rules.contains(&rules::WILDCARD), "{rules:?}");
        assert!(rules.contains(&rules::CROSS_APP), "{rules:?}");
        assert!(rules.contains(&rules::ROOT_ONLY), "{rules:?}");
        assert!(
            rules.iter().filter(|r| **r == rules::ROOT_ONLY).count() >= 2,
            "a snapshot restore is root-only: {rules:?}"
        );
    }

    #[test]
    fn a_scheduled_backup_grants_the_snapshot_read_and_the_evidence_signature_only() {
        let text = SPEC.replace(
            "[environments.test]",
            "[environments.test.backup]\nrecipients = [\"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\"]\ndir = \"b\"\nevery = \"1d\"\n\n[environments.test]",
        );
        let spec = warden_spec::parse(&text, "warden.toml").expect("spec with a backup");
        let env = spec.environment("test").expect("test env");
        let g = grants(&spec, env);
        assert!(lint_serve(&spec, env, "desired", &g).is_empty(), "{g:?}");
        let caps = |p: &str| {
            g.iter()
                .find(|x| x.path == p)
                .map(|x| x.capabilities.clone())
        };
        assert_eq!(caps(RAFT_SNAPSHOT), Some(vec!["read".to_owned()]));
        let sign = format!("{}/sign/{}", env.mounts.transit, naming::EVIDENCE_KEY);
        assert_eq!(caps(&sign), Some(vec!["update".to_owned()]));
        let storage: Vec<&str> = g
            .iter()
            .filter(|x| x.path.starts_with("sys/storage"))
            .map(|x| x.path.as_str())
            .collect();
        assert_eq!(storage, [RAFT_AUTOPILOT_STATE, RAFT_SNAPSHOT]);
        // Without a schedule: no snapshot read.
        let plain = warden_spec::parse(SPEC, "warden.toml").expect("example spec");
        let g = grants(&plain, plain.environment("test").expect("test"));
        assert!(!g.iter().any(|x| x.path == RAFT_SNAPSHOT), "{g:?}");
    }
}
