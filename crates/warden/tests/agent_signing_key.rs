//! Issue 17, part 2: the agent renders a dual-key signing key as files, end to end against a
//! real lab (HTTPS + mTLS OpenBao, `warden apply` of a spec whose signing key is delivered as
//! files with a 15 s grace):
//!
//! * `warden identity enroll` writes the `signing_key` output; the agent it configures
//!   delivers `key.pem` (PKCS#8), `key.pub.pem`, `jwks.json` and `metadata.json`, owner-only;
//! * `warden rotate signing-key` makes the agent rewrite the set within its poll interval:
//!   the JWKS lists both keys, the old key's public file appears, and a token signed with the
//!   old `key.pem` verifies against the rendered JWKS; the service is reloaded once;
//! * when the grace window ends the old key leaves the JWKS and its file goes (no copy of the
//!   old private key is left anywhere under the output's directory);
//! * a live set edited on disk is delivered again at the next poll;
//! * fail closed: under a revoked purpose a rotation is not delivered and the files stay.

#![allow(clippy::print_stderr)] // delivery latencies go to the test log on purpose

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warden_keys::{Jwks, KvLocation, PrivateKey, SigningKeyConfig, SystemClock, VerifyError};
use warden_spec::SigningAlgorithm;
use warden_testkit::cli::{Cli, path_str, text};
use warden_testkit::files::{line_count, mode};
use warden_testkit::{LabEnv, Poll, RunningAgent};

/// The binary under test.
const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

/// How long the old key keeps verifying after a rotation.
const GRACE: Duration = Duration::from_secs(15);

const SPEC: &str = r#"
version = 1

[environments.test]
domain        = "test.warden.internal"
runtime_owner = "warden-test"
app_root      = "/srv/warden/test"

[apps.issuer]
environments = ["test"]
signing_keys = [{ name = "jwt", algorithm = "es256", grace = "15s" }]

[purposes.workload-identity]
description = "Each identity's own mTLS client certificate"
owner       = "platform"
tier        = "ephemeral"
delivery    = "agent_file"
rotation    = { interval = "20d", grace = "5d", max_age = "30d" }
evidence    = "EV-IDENTITY"
covers      = ["*/identity-cert"]

[purposes.service-tls]
description = "Server certificates of the apps"
owner       = "platform"
tier        = "ephemeral"
delivery    = "agent_file"
rotation    = { interval = "48h", grace = "24h", max_age = "72h" }
evidence    = "EV-PKI"
covers      = ["*/certificate"]

[purposes.token-signing]
description = "Signs issuer's session tokens; its agent renders the key and the JWKS as files"
owner       = "issuer"
tier        = "vault_kv"
delivery    = "agent_file"
rotation    = { interval = "90d", grace = "24h" }
evidence    = "EV-TOKENS"
covers      = ["issuer/signing-key/jwt"]
"#;

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("JSON: {e}: {}", text(bytes)))
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn jwks(dir: &Path) -> Jwks {
    serde_json::from_slice(&std::fs::read(dir.join("jwks.json")).expect("jwks.json"))
        .expect("a JWK Set")
}

fn current_kid(dir: &Path) -> Option<String> {
    read_json(&dir.join("metadata.json"))?["current"]["kid"]
        .as_str()
        .map(str::to_owned)
}

/// The files of the live set, by name.
fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("the live set")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// Every regular file under `dir` (the versions the agent keeps included), recursively.
fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir") {
        let e = e.expect("entry");
        let ty = e.file_type().expect("type");
        if ty.is_dir() {
            all_files(&e.path(), out);
        } else if ty.is_file() {
            out.push(e.path());
        }
    }
}

fn exp_in(secs: i64) -> i64 {
    OffsetDateTime::now_utc().unix_timestamp() + secs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_renders_a_signing_key_and_follows_its_rotations() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let lab = LabEnv::start(&["test"]).await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let spec_path = tmp.path().join("warden.toml");
    std::fs::write(&spec_path, SPEC).expect("write spec");
    let (spec, lab_dir) = (path_str(&spec_path), path_str(lab.dir()));
    let target = ["--spec", spec, "--lab", lab_dir];
    let with = |args: &[&str]| -> Vec<String> {
        args.iter()
            .chain(target.iter())
            .map(|s| (*s).to_owned())
            .collect()
    };
    WARDEN.ok(&with(&["apply"]));
    WARDEN.ok(&with(&[
        "rotate",
        "signing-key",
        "token-signing",
        "-o",
        "json",
    ]));

    // Enrollment writes the output, because the key's purpose delivers it as files.
    let root = tmp.path().join("hosts");
    WARDEN.ok(&with(&[
        "identity",
        "enroll",
        "issuer",
        "--env",
        "test",
        "--root-dir",
        path_str(&root),
    ]));
    let id = root.join("test/issuer");
    let agent_toml = id.join("agent.toml");
    let mut cfg = warden_enroll::AgentConfig::load(&agent_toml).expect("enrolled agent.toml");
    let output = cfg
        .outputs
        .iter_mut()
        .find(|o| o.kind == "signing_key")
        .expect("enroll writes a signing_key output");
    assert_eq!(output.name, "signing-jwt");
    assert_eq!(output.kv_mount.as_deref(), Some("kvv2"));
    assert_eq!(output.kv_path.as_deref(), Some("issuer/signing/jwt"));
    assert_eq!(output.dir.as_deref(), Some("out/signing/jwt"));
    assert_eq!(output.purpose.as_deref(), Some("token-signing"));
    // A test reload (a shell appending a line) and a fast poll.
    let reloads = id.join("reloads.log");
    output.reload = Some(vec![
        "sh".to_owned(),
        "-c".to_owned(),
        format!("echo x >> '{}'", reloads.display()),
    ]);
    cfg.renewal.poll = "1s".to_owned();
    std::fs::write(&agent_toml, cfg.to_toml(&agent_toml).expect("toml")).expect("agent.toml");

    let log = id.join("agent.log");
    let mut agent = RunningAgent::spawn(
        WARDEN.command(&["agent", "--config", path_str(&agent_toml)]),
        &log,
    );
    let dir = id.join("out/signing/jwt");
    let kid1 = Poll::new(Duration::from_secs(60))
        .showing_log(&log)
        .until("the first signing key set", || current_kid(&dir));
    assert!(
        std::fs::symlink_metadata(&dir)
            .expect("dir")
            .file_type()
            .is_symlink(),
        "the set is published through a symlink"
    );
    assert_eq!(
        file_names(&dir),
        ["jwks.json", "key.pem", "key.pub.pem", "metadata.json"]
    );
    for name in file_names(&dir) {
        assert_eq!(mode(&dir.join(&name)), 0o600, "{name} is owner-only");
    }
    let pem1 = std::fs::read_to_string(dir.join("key.pem")).expect("key.pem");
    assert!(pem1.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");
    let key1 = PrivateKey::from_pkcs8_pem(SigningAlgorithm::Es256, &pem1).expect("an ES256 key");
    assert_eq!(key1.public_key().kid(), kid1);
    assert_eq!(jwks(&dir).kids(), [kid1.as_str()]);
    let meta = read_json(&dir.join("metadata.json")).expect("metadata");
    assert_eq!(meta["algorithm"], "ES256");
    assert_eq!(meta["versions"][0]["verify_until"], Value::Null);
    Poll::new(Duration::from_secs(30)).until_true("the first reload", || line_count(&reloads) == 1);

    // Someone edits the live JWKS: at its next poll the agent delivers the set again (a set
    // is never rewritten in place) and reloads the service.
    let live_jwks = dir.join("jwks.json");
    std::fs::write(&live_jwks, b"{\"keys\": []}\n").expect("tamper with jwks.json");
    Poll::new(Duration::from_secs(30))
        .showing_log(&log)
        .until_true("the repaired JWKS", || {
            std::fs::read(&live_jwks)
                .ok()
                .and_then(|b| serde_json::from_slice::<Jwks>(&b).ok())
                .is_some_and(|j| j.kids() == [kid1.as_str()])
        });
    Poll::new(Duration::from_secs(30))
        .until_true("the reload after the repair", || line_count(&reloads) == 2);
    assert_eq!(mode(&live_jwks), 0o600);

    // A token the service signed with the key file before the rotation.
    let old_token = warden_keys::sign(&key1, &json!({ "sub": "old", "exp": exp_in(3600) }))
        .expect("sign with key.pem");

    // Rotate. The agent polls every second: the new set is on disk within a few.
    let rotated = json_of(
        &WARDEN
            .ok(&with(&[
                "rotate",
                "signing-key",
                "--app",
                "issuer",
                "--key",
                "jwt",
                "-o",
                "json",
            ]))
            .stdout,
    );
    let rotated_at = Instant::now();
    let r = &rotated["keys"][0]["rotation"];
    let kid2 = r["kid"].as_str().expect("kid").to_owned();
    let until = OffsetDateTime::parse(
        r["previous"]["verifies_until"].as_str().expect("until"),
        &Rfc3339,
    )
    .expect("RFC 3339");
    Poll::new(Duration::from_secs(30))
        .showing_log(&log)
        .until_true("the rotated set", || {
            current_kid(&dir).as_deref() == Some(kid2.as_str())
        });
    let took = rotated_at.elapsed();
    eprintln!("rotation delivered {took:?} after `warden rotate`");
    // Within a few 1 s polls, not at the next renewal: 10 s leaves a loaded CI machine room
    // and still ends well inside the 15 s grace the checks below rely on.
    assert!(
        took < Duration::from_secs(10),
        "{took:?}: not within a few poll intervals"
    );
    let during = jwks(&dir);
    assert_eq!(during.kids(), [kid2.as_str(), kid1.as_str()]);
    let previous = format!("previous-{kid1}.pub.pem");
    assert_eq!(
        file_names(&dir),
        [
            "jwks.json",
            "key.pem",
            "key.pub.pem",
            "metadata.json",
            previous.as_str()
        ]
    );
    for name in file_names(&dir) {
        assert_eq!(mode(&dir.join(&name)), 0o600, "{name} is owner-only");
    }
    let public1 = std::fs::read_to_string(dir.join(&previous)).expect("previous key");
    assert!(
        public1.starts_with("-----BEGIN PUBLIC KEY-----"),
        "{public1}"
    );
    assert!(!public1.contains("PRIVATE"));
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        warden_keys::verify(&old_token, &during, now).expect("the old token verifies in grace")["sub"],
        "old"
    );
    let pem2 = std::fs::read_to_string(dir.join("key.pem")).expect("key.pem");
    assert_ne!(pem1, pem2);
    let key2 = PrivateKey::from_pkcs8_pem(SigningAlgorithm::Es256, &pem2).expect("new key");
    let new_token = warden_keys::sign(&key2, &json!({ "sub": "new", "exp": exp_in(3600) }))
        .expect("sign with the new key.pem");
    assert_eq!(
        warden_keys::verify(&new_token, &during, now).expect("new")["sub"],
        "new"
    );
    let meta = read_json(&dir.join("metadata.json")).expect("metadata");
    assert_eq!(meta["versions"][1]["kid"], kid1.as_str());
    assert_eq!(
        meta["versions"][1]["verify_until"],
        until.format(&Rfc3339).expect("format").as_str()
    );
    // Exactly one reload for the rotation, however many polls pass: wait for it (it follows
    // the write the poll above saw), then let polls pass.
    Poll::new(Duration::from_secs(30))
        .showing_log(&log)
        .until_true("the reload for the rotation", || line_count(&reloads) >= 3);
    std::thread::sleep(Duration::from_secs(3));
    agent.assert_alive();
    assert_eq!(
        line_count(&reloads),
        3,
        "one reload at start, one for the repair, one per rotation"
    );

    // The grace window ends: the old key leaves the JWKS and its file goes, within a poll.
    let left = Poll::new(GRACE + Duration::from_secs(20))
        .showing_log(&log)
        .until("the old key retired", || {
            (jwks(&dir).kids().len() == 1).then(OffsetDateTime::now_utc)
        });
    eprintln!("old key left {:?} after its grace ended", left - until);
    assert!(left >= until, "retired before its window ended");
    assert!(
        left - until < time::Duration::seconds(5),
        "retired late: {:?}",
        left - until
    );
    let after = jwks(&dir);
    assert_eq!(after.kids(), [kid2.as_str()]);
    assert_eq!(
        file_names(&dir),
        ["jwks.json", "key.pem", "key.pub.pem", "metadata.json"]
    );
    assert_eq!(
        warden_keys::verify(&old_token, &after, OffsetDateTime::now_utc()),
        Err(VerifyError::UnknownKey { kid: kid1.clone() })
    );
    // No copy of the old private key anywhere the agent keeps versions.
    let body1: String = pem1.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut files = Vec::new();
    all_files(&id.join("out/signing"), &mut files);
    for f in &files {
        let contents = std::fs::read_to_string(f).unwrap_or_default();
        let flat: String = contents.lines().collect();
        assert!(
            !flat.contains(&body1),
            "{} still holds the old private key",
            f.display()
        );
    }
    // The reload follows the swap: wait for it (the last check below makes sure no other
    // comes).
    Poll::new(Duration::from_secs(30)).until_true("the reload for the retired key", || {
        line_count(&reloads) == 4
    });

    // Fail closed: under a revoked purpose a rotation (by the library, as a pipeline would)
    // is not delivered; the files stay as they are and the agent says why.
    let revoked = SPEC.replace(
        "covers      = [\"issuer/signing-key/jwt\"]",
        "covers      = [\"issuer/signing-key/jwt\"]\nrevoked     = true",
    );
    std::fs::write(&spec_path, revoked).expect("revoked spec");
    WARDEN.ok(&with(&["apply"]));
    let config = SigningKeyConfig::new(
        KvLocation::new("kvv2", "issuer/signing/jwt"),
        SigningAlgorithm::Es256,
    )
    .with_grace(GRACE);
    let third = warden_keys::rotate(&lab.client("test"), &config, &SystemClock)
        .await
        .expect("rotate under the revoked purpose");
    Poll::new(Duration::from_secs(15))
        .showing_log(&log)
        .until_true("the refusal in the log", || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("refused by its purpose")
        });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(current_kid(&dir).as_deref(), Some(kid2.as_str()));
    assert_ne!(third.kid, kid2);
    assert_eq!(jwks(&dir).kids(), [kid2.as_str()]);
    assert_eq!(
        line_count(&reloads),
        4,
        "start, repair, rotation, old key left; none while refused"
    );
    agent.assert_alive();
    let socket = id.join("state/control.sock");
    let signing_status = || -> Option<Value> {
        let out = WARDEN.run(&[
            "-o",
            "json",
            "agent",
            "status",
            "--socket",
            path_str(&socket),
        ]);
        let status: Value = serde_json::from_slice(&out.stdout).ok()?;
        status["outputs"]
            .as_array()?
            .iter()
            .find(|o| o["name"] == "signing-jwt")
            .cloned()
    };
    let refused = |o: &Value| {
        o["state"] == "stale"
            && o["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("refused by its purpose"))
    };
    let shown = signing_status().expect("the signing key output in `agent status`");
    assert!(refused(&shown), "{shown}");
    assert_eq!(
        shown["serial"],
        kid2.as_str(),
        "status names the kid on disk"
    );

    // Posture says why, from the agent's delivery report (written within a few seconds).
    let posture = || -> Option<Value> {
        let out = WARDEN.run(&with(&["posture", "--output", "json"]));
        let report: Value = serde_json::from_slice(&out.stdout).ok()?;
        report["environments"][0]["purposes"]
            .as_array()?
            .iter()
            .flat_map(|p| p["credentials"].as_array().cloned().unwrap_or_default())
            .find(|c| c["id"] == "issuer/signing-key/jwt")
    };
    let judged = Poll::new(Duration::from_secs(30))
        .every(Duration::from_secs(2))
        .until("posture with the agent's refusal", || {
            posture().filter(|c| c["detail"]["agent_state"] == "stale")
        });
    assert_eq!(judged["detail"]["serial"], kid2.as_str(), "{judged:#}");
    assert!(
        judged["detail"]["agent_error"]
            .as_str()
            .is_some_and(|e| e.contains("purpose `token-signing` is revoked")),
        "{judged:#}"
    );

    // Restarted under the refusal, the agent recognises the set on disk as its own: `stale`
    // (usable, not refreshed), not `failed`.
    agent.terminate(Duration::from_secs(20));
    let agent = RunningAgent::spawn(
        WARDEN.command(&["agent", "--config", path_str(&agent_toml)]),
        &log,
    );
    let shown = Poll::new(Duration::from_secs(30))
        .showing_log(&log)
        .until("the restarted agent's refusal", || {
            signing_status().filter(|o| o["last_error"].is_string())
        });
    assert!(refused(&shown), "{shown}");
    assert_eq!(current_kid(&dir).as_deref(), Some(kid2.as_str()));
    drop(agent);
}
