//! An environment's OpenBao nodes: how many, on which ports, where each keeps its files, and
//! the server configuration each runs (rendered by `warden-node`, the generator production
//! uses, so the lab runs what an operator would deploy).
//!
//! Node 1 keeps the ports and directory a single-node lab always had (`api_port`,
//! `cluster_port`, `envs/<env>/bao/`), so a lab created before clusters loads and comes up
//! unchanged; nodes 2..N listen on their own ports and live in `envs/<env>/bao-<n>/`. Every
//! node listens on 127.0.0.1, which the environment's one server certificate names, so that
//! certificate covers every node address.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use warden_node::{ListenerTls, NodeConfig, Peer, RaftTuning};

use crate::config::EnvConfig;
use crate::error::Error;
use crate::layout::EnvLayout;

/// The most nodes an environment may have: raft gains no fault tolerance beyond 7 and every
/// write waits for a majority.
pub const MAX_NODES: u8 = 7;

/// Refuses a node count the lab cannot run.
pub(crate) fn validate_count(nodes: u8) -> Result<(), Error> {
    if nodes == 0 || nodes > MAX_NODES {
        return Err(Error::InvalidOption(format!(
            "--nodes {nodes}: an environment runs 1 to {MAX_NODES} OpenBao nodes"
        )));
    }
    Ok(())
}

/// Why an even node count is a poor choice, or `None` for an odd one.
pub fn even_count_warning(nodes: u8) -> Option<String> {
    (nodes > 0 && nodes.is_multiple_of(2)).then(|| {
        format!(
            "{nodes} nodes tolerate no more failures than {} (a majority of {nodes} is {}); \
             an odd count is the usual choice",
            nodes - 1,
            nodes / 2 + 1
        )
    })
}

/// The ports of one node after the first (`lab.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodePorts {
    /// API port on 127.0.0.1.
    pub api_port: u16,
    /// Raft cluster port on 127.0.0.1.
    pub cluster_port: u16,
}

/// One node of an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// 1-based position; node 1 is the one the lab initialises.
    pub index: u8,
    /// Raft node id (`test-1`).
    pub id: String,
    /// API port on 127.0.0.1.
    pub api_port: u16,
    /// Raft cluster port on 127.0.0.1.
    pub cluster_port: u16,
}

impl Node {
    /// The API address (`https://127.0.0.1:PORT`).
    pub fn address(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port)
    }
}

impl EnvConfig {
    /// Every node, node 1 first.
    pub fn nodes(&self) -> Vec<Node> {
        let first = NodePorts {
            api_port: self.api_port,
            cluster_port: self.cluster_port,
        };
        std::iter::once(first)
            .chain(self.followers.iter().copied())
            .enumerate()
            .map(|(i, p)| {
                let index = u8::try_from(i + 1).unwrap_or(u8::MAX);
                Node {
                    index,
                    id: format!("{}-{index}", self.name),
                    api_port: p.api_port,
                    cluster_port: p.cluster_port,
                }
            })
            .collect()
    }

    /// Node `index` (1-based).
    pub fn node(&self, index: u8) -> Result<Node, Error> {
        self.nodes()
            .into_iter()
            .find(|n| n.index == index)
            .ok_or_else(|| {
                Error::InvalidOption(format!(
                    "environment {} has no node {index} (it has {})",
                    self.name,
                    self.followers.len() + 1
                ))
            })
    }

    /// Every node's API address, node 1 first: what a client that fails over is given.
    pub fn addresses(&self) -> Vec<String> {
        self.nodes().iter().map(Node::address).collect()
    }
}

/// Where one node keeps its files.
#[derive(Debug, Clone)]
pub struct NodeLayout {
    dir: PathBuf,
}

impl NodeLayout {
    /// The node's working directory.
    pub fn bao_dir(&self) -> &Path {
        &self.dir
    }
    /// Its server configuration.
    pub fn server_config(&self) -> PathBuf {
        self.dir.join("server.hcl")
    }
    /// Its raft storage.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    /// Its file audit device's log.
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("audit.log")
    }
    /// Its own log (stdout and stderr).
    pub fn server_log(&self) -> PathBuf {
        self.dir.join("server.log")
    }
    /// Its PID file.
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("server.pid")
    }
}

impl EnvLayout {
    /// Paths of node `index`: `bao/` for node 1 (where a single-node lab always kept them),
    /// `bao-<index>/` for the others.
    pub fn node(&self, index: u8) -> NodeLayout {
        let name = if index <= 1 {
            "bao".to_owned()
        } else {
            format!("bao-{index}")
        };
        NodeLayout {
            dir: self.dir().join(name),
        }
    }
}

/// The server configuration of `node`, rendered by the production generator. Peers are
/// joined with the operator certificate, which the listeners accept (a production node gets a
/// client certificate of its own: `warden server config`).
#[cfg(test)]
pub(crate) fn render_config(
    env: &EnvConfig,
    node: &Node,
    layout: &EnvLayout,
) -> Result<String, Error> {
    render_config_audit(env, node, layout, None)
}

/// [`render_config`] with the audit file declared as `audit` when given: a scratch copy of a
/// single-node environment must declare the file its restored audit table names (OpenBao
/// refuses to unseal when a declared audit device differs from the table).
pub(crate) fn render_config_audit(
    env: &EnvConfig,
    node: &Node,
    layout: &EnvLayout,
    audit: Option<PathBuf>,
) -> Result<String, Error> {
    let files = layout.node(node.index);
    let peers = env
        .nodes()
        .into_iter()
        .filter(|n| n.index != node.index)
        .map(|n| Peer {
            leader_api_addr: n.address(),
            leader_ca_cert_file: layout.ca_bundle(),
            leader_client_cert_file: layout.node_cert(),
            leader_client_key_file: layout.node_key(),
        })
        .collect();
    // Every node must declare the same audit device (the table is replicated), yet each needs
    // its own file on this one host: a path relative to the node's working directory is both.
    // A single node keeps the absolute path it always had.
    let audit_file = match audit {
        Some(a) => a,
        None if env.followers.is_empty() => files.audit_log(),
        None => PathBuf::from("audit.log"),
    };
    let config = NodeConfig {
        environment: env.name.clone(),
        node_id: node.id.clone(),
        api_addr: node.address(),
        cluster_addr: format!("https://127.0.0.1:{}", node.cluster_port),
        listen_address: format!("127.0.0.1:{}", node.api_port),
        cluster_listen_address: format!("127.0.0.1:{}", node.cluster_port),
        data_dir: files.data_dir(),
        tls: ListenerTls {
            cert_file: layout.server_cert(),
            key_file: layout.server_key(),
            client_ca_file: layout.client_ca(),
        },
        peers,
        audit_file,
        // What single-node labs always declared: the audit table remembers it.
        audit_description: "Warden lab audit log".to_owned(),
        prometheus_retention: warden_node::DEFAULT_PROMETHEUS_RETENTION,
        raft: RaftTuning::default(),
        seal: crate::seal::node_seal(env, layout),
        log_level: "info".to_owned(),
        generated_by: "Generated by `warden lab up`".to_owned(),
    };
    config.render().map_err(|e| Error::ServerState {
        env: env.name.clone(),
        what: format!("cannot render the configuration of node {}: {e}", node.id),
    })
}

/// New ports for nodes 2..N of an environment.
pub(crate) fn follower_ports(ports: &[u16]) -> Vec<NodePorts> {
    ports
        .chunks(2)
        .map(|p| NodePorts {
            api_port: p[0],
            cluster_port: p[1],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(followers: usize) -> EnvConfig {
        EnvConfig {
            name: "test".into(),
            api_port: 8200,
            cluster_port: 8201,
            pki_mount: "pki_int".into(),
            seal: Default::default(),
            followers: (0..followers)
                .map(|i| NodePorts {
                    api_port: 8300 + 2 * i as u16,
                    cluster_port: 8301 + 2 * i as u16,
                })
                .collect(),
        }
    }

    #[test]
    fn a_lab_json_from_before_clusters_is_one_node_in_the_old_place() {
        let old = r#"{"name":"test","api_port":8200,"cluster_port":8201,"pki_mount":"pki_int"}"#;
        let env: EnvConfig = serde_json::from_str(old).unwrap();
        assert_eq!(env.nodes().len(), 1);
        assert_eq!(env.addresses(), ["https://127.0.0.1:8200"]);
        let layout = crate::LabLayout::new("/lab").env("test");
        assert_eq!(layout.node(1).bao_dir(), Path::new("/lab/envs/test/bao"));
        // A single-node lab writes no `followers` key, so older Warden can still read it.
        assert!(!serde_json::to_string(&env).unwrap().contains("followers"));
    }

    #[test]
    fn every_node_joins_every_other_node() {
        let env = env(2);
        let layout = crate::LabLayout::new("/lab").env("test");
        let nodes = env.nodes();
        assert_eq!(
            nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
            ["test-1", "test-2", "test-3"]
        );
        let text = render_config(&env, &nodes[1], &layout).unwrap();
        assert!(
            text.contains("node_id                = \"test-2\""),
            "{text}"
        );
        assert!(text.contains("\"https://127.0.0.1:8200\""));
        assert!(text.contains("\"https://127.0.0.1:8302\""));
        assert!(!text.contains("leader_api_addr         = \"https://127.0.0.1:8300\""));
        assert!(text.contains("/lab/envs/test/bao-2/data"));
        assert!(text.contains("file_path = \"audit.log\""), "{text}");
    }

    #[test]
    fn counts_outside_one_to_seven_are_refused_and_even_ones_warned_about() {
        assert!(validate_count(0).is_err());
        assert!(validate_count(8).is_err());
        assert!(validate_count(7).is_ok());
        assert!(even_count_warning(3).is_none());
        assert!(
            even_count_warning(4)
                .unwrap()
                .contains("majority of 4 is 3")
        );
    }
}
