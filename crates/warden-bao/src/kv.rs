//! The KV secrets engines: version 2 ([`Kv2`]: versions, check-and-set, metadata, rollback,
//! delete/undelete) and version 1 ([`Kv1`]: one value per path).
//!
//! Values travel as [`KvData`] (wiped on drop, never printed). Responses are decoded straight
//! from the wiped reply buffer into `KvData`; no intermediate `serde_json::Value` of the whole
//! answer is kept. Failures are [`KvError`]s that say which mount, path and version.

mod data;
pub mod paged;
mod record;

use std::collections::BTreeMap;

use reqwest::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::client::{Call, Client, Reply};
use crate::error::Error;
use crate::response::null_default;
use crate::retry::Idempotent;

pub use data::{KeyChanges, KvData, SecretValue};
pub use record::ChangeRecord;

/// How often [`Kv2::record_change`] re-reads and retries when another writer updated the
/// metadata between its read and its write.
const RECORD_ATTEMPTS: usize = 5;

/// Why a KV call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// Nothing is stored at the path (KV v2: the secret has no metadata, or the version asked
    /// for never existed or was pruned by `max_versions`).
    #[error("{mount}/{path}{}: no such secret", fmt_version(*version))]
    NotFound {
        /// The mount.
        mount: String,
        /// The secret's path inside the mount.
        path: String,
        /// The version asked for, if one was.
        version: Option<u64>,
    },
    /// The version was soft-deleted: its data is gone until someone undeletes it.
    #[error("{mount}/{path} version {version} was deleted at {deletion_time}; undelete it first")]
    VersionDeleted {
        /// The mount.
        mount: String,
        /// The secret's path inside the mount.
        path: String,
        /// The version.
        version: u64,
        /// When it was deleted (RFC 3339).
        deletion_time: String,
    },
    /// The version was destroyed: its data is gone for good.
    #[error("{mount}/{path} version {version} was destroyed; its data cannot be recovered")]
    VersionDestroyed {
        /// The mount.
        mount: String,
        /// The secret's path inside the mount.
        path: String,
        /// The version.
        version: u64,
    },
    /// A write with check-and-set found another current version than `expected` (someone
    /// else wrote in between, or the caller's idea of the current version is stale).
    #[error(
        "{mount}/{path}: the current version is no longer {expected} (check-and-set refused the write)"
    )]
    CasMismatch {
        /// The mount.
        mount: String,
        /// The secret's path inside the mount.
        path: String,
        /// The version the write expected to be current (0 = the secret must not exist).
        expected: u64,
    },
    /// A metadata update with `metadata_cas` found another metadata version than `expected`.
    #[error(
        "{mount}/{path}: the metadata changed since it was read (metadata version is no longer {expected})"
    )]
    MetadataCasMismatch {
        /// The mount.
        mount: String,
        /// The secret's path inside the mount.
        path: String,
        /// The metadata version expected.
        expected: u64,
    },
    /// Any other failure: denied, unreachable, sealed... (`source` says which).
    #[error("{mount}/{path}: {source}")]
    Api {
        /// The mount.
        mount: String,
        /// The secret's path inside the mount.
        path: String,
        /// The client error.
        #[source]
        source: Error,
    },
}

fn fmt_version(v: Option<u64>) -> String {
    v.map(|v| format!(" version {v}")).unwrap_or_default()
}

impl KvError {
    /// The token may not do this (403).
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, Self::Api { source, .. } if source.is_permission_denied())
    }

    /// The client error underneath, for the failures that have one.
    pub fn api(&self) -> Option<&Error> {
        match self {
            Self::Api { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The metadata of one version, as KV v2 reports it with a read or write.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[non_exhaustive]
pub struct VersionMeta {
    /// The version number (from 1).
    pub version: u64,
    /// When it was written (RFC 3339).
    #[serde(default, deserialize_with = "null_default")]
    pub created_time: String,
    /// When it was soft-deleted, if it was.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub deletion_time: Option<String>,
    /// Whether it was destroyed.
    #[serde(default, deserialize_with = "null_default")]
    pub destroyed: bool,
}

/// A version's state inside [`KvMetadata::versions`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[non_exhaustive]
pub struct VersionState {
    /// When it was written (RFC 3339).
    #[serde(default, deserialize_with = "null_default")]
    pub created_time: String,
    /// When it was soft-deleted, if it was.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub deletion_time: Option<String>,
    /// Whether it was destroyed.
    #[serde(default, deserialize_with = "null_default")]
    pub destroyed: bool,
}

impl VersionState {
    /// Whether its data can still be read.
    pub fn readable(&self) -> bool {
        self.deletion_time.is_none() && !self.destroyed
    }
}

/// One version: its data (empty when deleted or destroyed) and its metadata.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct KvVersion {
    /// The key/value map.
    pub data: KvData,
    /// The version's metadata.
    pub meta: VersionMeta,
}

/// A KV v2 secret's metadata: its versions and settings. Holds no values.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[non_exhaustive]
pub struct KvMetadata {
    /// The newest version (0 when every version was pruned or the secret is new).
    #[serde(default, deserialize_with = "null_default")]
    pub current_version: u64,
    /// The oldest version still kept.
    #[serde(default, deserialize_with = "null_default")]
    pub oldest_version: u64,
    /// How many versions are kept (0 = the mount's setting).
    #[serde(default, deserialize_with = "null_default")]
    pub max_versions: u64,
    /// Whether every write must carry `cas`.
    #[serde(default, deserialize_with = "null_default")]
    pub cas_required: bool,
    /// OpenBao's metadata version, for `metadata_cas` (absent on Vault).
    #[serde(default)]
    pub current_metadata_version: Option<u64>,
    /// When the secret was created.
    #[serde(default, deserialize_with = "null_default")]
    pub created_time: String,
    /// When it was last written.
    #[serde(default, deserialize_with = "null_default")]
    pub updated_time: String,
    /// Free-form string pairs kept with the secret (Warden's [`ChangeRecord`]s live here).
    #[serde(default, deserialize_with = "null_default")]
    pub custom_metadata: BTreeMap<String, String>,
    /// Every kept version by number.
    #[serde(default, deserialize_with = "null_default")]
    pub versions: BTreeMap<u64, VersionState>,
}

fn empty_as_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

/// `{"data": T}`, the part of the response envelope these calls read.
#[derive(Deserialize)]
struct Envelope<T> {
    data: Option<T>,
}

/// A KV v2 read: `data.data` and `data.metadata`.
#[derive(Deserialize)]
struct ReadData {
    #[serde(default)]
    data: KvData,
    metadata: VersionMeta,
}

/// A KV v2 mount.
#[derive(Debug, Clone)]
pub struct Kv2<'c> {
    client: &'c Client,
    mount: String,
}

/// A KV v1 mount.
#[derive(Debug, Clone)]
pub struct Kv1<'c> {
    client: &'c Client,
    mount: String,
}

impl Client {
    /// The KV v2 engine mounted at `mount` (e.g. `kvv2`).
    pub fn kv2(&self, mount: &str) -> Kv2<'_> {
        Kv2 {
            client: self,
            mount: mount.trim_matches('/').to_owned(),
        }
    }

    /// The KV v1 engine mounted at `mount` (e.g. `kv`).
    pub fn kv1(&self, mount: &str) -> Kv1<'_> {
        Kv1 {
            client: self,
            mount: mount.trim_matches('/').to_owned(),
        }
    }
}

impl Kv2<'_> {
    /// The mount path.
    pub fn mount(&self) -> &str {
        &self.mount
    }

    fn api(&self, path: &str) -> impl Fn(Error) -> KvError {
        let (mount, path) = (self.mount.clone(), path.to_owned());
        move |e| classify(e, &mount, &path)
    }

    /// Reads `version` of the secret at `path` (the current one when `None`). A deleted or
    /// destroyed version is [`KvError::VersionDeleted`] / [`KvError::VersionDestroyed`].
    pub async fn read(&self, path: &str, version: Option<u64>) -> Result<KvVersion, KvError> {
        let url = format!("{}/data/{path}", self.mount);
        let v = version.map(|v| v.to_string());
        let query: Vec<(&str, &str)> = v.iter().map(|v| ("version", v.as_str())).collect();
        let reply = self
            .client
            .send(Call::get(&url).query(&query).accept(&[404]))
            .await
            .map_err(self.api(path))?;
        let not_found = || KvError::NotFound {
            mount: self.mount.clone(),
            path: path.to_owned(),
            version,
        };
        // A 404 that carries metadata is a deleted or destroyed version; one without is a miss.
        let read: ReadData = match decode_data(&reply, &url) {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) if reply.status == 404 => {
                // No metadata: a plain miss, or (with `errors`) a missing mount.
                let err =
                    Error::from_status(404, &url, self.client.address().as_str(), &reply.body);
                return Err(match self.api(path)(err) {
                    KvError::NotFound { .. } => not_found(),
                    other => other,
                });
            }
            Ok(None) => return Err(self.api(path)(missing_data(&url))),
            Err(e) => return Err(self.api(path)(e)),
        };
        let meta = read.metadata;
        if meta.destroyed {
            return Err(KvError::VersionDestroyed {
                mount: self.mount.clone(),
                path: path.to_owned(),
                version: meta.version,
            });
        }
        if let Some(deletion_time) = meta.deletion_time {
            return Err(KvError::VersionDeleted {
                mount: self.mount.clone(),
                path: path.to_owned(),
                version: meta.version,
                deletion_time,
            });
        }
        Ok(KvVersion {
            data: read.data,
            meta,
        })
    }

    /// Writes `data` as a new version. With `cas = Some(n)` the write only happens if the
    /// current version is `n` (0: only if the secret does not exist yet); otherwise
    /// [`KvError::CasMismatch`]. Never retried once sent: a repeat would be another version.
    pub async fn write(
        &self,
        path: &str,
        data: &KvData,
        cas: Option<u64>,
    ) -> Result<VersionMeta, KvError> {
        #[derive(serde::Serialize)]
        struct Options {
            #[serde(skip_serializing_if = "Option::is_none")]
            cas: Option<u64>,
        }
        #[derive(serde::Serialize)]
        struct Body<'a> {
            options: Options,
            data: data::Exposed<'a>,
        }
        let url = format!("{}/data/{path}", self.mount);
        let body = Body {
            options: Options { cas },
            data: data::Exposed(data),
        };
        let call = Call::new(Method::POST, &url, Idempotent::No)
            .json(&body)
            .map_err(self.api(path))?;
        let reply = self.client.send(call).await.map_err(|e| {
            let err = self.api(path)(e);
            match (err, cas) {
                (KvError::CasMismatch { mount, path, .. }, Some(expected)) => {
                    KvError::CasMismatch {
                        mount,
                        path,
                        expected,
                    }
                }
                (err, _) => err,
            }
        })?;
        decode_data(&reply, &url)
            .map_err(self.api(path))?
            .ok_or_else(|| self.api(path)(missing_data(&url)))
    }

    /// The secret's metadata: versions, settings and `custom_metadata`.
    pub async fn metadata(&self, path: &str) -> Result<KvMetadata, KvError> {
        let url = format!("{}/metadata/{path}", self.mount);
        let reply = self
            .client
            .send(Call::get(&url))
            .await
            .map_err(self.api(path))?;
        decode_data(&reply, &url)
            .map_err(self.api(path))?
            .ok_or_else(|| self.api(path)(missing_data(&url)))
    }

    /// The metadata of every secret under folder `prefix` (`""`: the whole mount, else ending
    /// in `/`), recursively, in ONE request: OpenBao's `SCAN <mount>/detailed-metadata/<prefix>`
    /// (sent as `GET …?scan=true`). Keys are full paths inside the mount. An empty or absent
    /// folder is an empty map.
    ///
    /// Needs the `scan` capability on `<mount>/detailed-metadata/<prefix>`: a token without it
    /// gets [`KvError::is_permission_denied`], and a server without the endpoint (Vault, older
    /// OpenBao) a 400/404/405 [`KvError::Api`]; callers fall back to [`Kv2::metadata`] per secret.
    /// OpenBao does not page a scan: the answer grows with the folder (≈ 0.5 KB per secret).
    pub async fn scan_metadata(
        &self,
        prefix: &str,
    ) -> Result<BTreeMap<String, KvMetadata>, KvError> {
        #[derive(Deserialize)]
        struct Scan {
            #[serde(default, deserialize_with = "null_default")]
            key_info: BTreeMap<String, KvMetadata>,
        }
        let url = format!("{}/detailed-metadata/{prefix}", self.mount);
        let reply = match self
            .client
            .send(Call::get(&url).query(&[("scan", "true")]))
            .await
        {
            Ok(reply) => reply,
            // Nothing under the folder: OpenBao answers 404 without errors.
            Err(Error::NotFound { errors, .. }) if errors.is_empty() => {
                return Ok(BTreeMap::new());
            }
            Err(e) => return Err(self.api(prefix)(e)),
        };
        let scan: Option<Scan> = decode_data(&reply, &url).map_err(self.api(prefix))?;
        Ok(scan
            .map(|s| s.key_info)
            .unwrap_or_default()
            .into_iter()
            .filter(|(key, _)| !key.ends_with('/'))
            .map(|(key, md)| (format!("{prefix}{key}"), md))
            .collect())
    }

    /// Replaces the secret's `custom_metadata` (other metadata settings are left alone). With
    /// `metadata_cas = Some(n)` OpenBao refuses the update unless the metadata is still at
    /// version `n` ([`KvError::MetadataCasMismatch`]).
    pub async fn set_custom_metadata(
        &self,
        path: &str,
        custom: &BTreeMap<String, String>,
        metadata_cas: Option<u64>,
    ) -> Result<(), KvError> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            custom_metadata: &'a BTreeMap<String, String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            metadata_cas: Option<u64>,
        }
        let url = format!("{}/metadata/{path}", self.mount);
        let call = Call::new(Method::POST, &url, Idempotent::Yes)
            .json(&Body {
                custom_metadata: custom,
                metadata_cas,
            })
            .map_err(self.api(path))?;
        self.client
            .send(call)
            .await
            .map_err(|e| match (self.api(path)(e), metadata_cas) {
                (KvError::MetadataCasMismatch { mount, path, .. }, Some(expected)) => {
                    KvError::MetadataCasMismatch {
                        mount,
                        path,
                        expected,
                    }
                }
                (err, _) => err,
            })?;
        Ok(())
    }

    /// Records who wrote `version` and which keys it changed, as a [`ChangeRecord`] in the
    /// secret's `custom_metadata`; records of versions the engine no longer keeps are pruned.
    /// Uses OpenBao's `metadata_cas` and re-reads on a race, so a concurrent writer's record
    /// is not lost.
    pub async fn record_change(
        &self,
        path: &str,
        version: u64,
        record: &ChangeRecord,
    ) -> Result<(), KvError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let meta = self.metadata(path).await?;
            let custom = record::merge_record(&meta.custom_metadata, version, record, |v| {
                meta.versions.contains_key(&v)
            });
            match self
                .set_custom_metadata(path, &custom, meta.current_metadata_version)
                .await
            {
                Err(KvError::MetadataCasMismatch { .. }) if attempt < RECORD_ATTEMPTS => {}
                other => return other,
            }
        }
    }

    /// Restores the content of `version` as a new version, written with check-and-set against
    /// `current` (the version the caller saw as current, so a concurrent write is not silently
    /// overwritten). Refuses a deleted or destroyed version.
    pub async fn rollback(
        &self,
        path: &str,
        version: u64,
        current: u64,
    ) -> Result<VersionMeta, KvError> {
        let old = self.read(path, Some(version)).await?;
        self.write(path, &old.data, Some(current)).await
    }

    /// Soft-deletes `versions` (undo with [`Kv2::undelete`]).
    pub async fn delete_versions(&self, path: &str, versions: &[u64]) -> Result<(), KvError> {
        self.versions_op("delete", path, versions).await
    }

    /// Brings soft-deleted `versions` back.
    pub async fn undelete(&self, path: &str, versions: &[u64]) -> Result<(), KvError> {
        self.versions_op("undelete", path, versions).await
    }

    /// Destroys `versions` for good.
    pub async fn destroy(&self, path: &str, versions: &[u64]) -> Result<(), KvError> {
        self.versions_op("destroy", path, versions).await
    }

    async fn versions_op(&self, op: &str, path: &str, versions: &[u64]) -> Result<(), KvError> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            versions: &'a [u64],
        }
        let url = format!("{}/{op}/{path}", self.mount);
        let call = Call::new(Method::POST, &url, Idempotent::Yes)
            .json(&Body { versions })
            .map_err(self.api(path))?;
        self.client
            .send(call)
            .await
            .map(drop)
            .map_err(self.api(path))
    }
}

impl Kv1<'_> {
    /// The mount path.
    pub fn mount(&self) -> &str {
        &self.mount
    }

    /// Reads the secret at `path`.
    pub async fn read(&self, path: &str) -> Result<KvData, KvError> {
        let url = format!("{}/{path}", self.mount);
        let reply = self
            .client
            .send(Call::get(&url))
            .await
            .map_err(|e| classify(e, &self.mount, path))?;
        decode_data(&reply, &url)
            .map_err(|e| classify(e, &self.mount, path))?
            .ok_or_else(|| classify(missing_data(&url), &self.mount, path))
    }

    /// Replaces the secret at `path` with `data` (KV v1 keeps no history). Idempotent.
    pub async fn write(&self, path: &str, data: &KvData) -> Result<(), KvError> {
        let url = format!("{}/{path}", self.mount);
        let call = Call::new(Method::POST, &url, Idempotent::Yes)
            .json(&data::Exposed(data))
            .map_err(|e| classify(e, &self.mount, path))?;
        self.client
            .send(call)
            .await
            .map(drop)
            .map_err(|e| classify(e, &self.mount, path))
    }

    /// The keys under folder `path` (sub-folders end in `/`).
    pub async fn list(&self, path: &str) -> Result<Vec<String>, KvError> {
        self.client
            .list(&format!("{}/{path}", self.mount))
            .await
            .map_err(|e| classify(e, &self.mount, path))
    }

    /// Deletes the secret at `path` (no error if absent).
    pub async fn delete(&self, path: &str) -> Result<(), KvError> {
        self.client
            .delete(&format!("{}/{path}", self.mount))
            .await
            .map_err(|e| classify(e, &self.mount, path))
    }
}

/// Decodes `data` of a reply (`None` when the server sent no data).
fn decode_data<T: DeserializeOwned>(reply: &Reply, url: &str) -> Result<Option<T>, Error> {
    Ok(reply.decode::<Envelope<T>>(url)?.data)
}

fn missing_data(url: &str) -> Error {
    Error::Decode {
        path: url.to_owned(),
        source: serde::de::Error::custom("the response has no data"),
    }
}

/// Turns a client error into a [`KvError`], recognising OpenBao's check-and-set refusals
/// (400s whose text is the only signal) and plain misses.
fn classify(err: Error, mount: &str, path: &str) -> KvError {
    let mentions = |needle: &str| err.server_errors().iter().any(|e| e.contains(needle));
    let (mount, path) = (mount.to_owned(), path.to_owned());
    if err.status() == Some(400) && mentions("metadata check-and-set") {
        return KvError::MetadataCasMismatch {
            mount,
            path,
            expected: 0,
        };
    }
    if err.status() == Some(400) && mentions("check-and-set parameter did not match") {
        return KvError::CasMismatch {
            mount,
            path,
            expected: 0,
        };
    }
    if matches!(err.root(), Error::NotFound { errors, .. } if errors.is_empty()) {
        return KvError::NotFound {
            mount,
            path,
            version: None,
        };
    }
    KvError::Api {
        mount,
        path,
        source: err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad_request(msg: &str) -> Error {
        Error::from_status(
            400,
            "kvv2/data/a",
            "http://x",
            format!(r#"{{"errors":["{msg}"]}}"#).as_bytes(),
        )
    }

    #[test]
    fn check_and_set_refusals_are_typed() {
        assert!(matches!(
            classify(
                bad_request("check-and-set parameter did not match the current version"),
                "kvv2",
                "a"
            ),
            KvError::CasMismatch { .. }
        ));
        assert!(matches!(
            classify(
                bad_request("metadata check-and-set parameter does not match the current version"),
                "kvv2",
                "a"
            ),
            KvError::MetadataCasMismatch { .. }
        ));
        let denied = Error::from_status(
            403,
            "kvv2/data/a",
            "http://x",
            br#"{"errors":["permission denied"]}"#,
        );
        let err = classify(denied, "kvv2", "a");
        assert!(err.is_permission_denied(), "{err}");
        assert!(
            err.to_string().starts_with("kvv2/a: permission denied"),
            "{err}"
        );
        let miss = Error::from_status(404, "kvv2/data/a", "http://x", br#"{"errors":[]}"#);
        assert!(matches!(
            classify(miss, "kvv2", "a"),
            KvError::NotFound { .. }
        ));
    }

    #[test]
    fn metadata_parses_versions_and_nulls() {
        let m: KvMetadata = serde_json::from_str(
            r#"{"cas_required":false,"created_time":"t1","current_metadata_version":3,
                "current_version":2,"custom_metadata":null,"max_versions":0,"oldest_version":0,
                "updated_time":"t2","versions":{"1":{"created_time":"t1","deletion_time":"","destroyed":false},
                "2":{"created_time":"t2","deletion_time":"t3","destroyed":false}}}"#,
        )
        .expect("parse");
        assert_eq!(m.current_version, 2);
        assert_eq!(m.current_metadata_version, Some(3));
        assert!(m.versions[&1].readable());
        assert_eq!(m.versions[&2].deletion_time.as_deref(), Some("t3"));
        assert!(!m.versions[&2].readable());
    }
}
