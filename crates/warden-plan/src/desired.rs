//! The desired state of one environment, computed from the spec alone (plus the environment's
//! CA certificate, which cert-auth roles pin). Pure: no I/O.

use serde_json::{Value, json};
use warden_spec::naming::{self, IDENTITY_CERT_TTL_SECS, META_MOUNT, identity_common_name};
use warden_spec::{Environment, Identity, IdentityKind, Spec};

use crate::object::{Desired, Kind};
use crate::policy;

/// Description set on the mounts and auth backends Warden creates.
pub(crate) const MOUNT_DESCRIPTION: &str = "managed-by: warden";
/// Token lifetime and renewal limit for identity logins, in seconds.
pub(crate) const IDENTITY_TOKEN: (u64, u64) = (3600, 4 * 3600);
/// A CI job's token lives 15 minutes and is never renewed.
const CI_TOKEN: (u64, u64) = (900, 900);

/// Facts about a live environment that the desired state depends on.
#[derive(Debug, Clone, Default)]
pub struct EnvInputs {
    /// PEM of the CA that issues identity certificates (the environment's PKI intermediate);
    /// every cert-auth role is pinned to it.
    pub identity_ca_pem: String,
    /// PEM public keys that verify CI tokens (contents of the spec's `validation_pubkeys`).
    pub jwt_pubkeys: Vec<String>,
    /// PEM public keys that verify workloads' service-account tokens.
    pub k8s_pubkeys: Vec<String>,
    /// Each database's initial password file, resolved against the spec's directory (read only
    /// by apply, when it creates the connection).
    pub db_password_files: std::collections::BTreeMap<String, std::path::PathBuf>,
    /// The operators' live cert-auth roles to mirror as planner roles, and the planner roles
    /// to delete (ADR 0038; [`crate::planner::live`]). Empty: no planner role is desired.
    pub planner: crate::planner::PlannerInputs,
}

/// Everything `env` should contain for `spec`.
pub fn desired_state(spec: &Spec, env: &Environment, inputs: &EnvInputs) -> Vec<Desired> {
    desired_objects(spec, env, inputs).collect()
}

/// The same objects as [`desired_state`], in the same order, made as they are consumed:
/// first the environment's own objects (mounts, auth backends, engines, the registry, the
/// operator's and serve's objects), then each identity's policy and login roles. `plan_env`
/// compares each object as it comes and keeps only the changes, so the desired state of
/// 10,000 identities (40,000 objects) is never held whole (ADR 0027).
pub fn desired_objects<'a>(
    spec: &'a Spec,
    env: &'a Environment,
    inputs: &'a EnvInputs,
) -> impl Iterator<Item = Desired> + 'a {
    let here: Vec<&Identity> = spec.identities_in(env.name.as_str()).collect();
    let mut out = Vec::new();
    engine_mounts(env, &here, &mut out);
    auth_backends(env, &here, inputs, &mut out);

    crate::engines::transit_keys(env, &here, &mut out);
    crate::engines::databases(spec, env, &here, inputs, &mut out);
    crate::engines::domains(spec, env, &mut out);
    crate::engines::workloads(spec, env, &here, inputs, &mut out);
    crate::engines::registry(spec, env, &mut out);
    out.push(crate::operator::desired(spec, env));
    out.push(crate::operator::desired_pki_role(env));
    out.extend(crate::serve::desired(spec, env, inputs));
    out.extend(crate::planner::desired(env, inputs));
    for holder in spec.transport_in(env.name.as_str()) {
        out.push(transport_role(env, holder));
    }
    out.into_iter().chain(
        here.into_iter()
            .flat_map(move |id| identity_objects(spec, env, inputs, id)),
    )
}

/// One identity's objects: its policy, then its login roles.
fn identity_objects(
    spec: &Spec,
    env: &Environment,
    inputs: &EnvInputs,
    id: &Identity,
) -> Vec<Desired> {
    let grants = policy::grants(spec, env, id);
    let mut out = vec![Desired {
        kind: Kind::Policy,
        path: format!("sys/policies/acl/{}", naming::policy_name(spec, id)),
        body: json!({ "policy": policy::render(id, &grants) }),
        identity: Some(id.name.to_string()),
        password_file: None,
    }];
    match id.kind {
        IdentityKind::App | IdentityKind::Proxy => cert_login(spec, env, id, inputs, &mut out),
        IdentityKind::Container => out.push(approle_login(spec, env, id)),
        IdentityKind::Pipeline => out.extend(ci_login(spec, env, id)),
    }
    out
}

/// Secrets engines. The PKI mount is the environment's bootstrap, not ours to create.
fn engine_mounts(env: &Environment, here: &[&Identity], out: &mut Vec<Desired>) {
    let m = &env.mounts;
    let mount = |path: &str, ty: &str, version: Option<&str>| {
        let mut body = json!({ "type": ty, "description": MOUNT_DESCRIPTION });
        if let Some(v) = version {
            body["options"] = json!({ "version": v });
        }
        Desired {
            kind: Kind::Mount,
            path: format!("sys/mounts/{path}"),
            body,
            identity: None,
            password_file: None,
        }
    };
    out.push(mount(META_MOUNT, "kv", Some("2")));
    out.push(mount(&m.kv, "kv", Some("2")));
    out.push(mount(&m.kv_v1, "kv", Some("1")));
    out.push(mount(&m.transit, "transit", None));
    if here.iter().any(|i| !i.databases.is_empty()) {
        out.push(mount(&m.database, "database", None));
    }
}

/// Auth backends, only where some identity uses them, so an environment exposes no login it
/// does not need.
fn auth_backends(
    env: &Environment,
    here: &[&Identity],
    inputs: &EnvInputs,
    out: &mut Vec<Desired>,
) {
    let m = &env.mounts;
    let has = |k: IdentityKind| here.iter().any(|i| i.kind == k);
    let auth = |path: &str, ty: &str| Desired {
        kind: Kind::Auth,
        path: format!("sys/auth/{path}"),
        body: json!({ "type": ty, "description": MOUNT_DESCRIPTION }),
        identity: None,
        password_file: None,
    };
    if has(IdentityKind::App) || has(IdentityKind::Proxy) {
        out.push(auth(&m.cert_auth, "cert"));
    }
    if has(IdentityKind::Container) {
        out.push(auth(&m.approle, "approle"));
    }
    if has(IdentityKind::Pipeline) {
        out.push(auth(&m.jwt, "jwt"));
        if let (Some(ci), false) = (&env.ci, inputs.jwt_pubkeys.is_empty()) {
            out.push(Desired {
                kind: Kind::JwtConfig,
                path: format!("auth/{}/config", m.jwt),
                body: json!({ "bound_issuer": ci.issuer, "jwt_validation_pubkeys": inputs.jwt_pubkeys }),
                identity: None,
                password_file: None,
            });
        }
    }
}

/// An app or proxy: its leaf-certificate role (apps), the role that issues its identity
/// certificate, and the cert-auth role that logs that certificate in.
fn cert_login(
    spec: &Spec,
    env: &Environment,
    id: &Identity,
    inputs: &EnvInputs,
    out: &mut Vec<Desired>,
) {
    let (m, n) = (&env.mounts, &spec.naming);
    if let Some(cert) = &id.certificate {
        let mut names: Vec<String> = vec![warden_spec::CertProfile::render(
            &cert.common_name,
            &id.name,
            env,
        )];
        names.extend(
            cert.sans
                .iter()
                .map(|s| warden_spec::CertProfile::render(s, &id.name, env)),
        );
        let (key_type, key_bits) = cert.key_type.vault_params();
        out.push(pki_role(
            &m.pki,
            &n.pki_role.render(&id.name),
            names,
            key_type,
            key_bits,
            cert.ttl.as_secs(),
            true,
            false,
            id,
        ));
    }
    let cn = identity_common_name(id, env);
    let mut identity_role = pki_role(
        &m.pki,
        &n.identity_role.render(&id.name),
        vec![cn.clone()],
        "ec",
        256,
        IDENTITY_CERT_TTL_SECS,
        false,
        true,
        id,
    );
    // Identity certificates are stored (ADR 0015): OpenBao revokes a certificate by serial only
    // if it kept a copy, and `warden revoke identity` knows serials from delivery reports. They
    // are issued once a month per identity, so storing them costs nothing that matters.
    identity_role.body["no_store"] = Value::from(false);
    out.push(identity_role);
    out.push(login_role(
        Kind::CertRole,
        format!(
            "auth/{}/certs/{}",
            m.cert_auth,
            n.cert_role.render(&id.name)
        ),
        json!({
            "certificate": inputs.identity_ca_pem.trim(),
            "allowed_common_names": [cn],
            "display_name": id.name.as_str(),
        }),
        spec,
        id,
        IDENTITY_TOKEN,
    ));
}

/// A container: the AppRole role its secret-id logs in with.
fn approle_login(spec: &Spec, env: &Environment, id: &Identity) -> Desired {
    login_role(
        Kind::AppRole,
        format!(
            "auth/{}/role/{}",
            env.mounts.approle,
            spec.naming.approle_role.render(&id.name)
        ),
        json!({
            "secret_id_ttl": id.secret_id_ttl.map_or(86_400, |t| t.as_secs()),
            "bind_secret_id": true,
        }),
        spec,
        id,
        IDENTITY_TOKEN,
    )
}

/// A CI pipeline: the JWT role bound to its repository and branches; none where the
/// environment trusts no CI identity provider.
fn ci_login(spec: &Spec, env: &Environment, id: &Identity) -> Option<Desired> {
    let (Some(p), Some(ci)) = (&id.pipeline, &env.ci) else {
        return None;
    };
    let refs: Vec<String> = p
        .branches
        .iter()
        .map(|b| format!("refs/heads/{b}"))
        .collect();
    Some(login_role(
        Kind::JwtRole,
        format!(
            "auth/{}/role/{}",
            env.mounts.jwt,
            spec.naming.ci_role.render(&p.app)
        ),
        json!({
            "role_type": "jwt",
            "bound_audiences": [ci.audience],
            "bound_claims": { "repository": p.repository, "ref": refs },
            "bound_claims_type": "string",
            "user_claim": "sub",
        }),
        spec,
        id,
        CI_TOKEN,
    ))
}

/// A login role at `path` for `id`: `role`'s own fields plus the token it hands out, which
/// carries the identity's policy only (OpenBao's templated `default` policy doubles the cost of
/// every request; docs/openbao.md, "Costs that shaped the design"), is never periodic, and
/// lives `ttl` seconds, renewable up to `max_ttl`.
pub(crate) fn login_role(
    kind: Kind,
    path: String,
    mut role: Value,
    spec: &Spec,
    id: &Identity,
    (ttl, max_ttl): (u64, u64),
) -> Desired {
    let token = json!({
        "token_policies": [naming::policy_name(spec, id)],
        "token_no_default_policy": true,
        "token_period": 0,
        "token_explicit_max_ttl": 0,
        "token_ttl": ttl,
        "token_max_ttl": max_ttl,
    });
    if let (Some(role), Value::Object(token)) = (role.as_object_mut(), token) {
        role.extend(token);
    }
    Desired {
        kind,
        path,
        body: role,
        identity: Some(id.name.to_string()),
        password_file: None,
    }
}

/// The PKI role that signs `holder`'s transport certificates: one exact client-only name
/// (`<holder>.transport.<domain>`, which no cert-auth role accepts), the `warden-transport` OU,
/// the holder's lifetime, and stored serials (`no_store = false`) so `warden transport revoke`
/// can find and revoke every certificate the holder was given (ADR 0010).
fn transport_role(env: &Environment, holder: &warden_spec::TransportHolder) -> Desired {
    let ttl = holder.ttl.as_secs();
    let mut body = json!({
        "allowed_domains": [naming::transport_common_name(&holder.name, env)],
        "allow_bare_domains": true,
        "allow_subdomains": false,
        "server_flag": false,
        "client_flag": true,
        "key_type": "any",
        "ttl": ttl,
        "max_ttl": ttl,
        "no_store": false,
        "require_cn": true,
        "ou": [naming::TRANSPORT_OU],
        "code_signing_flag": false,
        "email_protection_flag": false,
        "basic_constraints_valid_for_non_ca": false,
        "allowed_uri_sans": [],
        "allowed_other_sans": [],
        "ext_key_usage": [],
        "ext_key_usage_oids": [],
        "allowed_domains_template": false,
        "issuer_ref": "default",
    });
    lock_names(&mut body);
    Desired {
        kind: Kind::PkiRole,
        path: format!(
            "{}/roles/{}",
            env.mounts.pki,
            naming::transport_role(&holder.name)
        ),
        body,
        identity: Some(holder.name.to_string()),
        password_file: None,
    }
}

/// The name rules every PKI role Warden writes shares, identities' and operators' alike: no
/// glob, wildcard or arbitrary names, no localhost or IP SANs, hostnames enforced. Each role
/// adds which domains it allows.
///
/// The requester may not choose the validity window either: OpenBao honours a sign request's
/// `not_after` even past the role's `max_ttl` (verified on 2.7.2), so without
/// `not_after_bound = "forbid"` any token allowed to sign (a carried workload renewing its
/// holder's transport certificate, an app renewing its identity) could mint a certificate that
/// lives until the intermediate expires, and the short lifetime is what ends a transport
/// certificate (the listener reads no CRL, ADR 0010). `not_before` is forbidden alike, so no
/// certificate claims to predate its issue.
pub(crate) fn lock_names(body: &mut Value) {
    for (key, value) in [
        ("allow_glob_domains", false),
        ("allow_wildcard_certificates", false),
        ("allow_any_name", false),
        ("allow_localhost", false),
        ("allow_ip_sans", false),
        ("enforce_hostnames", true),
    ] {
        body[key] = Value::from(value);
    }
    for key in ["not_after_bound", "not_before_bound"] {
        body[key] = Value::from("forbid");
    }
}

#[allow(clippy::too_many_arguments)] // one call site per role flavour; a struct would only rename the list
pub(crate) fn pki_role(
    mount: &str,
    role: &str,
    names: Vec<String>,
    key_type: &str,
    key_bits: u32,
    ttl: u64,
    server: bool,
    client: bool,
    id: &Identity,
) -> Desired {
    let mut body = json!({
        "allowed_domains": names,
        "allow_bare_domains": true,
        "allow_subdomains": false,
        "server_flag": server,
        "client_flag": client,
        "key_type": key_type,
        "ttl": ttl,
        "max_ttl": ttl,
        "no_store": true,
        "require_cn": true,
        // Pinned although they are OpenBao's defaults: an operator widening them by hand must
        // show up as drift.
        "code_signing_flag": false,
        "email_protection_flag": false,
        "basic_constraints_valid_for_non_ca": false,
        "allowed_uri_sans": [],
        "allowed_other_sans": [],
        "ext_key_usage": [],
        "ext_key_usage_oids": [],
        "allowed_domains_template": false,
        "issuer_ref": "default",
    });
    lock_names(&mut body);
    if key_type != "ed25519" {
        body["key_bits"] = Value::from(key_bits);
    }
    Desired {
        kind: Kind::PkiRole,
        path: format!("{mount}/roles/{role}"),
        body,
        identity: Some(id.name.to_string()),
        password_file: None,
    }
}
