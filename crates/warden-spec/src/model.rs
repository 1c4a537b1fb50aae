//! The validated platform model. Every value here has passed `validate`: names are slugs,
//! references resolve, durations parse, and templates contain the `<app>` slug.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::naming::{self, Naming};

/// A name that threads through paths and object names: `[a-z0-9][a-z0-9_-]*`, at most 63
/// characters, so it is safe in a Vault path, a policy name, a Unix user name and a DNS label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slug(String);

impl Slug {
    /// Checks and wraps `s`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "`{s}` is not a valid name: use 1-63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A positive duration written like `24h`, `90m`, `30d` or `1y`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ttl(pub Duration);

impl Ttl {
    /// Parses the one duration grammar ([`crate::parse_duration`]: `90d`, `72h`, `1y30d`, ...).
    pub fn parse(s: &str) -> Result<Self, String> {
        crate::parse_duration(s)
            .map(Self)
            .map_err(|e| e.to_string())
    }

    /// Whole seconds.
    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }

    /// The form OpenBao accepts (`86400s`).
    pub fn to_vault(self) -> String {
        format!("{}s", self.0.as_secs())
    }
}

/// Mount paths of one environment; where the spec names none, [`naming::default_mounts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounts {
    /// PKI intermediate (`pki_int`).
    pub pki: String,
    /// KV v2 (`kvv2`).
    pub kv: String,
    /// KV v1 (`kv`).
    pub kv_v1: String,
    /// Transit (`transit`).
    pub transit: String,
    /// Database (`postgres`).
    pub database: String,
    /// Cert auth (`cert`).
    pub cert_auth: String,
    /// AppRole auth (`approle`).
    pub approle: String,
    /// JWT auth for CI (`jwt`).
    pub jwt: String,
    /// JWT auth for workloads' service-account tokens (`kubernetes`).
    pub kubernetes: String,
}

/// The CI identity provider an environment trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiAuth {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
    /// PEM public key files that verify CI tokens.
    pub validation_pubkeys: Vec<PathBuf>,
}

/// One environment: a separate OpenBao server with its own trust material and owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// `test`, `prod`, ...
    pub name: Slug,
    /// API address; absent when a lab supplies it.
    pub address: Option<String>,
    /// Trust anchor for the API; absent when a lab supplies it.
    pub ca_cert: Option<PathBuf>,
    /// Unix user that owns agents' runtime directories.
    pub runtime_owner: String,
    /// Root of app-facing paths on hosts.
    pub app_root: PathBuf,
    /// DNS domain for certificate names.
    pub domain: String,
    /// Mount paths.
    pub mounts: Mounts,
    /// CI identity provider, if pipelines run here.
    pub ci: Option<CiAuth>,
    /// Service-account token issuer, if workloads log in with one here.
    pub kubernetes: Option<KubernetesAuth>,
}

/// What an identity is; decides what it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IdentityKind {
    /// Renders leaf certificates and secrets.
    App,
    /// Reads the CA chain and reloads a proxy; nothing else.
    Proxy,
    /// Reads its own secrets through AppRole.
    Container,
    /// CI: writes its app's config through JWT auth.
    Pipeline,
}

impl IdentityKind {
    /// Lower-case name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::App => "app",
            Self::Proxy => "proxy",
            Self::Container => "container",
            Self::Pipeline => "pipeline",
        }
    }
}

/// Key type of issued certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// ECDSA P-256.
    EcP256,
    /// ECDSA P-384.
    EcP384,
    /// RSA 2048.
    Rsa2048,
    /// RSA 3072.
    Rsa3072,
    /// Ed25519.
    Ed25519,
}

impl KeyType {
    /// Spec spellings.
    pub const NAMES: [&'static str; 5] = ["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "ed25519"];

    /// The key type spelled `s` (one of [`KeyType::NAMES`]).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ec-p256" => Self::EcP256,
            "ec-p384" => Self::EcP384,
            "rsa-2048" => Self::Rsa2048,
            "rsa-3072" => Self::Rsa3072,
            "ed25519" => Self::Ed25519,
            _ => return None,
        })
    }

    /// The spelling in spec and `agent.toml` files.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// OpenBao's `key_type` and `key_bits`.
    pub fn vault_params(self) -> (&'static str, u32) {
        match self {
            Self::EcP256 => ("ec", 256),
            Self::EcP384 => ("ec", 384),
            Self::Rsa2048 => ("rsa", 2048),
            Self::Rsa3072 => ("rsa", 3072),
            Self::Ed25519 => ("ed25519", 0),
        }
    }
}

/// The leaf certificate an app gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertProfile {
    /// Template: `<app>`, `<env>` and `<domain>` are substituted.
    pub common_name: String,
    /// Extra DNS SANs (same placeholders).
    pub sans: Vec<String>,
    /// Lifetime.
    pub ttl: Ttl,
    /// Key type.
    pub key_type: KeyType,
}

impl CertProfile {
    /// The concrete name for `app` in `env`.
    pub fn render(template: &str, app: &Slug, env: &Environment) -> String {
        template
            .replace("<app>", app.as_str())
            .replace("<env>", env.name.as_str())
            .replace("<domain>", &env.domain)
    }
}

/// What a CI pipeline is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineBinding {
    /// The app whose config the pipeline writes.
    pub app: Slug,
    /// Repository claim value (`org/repo`).
    pub repository: String,
    /// Allowed branches (the `ref` claim is `refs/heads/<branch>`).
    pub branches: Vec<String>,
}

/// One app, proxy, container or pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The `<app>` slug.
    pub name: Slug,
    /// Kind.
    pub kind: IdentityKind,
    /// Environments it lives in.
    pub environments: Vec<Slug>,
    /// Leaf certificate profile (apps).
    pub certificate: Option<CertProfile>,
    /// KV entries (under its own prefix) it may read.
    pub secrets: Vec<String>,
    /// Databases it gets dynamic credentials for.
    pub databases: Vec<String>,
    /// Reload command (argv).
    pub reload: Option<Vec<String>>,
    /// CI binding (pipelines).
    pub pipeline: Option<PipelineBinding>,
    /// AppRole secret-id lifetime (containers).
    pub secret_id_ttl: Option<Ttl>,
    /// Transit keys it uses as a service (apps).
    pub transit_keys: Vec<TransitKey>,
    /// Dual-key rotated signing keys it reads (apps).
    pub signing_keys: Vec<SigningKey>,
    /// Service-account binding that lets a workload log in as this identity (apps, containers).
    pub workload: Option<WorkloadBinding>,
}

impl Identity {
    /// Whether it lives in `env`.
    pub fn in_env(&self, env: &str) -> bool {
        self.environments.iter().any(|e| e.as_str() == env)
    }
}

/// Names of least-privilege lint rules that a waiver may name.
pub const LINT_RULES: [&str; 5] = [
    "wildcard-beyond-prefix",
    "sudo",
    "shared-identity",
    "proxy-can-issue",
    "cross-app-read",
];

/// An explicit, reasoned exception to a lint rule for one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiver {
    /// One of [`LINT_RULES`].
    pub rule: String,
    /// The identity.
    pub identity: Slug,
    /// Why it is acceptable.
    pub reason: String,
}

/// A validated platform spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Naming templates.
    pub naming: Naming,
    /// Environments, in name order.
    pub environments: Vec<Environment>,
    /// Identities, ordered by kind then name.
    pub identities: Vec<Identity>,
    /// Waivers.
    pub waivers: Vec<Waiver>,
    /// Databases, in name order.
    pub databases: Vec<Database>,
    /// Domain certificates, in domain order.
    pub domains: Vec<DomainCert>,
    /// Purposes, in id order.
    pub purposes: Vec<Purpose>,
}

impl Spec {
    /// The environment called `name`.
    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.name.as_str() == name)
    }

    /// Identities living in `env`.
    pub fn identities_in<'a>(&'a self, env: &'a str) -> impl Iterator<Item = &'a Identity> + 'a {
        self.identities.iter().filter(move |i| i.in_env(env))
    }

    /// The identity called `name`.
    pub fn identity(&self, name: &str) -> Option<&Identity> {
        self.identities.iter().find(|i| i.name.as_str() == name)
    }

    /// The database called `name`.
    pub fn database(&self, name: &str) -> Option<&Database> {
        self.databases.iter().find(|d| d.name.as_str() == name)
    }

    /// The purpose called `id`.
    pub fn purpose(&self, id: &str) -> Option<&Purpose> {
        self.purposes.iter().find(|p| p.id.as_str() == id)
    }

    /// The purpose governing the credential `id` (validation guarantees at most one).
    pub fn purpose_of(&self, id: &str) -> Option<&Purpose> {
        self.purposes.iter().find(|p| p.covers(id))
    }

    /// Every credential the spec creates, in identity order then kind order.
    pub fn credentials(&self) -> Vec<Credential> {
        let mut out = Vec::new();
        for i in &self.identities {
            let mut add = |kind: CredentialKind| {
                out.push(Credential::new(
                    i.name.clone(),
                    kind,
                    i.environments.clone(),
                ));
            };
            match i.kind {
                IdentityKind::App | IdentityKind::Proxy => add(CredentialKind::IdentityCert),
                IdentityKind::Container => add(CredentialKind::SecretId),
                IdentityKind::Pipeline => add(CredentialKind::CiToken),
            }
            if i.certificate.is_some() {
                add(CredentialKind::Certificate);
            }
            for s in &i.secrets {
                add(CredentialKind::Secret(s.clone()));
            }
            for d in &i.databases {
                add(CredentialKind::Database(d.clone()));
            }
            for k in &i.transit_keys {
                add(CredentialKind::TransitKey(k.name.to_string()));
            }
            for k in &i.signing_keys {
                add(CredentialKind::SigningKey(k.name.to_string()));
            }
        }
        for d in &self.domains {
            out.push(Credential::new(
                d.app.clone(),
                CredentialKind::DomainCert(d.slug.to_string()),
                d.environments.clone(),
            ));
        }
        out
    }

    /// Whether `rule` is waived for `identity`.
    pub fn waived(&self, rule: &str, identity: &str) -> Option<&Waiver> {
        self.waivers
            .iter()
            .find(|w| w.rule == rule && w.identity.as_str() == identity)
    }
}

// ---------------------------------------------------------------------------------------------
// Secrets engines beyond PKI and KV (issue 6) and the purpose registry (issue 5).

/// A PostgreSQL server the database engine issues dynamic credentials for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    /// Connection name (`[databases.<name>]`), the engine's `config/<name>`.
    pub name: Slug,
    /// Environments whose engine connects to it.
    pub environments: Vec<Slug>,
    /// `postgresql://{{username}}:{{password}}@host:port/db?sslmode=…`; the placeholders stay
    /// literal, OpenBao fills them in.
    pub connection_url: String,
    /// The engine's own login. Its password is read from `password_file` at apply time, sent to
    /// the engine only, and rotated with `rotate-root` right after, so the file goes stale.
    pub username: String,
    /// Where apply reads the engine's initial password (never argv or environment).
    pub password_file: PathBuf,
    /// Lease lifetime of a dynamic credential.
    pub default_ttl: Ttl,
    /// Longest a dynamic credential may be renewed to.
    pub max_ttl: Ttl,
}

/// What a transit key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitKeyType {
    /// Symmetric encryption (`aes256-gcm96`).
    Aes256Gcm96,
    /// Signing with Ed25519.
    Ed25519,
    /// Signing with ECDSA P-256.
    EcdsaP256,
}

impl TransitKeyType {
    /// Spec spellings, which are OpenBao's.
    pub const NAMES: [&'static str; 3] = ["aes256-gcm96", "ed25519", "ecdsa-p256"];

    /// The type spelled `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "aes256-gcm96" => Self::Aes256Gcm96,
            "ed25519" => Self::Ed25519,
            "ecdsa-p256" => Self::EcdsaP256,
            _ => return None,
        })
    }

    /// OpenBao's name for it.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// Whether the key signs (otherwise it encrypts).
    pub fn signs(self) -> bool {
        !matches!(self, Self::Aes256Gcm96)
    }
}

/// A transit key an app uses as a service; the key never leaves OpenBao.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitKey {
    /// Short name; the key is `transit/keys/<app>-<name>`.
    pub name: Slug,
    /// Encrypts or signs.
    pub key_type: TransitKeyType,
}

impl TransitKey {
    /// The key's name in the transit mount for `app`.
    pub fn key_name(&self, app: &Slug) -> String {
        naming::transit_key_name(app, self.name.as_str())
    }
}

/// Algorithm of a rotated signing key kept in KV v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    /// ECDSA P-256 with SHA-256 (JWS `ES256`).
    Es256,
    /// Ed25519 (JWS `EdDSA`).
    EdDsa,
}

impl SigningAlgorithm {
    /// Spec spellings.
    pub const NAMES: [&'static str; 2] = ["es256", "eddsa"];

    /// The algorithm spelled `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "es256" => Self::Es256,
            "eddsa" => Self::EdDsa,
            _ => return None,
        })
    }

    /// The spec spelling.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// The JWS `alg` value.
    pub fn jws_alg(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }
}

/// A signing key that an app reads from KV v2 and that rotates dual-key (seed 004): every
/// rotation is a new KV version; the previous one stays valid for `grace`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    /// Short name; stored at `<kv>/<kv_prefix>/signing/<name>` ([`naming::signing_key`]).
    pub name: Slug,
    /// Algorithm.
    pub algorithm: SigningAlgorithm,
    /// How long the previous key keeps verifying after a rotation (default 24h).
    pub grace: Ttl,
    /// How often it should rotate (default 90d).
    pub interval: Ttl,
}

/// What a workload's service-account token must say to log in as an identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadBinding {
    /// Kubernetes namespace.
    pub namespace: String,
    /// Service account name.
    pub service_account: String,
}

impl WorkloadBinding {
    /// The token's `sub` claim: `system:serviceaccount:<namespace>:<name>`.
    pub fn subject(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        )
    }
}

/// The service-account token issuer an environment trusts (JWT auth with the cluster's public
/// keys; no TokenReview call, so OpenBao needs no route to the cluster API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesAuth {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
    /// PEM public key files that verify service-account tokens.
    pub validation_pubkeys: Vec<PathBuf>,
}

/// A domain TLS certificate kept in KV v2 with its expiry (seed 004), renewed a configurable
/// time before it expires and written as a new version with check-and-set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainCert {
    /// The DNS name.
    pub domain: String,
    /// `domain` with dots as dashes: names the PKI role and the purpose reference.
    pub slug: Slug,
    /// Environments it lives in.
    pub environments: Vec<Slug>,
    /// The app that reads it.
    pub app: Slug,
    /// Lifetime of each issued certificate.
    pub ttl: Ttl,
    /// Renew when less than this remains (default 30d).
    pub renew_before: Ttl,
    /// Key type.
    pub key_type: KeyType,
}

impl DomainCert {
    /// KV path (inside the KV v2 mount): `domains/<domain>/cert`.
    pub fn kv_path(&self) -> String {
        naming::domain_cert_path(&self.domain)
    }

    /// PKI role that issues it: `domain-<slug>`.
    pub fn pki_role(&self) -> String {
        naming::domain_pki_role(&self.slug)
    }
}

/// Where a credential lives (seed 002's storage tiers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StorageTier {
    /// Signing or encryption without raw key export.
    VaultTransit,
    /// Normal custody in Vault.
    VaultKv,
    /// A transitional cache only, never the source of truth.
    KubernetesSecret,
    /// Memory-only or short-lived material, such as renewed leaf certificates.
    Ephemeral,
}

impl StorageTier {
    /// Spec spellings.
    pub const NAMES: [&'static str; 4] = [
        "vault_transit",
        "vault_kv",
        "kubernetes_secret",
        "ephemeral",
    ];

    /// The tier spelled `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::NAMES.iter().position(|n| *n == s).map(|i| {
            [
                Self::VaultTransit,
                Self::VaultKv,
                Self::KubernetesSecret,
                Self::Ephemeral,
            ][i]
        })
    }

    /// The spec spelling.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// How a credential reaches its consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Delivery {
    /// Rendered to a file by the identity's agent.
    AgentFile,
    /// Put into a process's environment by an exec wrapper.
    ExecEnv,
    /// Handed out once through a single-use wrapped token.
    RevealOnce,
    /// Materialised into a Kubernetes Secret.
    KubernetesSecret,
    /// Used inside OpenBao through an API (transit), never delivered.
    Api,
}

impl Delivery {
    /// Spec spellings.
    pub const NAMES: [&'static str; 5] = [
        "agent_file",
        "exec_env",
        "reveal_once",
        "kubernetes_secret",
        "api",
    ];

    /// The mode spelled `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::NAMES.iter().position(|n| *n == s).map(|i| {
            [
                Self::AgentFile,
                Self::ExecEnv,
                Self::RevealOnce,
                Self::KubernetesSecret,
                Self::Api,
            ][i]
        })
    }

    /// The spec spelling.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// How often a purpose's credentials rotate and how long an old one may live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// Rotate this often; rotation is *due* once a credential is this old.
    pub interval: Ttl,
    /// After `interval`, renewal is still allowed for this long; past `interval + grace` new
    /// issuance and renewal are refused (fail closed).
    pub grace: Ttl,
    /// No credential of this purpose may be older than this; posture reports `expired`.
    /// Default: interval + 2 × grace.
    pub max_age: Ttl,
}

/// The contract every credential lives under (seed 002): what it is for, who owns it, where it
/// is stored, how it is delivered, how often it rotates and which evidence component proves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purpose {
    /// Stable id (`[purposes.<id>]`).
    pub id: Slug,
    /// What it is for.
    pub description: String,
    /// Who owns it (a team or person).
    pub owner: String,
    /// Storage tier.
    pub tier: StorageTier,
    /// Delivery mode.
    pub delivery: Delivery,
    /// Rotation policy.
    pub rotation: RotationPolicy,
    /// Custody notes (who can touch the material and how).
    pub custody: String,
    /// Evidence component id.
    pub evidence: String,
    /// Credential references it governs (see [`Credential::id`]); `*` matches one path segment.
    pub covers: Vec<String>,
    /// A revoked purpose: nothing new is issued or renewed under it.
    pub revoked: bool,
}

impl Purpose {
    /// Whether this purpose governs the credential `id`.
    pub fn covers(&self, id: &str) -> bool {
        self.covers.iter().any(|p| pattern_matches(p, id))
    }
}

/// `*` matches exactly one `/`-separated segment; everything else matches literally.
pub fn pattern_matches(pattern: &str, id: &str) -> bool {
    let p: Vec<&str> = pattern.split('/').collect();
    let i: Vec<&str> = id.split('/').collect();
    p.len() == i.len() && p.iter().zip(&i).all(|(p, i)| *p == "*" || p == i)
}

/// Which kind of credential a spec creates.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CredentialKind {
    /// An identity's own mTLS client certificate (`<id>/identity-cert`).
    IdentityCert,
    /// An app's leaf certificate (`<app>/certificate`).
    Certificate,
    /// A KV entry (`<id>/secret/<name>`).
    Secret(String),
    /// Dynamic database credentials (`<app>/database/<db>`).
    Database(String),
    /// A container's AppRole secret-id (`<container>/secret-id`).
    SecretId,
    /// A CI pipeline's short-lived token (`<pipeline>/ci-token`).
    CiToken,
    /// A transit key (`<app>/transit/<name>`).
    TransitKey(String),
    /// A rotated signing key (`<app>/signing-key/<name>`).
    SigningKey(String),
    /// A domain TLS certificate (`domain/<slug>`).
    DomainCert(String),
}

/// One credential the spec creates, with the reference purposes use to cover it. `identity`
/// and `kind` are its typed id: [`naming::credential_id`] renders them as `id` and
/// [`naming::location`] says where they live in OpenBao.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// `<identity>/<kind>[/<name>]` or `domain/<slug>`, rendered from `identity` and `kind`.
    pub id: String,
    /// Kind.
    pub kind: CredentialKind,
    /// The identity that consumes it.
    pub identity: Slug,
    /// Environments it exists in.
    pub environments: Vec<Slug>,
}

impl Credential {
    /// The credential of `kind` that `identity` consumes in `environments`, with its reference.
    pub fn new(identity: Slug, kind: CredentialKind, environments: Vec<Slug>) -> Self {
        Self {
            id: naming::credential_id(&identity, &kind),
            kind,
            identity,
            environments,
        }
    }
}
