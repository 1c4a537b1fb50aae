//! End-to-end: `warden dashboard` against a real lab whose live state puts a purpose in every
//! posture status (the spec and the steps of `tests/posture.rs`), with a real `warden serve`
//! running so the page has a leader and job history; the page is then loaded by headless
//! Chromium (Debian's `chromium`, installed by scripts/bootstrap) and the test asserts on the
//! DOM Chromium built, and takes a screenshot.
//!
//! Regenerate the screenshot in the docs:
//! `WARDEN_DASHBOARD_PNG=$PWD/docs/img/dashboard.png cargo test -p warden --test dashboard`.

#![allow(clippy::print_stderr)] // where the page and screenshot went goes to the test log

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warden_bao::Idempotent;
use warden_testkit::cli::{Cli, path_str, text};
use warden_testkit::{SpecLab, agent_once};

/// The binary under test.
const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

/// The same spec as tests/posture.rs: one purpose per posture status.
const SPEC: &str = include_str!("fixtures/posture.toml");

/// Purpose → the status its live state gives it a few seconds after the setup below.
const WANT: [(&str, &str); 8] = [
    ("billing-config", "healthy"),
    ("public", "stale"),
    ("bootstrap", "healthy"),
    ("stripe", "due"),
    ("identity", "unknown"),
    ("payments", "stale"),
    ("ledger-config", "expired"),
    ("ci", "revoked"),
];

/// Runs headless Chromium on `page` with `args`, bounded; fails the test when it is missing.
fn chromium(args: &[&str], page: &Path) -> std::process::Output {
    let url = format!("file://{}", page.display());
    // Bounded: `timeout` ends a Chromium that hangs.
    let child = Command::new("timeout")
        .args([
            "120",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .args(args)
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run timeout chromium");
    let out = child.wait_with_output().expect("chromium output");
    assert!(
        out.status.success(),
        "chromium {args:?} (scripts/bootstrap installs Debian's `chromium`): {}",
        text(&out.stderr)
    );
    out
}

/// A `warden serve` child, killed when the test ends however it ends.
struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_rendered_by_chromium_lists_every_purpose_worst_first() {
    let t = SpecLab::start(WARDEN, SPEC).await;
    let lab = t.lab();
    let out = t.run(&["apply"]);
    assert!(out.status.success(), "apply: {}", text(&out.stderr));
    let out = t.run(&["domain", "renew"]);
    assert!(
        out.status.success(),
        "first issuance: {}",
        text(&out.stderr)
    );
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
    let root = tempfile::tempdir().expect("identity root");
    t.enroll(root.path(), "billing");
    let agent = agent_once(&WARDEN, root.path(), "billing");
    assert!(
        agent.status.success(),
        "agent --once: {}",
        text(&agent.stderr)
    );

    // A real serve, so the page has a leader and job history (the posture sweep, and the
    // domain renewal its stale purpose refuses).
    let spec = t.spec().to_path_buf();
    let serve_err = std::fs::File::create(t.dir().join("serve.err")).expect("serve.err");
    let _serve = Serve(
        Command::new(WARDEN.bin())
            .args([
                "serve",
                "--spec",
                path_str(&spec),
                "--lab",
                path_str(lab.dir()),
            ])
            .args(["--id", "dash-a", "--lease-ttl", "6s", "--tick", "1s"])
            .args(["--posture-every", "2s", "-o", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(serve_err)
            .spawn()
            .expect("start warden serve"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rec = op.read("warden/data/serve/jobs/posture").await.ok();
        if rec.is_some_and(|r| {
            r.data
                .is_some_and(|d| d["data"]["total_runs"].as_u64() >= Some(1))
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "serve recorded no posture sweep in 30 s: {}",
            std::fs::read_to_string(t.dir().join("serve.err")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let page = t.dir().join("dashboard.html");
    let out = t.run(&["dashboard", "--out", path_str(&page), "--output", "json"]);
    assert!(out.status.success(), "dashboard: {}", text(&out.stderr));
    let written: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(written["worst"], "revoked", "{written:#}");
    assert_eq!(written["environments"], json!(["test"]));
    let html = std::fs::read_to_string(&page).expect("page");
    assert!(!html.contains("\"k\""), "no value on the page");
    assert!(
        !html.contains("<script") && !html.contains("src=\"http") && !html.contains("href=\"http"),
        "no script, no external asset"
    );

    // The DOM Chromium built from the page.
    let dom = text(&chromium(&["--dump-dom"], &page).stdout);
    let row = |p: &str| {
        dom.find(&format!("class=\"purpose\" data-purpose=\"{p}\""))
            .unwrap_or_else(|| panic!("purpose {p} not listed:\n{dom}"))
    };
    for (p, status) in WANT {
        let at = row(p);
        let rest = &dom[at..];
        assert!(
            rest[..rest.find("</tr>").unwrap_or(rest.len())]
                .contains(&format!("data-status=\"{status}\"")),
            "{p} should show {status}"
        );
    }
    let rows = dom.matches("class=\"purpose\" data-purpose=").count();
    assert_eq!(rows, WANT.len(), "one row per purpose");
    // Worst first: every revoked/expired/stale row before every due/unknown one, and those
    // before every healthy one.
    let rank = |s: &str| match s {
        "revoked" | "expired" | "stale" => 0,
        "due" | "unknown" => 1,
        _ => 2,
    };
    for (a, sa) in WANT {
        for (b, sb) in WANT {
            if rank(sa) < rank(sb) {
                assert!(row(a) < row(b), "{a} ({sa}) must come before {b} ({sb})");
            }
        }
    }
    assert!(row("ledger-config") < row("stripe") && row("stripe") < row("billing-config"));
    // The timeline: an inline SVG with one lane per purpose and a mark per known deadline.
    let svg_at = dom.find("<svg class=\"timeline\"").expect("SVG timeline");
    let svg = &dom[svg_at..svg_at + dom[svg_at..].find("</svg>").expect("svg end")];
    assert_eq!(svg.matches("class=\"lane\"").count(), WANT.len(), "{svg}");
    assert!(
        svg.contains("<circle") && svg.contains("STALE · payments"),
        "{svg}"
    );
    // Serve's leader and its job history.
    assert!(dom.contains("dash-a (term 1"), "leader shown:\n{dom}");
    assert!(dom.contains("<code>posture</code>"), "posture job listed");
    assert!(
        dom.contains("<tr data-kind=\"sweep\">") && dom.contains("s-ok\">ok</span>"),
        "the posture sweep's run in the history:\n{dom}"
    );
    assert!(
        dom.contains("href=\"#ev-test-EV-PAYMENTS\"") && dom.contains("id=\"ev-test-EV-PAYMENTS\"")
    );
    assert!(dom.contains("unsealed"));

    // A screenshot, as someone paged at night would see it.
    let png = t.dir().join("dashboard.png");
    let shot = format!("--screenshot={}", png.display());
    chromium(
        &[&shot, "--window-size=1400,1000", "--hide-scrollbars"],
        &page,
    );
    let bytes = std::fs::read(&png).expect("screenshot");
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "a real screenshot"
    );
    if let Ok(dest) = std::env::var("WARDEN_DASHBOARD_PNG") {
        std::fs::copy(&png, &dest).expect("copy screenshot");
        eprintln!("screenshot: {dest}");
    }
}
