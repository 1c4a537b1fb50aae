//! The lab's persistent settings (`lab.json`). Chosen once, when the lab is created, so that a
//! later `up` brings back the same servers on the same addresses with the same data.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Environments a new lab gets.
pub(crate) const DEFAULT_ENVIRONMENTS: [&str; 2] = ["test", "prod"];
/// Lab default Shamir shares.
pub(crate) const DEFAULT_SHARES: u8 = 3;
/// Lab default Shamir threshold.
pub(crate) const DEFAULT_THRESHOLD: u8 = 2;
/// The PKI intermediate mount each environment gets.
pub const DEFAULT_PKI_MOUNT: &str = "pki_int";

/// Settings for a new lab (`warden lab up` flags).
#[derive(Debug, Clone)]
pub struct NewLabOptions {
    /// Environment names, in order.
    pub environments: Vec<String>,
    /// Unseal key shares per environment.
    pub shares: u8,
    /// Shares needed to unseal.
    pub threshold: u8,
    /// How every environment is sealed (`--seal`); recovery keys use `shares`/`threshold`.
    pub seal: warden_node::SealKind,
    /// OpenBao nodes per environment (1 to [`MAX_NODES`](crate::MAX_NODES)).
    pub nodes: u8,
    /// Test harness only, never `warden lab up`: bootstrap also leaves a token that may seal
    /// the servers (policy `warden-test-harness`, `sys/seal` and nothing else), for tests of
    /// what clients do while a server is sealed. See `operators` in this crate.
    pub test_harness_token: bool,
    /// The name constraints of each environment's PKI intermediate (ADR 0013), from the spec
    /// the lab will run (`warden_spec::naming::environment_names`); an environment missing here
    /// gets [`lab_permitted_dns`]. Used when the intermediate is signed, at the lab's creation.
    pub permitted_dns: std::collections::BTreeMap<String, Vec<String>>,
}

/// The names an environment's PKI intermediate is constrained to when no spec says otherwise:
/// `<env>.warden.internal`, the domain the example platform gives each environment.
pub fn lab_permitted_dns(env: &str) -> Vec<String> {
    vec![format!("{env}.warden.internal")]
}

/// Each environment of `spec` with the names its PKI intermediate must permit
/// (`warden_spec::naming::environment_names`), for [`NewLabOptions::permitted_dns`].
pub fn permitted_dns_from_spec(
    spec: &warden_spec::Spec,
) -> std::collections::BTreeMap<String, Vec<String>> {
    spec.environments
        .iter()
        .map(|e| {
            (
                e.name.to_string(),
                warden_spec::naming::environment_names(spec, e),
            )
        })
        .collect()
}

impl Default for NewLabOptions {
    fn default() -> Self {
        Self {
            environments: DEFAULT_ENVIRONMENTS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            shares: DEFAULT_SHARES,
            threshold: DEFAULT_THRESHOLD,
            seal: warden_node::SealKind::Shamir,
            nodes: 1,
            test_harness_token: false,
            permitted_dns: std::collections::BTreeMap::new(),
        }
    }
}

impl NewLabOptions {
    /// Checks the options before anything is created.
    pub fn validate(&self) -> Result<(), Error> {
        if self.threshold == 0 || self.shares == 0 || self.threshold > self.shares {
            return Err(Error::InvalidOption(format!(
                "threshold {} must be between 1 and the number of shares ({})",
                self.threshold, self.shares
            )));
        }
        crate::nodes::validate_count(self.nodes)?;
        if self.environments.is_empty() {
            return Err(Error::InvalidOption(
                "at least one environment is needed".into(),
            ));
        }
        for (i, name) in self.environments.iter().enumerate() {
            let ok = !name.is_empty()
                && name.len() <= 32
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !name.starts_with('-');
            if !ok {
                return Err(Error::InvalidOption(format!(
                    "environment name {name:?} must be 1-32 characters of a-z, 0-9 and '-'"
                )));
            }
            if self.environments[..i].contains(name) {
                return Err(Error::InvalidOption(format!(
                    "environment {name:?} is listed twice"
                )));
            }
        }
        Ok(())
    }
}

/// What `lab.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabConfig {
    /// Format version of this file.
    pub version: u32,
    /// Unseal key shares per environment.
    pub shares: u8,
    /// Shares needed to unseal.
    pub threshold: u8,
    /// The environments, in order.
    pub environments: Vec<EnvConfig>,
    /// The seal-keeper of transit-sealed environments (`crate::seal_keeper`), once there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal_keeper: Option<EnvConfig>,
    /// The lab's PostgreSQL (`crate::postgres::LabPostgres`), once a spec asked for it: its
    /// port, chosen when it first started and kept so the engines' connections stay valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<crate::postgres::PostgresConfig>,
}

/// One environment's fixed settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvConfig {
    /// Environment name (`test`, `prod`, ...).
    pub name: String,
    /// API port on 127.0.0.1.
    pub api_port: u16,
    /// Raft cluster port on 127.0.0.1.
    pub cluster_port: u16,
    /// The PKI intermediate mount.
    pub pki_mount: String,
    /// How the environment is sealed (absent: Shamir).
    #[serde(default, skip_serializing_if = "crate::seal::EnvSeal::is_shamir")]
    pub seal: crate::seal::EnvSeal,
    /// Nodes 2..N of a raft cluster (node 1 is `api_port`/`cluster_port`); absent in labs
    /// created before clusters, which are single-node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub followers: Vec<crate::nodes::NodePorts>,
}

impl EnvConfig {
    /// Node 1's API address (with several nodes, [`addresses`](Self::addresses) has them
    /// all).
    pub fn address(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port)
    }
}

impl LabConfig {
    /// Reads `lab.json`; `Ok(None)` when the lab does not exist yet.
    pub fn load(path: &Path) -> Result<Option<Self>, Error> {
        let text = match crate::read_text(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, "read lab settings", e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::CorruptLab {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
    }

    /// Writes `lab.json` atomically.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let mut text = serde_json::to_string_pretty(self).expect("lab config serialises");
        text.push('\n');
        warden_files::write_atomic(path, text.as_bytes(), warden_files::Mode::Public)?;
        Ok(())
    }

    /// The environment called `name`.
    pub fn env(&self, name: &str) -> Option<&EnvConfig> {
        self.environments.iter().find(|e| e.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FIFO at `lab.json` hung `lab status` and every command given `--lab` for ever; a
    /// symlink to `/dev/zero` read until memory ran out. Both fail at once, naming the file.
    #[test]
    fn a_fifo_or_device_at_lab_json_fails_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("lab.json");
        assert!(LabConfig::load(&path).unwrap().is_none(), "missing: no lab");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = LabConfig::load(&path).unwrap_err();
        assert!(e.to_string().contains("lab.json"), "{e}");
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        let e = LabConfig::load(&path).unwrap_err();
        assert!(e.to_string().contains("lab.json"), "{e}");
    }
}
