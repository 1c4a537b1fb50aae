//! The unit of provisioning: one OpenBao object (a mount, an auth backend, a policy, a role)
//! with the body Warden wants it to have.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

/// What kind of object; decides how it is read, compared, written and pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A secrets engine (`sys/mounts/<path>`).
    Mount,
    /// An auth backend (`sys/auth/<path>`).
    Auth,
    /// Configuration of the JWT auth backend.
    JwtConfig,
    /// An ACL policy.
    Policy,
    /// A PKI role.
    PkiRole,
    /// A cert-auth role.
    CertRole,
    /// An AppRole role.
    AppRole,
    /// A JWT auth role (CI pipelines and workloads' service accounts).
    JwtRole,
    /// A transit key. Never replaced or pruned: deleting it destroys every ciphertext.
    TransitKey,
    /// A database engine connection. Never pruned: it holds the rotated root credential.
    DatabaseConfig,
    /// A database engine role (`<mount>/roles/<app>`).
    DatabaseRole,
    /// One page of a registry entry's credential list (ADR 0014); written before its entry.
    RegistryPage,
    /// A purpose's entry in the registry (metadata only, never a value). Written after its
    /// pages, so a reader never finds a head naming pages that are not there yet.
    Registry,
}

impl Kind {
    /// Apply order: what others depend on comes first; prune runs in reverse.
    pub fn phase(self) -> u8 {
        match self {
            Self::Mount | Self::Auth => 0,
            Self::JwtConfig | Self::Policy | Self::TransitKey | Self::DatabaseConfig => 1,
            Self::PkiRole
            | Self::CertRole
            | Self::AppRole
            | Self::JwtRole
            | Self::DatabaseRole
            | Self::RegistryPage => 2,
            Self::Registry => 3,
        }
    }

    /// Mounts and auth backends hold data and credentials of things outside the spec; prune
    /// never removes them.
    pub fn prunable(self) -> bool {
        !matches!(
            self,
            Self::Mount | Self::Auth | Self::JwtConfig | Self::TransitKey | Self::DatabaseConfig
        )
    }

    /// Human label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Mount => "secrets engine",
            Self::Auth => "auth backend",
            Self::JwtConfig => "jwt config",
            Self::Policy => "policy",
            Self::PkiRole => "pki role",
            Self::CertRole => "cert role",
            Self::AppRole => "approle role",
            Self::JwtRole => "jwt role",
            Self::TransitKey => "transit key",
            Self::DatabaseConfig => "database connection",
            Self::DatabaseRole => "database role",
            Self::RegistryPage => "registry page",
            Self::Registry => "registry entry",
        }
    }
}

/// A stable identifier: `<kind>:<path>` (for example `policy:billing`), used in the ownership
/// record and in output.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectId(pub String);

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One object as the spec wants it.
#[derive(Debug, Clone, Serialize)]
pub struct Desired {
    /// Kind.
    pub kind: Kind,
    /// The API path it is written to and read from (without `/v1/`).
    pub path: String,
    /// The body to write. Compared field by field with what the server returns. `Null`: the
    /// object must not exist (a planner role whose operator role is gone, ADR 0038), planned
    /// as a delete where it does.
    pub body: Value,
    /// The identity it exists for, if any (for output and lint).
    pub identity: Option<String>,
    /// A file whose content apply sends as the body's `password` when it *creates* the object
    /// (a database connection's initial root password). Never part of the plan or its output.
    #[serde(skip)]
    pub password_file: Option<std::path::PathBuf>,
}

impl Desired {
    /// An object of the environment itself (no identity's, no password file).
    pub(crate) fn env_object(kind: Kind, path: String, body: Value) -> Self {
        Self {
            kind,
            path,
            body,
            identity: None,
            password_file: None,
        }
    }

    /// The object's identifier.
    pub fn id(&self) -> ObjectId {
        ObjectId(format!("{}:{}", kind_slug(self.kind), self.path))
    }
}

pub(crate) fn kind_slug(kind: Kind) -> &'static str {
    match kind {
        Kind::Mount => "mount",
        Kind::Auth => "auth",
        Kind::JwtConfig => "jwt-config",
        Kind::Policy => "policy",
        Kind::PkiRole => "pki-role",
        Kind::CertRole => "cert-role",
        Kind::AppRole => "approle-role",
        Kind::JwtRole => "jwt-role",
        Kind::TransitKey => "transit-key",
        Kind::DatabaseConfig => "database-config",
        Kind::DatabaseRole => "database-role",
        Kind::RegistryPage => "registry-page",
        Kind::Registry => "registry",
    }
}

/// Every kind, in apply order.
pub(crate) const ALL_KINDS: [Kind; 13] = [
    Kind::Mount,
    Kind::Auth,
    Kind::JwtConfig,
    Kind::Policy,
    Kind::PkiRole,
    Kind::CertRole,
    Kind::AppRole,
    Kind::JwtRole,
    Kind::TransitKey,
    Kind::DatabaseConfig,
    Kind::DatabaseRole,
    Kind::RegistryPage,
    Kind::Registry,
];

/// Parses an [`ObjectId`] back into kind and path.
pub(crate) fn parse_id(id: &str) -> Option<(Kind, &str)> {
    let (slug, path) = id.split_once(':')?;
    let kind = ALL_KINDS.into_iter().find(|k| kind_slug(*k) == slug)?;
    Some((kind, path))
}
