//! `agent.toml`: what the agent of one identity needs to know to run without the spec — which
//! server, which trust anchor, which certificate, which cert-auth role, where outputs go.
//!
//! Enrollment writes it; the agent (later) reads it. It holds no secret: the key is only ever
//! referred to by path.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The contents of `agent.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Format version, for future migrations.
    pub version: u32,
    /// Who this agent is.
    pub identity: IdentitySection,
    /// How it reaches OpenBao.
    pub openbao: OpenBaoSection,
    /// Where it keeps things.
    pub paths: PathsSection,
}

/// `[identity]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySection {
    /// The identity's name.
    pub name: String,
    /// `app` or `proxy`.
    pub kind: String,
    /// The environment.
    pub env: String,
    /// The pinned common name of its client certificate.
    pub common_name: String,
}

/// `[openbao]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenBaoSection {
    /// API address.
    pub address: String,
    /// Cert auth mount.
    pub auth_mount: String,
    /// Cert auth role.
    pub auth_role: String,
    /// The policy its token must carry, and only it.
    pub policy: String,
}

/// `[paths]`: absolute paths, so the agent does not depend on its working directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsSection {
    /// Trust anchor for the API.
    pub ca_cert: PathBuf,
    /// Client certificate chain.
    pub client_cert: PathBuf,
    /// Client key.
    pub client_key: PathBuf,
    /// Rendered outputs.
    pub out_dir: PathBuf,
    /// Agent state.
    pub state_dir: PathBuf,
}

impl AgentConfig {
    /// The current format version.
    pub const VERSION: u32 = 1;

    /// The TOML text.
    pub fn to_toml(&self, path: &Path) -> Result<String> {
        let body = toml::to_string_pretty(self).map_err(|e| Error::AgentConfig {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(format!(
            "# Written by `warden identity enroll`; re-running it rewrites this file.\n{body}"
        ))
    }

    /// Reads `agent.toml`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            step: "read",
            source,
        })?;
        toml::from_str(&text).map_err(|e| Error::AgentConfig {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_unknown_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("agent.toml");
        let cfg = AgentConfig {
            version: AgentConfig::VERSION,
            identity: IdentitySection {
                name: "billing".into(),
                kind: "app".into(),
                env: "test".into(),
                common_name: "billing.identity.test.warden.internal".into(),
            },
            openbao: OpenBaoSection {
                address: "https://127.0.0.1:8200/".into(),
                auth_mount: "cert".into(),
                auth_role: "billing".into(),
                policy: "billing".into(),
            },
            paths: PathsSection {
                ca_cert: "/x/trust/ca.pem".into(),
                client_cert: "/x/identity/client.crt".into(),
                client_key: "/x/identity/client.key".into(),
                out_dir: "/x/out".into(),
                state_dir: "/x/state".into(),
            },
        };
        std::fs::write(&path, cfg.to_toml(&path).unwrap()).unwrap();
        assert_eq!(AgentConfig::load(&path).unwrap(), cfg);
        std::fs::write(&path, "version = 1\nsurprise = true\n").unwrap();
        let err = AgentConfig::load(&path).unwrap_err();
        assert!(err.to_string().contains("agent.toml"), "{err}");
    }
}
