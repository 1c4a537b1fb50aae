//! The few KV v2 calls this crate makes, through `warden_bao`'s typed [`Client::kv2`]: metadata (versions and their
//! creation times), one version's data, and a check-and-set write. Every write is
//! conditioned on the version the writer read, so of two concurrent writers exactly one wins
//! and the other gets [`Error::Conflict`] with nothing written.

use std::fmt;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warden_bao::{Client, Idempotent, KvData, KvError, SecretValue};

use crate::error::{Error, Result};

/// Where a KV v2 secret lives: the mount and the path inside it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KvLocation {
    /// The KV v2 mount (`kvv2`).
    pub mount: String,
    /// The path inside the mount (`billing/signing/jwt`).
    pub path: String,
}

impl KvLocation {
    /// `mount` + `path`, both without surrounding slashes.
    pub fn new(mount: impl Into<String>, path: impl Into<String>) -> Self {
        let trim = |s: String| s.trim_matches('/').to_owned();
        Self {
            mount: trim(mount.into()),
            path: trim(path.into()),
        }
    }

    /// `<mount>/data/<path>`: where versions are read and written.
    pub fn data_path(&self) -> String {
        format!("{}/data/{}", self.mount, self.path)
    }

    /// `<mount>/metadata/<path>`: versions and their times.
    pub fn metadata_path(&self) -> String {
        format!("{}/metadata/{}", self.mount, self.path)
    }
}

impl From<warden_spec::naming::KvEntry> for KvLocation {
    fn from(e: warden_spec::naming::KvEntry) -> Self {
        Self::new(e.mount, e.path)
    }
}

impl fmt::Display for KvLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.mount, self.path)
    }
}

/// One version as the metadata describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionInfo {
    /// Version number (1, 2, ...).
    pub version: u64,
    /// When it was written: the server's clock, so no client can backdate a rotation.
    pub created: OffsetDateTime,
    /// Neither deleted nor destroyed.
    pub live: bool,
}

/// The metadata of a secret: every version the server keeps, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Versions {
    /// The highest version written (0 when none).
    pub(crate) current: u64,
    /// The versions kept, oldest first.
    pub(crate) versions: Vec<VersionInfo>,
}

impl Versions {
    /// The newest live version.
    pub(crate) fn newest_live(&self) -> Option<VersionInfo> {
        self.versions.iter().rev().find(|v| v.live).copied()
    }

    /// A fingerprint that changes when a version is written, deleted or destroyed: what a
    /// watcher compares between polls.
    pub(crate) fn fingerprint(&self) -> Vec<(u64, bool)> {
        self.versions.iter().map(|v| (v.version, v.live)).collect()
    }
}

/// The secret's versions, or an empty [`Versions`] when it was never written.
pub(crate) async fn versions(client: &Client, loc: &KvLocation) -> Result<Versions> {
    let meta = match client.kv2(&loc.mount).metadata(&loc.path).await {
        Ok(m) => m,
        Err(KvError::NotFound { .. }) => return Ok(Versions::default()),
        Err(e) => return Err(Error::kv("read the versions of", e)),
    };
    let mut versions = Vec::new();
    for (version, v) in &meta.versions {
        let created =
            OffsetDateTime::parse(&v.created_time, &Rfc3339).map_err(|e| Error::Malformed {
                path: loc.data_path(),
                version: *version,
                reason: format!("created_time `{}`: {e}", v.created_time),
            })?;
        versions.push(VersionInfo {
            version: *version,
            created,
            live: v.readable(),
        });
    }
    versions.sort_by_key(|v| v.version);
    Ok(Versions {
        current: meta.current_version,
        versions,
    })
}

/// The data of `version`; `None` when it has been deleted or destroyed since the metadata was
/// read. [`KvData`] wipes its values when dropped.
pub(crate) async fn read_version(
    client: &Client,
    loc: &KvLocation,
    version: u64,
) -> Result<Option<KvData>> {
    match client.kv2(&loc.mount).read(&loc.path, Some(version)).await {
        Ok(v) => Ok(Some(v.data)),
        Err(
            KvError::NotFound { .. }
            | KvError::VersionDeleted { .. }
            | KvError::VersionDestroyed { .. },
        ) => Ok(None),
        Err(e) => Err(Error::kv("read", e)),
    }
}

/// Writes `record` (a JSON object) as a new version, only if `expected` is still the current
/// version (0: only if the secret does not exist yet). Returns the new version and its
/// creation time (the server's clock).
pub(crate) async fn write_cas(
    client: &Client,
    loc: &KvLocation,
    record: Value,
    expected: u64,
) -> Result<(u64, OffsetDateTime)> {
    let data = to_data(record);
    let meta = match client
        .kv2(&loc.mount)
        .write(&loc.path, &data, Some(expected))
        .await
    {
        Ok(m) => m,
        Err(KvError::CasMismatch { .. }) => {
            return Err(Error::Conflict {
                path: loc.data_path(),
                expected,
            });
        }
        Err(e) => return Err(Error::kv("write", e)),
    };
    let created =
        OffsetDateTime::parse(&meta.created_time, &Rfc3339).map_err(|e| Error::Malformed {
            path: loc.data_path(),
            version: meta.version,
            reason: format!("created_time `{}`: {e}", meta.created_time),
        })?;
    Ok((meta.version, created))
}

/// Marks the secret as check-and-set only, so no writer (ours or a hand-typed `bao kv put`)
/// can replace a version without naming the one it replaces. Idempotent.
pub(crate) async fn require_cas(client: &Client, loc: &KvLocation) -> Result<()> {
    let path = loc.metadata_path();
    client
        .write(&path, &json!({ "cas_required": true }), Idempotent::Yes)
        .await
        .map(drop)
        .map_err(|e| Error::bao("require check-and-set on", &path, e))
}

/// A JSON object as KV data (values move in; nothing is copied).
pub(crate) fn to_data(record: Value) -> KvData {
    let mut data = KvData::new();
    if let Value::Object(fields) = record {
        for (k, v) in fields {
            data.insert(k, SecretValue::json(v));
        }
    }
    data
}

/// A string field of a version's data.
pub(crate) fn field<'v>(data: &'v KvData, name: &str, path: &str, version: u64) -> Result<&'v str> {
    data.get(name)
        .and_then(|v| v.expose().as_str())
        .ok_or_else(|| Error::Malformed {
            path: path.to_owned(),
            version,
            reason: format!("no string field `{name}`"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_trim_slashes_and_name_both_paths() {
        let loc = KvLocation::new("/kvv2/", "billing/signing/jwt/");
        assert_eq!(loc.data_path(), "kvv2/data/billing/signing/jwt");
        assert_eq!(loc.metadata_path(), "kvv2/metadata/billing/signing/jwt");
        assert_eq!(loc.to_string(), "kvv2/billing/signing/jwt");
    }
}
