//! What the CA tests against a lab with running agents share (`ca_rotation`,
//! `ca_root_rollover`): the CLI run against the spec and the lab, `ca status` as JSON, file
//! reads that tolerate a file being swapped, and waits. Included with
//! `#[path = "common/ca_lab.rs"] mod ca_lab;`.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use warden_testkit::cli::Cli;

/// The CA lab's spec: billing (with a server certificate) and the edge proxy in `test`, both
/// purposes, a one-hour overlap and the given reissue window.
const SPEC: &str = r#"version = 1
[environments.test]
domain = "test.warden.internal"

[apps.billing]
environments = ["test"]

[apps.billing.certificate]
common_name = "billing.<domain>"
ttl         = "72h"
key_type    = "ec-p256"

[proxies.edge]
environments = ["test"]

[ca]
overlap        = "1h"
reissue_window = "<window>"

[purposes.workload-identity]
description = "identity certificates"
owner       = "platform"
tier        = "ephemeral"
delivery    = "agent_file"
rotation    = { interval = "20d", grace = "5d", max_age = "30d" }
evidence    = "EV-IDENTITY"
covers      = ["*/identity-cert"]

[purposes.service-tls]
description = "server certificates"
owner       = "platform"
tier        = "ephemeral"
delivery    = "agent_file"
rotation    = { interval = "48h", grace = "24h", max_age = "72h" }
evidence    = "EV-PKI"
covers      = ["*/certificate"]
"#;

/// billing's server name, which the handshake loop verifies.
pub(crate) const HOST: &str = "billing.test.warden.internal";

/// [`SPEC`] with its reissue window.
pub(crate) fn spec_with_window(reissue_window: &str) -> String {
    SPEC.replace("<window>", reissue_window)
}

pub(crate) const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

/// Waits until `f` holds, polling every 250 ms; panics after `limit`.
pub(crate) fn wait_for(what: &str, limit: Duration, f: impl FnMut() -> bool) {
    assert!(wait_until(limit, f), "timed out waiting for {what}");
}

/// Whether `f` came to hold within `limit`, polling every 250 ms.
pub(crate) fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !f() {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    true
}

/// The file's text, or "" while it is missing.
pub(crate) fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// The first certificate of a PEM text, if any.
pub(crate) fn first_info(pem: &str) -> Option<warden_pki::CertInfo> {
    warden_pki::parse_pem_bundle(pem).ok()?.into_iter().next()
}

/// `warden ARGS --spec SPEC --lab LAB`.
pub(crate) fn run(args: &[&str], spec: &Path, lab_dir: &Path) -> std::process::Output {
    WARDEN
        .invoke(args)
        .arg("--spec")
        .arg(spec)
        .arg("--lab")
        .arg(lab_dir)
        .output()
}

/// Asserts the run succeeded, showing its output otherwise.
pub(crate) fn ok(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `warden ca status --env test --output json`.
pub(crate) fn status(spec: &Path, lab_dir: &Path) -> Value {
    let out = run(
        &["ca", "status", "--env", "test", "--output", "json"],
        spec,
        lab_dir,
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ca status JSON: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Prints the last lines of each host's agent log (on a failure).
pub(crate) fn show_agent_logs(hosts: &Path, names: &[&str]) {
    for h in names {
        let log = hosts.join(format!("{h}/state/agent.log"));
        let text = read(&log);
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        eprintln!("--- {h} ({}):", log.display());
        for l in tail.into_iter().rev() {
            eprintln!("{l}");
        }
    }
}
