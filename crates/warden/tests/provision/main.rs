//! End-to-end: `warden plan | apply | lint` against a real lab (OpenBao over HTTPS + mTLS),
//! and what the provisioned identities can then actually do — each logging in with its own
//! credential.
//!
//! Four labs in all (each ≈ 10 s to start): convergence (with bad specs first), the permission
//! matrix, prune, hand changes (lint and drift). Every lab is stopped when its test ends, also
//! on panic. Helpers live beside this file: `support` (spec variants, server snapshots),
//! `matrix` (the table), `cases` (what the matrix tries); the logins per kind of identity are
//! `warden_testkit::identity`.

mod cases;
mod matrix;
mod support;

use serde_json::{Value, json};
use warden_bao::{Client, Idempotent};
use warden_testkit::LabEnv;

use cases::{issuance_constraints, operations, refused_and_cross_env_logins};
use matrix::{Case, Matrix, Outcome, classify_login, render_cases};
use support::{
    EXAMPLE, WARDEN, changes, counts, example_spec, example_with_ci_key, example_without_ledger,
    exists, replace_once, snapshot, warden, write_file,
};
use warden_testkit::identity::{
    CiSigner, EnvAccess, approle_credentials, ci_claims, enroll, login_approle, login_cert,
    login_jwt,
};

const ISSUER: &str = "https://gitea.warden.internal";
const TEST_DOMAIN: &str = "test.warden.internal";

fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("warden-provision-")
        .tempdir()
        .expect("temp dir")
}

/// 1-based line and column of the first `needle` in `text`.
fn position(text: &str, needle: &str) -> (usize, usize) {
    let offset = text.find(needle).expect("needle in text");
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// A spec with a typo or a contradiction is refused by `plan` and `apply` before any server
/// is contacted; then the shipped example converges in one apply, and a second plan and apply
/// find nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_specs_touch_nothing_and_one_apply_converges() {
    install_crypto_provider();
    let lab = LabEnv::start(&["test", "prod"]).await;
    let dir = temp_dir();
    let operators = [lab.client("test"), lab.client("prod")];
    let before = [snapshot(&operators[0]).await, snapshot(&operators[1]).await];

    // A typo: the key is unknown, its position and the right word are named.
    let typo_text = replace_once(
        EXAMPLE,
        "[apps.ledger]\nenvironments",
        "[apps.ledger]\nenvironmnets",
    );
    let typo = write_file(dir.path(), "typo.toml", &typo_text);
    let (line, col) = position(&typo_text, "environmnets");
    // A contradiction: an identity in an environment the spec does not define.
    let unknown_text = replace_once(
        EXAMPLE,
        "[apps.ledger]\nenvironments = [\"test\", \"prod\"]",
        "[apps.ledger]\nenvironments = [\"test\", \"prdo\"]",
    );
    let unknown = write_file(dir.path(), "unknown-env.toml", &unknown_text);
    let (uline, ucol) = position(&unknown_text, "\"prdo\"");

    for cmd in ["plan", "apply"] {
        for json in [false, true] {
            let extra: &[&str] = if json { &["-o", "json"] } else { &[] };
            let run = warden(cmd, &typo, lab.dir(), extra);
            run.expect_code(1);
            let at = format!("{}:{line}:{col}", typo.display());
            for want in [
                at.as_str(),
                "unknown key `environmnets`",
                "did you mean `environments`?",
            ] {
                assert!(
                    run.stderr.contains(want),
                    "{cmd}: stderr lacks {want:?}:\n{}",
                    run.stderr
                );
            }
            let run = warden(cmd, &unknown, lab.dir(), extra);
            run.expect_code(1);
            let at = format!("{}:{uline}:{ucol}", unknown.display());
            for want in [
                at.as_str(),
                "apps.ledger.environments",
                "unknown environment `prdo`",
                "did you mean `prod`?",
            ] {
                assert!(
                    run.stderr.contains(want),
                    "{cmd}: stderr lacks {want:?}:\n{}",
                    run.stderr
                );
            }
        }
    }
    for (op, before) in operators.iter().zip(&before) {
        assert_eq!(
            &snapshot(op).await,
            before,
            "a refused spec changed the server"
        );
    }

    // The example converges in one apply.
    let spec = example_spec();
    let plan = warden("plan", &spec, lab.dir(), &["-o", "json"])
        .ok()
        .json();
    let (creates, updates, deletes) = counts(&plan);
    assert!(creates > 0, "a fresh lab needs creates: {plan}");
    assert_eq!(
        (updates, deletes, plan["conflicts"].as_u64()),
        (0, 0, Some(0))
    );
    assert_eq!(
        plan["lint"],
        json!([]),
        "the example is least-privilege as written"
    );
    for (op, before) in operators.iter().zip(&before) {
        assert_eq!(&snapshot(op).await, before, "plan must only read");
    }

    let applied = warden("apply", &spec, lab.dir(), &["-o", "json"])
        .ok()
        .json();
    assert_eq!(applied["creates"].as_u64(), Some(creates), "{applied}");
    assert_eq!(applied["updates"].as_u64(), Some(0), "{applied}");
    // Every object plus the ownership record per environment: one page, then its head
    // (ADR 0014).
    assert_eq!(applied["writes"].as_u64(), Some(creates + 4), "{applied}");

    let again = warden("plan", &spec, lab.dir(), &["-o", "json"])
        .ok()
        .json();
    assert_eq!(
        counts(&again),
        (0, 0, 0),
        "the second plan must be empty; it has {:#?}",
        again["environments"]
    );
    let text = warden("plan", &spec, lab.dir(), &[]).ok().stdout.clone();
    assert!(text.contains("No changes"), "text plan:\n{text}");

    let second = warden("apply", &spec, lab.dir(), &["-o", "json"])
        .ok()
        .json();
    assert_eq!(second["writes"].as_u64(), Some(0), "{second}");
    assert_eq!(
        (second["creates"].as_u64(), second["updates"].as_u64()),
        (Some(0), Some(0))
    );
}

/// After apply, every identity logs in with its own credential and can do exactly its own
/// operations; the matrix of identities × operations is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(
    clippy::print_stdout,
    reason = "the permission matrix is this test's evidence; it is printed for the reviewer"
)]
async fn every_identity_reaches_only_its_own_paths() {
    install_crypto_provider();
    let lab = LabEnv::start(&["test", "prod"]).await;
    let dir = temp_dir();
    let ci = CiSigner::generate();
    write_file(dir.path(), "ci-signing.pem", &ci.public_pem());
    let spec = write_file(
        dir.path(),
        "warden.toml",
        &example_with_ci_key("ci-signing.pem"),
    );
    let applied = warden("apply", &spec, lab.dir(), &["-o", "json"])
        .ok()
        .json();
    assert!(applied["creates"].as_u64() > Some(0), "{applied}");

    let test = EnvAccess::of(&lab, "test");
    let prod = EnvAccess::of(&lab, "prod");
    let op = lab.client("test");
    for secret in [
        "billing/config",
        "billing/stripe",
        "ledger/config",
        "worker/config",
    ] {
        op.write(
            &format!("kvv2/data/{secret}"),
            &json!({ "data": { "seeded-by": "operator" } }),
            Idempotent::Yes,
        )
        .await
        .unwrap_or_else(|e| panic!("seed {secret}: {e}"));
    }

    // Each identity logs in with its own credential.
    let id_cn = |name: &str| format!("{name}.identity.{TEST_DOMAIN}");
    let billing_cert = enroll(&op, "billing-identity", &id_cn("billing")).await;
    let ledger_cert = enroll(&op, "ledger-identity", &id_cn("ledger")).await;
    let edge_cert = enroll(&op, "edge-identity", &id_cn("edge")).await;
    let billing = test.client_with(billing_cert.clone());
    let ledger = test.client_with(ledger_cert.clone());
    let edge = test.client_with(edge_cert.clone());
    // The container and the pipeline present their host's and runner's own transport
    // certificates (ADR 0010), never the operator's.
    let worker = test.transport_client(&op, "worker-host", TEST_DOMAIN).await;
    let pipeline = test.transport_client(&op, "ci-runner", TEST_DOMAIN).await;
    let (role_id, secret_id) = approle_credentials(&op, "worker").await;
    let main_jwt = ci.sign(&ci_claims(
        ISSUER,
        "openbao-test",
        "platform/billing",
        "refs/heads/main",
    ));
    let logins = [
        ("billing", "billing", login_cert(&billing, "billing").await),
        ("ledger", "ledger", login_cert(&ledger, "ledger").await),
        ("edge", "edge", login_cert(&edge, "edge").await),
        (
            "worker",
            "worker",
            login_approle(&worker, &role_id, &secret_id).await,
        ),
        (
            "billing-ci",
            "billing-ops",
            login_jwt(&pipeline, "gitea_cicd_billing", &main_jwt).await,
        ),
    ];

    // Each token carries exactly its identity's policy — never `default`.
    let mut login_cases = Vec::new();
    for (name, policy, result) in &logins {
        let auth = result
            .as_ref()
            .unwrap_or_else(|e| panic!("{name} cannot log in with its own credential: {e}"));
        assert_eq!(auth.token_policies, [*policy], "{name}: {auth:?}");
        assert!(
            !auth.policies.iter().any(|p| p == "default"),
            "{name}: {auth:?}"
        );
        let looked: Value = op
            .write(
                "auth/token/lookup-accessor",
                &json!({ "accessor": auth.accessor }),
                Idempotent::Yes,
            )
            .await
            .expect("lookup-accessor")
            .and_then(|s| s.data)
            .expect("token data");
        assert_eq!(looked["policies"], json!([policy]), "{name}: {looked}");
        login_cases.push(Case {
            label: format!("{name}: own credential"),
            expect_ok: true,
            outcome: Outcome::Ok,
        });
    }

    let identities: [(&str, &Client); 5] = [
        ("billing", &billing),
        ("ledger", &ledger),
        ("edge", &edge),
        ("worker", &worker),
        ("billing-ci", &pipeline),
    ];
    // Before the matrix, whose last column revokes every identity's token.
    let constraints = issuance_constraints(&billing, &edge).await;
    let matrix = Matrix::run(&identities, operations()).await;
    for (name, client) in identities {
        let after = client.token_lookup_self().await;
        assert!(
            after
                .as_ref()
                .is_err_and(warden_bao::Error::is_permission_denied),
            "{name}'s token still works after revoke-self: {after:?}"
        );
    }

    let prod_op = lab.client("prod");
    login_cases.extend(refused_and_cross_env_logins(&test, &prod, &op, &prod_op, &ci).await);
    let cert_only = test.client_with(billing_cert);
    let unnamed = cert_only
        .login_cert("cert", None)
        .await
        .map(|a| a.token_policies);
    login_cases.push(Case {
        label: "billing: cert, no role named → exactly billing's role".into(),
        expect_ok: true,
        outcome: match &unnamed {
            Ok(p) if p == &["billing".to_owned()] => Outcome::Ok,
            Ok(p) => Outcome::Failed(format!("mapped to policies {p:?}")),
            Err(_) => classify_login(&unnamed),
        },
    });

    println!(
        "\nPermission matrix (environment test):\n{}",
        matrix.render()
    );
    println!("{}", render_cases("login", &login_cases));
    println!("{}", render_cases("certificate request", &constraints));
    let mut wrong = matrix.mismatches();
    wrong.extend(
        login_cases
            .iter()
            .chain(&constraints)
            .filter(|c| !c.good())
            .map(|c| format!("{}: {:?}", c.label, c.outcome)),
    );
    assert!(
        wrong.is_empty(),
        "cells differ from the identity model:\n{}",
        wrong.join("\n")
    );
}

/// `--prune` removes exactly what Warden created for an identity that left the spec, and
/// nothing it did not create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_removes_exactly_the_departed_identity() {
    install_crypto_provider();
    let lab = LabEnv::start(&["test"]).await;
    let dir = temp_dir();
    let env = ["--env", "test"];
    let json_env = ["--env", "test", "-o", "json"];
    warden("apply", &example_spec(), lab.dir(), &json_env).ok();
    let op = lab.client("test");
    op.put_policy(
        "hand-made",
        "path \"kvv2/data/hand/config\" {\n  capabilities = [\"read\"]\n}\n",
    )
    .await
    .expect("operator writes a policy by hand");

    let spec = write_file(dir.path(), "warden.toml", &example_without_ledger());
    let ledger_ids = [
        "cert-role:auth/cert/certs/ledger",
        "pki-role:pki_int/roles/ledger",
        "pki-role:pki_int/roles/ledger-identity",
        "policy:sys/policies/acl/ledger",
    ];
    let ledger_paths: Vec<&str> = ledger_ids
        .iter()
        .map(|id| id.split_once(':').expect("kind:path").1)
        .collect();

    // Without --prune: kept and listed, nothing deleted. The only updates are the registry
    // entries of the purposes that covered ledger's credentials and their one page each
    // (their lists shrink; ADR 0014), and serve's policy, which no longer reads ledger's
    // secret metadata or delivery report (ADR 0026: generated from the spec).
    let plan = warden("plan", &spec, lab.dir(), &json_env).ok().json();
    assert_eq!(counts(&plan), (0, 7, 0), "{plan:#}");
    let mut updated: Vec<String> = changes(&plan)
        .into_iter()
        .map(|(action, path)| {
            assert_eq!(action, "update");
            path
        })
        .collect();
    updated.sort();
    assert_eq!(
        updated,
        [
            "sys/policies/acl/warden-serve",
            "warden/data/pages/registry/app-config/0",
            "warden/data/pages/registry/service-tls/0",
            "warden/data/pages/registry/workload-identity/0",
            "warden/data/registry/app-config",
            "warden/data/registry/service-tls",
            "warden/data/registry/workload-identity",
        ],
        "{plan:#}"
    );
    let orphans: Vec<&str> = plan["environments"][0]["orphans"]
        .as_array()
        .expect("orphans")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(orphans, ledger_ids, "{plan:#}");
    let text = warden("plan", &spec, lab.dir(), &env).ok().stdout.clone();
    assert!(
        text.contains("--prune removes") && text.contains("policy:sys/policies/acl/ledger"),
        "{text}"
    );
    let applied = warden("apply", &spec, lab.dir(), &json_env).ok().json();
    assert_eq!(applied["deletes"].as_u64(), Some(0), "{applied}");
    for path in &ledger_paths {
        assert!(exists(&op, path).await, "{path} deleted without --prune");
    }

    // With --prune: exactly ledger's four objects.
    let mut prune_env = json_env.to_vec();
    prune_env.push("--prune");
    let plan = warden("plan", &spec, lab.dir(), &prune_env).ok().json();
    assert_eq!(counts(&plan), (0, 0, 4), "{plan:#}");
    let mut deleted: Vec<String> = changes(&plan)
        .into_iter()
        .map(|(action, path)| {
            assert_eq!(action, "delete");
            path
        })
        .collect();
    deleted.sort();
    assert_eq!(deleted, ledger_paths, "{plan:#}");
    let applied = warden("apply", &spec, lab.dir(), &prune_env).ok().json();
    assert_eq!(applied["deletes"].as_u64(), Some(4), "{applied}");
    for path in &ledger_paths {
        assert!(!exists(&op, path).await, "{path} survived --prune");
    }
    for path in [
        "sys/policies/acl/hand-made",
        "sys/policies/acl/billing",
        "sys/policies/acl/billing-ops",
        "sys/policies/acl/edge",
        "sys/policies/acl/worker",
        "pki_int/roles/billing",
        "pki_int/roles/billing-identity",
        "pki_int/roles/edge-identity",
        "auth/cert/certs/billing",
        "auth/cert/certs/edge",
        "auth/approle/role/worker",
        "auth/jwt/role/gitea_cicd_billing",
    ] {
        assert!(exists(&op, path).await, "{path} was removed by --prune");
    }
    let mounts = op.list_mounts().await.expect("mounts");
    for m in ["warden/", "kvv2/", "kv/", "transit/", "pki_int/"] {
        assert!(mounts.contains_key(m), "mount {m} gone: {mounts:?}");
    }

    for extra in [&json_env[..], &prune_env[..]] {
        let plan = warden("plan", &spec, lab.dir(), extra).ok().json();
        assert_eq!(counts(&plan), (0, 0, 0), "{plan:#}");
        assert_eq!(plan["environments"][0]["orphans"], json!([]), "{plan:#}");
    }
}

/// Hand changes by an operator: `lint` reads live policies and finds one broadened by hand (a
/// waiver with a reason in the spec turns the finding into a report), `plan` shows the update
/// that restores it and `apply` restores it. Then the same for hand-widened roles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_broadened_policy_and_roles_are_found_and_restored() {
    install_crypto_provider();
    let lab = LabEnv::start(&["test"]).await;
    let dir = temp_dir();
    let spec = example_spec();
    let env = ["--env", "test"];
    let json_env = ["--env", "test", "-o", "json"];
    warden("apply", &spec, lab.dir(), &json_env).ok();
    let clean = warden("lint", &spec, lab.dir(), &env).ok().stdout.clone();
    assert!(clean.contains("No least-privilege findings"), "{clean}");

    // The operator broadens billing's policy by hand.
    let op = lab.client("test");
    let original = op.read_policy("billing").await.expect("billing policy");
    let broadened =
        format!("{original}\npath \"kvv2/data/*\" {{\n  capabilities = [\"read\"]\n}}\n");
    op.put_policy("billing", &broadened)
        .await
        .expect("broaden billing");

    let run = warden("lint", &spec, lab.dir(), &json_env);
    run.expect_code(3);
    let findings = run.json();
    let live_billing: Vec<(&str, bool)> = findings
        .as_array()
        .expect("findings array")
        .iter()
        .filter(|f| f["identity"] == "billing" && f["source"] == "live")
        .map(|f| (f["rule"].as_str().unwrap_or(""), f["waived"].is_null()))
        .collect();
    for rule in ["wildcard-beyond-prefix", "cross-app-read"] {
        assert!(
            live_billing.contains(&(rule, true)),
            "lint misses {rule} for billing: {findings:#}"
        );
    }
    assert!(
        findings
            .as_array()
            .expect("array")
            .iter()
            .all(|f| f["identity"] == "billing" && f["source"] == "live"),
        "only billing's live policy is at fault: {findings:#}"
    );
    let text = warden("lint", &spec, lab.dir(), &env);
    text.expect_code(3);
    assert!(
        text.stdout
            .contains("[wildcard-beyond-prefix] test/billing live (ERROR)")
            && text
                .stdout
                .contains("[cross-app-read] test/billing live (ERROR)"),
        "{}",
        text.stdout
    );

    // Waived in the spec, with a reason: reported, not blocking.
    let reason = "billing reconciles every team's config during the migration";
    let waived_text = format!(
        "{EXAMPLE}\n[[waivers]]\nrule = \"wildcard-beyond-prefix\"\nidentity = \"billing\"\nreason = \"{reason}\"\n\n[[waivers]]\nrule = \"cross-app-read\"\nidentity = \"billing\"\nreason = \"{reason}\"\n"
    );
    let waived_spec = write_file(dir.path(), "waived.toml", &waived_text);
    let waived = warden("lint", &waived_spec, lab.dir(), &env);
    waived.ok();
    for rule in ["wildcard-beyond-prefix", "cross-app-read"] {
        let line = format!("[{rule}] test/billing live (waived: {reason})");
        assert!(waived.stdout.contains(&line), "{}", waived.stdout);
    }

    // plan shows the restoring update; apply restores; lint is clean again.
    let plan = warden("plan", &spec, lab.dir(), &json_env).ok().json();
    assert_eq!(counts(&plan), (0, 1, 0), "{plan:#}");
    assert_eq!(
        changes(&plan),
        [("update".to_owned(), "sys/policies/acl/billing".to_owned())]
    );
    warden("apply", &spec, lab.dir(), &json_env).ok();
    let restored = op.read_policy("billing").await.expect("billing policy");
    assert!(!restored.contains("kvv2/data/*"), "{restored}");
    assert_eq!(restored.trim(), original.trim());
    let clean = warden("lint", &spec, lab.dir(), &env).ok().stdout.clone();
    assert!(clean.contains("No least-privilege findings"), "{clean}");

    // Roles widened by hand in fields the spec never mentions are drift too: billing's server
    // certificates made valid for client auth and code signing with any spiffe URI, and its
    // cert-auth tokens made periodic (renewable without a maximum).
    let role_path = "pki_int/roles/billing";
    let mut role = op
        .read(role_path)
        .await
        .expect("read billing's PKI role")
        .data
        .expect("role data");
    role["code_signing_flag"] = json!(true);
    role["allowed_uri_sans"] = json!(["spiffe://*"]);
    role["ext_key_usage"] = json!(["ClientAuth"]);
    op.write(role_path, &role, Idempotent::Yes)
        .await
        .expect("operator widens billing's PKI role");
    let cert_role = "auth/cert/certs/billing";
    op.write(
        cert_role,
        &json!({ "token_period": "768h" }),
        Idempotent::Yes,
    )
    .await
    .expect("operator makes billing's tokens periodic");
    let plan = warden("plan", &spec, lab.dir(), &json_env).ok().json();
    let planned = changes(&plan);
    for path in [role_path, cert_role] {
        assert!(
            planned.contains(&("update".to_owned(), path.to_owned())),
            "hand-widened {path} is not planned as an update (drift in a field the spec does \
             not set is invisible): {plan:#}"
        );
    }
    warden("apply", &spec, lab.dir(), &json_env).ok();
    let role = op.read(role_path).await.expect("role").data.expect("data");
    assert_eq!(role["code_signing_flag"], json!(false), "{role:#}");
    assert_eq!(role["allowed_uri_sans"], json!([]), "{role:#}");
    assert_eq!(role["ext_key_usage"], json!([]), "{role:#}");
    let cert = op
        .read(cert_role)
        .await
        .expect("cert role")
        .data
        .expect("data");
    assert_eq!(cert["token_period"], json!(0), "{cert:#}");
}

/// Regression: `warden … | head` must not panic when the reader goes away. Every command's
/// output goes through the same printer; offline lint reaches it without a server.
#[test]
fn output_into_a_closed_pipe_does_not_panic() {
    let mut child = WARDEN
        .command(&["lint", "--offline", "--spec"])
        .arg(example_spec())
        .args(["-o", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start warden");
    // Close our end before the child writes: its first write meets a closed pipe.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait for warden");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && out.status.code() != Some(101),
        "warden panicked writing to a closed pipe ({:?}):\n{stderr}",
        out.status
    );
}

/// A naming template with a `..` segment would render policy paths that leave the identity's
/// own prefix (`kvv2/data/billing/../ledger/config`); `lint` and `plan` refuse the spec at the
/// template, with what to write instead, before any server is contacted.
#[test]
fn lint_and_plan_refuse_a_dotdot_naming_template() {
    let dir = temp_dir();
    let text = replace_once(
        EXAMPLE,
        "kv_prefix    = \"<app>\"",
        "kv_prefix    = \"<app>/../ledger\"",
    );
    let spec = write_file(dir.path(), "dotdot.toml", &text);
    let (line, col) = position(&text, "\"<app>/../ledger\"");
    for args in [&["lint", "--offline"][..], &["plan"][..]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(args)
            .arg("--spec")
            .arg(&spec)
            .env_remove("WARDEN_LAB_DIR")
            .output()
            .expect("run warden");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        let at = format!(
            "{}:{line}:{col}: naming.kv_prefix: `<app>/../ledger` has a `..` path segment",
            spec.display()
        );
        assert!(
            stderr.contains(&at),
            "{args:?}: stderr lacks {at:?}:\n{stderr}"
        );
        assert!(
            stderr.contains("help: write names separated by single '/'"),
            "{args:?}: {stderr}"
        );
    }
}
