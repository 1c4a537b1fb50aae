//! The validated platform model. Every value here has passed `validate`: names are slugs,
//! references resolve, durations parse, and templates contain the `<app>` slug.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

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

/// A duration written like `24h`, `90m`, `30d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ttl(pub Duration);

impl Ttl {
    /// Parses `<number><unit>` with unit `s`, `m`, `h` or `d`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a duration like 24h, 30m or 7d"))?;
        let secs = match unit {
            "s" => n,
            "m" => n * 60,
            "h" => n * 3600,
            "d" => n * 86_400,
            _ => return Err(format!("`{s}` has an unknown unit: use s, m, h or d")),
        };
        if secs == 0 {
            return Err("a duration must be positive".to_owned());
        }
        Ok(Self(Duration::from_secs(secs)))
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

/// A naming template in which `<app>` stands for the identity's slug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(String);

impl Template {
    pub(crate) fn new(s: String) -> Self {
        Self(s)
    }

    /// The template text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name for `app`.
    pub fn render(&self, app: &Slug) -> String {
        self.0.replace("<app>", app.as_str())
    }
}

/// How names derive from the `<app>` slug. Defaults follow the seeds; names are identical in
/// every environment while each environment stays a separate server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    /// Runtime policy: `<app>`.
    pub policy: Template,
    /// CI/ops policy: `<app>-ops`.
    pub ops_policy: Template,
    /// KV path prefix inside the KV mounts: `<app>` (so `kvv2/<app>/config`).
    pub kv_prefix: Template,
    /// Database role: `<app>` (so `postgres/creds/<app>`).
    pub db_role: Template,
    /// PostgreSQL group role granted to dynamic users: `<app>_role`.
    pub db_group: Template,
    /// JWT role for CI: `gitea_cicd_<app>`.
    pub ci_role: Template,
    /// PKI role issuing the identity's leaf certificates: `<app>`.
    pub pki_role: Template,
    /// Cert-auth role: `<app>`.
    pub cert_role: Template,
    /// AppRole role: `<app>`.
    pub approle_role: Template,
    /// PKI role that issues the identity's own mTLS client certificate: `<app>-identity`.
    pub identity_role: Template,
}

/// Mount paths of one environment.
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

    /// Whether `rule` is waived for `identity`.
    pub fn waived(&self, rule: &str, identity: &str) -> Option<&Waiver> {
        self.waivers
            .iter()
            .find(|w| w.rule == rule && w.identity.as_str() == identity)
    }
}
