//! HA and integrated storage: who leads (`sys/leader`) and who is in the raft cluster
//! (`sys/storage/raft/configuration`).

use serde::Deserialize;

use crate::client::{Call, Client};
use crate::error::Result;
use crate::response::null_default;

/// `sys/leader`, as one node sees it (unauthenticated).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct Leader {
    /// The storage supports HA (raft does).
    #[serde(default)]
    pub ha_enabled: bool,
    /// The node asked is the active node.
    #[serde(default)]
    pub is_self: bool,
    /// The active node's API address; empty while there is none (election, sealed).
    #[serde(default, deserialize_with = "null_default")]
    pub leader_address: String,
    /// The active node's cluster address.
    #[serde(default, deserialize_with = "null_default")]
    pub leader_cluster_address: String,
    /// Highest raft log index this node knows to be committed (0 when not raft).
    #[serde(default)]
    pub raft_committed_index: u64,
    /// Highest raft log index this node has applied to its state.
    #[serde(default)]
    pub raft_applied_index: u64,
}

/// One member of the raft cluster.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RaftServer {
    /// The node's raft id.
    pub node_id: String,
    /// Its cluster address (`host:port`).
    #[serde(default, deserialize_with = "null_default")]
    pub address: String,
    /// It is the raft leader.
    #[serde(default)]
    pub leader: bool,
    /// It votes (counts towards the quorum).
    #[serde(default)]
    pub voter: bool,
}

/// Autopilot's view of the raft cluster (`sys/storage/raft/autopilot/state`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct AutopilotState {
    /// Every server is healthy and the cluster can lose `failure_tolerance` voters.
    #[serde(default)]
    pub healthy: bool,
    /// Voters the cluster can lose and keep a quorum.
    #[serde(default)]
    pub failure_tolerance: u64,
    /// The leader's node id.
    #[serde(default, deserialize_with = "null_default")]
    pub leader: String,
    /// Each server by node id.
    #[serde(default)]
    pub servers: std::collections::BTreeMap<String, AutopilotServer>,
}

/// One server as autopilot sees it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct AutopilotServer {
    /// Node id.
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    /// Cluster address.
    #[serde(default, deserialize_with = "null_default")]
    pub address: String,
    /// `alive`, `left`, `failed`...
    #[serde(default, deserialize_with = "null_default")]
    pub node_status: String,
    /// Autopilot judges it healthy (in contact, caught up, same term).
    #[serde(default)]
    pub healthy: bool,
    /// `leader`, `voter`, `non-voter`.
    #[serde(default, deserialize_with = "null_default")]
    pub status: String,
    /// Its last raft index.
    #[serde(default)]
    pub last_index: u64,
}

impl Client {
    /// Autopilot's state of the raft cluster (`sys/storage/raft/autopilot/state`; needs a
    /// token allowed to read it). Served by the active node.
    pub async fn raft_autopilot_state(&self) -> Result<AutopilotState> {
        let path = "sys/storage/raft/autopilot/state";
        let secret = self.read(path).await?;
        secret.data_as::<AutopilotState>(path)
    }

    /// `sys/leader` on the current node (it describes that node's view, so it never fails
    /// over): one probe, no retry, no token.
    pub async fn leader(&self) -> Result<Leader> {
        let path = "sys/leader";
        let call = Call::get(path).unauthenticated();
        let reply = self.send_to(self.nodes().current(), &call).await?;
        reply.decode(path)
    }

    /// The raft cluster's members (`sys/storage/raft/configuration`; needs a token allowed to
    /// read it).
    pub async fn raft_configuration(&self) -> Result<Vec<RaftServer>> {
        #[derive(Deserialize)]
        struct Config {
            config: Servers,
        }
        #[derive(Deserialize)]
        struct Servers {
            #[serde(default)]
            servers: Vec<RaftServer>,
        }
        let path = "sys/storage/raft/configuration";
        let secret = self.read(path).await?;
        Ok(secret.data_as::<Config>(path)?.config.servers)
    }
}
