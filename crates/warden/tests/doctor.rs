//! `warden doctor billing` end to end: a real lab (`test`, HTTPS + mTLS), `billing` applied,
//! its secret written, enrolled under a temporary root and its agent running. On that healthy
//! host every check passes; then, one at a time and each undone before the next, the key's mode
//! is widened, the trust file replaced by another CA's certificate, the host's clock shifted,
//! the identity's policy broadened by an operator, then narrowed: each time the matching check
//! fails with a fix, the others stay ok, and the exit code is 1.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use warden_testkit::cli::{Cli, path_str, text};
use warden_testkit::{RunningAgent, SpecLab, wait_for};

/// The binary under test.
const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

const SPEC: &str = r#"version = 1

[environments.test]
domain = "test.warden.internal"

[apps.billing]
environments = ["test"]
secrets      = ["config"]

[apps.billing.certificate]
ttl = "24h"

[apps.ledger]
environments = ["test"]
secrets      = ["config"]

[purposes.identity]
description = "identities' mTLS certificates"
owner = "platform"
tier = "ephemeral"
delivery = "agent_file"
rotation = { interval = "20d", grace = "5d", max_age = "30d" }
evidence = "EV-IDENTITY"
covers = ["*/identity-cert", "*/certificate"]

[purposes.config]
description = "apps' configuration"
owner = "platform"
tier = "vault_kv"
delivery = "agent_file"
rotation = { interval = "90d", grace = "24h" }
evidence = "EV-CONFIG"
covers = ["*/secret/config"]
"#;

/// Every check the doctor runs, in order.
const CHECKS: [&str; 10] = [
    "config",
    "files",
    "trust",
    "certificate",
    "tls",
    "login",
    "permissions",
    "least-privilege",
    "agent",
    "clock",
];

fn doctor(root: &Path, env: &[(&str, &str)]) -> (Output, Value) {
    let mut run = WARDEN.invoke(&[
        "-o",
        "json",
        "doctor",
        "billing",
        "--root-dir",
        path_str(root),
        "--env",
        "test",
    ]);
    for (k, v) in env {
        run = run.env(k, v);
    }
    let out = run.output();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor JSON: {e}\nstdout:\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    (out, json)
}

fn status<'a>(report: &'a Value, name: &str) -> &'a str {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check `{name}` in {report:#}"))["status"]
        .as_str()
        .expect("status")
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name)
        .expect("check")
}

/// Every check ok, exit 0.
#[track_caller]
fn healthy(root: &Path) {
    let (out, report) = doctor(root, &[]);
    for name in CHECKS {
        assert_eq!(status(&report, name), "ok", "{name}: {report:#}");
    }
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["ok"], true);
    // The grants were really asked about: billing's certificate and identity renewal (sign)
    // and its secret (read), and the forbidden sample includes another identity's secret.
    let granted = check(&report, "permissions")["detail"].as_str().unwrap();
    assert!(granted.contains("all 3 grants"), "{granted}");
    let denied = check(&report, "least-privilege")["detail"]
        .as_str()
        .unwrap();
    assert!(denied.starts_with("6 paths"), "{denied}");
}

/// `name` fails, with a detail and a fix saying what is given; every other check is ok (but
/// for what a broken trust file takes down with it); exit 1.
#[track_caller]
fn only_fails(root: &Path, env: &[(&str, &str)], name: &str, detail: &str, fix: &str) {
    let (out, report) = doctor(root, env);
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    assert_eq!(report["ok"], false);
    let c = check(&report, name);
    assert_eq!(c["status"], "fail", "{report:#}");
    assert!(
        c["detail"].as_str().unwrap().contains(detail),
        "{name} detail should say {detail:?}: {c:#}"
    );
    assert!(
        c["fix"].as_str().unwrap().contains(fix),
        "{name} fix should say {fix:?}: {c:#}"
    );
    for other in CHECKS.iter().filter(|n| **n != name) {
        let s = status(&report, other);
        // A foreign trust file also fails the handshake (the server's certificate is not
        // trusted either), which leaves login, grants and clock unchecked.
        let after_trust = name == "trust"
            && ((*other == "tls" && s == "fail")
                || (["login", "permissions", "least-privilege", "clock"].contains(other)
                    && s == "skipped"));
        assert!(
            s == "ok" || after_trust,
            "{other} is {s} while only {name} was broken: {report:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_a_healthy_host_and_names_each_breakage() {
    let lab = SpecLab::start(WARDEN, SPEC).await;
    lab.apply();
    let value = lab.dir().join("config.env");
    std::fs::write(&value, "setting=doctor-test\n").unwrap();
    let put = lab.run(&[
        "secret",
        "put",
        "billing",
        "config",
        "--from-file",
        path_str(&value),
    ]);
    assert!(put.status.success(), "secret put: {}", text(&put.stderr));
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    lab.enroll(root, "billing");
    let id_dir = root.join("test/billing");

    // No agent yet: the `agent` check fails and says how to start it.
    let (out, report) = doctor(root, &[]);
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    let agent = check(&report, "agent");
    assert_eq!(agent["status"], "fail", "{report:#}");
    assert!(
        agent["fix"]
            .as_str()
            .unwrap()
            .contains("warden agent --config"),
        "{agent:#}"
    );

    let config = id_dir.join("agent.toml");
    let mut running = RunningAgent::spawn(
        WARDEN.command(&["agent", "--config", path_str(&config)]),
        &lab.dir().join("agent.log"),
    );
    let socket = id_dir.join("state/control.sock");
    wait_for(Duration::from_secs(60), "billing's agent fresh", || {
        running.assert_alive();
        WARDEN
            .run(&["agent", "status", "--socket", path_str(&socket)])
            .status
            .success()
            .then_some(())
    });

    // 1. A healthy host: every check ok, the text report says so.
    healthy(root);
    let out = WARDEN.run(&[
        "doctor",
        "billing",
        "--root-dir",
        path_str(root),
        "--env",
        "test",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("every check passed"),
        "{}",
        text(&out.stdout)
    );

    // The agent's delivery report (what posture reads) shows up in the `agent` check once the
    // agent has written it (it looks every 5 s).
    let agent = wait_for(Duration::from_secs(30), "the delivery report's age", || {
        let (_, report) = doctor(root, &[]);
        let c = check(&report, "agent").clone();
        c["detail"]
            .as_str()
            .is_some_and(|d| d.contains("delivery report written"))
            .then_some(c)
    });
    assert_eq!(agent["status"], "ok", "{agent:#}");

    // 2. The key's mode widened.
    let key = id_dir.join("identity/client.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    only_fails(root, &[], "files", "mode 0644", "chmod 0600");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    healthy(root);

    // 3. The trust file replaced by another CA's certificate (a second offline root).
    let other = lab.dir().join("other-ca");
    let pass = lab.dir().join("pass");
    std::fs::write(&pass, "another root's test passphrase\n").unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let init = WARDEN.run(&[
        "ca",
        "init",
        "--dir",
        path_str(&other),
        "--passphrase-file",
        path_str(&pass),
    ]);
    assert!(init.status.success(), "ca init: {}", text(&init.stderr));
    let trust = id_dir.join("trust/ca.pem");
    let good = std::fs::read(&trust).unwrap();
    std::fs::write(&trust, std::fs::read(other.join("root.crt")).unwrap()).unwrap();
    only_fails(
        root,
        &[],
        "trust",
        "does not chain",
        "warden identity enroll",
    );
    std::fs::write(&trust, &good).unwrap();
    healthy(root);

    // 4. The clock five minutes ahead.
    only_fails(
        root,
        &[("WARDEN_DOCTOR_CLOCK_OFFSET", "300")],
        "clock",
        "5m 0s ahead of",
        "NTP",
    );
    // Inside the warning band: a warning does not fail the run.
    let (out, report) = doctor(root, &[("WARDEN_DOCTOR_CLOCK_OFFSET", "-10")]);
    assert_eq!(status(&report, "clock"), "warn", "{report:#}");
    assert_eq!(out.status.code(), Some(0), "{report:#}");

    // 5. The policy broadened by an operator.
    let policy = warden_agent::Config::load(&config).unwrap().auth.policy;
    let op = lab.lab().client("test");
    let original = op.read_policy(&policy).await.expect("read the policy");
    let wider =
        format!("{original}\npath \"sys/policies/acl/*\" {{\n  capabilities = [\"update\"]\n}}\n");
    op.put_policy(&policy, &wider).await.expect("broaden");
    only_fails(
        root,
        &[],
        "least-privilege",
        "sys/policies/acl/",
        "warden apply",
    );
    // 6. The policy narrowed: the secret's read taken away, which `permissions` names.
    let narrowed: String = original
        .split_inclusive("}\n")
        .filter(|stanza| !(stanza.contains("/data/") && stanza.contains("billing/config")))
        .collect();
    assert_ne!(
        narrowed, original,
        "the policy has a stanza for billing's secret"
    );
    op.put_policy(&policy, &narrowed).await.expect("narrow");
    only_fails(root, &[], "permissions", "billing/config", "warden apply");
    op.put_policy(&policy, &original).await.expect("restore");
    healthy(root);

    running.assert_alive();
}
