//! The setup most `warden` CLI tests start with: a lab environment `test`, a spec written next
//! to it, every command run against both, and identities' agents run once. One copy here, so a
//! change to how the tests drive the CLI is made once.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::LabEnv;
use crate::cli::{Cli, path_str, text};

/// A lab with environment `test` and a spec (`warden.toml` in a temporary directory) for it;
/// both are removed when dropped.
pub struct SpecLab {
    cli: Cli,
    spec: PathBuf,
    dir: tempfile::TempDir,
    lab: LabEnv,
}

impl SpecLab {
    /// Starts the lab (installing the process's crypto provider first, as every lab test
    /// needs) and writes `spec` as its spec. `cli` is the `warden` binary under test.
    pub async fn start(cli: Cli, spec: &str) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let lab = LabEnv::start(&["test"]).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("warden.toml");
        std::fs::write(&path, spec).expect("write spec");
        Self {
            cli,
            spec: path,
            dir,
            lab,
        }
    }

    /// The lab.
    pub fn lab(&self) -> &LabEnv {
        &self.lab
    }

    /// The temporary directory the spec is in, for the test's other files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The spec's path (a test may write a variant of it there).
    pub fn spec(&self) -> &Path {
        &self.spec
    }

    /// `warden ARGS --spec SPEC --lab LAB`: the finished run, for the caller to judge.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut a = args.to_vec();
        a.extend([
            "--spec",
            path_str(&self.spec),
            "--lab",
            path_str(self.lab.dir()),
        ]);
        self.cli.run(&a)
    }

    /// `warden apply`, which must succeed.
    pub fn apply(&self) {
        let out = self.run(&["apply"]);
        assert!(out.status.success(), "apply: {}", text(&out.stderr));
    }

    /// `warden identity enroll NAME --env test --root-dir ROOT`, which must succeed.
    pub fn enroll(&self, root: &Path, name: &str) {
        let out = self.run(&[
            "identity",
            "enroll",
            name,
            "--env",
            "test",
            "--root-dir",
            path_str(root),
        ]);
        assert!(out.status.success(), "enroll {name}: {}", text(&out.stderr));
    }
}

/// `warden agent --config ROOT/test/NAME/agent.toml --once`: the agent of identity `name`,
/// enrolled under `root` in environment `test`, run once; the run, for the caller to judge.
pub fn agent_once(cli: &Cli, root: &Path, name: &str) -> Output {
    let config = root.join(format!("test/{name}/agent.toml"));
    cli.run(&["agent", "--config", path_str(&config), "--once"])
}

/// Runs `name`'s agent once (as [`agent_once`]), which must succeed, and returns the text of
/// the file it delivered at `rel` (relative to the identity's directory).
pub fn agent_once_and_read(cli: &Cli, root: &Path, name: &str, rel: &str) -> String {
    let out = agent_once(cli, root, name);
    assert!(out.status.success(), "agent {name}: {}", text(&out.stderr));
    let path = root.join(format!("test/{name}/{rel}"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
