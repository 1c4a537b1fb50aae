//! A lab made through the CLI (`warden lab up`), for tests of the lab commands themselves.
//! [`LabEnv`](crate::LabEnv) builds a lab in-process instead and is what other tests want.

use std::path::{Path, PathBuf};

use crate::cli::Cli;

/// A temporary directory for a lab the test creates with `warden lab up --dir`; when dropped,
/// however the test ends, `warden lab down --purge` stops its agents and servers, then the
/// directory is deleted.
#[derive(Debug)]
pub struct LabGuard {
    cli: Cli,
    tmp: tempfile::TempDir,
}

impl LabGuard {
    /// A fresh directory; `cli` is the `warden` binary that takes the lab down.
    pub fn new(cli: Cli) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("warden-cli-lab-")
            .tempdir()
            .expect("create a temporary directory");
        // Searchable, not listable: when the tests run as root, the lab's PostgreSQL runs as
        // `nobody` and must traverse it to reach `<lab>/postgres/server`.
        std::fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o711),
        )
        .expect("chmod the temporary directory");
        Self { cli, tmp }
    }

    /// The lab directory (`<temp>/lab`, not created yet: `lab up` creates it).
    pub fn dir(&self) -> PathBuf {
        self.tmp.path().join("lab")
    }

    /// The temporary directory that holds the lab (and is deleted after it).
    pub fn temp_dir(&self) -> &Path {
        self.tmp.path()
    }

    /// [`dir`](Self::dir) as a string, for argv.
    pub fn dir_str(&self) -> String {
        self.dir().display().to_string()
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        let dir = self.dir();
        if dir.exists() {
            let _ = self
                .cli
                .invoke(&["lab", "down", "--purge", "--dir"])
                .arg(&dir)
                .try_output();
        }
    }
}
