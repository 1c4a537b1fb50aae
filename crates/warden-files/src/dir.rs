//! A directory handle that never follows a symlink below its root.
//!
//! A path such as `out/secrets/stripe.json` is only as safe as every directory on the way to
//! it: if any of them is a symlink, or belongs to someone who can swap it for one, a write
//! meant for the identity's directory lands wherever that person chose, and a delete removes
//! what they chose. So Warden never hands such a path to the kernel in one piece. A [`Dir`] is
//! an open directory file descriptor; [`Dir::open`] and [`Dir::create_dirs`] walk a relative
//! path one component at a time with `openat(O_NOFOLLOW | O_DIRECTORY)`, and every later
//! operation (write, rename, symlink swap, unlink) is relative to the descriptor. Whatever
//! happens to the names afterwards, the descriptor keeps pointing at the directory that was
//! checked.
//!
//! # Who may own a directory
//!
//! Each directory the walk passes through (the root included) must satisfy [`Trusted`]:
//!
//! * it is a real directory, not a symlink (refused as [`Error::SymlinkComponent`]);
//! * its owner is root, the process's effective uid, or a uid added with
//!   [`Trusted::with_owner`] (the output's configured `owner`) — anyone else could rename or
//!   replace its entries ([`Error::UntrustedOwner`]);
//! * nobody else can write to it: not world-writable unless the sticky bit is set (as on
//!   `/tmp`, where others cannot rename or delete entries they do not own), and not
//!   group-writable unless the group is root's, the process's effective gid or a trusted
//!   group ([`Error::WritableByOthers`]).
//!
//! The path *up to* the root is the operator's choice and may contain symlinks (`/srv` may be a
//! link to a data disk); the root directory itself is checked once opened.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, FileType, Mode as RawMode, OFlags};

use super::{Error, Mode};

/// `S_ISVTX`: in a sticky directory only an entry's owner may rename or delete it.
const STICKY: u32 = 0o1000;

/// Who may own (and write to) a directory on the way to a file Warden writes. See the module
/// documentation for the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trusted {
    uids: Vec<u32>,
    gids: Vec<u32>,
}

impl Trusted {
    /// Root and this process's effective uid and gid.
    pub fn process() -> Self {
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        let mut t = Self {
            uids: vec![0],
            gids: vec![0],
        };
        t.add(Some(uid), Some(gid));
        t
    }

    /// Also trusts `uid` and `gid` (an output's configured `owner` and `group`, which the
    /// delivered files are handed to anyway).
    #[must_use]
    pub fn with_owner(mut self, uid: Option<u32>, gid: Option<u32>) -> Self {
        self.add(uid, gid);
        self
    }

    fn add(&mut self, uid: Option<u32>, gid: Option<u32>) {
        if let Some(u) = uid.filter(|u| !self.uids.contains(u)) {
            self.uids.push(u);
        }
        if let Some(g) = gid.filter(|g| !self.gids.contains(g)) {
            self.gids.push(g);
        }
    }

    /// Checks one opened directory; `path` and `component` name it in the error.
    fn check(&self, fd: &OwnedFd, path: &Path, component: &Path) -> Result<(), Error> {
        let st = rustix::fs::fstat(fd).map_err(|e| io_error(path, "inspect directory", e))?;
        let mode = RawMode::from_raw_mode(st.st_mode).bits();
        if !self.uids.contains(&st.st_uid) {
            return Err(Error::UntrustedOwner {
                path: path.to_path_buf(),
                component: component.to_path_buf(),
                uid: st.st_uid,
            });
        }
        let sticky = mode & STICKY != 0;
        let world_writable = mode & 0o002 != 0;
        let foreign_group_writable = mode & 0o020 != 0 && !self.gids.contains(&st.st_gid);
        if !sticky && (world_writable || foreign_group_writable) {
            return Err(Error::WritableByOthers {
                path: path.to_path_buf(),
                component: component.to_path_buf(),
                mode: mode & 0o7777,
            });
        }
        Ok(())
    }
}

/// What a directory entry is, looked at without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// Anything else (socket, FIFO, device).
    Other,
}

impl Kind {
    fn of(file_type: FileType) -> Self {
        match file_type {
            FileType::RegularFile => Self::File,
            FileType::Directory => Self::Dir,
            FileType::Symlink => Self::Symlink,
            _ => Self::Other,
        }
    }
}

/// An entry's metadata, read without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// What it is.
    pub kind: Kind,
    /// Its owner.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
    /// Its permission bits (`0o7777`).
    pub mode: u32,
}

/// The contents and permission bits of a regular file read through a [`Dir`].
#[derive(Clone, PartialEq, Eq)]
pub struct FileContents {
    /// The bytes. The caller wraps them in `Zeroizing` when they may be secret.
    pub bytes: Vec<u8>,
    /// Permission bits (`0o7777`).
    pub mode: u32,
}

impl std::fmt::Debug for FileContents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileContents")
            .field("len", &self.bytes.len())
            .field("mode", &format_args!("{:o}", self.mode))
            .finish()
    }
}

/// An open directory reached without following any symlink below its root. See the module
/// documentation.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
    trusted: Trusted,
}

impl Dir {
    /// Opens `root` (following the path up to it, the operator's choice) and checks that the
    /// directory it names satisfies `trusted`.
    pub fn open_root(root: &Path, trusted: Trusted) -> Result<Self, Error> {
        let fd = rustix::fs::open(root, dir_flags() & !OFlags::NOFOLLOW, RawMode::empty())
            .map_err(|e| io_error(root, "open directory", e))?;
        trusted.check(&fd, root, root)?;
        Ok(Self {
            fd,
            path: root.to_path_buf(),
            trusted,
        })
    }

    /// Opens `dir` as given (the path up to it followed, the operator's choice), with no
    /// ownership rule, for callers that name a directory they chose themselves: every later
    /// read and write is relative to the descriptor, so the directory read is the one written
    /// even if a name on the way is swapped meanwhile, and a symlink at an entry's name is
    /// never followed.
    pub fn open_unchecked(dir: &Path) -> Result<Self, Error> {
        let fd = rustix::fs::open(dir, dir_flags() & !OFlags::NOFOLLOW, RawMode::empty())
            .map_err(|e| io_error(dir, "open directory", e))?;
        Ok(Self {
            fd,
            path: dir.to_path_buf(),
            trusted: Trusted {
                uids: Vec::new(),
                gids: Vec::new(),
            },
        })
    }

    /// The path this handle was reached by (for messages; never used to reach it again).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `self.path()/name`, for messages.
    pub fn entry_path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Walks `rel` (relative, no `..`) one component at a time without following symlinks and
    /// checks every directory; fails with `NotFound` I/O if one is missing.
    pub fn open(&self, rel: &Path) -> Result<Self, Error> {
        self.walk(rel, None)
    }

    /// Like [`Dir::open`], but `Ok(None)` when a component does not exist.
    pub fn try_open(&self, rel: &Path) -> Result<Option<Self>, Error> {
        match self.walk(rel, None) {
            Ok(d) => Ok(Some(d)),
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Like [`Dir::open`], creating missing directories with `mode` (exactly, whatever the
    /// umask). Existing directories keep their mode: it is the operator's choice.
    pub fn create_dirs(&self, rel: &Path, mode: u32) -> Result<Self, Error> {
        self.walk(rel, Some(mode))
    }

    fn walk(&self, rel: &Path, create: Option<u32>) -> Result<Self, Error> {
        let full = self.path.join(rel);
        let mut fd = self.dup(&full)?;
        let mut at = self.path.clone();
        for c in rel.components() {
            let name = match c {
                Component::Normal(n) => n,
                Component::CurDir => continue,
                _ => {
                    return Err(Error::BadName {
                        path: full,
                        name: c.as_os_str().to_string_lossy().into_owned(),
                    });
                }
            };
            at.push(name);
            fd = self.step(&fd, name, &full, &at, create)?;
        }
        Ok(Self {
            fd,
            path: full,
            trusted: self.trusted.clone(),
        })
    }

    /// Opens one component below `parent`, creating it when asked, and checks it.
    fn step(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        full: &Path,
        at: &Path,
        create: Option<u32>,
    ) -> Result<OwnedFd, Error> {
        let mut created = false;
        if let Some(mode) = create {
            match rustix::fs::mkdirat(parent, name, RawMode::from_raw_mode(0o700)) {
                Ok(()) => created = true,
                Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(io_error(at, "create directory", e)),
            }
            let fd = self.open_component(parent, name, full, at)?;
            if created {
                // The directory was made 0700 and is only now widened, so it is never briefly
                // more open than asked, whatever the umask.
                rustix::fs::fchmod(&fd, RawMode::from_raw_mode(mode & 0o7777))
                    .map_err(|e| io_error(at, "set permissions", e))?;
            }
            self.trusted.check(&fd, full, at)?;
            return Ok(fd);
        }
        let fd = self.open_component(parent, name, full, at)?;
        self.trusted.check(&fd, full, at)?;
        Ok(fd)
    }

    fn open_component(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        full: &Path,
        at: &Path,
    ) -> Result<OwnedFd, Error> {
        match rustix::fs::openat(parent, name, dir_flags(), RawMode::empty()) {
            Ok(fd) => Ok(fd),
            Err(e @ (rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR)) => {
                // Which one it is decides the message: a symlink is an attack or a mistake to
                // undo, a file is a mistake.
                let kind = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map(|st| Kind::of(FileType::from_raw_mode(st.st_mode)));
                match kind {
                    Ok(Kind::Symlink) => Err(Error::SymlinkComponent {
                        path: full.to_path_buf(),
                        component: at.to_path_buf(),
                    }),
                    Ok(_) => Err(Error::NotADirectory {
                        path: full.to_path_buf(),
                        component: at.to_path_buf(),
                    }),
                    Err(_) => Err(io_error(at, "open directory", e)),
                }
            }
            Err(e) => Err(io_error(at, "open directory", e)),
        }
    }

    fn dup(&self, full: &Path) -> Result<OwnedFd, Error> {
        self.fd.try_clone().map_err(|e| Error::Io {
            path: full.to_path_buf(),
            step: "duplicate directory handle",
            source: e,
        })
    }

    /// What `name` is, without following it; `None` when it does not exist.
    pub fn meta(&self, name: &str) -> Result<Option<Meta>, Error> {
        let name = self.name(name)?;
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(Meta {
                kind: Kind::of(FileType::from_raw_mode(st.st_mode)),
                uid: st.st_uid,
                gid: st.st_gid,
                mode: RawMode::from_raw_mode(st.st_mode).bits() & 0o7777,
            })),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(io_error(&self.entry_path(name), "inspect", e)),
        }
    }

    /// Opens the regular file `name` for reading, never through a symlink and never blocking
    /// on a FIFO planted at the name; `None` when it does not exist.
    fn open_regular(
        &self,
        name: &str,
    ) -> Result<Option<(OwnedFd, rustix::fs::Stat, PathBuf)>, Error> {
        let name = self.name(name)?;
        let path = self.entry_path(name);
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let fd = match rustix::fs::openat(&self.fd, name, flags, RawMode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(rustix::io::Errno::LOOP) => return Err(Error::Symlink { path }),
            Err(e) => return Err(io_error(&path, "open", e)),
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| io_error(&path, "inspect", e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(io_error(&path, "open", rustix::io::Errno::INVAL));
        }
        Ok(Some((fd, st, path)))
    }

    /// Reads the regular file `name`; `None` when it does not exist. A symlink is refused
    /// ([`Error::Symlink`]), and so is anything that is not a regular file, so a FIFO planted
    /// at the name cannot block the reader.
    pub fn read(&self, name: &str) -> Result<Option<FileContents>, Error> {
        let Some((fd, st, path)) = self.open_regular(name)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        File::from(fd)
            .read_to_end(&mut bytes)
            .map_err(|source| Error::Io {
                path,
                step: "read",
                source,
            })?;
        Ok(Some(FileContents {
            bytes,
            mode: RawMode::from_raw_mode(st.st_mode).bits() & 0o7777,
        }))
    }

    /// Like [`Dir::read`], but refuses a file larger than `limit` bytes (checked on the open
    /// file, and the read stops at `limit + 1` bytes, so a file that grows meanwhile is
    /// refused too) and also returns its owner and group, for callers that judge who wrote a
    /// file they act on (an agent's trust file).
    pub fn read_bounded(
        &self,
        name: &str,
        limit: u64,
    ) -> Result<Option<(FileContents, Meta)>, Error> {
        let Some((fd, st, path)) = self.open_regular(name)? else {
            return Ok(None);
        };
        let too_big = || Error::Io {
            path: path.clone(),
            step: "read",
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("larger than the {limit} bytes read at most"),
            ),
        };
        if u64::try_from(st.st_size).unwrap_or(u64::MAX) > limit {
            return Err(too_big());
        }
        let mut bytes = Vec::new();
        File::from(fd)
            .take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|source| Error::Io {
                path: path.clone(),
                step: "read",
                source,
            })?;
        if bytes.len() as u64 > limit {
            return Err(too_big());
        }
        let mode = RawMode::from_raw_mode(st.st_mode).bits() & 0o7777;
        Ok(Some((
            FileContents { bytes, mode },
            Meta {
                kind: Kind::File,
                uid: st.st_uid,
                gid: st.st_gid,
                mode,
            },
        )))
    }

    /// Atomically replaces `name` with `contents`: a temporary file in this directory
    /// (created `0600`, exclusive, never through a symlink), written, handed to `owner` and set
    /// to `mode`, fsynced, renamed over `name`, then the directory fsynced. A symlink at `name`
    /// is refused and left alone; a FIFO or socket is replaced (in a directory Warden delivers
    /// to, one planted at an output's name would otherwise block its readers: the agent puts the
    /// file there). On any failure the temporary file is removed and the previous file stays as
    /// it was. Paths an operator names go through [`crate::write_atomic`], which refuses
    /// anything but a regular file first.
    pub fn write(
        &self,
        name: &str,
        contents: &[u8],
        mode: Mode,
        owner: Option<(Option<u32>, Option<u32>)>,
    ) -> Result<(), Error> {
        let name = self.name(name)?;
        let path = self.entry_path(name);
        if self.meta(name)?.is_some_and(|m| m.kind == Kind::Symlink) {
            return Err(Error::Symlink { path });
        }
        let (tmp, fd) = self.create_temp(name)?;
        let written = (|| {
            let mut file = File::from(fd);
            file.write_all(contents)
                .map_err(|source| io_err(&path, "write", source))?;
            if let Some((uid, gid)) = owner.filter(|(u, g)| u.is_some() || g.is_some()) {
                rustix::fs::fchown(
                    &file,
                    uid.map(rustix::fs::Uid::from_raw),
                    gid.map(rustix::fs::Gid::from_raw),
                )
                .map_err(|e| io_error(&path, "chown", e))?;
            }
            // After the chown, which clears set-id bits.
            rustix::fs::fchmod(&file, RawMode::from_raw_mode(mode.bits()))
                .map_err(|e| io_error(&path, "set permissions", e))?;
            file.sync_all()
                .map_err(|source| io_err(&path, "fsync", source))?;
            rustix::fs::renameat(&self.fd, tmp.as_str(), &self.fd, name)
                .map_err(|e| io_error(&path, "rename into place", e))
        })();
        if let Err(e) = written {
            let _ = rustix::fs::unlinkat(&self.fd, tmp.as_str(), AtFlags::empty());
            return Err(e);
        }
        self.sync()
            .map_err(|e| rename_step(e, &path, "fsync directory"))
    }

    /// Whether [`Dir::write`] could put a file at `name`, checked before anything is written:
    /// `name` is absent or a regular file. A symlink is [`Error::Symlink`]; a FIFO, socket,
    /// device or directory is [`Error::NotARegularFile`].
    pub fn check_write_target(&self, name: &str) -> Result<(), Error> {
        let name = self.name(name)?;
        let path = || self.entry_path(name);
        match self.meta(name)?.map(|m| m.kind) {
            None | Some(Kind::File) => Ok(()),
            Some(Kind::Symlink) => Err(Error::Symlink { path: path() }),
            Some(Kind::Dir | Kind::Other) => Err(Error::NotARegularFile { path: path() }),
        }
    }

    /// Removes the temporary files [`Dir::write`] of `name` left behind by a process that
    /// was killed between creating and renaming one (`.<name>.<pid>-<n>-<nanos>.tmp` of another
    /// pid): each holds a full copy of what was being written, a secret that would otherwise
    /// outlive every later rotation. Only regular files with exactly that name shape are
    /// removed (the name only, never followed); this process's own are left to it. Returns how
    /// many were removed.
    pub fn remove_stale_temps(&self, name: &str) -> Result<usize, Error> {
        let name = self.name(name)?;
        let prefix = format!(".{name}.");
        let own = std::process::id();
        let mut removed = 0;
        for (entry, kind) in self.entries()? {
            let Some(rest) = entry
                .strip_prefix(&prefix)
                .and_then(|r| r.strip_suffix(".tmp"))
            else {
                continue;
            };
            let parts: Vec<&str> = rest.split('-').collect();
            let shaped = parts.len() == 3
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            if kind != Kind::File || !shaped || parts[0].parse::<u32>().ok() == Some(own) {
                continue;
            }
            if self.remove_file(&entry)? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// A new, empty, exclusive `0600` file under a hidden temporary name.
    fn create_temp(&self, name: &str) -> Result<(String, OwnedFd), Error> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut last = rustix::io::Errno::EXIST;
        for _ in 0..16 {
            let tmp = temp_name(name, COUNTER.fetch_add(1, Ordering::Relaxed));
            match rustix::fs::openat(&self.fd, tmp.as_str(), flags, RawMode::from_raw_mode(0o600)) {
                Ok(fd) => return Ok((tmp, fd)),
                // Someone else's file under the name we picked: pick another, never reuse it.
                Err(e @ rustix::io::Errno::EXIST) => last = e,
                Err(e) => return Err(io_error(&self.entry_path(name), "create temporary file", e)),
            }
        }
        Err(io_error(
            &self.entry_path(name),
            "create temporary file",
            last,
        ))
    }

    /// Creates the directory `name` (it must not exist) with exactly `mode` and opens it.
    pub fn create_dir(&self, name: &str, mode: u32) -> Result<Self, Error> {
        let name = self.name(name)?;
        let path = self.entry_path(name);
        rustix::fs::mkdirat(&self.fd, name, RawMode::from_raw_mode(0o700))
            .map_err(|e| io_error(&path, "create directory", e))?;
        let dir = self.open(Path::new(name))?;
        dir.set_mode(mode)?;
        Ok(dir)
    }

    /// The target of the symlink `name`; `None` when `name` does not exist. Anything but a
    /// symlink there is `Ok(Some(Err(kind)))`, so the caller decides what a real file means.
    pub fn read_link(&self, name: &str) -> Result<Option<Result<PathBuf, Kind>>, Error> {
        let name = self.name(name)?;
        match self.meta(name)? {
            None => Ok(None),
            Some(m) if m.kind != Kind::Symlink => Ok(Some(Err(m.kind))),
            Some(_) => {
                let target = rustix::fs::readlinkat(&self.fd, name, Vec::new())
                    .map_err(|e| io_error(&self.entry_path(name), "read symlink", e))?;
                Ok(Some(Ok(PathBuf::from(OsStr::from_bytes(
                    target.as_bytes(),
                )))))
            }
        }
    }

    /// Points the symlink `name` at `target` atomically (a symlink under a temporary name,
    /// handed to `owner`, renamed over `name`; the directory fsynced). Replaces a symlink or
    /// creates one; whatever else is at `name` makes the rename fail.
    pub fn replace_symlink(
        &self,
        name: &str,
        target: &Path,
        owner: Option<(Option<u32>, Option<u32>)>,
    ) -> Result<(), Error> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = self.name(name)?;
        let path = self.entry_path(name);
        let tmp = temp_name(name, COUNTER.fetch_add(1, Ordering::Relaxed));
        rustix::fs::symlinkat(target, &self.fd, tmp.as_str())
            .map_err(|e| io_error(&path, "create symlink", e))?;
        let swapped = (|| {
            if let Some((uid, gid)) = owner.filter(|(u, g)| u.is_some() || g.is_some()) {
                rustix::fs::chownat(
                    &self.fd,
                    tmp.as_str(),
                    uid.map(rustix::fs::Uid::from_raw),
                    gid.map(rustix::fs::Gid::from_raw),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| io_error(&path, "chown", e))?;
            }
            rustix::fs::renameat(&self.fd, tmp.as_str(), &self.fd, name)
                .map_err(|e| io_error(&path, "swap the symlink", e))
        })();
        if let Err(e) = swapped {
            let _ = rustix::fs::unlinkat(&self.fd, tmp.as_str(), AtFlags::empty());
            return Err(e);
        }
        self.sync()
    }

    /// Renames `from` to `to`, both in this directory (replacing `to` if the kernel allows).
    pub fn rename(&self, from: &str, to: &str) -> Result<(), Error> {
        let (from, to) = (self.name(from)?, self.name(to)?);
        rustix::fs::renameat(&self.fd, from, &self.fd, to)
            .map_err(|e| io_error(&self.entry_path(to), "rename into place", e))
    }

    /// Removes the file or symlink `name` (never what a symlink points at). `Ok(false)` when
    /// it was not there.
    pub fn remove_file(&self, name: &str) -> Result<bool, Error> {
        let name = self.name(name)?;
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(e) => Err(io_error(&self.entry_path(name), "remove", e)),
        }
    }

    /// Removes the *empty* directory `name`. `Ok(false)` when it was not there; a directory
    /// that is not empty is an error and stays.
    pub fn remove_empty_dir(&self, name: &str) -> Result<bool, Error> {
        let name = self.name(name)?;
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(e) => Err(io_error(&self.entry_path(name), "remove directory", e)),
        }
    }

    /// The entries of this directory (not `.` and `..`), with what each is, unsorted. Names
    /// that are not UTF-8 are skipped: Warden never creates one.
    pub fn entries(&self) -> Result<Vec<(String, Kind)>, Error> {
        let err = |e| io_error(&self.path, "list directory", e);
        let mut out = Vec::new();
        for entry in rustix::fs::Dir::read_from(&self.fd).map_err(err)? {
            let entry = entry.map_err(err)?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." {
                continue;
            }
            out.push((name.to_owned(), Kind::of(entry.file_type())));
        }
        Ok(out)
    }

    /// Sets this directory's permission bits.
    pub fn set_mode(&self, mode: u32) -> Result<(), Error> {
        rustix::fs::fchmod(&self.fd, RawMode::from_raw_mode(mode & 0o7777))
            .map_err(|e| io_error(&self.path, "set permissions", e))
    }

    /// Hands this directory to `uid`/`gid` (`None` keeps the current one).
    pub fn chown(&self, uid: Option<u32>, gid: Option<u32>) -> Result<(), Error> {
        if uid.is_none() && gid.is_none() {
            return Ok(());
        }
        rustix::fs::fchown(
            &self.fd,
            uid.map(rustix::fs::Uid::from_raw),
            gid.map(rustix::fs::Gid::from_raw),
        )
        .map_err(|e| io_error(&self.path, "chown", e))
    }

    /// fsyncs this directory, so renames and removals in it survive a crash.
    pub fn sync(&self) -> Result<(), Error> {
        rustix::fs::fsync(self.fd.as_fd()).map_err(|e| io_error(&self.path, "fsync directory", e))
    }

    /// Checks that `name` is one plain component: no `/`, not `.` or `..`, not empty.
    fn name<'n>(&self, name: &'n str) -> Result<&'n str, Error> {
        let plain = !name.is_empty()
            && name != "."
            && name != ".."
            && !name.contains('/')
            && !name.contains('\0');
        if plain {
            Ok(name)
        } else {
            Err(Error::BadName {
                path: self.path.join(name),
                name: name.to_owned(),
            })
        }
    }
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// `.<name>.<pid>-<n>-<nanos>.tmp`: hidden, recognisably Warden's, and unlikely to collide;
/// collisions are handled anyway (`O_EXCL`).
fn temp_name(name: &str, n: u64) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(".{name}.{}-{n}-{nanos}.tmp", std::process::id())
}

fn io_error(path: &Path, step: &'static str, e: rustix::io::Errno) -> Error {
    io_err(path, step, io::Error::from(e))
}

fn io_err(path: &Path, step: &'static str, source: io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        step,
        source,
    }
}

/// Re-labels an I/O error's step (the directory fsync after a file write is reported against
/// the file written).
fn rename_step(e: Error, path: &Path, step: &'static str) -> Error {
    match e {
        Error::Io { source, .. } => Error::Io {
            path: path.to_path_buf(),
            step,
            source,
        },
        other => other,
    }
}

#[cfg(test)]
#[path = "dir_tests.rs"]
mod tests;
