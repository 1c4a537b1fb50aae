//! End-to-end: `warden secret` (KV v2 versions, history, rollback; KV v1) and `warden transit`
//! against a real lab (OpenBao over HTTPS + mTLS) provisioned by `warden apply`.
//!
//! One lab for this test (≈ 10 s to start); the steps run in order and each asserts
//! what the server then holds, read back with the operator client. Every value used is a
//! distinctive string, and every run is checked not to print any value it was not asked to.

use std::os::unix::fs::PermissionsExt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use warden_bao::{Client, KvData, SecretValue};

use warden_testkit::cli::{Run, path_str};
use warden_testkit::identity::{CiSigner, EnvAccess, enroll, login_cert};

use super::support::Platform;

/// Who the lab's commands act as (the change records' author): the lab operator's cert-auth
/// login, `<mount>-<display name>`.
const LAB_OPERATOR: &str = "warden-operators-lab";

const V1_DB: &str = "postgres://billing:v1-Sup3r-DB-pass@db/billing";
const V1_MODE: &str = "mode-value-v1-7d1c";
const V2_MODE: &str = "mode-value-BAD-v2-91af";
const V2_DEBUG: &str = "debug-flag-value-v2-5e2b";
const OUTSIDE: &str = "written-outside-warden-c0ffee";
const KV1_VALUE: &str = "kv1-value-4a4a";

/// Every value of a secret the KV steps write; only `--reveal` may print them.
const VALUES: [&str; 5] = [V1_DB, V1_MODE, V2_MODE, V2_DEBUG, OUTSIDE];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_transit_end_to_end() {
    let p = Platform::start(&CiSigner::generate().public_pem()).await;
    let operator = p.lab.client("test");
    kv_put_history_rollback(&p, &operator).await;
    kv_refusals(&p, &operator).await;
    kv_v1(&p, &operator).await;
    transit_encrypt_rotate_retire(&p, &operator).await;
    transit_sign_verify_and_no_export(&p, &operator).await;
    transit_as_the_app(&p, &operator).await;
}

fn hidden(run: &Run) -> &Run {
    for v in VALUES {
        run.never_shows(v);
    }
    run
}

async fn kv_data(operator: &Client, version: u64) -> Vec<(String, serde_json::Value)> {
    operator
        .kv2("kvv2")
        .read("billing/config", Some(version))
        .await
        .unwrap_or_else(|e| panic!("read v{version}: {e}"))
        .data
        .iter()
        .map(|(k, v)| (k.to_owned(), v.expose().clone()))
        .collect()
}

/// put v1 (good), put v2 (bad), history, rollback to v1 → v3 equals v1.
async fn kv_put_history_rollback(p: &Platform, operator: &Client) {
    let secret = ["secret", "put", "billing", "config"];

    // v1 from stdin, as JSON.
    let v1 = json!({ "db_url": V1_DB, "mode": V1_MODE }).to_string();
    let run = p.run(&secret, &["-o", "json"], Some(v1.as_bytes()), &[]);
    let r = hidden(run.ok()).json();
    assert_eq!(r["version"], 1, "{r}");
    assert_eq!(r["keys"]["added"], json!(["db_url", "mode"]), "{r}");
    // The lab operator's own login, not root: after bootstrap nobody acts as root.
    assert_eq!(r["recorded_by"], LAB_OPERATOR, "{r}");

    // v2 from a file, as KEY=VALUE lines: the bad write.
    let file = p.path("v2.env");
    std::fs::write(&file, format!("mode={V2_MODE}\ndebug={V2_DEBUG}\n")).expect("write v2");
    let run = p.run(
        &secret,
        &["--from-file", path_str(&file), "-o", "json"],
        None,
        &[],
    );
    let r = hidden(run.ok()).json();
    assert_eq!(r["version"], 2, "{r}");
    assert_eq!(r["previous_version"], 1, "{r}");
    assert_eq!(
        r["keys"],
        json!({ "added": ["debug"], "changed": ["mode"], "removed": ["db_url"] }),
        "{r}"
    );
    let text = p.run(&secret, &["--from-file", path_str(&file)], None, &[]);
    hidden(text.ok());
    assert!(
        text.stdout
            .contains("unchanged: version 2 already has this content"),
        "the same content again writes nothing:\n{}",
        text.stdout
    );
    let meta = operator
        .kv2("kvv2")
        .metadata("billing/config")
        .await
        .expect("metadata");
    assert_eq!(meta.current_version, 2, "an unchanged put wrote a version");

    // History: who, when, which keys; never a value.
    let run = p.run(
        &["secret", "history", "billing", "config"],
        &["-o", "json"],
        None,
        &[],
    );
    let h = hidden(run.ok()).json();
    let versions = h["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 2, "{h}");
    assert_eq!(versions[0]["version"], 2);
    assert_eq!(versions[0]["state"], "current");
    assert_eq!(versions[0]["by"], LAB_OPERATOR);
    assert_eq!(versions[0]["op"], "put");
    assert_eq!(versions[0]["keys_source"], "recorded");
    assert_eq!(versions[0]["keys"]["removed"], json!(["db_url"]));
    assert_eq!(versions[1]["keys"]["added"], json!(["db_url", "mode"]));
    for v in versions {
        let when = v["created_time"].as_str().expect("created_time");
        assert!(
            when.len() >= 20 && when.contains('T'),
            "created_time is RFC 3339: {when}"
        );
    }
    let run = p.run(&["secret", "history", "billing", "config"], &[], None, &[]);
    hidden(run.ok());
    for want in [
        "v2",
        "v1",
        LAB_OPERATOR,
        "+debug ~mode -db_url",
        "+db_url +mode",
    ] {
        assert!(
            run.stdout.contains(want),
            "history lacks {want:?}:\n{}",
            run.stdout
        );
    }

    // Rollback: refused without confirmation when nobody can answer; nothing written.
    let rollback = ["secret", "rollback", "billing", "config"];
    let run = p.run(&rollback, &["--to-version", "1"], None, &[]);
    hidden(run.expect_code(1))
        .says("without confirmation")
        .says("--yes")
        .says("result   v3 with the content of v1; keys: +db_url ~mode -debug");
    let run = p.run(
        &rollback,
        &["--to-version", "1", "--dry-run", "-o", "json"],
        None,
        &[],
    );
    assert_eq!(hidden(run.ok()).json()["outcome"], "dry-run");
    assert_eq!(
        operator
            .kv2("kvv2")
            .metadata("billing/config")
            .await
            .expect("metadata")
            .current_version,
        2,
        "a refused or dry-run rollback wrote"
    );

    let run = p.run(
        &rollback,
        &["--to-version", "1", "--yes", "-o", "json"],
        None,
        &[],
    );
    let r = hidden(run.ok()).json();
    assert_eq!(r["version"], 3, "{r}");
    assert_eq!(r["restored_from"], 1, "{r}");
    assert_eq!(r["outcome"], "written", "{r}");
    assert_eq!(
        r["keys"],
        json!({ "added": ["db_url"], "changed": ["mode"], "removed": ["debug"] })
    );
    assert_eq!(
        kv_data(operator, 3).await,
        kv_data(operator, 1).await,
        "v3 must equal v1"
    );
    assert_eq!(
        kv_data(operator, 3).await,
        vec![
            ("db_url".to_owned(), json!(V1_DB)),
            ("mode".to_owned(), json!(V1_MODE))
        ]
    );
    let h = p
        .run(
            &["secret", "history", "billing", "config"],
            &["-o", "json"],
            None,
            &[],
        )
        .ok()
        .json();
    assert_eq!(h["versions"][0]["op"], "rollback", "{h}");
    assert_eq!(h["versions"][0]["restored_from"], 1, "{h}");
    assert_eq!(h["versions"][0]["by"], LAB_OPERATOR, "{h}");

    // get: keys and metadata; values only with --reveal.
    let run = p.run(&["secret", "get", "billing", "config"], &[], None, &[]);
    hidden(run.ok());
    let by = format!("by {LAB_OPERATOR}");
    for want in [
        "version 3 of 3",
        by.as_str(),
        "db_url, mode",
        "values hidden",
    ] {
        assert!(
            run.stdout.contains(want),
            "get lacks {want:?}:\n{}",
            run.stdout
        );
    }
    let run = p.run(
        &["secret", "get", "billing", "config"],
        &["-o", "json"],
        None,
        &[],
    );
    let g = hidden(run.ok()).json();
    assert!(g.get("values").is_none(), "{g}");
    assert_eq!(g["keys"], json!(["db_url", "mode"]));
    let run = p.run(
        &["secret", "get", "billing", "config"],
        &["--version", "2", "--reveal", "-o", "json"],
        None,
        &[],
    );
    let g = run.ok().json();
    assert_eq!(
        g["values"],
        json!({ "debug": V2_DEBUG, "mode": V2_MODE }),
        "{g}"
    );
    let run = p.run(
        &["secret", "get", "billing", "config"],
        &["--reveal"],
        None,
        &[],
    );
    assert!(
        run.ok().stdout.contains(&format!("db_url={V1_DB}")),
        "{}",
        run.stdout
    );

    // A write outside Warden: its writer is unknown, its key changes are computed.
    let mut outside = KvData::new();
    outside.insert("db_url", SecretValue::text(V1_DB.to_owned()));
    outside.insert("mode", SecretValue::text(V1_MODE.to_owned()));
    outside.insert("extra", SecretValue::text(OUTSIDE.to_owned()));
    let written = operator
        .kv2("kvv2")
        .write("billing/config", &outside, Some(3))
        .await
        .expect("write v4 outside warden");
    assert_eq!(written.version, 4);
    let run = p.run(
        &["secret", "history", "billing", "config"],
        &["-o", "json"],
        None,
        &[],
    );
    let h = hidden(run.ok()).json();
    assert_eq!(h["versions"][0]["by"], serde_json::Value::Null, "{h}");
    assert_eq!(h["versions"][0]["keys_source"], "computed", "{h}");
    assert_eq!(h["versions"][0]["keys"]["added"], json!(["extra"]), "{h}");
    let run = p.run(&["secret", "history", "billing", "config"], &[], None, &[]);
    assert!(
        hidden(run.ok()).stdout.contains("unknown"),
        "{}",
        run.stdout
    );
}

/// Stale check-and-set, a deleted version, bad input and a mistyped app: refused with what
/// to do next, nothing written.
async fn kv_refusals(p: &Platform, operator: &Client) {
    let kv = operator.kv2("kvv2");
    let before = kv.metadata("billing/config").await.expect("metadata");

    let run = p.run(
        &["secret", "put", "billing", "config"],
        &["--cas", "1"],
        Some(b"a=1\n"),
        &[],
    );
    run.expect_code(1)
        .says("--cas 1 but the current version is 4")
        .says("hint:");

    kv.delete_versions("billing/config", &[2])
        .await
        .expect("soft-delete v2");
    let run = p.run(
        &["secret", "rollback", "billing", "config"],
        &["--to-version", "2", "--yes"],
        None,
        &[],
    );
    hidden(run.expect_code(1))
        .says("version 2 was deleted")
        .says("undelete");

    let run = p.run(
        &["secret", "put", "billing", "config"],
        &[],
        Some(format!("a=1\n{V2_MODE}\n").as_bytes()),
        &[],
    );
    hidden(run.expect_code(1)).says("stdin:2: expected KEY=VALUE");

    let run = p.run(&["secret", "get", "billng", "config"], &[], None, &[]);
    run.expect_code(1)
        .says("no app `billng`")
        .says("did you mean `billing`?");
    let run = p.run(
        &["secret", "get", "billing", "../ledger/config"],
        &[],
        None,
        &[],
    );
    run.expect_code(1).says("not a valid secret name");

    let after = kv.metadata("billing/config").await.expect("metadata");
    assert_eq!(
        after.current_version, before.current_version,
        "a refusal wrote"
    );
}

async fn kv_v1(p: &Platform, operator: &Client) {
    let run = p.run(
        &["secret", "put", "billing", "config"],
        &["--kv1", "-o", "json"],
        Some(format!("token={KV1_VALUE}\n").as_bytes()),
        &[],
    );
    let r = run.ok().never_shows(KV1_VALUE).json();
    assert_eq!(r["engine"], "kv1");
    assert_eq!(r["mount"], "kv");
    assert_eq!(r["keys"]["added"], json!(["token"]));
    let stored = operator
        .kv1("kv")
        .read("billing/config")
        .await
        .expect("kv1 read");
    assert_eq!(
        stored.get("token").map(SecretValue::expose),
        Some(&json!(KV1_VALUE))
    );
    let run = p.run(
        &["secret", "get", "billing", "config"],
        &["--kv1", "--reveal", "-o", "json"],
        None,
        &[],
    );
    assert_eq!(run.ok().json()["values"]["token"], KV1_VALUE);
}

/// encrypt → rotate → the old ciphertext still decrypts → retire v1 → refused, clearly.
async fn transit_encrypt_rotate_retire(p: &Platform, _operator: &Client) {
    let plain = b"card-4111-PLAINTEXT-0042";
    let key = ["billing", "payments"];
    let cmd = |op: &'static str| ["transit", op, key[0], key[1]];

    let run = p.run(&cmd("encrypt"), &["-o", "json"], Some(plain), &[]);
    let c1 = run.ok().never_shows("card-4111").json();
    assert_eq!(c1["key_name"], "billing-payments");
    assert_eq!(c1["key_version"], 1);
    let ciphertext_v1 = c1["ciphertext"].as_str().expect("ciphertext").to_owned();
    assert!(ciphertext_v1.starts_with("vault:v1:"), "{ciphertext_v1}");

    let r = p
        .run(&cmd("rotate"), &["-o", "json"], None, &[])
        .ok()
        .json();
    assert_eq!(
        (r["previous_version"].as_u64(), r["latest_version"].as_u64()),
        (Some(1), Some(2))
    );

    let run = p.run(
        &cmd("decrypt"),
        &["-o", "json"],
        Some(ciphertext_v1.as_bytes()),
        &[],
    );
    let d = run.ok().json();
    assert_eq!(d["plaintext_base64"], STANDARD.encode(plain), "{d}");
    let out_file = p.path("plain.bin");
    p.run(
        &cmd("decrypt"),
        &["--out", path_str(&out_file)],
        Some(ciphertext_v1.as_bytes()),
        &[],
    )
    .ok()
    .never_shows("card-4111");
    assert_eq!(std::fs::read(&out_file).expect("plaintext file"), plain);
    let mode = std::fs::metadata(&out_file)
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    let r = p
        .run(
            &cmd("rotate"),
            &["--min-decryption-version", "2", "-o", "json"],
            None,
            &[],
        )
        .ok()
        .json();
    assert_eq!(r["latest_version"], 3, "{r}");
    assert_eq!(r["min_decryption_version"], 2, "{r}");

    let run = p.run(&cmd("decrypt"), &[], Some(ciphertext_v1.as_bytes()), &[]);
    run.expect_code(1)
        .says("ciphertext is from key version 1")
        .says("min_decryption_version")
        .never_shows("card-4111");

    // New data uses the newest version and decrypts.
    let c3 = p
        .run(&cmd("encrypt"), &[], Some(plain), &[])
        .ok()
        .stdout
        .trim()
        .to_owned();
    assert!(
        c3.starts_with("vault:v3:"),
        "text mode prints the ciphertext only: {c3}"
    );
    let d = p
        .run(&cmd("decrypt"), &["-o", "json"], Some(c3.as_bytes()), &[])
        .ok()
        .json();
    assert_eq!(d["plaintext_base64"], STANDARD.encode(plain));

    let info = p.run(&cmd("info"), &["-o", "json"], None, &[]);
    let i = info
        .ok()
        .never_shows("BEGIN")
        .never_shows("public_key")
        .json();
    assert_eq!(i["info"]["latest_version"], 3, "{i}");
    assert_eq!(i["info"]["min_decryption_version"], 2, "{i}");
    assert_eq!(i["info"]["exportable"], false, "{i}");
    assert_eq!(i["info"]["allow_plaintext_backup"], false, "{i}");
}

async fn transit_sign_verify_and_no_export(p: &Platform, operator: &Client) {
    let msg = b"receipt #42 total 12.00 EUR";
    let tampered = b"receipt #42 total 99.00 EUR";
    let cmd = |op: &'static str| ["transit", op, "billing", "receipts"];

    let signature = p
        .run(&cmd("sign"), &[], Some(msg), &[])
        .ok()
        .stdout
        .trim()
        .to_owned();
    assert!(signature.starts_with("vault:v1:"), "{signature}");
    let run = p.run(
        &cmd("verify"),
        &["--signature", &signature, "-o", "json"],
        Some(msg),
        &[],
    );
    assert_eq!(run.ok().json()["valid"], true);
    let run = p.run(
        &cmd("verify"),
        &["--signature", &signature],
        Some(tampered),
        &[],
    );
    assert!(
        run.expect_code(3).stdout.contains("INVALID"),
        "{}",
        run.stdout
    );

    // A signing key cannot encrypt: refused before anything is sent.
    let run = p.run(&cmd("encrypt"), &[], Some(msg), &[]);
    run.expect_code(1).says("cannot encrypt or decrypt");

    // The keys never leave OpenBao, not even for the operator.
    for (kind, key) in [
        ("encryption-key", "billing-payments"),
        ("signing-key", "billing-receipts"),
        ("hmac-key", "billing-payments"),
    ] {
        let err = operator
            .read(&format!("transit/export/{kind}/{key}"))
            .await
            .expect_err("transit export must be refused");
        assert!(
            err.server_errors()
                .iter()
                .any(|e| e.contains("not exportable")),
            "{kind}/{key}: {err}"
        );
    }
    let info = operator
        .transit("transit")
        .key_info("billing-receipts")
        .await
        .expect("info");
    assert!(!info.exportable && !info.allow_plaintext_backup, "{info:?}");
}

/// The app itself, logged in with its own identity certificate, uses its keys through the
/// CLI (`--token-file`) and may not read the key's settings.
async fn transit_as_the_app(p: &Platform, operator: &Client) {
    let id = enroll(
        operator,
        "billing-identity",
        "billing.identity.test.warden.internal",
    )
    .await;
    let app = EnvAccess::of(&p.lab, "test").client_with(id);
    let auth = login_cert(&app, "billing").await.expect("billing logs in");
    let token_file = p.path("billing.token");
    warden_testkit::files::write_private(
        &token_file,
        format!(
            "{}\n",
            secrecy::ExposeSecret::expose_secret(&auth.client_token)
        )
        .as_bytes(),
    );
    let as_app = ["--token-file", path_str(&token_file)];

    let plain = b"app-owned-plaintext-77";
    let ciphertext = p
        .run(
            &["transit", "encrypt", "billing", "payments"],
            &as_app,
            Some(plain),
            &[],
        )
        .ok()
        .stdout
        .trim()
        .to_owned();
    assert!(ciphertext.starts_with("vault:v3:"), "{ciphertext}");
    let mut decrypt_args = as_app.to_vec();
    decrypt_args.extend(["-o", "json"]);
    let d = p
        .run(
            &["transit", "decrypt", "billing", "payments"],
            &decrypt_args,
            Some(ciphertext.as_bytes()),
            &[],
        )
        .ok()
        .json();
    assert_eq!(d["plaintext_base64"], STANDARD.encode(plain));
    let run = p.run(
        &["transit", "info", "billing", "payments"],
        &as_app,
        None,
        &[],
    );
    run.expect_code(1).says("permission denied");
    let run = p.run(
        &["transit", "rotate", "billing", "payments"],
        &as_app,
        None,
        &[],
    );
    run.expect_code(1).says("permission denied");
    let latest = operator
        .transit("transit")
        .key_info("billing-payments")
        .await
        .expect("info")
        .latest_version;
    assert_eq!(latest, 3, "the app must not be able to rotate");
}
