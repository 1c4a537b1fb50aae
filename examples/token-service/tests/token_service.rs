//! The example service end to end: the real binary against a real OpenBao dev server.
//!
//! (a) a loop of sign + verify requests across two signing-key rotations has no failure;
//! (b) against a stopped server it aborts after `VAULT_INIT_TIMEOUT_SEC` with a non-zero exit,
//!     its log showing the backoff 250, 500, 1000 ms … capped at `VAULT_RETRY_MAX_MS`;
//! (c) AD-1: a secret-looking variable in its environment stops it before it connects.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use warden_bao::{Client, ClientConfig, Idempotent, RetryPolicy};
use warden_keys::{KvLocation, SigningKeyConfig, SystemClock};
use warden_spec::SigningAlgorithm;
use warden_testkit::{BaoDev, dead_address, files, identity};

const BIN: &str = env!("CARGO_BIN_EXE_token-service");
const KEY_PATH: &str = "svc/signing/jwt";

fn key_config() -> SigningKeyConfig {
    SigningKeyConfig::new(KvLocation::new("secret", KEY_PATH), SigningAlgorithm::Es256)
}

/// A root client, an AppRole `svc` that may read its signing key, and its credential files.
async fn setup(dev: &BaoDev, dir: &Path) -> (Client, PathBuf, PathBuf) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let root = Client::new(
        ClientConfig::from_address(dev.addr())
            .expect("address")
            .with_token(dev.root_token().clone())
            .with_retry(RetryPolicy::no_retries()),
    )
    .expect("root client");
    root.enable_auth("approle", "approle")
        .await
        .expect("approle");
    root.put_policy(
        "svc",
        &format!(
            "path \"secret/data/{KEY_PATH}\" {{ capabilities = [\"read\"] }}\n\
             path \"secret/metadata/{KEY_PATH}\" {{ capabilities = [\"read\"] }}\n"
        ),
    )
    .await
    .expect("policy");
    root.write(
        "auth/approle/role/svc",
        &json!({ "token_policies": ["svc"], "token_ttl": "1h" }),
        Idempotent::Yes,
    )
    .await
    .expect("role");
    let (role_id, secret_id) = identity::approle_credentials(&root, "svc").await;
    let (r, s) = (dir.join("role-id"), dir.join("secret-id"));
    files::write_private(&r, role_id.as_bytes());
    files::write_private(&s, secret_id.expose_secret().as_bytes());
    (root, r, s)
}

/// The service's command with a clean environment: only what a deployment would set.
fn service(addr: &str, role_id: &Path, secret_id: &Path, extra: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("BAO_ADDR", addr)
        .env("WARDEN_APPROLE_ROLE_ID_FILE", role_id)
        .env("WARDEN_APPROLE_SECRET_ID_FILE", secret_id)
        .env("TOKEN_SERVICE_KEY_PATH", KEY_PATH)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

fn kid_of(token: &str) -> String {
    use base64::Engine as _;
    let header = token.split('.').next().expect("header");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .expect("base64url");
    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    v["kid"].as_str().expect("kid").to_owned()
}

/// Waits for `listening on http://ADDR` on the child's stdout.
async fn base_url(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the service starts within 30 s")
        .expect("read stdout")
        .expect("a line");
    line.strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_owned()
}

/// (a) Zero failed verifications across two rotations. Each rotation is written by another
/// process (the rotation job, here the test's root client); the service learns of it through
/// its watch (1 s interval) and signs with the new key, while tokens signed with the old one
/// keep verifying through the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_survives_rotations_without_a_failed_verification() {
    let dev = BaoDev::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let (root, role_id, secret_id) = setup(&dev, dir.path()).await;
    let first = warden_keys::rotate(&root, &key_config(), &SystemClock)
        .await
        .expect("create the first key");

    let mut child = service(
        dev.addr(),
        &role_id,
        &secret_id,
        &[("VAULT_WATCH_INTERVAL_SEC", "1")],
    )
    .spawn()
    .expect("start token-service");
    let base = base_url(&mut child).await;
    let http = reqwest::Client::new();

    let (mut requests, mut failures) = (0u32, Vec::new());
    let mut tokens: Vec<String> = Vec::new();
    let mut kids = BTreeSet::new();
    let mut expected_kid = first.kid.clone();
    for phase in 0..3 {
        if phase > 0 {
            let r = warden_keys::rotate(&root, &key_config(), &SystemClock)
                .await
                .expect("rotate");
            expected_kid = r.kid;
        }
        // Sign + verify until the service signs with the expected key, then 30 more.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut after = 0;
        while after < 30 {
            assert!(
                Instant::now() < deadline,
                "the service never signed with {expected_kid}"
            );
            let token = http
                .get(format!("{base}/token?sub=user{requests}"))
                .send()
                .await
                .expect("GET /token")
                .error_for_status()
                .expect("token issued")
                .text()
                .await
                .expect("body");
            let verify = http
                .post(format!("{base}/verify"))
                .body(token.clone())
                .send()
                .await
                .expect("POST /verify");
            requests += 1;
            if !verify.status().is_success() {
                failures.push(format!(
                    "{}: {}",
                    verify.status(),
                    verify.text().await.unwrap_or_default()
                ));
            }
            let kid = kid_of(&token);
            if kid == expected_kid {
                after += 1;
            }
            kids.insert(kid);
            tokens.push(token);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Every token handed out, old keys included, still verifies (grace: 24 h).
    for token in &tokens {
        let v = http
            .post(format!("{base}/verify"))
            .body(token.clone())
            .send()
            .await
            .expect("POST /verify");
        requests += 1;
        if !v.status().is_success() {
            failures.push(format!(
                "re-verify {}: {}",
                v.status(),
                v.text().await.unwrap_or_default()
            ));
        }
    }
    let jwks: serde_json::Value = http
        .get(format!("{base}/jwks"))
        .send()
        .await
        .expect("GET /jwks")
        .json()
        .await
        .expect("jwks json");
    child.start_kill().expect("stop the service");
    assert!(
        failures.is_empty(),
        "{} of {requests} verifications failed: {failures:?}",
        failures.len()
    );
    assert_eq!(
        kids.len(),
        3,
        "tokens were signed with three keys: {kids:?}"
    );
    assert!(requests >= 2 * 90, "requests: {requests}");
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(3), "{jwks}");
}

/// (b) The start-up contract against a closed port: attempts every 250, 500, 1000, 1000… ms
/// (VAULT_RETRY_MAX_MS=1000 so the cap shows within 3 s), then exit 1 with a clear message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_aborts_after_the_init_timeout_with_the_backoff_in_its_log() {
    let dir = tempfile::tempdir().expect("tmp");
    let (role_id, secret_id) = (dir.path().join("role-id"), dir.path().join("secret-id"));
    files::write_private(&role_id, b"role");
    files::write_private(&secret_id, b"not-a-real-secret-id");
    let addr = dead_address("http");
    let started = Instant::now();
    let out = service(
        &addr,
        &role_id,
        &secret_id,
        &[
            ("VAULT_INIT_TIMEOUT_SEC", "3"),
            ("VAULT_RETRY_MAX_MS", "1000"),
        ],
    )
    .output()
    .await
    .expect("run token-service");
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(10),
        "took {took:?}\n{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "error: OpenBao at {addr}/ was not usable within VAULT_INIT_TIMEOUT_SEC=3s"
        )),
        "{stderr}"
    );
    let delays: Vec<u64> = stderr
        .lines()
        .filter(|l| l.contains("retrying"))
        .map(|l| {
            let v = l
                .split("delay_ms=")
                .nth(1)
                .expect("delay_ms in a retry line");
            v.split_whitespace()
                .next()
                .expect("value")
                .parse()
                .expect("number")
        })
        .collect();
    assert!(delays.len() >= 5, "{delays:?}\n{stderr}");
    assert_eq!(delays[..4], [250, 500, 1000, 1000], "{stderr}");
    assert!(delays.iter().all(|d| *d <= 1000), "{delays:?}");
    let total: u64 = delays.iter().sum();
    assert!(
        (2700..=3000).contains(&total),
        "the delays fill the 3 s budget: {delays:?}"
    );
    // Each retry line names its attempt and reason; no credential appears anywhere.
    assert!(
        stderr.contains("attempt=1 ") && stderr.contains("reason="),
        "{stderr}"
    );
    assert!(!stderr.contains("not-a-real-secret-id"), "{stderr}");
}

/// (c) AD-1: a secret in the environment is refused by name, before any connection, and its
/// value is not printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_the_environment_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("x");
    let out = service(
        &dead_address("http"),
        &p,
        &p,
        &[("DB_PASSWORD", "hunter2-SENTINEL")],
    )
    .output()
    .await
    .expect("run token-service");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("DB_PASSWORD") && stderr.contains("AD-1"),
        "{stderr}"
    );
    assert!(!stderr.contains("SENTINEL"), "{stderr}");
}
