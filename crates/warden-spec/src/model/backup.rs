//! Backups: where an environment's encrypted raft snapshots go, who can open them, and how many
//! are kept (`[environments.<env>.backup]`, docs/dr.md).

use std::path::PathBuf;
use std::time::Duration;

/// An environment's backup settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// Age X25519 recipients (`age1…`, checked like custodians'): every snapshot is encrypted
    /// to all of them, and only their identities open it. At least one.
    pub recipients: Vec<String>,
    /// The directory backups are written to (relative paths are relative to the spec's
    /// directory).
    pub dir: PathBuf,
    /// Keep at most this many backups (the newest); `None`: no count limit.
    pub keep: Option<u32>,
    /// Delete backups older than this (the newest one is always kept); `None`: no age limit.
    pub max_age: Option<Duration>,
    /// How often `warden serve` takes a backup (`every = "1d"`); `None`: serve takes none
    /// (a person or a timer runs `warden backup create`).
    pub every: Option<Duration>,
    /// How often `warden serve` drills the newest backup (`drill_every = "7d"`, lab only:
    /// the drill unseals a scratch cluster with the environment's shares); `None`: no
    /// scheduled drill.
    pub drill_every: Option<Duration>,
}
