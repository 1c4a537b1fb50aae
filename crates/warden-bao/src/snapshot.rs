//! Raft snapshots: save (`GET sys/storage/raft/snapshot`, streamed) and restore
//! (`POST sys/storage/raft/snapshot` or `snapshot-force`), always on the active node.
//!
//! Why the active node and not failover: a snapshot is one long stream; a standby would have
//! to forward it, and a stream half written cannot be replayed on another node. The node that
//! says `is_self` in `sys/leader` is asked, and nothing is retried.

use std::time::Duration;

use reqwest::Method;

use crate::client::{Call, Client};
use crate::error::Error;

type Result<T, E = SnapshotError> = std::result::Result<T, E>;

/// Why a snapshot could not be saved: the server's side or the sink's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// No node answered as the active one (all sealed, unreachable, or an election).
    #[error("no active node: {}", reasons.join("; "))]
    NoActiveNode {
        /// What each node said.
        reasons: Vec<String>,
    },
    /// OpenBao refused or the connection failed.
    #[error(transparent)]
    Bao(#[from] Error),
    /// The active node stopped sending: no bytes (or no answer) for `after`. A frozen or
    /// overloaded server; the transfer is abandoned rather than left hanging.
    #[error(
        "{address} sent nothing for {after:?} while streaming the snapshot (frozen or overloaded server)"
    )]
    Stalled {
        /// The node that stalled.
        address: String,
        /// How long it was silent.
        after: Duration,
    },
    /// The sink refused the bytes (disk full, ...).
    #[error("writing the snapshot: {0}")]
    Sink(#[source] std::io::Error),
}

impl Client {
    /// The index of the active node among the client's nodes, asking each `sys/leader`.
    pub(crate) async fn active_node(&self) -> Result<usize, SnapshotError> {
        let mut reasons = Vec::new();
        for i in 0..self.nodes().len() {
            let address = self.nodes().node(i).address.to_string();
            let call = Call::get("sys/leader").unauthenticated();
            match self.send_to(i, &call).await {
                Ok(reply) => match reply.decode::<crate::Leader>("sys/leader") {
                    Ok(l) if l.is_self => return Ok(i),
                    Ok(_) => reasons.push(format!("{address} is a standby")),
                    Err(e) => reasons.push(format!("{address}: {e}")),
                },
                Err(e) => reasons.push(e.to_string()),
            }
        }
        Err(SnapshotError::NoActiveNode { reasons })
    }

    /// Streams a raft snapshot from the active node into `sink`, chunk by chunk (the snapshot
    /// is never held whole in memory). Returns the number of bytes and the active node's
    /// address. `timeout` bounds the whole transfer; `stall` bounds each wait (for the
    /// response, then for every chunk), so a frozen server fails in `stall`, not `timeout`.
    pub async fn raft_snapshot_save(
        &self,
        timeout: Duration,
        stall: Duration,
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<(u64, String), SnapshotError> {
        let i = self.active_node().await?;
        let path = "sys/storage/raft/snapshot";
        let address = self.nodes().node(i).address.clone();
        let stalled = || SnapshotError::Stalled {
            address: address.to_string(),
            after: stall,
        };
        let mut resp = tokio::time::timeout(
            stall,
            self.exchange_raw(i, Method::GET, path, None, timeout),
        )
        .await
        .map_err(|_| stalled())??;
        let mut total: u64 = 0;
        while let Some(chunk) =
            tokio::time::timeout(stall, self.next_chunk(&mut resp, &address, path))
                .await
                .map_err(|_| stalled())??
        {
            sink(&chunk).map_err(SnapshotError::Sink)?;
            total += chunk.len() as u64;
        }
        Ok((total, address.to_string()))
    }

    /// Restores `snapshot` (the plain gzip'd archive) on the active node. `force` uses
    /// `snapshot-force`, needed when the snapshot was taken under another keyring (another
    /// cluster or an environment re-initialised since). Needs a token allowed to `update`
    /// that path: root-only (`sys/storage`), so a break-glass token.
    pub async fn raft_snapshot_restore(
        &self,
        snapshot: Vec<u8>,
        force: bool,
        timeout: Duration,
    ) -> Result<String, SnapshotError> {
        let i = self.active_node().await?;
        let path = if force {
            "sys/storage/raft/snapshot-force"
        } else {
            "sys/storage/raft/snapshot"
        };
        let address = self.nodes().node(i).address.to_string();
        self.exchange_raw(i, Method::POST, path, Some(snapshot), timeout)
            .await?;
        Ok(address)
    }
}
