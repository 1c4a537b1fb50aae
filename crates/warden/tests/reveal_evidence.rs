//! End-to-end: reveal-once credentials and signed evidence packets, through the real `warden`
//! binary against a real lab (OpenBao over HTTPS + mTLS) provisioned by `warden apply`.
//!
//! - reveal: 20 concurrent `reveal open` of one token → exactly one gets the secret-id (which
//!   then logs in as the container would), 19 get the "already used" error and exit 4; no
//!   operator path shows the value afterwards (unwrap again, `reveal list`, every KV path).
//!   The same for a locally generated KV secret, which is never written to KV.
//! - evidence: export → verify passes offline; one byte changed at several places (payload,
//!   header, signature) → exit 3; a wrong key → exit 3; garbage → exit 1.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};
use warden_bao::{Client, Idempotent};
use warden_testkit::cli::{Cli, on_lab, path_str, refs, text};
use warden_testkit::{EXAMPLE_SPEC, LabEnv};

/// The binary under test.
const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

const SPENT: &str = "this reveal token was already used or has expired";

fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("warden-reveal-")
        .tempdir()
        .expect("temp dir")
}

/// The shipped example plus a reveal-once KV secret of the `worker` container.
fn spec_text() -> String {
    let example = std::fs::read_to_string(EXAMPLE_SPEC).expect("example spec");
    let with_secret = example.replacen(
        "[containers.worker]\nenvironments  = [\"test\"]\nsecrets       = [\"config\"]",
        "[containers.worker]\nenvironments  = [\"test\"]\nsecrets       = [\"config\", \"bootstrap-key\"]",
        1,
    );
    assert_ne!(
        with_secret, example,
        "the example's worker block changed; update this test"
    );
    with_secret
        + r#"
[purposes.worker-bootstrap-key]
description = "A key the worker's operator installs by hand, handed over once"
owner       = "platform"
tier        = "vault_kv"
delivery    = "reveal_once"
rotation    = { interval = "30d", grace = "7d" }
custody     = "generated at reveal time; only a SHA-256 verifier is kept"
evidence    = "EV-BOOTSTRAP"
covers      = ["worker/secret/bootstrap-key"]
"#
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).expect("write file");
    p
}

#[track_caller]
fn expect_code(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected exit {code}\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Every value stored under a KV mount, as text: (path, JSON of its data). KV v2 mounts are
/// walked through `metadata/` and read through `data/`; KV v1 directly.
async fn dump_kv(client: &Client, mount: &str, v2: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut todo = vec![String::new()];
    while let Some(dir) = todo.pop() {
        let list_path = if v2 {
            format!("{mount}/metadata/{dir}")
        } else {
            format!("{mount}/{dir}")
        };
        for key in client.list(&list_path).await.expect("list KV") {
            let rel = format!("{dir}{key}");
            if key.ends_with('/') {
                todo.push(rel);
                continue;
            }
            let path = if v2 {
                format!("{mount}/data/{rel}")
            } else {
                format!("{mount}/{rel}")
            };
            let data = client
                .read(&path)
                .await
                .map(|s| s.data.unwrap_or(Value::Null))
                .unwrap_or(Value::Null);
            out.push((path, data.to_string()));
        }
    }
    out
}

/// Fails the test if `needle` is stored anywhere in the environment's KV mounts.
async fn assert_stored_nowhere(client: &Client, needle: &str) {
    let mut seen = 0;
    for (mount, v2) in [("warden", true), ("kvv2", true), ("kv", false)] {
        for (path, data) in dump_kv(client, mount, v2).await {
            seen += 1;
            assert!(
                !data.contains(needle),
                "the revealed value is stored at {path}"
            );
        }
    }
    // The walk really read something: the registry entries at least.
    assert!(
        seen >= 5,
        "only {seen} KV entries found; the walk is broken"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reveal_once_opens_exactly_once_and_leaves_only_metadata() {
    install_crypto_provider();
    let lab = LabEnv::start(&["test"]).await;
    let dir = temp_dir();
    let lab_dir = lab.dir().to_path_buf();
    let spec = write(dir.path(), "warden.toml", &spec_text());
    let operator = lab.client("test");
    WARDEN.ok(&refs(&on_lab(&["apply"], &spec, &lab_dir)));

    // --- refusals touch nothing ------------------------------------------------------
    let e = WARDEN.run(&refs(&on_lab(
        &["reveal", "create", "app-config", "--stdout"],
        &spec,
        &lab_dir,
    )));
    expect_code(&e, 1, "reveal of an agent_file purpose");
    assert!(
        text(&e.stderr).contains("not `reveal_once`"),
        "{}",
        text(&e.stderr)
    );
    let revoked = write(
        dir.path(),
        "revoked.toml",
        &spec_text().replacen(
            "covers      = [\"*/secret-id\"]",
            "covers      = [\"*/secret-id\"]\nrevoked     = true",
            1,
        ),
    );
    let e = WARDEN.run(&refs(&on_lab(
        &["reveal", "create", "container-bootstrap", "--stdout"],
        &revoked,
        &lab_dir,
    )));
    expect_code(&e, 1, "reveal under a revoked purpose");
    assert!(
        text(&e.stderr).contains("is revoked"),
        "{}",
        text(&e.stderr)
    );
    let taken = write(dir.path(), "taken", "keep me");
    let e = WARDEN.run(&refs(&on_lab(
        &[
            "reveal",
            "create",
            "container-bootstrap",
            "--out",
            path_str(&taken),
        ],
        &spec,
        &lab_dir,
    )));
    expect_code(&e, 1, "--out onto an existing file");
    assert_eq!(std::fs::read_to_string(&taken).expect("kept"), "keep me");
    assert!(
        operator
            .list("warden/metadata/reveal/container-bootstrap")
            .await
            .expect("list")
            .is_empty(),
        "a refused reveal recorded something"
    );

    // --- a secret-id, opened by 20 processes at once ---------------------------------
    let token_file = dir.path().join("worker.token");
    let created = WARDEN.ok(&refs(&on_lab(
        &[
            "reveal",
            "create",
            "container-bootstrap",
            "--identity",
            "worker",
            "--ttl",
            "5m",
            "--out",
            path_str(&token_file),
            "-o",
            "json",
        ],
        &spec,
        &lab_dir,
    )));
    let created: Value = serde_json::from_slice(&created.stdout).expect("create JSON");
    assert_eq!(created["credential"], "worker/secret-id");
    assert!(
        created.get("token").is_none(),
        "the token went to the file, not stdout"
    );
    let mode = std::fs::metadata(&token_file)
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // The container's host opens it, presenting its own transport certificate (issue 18,
    // ADR 0010), not an operator's.
    let host_transport = dir.path().join("worker-host-transport");
    WARDEN.ok(&refs(&on_lab(
        &[
            "transport",
            "issue",
            "--holder",
            "worker-host",
            "--out",
            path_str(&host_transport),
        ],
        &spec,
        &lab_dir,
    )));
    let open_args = on_lab(
        &[
            "reveal",
            "open",
            "--token-file",
            path_str(&token_file),
            "--transport",
            path_str(&host_transport),
        ],
        &spec,
        &lab_dir,
    );
    let outputs: Vec<Output> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|_| scope.spawn(|| WARDEN.run(&refs(&open_args))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let winners: Vec<&Output> = outputs.iter().filter(|o| o.status.success()).collect();
    assert_eq!(winners.len(), 1, "exactly one open must succeed");
    for loser in outputs.iter().filter(|o| !o.status.success()) {
        expect_code(loser, 4, "a concurrent loser");
        assert!(
            text(&loser.stderr).contains(SPENT),
            "{}",
            text(&loser.stderr)
        );
        assert!(
            loser.stdout.is_empty(),
            "a loser printed something on stdout"
        );
    }
    let secret_id = text(&winners[0].stdout).trim().to_owned();
    assert!(secret_id.len() >= 32, "not a secret-id: {secret_id:?}");

    // The opened secret-id logs in exactly as the container would: role-id + secret-id.
    let role_id = operator
        .read("auth/approle/role/worker/role-id")
        .await
        .expect("role-id")
        .data
        .and_then(|d| d["role_id"].as_str().map(str::to_owned))
        .expect("role_id");
    let container = lab.client("test");
    container.clear_token();
    let auth = container
        .write(
            "auth/approle/login",
            &json!({ "role_id": role_id, "secret_id": secret_id }),
            Idempotent::No,
        )
        .await
        .expect("AppRole login with the revealed secret-id")
        .and_then(|s| s.auth)
        .expect("auth block");
    assert!(
        auth.policies.contains(&"worker".to_owned()),
        "{:?}",
        auth.policies
    );

    // Afterwards: no path shows it again, not even to the operator.
    let again = WARDEN.run(&refs(&open_args));
    expect_code(&again, 4, "a second open");

    // A mistyped token: OpenBao answers it exactly as it answers a used one ("wrapping token
    // is not valid or does not exist"), so the refusal names both causes instead of telling
    // the holder that someone else opened it.
    let mistyped = write(
        dir.path(),
        "mistyped.token",
        "s.NotATokenAnyoneWasGiven0000\n",
    );
    let wrong = WARDEN.run(&refs(&on_lab(
        &["reveal", "open", "--token-file", path_str(&mistyped)],
        &spec,
        &lab_dir,
    )));
    expect_code(&wrong, 4, "a mistyped token");
    let wrong_err = text(&wrong.stderr);
    assert!(wrong_err.contains(SPENT), "{wrong_err}");
    assert!(
        wrong_err.contains("hint: it was opened already") && wrong_err.contains("mistyped"),
        "{wrong_err}"
    );
    let token = std::fs::read_to_string(&token_file).expect("token file");
    let unwrap = operator
        .write(
            "sys/wrapping/unwrap",
            &json!({ "token": token.trim() }),
            Idempotent::No,
        )
        .await;
    assert!(unwrap.is_err(), "the operator could unwrap the spent token");
    let listed = WARDEN.ok(&refs(&on_lab(
        &["reveal", "list", "container-bootstrap", "-o", "json"],
        &spec,
        &lab_dir,
    )));
    let listed_text = text(&listed.stdout);
    assert!(
        !listed_text.contains(&secret_id),
        "reveal list shows the value"
    );
    let listed: Value = serde_json::from_str(&listed_text).expect("list JSON");
    assert_eq!(listed["evidence"], "EV-BOOTSTRAP");
    let reveals = listed["reveals"].as_array().expect("reveals");
    assert_eq!(reveals.len(), 1);
    assert_eq!(reveals[0]["state"], "opened");
    assert_eq!(reveals[0]["credential"], "worker/secret-id");
    assert!(reveals[0].get("verifier_sha256").is_none());
    assert_eq!(listed["credentials"][0]["status"], "healthy");
    assert!(listed["credentials"][0]["rotation_due_at"].is_i64());
    assert_stored_nowhere(&operator, &secret_id).await;

    // A pending token is listed as such, and the text list names its state.
    let pending = dir.path().join("pending.token");
    WARDEN.ok(&refs(&on_lab(
        &[
            "reveal",
            "create",
            "container-bootstrap",
            "--out",
            path_str(&pending),
        ],
        &spec,
        &lab_dir,
    )));
    let listed = WARDEN.ok(&refs(&on_lab(
        &["reveal", "list", "container-bootstrap"],
        &spec,
        &lab_dir,
    )));
    let t = text(&listed.stdout);
    assert!(t.contains("pending") && t.contains("opened"), "{t}");

    // --- a KV secret generated at reveal time: wrapped, never written to KV ----------
    let kv_token = dir.path().join("key.token");
    WARDEN.ok(&refs(&on_lab(
        &[
            "reveal",
            "create",
            "worker-bootstrap-key",
            "--out",
            path_str(&kv_token),
        ],
        &spec,
        &lab_dir,
    )));
    let value_file = dir.path().join("bootstrap-key");
    let opened = WARDEN.ok(&refs(&on_lab(
        &[
            "reveal",
            "open",
            "--token-file",
            path_str(&kv_token),
            "--out",
            path_str(&value_file),
            "-o",
            "json",
        ],
        &spec,
        &lab_dir,
    )));
    let opened: Value = serde_json::from_slice(&opened.stdout).expect("open JSON");
    assert!(
        opened.get("value").is_none(),
        "the value went to the file, not stdout"
    );
    let value = std::fs::read_to_string(&value_file).expect("value file");
    assert_eq!(value.len(), 43, "256 bits as unpadded base64url");
    let vmode = std::fs::metadata(&value_file)
        .expect("value")
        .permissions()
        .mode();
    assert_eq!(vmode & 0o777, 0o600);
    let listed = WARDEN.ok(&refs(&on_lab(
        &["reveal", "list", "worker-bootstrap-key", "-o", "json"],
        &spec,
        &lab_dir,
    )));
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("list JSON");
    let record = &listed["reveals"][0];
    assert_eq!(record["state"], "opened");
    assert_eq!(record["verifier_sha256"], opened["verifier_sha256"]);
    assert_eq!(record["kind"], "secret");
    let e = WARDEN.run(&refs(&on_lab(
        &["reveal", "open", "--token-file", path_str(&kv_token)],
        &spec,
        &lab_dir,
    )));
    expect_code(&e, 4, "a second open of the KV reveal");
    assert!(
        operator
            .kv2("kvv2")
            .read("worker/bootstrap-key", None)
            .await
            .is_err(),
        "a reveal-once value was written to KV"
    );
    assert_stored_nowhere(&operator, &value).await;
}

/// Flips one byte of `packet` at the first occurrence of `anchor` (+`offset`) to `to`.
fn with_byte(packet: &[u8], anchor: &str, offset: usize, to: u8) -> Vec<u8> {
    let at = text(packet).find(anchor).expect("anchor in packet") + offset;
    let mut p = packet.to_vec();
    assert_ne!(p[at], to, "the change must change something");
    p[at] = to;
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_packets_verify_offline_and_any_change_fails() {
    install_crypto_provider();
    let lab = LabEnv::start(&["test"]).await;
    let dir = temp_dir();
    let lab_dir = lab.dir().to_path_buf();
    let spec = write(dir.path(), "warden.toml", &spec_text());
    let operator = lab.client("test");
    WARDEN.ok(&refs(&on_lab(&["apply"], &spec, &lab_dir)));

    // History to report: two versions of billing's stripe key, a rotated transit key, and a
    // hand-written policy that can read billing's secrets (it must show up as a reader).
    let stripe = "sk_live_EVIDENCE_MUST_NOT_CONTAIN_THIS";
    for v in [stripe, "sk_live_second"] {
        operator
            .write(
                "kvv2/data/billing/stripe",
                &json!({ "data": { "key": v } }),
                Idempotent::No,
            )
            .await
            .expect("write stripe");
    }
    operator
        .transit("transit")
        .rotate("billing-payments")
        .await
        .expect("rotate transit key");
    operator
        .put_policy(
            "auditor-glob",
            "path \"kvv2/data/billing/*\" {\n  capabilities = [\"read\"]\n}\n",
        )
        .await
        .expect("policy");

    let packet_file = dir.path().join("payments.json");
    let exported = WARDEN.ok(&refs(&on_lab(
        &[
            "evidence",
            "export",
            "EV-PAYMENTS",
            "--out",
            path_str(&packet_file),
            "-o",
            "json",
        ],
        &spec,
        &lab_dir,
    )));
    let exported: Value = serde_json::from_slice(&exported.stdout).expect("export JSON");
    assert_eq!(
        exported["key_created"], false,
        "`warden apply` created the evidence key; export only uses it"
    );
    let packet = std::fs::read(&packet_file).expect("packet");
    // Written as it was built through a temporary file beside it (ADR 0014): none is left.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list the dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    // An existing file is never overwritten, and stays as it was.
    let again = WARDEN.run(&refs(&on_lab(
        &[
            "evidence",
            "export",
            "EV-PAYMENTS",
            "--out",
            path_str(&packet_file),
        ],
        &spec,
        &lab_dir,
    )));
    assert!(!again.status.success(), "an export over an existing file");
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(std::fs::read(&packet_file).expect("packet"), packet);
    assert!(
        !text(&packet).contains(stripe),
        "the packet holds a secret value"
    );

    // What the packet says.
    let v: Value = serde_json::from_slice(&packet).expect("packet JSON");
    assert_eq!(v["format"], "warden-evidence/2");
    assert_eq!(v["signature"]["alg"], "EdDSA");
    assert_eq!(v["signature"]["key"], "transit:transit/warden-evidence");
    let p = &v["payload"];
    let ids: BTreeSet<&str> = p["purposes"]
        .as_array()
        .expect("purposes")
        .iter()
        .map(|x| x["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids,
        BTreeSet::from(["billing-stripe", "payment-encryption"])
    );
    let purpose = |id: &str| {
        p["purposes"]
            .as_array()
            .expect("purposes")
            .iter()
            .find(|x| x["id"] == id)
            .expect("purpose")
            .clone()
    };
    let stripe_cred = &purpose("billing-stripe")["credentials"][0];
    assert_eq!(stripe_cred["id"], "billing/secret/stripe");
    assert_eq!(
        stripe_cred["history"]["versions"]
            .as_array()
            .expect("versions")
            .len(),
        2
    );
    assert_eq!(stripe_cred["posture"]["id"], "billing/secret/stripe");
    let readers: Vec<(&str, Vec<&str>)> = stripe_cred["readers"]
        .as_array()
        .expect("readers")
        .iter()
        .map(|r| {
            (
                r["policy"].as_str().expect("policy"),
                r["identities"]
                    .as_array()
                    .expect("identities")
                    .iter()
                    .map(|i| i.as_str().expect("identity"))
                    .collect(),
            )
        })
        .collect();
    assert!(
        readers.contains(&("billing", vec!["billing"])),
        "{readers:?}"
    );
    assert!(
        readers.contains(&("billing-ops", vec!["billing-ci"])),
        "{readers:?}"
    );
    assert!(readers.contains(&("auditor-glob", vec![])), "{readers:?}");
    assert!(!readers.iter().any(|(p, _)| *p == "ledger"), "{readers:?}");
    let transit = &purpose("payment-encryption")["credentials"][0]["history"];
    assert_eq!(transit["latest_version"], 2);
    assert_eq!(
        purpose("billing-stripe")["registry"]["entry"]["purpose"],
        "billing-stripe"
    );
    let policies: BTreeSet<&str> = p["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .map(|x| x["name"].as_str().expect("name"))
        .collect();
    assert!(
        policies.contains("billing") && policies.contains("auditor-glob"),
        "{policies:?}"
    );

    // The public key, and an offline verification (no --lab, no spec).
    let key = WARDEN.ok(&refs(&on_lab(&["evidence", "key"], &spec, &lab_dir)));
    let key_file = write(dir.path(), "evidence.pem", &text(&key.stdout));
    assert!(text(&key.stdout).starts_with("-----BEGIN PUBLIC KEY-----"));
    let verify = |packet: &Path, key: &Path| {
        WARDEN.run(&[
            "evidence",
            "verify",
            path_str(packet),
            "--key",
            path_str(key),
        ])
    };
    let good = verify(&packet_file, &key_file);
    expect_code(&good, 0, "the original packet");
    assert!(
        text(&good.stdout).starts_with("valid: evidence EV-PAYMENTS for test"),
        "{}",
        text(&good.stdout)
    );

    // One byte changed: in the payload (a name, a number), in the signed header, in the
    // signature itself.
    let sig_at = text(&packet).find("\"value\":\"").expect("signature value") + 9;
    let mut in_sig = packet.clone();
    in_sig[sig_at + 5] = if in_sig[sig_at + 5] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "payload: owner",
            with_byte(&packet, "\"owner\":\"billing\"", 9, b'B'),
        ),
        ("payload: generated_at digit", {
            let at = text(&packet)
                .find("\"generated_at\":")
                .expect("generated_at")
                + 15;
            let mut p = packet.clone();
            p[at] = if p[at] == b'1' { b'2' } else { b'1' };
            p
        }),
        (
            "payload: a reader's policy name",
            with_byte(&packet, "\"policy\":\"auditor-glob\"", 10, b'b'),
        ),
        (
            "header: key_version",
            with_byte(&packet, "\"key_version\":1", 14, b'2'),
        ),
        (
            "header: payload_sha256",
            with_byte(&packet, "\"payload_sha256\":\"", 18, b'g'),
        ),
        ("signature value", in_sig),
    ];
    for (what, bytes) in cases {
        let f = dir.path().join("tampered.json");
        std::fs::write(&f, &bytes).expect("write tampered");
        let out = verify(&f, &key_file);
        expect_code(&out, 3, what);
        assert!(
            text(&out.stderr).contains("signature does not match"),
            "{what}: {}",
            text(&out.stderr)
        );
    }
    // The original still passes.
    expect_code(&verify(&packet_file, &key_file), 0, "the original, again");

    // The signature covers a statement of the payload's digest (format 2): the digest is of
    // the exact canonical payload bytes, and the statement is what transit signed.
    use warden_registry::evidence::{self, canonical};
    let body = canonical::to_bytes(&v["payload"]);
    assert_eq!(
        v["signature"]["payload_sha256"],
        hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body).as_ref())
    );
    assert_eq!(v["signature"]["payload_size"], body.len());
    // A packet in the old format (`warden-evidence/1`: the whole packet signed), signed by
    // this lab's key as Warden signed them before, still verifies with the same key file.
    let header: evidence::Header = evidence::Header {
        alg: v["signature"]["alg"].as_str().expect("alg").to_owned(),
        key: v["signature"]["key"].as_str().expect("key").to_owned(),
        key_version: v["signature"]["key_version"].as_u64().expect("version"),
        key_sha256: v["signature"]["key_sha256"]
            .as_str()
            .expect("sha")
            .to_owned(),
    };
    let v1_input = evidence::packet::signing_input_v1(&v["payload"], &header);
    let signed = operator
        .write(
            "transit/sign/warden-evidence",
            &json!({
                "input": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &v1_input),
                "key_version": header.key_version,
            }),
            Idempotent::Yes,
        )
        .await
        .expect("sign v1")
        .and_then(|s| s.data)
        .expect("signature");
    let sig_value = signed["signature"]
        .as_str()
        .expect("signature")
        .split(':')
        .nth(2)
        .expect("vault:vN:…")
        .to_owned();
    let mut v1_sig = serde_json::to_value(&header).expect("header");
    v1_sig["value"] = Value::String(sig_value);
    let v1_packet = canonical::to_bytes(&json!({
        "format": "warden-evidence/1", "payload": v["payload"], "signature": v1_sig,
    }));
    let v1_file = dir.path().join("v1.json");
    std::fs::write(&v1_file, &v1_packet).expect("write v1");
    let out = verify(&v1_file, &key_file);
    expect_code(&out, 0, "a warden-evidence/1 packet");
    assert!(text(&out.stdout).starts_with("valid: evidence EV-PAYMENTS"));
    let changed = with_byte(&v1_packet, "\"owner\":\"billing\"", 9, b'B');
    std::fs::write(&v1_file, &changed).expect("write v1 changed");
    expect_code(&verify(&v1_file, &key_file), 3, "a changed v1 packet");

    // Another key: exit 3, and the message says the packet names another key.
    let other = aws_lc_rs::signature::Ed25519KeyPair::generate().expect("key");
    let other_pem = evidence::PublicKey::from_raw(
        aws_lc_rs::signature::KeyPair::public_key(&other)
            .as_ref()
            .try_into()
            .expect("32 bytes"),
    )
    .pem();
    let other_file = write(dir.path(), "other.pem", &other_pem);
    let out = verify(&packet_file, &other_file);
    expect_code(&out, 3, "a wrong key");
    assert!(
        text(&out.stderr).contains("any key in the key file"),
        "{}",
        text(&out.stderr)
    );

    // Not a packet, not a key: exit 1 with what is wrong.
    let garbage = write(dir.path(), "garbage.json", "{\"format\": 1");
    let out = verify(&garbage, &key_file);
    expect_code(&out, 1, "garbage");
    assert!(
        text(&out.stderr).contains("not valid JSON"),
        "{}",
        text(&out.stderr)
    );
    let out = verify(&packet_file, &garbage);
    expect_code(&out, 1, "a key file without keys");
    assert!(
        text(&out.stderr).contains("no Ed25519 public key"),
        "{}",
        text(&out.stderr)
    );

    // A second export reuses the key and verifies with the same key file; an unknown
    // component is named with the known ones.
    let second = WARDEN.ok(&refs(&on_lab(
        &["evidence", "export", "EV-PAYMENTS"],
        &spec,
        &lab_dir,
    )));
    let second_file = write(dir.path(), "second.json", &text(&second.stdout));
    expect_code(&verify(&second_file, &key_file), 0, "a second export");
    let e = WARDEN.run(&refs(&on_lab(
        &["evidence", "export", "EV-PAYMENT"],
        &spec,
        &lab_dir,
    )));
    expect_code(&e, 1, "unknown component");
    assert!(
        text(&e.stderr).contains("EV-PAYMENTS"),
        "{}",
        text(&e.stderr)
    );
}
