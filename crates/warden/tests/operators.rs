//! End-to-end: operators without root (issue 12, item 4) against real OpenBao.
//!
//! - The lab's bootstrap leaves no root token; an operator enrolled with `warden operator
//!   enroll` (key on their machine) and approved by the lab operator runs `apply`, `posture`,
//!   `secret`, `rotate` and `evidence export` with nothing but their certificate; root-only and
//!   foreign paths are refused; once removed, their certificate no longer logs in.
//! - `warden bootstrap` on a server initialised outside Warden uses the root token once: after
//!   it, a lookup with that token fails, and the first operator applies the spec.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

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

/// Where operators log in, and the one policy their token carries.
const OPERATOR: (&str, &str) = ("warden-operators", "warden-operator");
/// Where an operator's planner logs in (ADR 0038), and its one policy.
const PLANNER: (&str, &str) = ("warden-planners", "warden-planner");

/// A client presenting `cert`/`key` at `addr` (trusting `ca`) that has logged in as `role`
/// at `login`'s mount; its token must carry `login`'s policy and nothing else (no `default`).
async fn client_at(
    (addr, ca, cert, key): (&str, &Path, &Path, &Path),
    (mount, policy): (&str, &str),
    role: &str,
) -> Result<Client, warden_bao::Error> {
    let mut cfg = ClientConfig::new(addr.parse().unwrap())
        .with_ca_file(ca)
        .unwrap()
        .with_client_cert_files(cert, key)
        .unwrap();
    cfg.retry.startup_timeout = std::time::Duration::from_secs(2);
    let client = Client::new(cfg).unwrap();
    let auth = client.login_cert(mount, Some(role)).await?;
    assert_eq!(auth.token_policies, [policy], "{policy} only, no default");
    client.set_token(auth.client_token);
    Ok(client)
}

/// The planner reads what plan reads and nothing else: every write, every value and every
/// read that mints something is refused.
async fn assert_planner_reads_only(planner: &Client) {
    planner
        .read("pki_int/roles/billing-identity")
        .await
        .expect("the planner reads PKI roles");
    planner
        .list("auth/cert/certs")
        .await
        .expect("the planner lists cert roles");
    let denied = |what: &str, r| refused(&format!("{what} (the planner)"), r);
    let w = |path, body| write(planner, path, body);
    denied(
        "write a cert role",
        w("auth/cert/certs/intruder", json!({"certificate": "x"})).await,
    );
    denied(
        "write a policy",
        planner
            .put_policy("intruder", "path \"*\" { capabilities = [\"read\"] }")
            .await,
    );
    denied(
        "sign a certificate",
        w("pki_int/sign/billing", json!({"csr": "x"})).await,
    );
    denied(
        "read an app secret",
        planner
            .read("kvv2/data/apps/billing/config")
            .await
            .map(drop),
    );
    denied(
        "take a snapshot",
        planner.read("sys/storage/raft/snapshot").await.map(drop),
    );
}

/// `r` is OpenBao's 403 for `what`.
#[track_caller]
fn refused(what: &str, r: Result<(), warden_bao::Error>) {
    match r {
        Err(e) => assert_eq!(e.status(), Some(403), "{what}: {e}"),
        Ok(()) => panic!("{what}: must be refused"),
    }
}

/// Writes `body` to `path` as `client`, the answer dropped.
async fn write(client: &Client, path: &str, body: Value) -> Result<(), warden_bao::Error> {
    client.write(path, &body, Idempotent::No).await.map(drop)
}

/// Every path here is refused to an operator: root-only paths, foreign mounts, policy writes
/// outside Warden's names.
async fn assert_refused(op: &Client) {
    let denied = |what: &str, r| refused(&format!("{what} (an operator)"), r);
    let w = |path, body| write(op, path, body);
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

/// `warden operator enroll NAME` into `dir`, then `approve` by the lab operator: the new
/// operator's certificate and key.
fn enroll_and_approve(name: &str, spec: &str, lab: &str, dir: &Path) -> (PathBuf, PathBuf) {
    let req = ok(
        &WARDEN.run(&[
            "-o",
            "json",
            "operator",
            "enroll",
            name,
            "--env",
            "test",
            "--spec",
            spec,
            "--out",
            path_str(dir),
        ]),
        "operator enroll",
    );
    assert_eq!(
        req["common_name"],
        format!("{name}.operator.test.warden.internal")
    );
    let key = dir.join(format!("{name}.test.key"));
    let csr = dir.join(format!("{name}.test.csr"));
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
            name,
            "--env",
            "test",
            "--csr",
            path_str(&csr),
            "--spec",
            spec,
            "--lab",
            lab,
        ]),
        "operator approve",
    );
    assert_eq!(
        approved["approved"]["role"],
        format!("auth/warden-operators/certs/{name}")
    );
    assert_eq!(
        approved["planner_role"],
        format!("auth/warden-planners/certs/{name}"),
        "approve mirrors the role as a planner role (ADR 0038)"
    );
    assert!(
        !approved.to_string().contains(key_pem.trim()),
        "the key is never printed"
    );
    let cert = dir.join(format!("{name}.test.crt"));
    assert!(cert.exists());
    (cert, key)
}

/// A person at their shell: the server's address and trust anchor, their certificate and key.
struct Person<'a> {
    addr: &'a str,
    ca: &'a Path,
    cert: &'a Path,
    key: &'a Path,
    spec: &'a str,
}

impl Person<'_> {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--spec", self.spec]);
        let mut run = WARDEN
            .invoke(&all)
            .env("VAULT_ADDR", self.addr)
            .env("VAULT_CACERT", self.ca)
            .env("VAULT_CLIENT_CERT", self.cert)
            .env("VAULT_CLIENT_KEY", self.key);
        if let Some(input) = stdin {
            run = run.stdin(input);
        }
        run.output()
    }
}

/// `apply`, `secret put/get`, `rotate`, `posture` and `evidence export`, as `who`.
fn every_command_works_as(who: &Person<'_>, work: &Path) {
    let applied = ok(&who.run(&["-o", "json", "apply"], None), "apply");
    assert!(applied.to_string().contains("\"test\""), "{applied}");
    let put = who.run(
        &["secret", "put", "billing", "config"],
        Some("setting=from-alice\n"),
    );
    ok(&put, "secret put");
    let got = ok(
        &who.run(
            &[
                "-o", "json", "secret", "get", "billing", "config", "--reveal",
            ],
            None,
        ),
        "secret get",
    );
    assert!(got.to_string().contains("from-alice"), "{got}");
    ok(
        &who.run(
            &["-o", "json", "rotate", "signing-key", "token-signing"],
            None,
        ),
        "rotate",
    );
    let posture = who.run(&["-o", "json", "posture"], None);
    assert_ne!(
        posture.status.code(),
        Some(1),
        "posture: {}",
        text(&posture.stderr)
    );
    assert!(
        text(&posture.stdout).contains("token-signing"),
        "{}",
        text(&posture.stdout)
    );
    let packet = work.join("packet.json");
    ok(
        &who.run(
            &[
                "-o",
                "json",
                "evidence",
                "export",
                "EV-TOKENS",
                "--out",
                path_str(&packet),
            ],
            None,
        ),
        "evidence export",
    );
    assert!(
        std::fs::read_to_string(&packet)
            .unwrap()
            .contains("EV-TOKENS")
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
    let (cert, key) = enroll_and_approve("alice", spec_s, lab_s, &work.path().join("alice"));
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
    let alice = Person {
        addr: &addr,
        ca: &ca,
        cert: &cert,
        key: &key,
        spec: spec_s,
    };
    // Approve mirrored her role at once: her first plan, before any apply of hers, reads as
    // her planner.
    let first = ok(
        &alice.run(&["-o", "json", "plan"], None),
        "alice's first plan",
    );
    assert_eq!(first["environments"][0]["login"], "planner", "{first}");

    every_command_works_as(&alice, work.path());

    // Her apply kept her role mirrored as a planner role: her plans read with a read-only login.
    let planned = ok(&alice.run(&["-o", "json", "plan"], None), "plan as alice");
    assert_eq!(planned["environments"][0]["login"], "planner", "{planned}");
    let planner = client_at((&addr, &ca, &cert, &key), PLANNER, "alice")
        .await
        .expect("alice logs in as her planner");
    assert_planner_reads_only(&planner).await;

    // An environment without the lab operator's planner role (as before ADR 0038): plan reads
    // with the operator's login and says so, and apply puts the role back.
    lab.client("test")
        .delete("auth/warden-planners/certs/lab")
        .await
        .unwrap();
    let plan = |what: &str| {
        ok(
            &WARDEN.run(&["-o", "json", "plan", "--spec", spec_s, "--lab", lab_s]),
            what,
        )
    };
    let fallback = plan("plan without a planner role");
    let env = &fallback["environments"][0];
    assert!(
        env["login"].as_str().unwrap().starts_with("operator ("),
        "{fallback}"
    );
    assert!(
        env["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["path"] == "auth/warden-planners/certs/lab" && c["action"] == "create"),
        "{fallback}"
    );
    let apply = |what: &str| {
        ok(
            &WARDEN.run(&["apply", "--spec", spec_s, "--lab", lab_s]),
            what,
        )
    };
    apply("apply puts the planner role back");
    assert_eq!(plan("plan again")["environments"][0]["login"], "planner");

    // A hand-edited planner policy is not trusted to read (it could hide objects or lack a
    // grant): plan reads as the operator and says why, and apply rewrites the policy.
    let operator = lab.client("test");
    let written = operator.read_policy("warden-planner").await.unwrap();
    for (edit, says) in [
        (
            format!("{written}\npath \"kvv2/*\" {{ capabilities = [\"read\"] }}\n"),
            "not what apply writes",
        ),
        (
            "path \"sys/mounts\" { capabilities = [\"read\"] }".to_owned(),
            "cannot read the policy warden-planner",
        ),
    ] {
        operator.put_policy("warden-planner", &edit).await.unwrap();
        let edited = plan("plan with an edited planner policy");
        let login = edited["environments"][0]["login"].as_str().unwrap();
        assert!(
            login.starts_with("operator (") && login.contains(says),
            "{edited}"
        );
        apply("apply rewrites the planner policy");
        assert_eq!(plan("plan after")["environments"][0]["login"], "planner");
    }

    // Every constraint of an operator role is mirrored (the planner role is never wider), a
    // role at the operators' mount that is not an operator's is not mirrored, and a planner
    // role whose operator role was deleted by hand is deleted by the next apply, --prune or
    // not.
    let mut role = operator
        .read("auth/warden-operators/certs/alice")
        .await
        .unwrap()
        .data
        .unwrap();
    role["allowed_organizational_units"] = json!(["sre"]);
    operator
        .write("auth/warden-operators/certs/alice", &role, Idempotent::Yes)
        .await
        .unwrap();
    role["token_policies"] = json!(["warden-registry-reader"]);
    role["allowed_organizational_units"] = json!([]);
    operator
        .write(
            "auth/warden-operators/certs/auditor",
            &role,
            Idempotent::Yes,
        )
        .await
        .unwrap();
    apply("apply mirrors the constraint");
    let twin = operator
        .read("auth/warden-planners/certs/alice")
        .await
        .unwrap()
        .data
        .unwrap();
    assert_eq!(
        twin["allowed_organizational_units"],
        json!(["sre"]),
        "{twin}"
    );
    let err = client_at((&addr, &ca, &cert, &key), PLANNER, "alice")
        .await
        .expect_err("alice's certificate has no OU: refused as planner too");
    assert!(matches!(err.status(), Some(400 | 403)), "{err}");
    let auditor = operator.read("auth/warden-planners/certs/auditor").await;
    assert!(
        auditor.as_ref().is_err_and(|e| e.is_not_found()),
        "a non-operator role is not mirrored: {auditor:?}"
    );
    operator
        .delete("auth/warden-operators/certs/auditor")
        .await
        .unwrap();
    role["token_policies"] = json!(["warden-operator"]);
    role["allowed_organizational_units"] = json!([]);
    operator
        .write("auth/warden-operators/certs/alice", &role, Idempotent::Yes)
        .await
        .unwrap();
    operator
        .write(
            "auth/warden-operators/certs/ghost",
            &json!({
                "certificate": role["certificate"],
                "allowed_common_names": ["ghost.operator.test.warden.internal"],
                "token_policies": ["warden-operator"],
            }),
            Idempotent::Yes,
        )
        .await
        .unwrap();
    apply("apply mirrors ghost");
    operator
        .delete("auth/warden-operators/certs/ghost")
        .await
        .unwrap();
    let stale = plan("plan after ghost's role went");
    assert!(
        stale["environments"][0]["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["path"] == "auth/warden-planners/certs/ghost" && c["action"] == "delete"),
        "{stale}"
    );
    apply("apply deletes ghost's planner role");
    let ghost = operator.read("auth/warden-planners/certs/ghost").await;
    assert!(ghost.is_err_and(|e| e.is_not_found()));
    client_at((&addr, &ca, &cert, &key), PLANNER, "alice")
        .await
        .expect("alice plans again once her OU constraint is gone");

    // What the operator policy does not grant is refused, to alice and the lab operator alike.
    let op = client_at((&addr, &ca, &cert, &key), OPERATOR, "alice")
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
    let err = client_at((&addr, &ca, &cert, &key), OPERATOR, "alice")
        .await
        .expect_err("a removed operator must not log in");
    assert!(matches!(err.status(), Some(400 | 403)), "{err}");
    let err = client_at((&addr, &ca, &cert, &key), PLANNER, "alice")
        .await
        .expect_err("nor read as her planner");
    assert!(matches!(err.status(), Some(400 | 403)), "{err}");
    let refused = alice.run(&["secret", "get", "billing", "config"], None);
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

/// A TLS dev server holding what exists before Warden (a PKI mount with an issuer, as the
/// custodians' ceremony leaves it), and a client with its root token.
async fn dev_server_before_warden() -> (BaoDev, PathBuf, Client) {
    let dev = BaoDev::start_tls().await;
    let ca = dev.ca_cert_path().expect("TLS dev server").to_path_buf();
    let root = Client::new(
        ClientConfig::new(dev.addr().parse().unwrap())
            .with_ca_file(&ca)
            .unwrap()
            .with_token(dev.root_token().clone()),
    )
    .unwrap();
    let year = std::time::Duration::from_secs(365 * 24 * 3600);
    root.enable_secrets_engine(
        "pki_int",
        "pki",
        &warden_bao::MountOptions::default().with_max_lease_ttl(year),
    )
    .await
    .unwrap();
    // An intermediate in `pki_int` under a root elsewhere, as the offline CA's ceremony
    // leaves it (Warden pins cert auth to the mount's intermediates, never to a root; ADR
    // 0029). The root lives in a second mount here only to keep the test short.
    root.enable_secrets_engine(
        "pki_root",
        "pki",
        &warden_bao::MountOptions::default().with_max_lease_ttl(year),
    )
    .await
    .unwrap();
    root.write(
        "pki_root/root/generate/internal",
        &json!({ "common_name": "bootstrap test root", "ttl": "8760h" }),
        Idempotent::No,
    )
    .await
    .unwrap();
    let csr = root
        .write(
            "pki_int/intermediate/generate/internal",
            &json!({ "common_name": "bootstrap test CA" }),
            Idempotent::No,
        )
        .await
        .unwrap()
        .and_then(|s| s.data)
        .and_then(|d| d.get("csr").and_then(|c| c.as_str()).map(str::to_owned))
        .expect("intermediate CSR");
    let signed = root
        .write(
            "pki_root/root/sign-intermediate",
            &json!({ "csr": csr, "ttl": "4380h", "format": "pem_bundle" }),
            Idempotent::No,
        )
        .await
        .unwrap()
        .and_then(|s| s.data)
        .and_then(|d| {
            d.get("certificate")
                .and_then(|c| c.as_str())
                .map(str::to_owned)
        })
        .expect("signed intermediate");
    root.write(
        "pki_int/intermediate/set-signed",
        &json!({ "certificate": signed }),
        Idempotent::No,
    )
    .await
    .unwrap();
    (dev, ca, root)
}

/// The test spec against `addr`, with policy names carrying a prefix, so that "a policy outside
/// Warden's names" is testable.
fn prefixed_spec(addr: &str, ca: &Path) -> String {
    SPEC.replacen(
        "version = 1\n",
        "version = 1\n\n[naming]\npolicy = \"app-<app>\"\nops_policy = \"ops-<app>\"\n",
        1,
    )
    .replacen(
        "[environments.test]\n",
        &format!(
            "[environments.test]\naddress = \"{addr}\"\nca_cert = \"{}\"\n",
            ca.display()
        ),
        1,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_uses_the_root_token_once_and_revokes_it() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (dev, ca, root) = dev_server_before_warden().await;
    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("warden.toml");
    std::fs::write(&spec, prefixed_spec(dev.addr(), &ca)).unwrap();
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
    let csr = dir.join("first.test.csr");
    // The server's address and CA come from VAULT_ADDR/VAULT_CACERT (no client certificate
    // yet: the root token is the credential). The token goes in on stdin: never a file here.
    let token = warden_bao::ExposeSecret::expose_secret(dev.root_token()).to_owned();
    let bootstrap = |extra: &[&str], stdin: &str| {
        let mut args = vec!["-o", "json", "bootstrap", "--env", "test", "--spec", spec_s];
        args.extend(["--operator", "first", "--csr", path_str(&csr)]);
        args.extend(extra);
        WARDEN
            .invoke(&args)
            .env("VAULT_ADDR", dev.addr())
            .env("VAULT_CACERT", &ca)
            .stdin(stdin.to_owned())
            .output()
    };

    // Refused without a root token source, before anything is written.
    let none = bootstrap(&[], "");
    assert_eq!(none.status.code(), Some(1));
    assert!(
        text(&none.stderr).contains("--root-token-file"),
        "{}",
        text(&none.stderr)
    );
    root.read_policy("warden-operator")
        .await
        .expect_err("nothing was written");

    let out = ok(
        &bootstrap(&["--root-token-stdin"], &format!("{token}\n")),
        "bootstrap",
    );
    assert_eq!(out["bootstrap"]["root_revoked"], true, "{out}");
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
    let first = Person {
        addr: dev.addr(),
        ca: &ca,
        cert: &cert,
        key: &key,
        spec: spec_s,
    };
    ok(&first.run(&["apply"], None), "apply as the first operator");
    let op = client_at((dev.addr(), &ca, &cert, &key), OPERATOR, "first")
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
