//! A scratch cluster for DR drills: as many OpenBao nodes as a lab environment has, on fresh
//! loopback ports and fresh data directories, with the environment's own TLS files (its
//! listener CA, server certificate and operator certificate), so the environment's operator and
//! identity certificates work against it exactly as against the live one.
//!
//! It is initialised with throwaway shares (the live environment's count and threshold) held
//! in memory only (a snapshot restore with
//! `snapshot-force` replaces that keyring anyway); after the restore it is sealed and is
//! unsealed with the environment's own shares ([`Scratch::unseal_with`]). Dropping it stops
//! every node; its directory is the caller's (a temp dir).
//!
//! Shamir environments only: an auto-sealed environment's scratch copy would need the seal's
//! key or the seal-keeper, which a drill must not share with the live nodes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use warden_bao::Client;

use crate::config::EnvConfig;
use crate::error::Error;
use crate::lab::Lab;
use crate::layout::{EnvLayout, LabLayout};
use crate::nodes::NodePorts;
use crate::{client, process, server};

/// How long the scratch nodes may take to be unsealed and elect a leader.
const READY: Duration = Duration::from_secs(60);

/// A running scratch cluster; stopped on drop.
pub struct Scratch {
    env: EnvConfig,
    layout: EnvLayout,
    root: SecretString,
    stopped: bool,
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scratch")
            .field("env", &self.env.name)
            .field("addresses", &self.env.addresses())
            .field("root", &"...")
            .finish()
    }
}

fn copy_file(from: &Path, to: &Path, mode: warden_files::Mode) -> Result<(), Error> {
    let bytes =
        warden_files::read_regular(from, 1024 * 1024).map_err(|e| Error::io(from, "read", e))?;
    warden_files::write_atomic(to, &bytes, mode)?;
    Ok(())
}

impl Lab {
    /// Starts a scratch copy of environment `env`'s cluster under `dir` (same node count, new
    /// ports and data, the environment's TLS files), initialised with a throwaway key and
    /// unseal. Its own root token is kept in memory for the restore.
    pub async fn start_scratch(&self, env: &str, dir: &Path) -> Result<Scratch, Error> {
        let live = self.env(env)?.clone();
        if !live.seal.is_shamir() {
            return Err(Error::SealPrecondition {
                env: env.to_owned(),
                what: "a DR drill's scratch cluster supports Shamir-sealed environments only"
                    .into(),
            });
        }
        let n = live.followers.len() + 1;
        let ports = process::free_ports(2 * n).map_err(|e| Error::io(dir, "choose ports", e))?;
        let followers = (1..n)
            .map(|i| NodePorts {
                api_port: ports[2 * i],
                cluster_port: ports[2 * i + 1],
            })
            .collect();
        let cfg = EnvConfig {
            name: live.name.clone(),
            api_port: ports[0],
            cluster_port: ports[1],
            pki_mount: live.pki_mount.clone(),
            seal: live.seal.clone(),
            followers,
        };
        warden_files::ensure_private_dir(dir)?;
        let layout = LabLayout::new(dir.to_path_buf()).env(env);
        let src = self.layout().env(env);
        warden_files::ensure_private_dir(&layout.tls_dir())?;
        warden_files::ensure_private_dir(&layout.operator_dir())?;
        use warden_files::Mode;
        for (from, to, mode) in [
            (src.ca_bundle(), layout.ca_bundle(), Mode::Public),
            (src.server_cert(), layout.server_cert(), Mode::Public),
            (src.server_key(), layout.server_key(), Mode::OwnerOnly),
            (src.client_ca(), layout.client_ca(), Mode::Public),
            (src.operator_cert(), layout.operator_cert(), Mode::Public),
            (src.operator_key(), layout.operator_key(), Mode::OwnerOnly),
            // Followers present the node certificate to the leader in `retry_join` (ADR 0010);
            // without it a multi-node scratch cluster's followers exit at start.
            (src.node_cert(), layout.node_cert(), Mode::Public),
            (src.node_key(), layout.node_key(), Mode::OwnerOnly),
        ] {
            copy_file(&from, &to, mode)?;
        }
        let bao = process::bao_binary().map_err(Error::process(env))?;
        let mut scratch = Scratch {
            env: cfg,
            layout,
            root: SecretString::from(String::new()),
            stopped: false,
        };
        // The restored audit table names the live node's file for a single node (a cluster's
        // nodes use `audit.log` in their own directory): declare the same, or OpenBao refuses
        // to become active. The drill's requests are then audited in the environment's own
        // trail, which is where an auditor looks for them.
        let audit = live.followers.is_empty().then(|| src.node(1).audit_log());
        for node in scratch.env.nodes() {
            server::start_with_audit(&scratch.env, &node, &scratch.layout, &bao, audit.clone())
                .await?;
        }
        let first = scratch.node_client(1)?;
        first
            .wait_reachable()
            .await
            .map_err(Error::bao(env, "reach the scratch node"))?;
        // The same shares and threshold as the live environment: after a `snapshot-force`
        // restore the node keeps its seal configuration in memory, so the environment's shares
        // are only accepted when it already expects shares of that shape (verified on 2.7.2:
        // 1-of-1 there refuses a 2-of-3 share, "invalid key size 33").
        let live_status = client::operator_client(&live, &src, None)?
            .seal_status()
            .await
            .map_err(Error::bao(env, "read the live environment's seal status"))?;
        let (shares, threshold) = (live_status.shares.max(1), live_status.threshold.max(1));
        let init = first
            .init(shares, threshold)
            .await
            .map_err(Error::bao(env, "initialise the scratch cluster"))?;
        scratch.root = init.root_token.clone();
        let keys: Vec<SecretString> = init
            .keys_base64
            .iter()
            .take(usize::from(threshold))
            .cloned()
            .collect();
        if keys.is_empty() {
            return Err(Error::ServerState {
                env: env.to_owned(),
                what: "the scratch init returned no key".into(),
            });
        }
        scratch.unseal_with(&keys).await?;
        // A restore is replicated by raft to the followers that are in the configuration as
        // voters; one still catching up as a non-voter when the snapshot lands misses the new
        // keyring and then refuses the leader's raft TLS ("unrecognized name") for good. Only
        // hand the cluster over once every node is a voter (autopilot's stabilisation time).
        scratch.wait_voters(n).await?;
        Ok(scratch)
    }
}

impl Scratch {
    fn node_client(&self, index: u8) -> Result<Client, Error> {
        let node = self.env.node(index)?;
        client::operator_client_at(&self.env, &node.address(), &self.layout, None)
    }

    /// The scratch nodes' API addresses, node 1 first.
    pub fn addresses(&self) -> Vec<String> {
        self.env.addresses()
    }

    /// A client for the whole scratch cluster with its own root token: valid until a restore
    /// replaces the token store.
    pub fn root_client(&self) -> Result<Client, Error> {
        let c = client::operator_client(&self.env, &self.layout, Some(self.root.clone()))?;
        Ok(c)
    }

    /// A client that logs in with the environment's operator certificate on demand (valid
    /// after a restore: the operator's login is in the snapshot).
    pub fn operator_client(&self) -> Result<Client, Error> {
        client::operator_client(&self.env, &self.layout, None)
    }

    /// The environment's TLS files as the scratch cluster uses them (CA bundle).
    pub fn ca_bundle(&self) -> PathBuf {
        self.layout.ca_bundle()
    }

    /// Waits up to `within` for a node to report itself sealed (after a `snapshot-force`
    /// restore under another keyring the node seals itself, not at once); returns whether it
    /// did.
    pub async fn wait_sealed(&self, within: Duration) -> Result<bool, Error> {
        let c = self.node_client(1)?;
        let deadline = Instant::now() + within;
        loop {
            if c.seal_status().await.is_ok_and(|s| s.sealed) {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Offers `keys` to every sealed node until all are unsealed and one is active (followers
    /// join the leader once they can), or [`READY`] passes.
    pub async fn unseal_with(&self, keys: &[SecretString]) -> Result<(), Error> {
        let name = self.env.name.clone();
        let deadline = Instant::now() + READY;
        let clients = self
            .env
            .nodes()
            .iter()
            .map(|n| self.node_client(n.index).map(|c| (n.index, c)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut last = String::new();
        loop {
            let mut all_unsealed = true;
            for (index, c) in &clients {
                let st = match c.seal_status().await {
                    Ok(st) => st,
                    Err(e) => {
                        last = format!("node {index}: {e}");
                        all_unsealed = false;
                        continue;
                    }
                };
                if !st.sealed {
                    continue;
                }
                all_unsealed = false;
                let joining = *index > 1 && (!st.initialized || st.threshold == 0);
                if !joining {
                    for k in keys {
                        match c.unseal(k).await {
                            Ok(s) if !s.sealed => break,
                            Ok(s) => {
                                last =
                                    format!("node {index}: progress {}/{}", s.progress, s.threshold)
                            }
                            Err(e) => last = format!("node {index}: unseal: {e}"),
                        }
                    }
                }
            }
            if all_unsealed {
                for (index, c) in &clients {
                    match c.health().await {
                        Ok(h) if !h.sealed && !h.standby => return Ok(()),
                        Ok(h) => {
                            last =
                                format!("node {index}: sealed {} standby {}", h.sealed, h.standby)
                        }
                        Err(e) => last = format!("node {index}: health: {e}"),
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::ServerState {
                    env: name,
                    what: format!(
                        "the scratch cluster is not unsealed with an active node after {READY:?} (last: {last})"
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits up to [`READY`] until the raft configuration lists `n` servers, all voters.
    async fn wait_voters(&self, n: usize) -> Result<(), Error> {
        if n <= 1 {
            return Ok(());
        }
        let root = self.root_client()?;
        let deadline = Instant::now() + READY;
        let mut last;
        loop {
            match root.read("sys/storage/raft/configuration").await {
                Ok(s) => {
                    let servers = s
                        .data
                        .as_ref()
                        .and_then(|d| d.get("config"))
                        .and_then(|c| c.get("servers"))
                        .and_then(|v| v.as_array())
                        .cloned()
                        .unwrap_or_default();
                    let voters = servers
                        .iter()
                        .filter(|v| v.get("voter").and_then(|b| b.as_bool()) == Some(true))
                        .count();
                    if voters >= n {
                        return Ok(());
                    }
                    last = format!(
                        "{voters} voter(s) of {n} ({} server(s) joined)",
                        servers.len()
                    );
                }
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(Error::ServerState {
                    env: self.env.name.clone(),
                    what: format!(
                        "the scratch cluster's followers did not all become voters within {READY:?} (last: {last})"
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The last `n` lines of node `index`'s server log (for a failed drill's report).
    pub fn log_tail(&self, index: u8, n: usize) -> String {
        let text =
            std::fs::read_to_string(self.layout.node(index).server_log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Stops every node (also done on drop).
    pub async fn stop(mut self) -> Result<(), Error> {
        self.stopped = true;
        server::stop_all(&self.env, &self.layout).await.map(drop)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        // Best effort without a runtime: signal each node's recorded process.
        for node in self.env.nodes() {
            let pid_file = self.layout.node(node.index).pid_file();
            if let Ok(text) = std::fs::read_to_string(&pid_file)
                && let Ok(pid) = text.trim().parse::<i32>()
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
    }
}
