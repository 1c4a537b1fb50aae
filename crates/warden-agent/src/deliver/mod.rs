//! The only writer of outputs.
//!
//! * A single file (template, CA chain) is written atomically: the old file or the new one,
//!   never a partial one, whatever happens (crash, `kill -9`, full disk).
//! * A certificate set is first **verified** ([`verify_certificate_set`]: key matches the
//!   certificate, the chain verifies to the trust anchor, the leaf does not outlive its issuer,
//!   the names are exactly the profile's), then written into a new versioned directory
//!   `<dir>.d/<version>/` (every file fsynced, then the directory), and published by replacing
//!   the symlink `<dir>` → `<dir>.d/<version>` atomically (a symlink under a temporary name,
//!   renamed over the old one). A reader of `<dir>/cert.pem` and `<dir>/key.pem` therefore
//!   sees one complete set or the other, never a new certificate with an old key. The version
//!   before is kept (a service that opened the old path keeps working), older ones removed
//!   ([`set`] says which: only directories the agent itself created).
//!
//! **Nothing is reached through a symlink.** Every configured path is resolved from a root —
//! the identity directory when the path lies inside it, `/` otherwise — one component at a
//! time with `warden_files::Dir` (`O_NOFOLLOW`), and each directory on the way must belong to
//! root, the agent's user or the output's `owner` and be writable by nobody else
//! (docs/agent.md, "Threat model"). A symlinked directory at any depth, or one another user
//! could swap, fails the delivery with an error naming the component; nothing is written or
//! removed outside the tree that was checked.
//!
//! Whether anything changed is decided by SHA-256 of the new content against what is on disk,
//! so an unchanged render writes nothing and triggers no reload.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};

use warden_files::{Dir, Trusted};
use zeroize::Zeroizing;

use super::output::{Rendered, RenderedFile};
use super::state::sha256_hex;

mod set;
pub(crate) mod verify;

pub use set::{deliver_set, read_set, read_versions};
pub use verify::{Expected, verify_certificate_set};

/// The most the agent reads of a file it delivered when it looks at it again. The output's
/// owner may grow a file it owns in place (a sparse `truncate -s 100G`); read whole, it would
/// exhaust the agent's memory. A file larger than this is taken as not the one delivered (and
/// replaced); nothing the agent renders comes near it (a template's source is at most 1 MiB).
pub(crate) const READ_LIMIT: u64 = 16 * 1024 * 1024;

/// Whether a delivery changed anything on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything on disk already had this content (and mode); nothing was written.
    Unchanged,
    /// New content is in place.
    Changed,
}

/// Why a delivery did not happen. Whatever was on disk before is still there, intact.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliverError {
    /// The rendered set failed a check (key, chain, lifetime, names); nothing was written.
    #[error("output {output}: refused to deliver: {reason}")]
    Refused {
        /// The output.
        output: String,
        /// Which check failed and how.
        reason: String,
    },
    /// Writing a file failed (full disk, read-only directory, a symlink planted at the
    /// target...). See [`DeliverError::is_disk_full`].
    #[error("output {output}: {source}")]
    Write {
        /// The output.
        output: String,
        /// The write error (names the path and step).
        #[source]
        source: warden_files::Error,
    },
    /// Another filesystem step failed (creating a directory, the symlink swap, a chown).
    #[error("output {output}: could not {step} {path}: {source}")]
    Io {
        /// The output.
        output: String,
        /// What was being done.
        step: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// `owner` or `group` names nobody on this host.
    #[error("output {output}: unknown {what} `{name}`")]
    UnknownOwner {
        /// The output.
        output: String,
        /// "user" or "group".
        what: &'static str,
        /// The name.
        name: String,
    },
}

impl DeliverError {
    /// The disk (or quota) is full: the previous files are intact and the delivery is retried.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Self::Write { source, .. } => source.is_disk_full(),
            Self::Io { source, .. } => matches!(source.raw_os_error(), Some(28 | 122)),
            _ => false,
        }
    }
}

/// Who the delivered files belong to. `None` = whoever runs the agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ownership {
    /// uid to chown to.
    pub uid: Option<u32>,
    /// gid to chown to.
    pub gid: Option<u32>,
}

impl Ownership {
    /// Resolves `owner`/`group` names. Looked up at delivery time, so a service user created
    /// after the agent started is found.
    pub fn resolve(
        output: &str,
        owner: Option<&str>,
        group: Option<&str>,
    ) -> Result<Self, DeliverError> {
        let unknown = |what: &'static str, name: &str| DeliverError::UnknownOwner {
            output: output.to_owned(),
            what,
            name: name.to_owned(),
        };
        let uid = match owner {
            None => None,
            Some(n) => Some(
                nix::unistd::User::from_name(n)
                    .ok()
                    .flatten()
                    .ok_or_else(|| unknown("user", n))?
                    .uid
                    .as_raw(),
            ),
        };
        let gid = match group {
            None => None,
            Some(n) => Some(
                nix::unistd::Group::from_name(n)
                    .ok()
                    .flatten()
                    .ok_or_else(|| unknown("group", n))?
                    .gid
                    .as_raw(),
            ),
        };
        Ok(Self { uid, gid })
    }

    /// What `warden_files::Dir` writes take: `None` when nothing is to be changed.
    fn pair(self) -> Option<(Option<u32>, Option<u32>)> {
        (self.uid.is_some() || self.gid.is_some()).then_some((self.uid, self.gid))
    }

    /// Who may own the directories on the way to this output: root, the agent's user, and
    /// the configured owner and group (the delivered files are theirs anyway).
    fn trusted(self) -> Trusted {
        Trusted::process().with_owner(self.uid, self.gid)
    }
}

/// Delivers one file at `path` (a configured path; `root` is the identity directory): written
/// atomically unless the same bytes and mode are already there. Missing directories on the
/// way are created with the mode the file's readers need.
pub fn deliver_file(
    output: &str,
    root: &Path,
    path: &Path,
    file: &RenderedFile,
    owner: Ownership,
) -> Result<Outcome, DeliverError> {
    let write = |source| DeliverError::Write {
        output: output.to_owned(),
        source,
    };
    let (parent, name) =
        open_parent(root, path, owner, Some(dir_mode(file.mode))).map_err(write)?;
    // A copy of an earlier secret a killed agent left half-published must not outlive it.
    match parent.remove_stale_temps(&name) {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(output, path = %path.display(), removed = n, "removed temporary files an interrupted write left behind")
        }
        Err(e) => {
            tracing::warn!(output, error = %e, "could not look for temporary files an interrupted write left behind")
        }
    }
    if same_file(&parent, &name, &file.contents, file.mode, owner) {
        return Ok(Outcome::Unchanged);
    }
    // Handed to the owner before the rename, so the file is never published with the wrong
    // owner or mode.
    parent
        .write(
            &name,
            &file.contents,
            warden_files::Mode::Custom(file.mode),
            owner.pair(),
        )
        .map_err(write)?;
    Ok(Outcome::Changed)
}

/// The bytes of the single file at `path` as the agent would deliver it, or `None` when it
/// is missing or cannot be read the safe way: reached without following a symlink, through
/// directories the ownership rule accepts, and only if it is a regular file (opened
/// non-blocking). A symlink to `/dev/zero` or a FIFO planted at an output's name, by someone
/// who may own the output's directory, must not hang or exhaust the agent that looks at it.
pub fn read_file(root: &Path, path: &Path, owner: Ownership) -> Option<Zeroizing<Vec<u8>>> {
    let (parent, name) = open_parent(root, path, owner, None).ok()?;
    let file = read_bounded(&parent, &name, READ_LIMIT)
        .inspect_err(|e| tracing::warn!(path = %path.display(), error = %e, "not reading the delivered file"))
        .ok()??;
    Some(Zeroizing::new(file.bytes))
}

/// The digests of a rendered set, for state.
pub fn digests(rendered: &Rendered) -> BTreeMap<String, String> {
    rendered
        .files
        .iter()
        .map(|f| (f.name.clone(), sha256_hex(&f.contents)))
        .collect()
}

/// Where a configured path is reached from: the identity directory `root` when the path lies
/// inside it, `/` otherwise (an output may name `/etc/nginx/certs/...`). Returns the root to
/// open and the path relative to it; a `..` in it is refused by the walk.
fn place(root: &Path, path: &Path) -> (PathBuf, PathBuf) {
    if let Ok(rel) = path.strip_prefix(root) {
        return (root.to_path_buf(), rel.to_path_buf());
    }
    if path.is_absolute() {
        let rel: PathBuf = path
            .components()
            .filter(|c| !matches!(c, Component::RootDir))
            .collect();
        return (PathBuf::from("/"), rel);
    }
    (root.to_path_buf(), path.to_path_buf())
}

/// Opens (creating with `create` when given) the directory holding `path`, checked from its
/// root, and returns it with the file name.
fn open_parent(
    root: &Path,
    path: &Path,
    owner: Ownership,
    create: Option<u32>,
) -> Result<(Dir, String), warden_files::Error> {
    let (base, rel) = place(root, path);
    let name = rel
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| warden_files::Error::BadName {
            path: path.to_path_buf(),
            name: rel.display().to_string(),
        })?;
    let parent_rel = rel.parent().unwrap_or_else(|| Path::new(""));
    let base = Dir::open_root(&base, owner.trusted())?;
    let dir = match create {
        Some(mode) => base.create_dirs(parent_rel, mode)?,
        None => base.open(parent_rel)?,
    };
    Ok((dir, name))
}

/// The regular file `name` in `dir` (never through a symlink, never blocking on a FIFO), or an
/// error when it holds more than `limit` bytes, which are then never read ([`READ_LIMIT`]).
fn read_bounded(
    dir: &Dir,
    name: &str,
    limit: u64,
) -> Result<Option<warden_files::FileContents>, warden_files::Error> {
    Ok(dir.read_bounded(name, limit)?.map(|(file, _)| file))
}

/// Whether `name` in `dir` is a regular file with exactly these bytes and mode (one longer is
/// not, and is not read), owned as `owner` says (the agent's user when no owner is
/// configured): a file someone else owns is not the one delivered, whatever it holds, since
/// its owner can change it between two looks.
fn same_file(dir: &Dir, name: &str, contents: &[u8], mode: u32, owner: Ownership) -> bool {
    match dir.read_bounded(name, contents.len() as u64) {
        Ok(Some((f, meta))) => {
            let bytes = Zeroizing::new(f.bytes);
            let uid = owner.uid.unwrap_or_else(|| nix::unistd::geteuid().as_raw());
            f.mode == mode
                && meta.uid == uid
                && owner.gid.is_none_or(|g| g == meta.gid)
                && sha256_hex(&bytes) == sha256_hex(contents)
        }
        _ => false,
    }
}

/// Directory mode that lets exactly the readers of a file of `file_mode` through.
fn dir_mode(file_mode: u32) -> u32 {
    let mut m = 0o700;
    if file_mode & 0o040 != 0 {
        m |= 0o050;
    }
    if file_mode & 0o004 != 0 {
        m |= 0o005;
    }
    m
}

#[cfg(test)]
mod tests;
