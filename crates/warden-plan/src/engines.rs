//! Desired state of the secrets engines beyond PKI and KV, and of the purpose registry: transit
//! keys, the database engine (connections and per-app roles), domain-certificate PKI roles, the
//! JWT backend that accepts workloads' service-account tokens, and one registry entry per
//! purpose. Pure, like `desired`.

use serde_json::{Value, json};
use warden_bao::paged;
use warden_spec::naming::policy::MANAGED_MARK;
use warden_spec::naming::{
    self, DELIVERED_PREFIX, EVIDENCE_KEY, META_MOUNT, PAGES_PREFIX, REGISTRY_PREFIX,
    REGISTRY_READER_POLICY, REVEAL_PREFIX,
};
use warden_spec::{Environment, Identity, Spec};

use crate::desired::{EnvInputs, IDENTITY_TOKEN, MOUNT_DESCRIPTION, login_role, pki_role};
use crate::object::{Desired, Kind};

fn object(kind: Kind, path: String, body: Value, identity: Option<&Identity>) -> Desired {
    Desired {
        kind,
        path,
        body,
        identity: identity.map(|i| i.name.to_string()),
        password_file: None,
    }
}

pub(crate) fn transit_keys(env: &Environment, here: &[&Identity], out: &mut Vec<Desired>) {
    for id in here {
        for k in &id.transit_keys {
            out.push(object(
                Kind::TransitKey,
                format!("{}/keys/{}", env.mounts.transit, k.key_name(&id.name)),
                json!({
                    "type": k.key_type.as_str(),
                    "exportable": false,
                    "allow_plaintext_backup": false,
                }),
                Some(id),
            ));
        }
    }
}

/// The creation statement grants the app's group role, so a dynamic user has exactly the
/// group's privileges; `VALID UNTIL` makes PostgreSQL itself refuse the login once the lease
/// has expired, even if revocation never ran.
fn creation_statement(group: &str) -> String {
    format!(
        "CREATE ROLE \"{{{{name}}}}\" WITH LOGIN PASSWORD '{{{{password}}}}' VALID UNTIL '{{{{expiration}}}}' IN ROLE \"{group}\";"
    )
}

pub(crate) fn databases(
    spec: &Spec,
    env: &Environment,
    here: &[&Identity],
    inputs: &EnvInputs,
    out: &mut Vec<Desired>,
) {
    let m = &env.mounts;
    for db in spec
        .databases
        .iter()
        .filter(|d| d.environments.contains(&env.name))
    {
        let users: Vec<&&Identity> = here
            .iter()
            .filter(|i| i.databases.iter().any(|d| d == db.name.as_str()))
            .collect();
        let roles: Vec<String> = users
            .iter()
            .map(|i| spec.naming.db_role.render(&i.name))
            .collect();
        let mut config = object(
            Kind::DatabaseConfig,
            format!("{}/config/{}", m.database, db.name),
            json!({
                "plugin_name": "postgresql-database-plugin",
                "connection_url": db.connection_url,
                "username": db.username,
                "allowed_roles": roles,
                "verify_connection": true,
                "password_authentication": "scram-sha-256",
            }),
            None,
        );
        config.password_file = inputs
            .db_password_files
            .get(db.name.as_str())
            .cloned()
            .or_else(|| Some(db.password_file.clone()));
        out.push(config);
        for id in users {
            out.push(object(
                Kind::DatabaseRole,
                format!("{}/roles/{}", m.database, spec.naming.db_role.render(&id.name)),
                json!({
                    "db_name": db.name.as_str(),
                    "creation_statements": [creation_statement(&spec.naming.db_group.render(&id.name))],
                    "revocation_statements": ["DROP ROLE IF EXISTS \"{{name}}\";"],
                    "default_ttl": db.default_ttl.as_secs(),
                    "max_ttl": db.max_ttl.as_secs(),
                }),
                Some(id),
            ));
        }
    }
}

pub(crate) fn domains(spec: &Spec, env: &Environment, out: &mut Vec<Desired>) {
    for d in spec
        .domains
        .iter()
        .filter(|d| d.environments.contains(&env.name))
    {
        let Some(owner) = spec.identity(d.app.as_str()) else {
            continue;
        };
        let (key_type, key_bits) = d.key_type.vault_params();
        let mut role = pki_role(
            &env.mounts.pki,
            &d.pki_role(),
            vec![d.domain.clone()],
            key_type,
            key_bits,
            d.ttl.as_secs(),
            true,
            false,
            owner,
        );
        if matches!(d.issuer, warden_spec::DomainIssuer::Acme(_)) {
            // OpenBao's ACME refuses a role that does not store what it issues ("role can not
            // be used as NoStore is set to true"); stored, the certificates are also revocable
            // by serial (`warden revoke`).
            role.body["no_store"] = Value::from(false);
        }
        out.push(role);
    }
}

/// Workloads log in with their service-account token through a JWT backend that holds the
/// cluster's token-signing public keys: no TokenReview round trip, so OpenBao needs no route to
/// the cluster's API (ADR 0005).
pub(crate) fn workloads(
    spec: &Spec,
    env: &Environment,
    here: &[&Identity],
    inputs: &EnvInputs,
    out: &mut Vec<Desired>,
) {
    let bound: Vec<&&Identity> = here.iter().filter(|i| i.workload.is_some()).collect();
    let Some(k8s) = &env.kubernetes else { return };
    if bound.is_empty() {
        return;
    }
    let mount = &env.mounts.kubernetes;
    out.push(object(
        Kind::Auth,
        format!("sys/auth/{mount}"),
        json!({ "type": "jwt", "description": MOUNT_DESCRIPTION }),
        None,
    ));
    if !inputs.k8s_pubkeys.is_empty() {
        out.push(object(
            Kind::JwtConfig,
            format!("auth/{mount}/config"),
            json!({ "bound_issuer": k8s.issuer, "jwt_validation_pubkeys": inputs.k8s_pubkeys }),
            None,
        ));
    }
    for id in bound {
        let w = id.workload.as_ref().expect("filtered");
        out.push(login_role(
            Kind::JwtRole,
            format!("auth/{mount}/role/{}", id.name),
            json!({
                "role_type": "jwt",
                "bound_audiences": [k8s.audience],
                "bound_subject": w.subject(),
                "user_claim": "sub",
            }),
            spec,
            id,
            IDENTITY_TOKEN,
        ));
    }
}

/// One registry entry per purpose that governs something in `env`: the contract and the
/// credentials it covers here. Metadata only; no path under the registry ever holds a value.
pub(crate) fn registry(spec: &Spec, env: &Environment, out: &mut Vec<Desired>) {
    let creds = spec.credentials();
    for p in &spec.purposes {
        let covered: Vec<&str> = creds
            .iter()
            .filter(|c| c.environments.contains(&env.name) && p.covers(&c.id))
            .map(|c| c.id.as_str())
            .collect();
        if covered.is_empty() {
            continue;
        }
        // The credentials go to pages (ADR 0014): as one JSON array they would hit OpenBao's
        // 1,000-string body limit at about a thousand apps under one purpose.
        let entry = naming::registry_entry(p.id.as_str());
        let folder = naming::record_pages(&entry).data_path();
        let paged = paged::split(&covered);
        for n in 0..paged.pages.len() {
            out.push(object(
                Kind::RegistryPage,
                paged::page_path(&folder, n),
                paged.page_body(n),
                None,
            ));
        }
        out.push(object(
            Kind::Registry,
            entry.data_path(),
            json!({ "data": {
                "purpose": p.id.as_str(),
                "description": p.description,
                "owner": p.owner,
                "tier": p.tier.as_str(),
                "delivery": p.delivery.as_str(),
                "rotation_interval_secs": p.rotation.interval.as_secs(),
                "rotation_grace_secs": p.rotation.grace.as_secs(),
                "max_age_secs": p.rotation.max_age.as_secs(),
                "custody": p.custody,
                "evidence": p.evidence,
                "revoked": p.revoked,
                "covers": p.covers,
                // An entry written before ADR 0014 holds the list inline; `null` makes the
                // field diff see it and the next apply migrate the entry to pages.
                "credentials": Value::Null,
                "credentials_pages": paged.head,
            }}),
            None,
        ));
    }
    if !spec.purposes.is_empty() {
        let m = META_MOUNT;
        let policy = format!(
            "{MANAGED_MARK}\n# reads the purpose registry and delivery reports: metadata only\n\n\
             path \"{m}/data/{REGISTRY_PREFIX}/*\" {{\n  capabilities = [\"read\"]\n}}\n\n\
             path \"{m}/metadata/{REGISTRY_PREFIX}/*\" {{\n  capabilities = [\"read\", \"list\"]\n}}\n\n\
             path \"{m}/data/{PAGES_PREFIX}/{REGISTRY_PREFIX}/*\" {{\n  capabilities = [\"read\"]\n}}\n\n\
             path \"{m}/data/{DELIVERED_PREFIX}/*\" {{\n  capabilities = [\"read\"]\n}}\n\n\
             path \"{m}/metadata/{DELIVERED_PREFIX}/*\" {{\n  capabilities = [\"read\", \"list\"]\n}}\n\n\
             path \"{m}/detailed-metadata/{DELIVERED_PREFIX}/\" {{\n  capabilities = [\"list\", \"scan\"]\n}}\n\n\
             path \"{m}/data/{REVEAL_PREFIX}/*\" {{\n  capabilities = [\"read\"]\n}}\n\n\
             path \"{m}/metadata/{REVEAL_PREFIX}/*\" {{\n  capabilities = [\"read\", \"list\"]\n}}\n"
        );
        // Evidence packets are signed inside OpenBao; the public key is all a verifier needs.
        out.push(object(
            Kind::TransitKey,
            format!("{}/keys/{EVIDENCE_KEY}", env.mounts.transit),
            json!({ "type": "ed25519", "exportable": false, "allow_plaintext_backup": false }),
            None,
        ));
        out.push(object(
            Kind::Policy,
            format!("sys/policies/acl/{REGISTRY_READER_POLICY}"),
            json!({ "policy": policy }),
            None,
        ));
    }
}

/// Credentials in `env` that no purpose governs; apply refuses while there are any.
pub fn unpurposed(spec: &Spec, env: &Environment) -> Vec<String> {
    spec.credentials()
        .into_iter()
        .filter(|c| c.environments.contains(&env.name) && spec.purpose_of(&c.id).is_none())
        .map(|c| c.id)
        .collect()
}
