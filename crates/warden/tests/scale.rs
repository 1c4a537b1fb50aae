//! End-to-end, issue 16: records that grow with the number of identities stay within OpenBao's
//! request limits (ADR 0014), through the real `warden` binary against a real lab.
//!
//! 1. A record written by an earlier version (the ownership record as one string per kind, a
//!    registry entry with its credentials inline) is still read — `plan --prune` finds the
//!    owned objects that left the spec — and apply migrates the registry entry to pages.
//! 2. One purpose covering 1,200 credentials (400 apps × identity certificate, certificate
//!    and one secret): more strings than OpenBao accepts in one body (1,000). Apply succeeds,
//!    a re-apply writes nothing, posture judges all 1,200, and the evidence packet lists them
//!    and verifies offline.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use warden_bao::{Client, Idempotent};
use warden_testkit::LabEnv;
use warden_testkit::cli::{Cli, path_str, text};

/// The binary under test; an apply of 400 identities in a debug build takes a while.
const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden")).with_timeout(Duration::from_secs(600));

/// Apps in the large spec: 3 credentials each under one purpose, 1,200 in all.
const APPS: usize = 400;

/// `apps` apps with an identity, a certificate and one secret, all under one purpose.
fn spec(apps: usize) -> String {
    let mut s = String::from(
        "version = 1\n\n[environments.test]\ndomain = \"test.warden.internal\"\n\n\
         [purposes.everything]\n\
         description = \"every app's identity, certificate and configuration\"\n\
         owner = \"platform\"\ntier = \"ephemeral\"\ndelivery = \"agent_file\"\n\
         rotation = { interval = \"20d\", grace = \"5d\", max_age = \"30d\" }\n\
         evidence = \"EV-SCALE\"\n\
         covers = [\"*/identity-cert\", \"*/certificate\", \"*/secret/config\"]\n\n",
    );
    for i in 1..=apps {
        s.push_str(&format!(
            "[apps.app-{i:05}]\nenvironments = [\"test\"]\nsecrets = [\"config\"]\n[apps.app-{i:05}.certificate]\n\n"
        ));
    }
    s
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).expect("write file");
    p
}

/// Runs `warden ARGS --spec SPEC --lab LAB --env test` and requires success.
fn ok(args: &[&str], spec: &Path, lab: &Path) -> std::process::Output {
    exits(0, args, spec, lab)
}

/// Runs `warden ARGS --spec SPEC --lab LAB --env test` and requires exit `code`.
fn exits(code: i32, args: &[&str], spec: &Path, lab: &Path) -> std::process::Output {
    let mut v: Vec<&str> = args.to_vec();
    v.extend([
        "--spec",
        path_str(spec),
        "--lab",
        path_str(lab),
        "--env",
        "test",
    ]);
    let out = WARDEN.run(&v);
    assert!(
        out.status.code() == Some(code),
        "warden {}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

async fn data(op: &Client, path: &str) -> Value {
    op.read(path).await.expect("read").data.expect("data")["data"].clone()
}

/// Every item of a paged record, read page by page as a reader without Warden's code would.
async fn paged_items(op: &Client, head: &Value, folder: &str) -> Vec<String> {
    let pages = head["pages"].as_u64().expect("pages");
    let mut items = Vec::new();
    for n in 0..pages {
        let page = data(op, &format!("{folder}/{n}")).await;
        items.extend(
            page["lines"]
                .as_str()
                .expect("lines")
                .split('\n')
                .map(str::to_owned),
        );
    }
    assert_eq!(items.len() as u64, head["items"].as_u64().expect("items"));
    items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purpose_over_a_thousand_credentials_applies_and_reports() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let lab = LabEnv::start(&["test"]).await;
    let lab_dir = lab.dir().to_path_buf();
    let dir = tempfile::Builder::new()
        .prefix("warden-scale-")
        .tempdir()
        .expect("temp dir");
    let op = lab.client("test");

    // --- 1. records of an earlier version are read, and migrated on apply.
    let small = write(dir.path(), "small.toml", &spec(3));
    ok(&["apply"], &small, &lab_dir);
    let owned_head = data(&op, "warden/data/owned").await;
    let owned = paged_items(&op, &owned_head["paged"], "warden/data/pages/owned").await;
    assert!(
        owned.iter().any(|id| id.ends_with("/app-00003")),
        "{owned:?}"
    );
    // Rewrite both records the way the version before ADR 0014 stored them, pages gone.
    let mut by_kind = serde_json::Map::new();
    for id in &owned {
        let kind = id.split_once(':').expect("kind:path").0;
        let e = by_kind
            .entry(kind.to_owned())
            .or_insert_with(|| Value::String(String::new()));
        let s = e.as_str().expect("string").to_owned();
        *e = Value::String(if s.is_empty() {
            id.clone()
        } else {
            format!("{s}\n{id}")
        });
    }
    let registry = data(&op, "warden/data/registry/everything").await;
    let creds = paged_items(
        &op,
        &registry["credentials_pages"],
        "warden/data/pages/registry/everything",
    )
    .await;
    assert_eq!(creds.len(), 9);
    let mut old_entry = registry.clone();
    let obj = old_entry.as_object_mut().expect("entry");
    obj.remove("credentials_pages");
    obj.insert("credentials".into(), json!(creds));
    for path in [
        "warden/metadata/pages/owned/0",
        "warden/metadata/pages/registry/everything/0",
    ] {
        op.delete(path).await.expect("delete page");
    }
    op.write(
        "warden/data/owned",
        &json!({ "data": by_kind }),
        Idempotent::Yes,
    )
    .await
    .expect("old ownership record");
    op.write(
        "warden/data/registry/everything",
        &json!({ "data": old_entry }),
        Idempotent::Yes,
    )
    .await
    .expect("old registry entry");

    // The old ownership record is read: without app-00003 in the spec, prune would remove
    // exactly what Warden created for it.
    let two = write(dir.path(), "two.toml", &spec(2));
    let plan = json_of(&ok(&["plan", "--prune", "-o", "json"], &two, &lab_dir));
    let changes = plan["environments"][0]["changes"]
        .as_array()
        .expect("changes");
    let deletes: BTreeSet<&str> = changes
        .iter()
        .filter(|c| c["action"] == "delete")
        .map(|c| c["path"].as_str().expect("path"))
        .collect();
    assert!(
        deletes.contains("sys/policies/acl/app-00003"),
        "the old ownership record was not read: {deletes:?}"
    );
    // The old registry entry is migrated by the next apply of the same spec.
    let plan = json_of(&ok(&["plan", "-o", "json"], &small, &lab_dir));
    let kinds: BTreeSet<(&str, &str)> = plan["environments"][0]["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["action"].as_str().expect("action"),
                c["kind"].as_str().expect("kind"),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from([("create", "registry-page"), ("update", "registry")]),
        "{plan}"
    );
    ok(&["apply"], &small, &lab_dir);
    let migrated = data(&op, "warden/data/registry/everything").await;
    assert!(migrated["credentials"].is_null(), "{migrated}");
    assert_eq!(migrated["credentials_pages"]["items"], 9);

    // --- 2. one purpose over 1,200 credentials.
    let big = write(dir.path(), "big.toml", &spec(APPS));
    let applied = json_of(&ok(&["apply", "-o", "json"], &big, &lab_dir));
    assert!(
        applied["creates"].as_u64().expect("creates") >= (APPS as u64 - 3) * 4,
        "{applied}"
    );
    let again = json_of(&ok(&["apply", "-o", "json"], &big, &lab_dir));
    assert_eq!(again["writes"], 0, "a re-apply must write nothing: {again}");

    // The registry and the ownership record are paged; every request stayed under the limit.
    let entry = data(&op, "warden/data/registry/everything").await;
    let creds = paged_items(
        &op,
        &entry["credentials_pages"],
        "warden/data/pages/registry/everything",
    )
    .await;
    assert_eq!(creds.len(), APPS * 3);
    assert!(creds.contains(&"app-00400/secret/config".to_owned()));
    let owned_head = data(&op, "warden/data/owned").await;
    let owned = paged_items(&op, &owned_head["paged"], "warden/data/pages/owned").await;
    assert!(
        owned.contains(&"cert-role:auth/cert/certs/app-00400".to_owned())
            || owned.iter().any(|id| id.ends_with("app-00400")),
        "the old-form ownership record was replaced by pages listing every object"
    );

    // Posture judges every credential.
    // Exit 11: the worst status is `unknown` (no agent has reported, no secret is written).
    let posture = json_of(&exits(11, &["posture", "-o", "json"], &big, &lab_dir));
    let purposes = posture["environments"][0]["purposes"]
        .as_array()
        .expect("purposes");
    assert_eq!(purposes.len(), 1, "{posture}");
    let judged = purposes[0]["credentials"].as_array().expect("credentials");
    assert_eq!(judged.len(), APPS * 3);
    // No agent has run and no secret was written: nothing can be healthy yet.
    assert!(
        judged.iter().all(|c| c["status"] == "unknown"),
        "{}",
        judged[0]
    );

    // Evidence: the packet lists all 1,200 and verifies offline.
    let packet_file = dir.path().join("scale.json");
    ok(
        &[
            "evidence",
            "export",
            "EV-SCALE",
            "--out",
            path_str(&packet_file),
        ],
        &big,
        &lab_dir,
    );
    let packet: Value =
        serde_json::from_slice(&std::fs::read(&packet_file).expect("packet")).expect("JSON");
    let p = &packet["payload"]["purposes"][0];
    assert_eq!(
        p["credentials"].as_array().expect("credentials").len(),
        APPS * 3
    );
    assert_eq!(
        p["registry"]["entry"]["credentials"]
            .as_array()
            .expect("the registry's paged credentials, joined")
            .len(),
        APPS * 3
    );
    let key = ok(&["evidence", "key"], &big, &lab_dir);
    let key_file = write(dir.path(), "evidence.pem", &text(&key.stdout));
    let verify = WARDEN.run(&[
        "evidence",
        "verify",
        path_str(&packet_file),
        "--key",
        path_str(&key_file),
    ]);
    assert!(
        verify.status.success() && text(&verify.stdout).starts_with("valid: evidence EV-SCALE"),
        "{}\n{}",
        text(&verify.stdout),
        text(&verify.stderr)
    );
}
