//! Restoring a backup into its environment.
//!
//! Every check [`crate::verify`] makes runs first, offline, while the snapshot is decrypted
//! into memory (never to disk): the manifest's signature, its environment, the ciphertext's
//! SHA-256, the snapshot's own SHA256SUMS and raft index. Only a backup that passes all of them
//! is sent, to the active node, with a token allowed to restore (root-only in OpenBao, so a
//! break-glass token; ADR 0011).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use warden_bao::Client;
use zeroize::Zeroizing;

use crate::archive::SnapshotInfo;
use crate::{BackupError, Manifest, VerifyRequest};

/// A backup that passed every offline check, its snapshot held in memory (wiped on drop).
pub struct Opened {
    /// The snapshot file.
    pub snapshot: PathBuf,
    /// Its manifest (signature verified).
    pub manifest: Manifest,
    /// What the snapshot says about itself.
    pub archive: SnapshotInfo,
    plain: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("snapshot", &self.snapshot)
            .field("manifest", &self.manifest)
            .field("archive", &self.archive)
            .field("plain", &"...")
            .finish()
    }
}

/// Checks a backup offline and decrypts it into memory. Nothing is contacted.
pub fn open(req: &VerifyRequest<'_>) -> Result<Opened, BackupError> {
    let (snap, manifest, _) = crate::check_manifest(req.backup, req.keys, req.env)?;
    let mut plain = Zeroizing::new(Vec::with_capacity(
        usize::try_from(manifest.snapshot_bytes).unwrap_or(0),
    ));
    let info = crate::check_archive(&snap, &manifest, req.identity, |c| {
        plain.extend_from_slice(c)
    })?;
    Ok(Opened {
        snapshot: snap,
        manifest,
        archive: info,
        plain,
    })
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    /// The environment.
    pub env: String,
    /// The snapshot restored.
    pub snapshot: PathBuf,
    /// Its raft index.
    pub raft_index: u64,
    /// When it was taken (Unix seconds).
    pub taken_at: i64,
    /// The node that took it in.
    pub node: String,
    /// Whether `snapshot-force` was used.
    pub forced: bool,
    /// Whether the server is sealed afterwards (then it must be unsealed with the keys of
    /// the snapshot's keyring).
    pub sealed_after: bool,
    /// Seconds the restore call took.
    pub seconds: f64,
    /// Seconds from the start of the restore until the node served again (active, or sealed
    /// and waiting for its keys): the downtime the restore itself causes.
    pub until_serving_seconds: f64,
}

/// Sends an opened backup to the active node of `env` (`client` must hold a token allowed to
/// restore), then waits up to `settle` for the server to answer again. A refused restore
/// changes nothing, so the caller may try again (with `force`).
pub async fn restore_ref(
    client: &Client,
    env: &str,
    opened: &Opened,
    force: bool,
    settle: Duration,
) -> Result<Restored, BackupError> {
    let started = Instant::now();
    // reqwest takes the body by value; the copy it sends is dropped (not wiped) after the
    // request, a known limit noted in ADR 0011. Ours is wiped with `Opened`.
    let body = opened.plain.to_vec();
    let node = client
        .raft_snapshot_restore(body, force, crate::TRANSFER_TIMEOUT)
        .await
        .map_err(|source| BackupError::Snapshot {
            env: env.to_owned(),
            source: Box::new(source),
        })?;
    let seconds = started.elapsed().as_secs_f64();
    // After a restore the node reloads its state; wait until it answers sys/health again.
    // After `snapshot-force` under another keyring OpenBao seals itself a moment *after*
    // answering as active, so a forced restore counts as settled unsealed only once the node
    // has stayed active for `FORCED_STABLE`; the first "active" seen is not enough (it made
    // `restore` report an unsealed server and then fail planning against a sealed one).
    let stable = if force { FORCED_STABLE } else { Duration::ZERO };
    let deadline = Instant::now() + settle;
    let mut active_since: Option<Instant> = None;
    let sealed_after = loop {
        match client.health().await {
            Ok(h) if h.sealed => break true,
            Ok(h) if !h.standby => {
                let since = *active_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= stable {
                    break false;
                }
            }
            _ => active_since = None,
        }
        if Instant::now() >= deadline {
            break false;
        }
        tokio_sleep(Duration::from_millis(200)).await;
    };
    Ok(Restored {
        env: env.to_owned(),
        snapshot: opened.snapshot.clone(),
        raft_index: opened.archive.index,
        taken_at: opened.manifest.generated_at,
        node,
        forced: force,
        sealed_after,
        seconds,
        until_serving_seconds: started.elapsed().as_secs_f64(),
    })
}

/// How long a node must stay active after `snapshot-force` before the restore counts it as
/// unsealed (it seals itself shortly after a restore under another keyring).
const FORCED_STABLE: Duration = Duration::from_secs(5);

async fn tokio_sleep(d: Duration) {
    tokio::time::sleep(d).await;
}
