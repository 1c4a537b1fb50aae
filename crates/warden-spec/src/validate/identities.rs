//! Identities: apps, proxies, containers and CI pipelines, each checked against the
//! environments it lives in, and the waivers that name them.

use std::collections::BTreeMap;

use toml::Spanned;

use super::env_list;
use crate::diag::{Reporter, did_you_mean};
use crate::model::*;
use crate::raw::*;
use crate::validate_ext as ext;

/// Every identity in the spec, kind by kind, and every name claimed: that includes identities
/// dropped for another error, so a waiver naming one is not also reported as unknown.
pub(super) fn identities(
    raw: &RawSpec,
    env_refs: &[&str],
    r: &mut Reporter<'_>,
) -> (Vec<Identity>, Vec<String>) {
    let mut names = Names::default();
    let mut identities = Vec::new();
    apps(raw, env_refs, &mut names, &mut identities, r);
    proxies(raw, env_refs, &mut names, &mut identities, r);
    containers(raw, env_refs, &mut names, &mut identities, r);
    pipelines(raw, env_refs, &mut names, &mut identities, r);
    (identities, names.seen.into_keys().collect())
}

/// Identity names are unique across kinds: a shared name would be a shared identity.
#[derive(Default)]
struct Names {
    /// Each name claimed so far, with what it was claimed as ("an app").
    seen: BTreeMap<String, &'static str>,
}

impl Names {
    /// The slug for `name` declared in `table` as `kind`, unless it is invalid or taken.
    fn claim(
        &mut self,
        name: &Spanned<String>,
        kind: &'static str,
        table: &str,
        r: &mut Reporter<'_>,
    ) -> Option<Slug> {
        let slug = match Slug::parse(name.get_ref()) {
            Ok(s) => s,
            Err(e) => {
                r.error(name.span(), format!("{table}.{}", name.get_ref()), e);
                return None;
            }
        };
        if let Some(other) = self.seen.get(name.get_ref()) {
            r.error_help(
                name.span(),
                format!("{table}.{}", name.get_ref()),
                format!("`{}` is already declared as {other}", name.get_ref()),
                Some("every app, proxy, container and pipeline needs its own name: identities are never shared".into()),
            );
            return None;
        }
        self.seen.insert(name.get_ref().clone(), kind);
        Some(slug)
    }
}

/// An identity of `kind` with nothing but its name and environments; each kind fills in what
/// it uses.
fn bare(name: Slug, kind: IdentityKind, environments: Vec<Slug>) -> Identity {
    Identity {
        name,
        kind,
        environments,
        certificate: None,
        secrets: Vec::new(),
        databases: Vec::new(),
        reload: None,
        pipeline: None,
        secret_id_ttl: None,
        transit_keys: Vec::new(),
        signing_keys: Vec::new(),
        workload: None,
    }
}

/// `[apps.<name>]`: the identities that render certificates and secrets.
fn apps(
    raw: &RawSpec,
    env_refs: &[&str],
    names: &mut Names,
    identities: &mut Vec<Identity>,
    r: &mut Reporter<'_>,
) {
    for (name, app) in &raw.apps {
        let Some(slug) = names.claim(name, "an app", "apps", r) else {
            continue;
        };
        let key = format!("apps.{slug}");
        let envs = env_list(&app.get_ref().environments, &key, env_refs, r);
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
            certificate: Some(certificate),
            secrets,
            databases,
            reload,
            transit_keys,
            signing_keys,
            workload,
            ..bare(slug, IdentityKind::App, envs)
        });
    }
}

/// `[proxies.<name>]`: identities that only read the CA chain and reload.
fn proxies(
    raw: &RawSpec,
    env_refs: &[&str],
    names: &mut Names,
    identities: &mut Vec<Identity>,
    r: &mut Reporter<'_>,
) {
    for (name, proxy) in &raw.proxies {
        let Some(slug) = names.claim(name, "a proxy", "proxies", r) else {
            continue;
        };
        let key = format!("proxies.{slug}");
        let envs = env_list(&proxy.get_ref().environments, &key, env_refs, r);
        let reload = reload(proxy.get_ref().reload.as_ref(), &key, r);
        identities.push(Identity {
            reload,
            ..bare(slug, IdentityKind::Proxy, envs)
        });
    }
}

/// `[containers.<name>]`: identities that log in with an AppRole secret-id.
fn containers(
    raw: &RawSpec,
    env_refs: &[&str],
    names: &mut Names,
    identities: &mut Vec<Identity>,
    r: &mut Reporter<'_>,
) {
    for (name, c) in &raw.containers {
        let Some(slug) = names.claim(name, "a container", "containers", r) else {
            continue;
        };
        let key = format!("containers.{slug}");
        let envs = env_list(&c.get_ref().environments, &key, env_refs, r);
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
            secrets,
            secret_id_ttl: Some(
                secret_id_ttl.unwrap_or(Ttl(std::time::Duration::from_secs(24 * 3600))),
            ),
            workload,
            ..bare(slug, IdentityKind::Container, envs)
        });
    }
}

/// `[pipelines.<name>]`: CI identities, each bound to one app that must already be known,
/// in environments that trust a CI identity provider.
fn pipelines(
    raw: &RawSpec,
    env_refs: &[&str],
    names: &mut Names,
    identities: &mut Vec<Identity>,
    r: &mut Reporter<'_>,
) {
    let app_names: Vec<String> = raw.apps.keys().map(|k| k.get_ref().clone()).collect();
    let app_refs: Vec<&str> = app_names.iter().map(String::as_str).collect();
    for (name, p) in &raw.pipelines {
        let Some(slug) = names.claim(name, "a pipeline", "pipelines", r) else {
            continue;
        };
        let key = format!("pipelines.{slug}");
        let p = p.get_ref();
        let envs = env_list(&p.environments, &key, env_refs, r);
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
                pipeline: Some(PipelineBinding {
                    app,
                    repository: p.repository.get_ref().clone(),
                    branches,
                }),
                ..bare(slug, IdentityKind::Pipeline, envs)
            });
        }
    }
}

/// `[[waivers]]`: each names a known lint rule and identity, with a real reason.
pub(super) fn waivers(
    raw: &[Spanned<RawWaiver>],
    ident_names: &[String],
    r: &mut Reporter<'_>,
) -> Vec<Waiver> {
    let ident_refs: Vec<&str> = ident_names.iter().map(String::as_str).collect();
    let mut waivers = Vec::new();
    for w in raw {
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
    waivers
}

fn certificate(
    raw: Option<&Spanned<RawCertificate>>,
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

fn check_name_template(s: &Spanned<String>, key: &str, r: &mut Reporter<'_>) {
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

fn ttl(t: &Spanned<String>, key: &str, r: &mut Reporter<'_>) -> Option<Ttl> {
    match Ttl::parse(t.get_ref()) {
        Ok(v) => Some(v),
        Err(e) => {
            r.error(t.span(), key, e);
            None
        }
    }
}

fn secret_names(list: &[Spanned<String>], key: &str, r: &mut Reporter<'_>) -> Vec<String> {
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
    raw: Option<&Spanned<Vec<String>>>,
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
