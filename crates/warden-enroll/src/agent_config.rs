//! `agent.toml` as a document: what `warden identity enroll` writes, in the schema of
//! `docs/agent.md` (`[identity]`, `[openbao]`, `[auth]`, `[renewal]`, `[[output]]`,
//! `[[database]]`, `[[exec_env]]`, `[exec]`, `[health]`, `[control]`).
//!
//! This is the *writer's* model: plain values in file order, no validation. The agent reads the
//! file through [`warden_agent::Config::load`], which checks everything and reports each problem
//! at `file:line:col`; [`AgentConfig::load`] is the plain reader for tools and tests. It holds no
//! secret: keys and credentials are only ever referred to by path, relative to the directory
//! holding `agent.toml`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The contents of `agent.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Format version, for future migrations.
    pub version: u32,
    /// Who this agent is.
    pub identity: IdentitySection,
    /// How it reaches OpenBao.
    pub openbao: OpenBaoSection,
    /// How it logs in.
    pub auth: AuthSection,
    /// When it renews.
    pub renewal: RenewalSection,
    /// What it delivers.
    #[serde(rename = "output", default)]
    pub outputs: Vec<OutputSection>,
    /// Dynamic database credentials its templates read.
    #[serde(rename = "database", default, skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<DatabaseSection>,
    /// The secrets `warden-agent exec` puts into its command's environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exec_env: Vec<ExecEnvSection>,
    /// How `warden-agent exec` treats its command (defaults when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecSection>,
    /// `/health` and `/metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSection>,
    /// The local control socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<ControlSection>,
}

/// `[identity]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySection {
    /// The identity's name.
    pub name: String,
    /// `app`, `proxy` or `container`.
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
    /// API address of a one-server environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// API addresses of a cluster's nodes, in the order the agent tries them (it fails over
    /// between them). The agent accepts one of `address` and `addresses`, never both.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Trust anchor for the API (and every chain the agent verifies).
    pub ca_file: String,
}

impl OpenBaoSection {
    /// `address` for one server, `addresses` for several, as the agent reads them.
    pub fn new<S: AsRef<str>>(addresses: &[S], ca_file: impl Into<String>) -> Self {
        let mut all: Vec<String> = addresses.iter().map(|a| a.as_ref().to_owned()).collect();
        let address = (all.len() == 1).then(|| all.remove(0));
        Self {
            address,
            addresses: all,
            ca_file: ca_file.into(),
        }
    }
}

/// `[auth]`. Which keys are set depends on `method`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// `cert`, `approle` or `jwt`.
    pub method: String,
    /// Auth mount.
    pub mount: String,
    /// Cert-auth or JWT role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The one policy the token must carry.
    pub policy: String,
    /// mTLS client certificate (leaf + issuing CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// Its key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// PKI mount the identity is renewed through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pki_mount: Option<String>,
    /// PKI role the identity is renewed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_role: Option<String>,
    /// AppRole role-id file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_id_file: Option<String>,
    /// AppRole secret-id file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_id_file: Option<String>,
    /// The secret-id file holds a wrapping token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_id_wrapped: Option<bool>,
    /// JWT file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
}

/// `[renewal]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewalSection {
    /// Renew at this fraction of a certificate's lifetime.
    pub fraction: f64,
    /// ± this fraction of the lifetime.
    pub jitter: f64,
    /// Never later than this before expiry.
    pub margin: String,
    /// Templates and CA chains are re-read this often.
    pub poll: String,
    /// Certificates from a replaced issuer are re-issued within this window (the spec's
    /// `[ca] reissue_window`, ADR 0029).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_window: Option<String>,
}

impl Default for RenewalSection {
    fn default() -> Self {
        Self {
            fraction: 0.667,
            jitter: 0.05,
            margin: "2m".to_owned(),
            poll: "5m".to_owned(),
            issuer_window: None,
        }
    }
}

/// One `[[output]]`. Which keys are set depends on `type`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// Unique name.
    pub name: String,
    /// `certificate`, `template`, `ca_chain`, `crl` or `signing_key`.
    #[serde(rename = "type")]
    pub kind: String,
    /// PKI mount (certificate, ca_chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pki_mount: Option<String>,
    /// PKI role (certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Common name (certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// Extra DNS names (certificate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sans: Vec<String>,
    /// Lifetime (certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// Key type (certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<String>,
    /// Directory of the set (certificate, signing_key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// The purpose governing it (certificate, signing_key): the agent checks its registry
    /// entry before every issuance or delivery of a rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// KV v2 mount of the key (signing_key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_mount: Option<String>,
    /// The key's path inside the mount (signing_key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_path: Option<String>,
    /// Template file (template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Inline template (template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contents: Option<String>,
    /// File written (template, ca_chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Intermediate + root (ca_chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_chain: Option<bool>,
    /// File mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Reload command (argv).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<Vec<String>>,
}

/// One `[[database]]`: a source templates read with `database("<name>")`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    /// The source's name.
    pub name: String,
    /// `<mount>/creds/<role>`.
    pub path: String,
}

/// One `[[exec_env]]`: a KV version 2 secret for `warden-agent exec`'s command.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecEnvSection {
    /// The variable (with `field`), else the prefix of one variable per key.
    pub name: String,
    /// KV v2 mount.
    pub mount: String,
    /// Path under the mount.
    pub path: String,
    /// One key of the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The purpose governing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
}

impl ExecEnvSection {
    /// The entry for `app`'s secret `secret` when its purpose says `delivery = "exec_env"`
    /// (`None` otherwise: it is delivered as a file). The variables are named after the secret,
    /// one per key: `stripe` with key `api_key` → `STRIPE_API_KEY`.
    pub fn for_secret(
        spec: &warden_spec::Spec,
        env: &warden_spec::Environment,
        app: &warden_spec::Slug,
        secret: &str,
    ) -> Option<Self> {
        let purpose = spec.purpose_of(&format!("{app}/secret/{secret}"))?;
        if purpose.delivery != warden_spec::Delivery::ExecEnv {
            return None;
        }
        let at = warden_spec::naming::secret(&spec.naming, &env.mounts, app, secret);
        let name: String = secret
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        Some(Self {
            name,
            mount: at.mount.trim_matches('/').to_owned(),
            path: at.path.clone(),
            field: None,
            purpose: Some(purpose.id.to_string()),
        })
    }
}

/// `[exec]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecSection {
    /// `restart` or `signal:<SIGNAL>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    /// A change settles this long before it is acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debounce: Option<String>,
    /// SIGTERM → SIGKILL grace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_timeout: Option<String>,
    /// How long the first values may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timeout: Option<String>,
}

/// `[health]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSection {
    /// Listen address.
    pub listen: String,
}

/// `[control]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSection {
    /// Unix socket path.
    pub socket: String,
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
            "# Written by `warden identity enroll`; re-running it rewrites this file.\n\
             # Relative paths are relative to this file's directory. Schema: docs/agent.md.\n{body}"
        ))
    }

    /// Reads `agent.toml` without the agent's checks (see the module documentation).
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

    pub(crate) fn sample() -> AgentConfig {
        AgentConfig {
            version: AgentConfig::VERSION,
            identity: IdentitySection {
                name: "billing".into(),
                kind: "app".into(),
                env: "test".into(),
                common_name: "billing.identity.test.warden.internal".into(),
            },
            openbao: OpenBaoSection::new(&["https://127.0.0.1:8200/"], "trust/ca.pem"),
            auth: AuthSection {
                method: "cert".into(),
                mount: "cert".into(),
                role: Some("billing".into()),
                policy: "billing".into(),
                cert_file: Some("identity/client.crt".into()),
                key_file: Some("identity/client.key".into()),
                pki_mount: Some("pki_int".into()),
                identity_role: Some("billing-identity".into()),
                ..AuthSection::default()
            },
            renewal: RenewalSection::default(),
            outputs: vec![
                OutputSection {
                    name: "tls".into(),
                    kind: "certificate".into(),
                    pki_mount: Some("pki_int".into()),
                    role: Some("billing".into()),
                    common_name: Some("billing.test.warden.internal".into()),
                    sans: vec!["billing-api.test.warden.internal".into()],
                    ttl: Some("72h".into()),
                    key_type: Some("ec-p256".into()),
                    dir: Some("out/tls".into()),
                    reload: Some(vec!["systemctl".into(), "reload".into(), "billing".into()]),
                    ..OutputSection::default()
                },
                OutputSection {
                    name: "secret-config".into(),
                    kind: "template".into(),
                    contents: Some(r#"{{ kv("kvv2", "billing/config") | tojson }}"#.into()),
                    path: Some("out/secrets/config.json".into()),
                    mode: Some("0600".into()),
                    ..OutputSection::default()
                },
                OutputSection {
                    name: "database-main".into(),
                    kind: "template".into(),
                    contents: Some(r#"{{ database("main") | tojson }}"#.into()),
                    path: Some("out/database/main.json".into()),
                    mode: Some("0600".into()),
                    ..OutputSection::default()
                },
            ],
            databases: vec![DatabaseSection {
                name: "main".into(),
                path: "postgres/creds/billing".into(),
            }],
            exec_env: vec![ExecEnvSection {
                name: "STRIPE".into(),
                mount: "kvv2".into(),
                path: "billing/stripe".into(),
                purpose: Some("billing-stripe".into()),
                ..ExecEnvSection::default()
            }],
            exec: Some(ExecSection {
                restart: Some("signal:HUP".into()),
                ..ExecSection::default()
            }),
            health: Some(HealthSection {
                listen: "127.0.0.1:0".into(),
            }),
            control: Some(ControlSection {
                socket: "state/control.sock".into(),
            }),
        }
    }

    #[test]
    fn round_trips_refuses_unknown_keys_and_passes_the_agents_checks() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("agent.toml");
        let cfg = sample();
        let text = cfg.to_toml(&path).unwrap();
        std::fs::write(&path, &text).unwrap();
        assert_eq!(AgentConfig::load(&path).unwrap(), cfg);
        // What enroll writes is what the agent accepts.
        let parsed = warden_agent::Config::load(&path).unwrap();
        assert_eq!(parsed.outputs.len(), 3);
        assert_eq!(parsed.outputs[1].name, "secret-config");
        assert_eq!(parsed.databases[0].path, "postgres/creds/billing");
        assert_eq!(parsed.exec_env[0].name, "STRIPE");
        assert_eq!(
            parsed.exec_env[0].purpose.as_deref(),
            Some("billing-stripe")
        );
        assert_eq!(
            parsed.exec.restart,
            warden_agent::config::ExecRestart::Signal(nix::sys::signal::Signal::SIGHUP)
        );
        assert!(text.contains("[[exec_env]]"), "{text}");
        assert!(text.contains("[[output]]"), "{text}");
        assert!(text.contains("[[database]]"), "{text}");
        assert!(
            text.contains("address = \"https://127.0.0.1:8200/\""),
            "{text}"
        );

        // A cluster's nodes: written as `addresses`, read by the agent in order.
        let mut cluster = sample();
        cluster.openbao = OpenBaoSection::new(
            &["https://10.0.0.11:8200", "https://10.0.0.12:8200"],
            "trust/ca.pem",
        );
        let text = cluster.to_toml(&path).unwrap();
        std::fs::write(&path, &text).unwrap();
        assert!(!text.contains("address ="), "{text}");
        assert_eq!(AgentConfig::load(&path).unwrap(), cluster);
        let parsed = warden_agent::Config::load(&path).unwrap();
        assert_eq!(
            parsed.openbao.addresses,
            ["https://10.0.0.11:8200", "https://10.0.0.12:8200"]
        );

        std::fs::write(&path, "version = 1\nsurprise = true\n").unwrap();
        let err = AgentConfig::load(&path).unwrap_err();
        assert!(err.to_string().contains("agent.toml"), "{err}");
    }
}
