//! The agent core end to end against a real lab (HTTPS + mTLS OpenBao, `warden apply` of the
//! example spec, `warden identity enroll billing`). Two labs, one per test:
//!
//! 1. `app_agent_delivers_renews_and_reloads_only_on_change` —
//!    (a) `--once` and a long-running agent render cert + key + chain + fullchain and the KV
//!    secrets; files verify, modes are right; (b) a leaf with a 2-minute TTL is renewed before
//!    it expires while the agent runs, and the reload command runs exactly once per real change
//!    and never for an unchanged render; (c) a restart with valid material on disk issues no
//!    new certificate.
//! 2. `agent_survives_kill_9_a_sealed_server_and_renews_its_identity` —
//!    (e) `kill -9` at random moments during a burst of renewals leaves every file the old or
//!    the new complete version; (d) the server sealed mid-run: files stay, status goes stale,
//!    requests while sealed stay bounded, and after unseal the agent recovers by itself;
//!    (f) a short-lived mTLS identity is renewed by the agent and used at once (requests keep
//!    working after the enrolled identity expired, without a restart).
//!
//! Nothing secret is printed: assertions name files, serials and counts, never contents.

#![allow(clippy::print_stderr)] // phase timings go to the test log on purpose

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use time::OffsetDateTime;
use warden_agent::{Agent, Config, Health};
use warden_bao::{Client, Idempotent};
use warden_enroll::AgentConfig;
use warden_testkit::cli::{Cli, path_str};
use warden_testkit::files::{line_count, mode};
use warden_testkit::{EXAMPLE_SPEC, LabEnv, RunningAgent, wait_for_async};

/// The binary under test.
const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

// ---- helpers ------------------------------------------------------------------------------

fn apply(lab: &LabEnv) {
    WARDEN.ok(&[
        "apply",
        "--spec",
        EXAMPLE_SPEC,
        "--lab",
        path_str(lab.dir()),
        "--env",
        "test",
    ]);
}

/// `warden identity enroll billing` into `root` (again with `--force`); the identity dir.
fn enroll(lab: &LabEnv, root: &Path, force: bool) -> PathBuf {
    let mut args = vec![
        "identity",
        "enroll",
        "billing",
        "--spec",
        EXAMPLE_SPEC,
        "--lab",
        path_str(lab.dir()),
        "--env",
        "test",
        "--root-dir",
        path_str(root),
    ];
    if force {
        args.push("--force");
    }
    WARDEN.ok(&args);
    root.join("test").join("billing")
}

/// Rewrites the enrolled `agent.toml` through its document model.
fn customize(dir: &Path, f: impl FnOnce(&mut AgentConfig)) -> PathBuf {
    let path = dir.join("agent.toml");
    let mut cfg = AgentConfig::load(&path).expect("enrolled agent.toml");
    f(&mut cfg);
    std::fs::write(&path, cfg.to_toml(&path).expect("toml")).expect("write agent.toml");
    // What the test wrote must still be a valid config.
    Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    path
}

fn echo_to(file: &Path) -> Option<Vec<String>> {
    // A shell in a TEST reload command only: it appends one line per reload.
    Some(vec![
        "sh".to_owned(),
        "-c".to_owned(),
        format!("echo x >> '{}'", file.display()),
    ])
}

async fn write_kv(op: &Client, name: &str, data: Value) {
    op.write(
        &format!("kvv2/data/billing/{name}"),
        &json!({ "data": data }),
        Idempotent::Yes,
    )
    .await
    .expect("write KV");
}

/// Replaces `ttl`/`max_ttl` of a PKI role, keeping everything else; returns the role as it was.
async fn tune_role(op: &Client, role: &str, ttl_secs: u64) -> Value {
    let path = format!("pki_int/roles/{role}");
    let before = op
        .read(&path)
        .await
        .expect("read role")
        .data
        .expect("role data");
    let mut body = before.clone();
    body["ttl"] = json!(ttl_secs);
    body["max_ttl"] = json!(ttl_secs);
    op.write(&path, &body, Idempotent::Yes)
        .await
        .expect("tune role");
    before
}

async fn restore_role(op: &Client, role: &str, before: &Value) {
    op.write(&format!("pki_int/roles/{role}"), before, Idempotent::Yes)
        .await
        .expect("restore role");
}

/// What a certificate set on disk is, after checking it completely: every file parses, the key
/// belongs to the certificate, fullchain = cert + chain, the chain verifies to the lab's root.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CertSet {
    serial: String,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    sans: Vec<String>,
    subject: String,
}

fn check_set(dir: &Path, root_pem: &str) -> CertSet {
    let read = |n: &str| {
        std::fs::read_to_string(dir.join(n))
            .unwrap_or_else(|e| panic!("{}/{n}: {e}", dir.display()))
    };
    let (cert, key, chain, full) = (
        read("cert.pem"),
        read("key.pem"),
        read("chain.pem"),
        read("fullchain.pem"),
    );
    warden_bao::ClientIdentity::from_pem(
        cert.clone().into_bytes(),
        zeroize::Zeroizing::new(key.into_bytes()),
    )
    .unwrap_or_else(|e| panic!("{}: key and certificate do not match: {e}", dir.display()));
    assert_eq!(
        full,
        format!("{cert}{chain}"),
        "fullchain is not cert + chain"
    );
    let report = warden_pki::verify_chain(&full, Some(root_pem), OffsetDateTime::now_utc())
        .expect("parse chain");
    assert!(report.valid, "chain does not verify: {:?}", report.problems);
    let leaf = &report.certs[0];
    CertSet {
        serial: leaf.serial.clone(),
        not_before: leaf.not_before,
        not_after: leaf.not_after,
        sans: leaf.subject_alt_names.clone(),
        subject: leaf.subject.clone(),
    }
}

fn state(dir: &Path, output: &str) -> Value {
    let p = dir.join("state").join(format!("{output}.json"));
    serde_json::from_str(
        &std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `warden -v agent --config CONFIG`, its output appended to `log`.
fn start_agent(config: &Path, log: &Path) -> RunningAgent {
    RunningAgent::spawn(
        WARDEN.command(&["-v", "agent", "--config", path_str(config)]),
        log,
    )
}

fn serial_of(dir: &Path) -> Option<String> {
    let pem = std::fs::read_to_string(dir.join("cert.pem")).ok()?;
    Some(warden_pki::parse_pem_bundle(&pem).ok()?[0].serial.clone())
}

// ---- 1: (a) (b) (c) ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_agent_delivers_renews_and_reloads_only_on_change() {
    let t0 = Instant::now();
    let lab = LabEnv::start(&["test"]).await;
    let op = lab.client("test");
    apply(&lab);
    write_kv(
        &op,
        "config",
        json!({"db_url": "postgres://db/billing", "pool": 4}),
    )
    .await;
    write_kv(&op, "stripe", json!({"api_key": "sk_test_not_a_real_key"})).await;
    let root = tempfile::tempdir().expect("tempdir");
    let id = enroll(&lab, root.path(), false);
    let root_pem = std::fs::read_to_string(id.join("trust/ca.pem")).expect("trust anchor");
    let tls = id.join("out/tls");
    let tls_reloads = id.join("reloads-tls");
    let config_reloads = id.join("reloads-config");
    let config = customize(&id, |c| {
        c.renewal.poll = "2s".to_owned();
        c.health = None;
        c.control = None;
        for o in &mut c.outputs {
            o.reload = match o.name.as_str() {
                "tls" => echo_to(&tls_reloads),
                "secret-config" => echo_to(&config_reloads),
                _ => None,
            };
        }
    });
    eprintln!("[1] lab + apply + enroll: {:?}", t0.elapsed());

    // (a) --once: everything rendered, verified, with the right modes; one reload each.
    let t = Instant::now();
    let out = WARDEN.ok(&[
        "-o",
        "json",
        "agent",
        "--config",
        path_str(&config),
        "--once",
    ]);
    eprintln!("[1a] first --once: {:?}", t.elapsed());
    let report: Value = serde_json::from_slice(&out.stdout).expect("once report");
    assert_eq!(
        report["outputs"].as_array().map(Vec::len),
        Some(3),
        "{report}"
    );
    for o in report["outputs"].as_array().expect("outputs") {
        assert_eq!(o["health"], "fresh", "{o}");
    }
    assert!(
        std::fs::symlink_metadata(&tls)
            .expect("out/tls")
            .file_type()
            .is_symlink(),
        "out/tls is the symlink to the live version"
    );
    let first = check_set(&tls, &root_pem);
    assert_eq!(first.subject, "CN=billing.test.warden.internal");
    let mut sans = first.sans.clone();
    sans.sort();
    assert_eq!(
        sans,
        [
            "DNS:billing-api.test.warden.internal",
            "DNS:billing.test.warden.internal"
        ]
    );
    assert_eq!(mode(&tls.join("key.pem")), 0o600);
    for f in ["cert.pem", "chain.pem", "fullchain.pem"] {
        assert_eq!(mode(&tls.join(f)), 0o644, "{f}");
    }
    let secret = id.join("out/secrets/config.json");
    let rendered: Value =
        serde_json::from_str(&std::fs::read_to_string(&secret).expect("config.json"))
            .expect("JSON");
    assert_eq!(
        rendered,
        json!({"db_url": "postgres://db/billing", "pool": 4})
    );
    assert_eq!(mode(&secret), 0o600);
    assert!(id.join("out/secrets/stripe.json").exists());
    assert_eq!(
        (line_count(&tls_reloads), line_count(&config_reloads)),
        (1, 1)
    );
    let st = state(&id, "tls");
    assert_eq!(st["serial"], first.serial);
    assert_eq!(st["last_reload"]["ok"], true);
    assert_eq!(st["files"].as_object().map(|m| m.len()), Some(4));
    assert_eq!(
        st["files"]["cert.pem"],
        warden_agent::state::sha256_hex(&std::fs::read(tls.join("cert.pem")).expect("cert"))
    );

    // (c) again: nothing is re-issued or rewritten, no reload runs.
    let t = Instant::now();
    let out = WARDEN.ok(&[
        "-o",
        "json",
        "agent",
        "--config",
        path_str(&config),
        "--once",
    ]);
    eprintln!("[1c] second --once (valid material): {:?}", t.elapsed());
    let again: Value = serde_json::from_slice(&out.stdout).expect("once report");
    for o in again["outputs"].as_array().expect("outputs") {
        assert_eq!(o["health"], "fresh", "{o}");
        assert_eq!(o["changes"], 0, "{o}");
    }
    assert_eq!(check_set(&tls, &root_pem).serial, first.serial);
    assert_eq!(
        (line_count(&tls_reloads), line_count(&config_reloads)),
        (1, 1)
    );

    // (b) a 2-minute leaf, renewed by a running agent before it expires.
    let before = tune_role(&op, "billing", 120).await;
    let config = customize(&id, |c| {
        c.outputs[0].ttl = Some("2m".to_owned());
    });
    // Someone removed the live certificate: the agent re-issues it (under the 2-minute role).
    // (The versions too: a missing symlink alone is repaired from the delivered version.)
    std::fs::remove_file(&tls).expect("remove the out/tls symlink");
    std::fs::remove_dir_all(id.join("out/tls.d")).expect("remove out/tls.d");
    let log = id.join("agent.log");
    let t = Instant::now();
    let mut agent = start_agent(&config, &log);
    let short = wait_for_async(Duration::from_secs(30), "the 2-minute certificate", || {
        serial_of(&tls).filter(|s| *s != first.serial)
    })
    .await;
    eprintln!(
        "[1b] first render by the long-running agent: {:?}",
        t.elapsed()
    );
    let s1 = check_set(&tls, &root_pem);
    assert_eq!(s1.serial, short);
    assert!(
        s1.not_after - s1.not_before <= time::Duration::seconds(160),
        "{s1:?}"
    );
    // The reload runs right after the symlink swap that made the serial visible.
    wait_for_async(
        Duration::from_secs(30),
        "the reload after the re-issue",
        || (line_count(&tls_reloads) >= 2).then_some(()),
    )
    .await;
    let reloads_at_s1 = line_count(&tls_reloads);
    assert_eq!(reloads_at_s1, 2, "one reload for the re-issued certificate");
    // Renewed before it expires.
    let s2_serial = wait_for_async(Duration::from_secs(150), "the renewal", || {
        serial_of(&tls).filter(|s| *s != s1.serial)
    })
    .await;
    let renewed_at = OffsetDateTime::now_utc();
    agent.assert_alive();
    assert!(
        renewed_at < s1.not_after,
        "renewed at {renewed_at}, after the old certificate expired at {}",
        s1.not_after
    );
    let s2 = check_set(&tls, &root_pem);
    assert_eq!(s2.serial, s2_serial);
    eprintln!(
        "[1b] renewed {}s before expiry, {:?} after start",
        (s1.not_after - renewed_at).whole_seconds(),
        t.elapsed()
    );
    // Exactly one reload for the renewal; none for ~25 unchanged template polls meanwhile.
    wait_for_async(Duration::from_secs(30), "the renewal's reload", || {
        (line_count(&tls_reloads) > reloads_at_s1).then_some(())
    })
    .await;
    assert_eq!(line_count(&tls_reloads), reloads_at_s1 + 1);
    assert_eq!(
        line_count(&config_reloads),
        1,
        "unchanged secrets caused a reload"
    );
    // The previous version is kept next to the live one, older ones are gone.
    let versions = std::fs::read_dir(id.join("out/tls.d"))
        .expect("tls.d")
        .count();
    assert!(versions <= 2, "{versions} versions kept");

    // A real change of a secret: exactly one reload, then none for the polls after it.
    write_kv(
        &op,
        "config",
        json!({"db_url": "postgres://db/billing", "pool": 8}),
    )
    .await;
    wait_for_async(Duration::from_secs(20), "the changed secret", || {
        std::fs::read_to_string(&secret)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .filter(|v| v["pool"] == 8)
            .map(drop)
    })
    .await;
    wait_for_async(Duration::from_secs(30), "the secret's reload", || {
        (line_count(&config_reloads) == 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(line_count(&config_reloads), 2, "one change, one reload");
    let status = agent.terminate(Duration::from_secs(10));
    assert!(status.success(), "SIGTERM exit: {status}");

    // (c) restart with valid material on disk: no new certificate, no reload.
    let tls_serial = serial_of(&tls).expect("serial");
    let (tls_lines, config_lines) = (line_count(&tls_reloads), line_count(&config_reloads));
    let t = Instant::now();
    let mut agent = start_agent(&config, &log);
    // Poll for the decision rather than sleeping a fixed 8 s and hoping the agent (a debug
    // build on a loaded CI machine) got that far; then let a few polls pass so a re-issue or a
    // reload, if the agent wrongly made one, has time to show.
    wait_for_async(
        Duration::from_secs(60),
        "the agent keeping its certificate",
        || {
            agent
                .log()
                .contains("keeping the valid certificate on disk")
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    agent.assert_alive();
    assert_eq!(
        serial_of(&tls).as_deref(),
        Some(tls_serial.as_str()),
        "re-issued on restart"
    );
    assert_eq!(state(&id, "tls")["serial"], tls_serial);
    assert_eq!(
        (line_count(&tls_reloads), line_count(&config_reloads)),
        (tls_lines, config_lines)
    );
    assert!(agent.terminate(Duration::from_secs(10)).success());
    eprintln!("[1c] restart kept serial {tls_serial} ({:?})", t.elapsed());

    // Nothing secret reached the log.
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    for secret in [
        "sk_test_not_a_real_key",
        "postgres://db/billing",
        "PRIVATE KEY",
    ] {
        assert!(!log_text.contains(secret), "{secret} in the log");
    }
    restore_role(&op, "billing", &before).await;
    eprintln!("[1] total {:?}", t0.elapsed());
}

// ---- 2: (e) (d) (f) ------------------------------------------------------------------------

/// A tiny xorshift, seeded from the clock: random kill moments without a dependency.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let seed = OffsetDateTime::now_utc().unix_timestamp_nanos() as u64 | 1;
        Self(seed)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

async fn unseal(lab: &LabEnv, op: &Client) {
    // The lab's custodians open their shares in memory (LAB ONLY custody).
    let layout = lab.lab().layout().env("test");
    for key in warden_lab::unseal_shares(&layout).expect("lab custody shares") {
        if !op.unseal(&key).await.expect("unseal").sealed {
            return;
        }
    }
    panic!("still sealed after every custody key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_survives_kill_9_a_sealed_server_and_renews_its_identity() {
    let t0 = Instant::now();
    let lab = LabEnv::start(&["test"]).await;
    let op = lab.client("test");
    apply(&lab);
    write_kv(&op, "config", json!({"db_url": "postgres://db/billing"})).await;
    write_kv(&op, "stripe", json!({"api_key": "sk_test_other"})).await;
    let root = tempfile::tempdir().expect("tempdir");
    let id = enroll(&lab, root.path(), false);
    let root_pem = std::fs::read_to_string(id.join("trust/ca.pem")).expect("trust anchor");
    let tls = id.join("out/tls");
    eprintln!("[2] lab + apply + enroll: {:?}", t0.elapsed());

    // (e) kill -9 during a burst of renewals. A 60 s role (OpenBao backdates 30 s) with
    // fraction 0.1 makes every new certificate due at once: the agent renews back to back.
    let before = tune_role(&op, "billing", 60).await;
    let reloads = id.join("reloads-tls");
    let config = customize(&id, |c| {
        c.renewal.fraction = 0.1;
        c.renewal.jitter = 0.0;
        c.renewal.margin = "1s".to_owned();
        c.health = None;
        c.control = None;
        c.outputs.truncate(1);
        c.outputs[0].ttl = Some("1m".to_owned());
        c.outputs[0].reload = echo_to(&reloads);
    });
    let log = id.join("agent-kill.log");
    let mut rng = Rng::new();
    let mut serials = std::collections::BTreeSet::new();
    let t = Instant::now();
    const KILLS: usize = 20;
    for round in 0..KILLS {
        let agent = start_agent(&config, &log);
        tokio::time::sleep(Duration::from_millis(150 + rng.below(1100))).await;
        agent.kill9();
        // Whatever the moment: the live set is one complete version.
        if std::fs::symlink_metadata(&tls).is_ok() {
            let set = check_set(&tls, &root_pem);
            serials.insert(set.serial);
        } else {
            assert_eq!(round, 0, "out/tls vanished after round {round}");
        }
        // The state record and the identity are never half-written either.
        if let Ok(text) = std::fs::read_to_string(id.join("state/tls.json")) {
            serde_json::from_str::<Value>(&text).expect("state/tls.json is complete JSON");
        }
        warden_bao::ClientIdentity::from_files(
            &id.join("identity/client.crt"),
            &id.join("identity/client.key"),
        )
        .expect("identity pair");
        // No temporary version directory is ever what the symlink points at.
        let target = std::fs::read_link(&tls).unwrap_or_default();
        assert!(
            !target.to_string_lossy().contains(".tmp-"),
            "{}",
            target.display()
        );
    }
    eprintln!(
        "[2e] {KILLS} kills in {:?}: {} distinct live serials seen, {} reloads",
        t.elapsed(),
        serials.len(),
        line_count(&reloads)
    );
    assert!(
        serials.len() >= KILLS / 2,
        "the kills did not land in a burst of renewals ({} serials)",
        serials.len()
    );
    restore_role(&op, "billing", &before).await;

    // (d) sealed mid-run, in process, so the request counter is read directly.
    let config = customize(&id, |c| {
        c.renewal = warden_enroll::RenewalSection::default();
        c.renewal.poll = "1s".to_owned();
        // Re-add the template outputs the kill phase dropped.
        c.outputs.truncate(1);
        c.outputs[0].ttl = Some("3d".to_owned());
        c.outputs[0].reload = None;
        for name in ["config", "stripe"] {
            c.outputs.push(warden_enroll::OutputSection {
                name: format!("secret-{name}"),
                kind: "template".to_owned(),
                contents: Some(format!(
                    "{{{{ kv(\"kvv2\", \"billing/{name}\") | tojson }}}}\n"
                )),
                path: Some(format!("out/secrets/{name}.json")),
                mode: Some("0600".to_owned()),
                ..Default::default()
            });
        }
    });
    // The last burst certificate lives a minute: start (d) from a 72-hour one.
    std::fs::remove_file(&tls).expect("remove out/tls");
    std::fs::remove_dir_all(id.join("out/tls.d")).expect("remove out/tls.d");
    let agent = Agent::new(Config::load(&config).expect("config")).expect("agent");
    let handle = agent.handle();
    let task = tokio::spawn(agent.run());
    let t = Instant::now();
    wait_for_async(Duration::from_secs(30), "every output fresh", || {
        handle
            .outputs()
            .iter()
            .all(|o| o.health == Health::Fresh)
            .then_some(())
    })
    .await;
    eprintln!("[2d] in-process agent fresh after {:?}", t.elapsed());
    let files = [
        "out/tls/cert.pem",
        "out/tls/key.pem",
        "out/secrets/config.json",
    ];
    let snapshot: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(id.join(f)).expect("file"))
        .collect();

    // Sealing is root-only: the harness token, not the operator.
    lab.harness_client("test").seal().await.expect("seal");
    let sealed_at = Instant::now();
    let r0 = handle.status().requests;
    wait_for_async(
        Duration::from_secs(30),
        "templates stale while sealed",
        || {
            let o = handle.outputs();
            o.iter()
                .filter(|o| o.kind == "template")
                .all(|o| o.health == Health::Stale)
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(sealed_at.elapsed())).await;
    let status = handle.status();
    let sent = status.requests - r0;
    let sealed_for = sealed_at.elapsed();
    eprintln!("[2d] sealed {sealed_for:?}: {sent} requests (2 templates polling every 1 s)");
    // Without backoff two outputs polling every second would send ~60.
    assert!(
        (2..=20).contains(&sent),
        "{sent} requests in {sealed_for:?} while sealed"
    );
    let tls_status = status
        .outputs
        .iter()
        .find(|o| o.name == "tls")
        .expect("tls");
    assert_eq!(
        tls_status.health,
        Health::Fresh,
        "a valid, not-due certificate stays fresh: {tls_status:?}"
    );
    for o in status.outputs.iter().filter(|o| o.kind == "template") {
        assert_eq!(o.health, Health::Stale, "{o:?}");
        assert!(
            o.last_error.as_deref().unwrap_or("").contains("sealed"),
            "{o:?}"
        );
    }
    for (f, was) in files.iter().zip(&snapshot) {
        assert_eq!(
            &std::fs::read(id.join(f)).expect("file"),
            was,
            "{f} changed while sealed"
        );
    }
    // A change made while sealed would be lost; make one after unseal to prove recovery.
    unseal(&lab, &op).await;
    let unsealed_at = Instant::now();
    // Raft takes a moment to become active after unseal; the agent rides that out by itself.
    op.wait_ready().await.expect("active after unseal");
    write_kv(&op, "stripe", json!({"api_key": "sk_test_rotated"})).await;
    wait_for_async(Duration::from_secs(60), "recovery after unseal", || {
        let fresh = handle.outputs().iter().all(|o| o.health == Health::Fresh);
        let rotated = std::fs::read_to_string(id.join("out/secrets/stripe.json"))
            .is_ok_and(|t| t.contains("rotated"));
        (fresh && rotated).then_some(())
    })
    .await;
    eprintln!(
        "[2d] recovered {:?} after unseal, same process",
        unsealed_at.elapsed()
    );
    handle.shutdown();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("agent stops")
        .expect("join")
        .expect("run");

    // (f) a 60-second mTLS identity, renewed by the running agent and used at once.
    let id_before = tune_role(&op, "billing-identity", 60).await;
    enroll(&lab, root.path(), true);
    let config = customize(&id, |c| {
        c.renewal.poll = "1s".to_owned();
        c.health = None;
        c.control = None;
        for o in &mut c.outputs {
            o.reload = None;
        }
    });
    let enrolled_pem = std::fs::read_to_string(id.join("identity/client.crt")).expect("identity");
    let enrolled = warden_pki::parse_pem_bundle(&enrolled_pem).expect("identity")[0].clone();
    assert!(enrolled.not_after - enrolled.not_before <= time::Duration::seconds(100));
    let agent = Agent::new(Config::load(&config).expect("config")).expect("agent");
    let handle = agent.handle();
    let task = tokio::spawn(agent.run());
    let t = Instant::now();
    wait_for_async(Duration::from_secs(90), "the identity renewal", || {
        (handle.status().auth.identity_renewals >= 1).then_some(())
    })
    .await;
    let renewed_pem = std::fs::read_to_string(id.join("identity/client.crt")).expect("identity");
    let renewed = warden_pki::parse_pem_bundle(&renewed_pem).expect("identity")[0].clone();
    assert_ne!(renewed.serial, enrolled.serial);
    assert_eq!(renewed.subject, enrolled.subject);
    warden_bao::ClientIdentity::from_files(
        &id.join("identity/client.crt"),
        &id.join("identity/client.key"),
    )
    .expect("renewed identity pair");
    eprintln!(
        "[2f] identity renewed {:?} after start, {}s before the enrolled one expired",
        t.elapsed(),
        (enrolled.not_after - OffsetDateTime::now_utc()).whole_seconds()
    );
    // Once the enrolled certificate has expired, only the renewed one can open a connection.
    let wait = (enrolled.not_after - OffsetDateTime::now_utc())
        .whole_seconds()
        .max(0) as u64
        + 2;
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let old_serial = serial_of(&tls).expect("tls serial");
    handle.rotate_now("tls").expect("rotate tls");
    wait_for_async(
        Duration::from_secs(30),
        "a certificate issued over the renewed identity",
        || serial_of(&tls).filter(|s| *s != old_serial),
    )
    .await;
    assert!(handle.rotate_now("nope").is_err());
    assert_eq!(handle.status().auth.logins, 1, "no re-login was needed");
    handle.shutdown();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("agent stops")
        .expect("join")
        .expect("run");
    restore_role(&op, "billing-identity", &id_before).await;
    eprintln!("[2] total {:?}", t0.elapsed());
}
