//! `warden serve`'s own identity (issue 15 parts 1 and 6, ADR 0026), end to end on a real lab
//! (`test`, HTTPS + mTLS): `apply` writes serve's generated policy, PKI role and cert-auth
//! login; `warden serve enroll` issues its certificate; `warden serve --identity-dir` logs in
//! with it (not as the operator) and rotates a signing key and sweeps posture; the same
//! certificate's token reads the key but is refused an app's secret value and any policy
//! write; the live policy passes serve's lint; outside a lab, serve refuses to start without
//! its identity; `warden serve unit` prints the hardened unit.

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warden_bao::Idempotent;
use warden_spec::naming::serve::{SERVE_AUTH_MOUNT, SERVE_POLICY, SERVE_ROLE};
use warden_testkit::LabEnv;
use warden_testkit::cli::{Cli, path_str};

const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

const SPEC: &str = r#"
version = 1

[environments.test]
domain        = "test.warden.internal"
runtime_owner = "warden-test"
app_root      = "/srv/warden/test"

[apps.issuer]
environments = ["test"]
signing_keys = [{ name = "jwt", algorithm = "es256", grace = "10s", interval = "3s" }]

[apps.billing]
environments = ["test"]
secrets      = ["config"]

[purposes.workload-identity]
description = "Each identity's own mTLS client certificate"
owner       = "platform"
tier        = "ephemeral"
delivery    = "agent_file"
rotation    = { interval = "20d", grace = "5d", max_age = "30d" }
evidence    = "EV-IDENTITY"
covers      = ["*/identity-cert"]

[purposes.service-tls]
description = "Server certificates of the apps"
owner       = "platform"
tier        = "ephemeral"
delivery    = "agent_file"
rotation    = { interval = "48h", grace = "24h", max_age = "72h" }
evidence    = "EV-PKI"
covers      = ["*/certificate"]

[purposes.app-config]
description = "Apps' configuration secrets"
owner       = "platform"
tier        = "vault_kv"
delivery    = "agent_file"
rotation    = { interval = "90d", grace = "30d" }
evidence    = "EV-CONFIG"
covers      = ["*/secret/*"]

[purposes.token-signing]
description = "Signs issuer's session tokens, rotated by warden serve"
owner       = "issuer"
tier        = "vault_kv"
delivery    = "api"
rotation    = { interval = "1h", grace = "1h" }
evidence    = "EV-TOKENS"
covers      = ["issuer/signing-key/jwt"]
"#;

fn events(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn ok_run(events: &[Value], job: &str) -> bool {
    events
        .iter()
        .any(|e| e["job"] == job && e["run"]["outcome"].as_str().is_some_and(|o| o == "ok"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_jobs_with_its_own_identity_and_nothing_more() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let lab = LabEnv::start(&["test"]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let spec_path = dir.path().join("warden.toml");
    std::fs::write(&spec_path, SPEC).expect("write spec");
    let (spec, lab_dir) = (path_str(&spec_path), path_str(lab.dir()));
    WARDEN.ok(&["apply", "--spec", spec, "--lab", lab_dir]);
    let op = lab.client("test");
    // billing's secret value: what serve must never read.
    op.write(
        "kvv2/data/billing/config",
        &json!({ "data": { "password": "not-for-serve" } }),
        Idempotent::No,
    )
    .await
    .expect("write billing's secret");

    // Enroll serve: its certificate and key land in <dir>/test/, the key owner-only.
    let ident = dir.path().join("serve-identity");
    let out = WARDEN.ok(&[
        "serve",
        "enroll",
        "--spec",
        spec,
        "--lab",
        lab_dir,
        "--env",
        "test",
        "--dir",
        path_str(&ident),
        "-o",
        "json",
    ]);
    let enrolled: Value = serde_json::from_slice(&out.stdout).expect("enroll json");
    assert_eq!(enrolled["common_name"], "warden.serve.test.warden.internal");
    let key = ident.join("test/key.pem");
    let mode = std::fs::metadata(&key)
        .expect("key.pem")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "key.pem is {mode:o}");

    // Serve with its own identity: the key is created and rotated, posture is swept.
    let log = dir.path().join("serve.jsonl");
    let mut child = Command::new(WARDEN.bin())
        .args([
            "serve",
            "--spec",
            spec,
            "--lab",
            lab_dir,
            "--identity-dir",
            path_str(&ident),
            "--id",
            "own",
            "--lease-ttl",
            "3s",
            "--tick",
            "1s",
            "--posture-every",
            "2s",
            "-o",
            "json",
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(std::fs::File::create(dir.path().join("serve.err")).expect("err"))
        .spawn()
        .expect("start warden serve");
    let deadline = Instant::now() + Duration::from_secs(45);
    let job = "rotate-signing-key/issuer/jwt";
    loop {
        let ev = events(&log);
        let versions = op
            .kv2("kvv2")
            .metadata("issuer/signing/jwt")
            .await
            .map(|m| m.current_version)
            .unwrap_or(0);
        if versions >= 2 && ok_run(&ev, job) && ok_run(&ev, "posture") {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let err = std::fs::read_to_string(dir.path().join("serve.err")).unwrap_or_default();
            panic!("no rotation + posture by serve's identity (key v{versions}):\n{ev:#?}\n{err}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // It was serve's identity that ran them: the lease record names `own`, and no job failed
    // on a denied request.
    let ev = events(&log);
    let failed: Vec<&Value> = ev
        .iter()
        .filter(|e| e["run"]["outcome"] == "failed")
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let _ = child.wait();

    // The same certificate's token: exactly serve's policy, the key readable, billing's
    // secret and policy writes refused by OpenBao.
    let serve = lab
        .lab()
        .workload_client(
            "test",
            &ident.join("test/cert.pem"),
            &ident.join("test/key.pem"),
        )
        .expect("serve client");
    serve.login_with_cert_on_demand(SERVE_AUTH_MOUNT, SERVE_ROLE);
    let me = serve.token_lookup_self().await.expect("lookup-self");
    assert_eq!(me.policies, vec![SERVE_POLICY.to_owned()], "{me:?}");
    serve
        .read("kvv2/data/issuer/signing/jwt")
        .await
        .expect("serve reads the key it rotates");
    let secret = serve.read("kvv2/data/billing/config").await;
    assert!(
        secret
            .as_ref()
            .is_err_and(warden_bao::Error::is_permission_denied),
        "serve read billing's secret: {secret:?}"
    );
    let policy = serve
        .write(
            "sys/policies/acl/x",
            &json!({ "policy": "path \"*\" { capabilities = [\"sudo\"] }" }),
            Idempotent::Yes,
        )
        .await;
    assert!(
        policy
            .as_ref()
            .is_err_and(warden_bao::Error::is_permission_denied),
        "serve wrote a policy: {policy:?}"
    );

    // The live policy passes serve's lint.
    let live = op
        .read(&format!("sys/policies/acl/{SERVE_POLICY}"))
        .await
        .expect("read policy")
        .data
        .expect("policy body");
    let grants =
        warden_spec::naming::policy::parse(live["policy"].as_str().expect("hcl")).expect("parse");
    let parsed = warden_spec::parse(SPEC, "warden.toml").expect("spec");
    let env = parsed.environment("test").expect("env");
    let findings = warden_plan::serve::lint_serve(&parsed, env, "live", &grants);
    assert!(findings.is_empty(), "{findings:?}");
}

#[test]
fn outside_a_lab_serve_needs_its_identity_and_its_unit_is_hardened() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spec_path = dir.path().join("warden.toml");
    std::fs::write(&spec_path, SPEC).expect("write spec");
    let spec = path_str(&spec_path);
    let out = WARDEN.run(&["serve", "--spec", spec]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warden serve enroll"), "{err}");

    let out = WARDEN.ok(&["serve", "unit", "--spec", spec, "--env", "test"]);
    let unit = String::from_utf8_lossy(&out.stdout);
    assert!(
        unit.contains(" serve --spec ")
            && unit.contains("--env test --identity-dir /etc/warden/serve"),
        "{unit}"
    );
    for line in [
        "User=warden-serve",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=\n",
    ] {
        assert!(unit.contains(line), "{line}: {unit}");
    }
}
