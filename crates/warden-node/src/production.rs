//! A production node's files from the spec: one environment's `[[environments.<env>.nodes]]`
//! entry becomes that node's server configuration and systemd unit (`warden server config`).
//!
//! Default paths (each can be overridden):
//!
//! ```text
//! /etc/warden/<env>/openbao/<node>.hcl   the server configuration
//! /etc/warden/<env>/tls/server.{crt,key} the listener's certificate (SANs: the node's address)
//! /etc/warden/<env>/tls/client-ca.pem    the CAs whose client certificates the listener accepts
//! /etc/warden/<env>/tls/ca.pem           the trust anchor of the other nodes' certificates
//! /etc/warden/<env>/tls/node.{crt,key}   the client certificate this node joins its peers with
//! /var/lib/warden/<env>/raft             raft storage
//! /var/log/warden/<env>/audit.log        the file audit device (the same path on every node)
//! /usr/bin/bao                           the OpenBao binary
//! ```

use std::path::{Path, PathBuf};

use serde::Serialize;
use warden_files::{Mode, write_atomic};
use warden_spec::{Environment, Node as SpecNode};

use crate::config::{
    DEFAULT_PROMETHEUS_RETENTION, ElectionTimeouts, ListenerTls, NodeConfig, Peer, RaftTuning,
};
use crate::error::NodeError;
use crate::seal::Seal;
use crate::unit::UnitConfig;

/// OpenBao's default API port, when a node's address names none.
const DEFAULT_API_PORT: u16 = 8200;
/// OpenBao's default cluster port.
const DEFAULT_CLUSTER_PORT: u16 = 8201;

/// Where a node's files live on its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    /// Configuration directory (`/etc/warden/<env>`): `openbao/` and `tls/` under it.
    pub config_dir: PathBuf,
    /// Raft storage (`/var/lib/warden/<env>/raft`).
    pub data_dir: PathBuf,
    /// Audit directory (`/var/log/warden/<env>`).
    pub audit_dir: PathBuf,
    /// The `bao` binary (`/usr/bin/bao`).
    pub bao_binary: PathBuf,
}

impl HostPaths {
    /// The production defaults for environment `env`.
    pub fn defaults(env: &str) -> Self {
        Self {
            config_dir: Path::new("/etc/warden").join(env),
            data_dir: Path::new("/var/lib/warden").join(env).join("raft"),
            audit_dir: Path::new("/var/log/warden").join(env),
            bao_binary: PathBuf::from("/usr/bin/bao"),
        }
    }

    fn tls(&self, file: &str) -> PathBuf {
        self.config_dir.join("tls").join(file)
    }

    /// Where the server configuration of `node` is installed on the host.
    pub fn config_file(&self, node: &str) -> PathBuf {
        self.config_dir.join("openbao").join(format!("{node}.hcl"))
    }
}

/// One node's configuration and unit, ready to render.
#[derive(Debug, Clone)]
pub struct NodeFiles {
    /// The server configuration.
    pub config: NodeConfig,
    /// The systemd unit.
    pub unit: UnitConfig,
}

/// What [`NodeFiles::write`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Written {
    /// The node.
    pub node: String,
    /// The environment.
    pub environment: String,
    /// Each file written: `server-config` or `systemd-unit`, its path here, and where it goes
    /// on the host.
    pub files: Vec<WrittenFile>,
    /// The raft election tuning the configuration runs with.
    pub raft: ElectionTimeouts,
    /// The peers it joins through (`retry_join`).
    pub peers: Vec<String>,
    /// The user the unit runs the server as.
    pub runs_as: String,
}

/// One file written.
#[derive(Debug, Clone, Serialize)]
pub struct WrittenFile {
    /// `server-config` or `systemd-unit`.
    pub kind: &'static str,
    /// Where it was written.
    pub path: PathBuf,
    /// Where it belongs on the node's host.
    pub install_to: PathBuf,
}

/// `host:port` of an `https://host[:port]` address, with `default_port` when it names none.
pub(crate) fn host_port(address: &str, default_port: u16) -> Result<String, NodeError> {
    let rest = address
        .strip_prefix("https://")
        .ok_or_else(|| NodeError::invalid("address", address, "must be https://host[:port]"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    if authority.is_empty() {
        return Err(NodeError::invalid(
            "address",
            address,
            "must be https://host[:port]",
        ));
    }
    // `[v6]:port`, `[v6]`, `host:port` or `host`.
    let has_port = match authority.strip_prefix('[') {
        Some(v6) => v6
            .split_once(']')
            .is_some_and(|(_, rest)| rest.starts_with(':')),
        None => authority.contains(':'),
    };
    Ok(if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:{default_port}")
    })
}

/// The files of node `node` of `env`, from the spec. `seal` is the environment's seal stanza.
pub fn node_files(
    env: &Environment,
    node: &str,
    paths: &HostPaths,
    seal: Seal,
) -> Result<NodeFiles, NodeError> {
    let this: &SpecNode = env
        .nodes
        .iter()
        .find(|n| n.name.as_str() == node)
        .ok_or_else(|| NodeError::UnknownNode {
            environment: env.name.to_string(),
            node: node.to_owned(),
            known: env.nodes.iter().map(|n| n.name.to_string()).collect(),
        })?;
    let peers = env
        .nodes
        .iter()
        .filter(|n| n.name != this.name)
        .map(|n| Peer {
            leader_api_addr: n.address.trim_end_matches('/').to_owned(),
            leader_ca_cert_file: paths.tls("ca.pem"),
            leader_client_cert_file: paths.tls("node.crt"),
            leader_client_key_file: paths.tls("node.key"),
        })
        .collect();
    let config = NodeConfig {
        environment: env.name.to_string(),
        node_id: this.name.to_string(),
        api_addr: this.address.trim_end_matches('/').to_owned(),
        cluster_addr: this.cluster_address.trim_end_matches('/').to_owned(),
        listen_address: host_port(&this.address, DEFAULT_API_PORT)?,
        cluster_listen_address: host_port(&this.cluster_address, DEFAULT_CLUSTER_PORT)?,
        data_dir: paths.data_dir.clone(),
        tls: ListenerTls {
            cert_file: paths.tls("server.crt"),
            key_file: paths.tls("server.key"),
            client_ca_file: paths.tls("client-ca.pem"),
        },
        peers,
        audit_file: paths.audit_dir.join("audit.log"),
        audit_description: "Warden audit log".to_owned(),
        prometheus_retention: DEFAULT_PROMETHEUS_RETENTION,
        raft: RaftTuning::default(),
        seal,
        log_level: "info".to_owned(),
        generated_by: "Generated by `warden server config`".to_owned(),
    };
    let privileged = [&config.listen_address, &config.cluster_listen_address]
        .iter()
        .any(|a| {
            a.rsplit(':')
                .next()
                .and_then(|p| p.parse::<u16>().ok())
                .is_some_and(|p| p < 1024)
        });
    let unit = UnitConfig {
        environment: env.name.to_string(),
        node_id: this.name.to_string(),
        user: env.runtime_owner.clone(),
        group: env.runtime_owner.clone(),
        bao_binary: paths.bao_binary.clone(),
        config_file: paths.config_file(node),
        read_write_paths: vec![paths.data_dir.clone(), paths.audit_dir.clone()],
        privileged_port: privileged,
        generated_by: "Generated by `warden server config`".to_owned(),
    };
    Ok(NodeFiles { config, unit })
}

impl NodeFiles {
    /// Renders both files (nothing is written unless both render) and writes them into `out`
    /// (`<node>.hcl`, `warden-openbao-<node>.service`), atomically. They hold paths, never
    /// key material, so they are world-readable like any configuration.
    pub fn write(&self, out: &Path, paths: &HostPaths) -> Result<Written, NodeError> {
        let config = self.config.render()?;
        let unit = self.unit.render()?;
        let node = &self.config.node_id;
        let config_path = out.join(format!("{node}.hcl"));
        let unit_path = out.join(self.unit.file_name());
        write_atomic(&config_path, config.as_bytes(), Mode::Public)?;
        write_atomic(&unit_path, unit.as_bytes(), Mode::Public)?;
        Ok(Written {
            node: node.clone(),
            environment: self.config.environment.clone(),
            files: vec![
                WrittenFile {
                    kind: "server-config",
                    path: config_path,
                    install_to: paths.config_file(node),
                },
                WrittenFile {
                    kind: "systemd-unit",
                    path: unit_path,
                    install_to: Path::new("/etc/systemd/system").join(self.unit.file_name()),
                },
            ],
            raft: self.config.raft.timeouts(),
            peers: self
                .config
                .peers
                .iter()
                .map(|p| p.leader_api_addr.clone())
                .collect(),
            runs_as: self.unit.user.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_come_from_the_node_addresses() {
        assert_eq!(
            host_port("https://10.0.0.11:8200", 1).unwrap(),
            "10.0.0.11:8200"
        );
        assert_eq!(
            host_port("https://bao-1.example.net", 8200).unwrap(),
            "bao-1.example.net:8200"
        );
        assert_eq!(
            host_port("https://[fd00::1]", 8201).unwrap(),
            "[fd00::1]:8201"
        );
        assert_eq!(
            host_port("https://[fd00::1]:9201/", 8201).unwrap(),
            "[fd00::1]:9201"
        );
        assert!(host_port("http://10.0.0.11", 8200).is_err());
    }

    #[test]
    fn production_defaults_live_under_etc_and_var_lib() {
        let p = HostPaths::defaults("prod");
        assert_eq!(
            p.config_file("prod-1"),
            Path::new("/etc/warden/prod/openbao/prod-1.hcl")
        );
        assert_eq!(p.data_dir, Path::new("/var/lib/warden/prod/raft"));
        assert_eq!(
            p.tls("node.key"),
            Path::new("/etc/warden/prod/tls/node.key")
        );
    }
}
