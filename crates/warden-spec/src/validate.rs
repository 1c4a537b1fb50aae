//! Raw spec → validated model. Collects every problem rather than stopping at the first, each
//! pointing at the key that caused it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::diag::{Reporter, did_you_mean};
use crate::model::*;
use crate::naming::{Naming, Template, default_mounts as dm, unclean_segment};
use crate::raw::*;
use crate::validate_ext as ext;

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

    // Identity names are unique across kinds: a shared name would be a shared identity.
    let mut seen: BTreeMap<String, (&'static str, std::ops::Range<usize>)> = BTreeMap::new();
    let mut identities = Vec::new();
    let mut claim = |name: &toml::Spanned<String>,
                     kind: &'static str,
                     table: &str,
                     r: &mut Reporter<'_>|
     -> Option<Slug> {
        let slug = match Slug::parse(name.get_ref()) {
            Ok(s) => s,
            Err(e) => {
                r.error(name.span(), format!("{table}.{}", name.get_ref()), e);
                return None;
            }
        };
        if let Some((other, _)) = seen.get(name.get_ref()) {
            r.error_help(
                name.span(),
                format!("{table}.{}", name.get_ref()),
                format!("`{}` is already declared as {other}", name.get_ref()),
                Some("every app, proxy, container and pipeline needs its own name: identities are never shared".into()),
            );
            return None;
        }
        seen.insert(name.get_ref().clone(), (kind, name.span()));
        Some(slug)
    };

    for (name, app) in &raw.apps {
        let Some(slug) = claim(name, "an app", "apps", r) else {
            continue;
        };
        let key = format!("apps.{slug}");
        let envs = env_list(&app.get_ref().environments, &key, &env_refs, r);
        let certificate = certificate(app.get_ref().certificate.as_ref(), &key, r);
        let secrets = secret_names(&app.get_ref().secrets, &key, r);
        let databases = secret_names(&app.get_ref().databases, &format!("{key}.databases"), r);
        let reload = reload(app.get_ref().reload.as_ref(), &key, r);
        let transit_keys = ext::transit_keys(&app.get_ref().transit_keys, &key, r);
        let signing_keys = ext::signing_keys(&app.get_ref().signing_keys, &key, r);
        let workload = ext::workload(
            app.get_ref().kubernetes.as_ref(),
            &key,
            &envs,
            &raw.environments,
            r,
        );
        identities.push(Identity {
            name: slug,
            kind: IdentityKind::App,
            environments: envs,
            certificate: Some(certificate),
            secrets,
            databases,
            reload,
            pipeline: None,
            secret_id_ttl: None,
            transit_keys,
            signing_keys,
            workload,
        });
    }
    for (name, proxy) in &raw.proxies {
        let Some(slug) = claim(name, "a proxy", "proxies", r) else {
            continue;
        };
        let key = format!("proxies.{slug}");
        let envs = env_list(&proxy.get_ref().environments, &key, &env_refs, r);
        let reload = reload(proxy.get_ref().reload.as_ref(), &key, r);
        identities.push(Identity {
            name: slug,
            kind: IdentityKind::Proxy,
            environments: envs,
            certificate: None,
            secrets: Vec::new(),
            databases: Vec::new(),
            reload,
            pipeline: None,
            secret_id_ttl: None,
            transit_keys: Vec::new(),
            signing_keys: Vec::new(),
            workload: None,
        });
    }
    for (name, c) in &raw.containers {
        let Some(slug) = claim(name, "a container", "containers", r) else {
            continue;
        };
        let key = format!("containers.{slug}");
        let envs = env_list(&c.get_ref().environments, &key, &env_refs, r);
        let secrets = secret_names(&c.get_ref().secrets, &key, r);
        let secret_id_ttl = c
            .get_ref()
            .secret_id_ttl
            .as_ref()
            .and_then(|t| ttl(t, &format!("{key}.secret_id_ttl"), r));
        let workload = ext::workload(
            c.get_ref().kubernetes.as_ref(),
            &key,
            &envs,
            &raw.environments,
            r,
        );
        identities.push(Identity {
            name: slug,
            kind: IdentityKind::Container,
            environments: envs,
            certificate: None,
            secrets,
            databases: Vec::new(),
            reload: None,
            pipeline: None,
            secret_id_ttl: Some(
                secret_id_ttl.unwrap_or(Ttl(std::time::Duration::from_secs(24 * 3600))),
            ),
            transit_keys: Vec::new(),
            signing_keys: Vec::new(),
            workload,
        });
    }
    let app_names: Vec<String> = raw.apps.keys().map(|k| k.get_ref().clone()).collect();
    let app_refs: Vec<&str> = app_names.iter().map(String::as_str).collect();
    for (name, p) in &raw.pipelines {
        let Some(slug) = claim(name, "a pipeline", "pipelines", r) else {
            continue;
        };
        let key = format!("pipelines.{slug}");
        let p = p.get_ref();
        let envs = env_list(&p.environments, &key, &env_refs, r);
        let app_name = p.app.as_ref().map(|a| (a.get_ref().clone(), a.span()));
        let app = match &app_name {
            Some((a, span)) if !app_refs.contains(&a.as_str()) => {
                r.error_help(
                    span.clone(),
                    format!("{key}.app"),
                    format!("unknown app `{a}`"),
                    did_you_mean(a, &app_refs),
                );
                None
            }
            Some((a, _)) => Slug::parse(a).ok(),
            None => {
                r.error_help(
                    name.span(),
                    &key,
                    "a pipeline must name the app whose config it writes",
                    Some("add app = \"<app>\"".into()),
                );
                None
            }
        };
        for env in &envs {
            let has_ci = raw
                .environments
                .iter()
                .any(|(n, e)| n.get_ref() == env.as_str() && e.get_ref().ci.is_some());
            if !has_ci {
                r.error_help(
                    p.environments.span(),
                    format!("{key}.environments"),
                    format!("environment `{env}` has no CI identity provider"),
                    Some(format!(
                        "add [environments.{env}.ci] with issuer and audience"
                    )),
                );
            }
        }
        if p.repository.get_ref().is_empty() || !p.repository.get_ref().contains('/') {
            r.error(
                p.repository.span(),
                format!("{key}.repository"),
                "expected `owner/name`",
            );
        }
        let branches: Vec<String> = if p.branches.is_empty() {
            vec!["main".to_owned()]
        } else {
            p.branches.iter().map(|b| b.get_ref().clone()).collect()
        };
        for b in &p.branches {
            if b.get_ref().is_empty() || b.get_ref().contains('*') {
                r.error(
                    b.span(),
                    format!("{key}.branches"),
                    "branches are exact names; wildcards are not allowed",
                );
            }
        }
        if let Some(app) = app {
            // The pipeline may only live where its app lives.
            if let Some(a) = identities
                .iter()
                .find(|i| i.kind == IdentityKind::App && i.name == app)
            {
                for env in &envs {
                    if !a.in_env(env.as_str()) {
                        r.error(
                            p.environments.span(),
                            format!("{key}.environments"),
                            format!("app `{app}` does not live in `{env}`"),
                        );
                    }
                }
            }
            identities.push(Identity {
                name: slug,
                kind: IdentityKind::Pipeline,
                environments: envs,
                certificate: None,
                secrets: Vec::new(),
                databases: Vec::new(),
                reload: None,
                pipeline: Some(PipelineBinding {
                    app,
                    repository: p.repository.get_ref().clone(),
                    branches,
                }),
                secret_id_ttl: None,
                transit_keys: Vec::new(),
                signing_keys: Vec::new(),
                workload: None,
            });
        }
    }

    let ident_names: Vec<String> = seen.keys().cloned().collect();
    let ident_refs: Vec<&str> = ident_names.iter().map(String::as_str).collect();
    let mut waivers = Vec::new();
    for w in &raw.waivers {
        let w = w.get_ref();
        if !LINT_RULES.contains(&w.rule.get_ref().as_str()) {
            r.error_help(
                w.rule.span(),
                "waivers.rule",
                format!("unknown lint rule `{}`", w.rule.get_ref()),
                did_you_mean(w.rule.get_ref(), &LINT_RULES),
            );
        }
        if !ident_refs.contains(&w.identity.get_ref().as_str()) {
            r.error_help(
                w.identity.span(),
                "waivers.identity",
                format!("unknown identity `{}`", w.identity.get_ref()),
                did_you_mean(w.identity.get_ref(), &ident_refs),
            );
        }
        if w.reason.get_ref().trim().len() < 10 {
            r.error(
                w.reason.span(),
                "waivers.reason",
                "a waiver needs a real reason (at least a sentence)",
            );
        }
        if let Ok(identity) = Slug::parse(w.identity.get_ref()) {
            waivers.push(Waiver {
                rule: w.rule.get_ref().clone(),
                identity,
                reason: w.reason.get_ref().clone(),
            });
        }
    }

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
    };
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
            for e in &id.environments {
                if !db.environments.contains(e) {
                    r.error(
                        d.span(),
                        &key,
                        format!(
                            "database `{}` is not declared in environment `{e}`",
                            db.name
                        ),
                    );
                }
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
    let m = e.mounts.as_ref().map(|m| m.get_ref());
    let mount = |v: Option<&toml::Spanned<String>>,
                 def: &str,
                 field: &str,
                 r: &mut Reporter<'_>|
     -> String {
        match v {
            None => def.to_owned(),
            Some(s) => {
                let p = s.get_ref().trim_matches('/');
                if p.is_empty() || p.contains("..") || p.contains(char::is_whitespace) {
                    r.error(
                        s.span(),
                        format!("{key}.mounts.{field}"),
                        "not a valid mount path",
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
                env.span(),
                format!("{key}.mounts"),
                format!("two secrets engines share the mount path `{a}`"),
            );
        }
    }
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
    Some(Environment {
        address: e.address.as_ref().map(|a| a.get_ref().clone()),
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
        name: slug,
    })
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

fn certificate(
    raw: Option<&toml::Spanned<RawCertificate>>,
    key: &str,
    r: &mut Reporter<'_>,
) -> CertProfile {
    let mut profile = CertProfile {
        common_name: "<app>.<domain>".to_owned(),
        sans: Vec::new(),
        ttl: Ttl(std::time::Duration::from_secs(24 * 3600)),
        key_type: KeyType::EcP256,
    };
    let Some(raw) = raw else { return profile };
    let c = raw.get_ref();
    let key = format!("{key}.certificate");
    if let Some(cn) = &c.common_name {
        check_name_template(cn, &format!("{key}.common_name"), r);
        profile.common_name = cn.get_ref().clone();
    }
    for s in &c.sans {
        check_name_template(s, &format!("{key}.sans"), r);
        profile.sans.push(s.get_ref().clone());
    }
    if let Some(ttl) = c
        .ttl
        .as_ref()
        .and_then(|t| ttl(t, &format!("{key}.ttl"), r))
    {
        profile.ttl = ttl;
    }
    if let Some(k) = &c.key_type {
        match KeyType::parse(k.get_ref()) {
            Some(kt) => profile.key_type = kt,
            None => r.error_help(
                k.span(),
                format!("{key}.key_type"),
                format!("unknown key type `{}`", k.get_ref()),
                did_you_mean(k.get_ref(), &KeyType::NAMES),
            ),
        }
    }
    profile
}

fn check_name_template(s: &toml::Spanned<String>, key: &str, r: &mut Reporter<'_>) {
    let stripped = s
        .get_ref()
        .replace("<app>", "a")
        .replace("<env>", "e")
        .replace("<domain>", "d");
    if stripped.is_empty()
        || stripped.contains(['<', '>'])
        || !stripped
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '*'))
    {
        r.error_help(
            s.span(),
            key,
            format!("`{}` is not a DNS name template", s.get_ref()),
            Some(
                "use letters, digits, '-', '.', and the placeholders <app>, <env>, <domain>".into(),
            ),
        );
    }
}

fn ttl(t: &toml::Spanned<String>, key: &str, r: &mut Reporter<'_>) -> Option<Ttl> {
    match Ttl::parse(t.get_ref()) {
        Ok(v) => Some(v),
        Err(e) => {
            r.error(t.span(), key, e);
            None
        }
    }
}

fn secret_names(list: &[toml::Spanned<String>], key: &str, r: &mut Reporter<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for s in list {
        let v = s.get_ref();
        let bad = v.is_empty()
            || v.starts_with('/')
            || v.ends_with('/')
            || v.split('/')
                .any(|seg| seg.is_empty() || seg == ".." || seg == ".")
            || v.contains(['*', '+', ' ']);
        if bad {
            r.error_help(s.span(), key, format!("`{v}` is not a secret name"), Some("use a relative path under the identity's own prefix, like \"config\" or \"db/readonly\"; wildcards are not allowed".into()));
        } else if out.contains(v) {
            r.error(s.span(), key, format!("`{v}` is listed twice"));
        } else {
            out.push(v.clone());
        }
    }
    out
}

fn reload(
    raw: Option<&toml::Spanned<Vec<String>>>,
    key: &str,
    r: &mut Reporter<'_>,
) -> Option<Vec<String>> {
    let raw = raw?;
    if raw.get_ref().is_empty() || raw.get_ref()[0].is_empty() {
        r.error_help(
            raw.span(),
            format!("{key}.reload"),
            "a reload command needs at least a program",
            Some("for example [\"systemctl\", \"reload\", \"nginx\"]".into()),
        );
        return None;
    }
    Some(raw.get_ref().clone())
}
