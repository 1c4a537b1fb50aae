//! The one way Warden writes a file that matters.
//!
//! Key material, unseal shares, tokens, certificates and rendered outputs all go through
//! [`write_atomic`]. The rules it enforces are the ones a reader of the platform relies on:
//!
//! * **Atomic**: the bytes go to a temporary file in the *same directory*, which is fsynced and
//!   then renamed over the target, and the directory is fsynced after the rename. A crash or a
//!   `kill -9` at any point leaves either the old file or the new one, never a partial file.
//! * **Permissions before publication**: the mode is set on the temporary file before the rename,
//!   so there is no window in which a key is world-readable.
//! * **No symlinks**: a symlink at the target path is refused rather than replaced or followed; a
//!   symlink there means someone is trying to redirect a secret.
//! * **Loses nothing on failure**: if any step fails (a full disk, a read-only directory), the
//!   temporary file is removed and the previous file is left exactly as it was.
//!
//! Writing *below a root* goes further: [`Dir`] walks every component of a path from a root
//! directory without following symlinks and checks who owns each directory ([`Trusted`]), then
//! writes, swaps symlinks and removes entries relative to the open directory. The agent writes
//! everything it delivers that way; [`write_atomic`] is the same write, for a directory the
//! caller names itself.
//!
//! Start with [`write_atomic`] and [`Mode`], or [`Dir::open_root`] for a tree someone else may
//! share.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

mod dir;

pub use dir::{Dir, FileContents, Kind, Meta, Trusted};

/// File modes Warden writes. Keeping them named makes a review of "who can read this" a grep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `0600`: private keys, tokens, unseal shares, passphrases.
    OwnerOnly,
    /// `0644`: certificates, CA bundles, public configuration.
    Public,
    /// Any other mode the spec asks for (for example `0640` for a group-readable output).
    Custom(u32),
}

impl Mode {
    /// The numeric permission bits.
    pub fn bits(self) -> u32 {
        match self {
            Self::OwnerOnly => 0o600,
            Self::Public => 0o644,
            Self::Custom(bits) => bits & 0o7777,
        }
    }
}

/// Why a file could not be written. The target is always named, because "permission denied"
/// without a path is the error operators hate most.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The target path exists and is a symbolic link; Warden never writes through one.
    #[error("refusing to write {path}: it is a symbolic link")]
    Symlink {
        /// The target path.
        path: PathBuf,
    },
    /// The target path exists and is neither a regular file nor a symlink (a FIFO, a socket, a
    /// device such as `/dev/null`, a directory): renaming a file over it would replace a device
    /// node or a pipe someone reads from with a plain file.
    #[error(
        "refusing to write {path}: it is not a regular file (a FIFO, socket, device or directory); \
         name a new or regular file instead"
    )]
    NotARegularFile {
        /// The target path.
        path: PathBuf,
    },
    /// A directory on the way to `path` is a symbolic link. Warden never follows one below a
    /// root: it could send a secret, or a delete, anywhere.
    #[error(
        "refusing {path}: {component} is a symbolic link; Warden does not follow symlinks on the \
         way to what it writes (make it a real directory)"
    )]
    SymlinkComponent {
        /// The path being reached.
        path: PathBuf,
        /// The offending component (the path up to it).
        component: PathBuf,
    },
    /// A directory on the way to `path` belongs to a user who is neither root, the process's
    /// own user nor the output's configured owner: that user could swap its entries.
    #[error(
        "refusing {path}: {component} is owned by uid {uid}, who could redirect what is written \
         there; only root, the agent's user or the output's owner may own it (chown it)"
    )]
    UntrustedOwner {
        /// The path being reached.
        path: PathBuf,
        /// The offending component.
        component: PathBuf,
        /// Its owner.
        uid: u32,
    },
    /// A directory on the way to `path` is writable by others (world-writable without the
    /// sticky bit, or group-writable by a group that is not trusted).
    #[error(
        "refusing {path}: {component} (mode {mode:04o}) is writable by other users, who could \
         redirect what is written there (chmod go-w it)"
    )]
    WritableByOthers {
        /// The path being reached.
        path: PathBuf,
        /// The offending component.
        component: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A component on the way to `path` exists and is not a directory.
    #[error("refusing {path}: {component} is not a directory")]
    NotADirectory {
        /// The path being reached.
        path: PathBuf,
        /// The offending component.
        component: PathBuf,
    },
    /// A name that is not one plain component (`..`, an absolute path, a `/` inside a file
    /// name): the walk never leaves its root.
    #[error("refusing {path}: `{name}` is not a plain name below the root")]
    BadName {
        /// The path being reached.
        path: PathBuf,
        /// The offending name.
        name: String,
    },
    /// The target has no parent directory to hold the temporary file.
    #[error("refusing to write {path}: it has no parent directory")]
    NoParent {
        /// The target path.
        path: PathBuf,
    },
    /// An I/O step failed; `step` says which one.
    #[error("could not write {path} ({step}): {source}")]
    Io {
        /// The target path.
        path: PathBuf,
        /// What was being done: "create temporary file", "write", "fsync", "rename", ...
        step: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// True when the failure was the disk being full (`ENOSPC`) or over quota (`EDQUOT`).
    pub fn is_disk_full(&self) -> bool {
        match self {
            Self::Io { source, .. } => matches!(source.raw_os_error(), Some(28 | 122)),
            _ => false,
        }
    }

    /// True when the path was refused (a symlink, an untrusted or writable directory, a bad
    /// name) rather than failing to be written: retrying will not help until someone fixes it.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, Self::Io { .. })
    }
}

/// Atomically replaces `path` with `contents` and permission `mode`.
///
/// See the crate documentation for the guarantees. The parent directory must exist; use
/// [`ensure_private_dir`] first where the directory itself should be owner-only.
pub fn write_atomic(path: &Path, contents: &[u8], mode: Mode) -> Result<(), Error> {
    let (dir, name) = split_target(path)?;
    let dir = Dir::open_unchecked(dir)?;
    // A path the operator named: `--out /dev/null` run as root must not replace the device
    // node, nor a FIFO someone reads from be swapped for a file nobody reads.
    dir.check_write_target(name)?;
    dir.write(name, contents, mode, None)
}

/// Checks, without writing anything, that [`write_atomic`] could put a file at `path`: its
/// directory exists, and `path` is absent or a regular file (not a symlink, FIFO, socket,
/// device or directory). Commands that do something irreversible before they write (sign and
/// record in a ledger, generate a key) call it first, so a bad output path refuses the whole
/// step instead of losing what it made.
pub fn check_write_target(path: &Path) -> Result<(), Error> {
    let (dir, name) = split_target(path)?;
    Dir::open_unchecked(dir)?.check_write_target(name)
}

/// The directory holding `path` and its file name.
fn split_target(path: &Path) -> Result<(&Path, &str), Error> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        Some(_) => Path::new("."),
        None => {
            return Err(Error::NoParent {
                path: path.to_path_buf(),
            });
        }
    };
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Err(Error::NoParent {
            path: path.to_path_buf(),
        });
    };
    Ok((dir, name))
}

/// Creates `dir` (and its parents) if needed and makes it `0700`.
pub fn ensure_private_dir(dir: &Path) -> Result<(), Error> {
    ensure_dir(dir, 0o700)
}

/// Creates `dir` (and its parents) if needed and sets its mode to `mode`.
pub fn ensure_dir(dir: &Path, mode: u32) -> Result<(), Error> {
    let io_err = |step: &'static str| {
        let path = dir.to_path_buf();
        move |source| Error::Io { path, step, source }
    };
    if fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(Error::Symlink {
            path: dir.to_path_buf(),
        });
    }
    fs::create_dir_all(dir).map_err(io_err("create directory"))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(io_err("set permissions"))
}

/// Appends one line to an append-only log (for example the CA ledger), creating it `0644` if
/// needed, and fsyncs it. A line is written with a single `write` call so readers never see half
/// of it.
pub fn append_line(path: &Path, line: &str) -> Result<(), Error> {
    let io_err = |step: &'static str| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, step, source }
    };
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(Error::Symlink {
            path: path.to_path_buf(),
        });
    }
    let flags = rustix::fs::OFlags::WRONLY
        | rustix::fs::OFlags::APPEND
        | rustix::fs::OFlags::CREATE
        | rustix::fs::OFlags::NOFOLLOW
        | rustix::fs::OFlags::CLOEXEC;
    let mut file = rustix::fs::open(path, flags, rustix::fs::Mode::from_raw_mode(0o644))
        .map(fs::File::from)
        .map_err(|e| io_err("open for append")(io::Error::from(e)))?;
    let mut buf = line.trim_end_matches('\n').to_owned();
    buf.push('\n');
    file.write_all(buf.as_bytes()).map_err(io_err("append"))?;
    file.sync_all().map_err(io_err("fsync"))
}

/// Opens `path` for reading with `O_NONBLOCK` (opening a FIFO returns at once) and returns its
/// metadata, whatever kind of file it is: for callers that judge the kind themselves.
pub fn open_nonblocking(path: &Path) -> io::Result<(fs::File, fs::Metadata)> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let flags = i32::try_from(rustix::fs::OFlags::NONBLOCK.bits()).unwrap_or(0);
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)?;
    let meta = file.metadata()?;
    Ok((file, meta))
}

/// Opens `path` for reading without ever blocking: `O_NONBLOCK`, so a FIFO planted at the name
/// returns at once instead of hanging the caller (an agent's runtime worker, a status probe),
/// and refuses anything but a regular file of at most `limit` bytes. Symlinks at the name are
/// followed (a projected service-account token is a chain of them); callers that must not
/// follow them walk a [`Dir`] instead. Returns the open file and its metadata, for callers that
/// check the owner or size the buffer up front.
pub fn open_regular(path: &Path, limit: u64) -> io::Result<(fs::File, fs::Metadata)> {
    let (file, meta) = open_nonblocking(path)?;
    if !meta.file_type().is_file() || meta.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file of at most {limit} bytes"),
        ));
    }
    Ok((file, meta))
}

/// Reads all of `path` when it is a regular file of at most `limit` bytes ([`open_regular`]:
/// a FIFO, a device such as `/dev/zero` or a directory planted at the name is refused at
/// once instead of hanging the caller or filling its memory). The read itself stops at
/// `limit + 1` bytes, so a file that grows after the check is refused too. The buffer is
/// zeroized on drop: callers read tokens and keys with it.
pub fn read_regular(path: &Path, limit: u64) -> io::Result<zeroize::Zeroizing<Vec<u8>>> {
    use std::io::Read as _;
    let (file, meta) = open_regular(path, limit)?;
    let mut buf =
        zeroize::Zeroizing::new(Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0)));
    file.take(limit.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file of at most {limit} bytes"),
        ));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_regular_refuses_a_fifo_without_blocking_and_a_file_over_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let err = open_regular(&fifo, 1024).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        let big = dir.path().join("big");
        fs::write(&big, vec![b'x'; 2048]).unwrap();
        assert!(open_regular(&big, 1024).is_err());
        let (_, meta) = open_regular(&big, 4096).unwrap();
        assert_eq!(meta.len(), 2048);
    }

    #[test]
    fn read_regular_refuses_a_fifo_and_dev_zero_and_reads_a_small_file() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        assert!(read_regular(&fifo, 1024).is_err());
        assert!(read_regular(Path::new("/dev/zero"), 1024).is_err());
        let small = dir.path().join("token");
        fs::write(&small, b"s.abc\n").unwrap();
        assert_eq!(&read_regular(&small, 1024).unwrap()[..], b"s.abc\n");
    }
    use std::os::unix::fs::symlink;

    #[test]
    fn writes_with_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key.pem");
        write_atomic(&p, b"one", Mode::OwnerOnly).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        write_atomic(&p, b"two", Mode::Public).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn refuses_symlink_target_and_leaves_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::write(&real, b"keep").unwrap();
        let link = dir.path().join("link");
        symlink(&real, &link).unwrap();
        let err = write_atomic(&link, b"evil", Mode::OwnerOnly).unwrap_err();
        assert!(matches!(err, Error::Symlink { .. }), "{err}");
        assert_eq!(fs::read(&real).unwrap(), b"keep");
    }

    #[test]
    fn failed_rename_cleans_up_and_keeps_target() {
        // A directory at the target makes the final rename fail even for root; the temporary
        // file must not be left behind and the directory must be untouched.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out");
        fs::create_dir(&p).unwrap();
        fs::write(p.join("inner"), b"keep").unwrap();
        // (`write_atomic` refuses a directory up front; the delivery path reaches the rename.)
        assert!(matches!(
            write_atomic(&p, b"new", Mode::Public).unwrap_err(),
            Error::NotARegularFile { .. }
        ));
        let err = Dir::open_unchecked(dir.path())
            .unwrap()
            .write("out", b"new", Mode::Public, None)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Io {
                    step: "rename into place",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(fs::read(p.join("inner")).unwrap(), b"keep");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temporary file left behind"
        );
    }

    #[test]
    fn append_line_appends() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ledger.jsonl");
        append_line(&p, "{\"a\":1}").unwrap();
        append_line(&p, "{\"a\":2}\n").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "{\"a\":1}\n{\"a\":2}\n");
    }

    #[test]
    fn private_dir_is_0700() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("a/b");
        ensure_private_dir(&d).unwrap();
        assert_eq!(
            fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
}
