//! Reading a file whose contents the agent acts on: `agent.toml` and template sources.
//!
//! Whoever can write `agent.toml` chooses the `reload` commands the agent runs (as root, on
//! many hosts) and where secrets are written; whoever can write a template chooses which
//! secrets land in its output, whatever that output's mode. So such a file must belong to
//! root or the agent's user and be writable by nobody else, the same ownership rule the agent
//! applies to the directories it writes into (`warden_files::Trusted`). The path to the file
//! is the operator's and may contain symlinks.
//!
//! The file is opened non-blocking and must be a regular file of bounded size, so a FIFO or a
//! device at the name cannot hang the agent and a huge file cannot exhaust its memory.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why a file the agent acts on was not read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UntrustedFile {
    /// Opening or reading it failed.
    #[error("could not read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It is not a regular file (a FIFO, a device, a directory).
    #[error("refusing {path}: it is not a regular file")]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// It is larger than anything the agent reads of this kind.
    #[error("refusing {path}: it is {size} bytes, more than the {limit} read at most")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Another user owns it, and could rewrite it.
    #[error(
        "refusing {path}: it is owned by uid {uid}, who could change what the agent does; only \
         root or the agent's user may own it (chown it)"
    )]
    Owner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        uid: u32,
    },
    /// Other users can write it through its permission bits.
    #[error(
        "refusing {path}: its mode {mode:04o} lets other users change what the agent does \
         (chmod go-w it)"
    )]
    Writable {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// Reads `path` as UTF-8 if it is a regular file of at most `limit` bytes that only root or
/// this process's user can write.
pub(crate) fn read_trusted(path: &Path, limit: u64) -> Result<String, UntrustedFile> {
    let io = |source| UntrustedFile::Io {
        path: path.to_path_buf(),
        source,
    };
    let (file, meta) = warden_files::open_nonblocking(path).map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(UntrustedFile::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let euid = nix::unistd::geteuid().as_raw();
    let egid = nix::unistd::getegid().as_raw();
    if meta.uid() != 0 && meta.uid() != euid {
        return Err(UntrustedFile::Owner {
            path: path.to_path_buf(),
            uid: meta.uid(),
        });
    }
    let mode = meta.mode() & 0o7777;
    let foreign_group = meta.gid() != 0 && meta.gid() != egid;
    if mode & 0o002 != 0 || (mode & 0o020 != 0 && foreign_group) {
        return Err(UntrustedFile::Writable {
            path: path.to_path_buf(),
            mode,
        });
    }
    if meta.len() > limit {
        return Err(UntrustedFile::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            limit,
        });
    }
    let mut bytes = Vec::new();
    // `take`: the file may grow after the size was looked at.
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(UntrustedFile::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            limit,
        });
    }
    String::from_utf8(bytes)
        .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn reads_an_owned_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        std::fs::write(&p, "version = 1\n").unwrap();
        chmod(&p, 0o644);
        assert_eq!(read_trusted(&p, 1024).unwrap(), "version = 1\n");
    }

    #[test]
    fn refuses_a_world_writable_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        std::fs::write(&p, "version = 1\n").unwrap();
        chmod(&p, 0o666);
        let e = read_trusted(&p, 1024).unwrap_err();
        assert!(
            matches!(e, UntrustedFile::Writable { mode: 0o666, .. }),
            "{e}"
        );
    }

    #[test]
    fn refuses_a_file_owned_by_another_user() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        std::fs::write(&p, "version = 1\n").unwrap();
        std::os::unix::fs::chown(&p, Some(65534), None).unwrap();
        let e = read_trusted(&p, 1024).unwrap_err();
        assert!(matches!(e, UntrustedFile::Owner { uid: 65534, .. }), "{e}");
    }

    #[test]
    fn a_fifo_does_not_block_and_a_huge_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = read_trusted(&fifo, 1024).unwrap_err();
        assert!(matches!(e, UntrustedFile::NotAFile { .. }), "{e}");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; 2048]).unwrap();
        let e = read_trusted(&big, 1024).unwrap_err();
        assert!(
            matches!(e, UntrustedFile::TooLarge { size: 2048, .. }),
            "{e}"
        );
    }
}
