//! `warden serve --metrics-listen` end to end (issue 15 part 4): a real lab, a real
//! `warden serve`, and a real `prometheus` scraping its `/metrics` every second with the
//! shipped alert rules (`deploy/prometheus/warden-rules.yml`) loaded. Checks that
//! `promtool check rules` and `promtool test rules` pass, that the served figures are the ones
//! OpenBao holds (leader and term, the domain certificate's expiry, the seal state, job runs),
//! and that `WardenCredentialExpiringSoon` fires in Prometheus for a domain certificate issued
//! inside its purpose's grace window, then clears once `warden domain renew` replaced it.
//! Prometheus scrapes an enrolled agent's `/metrics` too (its `[health]` endpoint), so the
//! agent rules read real series.

#![allow(clippy::print_stderr)] // the measured fire and clear times go to the test log on purpose

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use warden_testkit::LabEnv;
use warden_testkit::cli::{Cli, path_str};

const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

/// The domain certificate is issued for `TTL`; its purpose's grace window is 48 h, so a 36 h
/// certificate is inside it (the alert fires) and a 72 h one is not (it clears).
const SPEC: &str = r#"
version = 1

[environments.test]
domain        = "test.warden.internal"
runtime_owner = "warden-test"
app_root      = "/srv/warden/test"

[apps.shop]
environments = ["test"]

[domains."shop.test.warden.internal"]
environments = ["test"]
app          = "shop"
ttl          = "TTL"
renew_before = "24h"

[purposes.public-tls]
description = "Certificates of public domains"
owner       = "platform"
tier        = "vault_kv"
delivery    = "agent_file"
rotation    = { interval = "20d", grace = "48h", max_age = "30d" }
evidence    = "EV-PKI"
covers      = ["domain/*"]

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
"#;

const CREDENTIAL: &str = "domain/shop-test-warden-internal";

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus")
}

/// A child process killed (and reaped) when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `GET path` on loopback (HTTP/1.0, so the body ends when the server closes); the body when
/// the answer is 200.
fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_owned())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_owned()))
}

/// The value of the series `name{…}` whose labels contain every `k="v"` of `want`.
fn sample(text: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix('{')?;
        let (labels, value) = rest.rsplit_once("} ")?;
        want.iter()
            .all(|(k, v)| labels.contains(&format!("{k}=\"{v}\"")))
            .then(|| value.parse().ok())?
    })
}

async fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The firing `WardenCredentialExpiringSoon` alerts for the domain certificate, from
/// Prometheus' own API.
fn firing(prom: SocketAddr) -> Option<Vec<Value>> {
    let body = get(prom, "/api/v1/alerts")?;
    let v: Value = serde_json::from_str(&body).ok()?;
    Some(
        v["data"]["alerts"]
            .as_array()?
            .iter()
            .filter(|a| {
                a["labels"]["alertname"] == "WardenCredentialExpiringSoon"
                    && a["labels"]["credential"] == CREDENTIAL
                    && a["state"] == "firing"
            })
            .cloned()
            .collect(),
    )
}

#[test]
fn shipped_rules_pass_promtool() {
    let dir = rules_dir();
    for args in [
        vec!["check", "rules", "warden-rules.yml"],
        vec!["test", "rules", "warden-rules.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(&dir)
            .output()
            .expect("promtool (Debian's `prometheus` package; scripts/bootstrap installs it)");
        assert!(
            out.status.success(),
            "promtool {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_fires_expiring_certificate_alert_and_clears_after_renewal() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let lab = LabEnv::start(&["test"]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    // Applied with 72 h (the PKI role's limit); served with 36 h, so serve issues a certificate
    // inside the 48 h grace window, and is not due to renew it (renew_before 24 h).
    let long = dir.path().join("long.toml");
    std::fs::write(&long, SPEC.replace("TTL", "72h")).expect("write spec");
    let short = dir.path().join("short.toml");
    std::fs::write(&short, SPEC.replace("TTL", "36h")).expect("write spec");
    let lab_dir = path_str(lab.dir());
    WARDEN.ok(&["apply", "--spec", path_str(&long), "--lab", lab_dir]);

    let log = dir.path().join("serve.jsonl");
    let serve = Proc(
        Command::new(WARDEN.bin())
            .args([
                "serve",
                "--spec",
                path_str(&short),
                "--lab",
                lab_dir,
                "--id",
                "m",
                "--lease-ttl",
                "3s",
                "--tick",
                "1s",
                "--posture-every",
                "1s",
                "--metrics-listen",
                "127.0.0.1:0",
                "-o",
                "json",
            ])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(std::fs::File::create(dir.path().join("serve.err")).expect("err"))
            .spawn()
            .expect("start warden serve"),
    );
    let events = || -> Vec<Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let metrics: SocketAddr = wait_for("the metrics address", Duration::from_secs(60), || {
        events()
            .iter()
            .find(|e| e["event"] == "metrics_listening")
            .and_then(|e| e["addr"].as_str()?.parse().ok())
    })
    .await;
    assert!(metrics.ip().is_loopback(), "{metrics}");

    // serve's own figures: leader of term 1, the issued certificate ~36 h from expiry (as the
    // stored certificate says), unsealed, a recorded renewal.
    let text = wait_for(
        "the domain certificate's expiry in /metrics",
        Duration::from_secs(30),
        || {
            let t = get(metrics, "/metrics")?;
            sample(
                &t,
                "warden_serve_credential_expiry_seconds",
                &[("credential", CREDENTIAL)],
            )
            .map(|_| t)
        },
    )
    .await;
    let expiry = sample(
        &text,
        "warden_serve_credential_expiry_seconds",
        &[("credential", CREDENTIAL), ("purpose", "public-tls")],
    )
    .expect("expiry");
    assert!(
        (35.0 * 3600.0..=36.0 * 3600.0 + 60.0).contains(&expiry),
        "a 36 h certificate: {expiry} s left"
    );
    assert_eq!(
        sample(&text, "warden_serve_leader", &[("env", "test")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "warden_serve_leader_term", &[("env", "test")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "warden_serve_openbao_sealed", &[("env", "test")]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "warden_serve_purpose_grace_seconds",
            &[("purpose", "public-tls")]
        ),
        Some(48.0 * 3600.0)
    );
    assert!(
        sample(&text, "warden_serve_ca_expiry_seconds", &[("env", "test")])
            .is_some_and(|s| s > 0.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "warden_serve_job_runs_total",
            &[
                ("job", "renew-domain/shop-test-warden-internal"),
                ("outcome", "ok")
            ]
        ),
        Some(1.0),
        "{text}"
    );

    // A real agent (the shop identity, enrolled on this lab) with its `/health` + `/metrics`
    // endpoint, for Prometheus to scrape beside serve.
    let hosts = dir.path().join("hosts");
    WARDEN.ok(&[
        "identity",
        "enroll",
        "shop",
        "--env",
        "test",
        "--spec",
        path_str(&long),
        "--lab",
        lab_dir,
        "--root-dir",
        path_str(&hosts),
    ]);
    let shop = hosts.join("test/shop");
    let config = shop.join("agent.toml");
    let toml = std::fs::read_to_string(&config).expect("agent.toml");
    if !toml.contains("[health]") {
        std::fs::write(
            &config,
            format!("{toml}\n[health]\nlisten = \"127.0.0.1:0\"\n"),
        )
        .expect("agent.toml");
    }
    let mut agent = warden_testkit::RunningAgent::spawn(
        WARDEN.command(&["agent", "--config", path_str(&config)]),
        &dir.path().join("agent.log"),
    );
    let agent_metrics: SocketAddr = wait_for(
        "the agent's health address",
        Duration::from_secs(60),
        || {
            agent.assert_alive();
            std::fs::read_to_string(shop.join("state/health.addr"))
                .ok()?
                .trim()
                .parse()
                .ok()
        },
    )
    .await;
    wait_for("the agent's /metrics", Duration::from_secs(60), || {
        get(agent_metrics, "/metrics").filter(|t| t.contains("warden_agent_output_fresh"))
    })
    .await;

    // A real Prometheus on loopback, scraping serve and the agent every second, evaluating the
    // shipped rules.
    let rules = rules_dir().join("warden-rules.yml");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: warden-serve\n    static_configs:\n      - targets: ['{metrics}']\n  - job_name: warden-agent\n    static_configs:\n      - targets: ['{agent_metrics}']\n",
            rules.canonicalize().expect("rules file").display()
        ),
    )
    .expect("write prometheus config");
    let prom: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let _prometheus = Proc(
        Command::new("prometheus")
            .arg(format!("--config.file={}", path_str(&config)))
            .arg(format!(
                "--storage.tsdb.path={}",
                path_str(&dir.path().join("tsdb"))
            ))
            .arg(format!("--web.listen-address={prom}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.err")).expect("err"))
            .spawn()
            .expect("prometheus (Debian's `prometheus` package; scripts/bootstrap installs it)"),
    );

    let started = Instant::now();
    let alerts = wait_for(
        "the expiring-certificate alert to fire",
        Duration::from_secs(60),
        || firing(prom).filter(|a| !a.is_empty()),
    )
    .await;
    eprintln!(
        "alert firing {} ms after prometheus started",
        started.elapsed().as_millis()
    );
    let a = &alerts[0];
    // Prometheus holds the agent's series too: one per output, scraped from its endpoint.
    let fresh = wait_for(
        "the agent's series in Prometheus",
        Duration::from_secs(30),
        || {
            let body = get(prom, "/api/v1/query?query=warden_agent_output_fresh")?;
            let v: Value = serde_json::from_str(&body).ok()?;
            let r = v["data"]["result"].as_array()?.clone();
            (!r.is_empty()).then_some(r)
        },
    )
    .await;
    assert!(
        fresh.iter().all(|s| s["metric"]["job"] == "warden-agent"),
        "{fresh:?}"
    );
    assert_eq!(a["labels"]["env"], "test", "{a}");
    assert_eq!(a["labels"]["purpose"], "public-tls", "{a}");
    assert_eq!(a["labels"]["severity"], "warning", "{a}");

    // Renewed for 72 h (outside the window): the next collection serves the new expiry and the
    // alert clears.
    WARDEN.ok(&[
        "domain",
        "renew",
        "--spec",
        path_str(&long),
        "--lab",
        lab_dir,
        "--force",
    ]);
    let renewed = Instant::now();
    wait_for("the alert to clear", Duration::from_secs(60), || {
        firing(prom).filter(Vec::is_empty)
    })
    .await;
    eprintln!(
        "alert cleared {} ms after the renewal",
        renewed.elapsed().as_millis()
    );
    let text = get(metrics, "/metrics").expect("metrics");
    let expiry = sample(
        &text,
        "warden_serve_credential_expiry_seconds",
        &[("credential", CREDENTIAL)],
    )
    .expect("expiry");
    assert!(expiry > 71.0 * 3600.0, "renewed for 72 h: {expiry} s left");
    agent.assert_alive();
    drop(serve);
}
