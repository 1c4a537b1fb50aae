//! The purpose registry: the contract every credential lives under, and the credentials a spec
//! creates that purposes cover.

use super::{Slug, Ttl};
use crate::naming;

/// Where a credential lives: its storage tier.
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

/// The contract every credential lives under: what it is for, who owns it, where it
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
