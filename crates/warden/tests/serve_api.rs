//! `warden serve --listen` end to end (issue 15 part 2, ADR 0025): a real lab (`test` and
//! `prod`, HTTPS + mTLS) and a real `warden serve` process serving the API of `test`. Checks
//! the answers with the operator's client certificate (the leader, a job record with the
//! rotation it made when asked through `POST /v1/jobs/{job}/run`, a follower answering 409 with
//! the leader, the purposes, JSON errors), that the OpenAPI document the server
//! serves validates (`openapi-spec-validator`), that `schemathesis run` against the live server
//! finds no server error and no answer outside the document, and that a client with no
//! certificate, with `prod`'s operator certificate or with a `test` certificate that is not an
//! operator's (the nodes') is refused at the handshake.
//!
//! Needs `curl`, `openapi-spec-validator` and `schemathesis` on PATH (`scripts/bootstrap`
//! installs the Python tools).

#![allow(clippy::print_stderr)] // the measured trigger delay and schemathesis summary go to the test log on purpose

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use warden_testkit::LabEnv;
use warden_testkit::cli::{Cli, path_str};

const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

const SPEC: &str = r#"
version = 1

[environments.test]
domain        = "test.warden.internal"
runtime_owner = "warden-test"
app_root      = "/srv/warden/test"

[environments.prod]
domain        = "prod.warden.internal"
runtime_owner = "warden-prod"
app_root      = "/srv/warden/prod"

[apps.issuer]
environments = ["test"]
signing_keys = [{ name = "jwt", algorithm = "es256", grace = "1h", interval = "1h" }]

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
description = "Signs issuer's session tokens, rotated by warden serve"
owner       = "issuer"
tier        = "vault_kv"
delivery    = "api"
rotation    = { interval = "1h", grace = "1h" }
evidence    = "EV-TOKENS"
covers      = ["issuer/signing-key/jwt"]
"#;

/// A `warden serve` process, killed if the test ends early.
struct Serve {
    child: Child,
    log: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// The client files of one environment's operator, and the root clients trust.
struct Creds {
    cert: PathBuf,
    key: PathBuf,
    root: PathBuf,
}

fn creds(lab: &LabEnv, env: &str) -> Creds {
    let l = lab.lab().layout().env(env);
    Creds {
        cert: l.operator_cert(),
        key: l.operator_key(),
        root: l.ca_bundle(),
    }
}

/// `curl` with the root as the only trust anchor and, when given, a client certificate.
fn curl(url: &str, root: &Path, client: Option<&Creds>, extra: &[&str]) -> Output {
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "10", "--cacert", path_str(root)]);
    if let Some(cl) = client {
        c.args(["--cert", path_str(&cl.cert), "--key", path_str(&cl.key)]);
    }
    c.args(extra)
        .args(["-w", "\n%{http_code}", url])
        .output()
        .expect("curl (install it)")
}

/// Status and JSON body of a request with `client`'s certificate.
fn get(url: &str, client: &Creds) -> (u16, Value) {
    let out = curl(url, &client.root, Some(client), &[]);
    assert!(out.status.success(), "curl {url}: {out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (
        code.parse().expect("status"),
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{url}: {e}: {body}")),
    )
}

/// Status and JSON body of a POST with `client`'s certificate.
fn post(url: &str, client: &Creds) -> (u16, Value) {
    let out = curl(url, &client.root, Some(client), &["-X", "POST"]);
    assert!(out.status.success(), "curl -X POST {url}: {out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (
        code.parse().expect("status"),
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{url}: {e}: {body}")),
    )
}

fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_its_openapi_document_and_only_to_this_environments_operators() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let lab = LabEnv::start(&["test", "prod"]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let spec_path = dir.path().join("warden.toml");
    std::fs::write(&spec_path, SPEC).expect("write spec");
    let (spec, lab_dir) = (path_str(&spec_path), path_str(lab.dir()));
    WARDEN.ok(&["apply", "--spec", spec, "--lab", lab_dir, "--env", "test"]);

    // Replica a serves test's API on a free loopback port. Its tick is a minute, so a job
    // that runs within seconds ran because the API asked for it.
    let (a, base) = start(spec, lab_dir, "api-a", dir.path());
    let test = creds(&lab, "test");
    let prod = creds(&lab, "prod");

    // The leader.
    let leader = wait_for("api-a to lead", Duration::from_secs(60), || {
        let (code, v) = get(&format!("{base}/v1/leader"), &test);
        (code == 200 && v["is_leader"] == true).then_some(v)
    });
    assert_eq!(leader["lease"]["holder"], "api-a");
    assert_eq!(leader["replica"], "api-a");
    assert_eq!(leader["env"], "test");

    // A follower refuses to run a job and names the leader.
    let (b, base_b) = start(spec, lab_dir, "api-b", dir.path());
    wait_for("api-b to follow", Duration::from_secs(60), || {
        b.events()
            .iter()
            .any(|e| e["event"] == "follower" && e["holder"] == "api-a")
            .then_some(())
    });
    let rotation = "rotate-signing-key%2Fissuer%2Fjwt";
    let (code, v) = post(&format!("{base_b}/v1/jobs/{rotation}/run"), &test);
    assert_eq!((code, v["leader"].as_str()), (409, Some("api-a")), "{v}");
    drop(b);

    // The leader runs it when asked: the key has no version yet, so the rotation is due.
    let (code, before) = get(&format!("{base}/v1/jobs/{rotation}"), &test);
    assert_eq!(
        (code, before["total_runs"].as_u64()),
        (200, Some(0)),
        "{before}"
    );
    let asked = Instant::now();
    let (code, v) = post(&format!("{base}/v1/jobs/{rotation}/run"), &test);
    assert_eq!((code, v["accepted"].as_bool()), (202, Some(true)), "{v}");
    let job = wait_for("the rotation's record", Duration::from_secs(60), || {
        let (code, v) = get(&format!("{base}/v1/jobs/{rotation}"), &test);
        assert_eq!(code, 200, "{v}");
        (v["total_runs"].as_u64() >= Some(1)).then_some(v)
    });
    eprintln!(
        "a rotation asked through the API recorded {:.1} s later",
        asked.elapsed().as_secs_f64()
    );
    assert_eq!(job["kind"], "rotate-signing-key");
    assert_eq!(job["runs"][0]["outcome"], "ok", "{job}");
    assert_eq!(job["runs"][0]["holder"], "api-a");
    let (code, jobs) = get(&format!("{base}/v1/jobs"), &test);
    assert_eq!(code, 200);
    let ids: Vec<&str> = jobs["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["job"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["rotate-signing-key/issuer/jwt", "posture"]);
    let (code, reg) = get(&format!("{base}/v1/registry"), &test);
    assert_eq!(code, 200);
    assert_eq!(reg["purposes"][1]["id"], "token-signing", "{reg}");
    let (code, posture) = get(&format!("{base}/v1/posture"), &test);
    assert_eq!(code, 200, "{posture}");
    assert_eq!(posture["env"], "test");
    let creds: Vec<&str> = posture["purposes"]
        .as_array()
        .expect("purposes")
        .iter()
        .flat_map(|p| p["credentials"].as_array().expect("credentials"))
        .map(|c| c["id"].as_str().expect("id"))
        .collect();
    assert!(creds.contains(&"issuer/signing-key/jwt"), "{posture}");
    // The dashboard: the same data as HTML, every purpose of the registry on it, no script.
    let out = curl(
        &format!("{base}/dashboard"),
        &test.root,
        Some(&test),
        &["-i"],
    );
    assert!(out.status.success(), "curl /dashboard: {out:?}");
    let page = String::from_utf8(out.stdout).expect("utf-8");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.to_ascii_lowercase()
            .contains("content-security-policy: default-src 'none'")
    );
    for p in reg["purposes"].as_array().expect("purposes") {
        let id = p["id"].as_str().expect("id");
        assert!(page.contains(id), "purpose {id} not on the dashboard");
    }
    assert!(!page.contains("<script"), "the dashboard carries no script");
    // Errors are JSON with a hint.
    for (url, want) in [
        (format!("{base}/v1/jobs/nope"), 404),
        (format!("{base}/v1/nope"), 404),
    ] {
        let (code, v) = get(&url, &test);
        assert_eq!(code, want, "{url}: {v}");
        assert!(v["error"].is_string() && v["hint"].is_string(), "{v}");
    }
    let out = curl(
        &format!("{base}/v1/jobs"),
        &test.root,
        Some(&test),
        &["-X", "POST"],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).ends_with("\n405"),
        "{out:?}"
    );

    // Refused at the handshake: no certificate, and prod's operator certificate (same root,
    // another environment's CA). No HTTP status comes back.
    // And a certificate of this environment that is not an operator's (the nodes' own, from
    // test's listener CA): it chains, but it is nobody's login.
    let node = Creds {
        cert: lab.lab().layout().env("test").node_cert(),
        key: lab.lab().layout().env("test").node_key(),
        root: test.root.clone(),
    };
    for (who, client) in [
        ("no certificate", None),
        ("prod's operator", Some(&prod)),
        ("test's node certificate", Some(&node)),
    ] {
        if let Some(c) = client {
            assert!(
                c.cert.exists() && c.key.exists(),
                "{who}: {}",
                c.cert.display()
            );
        }
        let out = curl(&format!("{base}/v1/leader"), &test.root, client, &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        // curl 35 (handshake failed) or 56 (TLS 1.3: the refusal arrives with the first read),
        // never 58 (its own certificate unusable) nor an HTTP status.
        assert!(
            matches!(out.status.code(), Some(35 | 56)) && stdout.trim_end().ends_with("000"),
            "{who}: expected a refused handshake, got {out:?}"
        );
    }

    // The OpenAPI document the server serves is valid...
    let doc = dir.path().join("openapi.json");
    let out = curl(
        &format!("{base}/openapi.json"),
        &test.root,
        Some(&test),
        &["-o", path_str(&doc)],
    );
    assert!(out.status.success(), "{out:?}");
    let v = Command::new("openapi-spec-validator")
        .arg(&doc)
        .output()
        .expect("openapi-spec-validator (scripts/bootstrap installs it)");
    assert!(v.status.success(), "openapi-spec-validator: {v:?}");

    // ... and the live server keeps to it: no server error, every answer in the document.
    let started = Instant::now();
    let st = Command::new("schemathesis")
        .args([
            "run",
            path_str(&doc),
            "--url",
            &base,
            "--request-cert",
            path_str(&test.cert),
            "--request-cert-key",
            path_str(&test.key),
            "--tls-verify",
            path_str(&test.root),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance,unsupported_method",
            "--max-examples",
            "15",
            "--generation-deterministic",
            "--no-color",
        ])
        .env("SCHEMATHESIS_HOOKS", "")
        // Its cache of failures goes to the temp dir, not the source tree.
        .current_dir(dir.path())
        .output()
        .expect("schemathesis (scripts/bootstrap installs it)");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&st.stdout),
        String::from_utf8_lossy(&st.stderr)
    );
    assert!(
        st.status.success(),
        "schemathesis found problems:\n{report}"
    );
    eprintln!(
        "schemathesis: {:.1} s\n{}",
        started.elapsed().as_secs_f64(),
        report
            .lines()
            .rev()
            .take(12)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    drop(a);
}

/// Starts `warden serve --listen 127.0.0.1:0` for test as `id`; returns it and its API's URL.
fn start(spec: &str, lab_dir: &str, id: &str, dir: &Path) -> (Serve, String) {
    let log = dir.join(format!("serve-{id}.jsonl"));
    let child = Command::new(WARDEN.bin())
        .args([
            "serve",
            "--spec",
            spec,
            "--lab",
            lab_dir,
            "--env",
            "test",
            "--id",
            id,
            "--lease-ttl",
            "3s",
            "--tick",
            "60s",
            "--listen",
            "127.0.0.1:0",
            "-o",
            "json",
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).expect("log file"))
        .stderr(std::fs::File::create(dir.join(format!("serve-{id}.err"))).expect("stderr file"))
        .spawn()
        .expect("start warden serve");
    let serve = Serve { child, log };
    let listen = wait_for("the API address", Duration::from_secs(60), || {
        serve.events().iter().find_map(|e| {
            (e["event"] == "api" && e["env"] == "test")
                .then(|| e["listen"].as_str().expect("listen").to_owned())
        })
    });
    (serve, format!("https://{listen}"))
}
