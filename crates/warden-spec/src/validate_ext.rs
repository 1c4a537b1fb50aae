//! Validation of the sections beyond identities: transit and signing keys, workload bindings,
//! databases, domain certificates and purposes. Same rules as `validate`: collect every problem,
//! each at the key that caused it.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use crate::diag::{Reporter, did_you_mean};
use crate::duration::format_duration;
use crate::model::*;
use crate::raw::*;

fn ttl_or(t: Option<&Spanned<String>>, key: &str, default: Ttl, r: &mut Reporter<'_>) -> Ttl {
    match t {
        None => default,
        Some(t) => match Ttl::parse(t.get_ref()) {
            Ok(v) => v,
            Err(e) => {
                r.error(t.span(), key, e);
                default
            }
        },
    }
}

const fn hours(h: u64) -> Ttl {
    Ttl(Duration::from_secs(h * 3600))
}

fn slug_at(s: &Spanned<String>, key: &str, r: &mut Reporter<'_>) -> Option<Slug> {
    match Slug::parse(s.get_ref()) {
        Ok(v) => Some(v),
        Err(e) => {
            r.error(s.span(), key, e);
            None
        }
    }
}

pub(crate) fn transit_keys(
    raw: &[Spanned<RawTransitKey>],
    key: &str,
    r: &mut Reporter<'_>,
) -> Vec<TransitKey> {
    let key = format!("{key}.transit_keys");
    let mut out: Vec<TransitKey> = Vec::new();
    for k in raw {
        let k = k.get_ref();
        let Some(name) = slug_at(&k.name, &format!("{key}.name"), r) else {
            continue;
        };
        if out.iter().any(|o| o.name == name) {
            r.error(
                k.name.span(),
                &key,
                format!("transit key `{name}` is listed twice"),
            );
            continue;
        }
        let key_type = match &k.key_type {
            None => TransitKeyType::Aes256Gcm96,
            Some(t) => match TransitKeyType::parse(t.get_ref()) {
                Some(v) => v,
                None => {
                    r.error_help(
                        t.span(),
                        format!("{key}.type"),
                        format!("unknown transit key type `{}`", t.get_ref()),
                        did_you_mean(t.get_ref(), &TransitKeyType::NAMES),
                    );
                    continue;
                }
            },
        };
        out.push(TransitKey { name, key_type });
    }
    out
}

pub(crate) fn signing_keys(
    raw: &[Spanned<RawSigningKey>],
    key: &str,
    r: &mut Reporter<'_>,
) -> Vec<SigningKey> {
    let key = format!("{key}.signing_keys");
    let mut out: Vec<SigningKey> = Vec::new();
    for k in raw {
        let k = k.get_ref();
        let Some(name) = slug_at(&k.name, &format!("{key}.name"), r) else {
            continue;
        };
        if out.iter().any(|o| o.name == name) {
            r.error(
                k.name.span(),
                &key,
                format!("signing key `{name}` is listed twice"),
            );
            continue;
        }
        let algorithm = match &k.algorithm {
            None => SigningAlgorithm::Es256,
            Some(a) => match SigningAlgorithm::parse(a.get_ref()) {
                Some(v) => v,
                None => {
                    r.error_help(
                        a.span(),
                        format!("{key}.algorithm"),
                        format!("unknown signing algorithm `{}`", a.get_ref()),
                        did_you_mean(a.get_ref(), &SigningAlgorithm::NAMES),
                    );
                    continue;
                }
            },
        };
        let grace = ttl_or(k.grace.as_ref(), &format!("{key}.grace"), hours(24), r);
        let interval = ttl_or(
            k.interval.as_ref(),
            &format!("{key}.interval"),
            hours(90 * 24),
            r,
        );
        let rsa_bits = rsa_bits(k, algorithm, &key, r);
        let max_token_lifetime = k.max_token_lifetime.as_ref().and_then(|t| {
            Ttl::parse(t.get_ref())
                .map_err(|e| r.error(t.span(), format!("{key}.max_token_lifetime"), e))
                .ok()
        });
        // The previous version must verify every token it signed until that token expires:
        // a grace shorter than the lifetime would be silently stretched by the key set (the
        // window rule in warden-keys), so the spec says so instead of meaning something else.
        if let (Some(lifetime), Some(t)) = (max_token_lifetime, k.max_token_lifetime.as_ref())
            && grace < lifetime
        {
            let (span, at) = match &k.grace {
                Some(g) => (g.span(), format!("{key}.grace")),
                None => (t.span(), format!("{key}.max_token_lifetime")),
            };
            r.error_help(
                span,
                at,
                format!(
                    "signing key `{name}`: grace {} is shorter than max_token_lifetime {}: the previous key would stop verifying while tokens it signed are still unexpired",
                    format_duration(grace.0),
                    format_duration(lifetime.0),
                ),
                Some(format!(
                    "set grace = \"{}\" or more (the token lifetime plus the time signers take to notice a rotation), or lower max_token_lifetime",
                    format_duration(lifetime.0),
                )),
            );
        }
        out.push(SigningKey {
            name,
            algorithm,
            grace,
            interval,
            rsa_bits,
            max_token_lifetime,
        });
    }
    out
}

/// `rsa_bits` of an RS256 key (default 2048); refused on any other algorithm.
fn rsa_bits(
    k: &RawSigningKey,
    algorithm: SigningAlgorithm,
    key: &str,
    r: &mut Reporter<'_>,
) -> Option<u32> {
    let at = format!("{key}.rsa_bits");
    match (algorithm, &k.rsa_bits) {
        (SigningAlgorithm::Rs256, None) => Some(RSA_BITS[0]),
        (SigningAlgorithm::Rs256, Some(bits)) => {
            match u32::try_from(*bits.get_ref())
                .ok()
                .filter(|b| RSA_BITS.contains(b))
            {
                Some(b) => Some(b),
                None => {
                    r.error_help(
                        bits.span(),
                        at,
                        format!("rsa_bits {} is not supported", bits.get_ref()),
                        Some("use rsa_bits = 2048 (the default) or 3072".to_owned()),
                    );
                    Some(RSA_BITS[0])
                }
            }
        }
        (other, Some(bits)) => {
            r.error_help(
                bits.span(),
                at,
                format!(
                    "rsa_bits applies to algorithm = \"rs256\" only, not `{}`",
                    other.as_str()
                ),
                Some("remove rsa_bits, or set algorithm = \"rs256\"".to_owned()),
            );
            None
        }
        (_, None) => None,
    }
}

/// A service-account binding; every environment the identity lives in must trust a
/// service-account issuer.
pub(crate) fn workload(
    raw: Option<&Spanned<RawWorkload>>,
    key: &str,
    envs: &[Slug],
    env_raw: &std::collections::BTreeMap<Spanned<String>, Spanned<RawEnvironment>>,
    r: &mut Reporter<'_>,
) -> Option<WorkloadBinding> {
    let raw = raw?;
    let w = raw.get_ref();
    let key = format!("{key}.kubernetes");
    let dns_label = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    let mut ok = true;
    for (field, v) in [
        ("namespace", &w.namespace),
        ("service_account", &w.service_account),
    ] {
        if !dns_label(v.get_ref()) {
            r.error(
                v.span(),
                format!("{key}.{field}"),
                format!("`{}` is not a Kubernetes name", v.get_ref()),
            );
            ok = false;
        }
    }
    for env in envs {
        let trusts = env_raw
            .iter()
            .any(|(n, e)| n.get_ref() == env.as_str() && e.get_ref().kubernetes.is_some());
        if !trusts {
            r.error_help(
                raw.span(),
                &key,
                format!("environment `{env}` trusts no service-account token issuer"),
                Some(format!(
                    "add [environments.{env}.kubernetes] with issuer, audience and validation_pubkeys"
                )),
            );
            ok = false;
        }
    }
    ok.then(|| WorkloadBinding {
        namespace: w.namespace.get_ref().clone(),
        service_account: w.service_account.get_ref().clone(),
    })
}

pub(crate) fn kubernetes_auth(raw: Option<&Spanned<RawCiAuth>>) -> Option<KubernetesAuth> {
    raw.map(|k| {
        let k = k.get_ref();
        KubernetesAuth {
            issuer: k.issuer.get_ref().clone(),
            audience: k.audience.get_ref().clone(),
            validation_pubkeys: k
                .validation_pubkeys
                .iter()
                .map(|p| PathBuf::from(p.get_ref()))
                .collect(),
        }
    })
}

pub(crate) fn databases(
    raw: &std::collections::BTreeMap<Spanned<String>, Spanned<RawDatabase>>,
    env_refs: &[&str],
    env_list: impl Fn(&Spanned<Vec<Spanned<String>>>, &str, &mut Reporter<'_>) -> Vec<Slug>,
    r: &mut Reporter<'_>,
) -> Vec<Database> {
    let _ = env_refs;
    let mut out = Vec::new();
    for (name, d) in raw {
        let key = format!("databases.{}", name.get_ref());
        let Some(slug) = slug_at(name, &key, r) else {
            continue;
        };
        let d = d.get_ref();
        let environments = env_list(&d.environments, &key, r);
        if let Some(p) = &d.plugin
            && p.get_ref() != "postgresql"
        {
            r.error_help(
                p.span(),
                format!("{key}.plugin"),
                format!("unsupported database plugin `{}`", p.get_ref()),
                Some("Warden configures \"postgresql\"".into()),
            );
        }
        let url = d.connection_url.get_ref();
        if !(url.starts_with("postgresql://") || url.starts_with("postgres://")) {
            r.error_help(
                d.connection_url.span(),
                format!("{key}.connection_url"),
                "expected a postgresql:// URL",
                Some("postgresql://{{username}}:{{password}}@db.example:5432/app".into()),
            );
        } else if !(url.contains("{{username}}") && url.contains("{{password}}")) {
            r.error_help(
                d.connection_url.span(),
                format!("{key}.connection_url"),
                "the URL must carry the {{username}} and {{password}} placeholders",
                Some("never write a password into the spec: OpenBao fills the placeholders in from `username` and the engine's (rotated) password".into()),
            );
        }
        if d.username.get_ref().trim().is_empty() {
            r.error(
                d.username.span(),
                format!("{key}.username"),
                "empty username",
            );
        }
        if d.password_file.get_ref().trim().is_empty() {
            r.error(
                d.password_file.span(),
                format!("{key}.password_file"),
                "empty path",
            );
        }
        let default_ttl = ttl_or(
            d.default_ttl.as_ref(),
            &format!("{key}.default_ttl"),
            hours(1),
            r,
        );
        let max_ttl = ttl_or(d.max_ttl.as_ref(), &format!("{key}.max_ttl"), hours(24), r);
        if max_ttl < default_ttl {
            r.error(
                d.max_ttl.as_ref().map_or(name.span(), |m| m.span()),
                format!("{key}.max_ttl"),
                "max_ttl is shorter than default_ttl",
            );
        }
        out.push(Database {
            name: slug,
            environments,
            connection_url: url.clone(),
            username: d.username.get_ref().clone(),
            password_file: PathBuf::from(d.password_file.get_ref()),
            default_ttl,
            max_ttl,
        });
    }
    out
}

pub(crate) fn domains(
    raw: &std::collections::BTreeMap<Spanned<String>, Spanned<RawDomain>>,
    identities: &[Identity],
    env_list: impl Fn(&Spanned<Vec<Spanned<String>>>, &str, &mut Reporter<'_>) -> Vec<Slug>,
    r: &mut Reporter<'_>,
) -> Vec<DomainCert> {
    let apps: Vec<&str> = identities
        .iter()
        .filter(|i| i.kind == IdentityKind::App)
        .map(|i| i.name.as_str())
        .collect();
    let mut out = Vec::new();
    for (name, d) in raw {
        let domain = name.get_ref().to_ascii_lowercase();
        let key = format!("domains.\"{domain}\"");
        let valid = !domain.is_empty()
            && domain.len() <= 253
            && domain.contains('.')
            && domain.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid {
            r.error_help(
                name.span(),
                &key,
                format!("`{}` is not a DNS name", name.get_ref()),
                Some("for example [domains.\"shop.example.com\"]".into()),
            );
            continue;
        }
        let Ok(slug) = Slug::parse(&domain.replace('.', "-")) else {
            r.error(name.span(), &key, "the domain is too long to name a role");
            continue;
        };
        let d = d.get_ref();
        let environments = env_list(&d.environments, &key, r);
        let app = d.app.get_ref();
        let Some(owner) = identities
            .iter()
            .find(|i| i.kind == IdentityKind::App && i.name.as_str() == app)
        else {
            r.error_help(
                d.app.span(),
                format!("{key}.app"),
                format!("unknown app `{app}`"),
                did_you_mean(app, &apps),
            );
            continue;
        };
        for e in &environments {
            if !owner.in_env(e.as_str()) {
                r.error(
                    d.environments.span(),
                    format!("{key}.environments"),
                    format!("app `{app}` does not live in `{e}`"),
                );
            }
        }
        let ttl = ttl_or(d.ttl.as_ref(), &format!("{key}.ttl"), hours(90 * 24), r);
        let renew_before = ttl_or(
            d.renew_before.as_ref(),
            &format!("{key}.renew_before"),
            hours(30 * 24),
            r,
        );
        if renew_before >= ttl {
            r.error_help(
                d.renew_before.as_ref().map_or(name.span(), |s| s.span()),
                format!("{key}.renew_before"),
                "renew_before is not shorter than the certificate's lifetime",
                Some("every certificate would be due the moment it is issued".into()),
            );
        }
        let key_type = match &d.key_type {
            None => KeyType::EcP256,
            Some(k) => KeyType::parse(k.get_ref()).unwrap_or_else(|| {
                r.error_help(
                    k.span(),
                    format!("{key}.key_type"),
                    format!("unknown key type `{}`", k.get_ref()),
                    did_you_mean(k.get_ref(), &KeyType::NAMES),
                );
                KeyType::EcP256
            }),
        };
        let issuer = domain_issuer(d, &key, r);
        out.push(DomainCert {
            domain,
            slug,
            environments,
            app: owner.name.clone(),
            ttl,
            renew_before,
            key_type,
            issuer,
        });
    }
    out
}

/// Purposes, checked against the credentials the rest of the spec creates: every pattern must
/// match something, no credential may fall under two purposes, and tier and delivery must fit
/// what the credential is. Credentials with no purpose are not an error here: `plan` lists
/// them and `apply` refuses them.
pub(crate) fn purposes(
    raw: &std::collections::BTreeMap<Spanned<String>, Spanned<RawPurpose>>,
    credentials: &[Credential],
    r: &mut Reporter<'_>,
) -> Vec<Purpose> {
    let mut out: Vec<Purpose> = Vec::new();
    for (name, p) in raw {
        let key = format!("purposes.{}", name.get_ref());
        let Some(id) = slug_at(name, &key, r) else {
            continue;
        };
        let p = p.get_ref();
        let tier = StorageTier::parse(p.tier.get_ref()).unwrap_or_else(|| {
            r.error_help(
                p.tier.span(),
                format!("{key}.tier"),
                format!("unknown storage tier `{}`", p.tier.get_ref()),
                did_you_mean(p.tier.get_ref(), &StorageTier::NAMES),
            );
            StorageTier::VaultKv
        });
        let delivery = Delivery::parse(p.delivery.get_ref()).unwrap_or_else(|| {
            r.error_help(
                p.delivery.span(),
                format!("{key}.delivery"),
                format!("unknown delivery mode `{}`", p.delivery.get_ref()),
                did_you_mean(p.delivery.get_ref(), &Delivery::NAMES),
            );
            Delivery::AgentFile
        });
        for (field, v) in [
            ("description", &p.description),
            ("owner", &p.owner),
            ("evidence", &p.evidence),
        ] {
            if v.get_ref().trim().is_empty() {
                r.error(v.span(), format!("{key}.{field}"), format!("empty {field}"));
            }
        }
        let rotation = rotation(&p.rotation, &key, r);
        let covers = covers(&p.covers, &key, (tier, delivery), credentials, &out, r);
        out.push(Purpose {
            id,
            description: p.description.get_ref().clone(),
            owner: p.owner.get_ref().clone(),
            tier,
            delivery,
            rotation,
            custody: p
                .custody
                .as_ref()
                .map(|c| c.get_ref().clone())
                .unwrap_or_default(),
            evidence: p.evidence.get_ref().clone(),
            covers,
            revoked: p.revoked.as_ref().is_some_and(|r| *r.get_ref()),
        });
    }
    out
}

/// A purpose's `rotation` table; `max_age` must leave room for the grace window.
fn rotation(raw: &Spanned<RawRotation>, key: &str, r: &mut Reporter<'_>) -> RotationPolicy {
    let rot = raw.get_ref();
    let rkey = format!("{key}.rotation");
    let interval = ttl_or(
        Some(&rot.interval),
        &format!("{rkey}.interval"),
        hours(24),
        r,
    );
    let grace = ttl_or(rot.grace.as_ref(), &format!("{rkey}.grace"), hours(24), r);
    let max_age = ttl_or(
        rot.max_age.as_ref(),
        &format!("{rkey}.max_age"),
        // Default: one more grace window after the stale point, so that "stale" (renewal
        // refused, still usable) is a state a credential passes through before "expired".
        Ttl(interval.0 + grace.0 + grace.0),
        r,
    );
    if max_age.0 < interval.0 + grace.0 {
        r.error_help(
            rot.max_age.as_ref().map_or(raw.span(), |m| m.span()),
            format!("{rkey}.max_age"),
            "max_age is shorter than interval + grace",
            Some("a credential may live until it is due (interval) and then for the grace window; max_age must cover both".into()),
        );
    }
    RotationPolicy {
        interval,
        grace,
        max_age,
    }
}

/// A purpose's `covers` patterns: each must match some credential of this spec, and every
/// credential it matches must be free of the purposes declared before it (`earlier`) and fit
/// the purpose's tier and delivery.
fn covers(
    raw: &Spanned<Vec<Spanned<String>>>,
    key: &str,
    (tier, delivery): (StorageTier, Delivery),
    credentials: &[Credential],
    earlier: &[Purpose],
    r: &mut Reporter<'_>,
) -> Vec<String> {
    let ids: Vec<&str> = credentials.iter().map(|c| c.id.as_str()).collect();
    let mut covers = Vec::new();
    if raw.get_ref().is_empty() {
        r.error(
            raw.span(),
            format!("{key}.covers"),
            "a purpose must cover at least one credential",
        );
    }
    for c in raw.get_ref() {
        let pat = c.get_ref();
        let matched: Vec<&Credential> = credentials
            .iter()
            .filter(|cr| pattern_matches(pat, &cr.id))
            .collect();
        if matched.is_empty() {
            r.error_help(
                c.span(),
                format!("{key}.covers"),
                format!("`{pat}` matches no credential this spec creates"),
                did_you_mean(pat, &ids).or_else(|| {
                    Some("references look like billing/certificate, billing/secret/config, worker/secret-id, edge/identity-cert, domain/shop-example-com; `*` stands for one segment".into())
                }),
            );
            continue;
        }
        for cr in &matched {
            if let Some(other) = earlier.iter().find(|o| o.covers(&cr.id)) {
                r.error_help(
                    c.span(),
                    format!("{key}.covers"),
                    format!("`{}` is already governed by purpose `{}`", cr.id, other.id),
                    Some("each credential lives under exactly one purpose".into()),
                );
            }
            check_fit(cr, (tier, delivery), c, key, r);
        }
        covers.push(pat.clone());
    }
    covers
}

/// Whether credential `cr`, matched by pattern `c`, may live under `tier` with `delivery`:
/// only transit keys live in the transit tier, used through the API, and only secret-ids and
/// KV secrets can be revealed once.
fn check_fit(
    cr: &Credential,
    (tier, delivery): (StorageTier, Delivery),
    c: &Spanned<String>,
    key: &str,
    r: &mut Reporter<'_>,
) {
    let fits = match &cr.kind {
        CredentialKind::TransitKey(_) => {
            tier == StorageTier::VaultTransit && delivery == Delivery::Api
        }
        _ => tier != StorageTier::VaultTransit,
    };
    if !fits {
        r.error_help(
            c.span(),
            format!("{key}.covers"),
            format!(
                "`{}` cannot live under tier `{}` with delivery `{}`",
                cr.id,
                tier.as_str(),
                delivery.as_str()
            ),
            Some("transit keys are tier vault_transit with delivery api; nothing else is tier vault_transit".into()),
        );
    }
    if delivery == Delivery::RevealOnce
        && !matches!(
            cr.kind,
            CredentialKind::SecretId | CredentialKind::Secret(_)
        )
    {
        r.error_help(
            c.span(),
            format!("{key}.covers"),
            format!("`{}` cannot be revealed once", cr.id),
            Some("reveal_once applies to AppRole secret-ids and KV secrets".into()),
        );
    }
}

/// Longest lifetime a transport certificate may have: the listener never checks revocation, so
/// a revoked certificate keeps passing the handshake until it ends (ADR 0010).
const TRANSPORT_MAX_TTL: Ttl = hours(7 * 24);
/// Lifetime when the spec names none.
const TRANSPORT_DEFAULT_TTL: Ttl = hours(24);

/// `[transport.<holder>]`: each holder carries containers, pipelines and Kubernetes workloads
/// only (an app or proxy on a host presents its own identity certificate), each living in one
/// of its environments.
pub(crate) fn transport(
    raw: &std::collections::BTreeMap<Spanned<String>, Spanned<RawTransport>>,
    identities: &[Identity],
    env_list: impl Fn(&Spanned<Vec<Spanned<String>>>, &str, &mut Reporter<'_>) -> Vec<Slug>,
    r: &mut Reporter<'_>,
) -> Vec<TransportHolder> {
    let workloads: Vec<&str> = identities
        .iter()
        .filter(|i| {
            matches!(i.kind, IdentityKind::Container | IdentityKind::Pipeline)
                || i.workload.is_some()
        })
        .map(|i| i.name.as_str())
        .collect();
    let mut out = Vec::new();
    for (name, t) in raw {
        let key = format!("transport.{}", name.get_ref());
        let Some(slug) = slug_at(name, &key, r) else {
            continue;
        };
        let t = t.get_ref();
        let environments = env_list(&t.environments, &key, r);
        let ttl = ttl_or(
            t.ttl.as_ref(),
            &format!("{key}.ttl"),
            TRANSPORT_DEFAULT_TTL,
            r,
        );
        if let Some(span) = t.ttl.as_ref().map(Spanned::span)
            && (ttl.0 > TRANSPORT_MAX_TTL.0 || ttl.0 < Duration::from_secs(60))
        {
            r.error_help(
                span,
                format!("{key}.ttl"),
                "a transport certificate lives between 1m and 7d",
                Some("the listener does not check revocation, so the lifetime is what ends a revoked certificate; keep it short (the default is 24h)".into()),
            );
        }
        let mut carries: Vec<Slug> = Vec::new();
        if t.carries.get_ref().is_empty() {
            r.error_help(
                t.carries.span(),
                format!("{key}.carries"),
                "a transport holder must carry at least one container or pipeline",
                Some(format!(
                    "list them, e.g. carries = [\"{}\"]",
                    workloads.first().copied().unwrap_or("worker")
                )),
            );
        }
        for c in t.carries.get_ref() {
            let ckey = format!("{key}.carries");
            let Some(id) = identities.iter().find(|i| i.name.as_str() == c.get_ref()) else {
                r.error_help(
                    c.span(),
                    &ckey,
                    format!("unknown container or pipeline `{}`", c.get_ref()),
                    did_you_mean(c.get_ref(), &workloads),
                );
                continue;
            };
            let logs_in_without_cert =
                matches!(id.kind, IdentityKind::Container | IdentityKind::Pipeline)
                    || id.workload.is_some();
            if !logs_in_without_cert {
                r.error_help(
                    c.span(),
                    &ckey,
                    format!(
                        "`{}` is {} {}, which presents its own identity certificate",
                        c.get_ref(),
                        if id.kind == IdentityKind::App { "an" } else { "a" },
                        id.kind.as_str()
                    ),
                    Some("a transport holder carries only containers (AppRole), pipelines (JWT) and Kubernetes workloads (service-account JWT)".into()),
                );
                continue;
            }
            if !id.environments.iter().any(|e| environments.contains(e)) {
                r.error(
                    c.span(),
                    &ckey,
                    format!(
                        "`{}` lives in none of this holder's environments",
                        c.get_ref()
                    ),
                );
            }
            if !carries.contains(&id.name) {
                carries.push(id.name.clone());
            }
        }
        out.push(TransportHolder {
            name: slug,
            environments,
            carries,
            ttl,
        });
    }
    out
}

/// `issuer` and its `[acme]` table: the table only with `issuer = "acme"`, a directory that is
/// an https URL, contacts that are `mailto:` URLs, and a loopback `listen` unless the spec says
/// `allow_non_loopback = true` (answering a challenge on a public address is a decision).
fn domain_issuer(d: &RawDomain, key: &str, r: &mut Reporter<'_>) -> DomainIssuer {
    let kind = d.issuer.as_ref().map_or("pki", |s| s.get_ref().as_str());
    match kind {
        "pki" => {
            if let Some(acme) = &d.acme {
                r.error_help(
                    acme.span(),
                    format!("{key}.acme"),
                    "an [acme] table without issuer = \"acme\"",
                    Some("add issuer = \"acme\" to the domain, or remove the table".into()),
                );
            }
            DomainIssuer::Pki
        }
        "acme" => {
            let empty = RawAcme {
                directory: None,
                contact: None,
                listen: None,
                allow_non_loopback: None,
                challenge_timeout: None,
            };
            let a = d.acme.as_ref().map_or(&empty, |a| a.get_ref());
            let akey = format!("{key}.acme");
            let directory = a.directory.as_ref().and_then(|u| {
                let ok = url_is_https(u.get_ref());
                if !ok {
                    r.error_help(
                        u.span(),
                        format!("{akey}.directory"),
                        format!("`{}` is not an https:// URL", u.get_ref()),
                        Some("the CA's directory, e.g. https://acme.example.net/directory; leave it out to use the environment's own OpenBao".into()),
                    );
                }
                ok.then(|| u.get_ref().clone())
            });
            let mut contact = Vec::new();
            if let Some(list) = &a.contact {
                for c in list.get_ref() {
                    if c.get_ref().starts_with("mailto:") && c.get_ref().len() > 7 {
                        contact.push(c.get_ref().clone());
                    } else {
                        r.error_help(
                            c.span(),
                            format!("{akey}.contact"),
                            format!("`{}` is not a mailto: URL", c.get_ref()),
                            Some("for example \"mailto:ops@example.com\"".into()),
                        );
                    }
                }
            }
            let default_listen = std::net::SocketAddr::from(([127, 0, 0, 1], 80));
            let listen = match &a.listen {
                None => default_listen,
                Some(l) => l.get_ref().parse().unwrap_or_else(|_| {
                    r.error_help(
                        l.span(),
                        format!("{akey}.listen"),
                        format!("`{}` is not an address:port", l.get_ref()),
                        Some("for example \"127.0.0.1:80\"".into()),
                    );
                    default_listen
                }),
            };
            let allow = a.allow_non_loopback.as_ref().is_some_and(|b| *b.get_ref());
            if !listen.ip().is_loopback() && !allow {
                let span = a.listen.as_ref().map_or(d.app.span(), |l| l.span());
                r.error_help(
                    span,
                    format!("{akey}.listen"),
                    format!("{listen} is not a loopback address"),
                    Some("Warden answers the challenge on this address for anyone who connects; say allow_non_loopback = true if that is meant".into()),
                );
            }
            let challenge_timeout = ttl_or(
                a.challenge_timeout.as_ref(),
                &format!("{akey}.challenge_timeout"),
                Ttl(Duration::from_secs(120)),
                r,
            );
            DomainIssuer::Acme(AcmeSettings {
                directory,
                contact,
                listen,
                challenge_timeout,
            })
        }
        other => {
            let span = d.issuer.as_ref().map_or(d.app.span(), |s| s.span());
            r.error_help(
                span,
                format!("{key}.issuer"),
                format!("unknown issuer `{other}`"),
                did_you_mean(other, &["pki", "acme"]),
            );
            DomainIssuer::Pki
        }
    }
}

/// An absolute `https://` URL with a host.
fn url_is_https(s: &str) -> bool {
    s.strip_prefix("https://").is_some_and(|rest| {
        !rest.is_empty() && !rest.starts_with('/') && !rest.contains(char::is_whitespace)
    })
}
