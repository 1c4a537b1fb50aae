//! `warden identity enroll` end to end: refusals that need no server, then one real lab
//! (`test` and `prod` over HTTPS + mTLS) that is provisioned with `warden apply` and enrolls
//! identities into temporary root directories. Nothing here runs as a service user or calls
//! `useradd`: every enrollment uses `--root-dir`.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use warden_bao::{Client, ClientConfig};
use warden_testkit::cli::{Cli, text};
use warden_testkit::files::mode;
use warden_testkit::{EXAMPLE_SPEC, LabEnv};

/// The binary under test.
const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

fn fails(args: &[&str]) -> String {
    let out = WARDEN.run(args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "warden {args:?} should fail:\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stderr)
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("JSON: {e}: {}", text(&out.stdout)))
}

fn as_refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn leaf_serial(cert: &Path) -> String {
    let pem = std::fs::read_to_string(cert).expect("read client.crt");
    warden_pki::parse_pem_bundle(&pem).expect("parse client.crt")[0]
        .serial
        .clone()
}

#[test]
fn refusals_happen_before_any_server_is_contacted() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    let base = |name: &'static str, env: &'static str| {
        vec![
            "identity",
            "enroll",
            name,
            "--spec",
            EXAMPLE_SPEC,
            "--env",
            env,
            "--root-dir",
            r,
        ]
    };

    let err = fails(&base("worker", "test"));
    assert!(
        err.contains("`worker` is a container") && err.contains("AppRole"),
        "{err}"
    );
    let err = fails(&base("billing-ci", "test"));
    assert!(
        err.contains("`billing-ci` is a pipeline") && err.contains("JWT"),
        "{err}"
    );
    let err = fails(&base("biling", "test"));
    assert!(err.contains("did you mean `billing`?"), "{err}");
    let err = fails(&base("billing", "test,prod"));
    assert!(err.contains("one environment at a time"), "{err}");
    let err = fails(&[
        "identity",
        "enroll",
        "billing",
        "--spec",
        EXAMPLE_SPEC,
        "--root-dir",
        r,
    ]);
    assert!(
        err.contains("hint: add --env NAME (the spec has: prod, test)"),
        "{err}"
    );
    // A valid identity without --lab: the example spec names no trust anchor.
    let err = fails(&base("billing", "test"));
    assert!(err.contains("no trust anchor"), "{err}");
    assert!(
        err.contains("hint: pass --lab DIR, or set `ca_cert`"),
        "{err}"
    );
    let err = fails(&[
        "identity",
        "enroll",
        "billing",
        "--spec",
        EXAMPLE_SPEC,
        "--env",
        "test",
        "--root-dir",
        r,
        "--user",
        "Billing",
    ]);
    assert!(err.contains("not a usable Unix user name"), "{err}");

    assert!(
        std::fs::read_dir(root.path()).unwrap().next().is_none(),
        "a refused enrollment created files"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_against_a_lab() {
    let lab = LabEnv::start(&["test", "prod"]).await;
    let lab_dir = lab.dir().to_str().unwrap().to_owned();
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap().to_owned();
    let enroll = |name: &str, env: &str, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "identity",
            "enroll",
            name,
            "--spec",
            EXAMPLE_SPEC,
            "--lab",
            &lab_dir,
            "--env",
            env,
            "--root-dir",
            &r,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        v.extend(extra.iter().map(|s| (*s).to_owned()));
        v
    };
    let billing = PathBuf::from(&r).join("test").join("billing");

    // Before `apply` the identity's PKI role does not exist: a clear error, nothing written.
    let err = fails(&as_refs(&enroll("billing", "test", &[])));
    assert!(
        err.contains("hint: run `warden apply")
            && err.contains("the identity role does not exist yet"),
        "{err}"
    );
    assert!(!billing.join("identity/client.key").exists());

    WARDEN.ok(&["apply", "--spec", EXAMPLE_SPEC, "--lab", &lab_dir]);

    // First enrollment: issued, verified, every file where and how it should be.
    let out = WARDEN.ok(&as_refs(&enroll("billing", "test", &["-o", "json"])));
    let report = json(&out);
    assert_eq!(report["action"], "issued", "{report}");
    assert_eq!(report["reason"], "new");
    assert_eq!(report["kind"], "app");
    assert_eq!(
        report["certificate"]["common_name"],
        "billing.identity.test.warden.internal"
    );
    assert_eq!(
        report["verification"]["policies"],
        serde_json::json!(["billing"])
    );
    assert_eq!(report["verification"]["cert_role"], "billing");
    assert_eq!(report["verification"]["test_token_revoked"], true);
    // By itself once identity policies grant `auth/token/revoke-self`; by the operator today.
    assert!(
        matches!(
            report["verification"]["revoked_by"].as_str(),
            Some("token" | "operator")
        ),
        "{report}"
    );
    assert_eq!(report["owner"]["mode"], "current-user");
    assert_eq!(report["owner"]["created"], false);

    for dir in ["", "identity", "trust", "out", "state"] {
        assert_eq!(mode(&billing.join(dir)), 0o700, "{dir}/");
    }
    let key = billing.join("identity/client.key");
    let crt = billing.join("identity/client.crt");
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&crt), 0o644);
    assert_eq!(mode(&billing.join("trust/ca.pem")), 0o644);
    assert_eq!(mode(&billing.join("agent.toml")), 0o644);
    assert_eq!(
        report["paths"]["client_key"].as_str().map(PathBuf::from),
        Some(std::path::absolute(&key).unwrap())
    );

    // The key never leaves the file: not on stdout, not on stderr.
    let key_pem = std::fs::read_to_string(&key).unwrap();
    assert!(key_pem.contains("PRIVATE KEY"));
    let key_body: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for stream in [&out.stdout, &out.stderr] {
        let s = text(stream);
        assert!(
            !s.contains("PRIVATE KEY") && !s.contains(&key_body[..40]),
            "{s}"
        );
    }

    // The certificate: pinned CN, leaf + intermediate (no root), EC P-256, from pki_int.
    let chain = warden_pki::parse_pem_bundle(&std::fs::read_to_string(&crt).unwrap()).unwrap();
    assert_eq!(chain.len(), 2, "leaf + issuing CA");
    assert_eq!(chain[0].subject, "CN=billing.identity.test.warden.internal");
    assert_eq!(chain[0].issuer, chain[1].subject);
    assert!(chain[1].is_ca && !chain[1].self_signed);
    assert_eq!(chain[0].key_algorithm, "ECDSA P-256");
    let serial1 = leaf_serial(&crt);

    // The files work on their own: mTLS + cert auth give exactly `billing`, no `default`.
    let test_addr = lab.lab().env("test").unwrap().address();
    let test_ca = lab.lab().layout().env("test").ca_bundle();
    let identity_client = |cert: &Path, key: &Path| {
        Client::new(
            ClientConfig::from_address(&test_addr)
                .unwrap()
                .with_ca_file(&test_ca)
                .unwrap()
                .with_client_cert_files(cert, key)
                .unwrap(),
        )
        .unwrap()
    };
    let client = identity_client(&crt, &key);
    let auth = client.login_cert("cert", Some("billing")).await.unwrap();
    assert_eq!(auth.policies, ["billing"]);
    assert!(!auth.token_policies.iter().any(|p| p == "default"));
    // The CN is pinned in the cert-auth roles too: billing's certificate does not open ledger.
    let err = client.login_cert("cert", Some("ledger")).await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");

    let cfg = warden_enroll::AgentConfig::load(&billing.join("agent.toml")).unwrap();
    assert_eq!(
        cfg.identity.common_name,
        "billing.identity.test.warden.internal"
    );
    assert_eq!(cfg.auth.role.as_deref(), Some("billing"));
    assert_eq!(cfg.auth.key_file.as_deref(), Some("identity/client.key"));
    // The enrolled config is a valid agent config (the agent parses it strictly).
    warden_agent::Config::load(&billing.join("agent.toml")).expect("agent config parses");

    // Again without --force: the certificate is kept, and verified again.
    let again = json(&WARDEN.ok(&as_refs(&enroll("billing", "test", &["-o", "json"]))));
    assert_eq!(again["action"], "kept", "{again}");
    assert_eq!(again["reason"], Value::Null);
    assert_eq!(leaf_serial(&crt), serial1);
    assert_eq!(
        std::fs::read_to_string(&key).unwrap(),
        key_pem,
        "key rewritten"
    );

    // --force: a new key and certificate, reported in text.
    let forced = WARDEN.ok(&as_refs(&enroll("billing", "test", &["--force"])));
    let stdout = text(&forced.stdout);
    assert!(
        stdout.contains("new certificate issued (re-issue forced)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("verified: logged in as billing with policies [billing]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("billing.identity.test.warden.internal"),
        "{stdout}"
    );
    assert!(!stdout.contains("PRIVATE KEY"), "{stdout}");
    assert_ne!(
        leaf_serial(&crt),
        serial1,
        "--force kept the old certificate"
    );
    assert_ne!(
        std::fs::read_to_string(&key).unwrap(),
        key_pem,
        "--force kept the old key"
    );

    // A proxy enrolls the same way and gets only its own policy.
    let edge = json(&WARDEN.ok(&as_refs(&enroll("edge", "test", &["-o", "json"]))));
    assert_eq!(edge["kind"], "proxy");
    assert_eq!(
        edge["verification"]["policies"],
        serde_json::json!(["edge"])
    );

    // The same app in prod: its own directory and certificate, which test refuses at TLS.
    let prod = json(&WARDEN.ok(&as_refs(&enroll("billing", "prod", &["-o", "json"]))));
    assert_eq!(
        prod["certificate"]["common_name"],
        "billing.identity.prod.warden.internal"
    );
    let prod_dir = PathBuf::from(&r).join("prod").join("billing");
    let cross = identity_client(
        &prod_dir.join("identity/client.crt"),
        &prod_dir.join("identity/client.key"),
    );
    let err = cross.login_cert("cert", Some("billing")).await.unwrap_err();
    assert!(
        matches!(err.root(), warden_bao::Error::Tls { .. }),
        "expected a TLS refusal, got {err:?}"
    );
}
