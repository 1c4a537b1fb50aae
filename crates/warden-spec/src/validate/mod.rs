//! Raw spec → validated model. Collects every problem rather than stopping at the first, each
//! pointing at the key that caused it.
//!
//! This module checks the spec's frame (version, naming templates, environments) and ties the
//! sections together; `identities` checks apps, proxies, containers, pipelines and waivers, and
//! `validate_ext` the engines and purposes.

use std::path::PathBuf;

use crate::diag::{Reporter, did_you_mean};
use crate::model::*;
use crate::naming::{Naming, Template, default_mounts as dm, unclean_segment};
use crate::raw::*;
use crate::validate_ext as ext;

pub(crate) mod backup;
mod ca;
pub(crate) mod custody;
mod identities;
mod nodes;

pub(crate) fn validate(raw: RawSpec, r: &mut Reporter<'_>) -> Option<Spec> {
    if *raw.version.get_ref() != 1 {
        r.error_help(
            raw.version.span(),
            "version",
            format!("unsupported spec version {}", raw.version.get_ref()),
            Some("this Warden reads version = 1".to_owned()),
        );
    }
    let naming = naming(raw.naming.as_ref(), r);

    let mut environments = Vec::new();
    for (name, env) in &raw.environments {
        if let Some(e) = environment(name, env, r) {
            environments.push(e);
        }
    }
    if raw.environments.is_empty() {
        r.push(
            0..0,
            None,
            "the spec declares no environments".into(),
            Some("add an [environments.<name>] table".into()),
        );
    }
    let env_names: Vec<String> = raw
        .environments
        .keys()
        .map(|k| k.get_ref().clone())
        .collect();
    let env_refs: Vec<&str> = env_names.iter().map(String::as_str).collect();

    let (mut identities, ident_names) = identities::identities(&raw, &env_refs, r);
    let waivers = identities::waivers(&raw.waivers, &ident_names, r);

    identities.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    let envs_of = |l: &toml::Spanned<Vec<toml::Spanned<String>>>, k: &str, r: &mut Reporter<'_>| {
        env_list(l, k, &env_refs, r)
    };
    let databases = ext::databases(&raw.databases, &env_refs, envs_of, r);
    check_database_refs(&raw, &identities, &databases, r);
    let domains = ext::domains(&raw.domains, &identities, envs_of, r);
    let mut spec = Spec {
        naming: naming?,
        environments,
        identities,
        waivers,
        databases,
        domains,
        purposes: Vec::new(),
        transport: Vec::new(),
        ca: ca::policy(raw.ca.as_ref(), r),
    };
    spec.transport = ext::transport(&raw.transport, &spec.identities, envs_of, r);
    spec.purposes = ext::purposes(&raw.purposes, &spec.credentials(), r);
    Some(spec)
}

/// Each app names at most one database (its role is `postgres/creds/<app>`), which must exist
/// in every environment the app lives in.
fn check_database_refs(
    raw: &RawSpec,
    identities: &[Identity],
    databases: &[Database],
    r: &mut Reporter<'_>,
) {
    let names: Vec<&str> = databases.iter().map(|d| d.name.as_str()).collect();
    for (name, app) in &raw.apps {
        let key = format!("apps.{}.databases", name.get_ref());
        let list = &app.get_ref().databases;
        if list.len() > 1 {
            r.error_help(
                list[1].span(),
                &key,
                "an app gets dynamic credentials from one database",
                Some(
                    "its role is postgres/creds/<app>; split the second database into its own app"
                        .into(),
                ),
            );
        }
        let Some(id) = identities
            .iter()
            .find(|i| i.name.as_str() == name.get_ref())
        else {
            continue;
        };
        for d in list {
            let Some(db) = databases.iter().find(|x| x.name.as_str() == d.get_ref()) else {
                r.error_help(
                    d.span(),
                    &key,
                    format!("unknown database `{}`", d.get_ref()),
                    did_you_mean(d.get_ref(), &names)
                        .or_else(|| Some(format!("declare it as [databases.{}]", d.get_ref()))),
                );
                continue;
            };
            // A database serves the app in the environments both share: one server (and one
            // engine login, which each environment's apply rotates) often exists in `test`
            // only. Sharing none is a mistake.
            if !id.environments.iter().any(|e| db.environments.contains(e)) {
                r.error_help(
                    d.span(),
                    &key,
                    format!(
                        "database `{}` is declared in none of the app's environments ({})",
                        db.name,
                        id.environments
                            .iter()
                            .map(|e| e.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    Some(format!(
                        "add one of them to [databases.{}].environments",
                        db.name
                    )),
                );
            }
        }
    }
}

fn naming(raw: Option<&toml::Spanned<RawNaming>>, r: &mut Reporter<'_>) -> Option<Naming> {
    let default = RawNaming::default();
    let n = raw.map(|s| s.get_ref()).unwrap_or(&default);
    let mut ok = true;
    let mut t = |v: &Option<toml::Spanned<String>>, key: &str, def: &str| -> Template {
        match v {
            None => Template::new(def.to_owned()),
            Some(s) => {
                let text = s.get_ref();
                let stripped = text.replace("<app>", "");
                if !text.contains("<app>") {
                    r.error_help(
                        s.span(),
                        format!("naming.{key}"),
                        "a naming template must contain `<app>`",
                        Some(format!("for example \"{def}\"")),
                    );
                    ok = false;
                } else if stripped.contains('<') || stripped.contains('>') {
                    r.error(
                        s.span(),
                        format!("naming.{key}"),
                        "only the `<app>` placeholder is allowed in naming templates",
                    );
                    ok = false;
                } else if stripped
                    .chars()
                    .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/' | '.')))
                {
                    r.error(s.span(), format!("naming.{key}"), "templates may only contain letters, digits, '-', '_', '.', '/' besides `<app>`");
                    ok = false;
                } else if let Some(seg) = unclean_segment(text) {
                    let what = if seg.is_empty() {
                        "an empty path segment".to_owned()
                    } else {
                        format!("a `{seg}` path segment")
                    };
                    r.error_help(
                        s.span(),
                        format!("naming.{key}"),
                        format!("`{text}` has {what}: a rendered name could leave the identity's own paths"),
                        Some(format!("write names separated by single '/', without '.' or '..' segments and without a leading or trailing '/', for example \"{def}\"")),
                    );
                    ok = false;
                }
                Template::new(text.clone())
            }
        }
    };
    let naming = Naming {
        policy: t(&n.policy, "policy", "<app>"),
        ops_policy: t(&n.ops_policy, "ops_policy", "<app>-ops"),
        kv_prefix: t(&n.kv_prefix, "kv_prefix", "<app>"),
        db_role: t(&n.db_role, "db_role", "<app>"),
        db_group: t(&n.db_group, "db_group", "<app>_role"),
        ci_role: t(&n.ci_role, "ci_role", "gitea_cicd_<app>"),
        pki_role: t(&n.pki_role, "pki_role", "<app>"),
        cert_role: t(&n.cert_role, "cert_role", "<app>"),
        approle_role: t(&n.approle_role, "approle_role", "<app>"),
        identity_role: t(&n.identity_role, "identity_role", "<app>-identity"),
    };
    if naming.pki_role == naming.identity_role {
        let span = raw.map(|s| s.span()).unwrap_or(0..0);
        r.error(
            span,
            "naming.identity_role",
            "the identity role template must differ from the PKI role template",
        );
        ok = false;
    }
    if naming.policy == naming.ops_policy {
        let span = raw.map(|s| s.span()).unwrap_or(0..0);
        r.error(
            span,
            "naming.ops_policy",
            "the ops policy template must differ from the runtime policy template",
        );
        ok = false;
    }
    ok.then_some(naming)
}

fn environment(
    name: &toml::Spanned<String>,
    env: &toml::Spanned<RawEnvironment>,
    r: &mut Reporter<'_>,
) -> Option<Environment> {
    let slug = match Slug::parse(name.get_ref()) {
        Ok(s) => s,
        Err(e) => {
            r.error(name.span(), format!("environments.{}", name.get_ref()), e);
            return None;
        }
    };
    let key = format!("environments.{slug}");
    let e = env.get_ref();
    if let Some(a) = &e.address {
        if !(a.get_ref().starts_with("https://") || a.get_ref().starts_with("http://")) {
            r.error_help(
                a.span(),
                format!("{key}.address"),
                "the address must be a URL",
                Some("for example \"https://vault.example:8200\"".into()),
            );
        } else if a.get_ref().starts_with("http://") {
            r.error_help(
                a.span(),
                format!("{key}.address"),
                "environments are reached over HTTPS only",
                Some("use an https:// address".into()),
            );
        }
    }
    let domain = e.domain.get_ref().trim().to_owned();
    if domain.is_empty() || domain.contains(char::is_whitespace) || domain.starts_with('.') {
        r.error(
            e.domain.span(),
            format!("{key}.domain"),
            "expected a DNS domain like \"test.example.internal\"",
        );
    }
    let mounts = mounts(e.mounts.as_ref().map(|m| m.get_ref()), &key, env.span(), r);
    let ci = e.ci.as_ref().map(|c| {
        let c = c.get_ref();
        CiAuth {
            issuer: c.issuer.get_ref().clone(),
            audience: c.audience.get_ref().clone(),
            validation_pubkeys: c
                .validation_pubkeys
                .iter()
                .map(|p| PathBuf::from(p.get_ref()))
                .collect(),
        }
    });
    let nodes = nodes::nodes(e, &key, r);
    Some(Environment {
        address: e.address.as_ref().map(|a| a.get_ref().clone()),
        nodes,
        ca_cert: e.ca_cert.as_ref().map(|c| PathBuf::from(c.get_ref())),
        runtime_owner: e
            .runtime_owner
            .as_ref()
            .map_or_else(|| format!("warden-{slug}"), |o| o.get_ref().clone()),
        app_root: e.app_root.as_ref().map_or_else(
            || PathBuf::from(format!("/var/lib/warden/{slug}")),
            |p| PathBuf::from(p.get_ref()),
        ),
        domain,
        mounts,
        ci,
        kubernetes: ext::kubernetes_auth(e.kubernetes.as_ref()),
        custody: custody::custody(e.custody.as_ref(), &key, r),
        backup: backup::backup(e.backup.as_ref(), &key, r),
        name: slug,
    })
}

/// An environment's mount paths: the spec's where it names them, [`crate::naming::default_mounts`]
/// elsewhere. Two engines on one path would read each other's data, so that is refused.
fn mounts(
    m: Option<&RawMounts>,
    key: &str,
    span: std::ops::Range<usize>,
    r: &mut Reporter<'_>,
) -> Mounts {
    let mount = |v: Option<&toml::Spanned<String>>,
                 def: &str,
                 field: &str,
                 r: &mut Reporter<'_>|
     -> String {
        match v {
            None => def.to_owned(),
            Some(s) => {
                let p = s.get_ref().trim_matches('/');
                // `+` and `*` are ACL wildcards: a mount named with one would turn every grant
                // Warden renders under it into a wildcard over other mounts.
                if p.is_empty()
                    || p.contains("..")
                    || p.contains(char::is_whitespace)
                    || p.contains(['+', '*'])
                {
                    r.error(
                        s.span(),
                        format!("{key}.mounts.{field}"),
                        "not a valid mount path (it must be non-empty, without `..`, whitespace, `+` or `*`)",
                    );
                }
                p.to_owned()
            }
        }
    };
    let mounts = Mounts {
        pki: mount(m.and_then(|m| m.pki.as_ref()), dm::PKI, "pki", r),
        kv: mount(m.and_then(|m| m.kv.as_ref()), dm::KV, "kv", r),
        kv_v1: mount(m.and_then(|m| m.kv_v1.as_ref()), dm::KV_V1, "kv_v1", r),
        transit: mount(
            m.and_then(|m| m.transit.as_ref()),
            dm::TRANSIT,
            "transit",
            r,
        ),
        database: mount(
            m.and_then(|m| m.database.as_ref()),
            dm::DATABASE,
            "database",
            r,
        ),
        cert_auth: mount(
            m.and_then(|m| m.cert_auth.as_ref()),
            dm::CERT_AUTH,
            "cert_auth",
            r,
        ),
        approle: mount(
            m.and_then(|m| m.approle.as_ref()),
            dm::APPROLE,
            "approle",
            r,
        ),
        jwt: mount(m.and_then(|m| m.jwt.as_ref()), dm::JWT, "jwt", r),
        kubernetes: mount(
            m.and_then(|m| m.kubernetes.as_ref()),
            dm::KUBERNETES,
            "kubernetes",
            r,
        ),
    };
    let paths = [
        &mounts.pki,
        &mounts.kv,
        &mounts.kv_v1,
        &mounts.transit,
        &mounts.database,
    ];
    for (i, a) in paths.iter().enumerate() {
        if paths[..i].contains(a) {
            r.error(
                span.clone(),
                format!("{key}.mounts"),
                format!("two secrets engines share the mount path `{a}`"),
            );
        }
    }
    mounts
}

fn env_list(
    list: &toml::Spanned<Vec<toml::Spanned<String>>>,
    key: &str,
    known: &[&str],
    r: &mut Reporter<'_>,
) -> Vec<Slug> {
    let mut out: Vec<Slug> = Vec::new();
    if list.get_ref().is_empty() {
        r.error(
            list.span(),
            format!("{key}.environments"),
            "an identity must live in at least one environment",
        );
    }
    for e in list.get_ref() {
        let name = e.get_ref();
        if !known.contains(&name.as_str()) {
            r.error_help(
                e.span(),
                format!("{key}.environments"),
                format!("unknown environment `{name}`"),
                did_you_mean(name, known),
            );
            continue;
        }
        if out.iter().any(|o| o.as_str() == name) {
            r.error(
                e.span(),
                format!("{key}.environments"),
                format!("environment `{name}` is listed twice"),
            );
            continue;
        }
        if let Ok(s) = Slug::parse(name) {
            out.push(s);
        }
    }
    out
}
