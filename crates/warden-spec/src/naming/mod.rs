//! The naming contract: where everything Warden creates lives in OpenBao.
//!
//! The planner writes these objects, the agent reads and reports through them, the registry
//! audits them and the CLI reaches them for operators. If each spelled the paths itself, one
//! changed spelling would silently split them (a policy granting one path while the agent reads
//! another) and drag crates into depending on each other for constants. So every name, prefix
//! and path is decided here, once, from the spec alone, and every crate imports it. Pure: no
//! I/O.
//!
//! | what | API |
//! |---|---|
//! | where a credential lives | [`location`] → [`Location`] |
//! | a credential's reference (`billing/secret/config`) | [`credential_id`], [`Credential::new`] |
//! | an environment's mounts | [`Mounts`], defaults: [`default_mounts`] |
//! | Warden's own KV v2 mount and its folders | [`META_MOUNT`], [`OWNED_RECORD`], [`REGISTRY_PREFIX`], [`DELIVERED_PREFIX`], [`REVEAL_PREFIX`], [`PAGES_PREFIX`], [`CUSTODY_PREFIX`], [`BREAK_GLASS_PREFIX`], [`SERVE_PREFIX`]; entries: [`ownership_record`], [`registry_entry`], [`record_pages`], [`delivery_report`], [`delivery_reports`], [`reveal_record`], [`reveal_records`], [`custody_record`], [`break_glass_record`], [`break_glass_records`], [`serve_lease`], [`serve_job_record`] |
//! | KV entries ([`KvEntry`]: mount + path) of an app | [`kv_prefix`], [`secret`], [`secret_path`], [`signing_key`], [`domain_cert`], [`domain_cert_path`] |
//! | policies | [`policy_name`], [`REGISTRY_READER_POLICY`]; reading HCL: [`policy`] |
//! | identity certificates | [`identity_common_name`], [`IDENTITY_CERT_TTL_SECS`] |
//! | transit and PKI names | [`transit_key_name`], [`EVIDENCE_KEY`], [`domain_pki_role`] |
//! | the `[naming]` templates | [`Naming`], [`Template`] |
//! | operators (people): policy, cert-auth mount, PKI role, common names | [`operator`] |
//! | the planner's read-only login mirroring each operator (ADR 0038) | [`planner`] |

pub mod operator;
pub mod planner;
pub mod policy;
mod report;
pub mod serve;
mod template;

use std::fmt;

pub use report::{REPORT_CHUNK_BYTES, REPORT_MAX_CHUNKS, report_from_metadata, report_to_metadata};
pub(crate) use template::unclean_segment;
pub use template::{Naming, Template};

use crate::model::{
    CertProfile, Credential, CredentialKind, Environment, Identity, IdentityKind, Mounts, Slug,
    Spec,
};

/// The mount paths an environment gets where `[environments.<env>.mounts]` names none: the
/// layout a stock lab is set up with, so a spec without mounts works against one unchanged. Each field of
/// [`Mounts`] has one.
pub mod default_mounts {
    /// PKI intermediate; the environment's bootstrap creates it, apply never does.
    pub const PKI: &str = "pki_int";
    /// KV v2, holding apps' secrets, signing keys and domain certificates.
    pub const KV: &str = "kvv2";
    /// KV v1, for plain secrets written with `--kv1`.
    pub const KV_V1: &str = "kv";
    /// Transit.
    pub const TRANSIT: &str = "transit";
    /// Database secrets engine.
    pub const DATABASE: &str = "postgres";
    /// Cert auth, where apps and proxies log in with their identity certificate.
    pub const CERT_AUTH: &str = "cert";
    /// AppRole auth, where containers log in.
    pub const APPROLE: &str = "approle";
    /// JWT auth for CI pipelines.
    pub const JWT: &str = "jwt";
    /// JWT auth for workloads' service-account tokens.
    pub const KUBERNETES: &str = "kubernetes";

    /// Every mount at its default path, PKI at `pki` (what a lab's bootstrap writes policies
    /// for before any spec names its mounts).
    pub fn with_pki(pki: &str) -> crate::model::Mounts {
        let d = |s: &str| s.to_owned();
        crate::model::Mounts {
            pki: d(pki),
            kv: d(KV),
            kv_v1: d(KV_V1),
            transit: d(TRANSIT),
            database: d(DATABASE),
            cert_auth: d(CERT_AUTH),
            approle: d(APPROLE),
            jwt: d(JWT),
            kubernetes: d(KUBERNETES),
        }
    }
}

/// Warden's own KV v2 mount in every environment. It holds what Warden itself must remember
/// next to the environment it describes (the ownership record, the purpose registry, delivery
/// reports, reveal records), apart from the mounts whose contents belong to apps.
pub const META_MOUNT: &str = "warden";

/// The entry inside [`META_MOUNT`] that lists the objects Warden created, so `--prune` only
/// ever removes Warden's own objects.
pub const OWNED_RECORD: &str = "owned";

/// The folder inside [`META_MOUNT`] holding one registry entry per purpose (its contract and
/// the credentials it covers); metadata only, never a value.
pub const REGISTRY_PREFIX: &str = "registry";

/// The folder inside [`META_MOUNT`] where each identity's agent reports what it delivered, so
/// posture shows what is deployed and not only what OpenBao issued.
pub const DELIVERED_PREFIX: &str = "delivered";

/// The folder inside [`META_MOUNT`] holding the metadata of each reveal-once credential
/// (`reveal/<purpose>/<wrapping accessor>`); never the value or the wrapping token.
pub const REVEAL_PREFIX: &str = "reveal";

/// The folder inside [`META_MOUNT`] holding one record per revocation (`warden revoke`): who,
/// what, why, which serials and when; one entry each, so thousands of them never share a value.
pub const REVOCATION_PREFIX: &str = "revocations";

/// The name under which `warden revoke` installs the PKI mount's CRL in the cert-auth mount
/// (`auth/<cert>/crls/<name>`): cert auth checks its own CRLs, not the PKI mount's.
pub const CERT_AUTH_CRL: &str = "warden-pki";

/// Policy that may read the registry, delivery reports and reveal records; assigned to no
/// identity by Warden (operators, posture dashboards and auditors get it).
pub const REGISTRY_READER_POLICY: &str = "warden-registry-reader";

/// The transit key (in the environment's transit mount) that signs evidence packets: Ed25519,
/// never exportable, so a packet can only have been signed inside OpenBao.
pub const EVIDENCE_KEY: &str = "warden-evidence";

/// Lifetime of an identity's mTLS client certificate: enrollment asks for it and the identity
/// role allows no more, so both must read the same number.
pub const IDENTITY_CERT_TTL_SECS: u64 = 30 * 24 * 3600;

/// A KV v2 entry: a mount and the entry's path inside it. KV v2 splits every entry's API into
/// `data/` and `metadata/`, so callers ask for those instead of gluing the segment in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KvEntry {
    /// The KV v2 mount (`kvv2`, [`META_MOUNT`]).
    pub mount: String,
    /// The entry's path inside the mount (`billing/config`).
    pub path: String,
}

impl KvEntry {
    fn new(mount: &str, path: String) -> Self {
        Self {
            mount: mount.to_owned(),
            path,
        }
    }

    /// `<mount>/data/<path>`: where values are read and written.
    pub fn data_path(&self) -> String {
        format!("{}/data/{}", self.mount, self.path)
    }

    /// `<mount>/metadata/<path>`: versions, their times and custom metadata.
    pub fn metadata_path(&self) -> String {
        format!("{}/metadata/{}", self.mount, self.path)
    }
}

impl fmt::Display for KvEntry {
    /// `<mount>/<path>`, the way `bao kv` names an entry.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.mount, self.path)
    }
}

/// Where a credential lives in OpenBao: the mount, and the object in it that stores, issues,
/// mints or holds the credential.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Location {
    /// Stored as a KV v2 entry (secrets, signing keys, domain certificates).
    Kv(KvEntry),
    /// Issued on request by a PKI role at `<mount>/sign/<role>`; OpenBao keeps no copy
    /// (`no_store`), so only the agent's delivery report knows the current certificate.
    PkiRole {
        /// The PKI mount.
        mount: String,
        /// The role.
        role: String,
    },
    /// Dynamic credentials read at `<mount>/creds/<role>`, one lease each.
    DatabaseRole {
        /// The database secrets engine's mount.
        mount: String,
        /// The role.
        role: String,
    },
    /// Minted by an AppRole role at `auth/<mount>/role/<role>/secret-id`.
    AppRole {
        /// The AppRole auth mount (without `auth/`).
        mount: String,
        /// The role.
        role: String,
    },
    /// Obtained by logging in to the JWT auth role `auth/<mount>/role/<role>` with a CI
    /// system's own token; no policy grants it.
    JwtRole {
        /// The JWT auth mount (without `auth/`).
        mount: String,
        /// The role.
        role: String,
    },
    /// A transit key at `<mount>/keys/<key>`, used through `<mount>/<operation>/<key>`; the key
    /// never leaves OpenBao.
    TransitKey {
        /// The transit mount.
        mount: String,
        /// The key's name.
        key: String,
    },
}

impl Location {
    /// The mount (for auth backends, without `auth/`).
    pub fn mount(&self) -> &str {
        match self {
            Self::Kv(e) => &e.mount,
            Self::PkiRole { mount, .. }
            | Self::DatabaseRole { mount, .. }
            | Self::AppRole { mount, .. }
            | Self::JwtRole { mount, .. }
            | Self::TransitKey { mount, .. } => mount,
        }
    }

    /// The path inside the mount of the object that holds or issues the credential: the KV
    /// entry, `roles/<role>`, `role/<role>` or `keys/<key>`.
    pub fn path(&self) -> String {
        match self {
            Self::Kv(e) => e.path.clone(),
            Self::PkiRole { role, .. } | Self::DatabaseRole { role, .. } => format!("roles/{role}"),
            Self::AppRole { role, .. } | Self::JwtRole { role, .. } => format!("role/{role}"),
            Self::TransitKey { key, .. } => format!("keys/{key}"),
        }
    }
}

impl fmt::Display for Location {
    /// The object's API path: `<mount>/<path>`, under `auth/` for auth backends.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AppRole { .. } | Self::JwtRole { .. } => {
                write!(f, "auth/{}/{}", self.mount(), self.path())
            }
            _ => write!(f, "{}/{}", self.mount(), self.path()),
        }
    }
}

/// Where the credential `cred` lives in `env`. `None` only for a credential the spec does not
/// declare (a domain certificate or a pipeline the spec does not know), which
/// [`Spec::credentials`] never yields.
pub fn location(spec: &Spec, env: &Environment, cred: &Credential) -> Option<Location> {
    let m = &env.mounts;
    let n = &spec.naming;
    let who = &cred.identity;
    let pki = |role: String| Location::PkiRole {
        mount: m.pki.clone(),
        role,
    };
    Some(match &cred.kind {
        CredentialKind::IdentityCert => pki(n.identity_role.render(who)),
        CredentialKind::Certificate => pki(n.pki_role.render(who)),
        CredentialKind::Secret(name) => Location::Kv(secret(n, m, who, name)),
        CredentialKind::SigningKey(name) => Location::Kv(signing_key(n, m, who, name)),
        CredentialKind::Database(_) => Location::DatabaseRole {
            mount: m.database.clone(),
            role: n.db_role.render(who),
        },
        CredentialKind::SecretId => Location::AppRole {
            mount: m.approle.clone(),
            role: n.approle_role.render(who),
        },
        CredentialKind::CiToken => {
            // A pipeline logs in with its app's CI role: the role is named after the app.
            let app = &spec.identity(who.as_str())?.pipeline.as_ref()?.app;
            Location::JwtRole {
                mount: m.jwt.clone(),
                role: n.ci_role.render(app),
            }
        }
        CredentialKind::TransitKey(name) => Location::TransitKey {
            mount: m.transit.clone(),
            key: transit_key_name(who, name),
        },
        CredentialKind::DomainCert(slug) => {
            let d = spec.domains.iter().find(|d| d.slug.as_str() == slug)?;
            Location::Kv(domain_cert(m, &d.domain))
        }
    })
}

/// A credential's reference, as purposes cover it and agents report it:
/// `<identity>/<kind>[/<name>]`, or `domain/<slug>` for a domain certificate (whose identity
/// is the app that reads it, while the certificate belongs to the domain).
pub fn credential_id(identity: &Slug, kind: &CredentialKind) -> String {
    match kind {
        CredentialKind::IdentityCert => format!("{identity}/identity-cert"),
        CredentialKind::Certificate => format!("{identity}/certificate"),
        CredentialKind::Secret(s) => format!("{identity}/secret/{s}"),
        CredentialKind::Database(d) => format!("{identity}/database/{d}"),
        CredentialKind::SecretId => format!("{identity}/secret-id"),
        CredentialKind::CiToken => format!("{identity}/ci-token"),
        CredentialKind::TransitKey(k) => format!("{identity}/transit/{k}"),
        CredentialKind::SigningKey(k) => format!("{identity}/signing-key/{k}"),
        CredentialKind::DomainCert(slug) => format!("domain/{slug}"),
    }
}

/// The policy `identity` logs in with: its runtime policy, or for a pipeline its app's ops
/// policy (a pipeline acts for its app, so every pipeline of one app shares it).
pub fn policy_name(spec: &Spec, identity: &Identity) -> String {
    match (&identity.kind, &identity.pipeline) {
        (IdentityKind::Pipeline, Some(p)) => spec.naming.ops_policy.render(&p.app),
        _ => spec.naming.policy.render(&identity.name),
    }
}

/// The common name of `identity`'s mTLS client certificate in `env`: pinned in its PKI identity
/// role and in its cert-auth role, so that certificate opens exactly one identity.
pub fn identity_common_name(identity: &Identity, env: &Environment) -> String {
    format!("{}.identity.{}", identity.name, env.domain)
}

/// Every DNS subtree `env`'s PKI intermediate must permit (ADR 0013): the environment's domain
/// (service names, identities' `<app>.identity.<domain>` and operators'
/// `<name>.operator.<domain>`, all DNS-shaped and carried as DNS SANs), each app certificate
/// name the spec renders outside that domain, and each domain certificate listed for `env`.
/// Sorted, without names already inside another entry. The lab signs each intermediate with
/// these as name constraints; `lint`, `posture` and `ca verify` check them against each other.
pub fn environment_names(spec: &Spec, env: &Environment) -> Vec<String> {
    let mut names = vec![env.domain.to_ascii_lowercase()];
    for id in spec.identities_in(env.name.as_str()) {
        if let Some(cert) = &id.certificate {
            for t in std::iter::once(&cert.common_name).chain(&cert.sans) {
                names.push(CertProfile::render(t, &id.name, env).to_ascii_lowercase());
            }
        }
    }
    for d in &spec.domains {
        if d.environments.iter().any(|e| e == &env.name) {
            names.push(d.domain.to_ascii_lowercase());
        }
    }
    outermost(names)
}

/// `names` sorted, without duplicates and without any name inside another listed name (a
/// proper suffix after a dot: `a.b.c` inside `b.c`). Looking up each name's dot-suffixes keeps
/// this linear: comparing every pair made `warden posture` spend 17 s of CPU here at 10,000
/// identities (issue 16).
fn outermost(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names.dedup();
    let set: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    let inside = |n: &str| n.match_indices('.').any(|(i, _)| set.contains(&n[i + 1..]));
    names.iter().filter(|n| !inside(n)).cloned().collect()
}

/// The common name of transport holder `holder`'s certificate in `env`. Its middle label is
/// `transport`, never `identity` or an operator's, so no cert-auth role (each pins one exact
/// identity or operator name) accepts it (ADR 0010).
pub fn transport_common_name(holder: &Slug, env: &Environment) -> String {
    format!("{holder}.{TRANSPORT_LABEL}.{}", env.domain)
}

/// The label every transport certificate's name carries.
pub const TRANSPORT_LABEL: &str = "transport";

/// The organisational unit stamped on every transport certificate, so an audit log or a
/// listing tells it from an identity certificate at a glance.
pub const TRANSPORT_OU: &str = "warden-transport";

/// The PKI role (in the environment's PKI mount) that signs `holder`'s transport certificates.
pub fn transport_role(holder: &Slug) -> String {
    format!("transport-{holder}")
}

/// The folder of `app`'s entries inside the KV mounts (the `naming.kv_prefix` template). The
/// one place that renders it: policies, agents, the registry and the CLI must agree on it.
pub fn kv_prefix(naming: &Naming, app: &Slug) -> String {
    naming.kv_prefix.render(app)
}

/// `app`'s KV v2 secret `name`: `<kv>/<kv_prefix>/<name>`.
pub fn secret(naming: &Naming, mounts: &Mounts, app: &Slug, name: &str) -> KvEntry {
    KvEntry::new(&mounts.kv, secret_path(naming, app, name))
}

/// The path of `app`'s secret `name` inside a KV mount (v1 or v2): `<kv_prefix>/<name>`.
pub fn secret_path(naming: &Naming, app: &Slug, name: &str) -> String {
    format!("{}/{name}", kv_prefix(naming, app))
}

/// `app`'s rotated signing key `key`: `<kv>/<kv_prefix>/signing/<key>`, one KV version per
/// rotation. Under the app's own prefix, so the app's read grant is exact.
pub fn signing_key(naming: &Naming, mounts: &Mounts, app: &Slug, key: &str) -> KvEntry {
    KvEntry::new(
        &mounts.kv,
        format!("{}/signing/{key}", kv_prefix(naming, app)),
    )
}

/// The domain certificate of `domain`: `<kv>/domains/<domain>/cert`. Outside every app's
/// prefix: a domain belongs to the platform, and its app is granted this one entry.
pub fn domain_cert(mounts: &Mounts, domain: &str) -> KvEntry {
    KvEntry::new(&mounts.kv, domain_cert_path(domain))
}

/// The path of `domain`'s certificate inside the KV v2 mount: `domains/<domain>/cert`.
pub fn domain_cert_path(domain: &str) -> String {
    format!("domains/{domain}/cert")
}

/// The PKI role that issues the domain certificate with slug `slug`: `domain-<slug>`.
pub fn domain_pki_role(slug: &Slug) -> String {
    format!("domain-{slug}")
}

/// The ACME directory of the domain's PKI role, relative to `/v1/`:
/// `<pki>/roles/domain-<slug>/acme/directory`. Role-qualified, so OpenBao issues through ACME
/// exactly what the role allows (this name only, server certificates, the spec's lifetime).
pub fn acme_directory_path(pki_mount: &str, slug: &Slug) -> String {
    format!(
        "{}/roles/{}/acme/directory",
        pki_mount.trim_matches('/'),
        domain_pki_role(slug)
    )
}

/// Where a domain's ACME account lives in the KV v2 mount: `domains/<domain>/acme-account`,
/// beside its certificate and readable only by those who renew it (ADR 0031).
pub fn domain_acme_account_path(domain: &str) -> String {
    format!("domains/{domain}/acme-account")
}

/// The name in the transit mount of `app`'s key `key`: `<app>-<key>`, so two apps' keys of the
/// same short name never meet.
pub fn transit_key_name(app: &Slug, key: &str) -> String {
    format!("{app}-{key}")
}

/// Warden's ownership record in [`META_MOUNT`].
pub fn ownership_record() -> KvEntry {
    KvEntry::new(META_MOUNT, OWNED_RECORD.to_owned())
}

/// The folder inside [`META_MOUNT`] holding the pages of Warden's long lists (ADR 0014):
/// `pages/<record path>/<n>`, apart from the records' own folders so listing `registry/`
/// still lists purposes only.
pub const PAGES_PREFIX: &str = "pages";

/// The folder of `record`'s pages (`warden/…/pages/registry/<purpose>`); page `n` is
/// `<folder>/<n>` (`warden_bao::paged::page_path`).
pub fn record_pages(record: &KvEntry) -> KvEntry {
    KvEntry::new(&record.mount, format!("{PAGES_PREFIX}/{}", record.path))
}

/// The registry entry of purpose `purpose` in [`META_MOUNT`]: `registry/<purpose>`. Its
/// credentials are paged under [`record_pages`].
pub fn registry_entry(purpose: &str) -> KvEntry {
    KvEntry::new(META_MOUNT, format!("{REGISTRY_PREFIX}/{purpose}"))
}

/// Where `identity`'s agent reports what it delivered: `warden/…/delivered/<identity>`, the
/// only path under [`META_MOUNT`] its policy may write — as the entry's custom metadata
/// ([`report_to_metadata`], ADR 0036), or as its data when the report does not fit there.
pub fn delivery_report(identity: &str) -> KvEntry {
    KvEntry::new(META_MOUNT, format!("{DELIVERED_PREFIX}/{identity}"))
}

/// The revocation record `id` in [`META_MOUNT`]: `revocations/<id>`.
pub fn revocation_record(id: &str) -> KvEntry {
    KvEntry::new(META_MOUNT, format!("{REVOCATION_PREFIX}/{id}"))
}

/// The intermediate rotation record of an environment in [`META_MOUNT`]: `ca/rotation`
/// (ADR 0029): which issuer is being replaced by which, and when the overlap ends.
pub fn ca_rotation() -> KvEntry {
    KvEntry::new(META_MOUNT, "ca/rotation".to_owned())
}

/// The root rollover record of an environment in [`META_MOUNT`]: `ca/root-rollover`
/// (ADR 0030).
pub fn ca_root_rollover() -> KvEntry {
    KvEntry::new(META_MOUNT, "ca/root-rollover".to_owned())
}

/// The folder of every identity's delivery report (for listing: posture reads only the
/// reports that exist).
pub fn delivery_reports() -> KvEntry {
    KvEntry::new(META_MOUNT, DELIVERED_PREFIX.to_owned())
}

/// The folder of purpose `purpose`'s reveal records in [`META_MOUNT`] (for listing).
pub fn reveal_records(purpose: &str) -> KvEntry {
    KvEntry::new(META_MOUNT, format!("{REVEAL_PREFIX}/{purpose}"))
}

/// The reveal record of the wrapping token with accessor `accessor` under `purpose`.
pub fn reveal_record(purpose: &str, accessor: &str) -> KvEntry {
    KvEntry::new(META_MOUNT, format!("{REVEAL_PREFIX}/{purpose}/{accessor}"))
}

/// The folder inside [`META_MOUNT`] holding each environment's custody record: the digest of
/// its custody ledger (never a share), so a ledger edited on disk no longer matches.
pub const CUSTODY_PREFIX: &str = "custody";

/// The folder inside [`META_MOUNT`] holding one record per break-glass token (who, why, when,
/// until when, accessor; never the token).
pub const BREAK_GLASS_PREFIX: &str = "break-glass";

/// The custody record of the environment this mount belongs to: `custody/ledger`.
pub fn custody_record() -> KvEntry {
    KvEntry::new(META_MOUNT, format!("{CUSTODY_PREFIX}/ledger"))
}

/// The folder of break-glass records (for listing).
pub fn break_glass_records() -> KvEntry {
    KvEntry::new(META_MOUNT, BREAK_GLASS_PREFIX.to_owned())
}

/// The break-glass record `id`.
pub fn break_glass_record(id: &str) -> KvEntry {
    KvEntry::new(META_MOUNT, format!("{BREAK_GLASS_PREFIX}/{id}"))
}

/// The folder inside [`META_MOUNT`] where `warden serve` keeps its leader lease and its job
/// records (ADR 0022): run-time state of the scheduler, never a credential.
pub const SERVE_PREFIX: &str = "serve";

/// The leader lease of `warden serve` in this environment: `serve/lease`.
pub fn serve_lease() -> KvEntry {
    KvEntry::new(META_MOUNT, format!("{SERVE_PREFIX}/lease"))
}

/// The record of one scheduled job (`serve/jobs/<job>`): its last runs, bounded, and its
/// backoff. `job` is a path-safe id such as `rotate-signing-key/billing/jwt`.
pub fn serve_job_record(job: &str) -> KvEntry {
    KvEntry::new(META_MOUNT, format!("{SERVE_PREFIX}/jobs/{job}"))
}

#[cfg(test)]
mod tests;
