//! OpenBao seal migration, one node at a time: once a node runs with the new seal in its
//! configuration it waits in migration mode, and the old seal's shares (Shamir unseal shares,
//! or recovery keys when leaving an auto-seal) are submitted with `migrate=true`. The node
//! that becomes active performs the migration; afterwards the Shamir shares are the new
//! seal's recovery keys.

use std::time::{Duration, Instant};

use secrecy::SecretString;
use warden_bao::{Client, SealStatus};

use crate::seal::SealKind;

/// Why a migration step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// A request to the node failed.
    #[error("node {address}: could not {what}: {source}")]
    Bao {
        /// The node's address.
        address: String,
        /// The step.
        what: &'static str,
        /// The client's error.
        #[source]
        source: Box<warden_bao::Error>,
    },
    /// The node is not waiting for a migration (its configuration has no new seal, or the
    /// migration already happened).
    #[error("node {address} is not in seal migration mode (seal {seal_type}, sealed {sealed})")]
    NotMigrating {
        /// The node's address.
        address: String,
        /// Its seal type now.
        seal_type: String,
        /// Whether it is sealed.
        sealed: bool,
    },
    /// Fewer shares than the threshold.
    #[error("node {address}: {have} share(s) available, {need} needed for the migration")]
    TooFewShares {
        /// The node's address.
        address: String,
        /// Shares given.
        have: usize,
        /// Threshold.
        need: usize,
    },
    /// All shares were accepted but the node stayed sealed (wrong shares for this node).
    #[error(
        "node {address} is still sealed after {submitted} share(s) (progress {progress}/{threshold})"
    )]
    StillSealed {
        /// The node's address.
        address: String,
        /// Shares sent.
        submitted: usize,
        /// Progress the node reports.
        progress: u8,
        /// Threshold.
        threshold: u8,
    },
    /// The node did not report the new seal in time.
    #[error(
        "node {address}: the migration to {to} did not complete within {secs}s (seal {seal_type}, migration pending {migration}, sealed {sealed})"
    )]
    NotCompleted {
        /// The node's address.
        address: String,
        /// The seal migrated to.
        to: SealKind,
        /// Seconds waited.
        secs: u64,
        /// Last seal type seen.
        seal_type: String,
        /// Last `migration` flag seen.
        migration: bool,
        /// Last `sealed` seen.
        sealed: bool,
    },
}

fn bao(client: &Client, what: &'static str) -> impl FnOnce(warden_bao::Error) -> MigrateError {
    let address = client.address().to_string();
    move |e| MigrateError::Bao {
        address,
        what,
        source: Box::new(e),
    }
}

/// Submits the old seal's shares with `migrate=true` to a node waiting in migration mode,
/// threshold many, and returns the node's status once unsealed.
pub async fn submit_shares(
    node: &Client,
    shares: &[SecretString],
) -> Result<SealStatus, MigrateError> {
    let address = node.address().to_string();
    let status = node
        .seal_status()
        .await
        .map_err(bao(node, "read seal status"))?;
    if !status.migration || !status.sealed {
        return Err(MigrateError::NotMigrating {
            address,
            seal_type: status.seal_type,
            sealed: status.sealed,
        });
    }
    let need = usize::from(status.threshold.max(1));
    if shares.len() < need {
        return Err(MigrateError::TooFewShares {
            address,
            have: shares.len(),
            need,
        });
    }
    let mut last = status;
    for (i, share) in shares.iter().take(need).enumerate() {
        last = node
            .unseal_migrate(share)
            .await
            .map_err(bao(node, "submit a share with migrate=true"))?;
        if !last.sealed {
            return Ok(last);
        }
        if i + 1 == need {
            break;
        }
    }
    Err(MigrateError::StillSealed {
        address,
        submitted: need,
        progress: last.progress,
        threshold: last.threshold,
    })
}

/// Waits until the node reports seal `to`, unsealed, with no migration pending. While the
/// active node migrates, `sys/seal-status` can answer 500 ("barrier seal type of \"shamir\"
/// does not match loaded type of \"transit\""): that is waited out, not reported, until the
/// deadline.
pub async fn wait_migrated(
    node: &Client,
    to: SealKind,
    timeout: Duration,
) -> Result<SealStatus, MigrateError> {
    let deadline = Instant::now() + timeout;
    loop {
        match node.seal_status().await {
            Ok(st) if st.seal_type == to.as_str() && !st.migration && !st.sealed => return Ok(st),
            Ok(st) if Instant::now() >= deadline => {
                return Err(MigrateError::NotCompleted {
                    address: node.address().to_string(),
                    to,
                    secs: timeout.as_secs(),
                    seal_type: st.seal_type,
                    migration: st.migration,
                    sealed: st.sealed,
                });
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(bao(node, "read seal status")(e));
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
