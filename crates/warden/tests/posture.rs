//! End-to-end: `warden posture` against a real lab. One spec whose purposes are chosen so that
//! live state — written now, judged a few seconds later — puts at least one purpose in each
//! status (healthy, due, stale, expired, revoked, unknown). Nothing is edited: the statuses
//! come from KV metadata, the transit key's version time, the JWT role and the absence of an
//! agent report. `--at` (the injectable clock) then moves the same state into the future.

#![allow(clippy::print_stderr)] // the posture table goes to the test log on purpose

use std::collections::BTreeMap;

use serde_json::{Value, json};
use warden_bao::Idempotent;
use warden_testkit::cli::{Cli, path_str, text};
use warden_testkit::{SpecLab, agent_once};

/// The binary under test.
const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

const SPEC: &str = include_str!("fixtures/posture.toml");

fn statuses(report: &Value) -> BTreeMap<String, String> {
    report["environments"][0]["purposes"]
        .as_array()
        .expect("purposes")
        .iter()
        .map(|p| {
            (
                p["purpose"].as_str().expect("id").to_owned(),
                p["status"].as_str().expect("status").to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posture_shows_every_status_from_live_state() {
    let t = SpecLab::start(WARDEN, SPEC).await;
    let lab = t.lab();
    let run = |extra: &[&str]| t.run(extra);

    // A spec missing a purpose is refused by apply, naming the credential.
    let partial = SPEC.replace(
        "covers = [\"*/secret-id\"]",
        "covers = [\"billing/secret/config\"]",
    );
    let partial_path = t.dir().join("partial.toml");
    std::fs::write(&partial_path, &partial).expect("write");
    let out = WARDEN.run(&[
        "apply",
        "--spec",
        path_str(&partial_path),
        "--lab",
        path_str(lab.dir()),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("billing/secret/config") && err.contains("already governed"),
        "{err}"
    );
    let uncovered = &SPEC[..SPEC
        .find("[purposes.bootstrap]")
        .expect("bootstrap purpose")];
    std::fs::write(&partial_path, uncovered).expect("write");
    let out = WARDEN.run(&[
        "apply",
        "--spec",
        path_str(&partial_path),
        "--lab",
        path_str(lab.dir()),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no purpose governs") && err.contains("worker/secret-id"),
        "{err}"
    );

    let out = run(&["apply"]);
    assert!(out.status.success(), "apply: {}", text(&out.stderr));

    // The domain certificate's first issuance is allowed (nothing to be late about).
    let out = run(&["domain", "renew"]);
    assert!(
        out.status.success(),
        "first issuance: {}",
        text(&out.stderr)
    );

    // Live state: three secrets written now, and one secret-id minted for the container.
    let op = lab.client("test");
    for path in ["billing/config", "billing/stripe", "ledger/config"] {
        op.write(
            &format!("kvv2/data/{path}"),
            &json!({ "data": { "k": "v" } }),
            Idempotent::No,
        )
        .await
        .expect("write secret");
    }
    op.write(
        "auth/approle/role/worker/secret-id",
        &json!({}),
        Idempotent::No,
    )
    .await
    .expect("mint secret-id");
    // The registry holds the contract, never a value.
    let reg = op
        .read("warden/data/registry/stripe")
        .await
        .expect("registry entry");
    let entry = reg.data.expect("data")["data"].clone();
    assert_eq!(entry["owner"], "billing");
    // Its credentials are paged (ADR 0014): one page here, named by the entry's head.
    assert_eq!(entry["credentials_pages"]["items"], 1);
    let page = op
        .read("warden/data/pages/registry/stripe/0")
        .await
        .expect("registry page");
    assert_eq!(
        page.data.expect("data")["data"]["lines"],
        "billing/secret/stripe"
    );

    // billing's agent delivers its certificate once and reports it (OpenBao keeps no copy).
    let root = tempfile::tempdir().expect("identity root");
    t.enroll(root.path(), "billing");
    let agent = agent_once(&WARDEN, root.path(), "billing");
    assert!(
        agent.status.success(),
        "agent --once: {}",
        text(&agent.stderr)
    );
    let reported = warden_testkit::delivery_report(&op, "billing").await;
    let cert = reported["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .find(|o| o["credential"] == "billing/certificate")
        .unwrap_or_else(|| panic!("certificate in the report: {reported:#}"))
        .clone();
    assert_eq!(cert["state"], "fresh", "{reported:#}");
    assert!(
        cert["serial"].is_string() && cert["digest"].is_string(),
        "{reported:#}"
    );

    tokio::time::sleep(std::time::Duration::from_secs(3)).await;

    let out = run(&["posture", "--output", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("json: {e}\n{}\n{}", text(&out.stdout), text(&out.stderr)));
    let got = statuses(&report);
    eprintln!("{}", text(&run(&["posture"]).stdout));
    let want: BTreeMap<String, String> = [
        ("billing-config", "healthy"),
        ("public", "stale"),
        ("bootstrap", "healthy"),
        ("stripe", "due"),
        ("identity", "unknown"),
        ("payments", "stale"),
        ("ledger-config", "expired"),
        ("ci", "revoked"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_owned(), b.to_owned()))
    .collect();
    assert_eq!(got, want, "{report:#}");
    // The delivered certificate is judged from the agent's report; ledger, with no agent, is
    // what keeps the purpose unknown.
    let creds = report["environments"][0]["purposes"]
        .as_array()
        .expect("purposes")
        .iter()
        .flat_map(|p| p["credentials"].as_array().expect("credentials").clone())
        .collect::<Vec<Value>>();
    let by_id = |id: &str| {
        creds
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("{id} in posture"))
            .clone()
    };
    let billing_cert = by_id("billing/certificate");
    assert_eq!(billing_cert["status"], "healthy", "{billing_cert:#}");
    assert_eq!(billing_cert["source"], "agent report");
    assert_eq!(billing_cert["detail"]["serial"], cert["serial"]);
    assert_eq!(by_id("ledger/certificate")["status"], "unknown");
    assert_eq!(report["worst"], "revoked");
    assert_eq!(
        out.status.code(),
        Some(14),
        "worst status revoked → exit 14"
    );
    let dump = report.to_string();
    assert!(!dump.contains("\"k\":\"v\""), "posture never shows a value");

    // Fail closed: renewing the domain certificate outside its grace window is refused with
    // the rule that refused it, and the stored version stays what it was.
    let before = op
        .read("kvv2/metadata/domains/shop.test.example/cert")
        .await
        .expect("metadata")
        .data
        .expect("data")["current_version"]
        .clone();
    let out = run(&["domain", "renew", "--force"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("outside the grace window of purpose `public`") && err.contains("hint:"),
        "{err}"
    );
    let after = op
        .read("kvv2/metadata/domains/shop.test.example/cert")
        .await
        .expect("metadata")
        .data
        .expect("data")["current_version"]
        .clone();
    assert_eq!(before, after, "a refused renewal writes nothing");
    let out = run(&["posture", "--purpose", "public", "-o", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(statuses(&v)["public"], "stale", "{v:#}");

    // One purpose alone: its own status decides the exit code.
    let out = run(&["posture", "--purpose", "billing-config"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let out = run(&["posture", "--purpose", "stripe", "--fail-on", "stale"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "due is better than the stale gate"
    );
    let out = run(&["posture", "--purpose", "stripe"]);
    assert_eq!(out.status.code(), Some(10), "due → exit 10");

    // The same live state judged 91.6 days on: the 90-day config is past interval + grace
    // (stale) but not past its default max age of interval + 2 × grace (expired).
    let out = run(&[
        "posture",
        "--purpose",
        "billing-config",
        "--at",
        "+2200h",
        "--output",
        "json",
    ]);
    let later: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(statuses(&later)["billing-config"], "stale", "{later:#}");
    assert_eq!(out.status.code(), Some(12));

    // A typo in --purpose gets a suggestion.
    let out = run(&["posture", "--purpose", "strip"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("stripe"),
        "{}",
        text(&out.stderr)
    );
}
