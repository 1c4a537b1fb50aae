//! The example platform spec the lab documents (`examples/lab/warden.toml`), which most
//! end-to-end tests apply as shipped, so a change to it is tested everywhere at once.

use std::path::{Path, PathBuf};

/// Path of the shipped example spec.
pub const EXAMPLE_SPEC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/lab/warden.toml"
);

/// Its text, for tests that write a variant of it.
pub const EXAMPLE_SPEC_TEXT: &str = include_str!("../../../examples/lab/warden.toml");

/// Writes the example spec plus backups of environment `test` to `recipients` (keeping `keep`)
/// as `dir/warden.toml`, with the example's other files linked beside it (its relative paths
/// resolve against the spec's directory). Returns the spec's path.
pub fn spec_with_backup(dir: &Path, recipients: &[&str], keep: u32) -> PathBuf {
    let list: Vec<String> = recipients.iter().map(|r| format!("\"{r}\"")).collect();
    let text = format!(
        "{EXAMPLE_SPEC_TEXT}\n[environments.test.backup]\nrecipients = [{}]\ndir = \"backups\"\nkeep = {keep}\n",
        list.join(", ")
    );
    let p = dir.join("warden.toml");
    std::fs::write(&p, text).expect("write spec");
    for entry in std::fs::read_dir(Path::new(EXAMPLE_SPEC).parent().expect("dir")).expect("ls") {
        let entry = entry.expect("entry");
        let target = dir.join(entry.file_name());
        if !target.exists() && entry.path() != Path::new(EXAMPLE_SPEC) {
            let _ = std::os::unix::fs::symlink(entry.path(), target);
        }
    }
    p
}

/// The example spec as a lab from [`LabEnv`](crate::LabEnv) runs it: that lab starts no
/// PostgreSQL, so the example's lab database (`[databases.main]` on `lab-postgres`, billing's)
/// is left out, as `warden … --lab` leaves it out for such a lab
/// (`warden_lab::Lab::bind_postgres`).
pub fn example_spec() -> warden_spec::Spec {
    let mut spec = warden_spec::load(Path::new(EXAMPLE_SPEC))
        .unwrap_or_else(|e| panic!("the example spec is valid: {e}"));
    warden_lab::postgres::without_lab_databases(&mut spec);
    spec
}
