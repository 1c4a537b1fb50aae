//! ACL policies as text: rendering the least-privilege policy of each identity. Reading
//! policies back (ours or anyone's) is [`warden_spec::naming::policy`]; policy names are
//! [`warden_spec::naming::policy_name`].
//!
//! Every grant is an exact path under the identity's own names. No wildcards are emitted: a
//! policy that reads `kvv2/data/billing/config` cannot read `kvv2/data/billing/anything-else`.

use warden_spec::naming::policy::{Grant, grant};
use warden_spec::naming::{self, KvEntry};
use warden_spec::{Environment, Identity, IdentityKind, Spec};

/// The grants of `identity`'s policy in `env` (its runtime policy; for a pipeline, the ops
/// policy of its app).
pub fn grants(spec: &Spec, env: &Environment, identity: &Identity) -> Vec<Grant> {
    let m = &env.mounts;
    let n = &spec.naming;
    let me = &identity.name;
    // Identity tokens carry no `default` policy (it doubles server cost per request), and
    // `default` is what normally lets a token look itself up, renew and revoke itself. Agents
    // need exactly those three, so every identity gets them by exact path.
    let mut out = vec![
        grant("auth/token/lookup-self".to_owned(), &["read"]),
        grant("auth/token/renew-self".to_owned(), &["update"]),
        grant("auth/token/revoke-self".to_owned(), &["update"]),
        // `warden doctor` asks, on the host and as the identity, which of the grants its
        // agent needs it holds and that a sample it must not have is denied. The answer is
        // only this token's own capabilities: it reveals nothing a request would not.
        grant("sys/capabilities-self".to_owned(), &["update"]),
    ];
    // A reveal-once secret is never stored in KV (it exists only behind its wrapping token),
    // so there is nothing to grant.
    let revealed_once = |secret: &str| {
        spec.purpose_of(&format!("{me}/secret/{secret}"))
            .is_some_and(|p| p.delivery == warden_spec::Delivery::RevealOnce)
    };
    let kv_read = |out: &mut Vec<Grant>, entry: KvEntry| {
        out.push(grant(entry.data_path(), &["read"]));
        out.push(grant(entry.metadata_path(), &["read"]));
    };
    // A container or pipeline may renew the transport certificate of each holder that carries
    // it here: its agent (or job) keeps the holder's short-lived certificate alive without the
    // certificate itself carrying any permission (ADR 0010).
    for holder in spec
        .transport_in(env.name.as_str())
        .filter(|h| h.carries.contains(me))
    {
        out.push(grant(
            format!("{}/sign/{}", m.pki, naming::transport_role(&holder.name)),
            &["create", "update"],
        ));
    }
    match identity.kind {
        IdentityKind::App => {
            out.push(grant(
                format!("{}/sign/{}", m.pki, n.pki_role.render(me)),
                &["create", "update"],
            ));
            out.push(grant(
                format!("{}/sign/{}", m.pki, n.identity_role.render(me)),
                &["create", "update"],
            ));
            out.push(grant(format!("{}/cert/ca_chain", m.pki), &["read"]));
            for s in identity.secrets.iter().filter(|s| !revealed_once(s)) {
                kv_read(&mut out, naming::secret(n, m, me, s));
            }
            for k in &identity.signing_keys {
                kv_read(&mut out, naming::signing_key(n, m, me, k.name.as_str()));
            }
            for k in &identity.transit_keys {
                let key = k.key_name(me);
                let ops: [&str; 2] = if k.key_type.signs() {
                    ["sign", "verify"]
                } else {
                    ["encrypt", "decrypt"]
                };
                for op in ops {
                    out.push(grant(format!("{}/{op}/{key}", m.transit), &["update"]));
                }
            }
            for d in spec
                .domains
                .iter()
                .filter(|d| d.app == *me && d.environments.contains(&env.name))
            {
                kv_read(&mut out, naming::domain_cert(m, &d.domain));
            }
            if !identity.databases.is_empty() {
                out.push(grant(
                    format!("{}/creds/{}", m.database, n.db_role.render(me)),
                    &["read"],
                ));
                // Renewing and revoking its own leases by id (the agent keeps them current and
                // revokes the previous one on restart); lease ids are unguessable.
                out.push(grant("sys/leases/renew".to_owned(), &["update"]));
                out.push(grant("sys/leases/revoke".to_owned(), &["update"]));
            }
        }
        IdentityKind::Proxy => {
            // A proxy keeps trust material current and renews its own identity; it can never
            // sign a certificate for anyone else.
            out.push(grant(format!("{}/cert/ca_chain", m.pki), &["read"]));
            out.push(grant(format!("{}/ca_chain", m.pki), &["read"]));
            // The CRL, delivered as an output (revoked peers refused).
            out.push(grant(format!("{}/cert/crl", m.pki), &["read"]));
            out.push(grant(
                format!("{}/sign/{}", m.pki, n.identity_role.render(me)),
                &["create", "update"],
            ));
        }
        IdentityKind::Container => {
            for s in identity.secrets.iter().filter(|s| !revealed_once(s)) {
                kv_read(&mut out, naming::secret(n, m, me, s));
            }
        }
        IdentityKind::Pipeline => {
            if let Some(app) = identity
                .pipeline
                .as_ref()
                .and_then(|p| spec.identity(p.app.as_str()))
            {
                let mut secrets: Vec<&str> = app.secrets.iter().map(String::as_str).collect();
                if !secrets.contains(&"config") {
                    secrets.insert(0, "config");
                }
                let entries = secrets
                    .into_iter()
                    .map(|s| naming::secret(n, m, &app.name, s))
                    .chain(
                        app.signing_keys
                            .iter()
                            .map(|k| naming::signing_key(n, m, &app.name, k.name.as_str())),
                    );
                for entry in entries {
                    out.push(grant(entry.data_path(), &["create", "update", "read"]));
                    // `update` on metadata: writers record who changed which keys in the
                    // secret's custom metadata (KV v2 keeps no author).
                    out.push(grant(entry.metadata_path(), &["read", "update"]));
                }
                for k in &app.transit_keys {
                    out.push(grant(
                        format!("{}/keys/{}/rotate", m.transit, k.key_name(&app.name)),
                        &["update"],
                    ));
                }
            }
        }
    }
    if identity.kind != IdentityKind::Pipeline && !spec.purposes.is_empty() {
        // Each agent reports what it actually delivered to its own narrow path, so posture
        // shows what is deployed, not only what OpenBao issued.
        out.push(grant(
            naming::delivery_report(me.as_str()).data_path(),
            &["create", "update", "read"],
        ));
        // As its entry's custom metadata, which posture reads for every identity in one scan
        // (ADR 0036); the data path above stays for a report too big for the metadata.
        // Only `custom_metadata`: the same path would otherwise let the agent set its entry's
        // `max_versions` (OpenBao keeps the larger of the entry's and the mount's) and fill the
        // storage with versions of its data report.
        out.push(
            grant(
                naming::delivery_report(me.as_str()).metadata_path(),
                &["create", "update", "read"],
            )
            .only_parameters(&["custom_metadata"]),
        );
        // The agent reads the registry entry of the purpose governing its certificate before
        // every issuance (fail closed: revoked, or outside interval + grace, refuses).
        if identity.certificate.is_some()
            && let Some(p) = spec.purpose_of(&format!("{me}/certificate"))
        {
            out.push(grant(
                naming::registry_entry(p.id.as_str()).data_path(),
                &["read"],
            ));
        }
        // Likewise for each signing key its agent renders as files (`agent_file` delivery):
        // the agent checks the key's purpose before delivering a rotation.
        for p in identity
            .signing_keys
            .iter()
            .filter_map(|k| spec.purpose_of(&format!("{me}/signing-key/{}", k.name)))
            .filter(|p| p.delivery == warden_spec::Delivery::AgentFile)
        {
            let path = naming::registry_entry(p.id.as_str()).data_path();
            if !out.iter().any(|g| g.path == path) {
                out.push(grant(path, &["read"]));
            }
        }
        // `warden-agent exec` checks the purpose of each secret it puts into its command's
        // environment before every new value, as for certificates.
        let mut exec_purposes: Vec<&str> = identity
            .secrets
            .iter()
            .filter_map(|s| spec.purpose_of(&format!("{me}/secret/{s}")))
            .filter(|p| p.delivery == warden_spec::Delivery::ExecEnv)
            .map(|p| p.id.as_str())
            .collect();
        exec_purposes.sort_unstable();
        exec_purposes.dedup();
        for p in exec_purposes {
            let path = naming::registry_entry(p).data_path();
            if !out.iter().any(|g| g.path == path) {
                out.push(grant(path, &["read"]));
            }
        }
    }
    out
}

/// Renders a policy document.
pub fn render(identity: &Identity, grants: &[Grant]) -> String {
    naming::policy::render(
        &format!("identity: {} ({})", identity.name, identity.kind.as_str()),
        grants,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = include_str!("../../../examples/lab/warden.toml");

    fn registry_reads(spec: &Spec, who: &str) -> Vec<String> {
        let env = spec.environment("test").expect("test env");
        grants(spec, env, spec.identity(who).expect("identity"))
            .into_iter()
            .filter(|g| g.path.contains("/registry/"))
            .map(|g| g.path)
            .collect()
    }

    /// Issue 17 (exec_env): `warden-agent exec` checks the purpose of each secret it puts into
    /// its command's environment, so the identity may read that purpose's registry entry — and
    /// only when the purpose delivers through exec_env.
    #[test]
    fn an_exec_env_secret_grants_its_purposes_registry_entry() {
        let spec = warden_spec::parse(SPEC, "warden.toml").expect("example spec");
        let before = registry_reads(&spec, "billing");
        assert!(
            !before.iter().any(|p| p.ends_with("/billing-stripe")),
            "{before:?}"
        );
        let text = SPEC.replace(
            "delivery    = \"agent_file\"\nrotation    = { interval = \"30d\", grace = \"7d\" }\ncustody     = \"issued by the provider's dashboard",
            "delivery    = \"exec_env\"\nrotation    = { interval = \"30d\", grace = \"7d\" }\ncustody     = \"issued by the provider's dashboard",
        );
        assert_ne!(text, SPEC, "the example spec changed shape");
        let spec = warden_spec::parse(&text, "warden.toml").expect("exec spec");
        let after = registry_reads(&spec, "billing");
        let stripe = naming::registry_entry("billing-stripe").data_path();
        assert_eq!(
            after.iter().filter(|p| **p == stripe).count(),
            1,
            "{after:?}"
        );
        assert_eq!(after.len(), before.len() + 1, "{after:?}");
    }

    fn billing_grants(text: &str) -> Vec<String> {
        let spec = warden_spec::parse(text, "warden.toml").expect("spec");
        let env = spec.environment("test").expect("test");
        let id = spec.identity("billing").expect("billing");
        grants(&spec, env, id).into_iter().map(|g| g.path).collect()
    }

    /// An agent that renders a signing key reads its purpose's registry entry before
    /// delivering a rotation; a key read through the API needs no such grant.
    #[test]
    fn a_signing_key_delivered_as_files_grants_its_purpose_entry() {
        let entry = naming::registry_entry("token-signing").data_path();
        assert!(!billing_grants(SPEC).contains(&entry));
        let files = SPEC.replacen(
            "delivery    = \"api\"\nrotation    = { interval = \"90d\"",
            "delivery    = \"agent_file\"\nrotation    = { interval = \"90d\"",
            1,
        );
        assert_ne!(files, SPEC);
        let paths = billing_grants(&files);
        assert_eq!(
            paths.iter().filter(|p| **p == entry).count(),
            1,
            "{paths:?}"
        );
    }
}
