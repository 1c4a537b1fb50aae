//! `state/<output>.json`: what was actually delivered on this host.
//!
//! One small JSON file per output: the certificate serial and validity, the SHA-256 of every
//! file delivered, when, and how the last reload went. It is read at start (so status is right
//! before anything is contacted) and is what posture reads later: what is on the host, not only
//! what OpenBao issued. It holds digests, never contents; it is still written owner-only,
//! because a digest of a low-entropy secret is a guessing oracle.
//!
//! `state/database/<source>.json` records the lease of a `[[database]]` source: its id, when
//! it was issued and when it ends — never the username or password. The id is what lets the
//! next start revoke the lease of the previous run, so restarts do not pile up live database
//! users. A lease id cannot log in anywhere, but with the right to revoke leases it can cut a
//! service off its database, so it gets the same owner-only file.
//!
//! The state directory is reached like every output: from the identity directory, one
//! component at a time, never through a symlink, and only through directories owned by root or
//! the agent's user (`warden_files::Dir`). A `state -> /elsewhere` link makes every state write
//! fail with an error naming it, and state reads return nothing.
//!
//! The state is a record, not the authority: whether a certificate on disk is still good is
//! decided by verifying the files themselves, so a state file lost or left behind by a crash
//! never causes a wrong decision, at worst a stale record until the next delivery.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The record of one output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputState {
    /// Certificate serial (colon-free lower-case hex), for certificate outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Certificate validity start.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_before: Option<OffsetDateTime>,
    /// Certificate validity end.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_after: Option<OffsetDateTime>,
    /// File name → SHA-256 (lower-case hex) of what was delivered.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// When the content last changed on disk.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub delivered_at: Option<OffsetDateTime>,
    /// The last reload, if one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reload: Option<ReloadRecord>,
}

/// How a reload went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadRecord {
    /// When it ran.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Whether it succeeded.
    pub ok: bool,
    /// Exit status and the start of its output, or why it could not run.
    pub message: String,
}

/// The record of one `[[database]]` source's current lease. Holds no credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseState {
    /// `<mount>/creds/<role>` it was issued from.
    pub path: String,
    /// The lease id (`<path>/<random>`), to revoke it at the next start.
    pub lease_id: String,
    /// When it was issued.
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// When it ends as last renewed.
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
    /// Issues of the source since the agent started (1 for the first).
    pub generation: u64,
}

/// Why a state file could not be written. (An unreadable one is treated as absent and logged.)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The state directory could not be created or the file not written.
    #[error("could not record the state of output {output}: {source}")]
    Write {
        /// The output.
        output: String,
        /// The write error.
        #[source]
        source: warden_files::Error,
    },
}

/// The state directory of one agent.
#[derive(Debug, Clone)]
pub struct StateDir {
    /// `state/` as configured, for messages.
    dir: PathBuf,
    /// The identity directory holding it: where the walk starts.
    root: PathBuf,
    /// `state`, relative to `root`.
    rel: PathBuf,
}

impl StateDir {
    /// `dir` is `state/` next to `agent.toml`; the directory holding it (the identity
    /// directory) is the root it is reached from.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let (root, rel) = match (dir.parent(), dir.file_name()) {
            (Some(p), Some(n)) if !p.as_os_str().is_empty() => (p.to_path_buf(), PathBuf::from(n)),
            (_, Some(n)) => (PathBuf::from("."), PathBuf::from(n)),
            _ => (dir.clone(), PathBuf::new()),
        };
        Self { dir, root, rel }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory (owner-only) if needed.
    pub fn ensure(&self) -> Result<(), StateError> {
        self.open(Path::new(""))
            .map(drop)
            .map_err(|source| StateError::Write {
                output: "(state directory)".to_owned(),
                source,
            })
    }

    /// `state/<output>.json`.
    pub fn path(&self, output: &str) -> PathBuf {
        self.dir.join(format!("{output}.json"))
    }

    /// `state/database/<source>.json`. A subdirectory, so a source and an output may share a
    /// name.
    pub fn database_path(&self, source: &str) -> PathBuf {
        self.dir.join("database").join(format!("{source}.json"))
    }

    /// The recorded lease of `source`, or `None` (missing or unreadable, logged).
    pub fn load_database(&self, source: &str) -> Option<DatabaseState> {
        self.read_json(source, Path::new("database"), &format!("{source}.json"))
    }

    /// Records the lease of `source` atomically (owner-only).
    pub fn save_database(&self, source: &str, state: &DatabaseState) -> Result<(), StateError> {
        let name = format!("{source}.json");
        self.write_json(
            &format!("database {source}"),
            Path::new("database"),
            &name,
            state,
        )
    }

    /// The recorded state, or `None` when there is none or it cannot be read (logged: a
    /// corrupt record must not stop the agent, the files on disk are checked anyway).
    pub fn load(&self, output: &str) -> Option<OutputState> {
        self.read_json(output, Path::new(""), &format!("{output}.json"))
    }

    /// Writes the record atomically (owner-only).
    pub fn save(&self, output: &str, state: &OutputState) -> Result<(), StateError> {
        self.write_json(output, Path::new(""), &format!("{output}.json"), state)
    }

    /// Writes another file of the agent's into the state directory (`health.addr`),
    /// atomically, creating the directory (owner-only) when missing.
    pub fn write_file(
        &self,
        name: &str,
        contents: &[u8],
        mode: warden_files::Mode,
    ) -> Result<(), warden_files::Error> {
        self.open(Path::new(""))?.write(name, contents, mode, None)
    }

    /// Opens `state/<sub>` from the identity directory, creating what is missing `0700`.
    fn open(&self, sub: &Path) -> Result<warden_files::Dir, warden_files::Error> {
        warden_files::Dir::open_root(&self.root, warden_files::Trusted::process())?
            .create_dirs(&self.rel.join(sub), 0o700)
    }

    fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        output: &str,
        sub: &Path,
        name: &str,
    ) -> Option<T> {
        let path = self.dir.join(sub).join(name);
        let read = warden_files::Dir::open_root(&self.root, warden_files::Trusted::process())
            .and_then(|root| root.try_open(&self.rel.join(sub)))
            .and_then(|dir| dir.map(|d| d.read(name)).transpose());
        let bytes = match read {
            Ok(Some(Some(f))) => f.bytes,
            Ok(_) => return None,
            Err(e) => {
                tracing::warn!(output, path = %path.display(), error = %e, "cannot read the state file; ignoring it");
                return None;
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(output, path = %path.display(), error = %e, "the state file is not valid; ignoring it");
                None
            }
        }
    }

    /// Writes `state` to `state/<sub>/<name>` atomically, owner-only, creating its
    /// (owner-only) directory.
    fn write_json<T: Serialize>(
        &self,
        output: &str,
        sub: &Path,
        name: &str,
        state: &T,
    ) -> Result<(), StateError> {
        let err = |source| StateError::Write {
            output: output.to_owned(),
            source,
        };
        let mut body = serde_json::to_vec_pretty(state).unwrap_or_default();
        body.push(b'\n');
        self.open(sub)
            .and_then(|dir| dir.write(name, &body, warden_files::Mode::OwnerOnly, None))
            .map_err(err)
    }
}

/// SHA-256 of `bytes`, lower-case hex: the digest recorded for every delivered file.
pub use warden_pki::sha256_hex;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trips_owner_only_and_tolerates_garbage() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path().join("state"));
        assert_eq!(dir.load("tls"), None);
        let state = OutputState {
            serial: Some("0a1b".into()),
            not_before: Some(OffsetDateTime::UNIX_EPOCH),
            not_after: Some(OffsetDateTime::UNIX_EPOCH + time::Duration::hours(72)),
            files: [("cert.pem".to_owned(), sha256_hex(b"x"))].into(),
            delivered_at: Some(OffsetDateTime::UNIX_EPOCH),
            last_reload: Some(ReloadRecord {
                at: OffsetDateTime::UNIX_EPOCH,
                ok: true,
                message: "exit 0".into(),
            }),
        };
        dir.save("tls", &state).unwrap();
        assert_eq!(dir.load("tls"), Some(state));
        let mode = std::fs::metadata(dir.path("tls"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(dir.path("tls")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["not_after"], "1970-01-04T00:00:00Z");
        assert_eq!(v["last_reload"]["ok"], true);
        std::fs::write(dir.path("tls"), b"{not json").unwrap();
        assert_eq!(dir.load("tls"), None);
    }

    #[test]
    fn database_leases_are_recorded_owner_only_beside_outputs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path().join("state"));
        assert_eq!(dir.load_database("main"), None);
        let state = DatabaseState {
            path: "postgres/creds/billing".into(),
            lease_id: "postgres/creds/billing/abc".into(),
            issued_at: OffsetDateTime::UNIX_EPOCH,
            expires: OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(20),
            generation: 1,
        };
        dir.save_database("main", &state).unwrap();
        // An output called like the source keeps its own file.
        dir.save("main", &OutputState::default()).unwrap();
        assert_eq!(dir.load_database("main"), Some(state));
        for p in [
            dir.database_path("main"),
            dir.database_path("main").parent().unwrap().to_path_buf(),
        ] {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode & 0o077, 0, "{}: {mode:o}", p.display());
        }
        let text = std::fs::read_to_string(dir.database_path("main")).unwrap();
        assert!(
            !text.contains("password") && !text.contains("username"),
            "{text}"
        );
    }

    #[test]
    fn a_symlinked_state_directory_is_neither_written_nor_read() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::write(victim.join("tls.json"), b"{\"serial\":\"ff\"}").unwrap();
        let id = tmp.path().join("id");
        std::fs::create_dir(&id).unwrap();
        std::os::unix::fs::symlink(&victim, id.join("state")).unwrap();
        let dir = StateDir::new(id.join("state"));
        assert_eq!(dir.load("tls"), None);
        let e = dir.save("tls", &OutputState::default()).unwrap_err();
        assert!(e.to_string().contains("is a symbolic link"), "{e}");
        assert!(dir.ensure().is_err());
        assert!(
            dir.write_file("health.addr", b"x", warden_files::Mode::Public)
                .is_err()
        );
        let names: Vec<_> = std::fs::read_dir(&victim).unwrap().collect();
        assert_eq!(names.len(), 1);
        assert_eq!(
            std::fs::read(victim.join("tls.json")).unwrap(),
            b"{\"serial\":\"ff\"}"
        );
    }

    #[test]
    fn digests_are_hex_sha256() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
