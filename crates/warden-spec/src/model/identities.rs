//! Identities (apps, proxies, containers, CI pipelines) and what each may consume.

use super::{Environment, SigningKey, Slug, TransitKey, Ttl};

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
