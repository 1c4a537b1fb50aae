//! Break-glass on a lab whose environments went through the lab's ceremony.

use std::path::Path;

use secrecy::SecretString;
use serde_json::Value;
use warden_testkit::cli::{path_str, text};
use warden_testkit::{EXAMPLE_SPEC, LabEnv};

use crate::support::*;

/// `warden ARGS --spec SPEC --lab LAB --env test`.
pub(crate) fn on_lab(args: &[&str], spec: &Path, lab: &Path) -> Vec<String> {
    let mut v: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    v.extend([
        "--spec".into(),
        path_str(spec).into(),
        "--lab".into(),
        path_str(lab).into(),
        "--env".into(),
        "test".into(),
    ]);
    v
}

pub(crate) fn run_ok(args: &[String]) -> Value {
    let out = WARDEN.run(args);
    assert!(
        out.status.success(),
        "warden {args:?}:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_token_works_is_visible_and_dies_with_its_ttl_and_root_is_revoked() {
    install_crypto_provider();
    let lab = LabEnv::start(&["test"]).await;
    let lab_dir = lab.dir().to_path_buf();
    let dir = tempfile::tempdir().expect("tmp");
    let spec = dir.path().join("warden.toml");
    std::fs::copy(EXAMPLE_SPEC, &spec).expect("spec");
    run_ok(&on_lab(&["apply"], &spec, &lab_dir));
    let layout = lab.lab().layout().env("test");
    let ids = warden_lab::custodians_dir(&layout);
    let shares = warden_lab::shares_dir(&layout);
    let operator = lab.client("test");

    // The lab ran the real ceremony: its custody status lists the lab custodians.
    let st = run_ok(&on_lab(
        &["custody", "status", "-o", "json"],
        &spec,
        &lab_dir,
    ));
    let custodians: Vec<String> = st["ledger"]["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["custodian"].as_str().unwrap_or("").to_owned())
        .collect();
    let threshold = st["ledger"]["threshold"].as_u64().expect("threshold") as usize;
    assert_eq!(
        st["registry"], "match",
        "lab up published the ledger digest: {st}"
    );

    let open = |ttl: &str, token_file: &Path| -> Value {
        let mut args = on_lab(
            &[
                "break-glass",
                "open",
                "--reason",
                "INC-123",
                "--ttl",
                ttl,
                "--token-file",
                path_str(token_file),
                "-o",
                "json",
            ],
            &spec,
            &lab_dir,
        );
        for c in custodians.iter().take(threshold) {
            args.extend([
                "--share".into(),
                path_str(&shares.join(format!("{c}.test.share.age"))).into(),
                "--identity".into(),
                path_str(&ids.join(format!("{c}.age-identity"))).into(),
            ]);
        }
        run_ok(&args)
    };
    let token_client = |file: &Path| {
        let t = std::fs::read_to_string(file).expect("token file");
        let c = lab.client("test");
        c.set_token(SecretString::from(t.trim().to_owned()));
        c
    };

    // A short one: works now, refused after its TTL; root revoked within the command.
    let short_file = dir.path().join("short.token");
    let opened = open("4s", &short_file);
    assert_eq!(warden_testkit::files::mode(&short_file) & 0o777, 0o600);
    let record = &opened["record"];
    let bg = token_client(&short_file);
    let me = bg
        .token_lookup_self()
        .await
        .expect("the break-glass token works");
    assert!(me.orphan, "an orphan: revoking root leaves it");
    assert_eq!(me.accessor, record["accessor"].as_str().expect("accessor"));
    let root_accessor = record["root_accessor"].as_str().expect("root accessor");
    let gone = operator.token_lookup_accessor(root_accessor).await;
    assert!(
        gone.is_err(),
        "the generated root token was revoked: {gone:?}"
    );
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let after = bg.token_lookup_self().await;
    assert!(
        after.is_err(),
        "a token past its TTL must not work: {after:?}"
    );

    // A longer one: visible in posture and evidence while open, gone from posture once closed.
    let long_file = dir.path().join("long.token");
    let opened = open("10m", &long_file);
    let id = opened["record"]["id"].as_str().expect("id").to_owned();
    let posture = WARDEN.run(&on_lab(&["posture", "-o", "json"], &spec, &lab_dir));
    let posture: Value = serde_json::from_slice(&posture.stdout).expect("posture JSON");
    let listed = posture.to_string();
    assert!(
        listed.contains(&id) && listed.contains("INC-123"),
        "posture shows it: {listed}"
    );
    let text_posture = text(&WARDEN.run(&on_lab(&["posture"], &spec, &lab_dir)).stdout);
    assert!(text_posture.contains("BREAK-GLASS"), "{text_posture}");
    let packet = dir.path().join("ev.json");
    run_ok(&on_lab(
        &[
            "evidence",
            "export",
            "EV-PAYMENTS",
            "--out",
            path_str(&packet),
            "-o",
            "json",
        ],
        &spec,
        &lab_dir,
    ));
    let v: Value =
        serde_json::from_slice(&std::fs::read(&packet).expect("packet")).expect("packet JSON");
    let bgs = v["payload"]["break_glass"]
        .as_array()
        .expect("break_glass in evidence")
        .clone();
    assert!(
        bgs.iter()
            .any(|b| b["record"]["id"] == id.as_str() && b["state"] == "active"),
        "{bgs:?}"
    );
    assert!(
        bgs.iter().any(|b| b["state"] == "expired"),
        "the expired one is in the history: {bgs:?}"
    );
    let secret = std::fs::read_to_string(&long_file).expect("token");
    assert!(
        !std::fs::read_to_string(&packet)
            .expect("packet")
            .contains(secret.trim()),
        "no token in evidence"
    );

    run_ok(&on_lab(
        &["break-glass", "close", "-o", "json"],
        &spec,
        &lab_dir,
    ));
    assert!(
        token_client(&long_file).token_lookup_self().await.is_err(),
        "closed means revoked"
    );
    let posture = text(
        &WARDEN
            .run(&on_lab(&["posture", "-o", "json"], &spec, &lab_dir))
            .stdout,
    );
    assert!(
        !posture.contains(&id),
        "a closed break-glass leaves posture"
    );
    let status = run_ok(&on_lab(
        &["break-glass", "status", "-o", "json"],
        &spec,
        &lab_dir,
    ));
    let states: Vec<&str> = status
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|r| r["state"].as_str())
        .collect();
    assert_eq!(states, ["expired", "closed"]);
}
