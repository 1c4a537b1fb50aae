//! Backups of an environment, and the checks that make them worth keeping (docs/dr.md,
//! ADR 0011).
//!
//! - [`create`]: a raft snapshot streamed from the active node through the age encryptor (to
//!   the spec's `[environments.E.backup] recipients`) into a temp file in the backup dir,
//!   checked on the way (its own `SHA256SUMS`, [`archive`]), fsynced and renamed; beside it a
//!   manifest signed with the environment's evidence key (the same packet format and key as
//!   evidence, so `warden evidence verify` checks it offline). Retention ([`prune`]) after.
//! - [`list`]: the backups in a directory, newest first, from their manifests.
//! - [`verify`]: offline: the manifest's signature, its environment, the ciphertext's size and
//!   SHA-256, then the snapshot decrypted into a pipe and its checksums checked. Nothing is
//!   restored and no plaintext touches a disk.
//! - [`restore`]: every offline check, the snapshot decrypted into memory, then the restore on
//!   the active node (`snapshot`, or `snapshot-force` under another keyring).
//! - [`drill`]: the newest backup restored into a scratch cluster (`warden_lab::Scratch`),
//!   unsealed with the environment's shares and checked; RTO, RPO and a report to sign.
//!
//! Never a clear copy on disk; never a partial file left behind: the temp file is removed on
//! any failure, and a manifest is written only for a snapshot that checked out.

pub mod archive;
pub mod drill;
mod error;
mod manifest;
pub mod restore;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use aws_lc_rs::digest;
use serde::Serialize;
use warden_bao::Client;
use warden_spec::{Environment, Spec};

pub use error::BackupError;
pub use manifest::{MANIFEST_COMPONENT, MANIFEST_FORMAT, Manifest};

/// Backup file name suffixes.
pub const SNAPSHOT_SUFFIX: &str = ".snap.age";
/// The manifest beside it.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";

/// How long one snapshot transfer may take.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// How long the active node may stay silent during the transfer (no response, or no bytes)
/// before the backup is abandoned: a frozen server fails the backup in this time, not in
/// [`TRANSFER_TIMEOUT`].
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A written backup.
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    /// The encrypted snapshot.
    pub snapshot: PathBuf,
    /// Its signed manifest.
    pub manifest_path: PathBuf,
    /// What the manifest says.
    pub manifest: Manifest,
    /// Whether the evidence key was created by this backup.
    pub key_created: bool,
    /// Backups retention removed (snapshot paths).
    pub pruned: Vec<PathBuf>,
}

/// Counts and hashes what passes through to the file.
struct HashWriter<W> {
    inner: W,
    ctx: digest::Context,
    len: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.ctx.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn recipients(env: &str, list: &[String]) -> Result<Vec<age::x25519::Recipient>, BackupError> {
    if list.is_empty() {
        return Err(BackupError::NoRecipients {
            env: env.to_owned(),
        });
    }
    list.iter()
        .map(|r| {
            age::x25519::Recipient::from_str(r).map_err(|reason| BackupError::BadRecipient {
                env: env.to_owned(),
                recipient: r.clone(),
                reason: reason.to_owned(),
            })
        })
        .collect()
}

/// The backup settings of `env`, or why there are none.
pub fn settings(env: &Environment) -> Result<&warden_spec::Backup, BackupError> {
    env.backup
        .as_ref()
        .ok_or_else(|| BackupError::NotConfigured {
            env: env.name.to_string(),
        })
}

/// Purposes that cover a credential of `env` (the registry's purpose count for the manifest).
pub fn purpose_count(spec: &Spec, env: &Environment) -> usize {
    let creds = spec.credentials();
    spec.purposes
        .iter()
        .filter(|p| {
            creds
                .iter()
                .any(|c| c.environments.contains(&env.name) && p.covers(&c.id))
        })
        .count()
}

fn stamp(now: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!(
        "[year][month][day]T[hour][minute][second].[subsecond digits:3]Z"
    );
    now.format(&f)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// Takes a backup of `env` into `dir` (the spec's `backup.dir`, resolved by the caller).
/// `stall` bounds every silence of the server during the transfer and the manifest's signing
/// ([`STALL_TIMEOUT`]).
pub async fn create(
    client: &Client,
    spec: &Spec,
    env: &Environment,
    dir: &Path,
    stall: Duration,
) -> Result<Created, BackupError> {
    let name = env.name.to_string();
    let settings = settings(env)?;
    let recips = recipients(&name, &settings.recipients)?;
    let health = client
        .health()
        .await
        .map_err(|source| BackupError::Server {
            env: name.clone(),
            source: Box::new(source),
        })?;
    if health.sealed {
        return Err(BackupError::Sealed { env: name });
    }
    warden_files::ensure_private_dir(dir).map_err(|e| BackupError::Dir {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let now = time::OffsetDateTime::now_utc();
    let base = format!("{name}-{}", stamp(now));
    let snap_path = dir.join(format!("{base}{SNAPSHOT_SUFFIX}"));
    let manifest_path = dir.join(format!("{base}{MANIFEST_SUFFIX}"));
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source: io::Error| BackupError::Write { path, source }
    };
    let tmp = tempfile::Builder::new()
        .prefix(".warden-backup-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io_err(dir))?;
    let file = tmp.as_file().try_clone().map_err(io_err(tmp.path()))?;
    let sink = HashWriter {
        inner: io::BufWriter::with_capacity(256 * 1024, file),
        ctx: digest::Context::new(&digest::SHA256),
        len: 0,
    };
    let encryptor = age::Encryptor::with_recipients(
        recips.iter().map(|r| r as &dyn age::Recipient),
    )
    .map_err(|e| BackupError::BadRecipient {
        env: name.clone(),
        recipient: String::new(),
        reason: e.to_string(),
    })?;
    let mut enc = encryptor.wrap_output(sink).map_err(io_err(tmp.path()))?;
    let mut checker = archive::Checker::start().map_err(|source| BackupError::Archive {
        what: "the snapshot".into(),
        source,
    })?;
    let (plain_bytes, node) = client
        .raft_snapshot_save(TRANSFER_TIMEOUT, stall, |chunk| {
            checker.write(chunk);
            enc.write_all(chunk)
        })
        .await
        .map_err(|source| match source {
            warden_bao::SnapshotError::Sink(e) => BackupError::Write {
                path: tmp.path().to_path_buf(),
                source: e,
            },
            other => BackupError::Snapshot {
                env: name.clone(),
                source: Box::new(other),
            },
        })?;
    let mut sink = enc.finish().map_err(io_err(tmp.path()))?;
    sink.flush().map_err(io_err(tmp.path()))?;
    let size = sink.len;
    let sha256 = hex::encode(sink.ctx.finish().as_ref());
    let file = sink.inner.into_inner().map_err(|e| BackupError::Write {
        path: tmp.path().to_path_buf(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io_err(tmp.path()))?;
    let info = checker.finish().map_err(|source| BackupError::Archive {
        what: format!("the snapshot {node} sent"),
        source,
    })?;
    let manifest = Manifest {
        component: MANIFEST_COMPONENT.to_owned(),
        format: MANIFEST_FORMAT.to_owned(),
        env: name.clone(),
        generated_at: now.unix_timestamp(),
        file: snap_path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        size,
        sha256,
        snapshot_bytes: plain_bytes,
        openbao_version: health.version.clone(),
        raft_index: info.index,
        raft_term: info.term,
        node,
        purpose_count: purpose_count(spec, env),
        recipients: settings.recipients.clone(),
    };
    // The operator's stall bound covers the signing requests too: a server frozen just after
    // the stream ended must fail as fast as one frozen during it, not after the client's
    // general request timeout.
    let signed = tokio::time::timeout(
        stall,
        warden_registry::evidence::sign_payload(
            client,
            &name,
            &env.mounts.transit,
            &manifest.payload(),
        ),
    )
    .await
    .map_err(|_| BackupError::SignStalled {
        env: name.clone(),
        after: stall,
    })?
    .map_err(|source| BackupError::Sign {
        env: name.clone(),
        source: Box::new(source),
    })?;
    tmp.persist_noclobber(&snap_path)
        .map_err(|e| BackupError::Write {
            path: snap_path.clone(),
            source: e.error,
        })?;
    if let Err(e) =
        warden_files::write_atomic(&manifest_path, &signed.bytes, warden_files::Mode::Public)
    {
        let _ = std::fs::remove_file(&snap_path);
        return Err(BackupError::Write {
            path: manifest_path,
            source: io::Error::other(e.to_string()),
        });
    }
    sync_dir(dir);
    let pruned = prune(
        dir,
        &name,
        settings.keep,
        settings.max_age,
        now.unix_timestamp(),
    )?;
    Ok(Created {
        snapshot: snap_path,
        manifest_path,
        manifest,
        key_created: signed.key_created,
        pruned,
    })
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// One backup found in a directory.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    /// The encrypted snapshot.
    pub snapshot: PathBuf,
    /// Its manifest.
    pub manifest_path: PathBuf,
    /// What the manifest says (unverified: `verify` checks the signature).
    pub manifest: Manifest,
    /// Whether the snapshot file is there.
    pub present: bool,
}

/// The backups of `env` (or of every environment) in `dir`, newest first. Manifests that do
/// not parse are skipped and named in the second list.
pub fn list(dir: &Path, env: Option<&str>) -> Result<(Vec<Listed>, Vec<PathBuf>), BackupError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => {
            return Err(BackupError::Dir {
                path: dir.to_path_buf(),
                reason: e.to_string(),
            });
        }
    };
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for entry in rd.flatten() {
        let fname = entry.file_name().to_string_lossy().into_owned();
        if !fname.ends_with(MANIFEST_SUFFIX) || fname.starts_with('.') {
            continue;
        }
        let path = entry.path();
        match Manifest::read_unverified(&path) {
            // A manifest names its snapshot; that name must be the plain file beside it with
            // the same base name. Anything else (`../x`, an absolute path, another backup's
            // snapshot) is not listed, so retention can never delete outside `dir` or a
            // backup through another one's manifest.
            Ok(m) if !names_its_own_snapshot(&fname, &m.file) => bad.push(path),
            Ok(m) => {
                if env.is_some_and(|e| e != m.env) {
                    continue;
                }
                let snapshot = dir.join(&m.file);
                out.push(Listed {
                    present: snapshot.is_file(),
                    snapshot,
                    manifest_path: path,
                    manifest: m,
                });
            }
            Err(_) => bad.push(path),
        }
    }
    out.sort_by(|a, b| {
        b.manifest
            .generated_at
            .cmp(&a.manifest.generated_at)
            .then(b.manifest.file.cmp(&a.manifest.file))
    });
    Ok((out, bad))
}

/// Whether a manifest called `manifest_name` may name `file` as its snapshot: the same base
/// name with [`SNAPSHOT_SUFFIX`], a plain name (no separator, no leading dot).
fn names_its_own_snapshot(manifest_name: &str, file: &str) -> bool {
    let Some(base) = manifest_name.strip_suffix(MANIFEST_SUFFIX) else {
        return false;
    };
    !file.contains('/') && !file.starts_with('.') && file == format!("{base}{SNAPSHOT_SUFFIX}")
}

/// Applies retention to `env`'s backups in `dir`: at most `keep`, none older than `max_age`
/// (seconds before `now`); the newest is always kept. Returns the snapshots removed.
pub fn prune(
    dir: &Path,
    env: &str,
    keep: Option<u32>,
    max_age: Option<Duration>,
    now: i64,
) -> Result<Vec<PathBuf>, BackupError> {
    let (all, _) = list(dir, Some(env))?;
    let mut removed = Vec::new();
    for (i, b) in all.iter().enumerate() {
        if i == 0 {
            continue;
        }
        let over_count = keep.is_some_and(|k| i >= k as usize);
        let too_old = max_age.is_some_and(|a| {
            now.saturating_sub(b.manifest.generated_at)
                > i64::try_from(a.as_secs()).unwrap_or(i64::MAX)
        });
        if over_count || too_old {
            // Snapshot first: a manifest without its snapshot is listed as missing, never
            // the other way round (a snapshot nobody can check).
            for p in [&b.snapshot, &b.manifest_path] {
                match std::fs::remove_file(p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(BackupError::Write {
                            path: p.clone(),
                            source: e,
                        });
                    }
                }
            }
            removed.push(b.snapshot.clone());
        }
    }
    if !removed.is_empty() {
        sync_dir(dir);
    }
    Ok(removed)
}

/// What `verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    /// The snapshot checked.
    pub snapshot: PathBuf,
    /// The manifest (signature verified).
    pub manifest: Manifest,
    /// The evidence key that signed it.
    pub key: String,
    /// Its fingerprint.
    pub key_sha256: String,
    /// What the snapshot says about itself.
    pub archive: archive::SnapshotInfo,
}

/// What `verify` needs.
#[derive(Debug)]
pub struct VerifyRequest<'a> {
    /// The encrypted snapshot (`.snap.age`) or its manifest.
    pub backup: &'a Path,
    /// The evidence public keys (`warden evidence key`).
    pub keys: &'a [warden_registry::evidence::PublicKey],
    /// The environment it must belong to, if known.
    pub env: Option<&'a str>,
    /// An identity that opens it.
    pub identity: &'a warden_custody::IdentityFile,
}

/// The snapshot and manifest paths of a backup named by either.
pub fn paths(backup: &Path) -> (PathBuf, PathBuf) {
    let s = backup.to_string_lossy();
    if let Some(base) = s.strip_suffix(MANIFEST_SUFFIX) {
        (
            PathBuf::from(format!("{base}{SNAPSHOT_SUFFIX}")),
            backup.to_path_buf(),
        )
    } else if let Some(base) = s.strip_suffix(SNAPSHOT_SUFFIX) {
        (
            backup.to_path_buf(),
            PathBuf::from(format!("{base}{MANIFEST_SUFFIX}")),
        )
    } else {
        (
            backup.to_path_buf(),
            PathBuf::from(format!("{s}{MANIFEST_SUFFIX}")),
        )
    }
}

/// Checks the manifest and the ciphertext (signature, environment, size, SHA-256): everything
/// that needs no identity. Offline.
pub fn check_manifest(
    backup: &Path,
    keys: &[warden_registry::evidence::PublicKey],
    env: Option<&str>,
) -> Result<(PathBuf, Manifest, warden_registry::evidence::Verified), BackupError> {
    let (snap, manifest_path) = paths(backup);
    let (manifest, signed) = Manifest::read_verified(&manifest_path, keys)?;
    // The signed manifest names its snapshot: a validly signed manifest of *another* backup
    // (an older one copied over this one's name, with its snapshot) is refused, so a stale
    // backup cannot pass for the one the operator picked by name.
    let snap_name = snap
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    if manifest.file != snap_name {
        return Err(BackupError::ManifestNamesAnother {
            path: manifest_path,
            names: manifest.file,
            file: snap_name,
        });
    }
    if let Some(want) = env
        && manifest.env != want
    {
        return Err(BackupError::WrongEnvironment {
            path: manifest_path,
            found: manifest.env,
            expected: want.to_owned(),
        });
    }
    let (size, sha) = hash_file(&snap)?;
    if size != manifest.size || sha != manifest.sha256 {
        return Err(BackupError::CiphertextMismatch {
            path: snap,
            size,
            expected_size: manifest.size,
        });
    }
    Ok((snap, manifest, signed))
}

fn hash_file(path: &Path) -> Result<(u64, String), BackupError> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path).map_err(|source| BackupError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; 256 * 1024];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|source| BackupError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, hex::encode(ctx.finish().as_ref())))
}

/// Opens the snapshot with the identity and streams the plaintext into `each` (chunk by
/// chunk, never to disk).
pub fn decrypt(
    snap: &Path,
    identity: &warden_custody::IdentityFile,
    mut each: impl FnMut(&[u8]),
) -> Result<u64, BackupError> {
    use std::io::Read as _;
    let f = std::fs::File::open(snap).map_err(|source| BackupError::Read {
        path: snap.to_path_buf(),
        source,
    })?;
    let not_age = |reason: String| BackupError::NotAge {
        path: snap.to_path_buf(),
        reason,
    };
    let dec =
        age::Decryptor::new_buffered(io::BufReader::new(f)).map_err(|e| not_age(e.to_string()))?;
    let mut r = dec.decrypt(identity.identities()).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => BackupError::NotForIdentity {
            path: snap.to_path_buf(),
            identity: identity.path().to_path_buf(),
        },
        other => not_age(other.to_string()),
    })?;
    let mut buf = zeroize::Zeroizing::new(vec![0u8; 256 * 1024]);
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).map_err(|e| not_age(e.to_string()))?;
        if n == 0 {
            break;
        }
        each(&buf[..n]);
        total += n as u64;
    }
    Ok(total)
}

/// Verifies a backup offline without restoring it.
pub fn verify(req: &VerifyRequest<'_>) -> Result<Verified, BackupError> {
    let (snap, manifest, signed) = check_manifest(req.backup, req.keys, req.env)?;
    let info = check_archive(&snap, &manifest, req.identity, |_| {})?;
    Ok(Verified {
        snapshot: snap,
        manifest,
        key: signed.key,
        key_sha256: signed.key_sha256,
        archive: info,
    })
}

/// The offline check after [`check_manifest`], shared by [`verify`] and [`restore::open`]:
/// decrypts the snapshot (each piece also handed to `each`) and reads it as a raft archive,
/// whose index must be the signed manifest's. Nothing is contacted.
pub(crate) fn check_archive(
    snap: &Path,
    manifest: &Manifest,
    identity: &warden_custody::IdentityFile,
    mut each: impl FnMut(&[u8]),
) -> Result<archive::SnapshotInfo, BackupError> {
    let mut checker = archive::Checker::start().map_err(|source| BackupError::Archive {
        what: snap.display().to_string(),
        source,
    })?;
    decrypt(snap, identity, |c| {
        checker.write(c);
        each(c);
    })?;
    let info = checker.finish().map_err(|source| BackupError::Archive {
        what: snap.display().to_string(),
        source,
    })?;
    if info.index != manifest.raft_index {
        return Err(BackupError::IndexMismatch {
            path: snap.to_path_buf(),
            found: info.index,
            expected: manifest.raft_index,
        });
    }
    Ok(info)
}
