//! Shared by the provisioning tests: running `warden` on a spec and a lab, writing spec
//! variants, and reading what a server holds so a test can prove a command touched nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use warden_bao::Client;
use warden_testkit::cli::{Cli, Run};

/// The example spec the lab documents, exactly as shipped.
pub(crate) use warden_testkit::EXAMPLE_SPEC_TEXT as EXAMPLE;

/// The binary under test. A plan or apply against a local lab takes about a second; 180 s is
/// the upper bound for one run.
pub(crate) const WARDEN: Cli =
    Cli::new(env!("CARGO_BIN_EXE_warden")).with_timeout(Duration::from_secs(180));

/// Path of the shipped example spec (tests that do not modify it use it in place).
pub(crate) fn example_spec() -> PathBuf {
    PathBuf::from(warden_testkit::EXAMPLE_SPEC)
}

/// Runs `warden <cmd> --spec SPEC --lab LAB <extra…>` with a clean environment.
pub(crate) fn warden(cmd: &str, spec: &Path, lab: &Path, extra: &[&str]) -> Run {
    let mut args: Vec<String> = vec![
        cmd.to_owned(),
        "--spec".into(),
        spec.display().to_string(),
        "--lab".into(),
        lab.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    WARDEN.invoke(&args).run()
}

/// Writes a spec (or a file it names) into `dir`.
pub(crate) fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a spec file");
    path
}

/// `text` with the one occurrence of `from` replaced by `to`; panics when `from` is not there
/// exactly once, so a change to the example cannot silently turn a test into a no-op.
#[track_caller]
pub(crate) fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "expected exactly one `{from}` in the spec"
    );
    text.replacen(from, to, 1)
}

/// The example with app `ledger` (its table and its certificate table) removed.
pub(crate) fn example_without_ledger() -> String {
    let start = EXAMPLE
        .find("[apps.ledger]")
        .expect("example has apps.ledger");
    let end = EXAMPLE
        .find("[proxies.edge]")
        .expect("example has proxies.edge");
    assert!(start < end, "apps.ledger comes before proxies.edge");
    let out = format!("{}{}", &EXAMPLE[..start], &EXAMPLE[end..]);
    assert!(!out.contains("ledger"), "nothing else refers to ledger");
    out
}

/// The example with every environment's CI block trusting the PEM public key at `pem_file`
/// (relative to the spec).
pub(crate) fn example_with_ci_key(pem_file: &str) -> String {
    let mut out = String::new();
    let mut inserted = 0;
    for line in EXAMPLE.lines() {
        out.push_str(line);
        out.push('\n');
        if line.trim_start().starts_with("audience") {
            out.push_str(&format!("validation_pubkeys = [\"{pem_file}\"]\n"));
            inserted += 1;
        }
    }
    assert_eq!(inserted, 2, "one CI block per environment (test, prod)");
    out
}

/// What a server holds at the top level: enough to see that a command changed nothing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) policies: BTreeSet<String>,
    pub(crate) mounts: BTreeSet<String>,
    pub(crate) auth: BTreeSet<String>,
}

pub(crate) async fn snapshot(client: &Client) -> Snapshot {
    Snapshot {
        policies: client
            .list_policies()
            .await
            .expect("list policies")
            .into_iter()
            .collect(),
        mounts: client
            .list_mounts()
            .await
            .expect("list mounts")
            .into_keys()
            .collect(),
        auth: client
            .list_auth()
            .await
            .expect("list auth")
            .into_keys()
            .collect(),
    }
}

/// Whether `path` can be read by the operator (absent = 404).
pub(crate) async fn exists(client: &Client, path: &str) -> bool {
    match client.read(path).await {
        Ok(_) => true,
        Err(e) if e.is_not_found() => false,
        Err(e) => panic!("read {path}: {e}"),
    }
}

/// Counts of a plan's JSON (`creates`, `updates`, `deletes`).
pub(crate) fn counts(plan: &Value) -> (u64, u64, u64) {
    let n = |k: &str| {
        plan[k]
            .as_u64()
            .unwrap_or_else(|| panic!("plan JSON has no `{k}` count: {plan}"))
    };
    (n("creates"), n("updates"), n("deletes"))
}

/// Every change of a plan's JSON as `(action, path)`.
pub(crate) fn changes(plan: &Value) -> Vec<(String, String)> {
    plan["environments"]
        .as_array()
        .expect("plan JSON has environments")
        .iter()
        .flat_map(|e| e["changes"].as_array().cloned().unwrap_or_default())
        .map(|c| {
            (
                c["action"].as_str().unwrap_or_default().to_owned(),
                c["path"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}
