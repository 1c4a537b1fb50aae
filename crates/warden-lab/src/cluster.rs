//! An environment's nodes as one raft cluster: start the stopped ones, unseal them, wait for
//! a leader; and, for tests and operators, one node at a time (start, find, leader).
//!
//! Only node 1 is ever initialised. The others list every other node in `retry_join` and
//! join whichever is the leader once they hold the unseal shares: with Shamir, the leader's
//! join challenge is encrypted with the barrier keys, so a new node cannot join before it is
//! unsealed. A single-node environment goes through exactly the steps it always did.

use std::time::{Duration, Instant};

use warden_bao::Client;

use crate::bring_up::{self, Progress};
use crate::client;
use crate::config::EnvConfig;
use crate::error::Error;
use crate::lab::Lab;
use crate::layout::EnvLayout;
use crate::nodes::Node;
use crate::server::{self, ProcessState};

/// How long freshly unsealed nodes may take to elect a leader and have every node unsealed.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a joining node is offered its shares again.
const JOIN_POLL: Duration = Duration::from_millis(250);

/// What to call a node in progress lines: nothing extra when it is the only one.
fn label(env: &EnvConfig, node: &Node) -> String {
    if env.followers.is_empty() {
        "OpenBao".to_owned()
    } else {
        format!("OpenBao node {}", node.id)
    }
}

/// Starts every node that is not running; returns whether any was started.
pub(crate) async fn start_stopped(
    env: &EnvConfig,
    layout: &EnvLayout,
    bao: &std::path::Path,
    progress: &dyn Progress,
) -> Result<bool, Error> {
    let name = env.name.as_str();
    let mut started = false;
    for node in env.nodes() {
        let what = label(env, &node);
        match server::find(env, &node, layout)? {
            ProcessState::Running(pid) => {
                progress.step(name, &format!("{what} already running (pid {pid})"));
            }
            ProcessState::Stopped => {
                progress.step(name, &format!("starting {what} on {}", node.address()));
                let pid = server::start(env, &node, layout, bao).await?;
                started = true;
                progress.step(name, &format!("{what} listening (pid {pid})"));
            }
        }
    }
    Ok(started)
}

/// An operator client (no token) for one node.
pub(crate) fn node_client(
    env: &EnvConfig,
    node: &Node,
    layout: &EnvLayout,
) -> Result<Client, Error> {
    client::operator_client_at(env, &node.address(), layout, None)
}

/// Unseals every node from node `first` on that is sealed; returns whether any was.
pub(crate) async fn unseal_nodes(
    env: &EnvConfig,
    layout: &EnvLayout,
    first: u8,
) -> Result<bool, Error> {
    let mut any = false;
    for node in env.nodes().into_iter().filter(|n| n.index >= first) {
        any |= unseal_node(env, &node, layout).await?;
    }
    Ok(any)
}

/// Unseals one node if it is sealed; returns whether it was.
///
/// A new node reports itself uninitialised, with no threshold, until its `retry_join` has
/// reached the leader and fetched the join challenge (it retries every few seconds): shares
/// offered then are refused, or counted against a threshold of one. So shares are offered only
/// once it reports the cluster's threshold, and again while it stays sealed (a share it
/// already holds is ignored), until it is unsealed or [`READY_TIMEOUT`] has passed; then
/// [`wait_ready`] says what is left.
async fn unseal_node(env: &EnvConfig, node: &Node, layout: &EnvLayout) -> Result<bool, Error> {
    let name = env.name.as_str();
    let client = node_client(env, node, layout)?;
    client
        .wait_reachable()
        .await
        .map_err(Error::bao(name, "reach the server"))?;
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut any = false;
    let mut last_refusal = None;
    loop {
        let st = client
            .seal_status()
            .await
            .map_err(Error::bao(name, "read seal status"))?;
        let joining = node.index > 1 && (!st.initialized || st.threshold == 0);
        if !joining {
            match bring_up::unseal(&client, name, layout).await {
                Ok(did) => any |= did,
                Err(Error::Bao { source, .. }) if node.index > 1 && source.is_not_initialized() => {
                }
                // A follower still receiving the keyring from the leader answers an unseal
                // with 500 ("failed to create cipher: crypto/aes: invalid key size 0", seen
                // under load): the join is not done, so the shares are offered again later,
                // and the refusal is the error only if it outlasts the wait.
                Err(e @ Error::Bao { .. })
                    if node.index > 1
                        && matches!(&e, Error::Bao { source, .. } if source.status() == Some(500)) =>
                {
                    last_refusal = Some(e);
                }
                Err(e) => return Err(e),
            }
            let st = client
                .seal_status()
                .await
                .map_err(Error::bao(name, "read seal status"))?;
            // Unsealed, or a seal that is not ours to feed (auto-unseal, pending migration).
            if !st.sealed || st.seal_type != "shamir" {
                return Ok(any);
            }
        }
        if Instant::now() >= deadline {
            return match last_refusal {
                Some(e) => Err(e),
                None => Ok(any),
            };
        }
        tokio::time::sleep(JOIN_POLL).await;
    }
}

/// Waits until every node is initialised and unsealed and one of them is active; returns a
/// client (no token) for the active node. A single node elects itself a few seconds after
/// unseal; until then requests get "standby" errors.
pub(crate) async fn wait_ready(env: &EnvConfig, layout: &EnvLayout) -> Result<Client, Error> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut delay = Duration::from_millis(100);
    let nodes = env.nodes();
    loop {
        let mut leader = None;
        let mut waiting = Vec::new();
        for node in &nodes {
            let client = node_client(env, node, layout)?;
            match client.health().await {
                Ok(h) if h.initialized && !h.sealed => {
                    if !h.standby {
                        leader = Some(client);
                    }
                }
                Ok(h) => waiting.push(format!(
                    "{} initialized={} sealed={}",
                    node.id, h.initialized, h.sealed
                )),
                Err(e) => waiting.push(format!("{}: {e}", node.id)),
            }
        }
        match leader {
            Some(client) if waiting.is_empty() => return Ok(client),
            None => waiting.push("no active node yet".to_owned()),
            Some(_) => {}
        }
        if Instant::now() >= deadline {
            return Err(Error::ServerState {
                env: env.name.clone(),
                what: format!(
                    "not ready after {}s: {}",
                    READY_TIMEOUT.as_secs(),
                    waiting.join("; ")
                ),
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

/// Waits until every node is a voting member of the raft cluster. A node that joined is a
/// non-voter until autopilot has seen it healthy for its stabilisation time (10 s by
/// default); until then losing the leader would lose the quorum, so `up` is not done before.
pub(crate) async fn wait_voters(env: &EnvConfig, client: &Client) -> Result<(), Error> {
    let want = env.nodes().len();
    if want == 1 {
        return Ok(());
    }
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let servers = client
            .raft_configuration()
            .await
            .map_err(Error::bao(&env.name, "read the raft configuration"))?;
        let voters = servers.iter().filter(|s| s.voter).count();
        if servers.len() == want && voters == want {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::ServerState {
                env: env.name.clone(),
                what: format!(
                    "{voters} of {want} nodes are raft voters after {}s ({} joined)",
                    READY_TIMEOUT.as_secs(),
                    servers.len()
                ),
            });
        }
        tokio::time::sleep(JOIN_POLL * 4).await;
    }
}

/// The node that answers as active, if any (one `sys/health` probe per node).
async fn find_leader(env: &EnvConfig, layout: &EnvLayout) -> Result<Option<Node>, Error> {
    for node in env.nodes() {
        let client = node_client(env, &node, layout)?;
        if let Ok(h) = client.health().await
            && h.initialized
            && !h.sealed
            && !h.standby
        {
            return Ok(Some(node));
        }
    }
    Ok(None)
}

impl Lab {
    /// Starts node `index` of `env` if it is stopped and unseals it from the lab's custody
    /// (LAB ONLY: unattended), so it rejoins its cluster. Returns its PID.
    pub async fn start_node(&self, env: &str, index: u8) -> Result<u32, Error> {
        let config = self.env(env)?;
        let node = config.node(index)?;
        let layout = self.layout().env(env);
        let pid = match server::find(config, &node, &layout)? {
            ProcessState::Running(pid) => pid,
            ProcessState::Stopped => {
                let bao = crate::process::bao_binary().map_err(Error::process(env))?;
                server::start(config, &node, &layout, &bao).await?
            }
        };
        unseal_node(config, &node, &layout).await?;
        Ok(pid)
    }

    /// The PID of node `index` of `env` when our server runs it.
    pub fn node_pid(&self, env: &str, index: u8) -> Result<Option<u32>, Error> {
        let config = self.env(env)?;
        let node = config.node(index)?;
        Ok(
            match server::find(config, &node, &self.layout().env(env))? {
                ProcessState::Running(pid) => Some(pid),
                ProcessState::Stopped => None,
            },
        )
    }

    /// An operator client for node `index` of `env` alone, authenticated like
    /// [`operator_client`](Self::operator_client) (which talks to node 1).
    pub fn node_operator_client(&self, env: &str, index: u8) -> Result<Client, Error> {
        let config = self.env(env)?;
        let node = config.node(index)?;
        let layout = self.layout().env(env);
        let token = crate::custody::read_secret(&layout.root_token())?;
        client::operator_client_at(config, &node.address(), &layout, token)
    }

    /// The node of `env` that answers as active right now, if any.
    pub async fn leader(&self, env: &str) -> Result<Option<Node>, Error> {
        let config = self.env(env)?;
        find_leader(config, &self.layout().env(env)).await
    }
}
