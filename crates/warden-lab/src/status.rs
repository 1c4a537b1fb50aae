//! What `lab status` reports for each environment (each node's part: `node_status`). Read-only: it never starts, unseals or
//! changes anything.

use std::path::PathBuf;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warden_bao::RaftServer;

use crate::client;
use crate::config::EnvConfig;
use crate::custody;
use crate::layout::EnvLayout;
use crate::node_status::{self, NodeStatus};

/// One environment's status, with the paths a Vault client needs to reach it.
#[derive(Debug, Clone, Serialize)]
pub struct EnvStatus {
    /// Environment name.
    pub name: String,
    /// API address (`https://127.0.0.1:PORT`).
    pub address: String,
    /// Our server process is running.
    pub running: bool,
    /// Its PID when running.
    pub pid: Option<u32>,
    /// From `sys/health`; `None` when the server could not be asked.
    pub initialized: Option<bool>,
    /// From `sys/health`.
    pub sealed: Option<bool>,
    /// From `sys/health`.
    pub version: Option<String>,
    /// The PKI intermediate mount.
    pub pki_mount: String,
    /// Not-after of the PKI intermediate (RFC 3339).
    pub intermediate_not_after: Option<String>,
    /// Whether the intermediate's chain (as OpenBao serves it) verifies to the offline root.
    pub chain_valid: Option<bool>,
    /// What is wrong with the chain, if anything.
    pub chain_problems: Vec<String>,
    /// Trust anchor for this environment's API (`VAULT_CACERT`).
    pub ca_bundle: PathBuf,
    /// Operator client certificate (`VAULT_CLIENT_CERT`).
    pub operator_cert: PathBuf,
    /// Operator client key (`VAULT_CLIENT_KEY`).
    pub operator_key: PathBuf,
    /// The lab's bootstrap root token while bootstrap is pending: age-encrypted to the lab
    /// custodians (ceremony), or the clear file of a legacy lab; `None` once bootstrap has
    /// revoked it and deleted the file.
    pub root_token_file: Option<PathBuf>,
    /// The cert-auth mount operators log in at (`bao login -method=cert -path=MOUNT name=ROLE`).
    pub operator_auth_mount: &'static str,
    /// The lab operator's role at that mount.
    pub operator_role: &'static str,
    /// How the unseal shares are held.
    pub custody: custody::CustodyMode,
    /// Why something could not be determined.
    pub error: Option<String>,
    /// Which seal protects the environment (`shamir`, `transit (seal-keeper ..)`, ...).
    pub seal: String,
    /// Why the seal keeps the environment sealed or stopped, when it does
    /// (`sealed: seal-keeper https://127.0.0.1:N unreachable`).
    pub seal_problem: Option<String>,
    /// Every node's API address, node 1 first (what a failing-over client is given).
    pub addresses: Vec<String>,
    /// Each node: running, leader or standby, sealed, raft indexes.
    pub nodes: Vec<NodeStatus>,
    /// The raft peer set as the leader reports it (empty without a leader or a token).
    pub peers: Vec<RaftServer>,
}

impl EnvStatus {
    /// Running, initialised, unsealed, the intermediate chain verifies, and every node runs
    /// unsealed.
    pub fn healthy(&self) -> bool {
        self.running
            && self.initialized == Some(true)
            && self.sealed == Some(false)
            && self.chain_valid == Some(true)
            && self
                .nodes
                .iter()
                .all(|n| n.running && n.sealed == Some(false))
    }
}

pub(crate) async fn env_status(env: &EnvConfig, layout: &EnvLayout, roots: &[String]) -> EnvStatus {
    let mut st = EnvStatus {
        name: env.name.clone(),
        address: env.address(),
        running: false,
        pid: None,
        initialized: None,
        sealed: None,
        version: None,
        pki_mount: env.pki_mount.clone(),
        intermediate_not_after: None,
        chain_valid: None,
        chain_problems: Vec::new(),
        ca_bundle: layout.ca_bundle(),
        operator_cert: layout.operator_cert(),
        operator_key: layout.operator_key(),
        root_token_file: Some(custody::root_token_path(layout)).filter(|p| p.exists()),
        operator_auth_mount: warden_spec::naming::operator::OPERATOR_AUTH_MOUNT,
        operator_role: warden_spec::naming::operator::LAB_OPERATOR,
        custody: custody::custody_mode(layout),
        error: None,
        seal: env.seal.describe(),
        seal_problem: None,
        addresses: Vec::new(),
        nodes: Vec::new(),
        peers: Vec::new(),
    };
    let token = custody::bootstrap_root_token(layout).ok().flatten();
    let cluster = node_status::cluster_status(env, layout, token.as_ref()).await;
    st.addresses = cluster.nodes.iter().map(|n| n.address.clone()).collect();
    st.peers = cluster.peers;
    st.nodes = cluster.nodes;
    // The environment is read through its leader, or any node that answers: one node down
    // is that node's problem, not the environment's.
    let Some(serving) = cluster.serving.map(|i| &st.nodes[i]) else {
        st.running = st.nodes.iter().any(|n| n.running);
        st.pid = st.nodes.iter().find_map(|n| n.pid);
        st.error = st.nodes.iter().find_map(|n| n.error.clone());
        st.seal_problem = crate::seal::explain(env, layout).await;
        return st;
    };
    let address = serving.address.clone();
    st.running = true;
    st.pid = serving.pid;
    if let Some(h) = serving.health.clone() {
        st.initialized = Some(h.initialized);
        st.sealed = Some(h.sealed);
        st.version = Some(h.version).filter(|v| !v.is_empty());
    }
    let client = match client::operator_client_at(env, &address, layout, token) {
        Ok(c) => c,
        Err(e) => {
            st.error = Some(e.to_string());
            return st;
        }
    };
    if st.sealed != Some(false) {
        st.seal_problem = crate::seal::explain(env, layout).await;
        return st;
    }
    match client.pki_ca_chain(&env.pki_mount).await {
        Ok(chain) if chain.trim().is_empty() => {
            st.chain_valid = Some(false);
            st.chain_problems
                .push(format!("{} has no intermediate installed", env.pki_mount));
        }
        Ok(chain) => {
            // Either root of a rollover under way (ADR 0030).
            let report =
                match warden_pki::verify_chain_any(&chain, roots, OffsetDateTime::now_utc()) {
                    Ok(r) => r,
                    Err(e) => {
                        st.chain_valid = Some(false);
                        st.chain_problems.push(format!("unreadable chain: {e}"));
                        return st;
                    }
                };
            st.intermediate_not_after = report
                .certs
                .first()
                .and_then(|c| c.not_after.format(&Rfc3339).ok());
            st.chain_valid = Some(report.valid);
            st.chain_problems = report.problems.iter().map(ToString::to_string).collect();
        }
        Err(e) => st.error = Some(e.to_string()),
    }
    st
}
