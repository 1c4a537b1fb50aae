//! Helpers shared by the CLI integration tests: run the real `warden` binary with an
//! environment that cannot point it at anything but the lab under test.
//!
//! Each test binary uses a subset of these, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;

/// The example platform spec.
pub(crate) const SPEC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/lab/warden.toml"
);

/// Variables that would point the binary somewhere else than the lab under test.
pub(crate) const FOREIGN_ENV: [&str; 12] = [
    "WARDEN_LAB_DIR",
    "WARDEN_SPEC",
    "VAULT_ADDR",
    "BAO_ADDR",
    "VAULT_TOKEN",
    "BAO_TOKEN",
    "VAULT_CACERT",
    "BAO_CACERT",
    "VAULT_CLIENT_CERT",
    "VAULT_CLIENT_KEY",
    "BAO_CLIENT_CERT",
    "BAO_CLIENT_KEY",
];

/// `warden ARGS` with a clean environment and a time limit (a hung command fails the test
/// instead of stalling the suite; `lab up` with agents is the slowest call, well under it).
pub(crate) fn warden(args: &[&str]) -> Command {
    let mut cmd = Command::cargo_bin("warden").expect("warden binary");
    cmd.args(args)
        .env("NO_COLOR", "1")
        .timeout(Duration::from_secs(240));
    for var in FOREIGN_ENV {
        cmd.env_remove(var);
    }
    cmd
}

/// Lossy UTF-8 of command output.
pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `warden ARGS`, whatever its exit code.
pub(crate) fn run(args: &[&str]) -> Output {
    warden(args).output().expect("run warden")
}

/// Runs `warden ARGS` and fails the test, with both streams, unless it succeeds.
pub(crate) fn ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "warden {args:?} failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// A path as `&str` for argv.
pub(crate) fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
