//! What `lab status` reports for each node of an environment: running, leader or standby,
//! sealed, the raft indexes it has committed and applied, and the cluster's peer set. A node
//! that is down is reported as down; the environment is still read through the others.

use secrecy::SecretString;
use serde::Serialize;
use warden_bao::{Health, RaftServer};

use crate::client;
use crate::config::EnvConfig;
use crate::layout::EnvLayout;
use crate::nodes::Node;
use crate::server::{self, ProcessState};

/// One node's status.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// Raft node id (`test-1`).
    pub id: String,
    /// API address.
    pub address: String,
    /// Our server process for this node is running.
    pub running: bool,
    /// Its PID when running.
    pub pid: Option<u32>,
    /// `leader`, `standby`, `sealed`, `uninitialized`, `down` or `unknown` (no answer).
    pub role: &'static str,
    /// From `sys/health`.
    pub initialized: Option<bool>,
    /// From `sys/health`.
    pub sealed: Option<bool>,
    /// Highest raft index this node knows committed (`sys/leader`).
    pub raft_committed_index: Option<u64>,
    /// Highest raft index this node has applied.
    pub raft_applied_index: Option<u64>,
    /// Why something could not be determined.
    pub error: Option<String>,
    #[serde(skip)]
    pub(crate) health: Option<Health>,
}

/// Every node, the raft peer set as the leader reports it, and the node to read the
/// environment through (the leader, else the first node that answered).
pub(crate) struct ClusterStatus {
    pub(crate) nodes: Vec<NodeStatus>,
    pub(crate) peers: Vec<RaftServer>,
    pub(crate) serving: Option<usize>,
}

pub(crate) async fn cluster_status(
    env: &EnvConfig,
    layout: &EnvLayout,
    token: Option<&SecretString>,
) -> ClusterStatus {
    let mut nodes = Vec::new();
    for node in env.nodes() {
        nodes.push(node_status(env, &node, layout).await);
    }
    let leader = nodes.iter().position(|n| n.role == "leader");
    let serving = leader.or_else(|| nodes.iter().position(|n| n.health.is_some()));
    // The peer set needs a token allowed to read sys/storage/raft/configuration; without one
    // (or refused) it is reported empty, never as the environment's error.
    let mut peers = Vec::new();
    if let Some(i) = leader
        && let Ok(client) =
            client::operator_client_at(env, &nodes[i].address, layout, token.cloned())
    {
        peers = client.raft_configuration().await.unwrap_or_default();
    }
    ClusterStatus {
        nodes,
        peers,
        serving,
    }
}

async fn node_status(env: &EnvConfig, node: &Node, layout: &EnvLayout) -> NodeStatus {
    let mut st = NodeStatus {
        id: node.id.clone(),
        address: node.address(),
        running: false,
        pid: None,
        role: "down",
        initialized: None,
        sealed: None,
        raft_committed_index: None,
        raft_applied_index: None,
        error: None,
        health: None,
    };
    match server::find(env, node, layout) {
        Ok(ProcessState::Running(pid)) => {
            st.running = true;
            st.pid = Some(pid);
        }
        Ok(ProcessState::Stopped) => return st,
        Err(e) => {
            st.error = Some(e.to_string());
            return st;
        }
    }
    st.role = "unknown";
    let client = match client::operator_client_at(env, &node.address(), layout, None) {
        Ok(c) => c,
        Err(e) => {
            st.error = Some(e.to_string());
            return st;
        }
    };
    match client.health().await {
        Ok(h) => {
            st.initialized = Some(h.initialized);
            st.sealed = Some(h.sealed);
            st.role = if !h.initialized {
                "uninitialized"
            } else if h.sealed {
                "sealed"
            } else if h.standby {
                "standby"
            } else {
                "leader"
            };
            st.health = Some(h);
        }
        Err(e) => {
            st.error = Some(e.to_string());
            return st;
        }
    }
    if st.sealed == Some(false)
        && let Ok(leader) = client.leader().await
    {
        st.raft_committed_index = Some(leader.raft_committed_index);
        st.raft_applied_index = Some(leader.raft_applied_index);
    }
    st
}
