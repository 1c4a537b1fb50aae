//! End-to-end: operators without root (issue 12, item 4) against real OpenBao.
//!
//! - The lab's bootstrap leaves no root token; an operator enrolled with `warden operator
//!   enroll` (key on their machine) and approved by the lab operator runs `apply`, `posture`,
//!   `secret`, `rotate` and `evidence export` with nothing but their certificate; root-only and
//!   foreign paths are refused; once removed, their certificate no longer logs in.
//! - `warden bootstrap` on a server initialised outside Warden uses the root token once: after
//!   it, a lookup with that token fails, and the first operator applies the spec.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::{Value, json};
use warden_bao::{Client, ClientConfig, Idempotent};
use warden_testkit::cli::{Cli, path_str, text};
use warden_testkit::{BaoDev, LabEnv};

const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

const SPEC: &str = r#"version = 1

[environments.test]
domain = "test.warden.internal"

[apps.billing]
environments = ["test"]
secrets      = ["config"]
signing_keys = [{ name = "jwt", algorithm = "es256", grace = "10s" }]

[purposes.identity]
description = "identities' mTLS certificates"
owner       = "platform"
tier        = "ephemeral"
delivery    = "agent_file"
rotation    = { interval = "20d", grace = "5d", max_age = "30d" }
evidence    = "EV-IDENTITY"
covers      = ["*/identity-cert", "*/certificate"]

[purposes.billing-config]
description = "billing's configuration"
owner       = "billing"
tier        = "vault_kv"
delivery    = "agent_file"
rotation    = { interval = "90d", grace = "24h" }
evidence    = "EV-CONFIG"
covers      = ["billing/secret/config"]

[purposes.token-signing]
description = "billing's session-token signing key"
owner       = "billing"
tier        = "vault_kv"
delivery    = "api"
rotation    = { interval = "90d", grace = "24h" }
evidence    = "EV-TOKENS"
covers      = ["billing/signing-key/jwt"]
"#;

/// `WARDEN args` with the environment a person's shell would have: the server's address and
/// trust anchor, their certificate and key, and no token.
fn as_operator(
    args: &[&str],
    addr: &str,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> std::process::Output {
    WARDEN
        .invoke(args)
        .env("VAULT_ADDR", addr)
        .env("VAULT_CACERT", ca)
        .env("VAULT_CLIENT_CERT", cert)
        .env("VAULT_CLIENT_KEY", key)
        .output()
}

#[track_caller]
fn ok(out: &std::process::Output, what: &str) -> Value {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\n{}\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// A client presenting `cert`/`key` that has logged in as operator `role`.
async fn operator_client(
    addr: &str,
    ca: &Path,
    cert: &Path,
    key: &Path,
    role: &str,
) -> Result<Client, warden_bao::Error> {
    let mut cfg = ClientConfig::new(addr.parse().unwrap())
        .with_ca_file(ca)
        .unwrap()
        .with_client_cert_files(cert, key)
        .unwrap();
    cfg.retry.startup_timeout = std::time::Duration::from_secs(2);
    let client = Client::new(cfg).unwrap();
    let auth = client.login_cert("warden-operators", Some(role)).await?;
    assert_eq!(
        auth.token_policies,
        ["warden-operator"],
        "operator policy only, no default"
    );
    client.set_token(auth.client_token);
    Ok(client)
}

/// Every path here is refused to an operator: root-only paths, foreign mounts, policy writes
/// outside Warden's names.
async fn assert_refused(op: &Client) {
    let denied = |what: &str, r: Result<(), warden_bao::Error>| match r {
        Err(e) => assert_eq!(e.status(), Some(403), "{what}: {e}"),
        Ok(()) => panic!("{what}: an operator must be refused"),
    };
    let w = |path: &'static str, body: Value| {
        let op = op.clone();
        async move { op.write(path, &body, Idempotent::No).await.map(drop) }
    };
    denied("sys/seal", w("sys/seal", json!({})).await);
    denied("sys/raw", op.read("sys/raw/core/keyring").await.map(drop));
    denied("sys/audit", op.read("sys/audit").await.map(drop));
    denied(
        "auth/token/create",
        w("auth/token/create", json!({"policies": ["root"]})).await,
    );
    denied(
        "write the default policy",
        op.put_policy("default", "path \"*\" { capabilities = [\"sudo\"] }")
            .await,
    );
    denied(
        "mount a new engine",
        w("sys/mounts/elsewhere", json!({"type": "kv"})).await,
    );
    denied(
        "another mount (identity/)",
        op.list("identity/entity/id").await.map(drop),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_act_without_root_and_a_removed_operator_cannot_log_in() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let lab = LabEnv::start(&["test"]).await;
    let layout = lab.lab().layout().env("test");
    assert!(
        !layout.root_token().exists(),
        "bootstrap must end with the root token's custody file gone"
    );
    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("warden.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let (spec_s, lab_s) = (path_str(&spec), path_str(lab.dir()));

    // The lab operator (no root token anywhere) applies the spec.
    ok(
        &WARDEN.run(&["apply", "--spec", spec_s, "--lab", lab_s]),
        "apply as the lab operator",
    );

    // Alice makes her key on her machine; the lab operator approves her CSR.
    let alice_dir = work.path().join("alice");
    let req = ok(
        &WARDEN.run(&[
            "-o",
            "json",
            "operator",
            "enroll",
            "alice",
            "--env",
            "test",
            "--spec",
            spec_s,
            "--out",
            path_str(&alice_dir),
        ]),
        "operator enroll",
    );
    assert_eq!(req["common_name"], "alice.operator.test.warden.internal");
    let key = alice_dir.join("alice.test.key");
    let csr = alice_dir.join("alice.test.csr");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key_pem = std::fs::read_to_string(&key).unwrap();
    let approved = ok(
        &WARDEN.run(&[
            "-o",
            "json",
            "operator",
            "approve",
            "alice",
            "--env",
            "test",
            "--csr",
            path_str(&csr),
            "--spec",
            spec_s,
            "--lab",
            lab_s,
        ]),
        "operator approve",
    );
    assert_eq!(
        approved["approved"]["role"],
        "auth/warden-operators/certs/alice"
    );
    assert!(
        !approved.to_string().contains(key_pem.trim()),
        "the key is never printed"
    );
    let cert = alice_dir.join("alice.test.crt");
    assert!(cert.exists());
    let listed = ok(
        &WARDEN.run(&[
            "-o", "json", "operator", "list", "--env", "test", "--spec", spec_s, "--lab", lab_s,
        ]),
        "operator list",
    );
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "lab"]);

    // Alice, with only her certificate (no token, no lab): every operator command works.
    let addr = lab.lab().env("test").unwrap().address();
    let ca = layout.ca_bundle();
    let alice = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--spec", spec_s]);
        as_operator(&all, &addr, &ca, &cert, &key)
    };
    let applied = ok(&alice(&["-o", "json", "apply"]), "apply as alice");
    assert!(applied.to_string().contains("\"test\""), "{applied}");
    let put = WARDEN
        .invoke(&["secret", "put", "billing", "config", "--spec", spec_s])
        .env("VAULT_ADDR", &addr)
        .env("VAULT_CACERT", &ca)
        .env("VAULT_CLIENT_CERT", &cert)
        .env("VAULT_CLIENT_KEY", &key)
        .stdin("setting=from-alice\n")
        .output();
    ok(&put, "secret put as alice");
    let got = ok(
        &alice(&[
            "-o", "json", "secret", "get", "billing", "config", "--reveal",
        ]),
        "secret get as alice",
    );
    assert!(got.to_string().contains("from-alice"), "{got}");
    ok(
        &alice(&["-o", "json", "rotate", "signing-key", "token-signing"]),
        "rotate as alice",
    );
    let posture = alice(&["-o", "json", "posture"]);
    assert_ne!(
        posture.status.code(),
        Some(1),
        "posture as alice: {}",
        text(&posture.stderr)
    );
    assert!(
        text(&posture.stdout).contains("token-signing"),
        "{}",
        text(&posture.stdout)
    );
    let packet = work.path().join("packet.json");
    ok(
        &alice(&[
            "-o",
            "json",
            "evidence",
            "export",
            "EV-TOKENS",
            "--out",
            path_str(&packet),
        ]),
        "evidence export as alice",
    );
    assert!(
        std::fs::read_to_string(&packet)
            .unwrap()
            .contains("EV-TOKENS")
    );

    // What the operator policy does not grant is refused, to alice and the lab operator alike.
    let op = operator_client(&addr, &ca, &cert, &key, "alice")
        .await
        .expect("alice logs in");
    assert_refused(&op).await;
    assert_refused(&lab.client("test")).await;

    // Removed: her certificate no longer logs in. The last operator cannot be removed.
    ok(
        &WARDEN.run(&[
            "-o", "json", "operator", "remove", "alice", "--env", "test", "--spec", spec_s,
            "--lab", lab_s,
        ]),
        "operator remove",
    );
    let err = operator_client(&addr, &ca, &cert, &key, "alice")
        .await
        .expect_err("a removed operator must not log in");
    assert!(matches!(err.status(), Some(400 | 403)), "{err}");
    let refused = as_operator(
        &["secret", "get", "billing", "config", "--spec", spec_s],
        &addr,
        &ca,
        &cert,
        &key,
    );
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
    let last = WARDEN.run(&[
        "operator", "remove", "lab", "--env", "test", "--spec", spec_s, "--lab", lab_s,
    ]);
    assert_eq!(last.status.code(), Some(1));
    assert!(
        text(&last.stderr).contains("last operator"),
        "{}",
        text(&last.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_uses_the_root_token_once_and_revokes_it() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dev = BaoDev::start_tls().await;
    let ca = dev.ca_cert_path().expect("TLS dev server").to_path_buf();
    let root = Client::new(
        ClientConfig::new(dev.addr().parse().unwrap())
            .with_ca_file(&ca)
            .unwrap()
            .with_token(dev.root_token().clone()),
    )
    .unwrap();
    // What exists before Warden: a PKI mount with an issuer (the custodians' ceremony).
    root.enable_secrets_engine(
        "pki_int",
        "pki",
        &warden_bao::MountOptions::default()
            .with_max_lease_ttl(std::time::Duration::from_secs(365 * 24 * 3600)),
    )
    .await
    .unwrap();
    root.write(
        "pki_int/root/generate/internal",
        &json!({ "common_name": "bootstrap test CA", "ttl": "8760h" }),
        Idempotent::No,
    )
    .await
    .unwrap();

    let work = tempfile::tempdir().unwrap();
    // Names of Warden's policies carry a prefix here, so "outside Warden's names" is testable.
    let spec_text = SPEC
        .replacen(
            "version = 1\n",
            "version = 1\n\n[naming]\npolicy = \"app-<app>\"\nops_policy = \"ops-<app>\"\n",
            1,
        )
        .replacen(
            "[environments.test]\n",
            &format!(
                "[environments.test]\naddress = \"{}\"\nca_cert = \"{}\"\n",
                dev.addr(),
                ca.display()
            ),
            1,
        );
    let spec = work.path().join("warden.toml");
    std::fs::write(&spec, &spec_text).unwrap();
    let spec_s = path_str(&spec);

    let dir = work.path().join("first");
    ok(
        &WARDEN.run(&[
            "operator",
            "enroll",
            "first",
            "--env",
            "test",
            "--spec",
            spec_s,
            "--out",
            path_str(&dir),
        ]),
        "enroll",
    );
    let token_file = work.path().join("root-token");
    std::fs::write(
        &token_file,
        format!(
            "{}\n",
            warden_bao::ExposeSecret::expose_secret(dev.root_token())
        ),
    )
    .unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Refused without a root token source, before anything is written.
    // The server's address and CA come from VAULT_ADDR/VAULT_CACERT (no client certificate
    // yet: the root token is the credential).
    let with_addr = |args: &[&str]| {
        WARDEN
            .invoke(args)
            .env("VAULT_ADDR", dev.addr())
            .env("VAULT_CACERT", &ca)
            .output()
    };
    let none = with_addr(&[
        "bootstrap",
        "--env",
        "test",
        "--spec",
        spec_s,
        "--operator",
        "first",
        "--csr",
        path_str(&dir.join("first.test.csr")),
    ]);
    assert_eq!(none.status.code(), Some(1));
    assert!(
        text(&none.stderr).contains("--root-token-file"),
        "{}",
        text(&none.stderr)
    );

    let out = ok(
        &with_addr(&[
            "-o",
            "json",
            "bootstrap",
            "--env",
            "test",
            "--spec",
            spec_s,
            "--root-token-file",
            path_str(&token_file),
            "--operator",
            "first",
            "--csr",
            path_str(&dir.join("first.test.csr")),
        ]),
        "bootstrap",
    );
    assert_eq!(out["bootstrap"]["root_revoked"], true, "{out}");
    let token = warden_bao::ExposeSecret::expose_secret(dev.root_token()).to_owned();
    assert!(
        !out.to_string().contains(&token),
        "the root token is never printed"
    );

    // The root token no longer exists.
    let err = root
        .token_lookup_self()
        .await
        .expect_err("root token must be revoked");
    assert_eq!(err.status(), Some(403), "{err}");

    // The first operator applies with their certificate alone; other mounts and policy names
    // are out of reach.
    let (cert, key) = (dir.join("first.test.crt"), dir.join("first.test.key"));
    ok(
        &as_operator(&["apply", "--spec", spec_s], dev.addr(), &ca, &cert, &key),
        "apply as the first operator",
    );
    let op = operator_client(dev.addr(), &ca, &cert, &key, "first")
        .await
        .expect("first operator logs in");
    let foreign = op
        .read("secret/data/anything")
        .await
        .expect_err("the dev server's secret/ mount is not Warden's");
    assert_eq!(foreign.status(), Some(403), "{foreign}");
    let outside = op
        .put_policy("evil", "path \"*\" { capabilities = [\"sudo\"] }")
        .await
        .expect_err("a policy outside Warden's names");
    assert_eq!(outside.status(), Some(403), "{outside}");
    op.read_policy("app-billing")
        .await
        .expect("apply wrote Warden's own policy name");
    assert_refused(&op).await;
}
