//! File checks and fixtures: permission bits as a test asserts them, private files as an
//! operator or a CI system writes them.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// The permission bits of `path` (`0o7777`: setuid/setgid/sticky included, so a stray bit
/// fails an `assert_eq!(mode(p), 0o600)`). Panics naming the path if it cannot be read.
#[track_caller]
pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Writes `contents` to `path`, created with mode 0600 (as a CI system writes its token file).
#[track_caller]
pub fn write_private(path: &Path, contents: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(contents)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// How many lines `path` holds; 0 when it does not exist (yet). A reload command that appends
/// one line per run is how tests count reloads.
pub fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}
