//! The manifest beside each backup: a packet in the evidence format (`warden-evidence/2`;
//! manifests written as `warden-evidence/1` still verify), signed with the environment's
//! evidence key, whose payload describes the snapshot. One format and one key for every
//! signed record, so `warden evidence verify` checks it offline.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use warden_registry::evidence::{self, PublicKey};

use crate::BackupError;

/// The payload's `component`.
pub const MANIFEST_COMPONENT: &str = "backup";
/// The payload's `format`.
pub const MANIFEST_FORMAT: &str = "warden-backup/1";

/// Manifests larger than this are not manifests.
const MANIFEST_LIMIT: u64 = 1024 * 1024;

/// What a manifest says about its snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`MANIFEST_COMPONENT`].
    pub component: String,
    /// [`MANIFEST_FORMAT`].
    pub format: String,
    /// The environment.
    pub env: String,
    /// When the snapshot was taken (Unix seconds).
    pub generated_at: i64,
    /// The encrypted snapshot's file name (beside the manifest).
    pub file: String,
    /// Bytes of the ciphertext.
    pub size: u64,
    /// Hex SHA-256 of the ciphertext.
    pub sha256: String,
    /// Bytes of the snapshot before encryption.
    pub snapshot_bytes: u64,
    /// The OpenBao version that served it.
    pub openbao_version: String,
    /// The raft index the snapshot holds (its `meta.json`).
    pub raft_index: u64,
    /// The raft term.
    pub raft_term: u64,
    /// The active node it came from.
    pub node: String,
    /// Purposes covering credentials of the environment when it was taken.
    pub purpose_count: usize,
    /// The age recipients it is encrypted to.
    pub recipients: Vec<String>,
}

impl Manifest {
    /// The payload to sign.
    pub fn payload(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a manifest serialises")
    }

    fn read_bytes(path: &Path) -> Result<Vec<u8>, BackupError> {
        warden_files::read_regular(path, MANIFEST_LIMIT)
            .map(|b| b.to_vec())
            .map_err(|source| BackupError::Read {
                path: path.to_path_buf(),
                source,
            })
    }

    fn from_packet(path: &Path, bytes: &[u8]) -> Result<Self, BackupError> {
        let bad = |reason: String| BackupError::NotAManifest {
            path: path.to_path_buf(),
            reason,
        };
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let payload = v
            .get("payload")
            .cloned()
            .ok_or_else(|| bad("no payload".into()))?;
        let m: Self = serde_json::from_value(payload).map_err(|e| bad(e.to_string()))?;
        if m.component != MANIFEST_COMPONENT || m.format != MANIFEST_FORMAT {
            return Err(bad(format!(
                "it is a `{}`/`{}` packet, not a backup manifest",
                m.component, m.format
            )));
        }
        if m.file.contains('/') || m.file.starts_with('.') {
            return Err(bad(format!(
                "its file name `{}` is not a plain name",
                m.file
            )));
        }
        Ok(m)
    }

    /// Reads a manifest without checking its signature (for listing).
    pub fn read_unverified(path: &Path) -> Result<Self, BackupError> {
        Self::from_packet(path, &Self::read_bytes(path)?)
    }

    /// Reads a manifest and checks its signature with `keys`.
    pub fn read_verified(
        path: &Path,
        keys: &[PublicKey],
    ) -> Result<(Self, evidence::Verified), BackupError> {
        let bytes = match Self::read_bytes(path) {
            Err(BackupError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(BackupError::NoManifest {
                    path: path.to_path_buf(),
                });
            }
            other => other?,
        };
        let signed =
            evidence::verify(&bytes, keys).map_err(|source| BackupError::ManifestSignature {
                path: path.to_path_buf(),
                source: Box::new(source),
            })?;
        Ok((Self::from_packet(path, &bytes)?, signed))
    }

    /// The snapshot beside `manifest_path`.
    pub fn snapshot_path(&self, manifest_path: &Path) -> PathBuf {
        manifest_path
            .parent()
            .map_or_else(|| PathBuf::from(&self.file), |d| d.join(&self.file))
    }
}
