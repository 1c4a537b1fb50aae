//! The `warden-agent` binary end to end, against a real lab (HTTPS + mTLS OpenBao, the example
//! spec applied with `warden_plan`, `billing` enrolled with `warden_enroll::enroll`).
//!
//! 1. `once_then_serve_deliver_the_identitys_outputs` — `--once` delivers a leaf certificate
//!    (key on the host, chain to the lab's root), a KV secret rendered as JSON and the CA chain,
//!    runs the reload once for the real change and exits 0; a second `--once` changes nothing
//!    and reloads nothing; `--output json` prints one parseable report; a FIFO planted at a
//!    delivered file's name neither hangs the next start nor is read; the long-running mode
//!    serves its control socket and health address and stops cleanly on SIGTERM.
//! 2. `idle_and_slow_clients_cannot_starve_the_endpoints` — with 200 idle TCP connections and a
//!    slowloris on the health port, `/health` and `/metrics` still answer within 1.5 s (below
//!    the 2 s read timeouts), and with 20 idle connections on the control socket so does
//!    `status`; every descriptor is given back afterwards. `/health` names no absolute path (the control socket has the message),
//!    and the log, written to a file without `NO_COLOR`, has no escape codes.
//! 3. `a_dead_first_node_is_passed_over_without_a_restart` — `billing` enrolled through an
//!    operator client that knows two node addresses, the first one dead: `agent.toml` lists both
//!    (`addresses`), and the agent logs in through the live one, delivers every output, and its
//!    status (control socket), `/health` and `/metrics` name the live node.
//! 5. `a_failed_reload_is_run_again_until_it_works` — a certificate's and a template's
//!    reloads fail (the service is down): `--once` exits 1 and neither output is `fresh`; once
//!    the service is up the next run reloads both although nothing new was delivered, and the
//!    run after that reloads nothing.
//! 4. `bad_invocations_fail_with_the_documented_codes` (no server) — an invalid `agent.toml`
//!    exits 1 naming `file:line`, a missing one exits 1 naming who writes it, command-line
//!    mistakes exit 2 with the usage; `--help` and `--version` exit 0; `doctor` on the invalid
//!    config fails its `config` check (exit 1) and skips the rest.
//!
//! Nothing secret is printed: assertions name files and outcomes, never key or secret bytes.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use time::OffsetDateTime;
use warden_bao::Idempotent;
use warden_enroll::{EnrollOptions, EnrollRequest, IdentityLayout, Owner};
use warden_testkit::cli::{Cli, path_str, text};
use warden_testkit::files::{line_count, mode};
use warden_testkit::{LabEnv, Poll};

/// A hung agent fails the test instead of stalling the suite.
const LIMIT: Duration = Duration::from_secs(120);
/// The binary under test, run with a clean environment (the agent must not need any of the
/// variables that could point it elsewhere) and stdin from `/dev/null`.
const AGENT: Cli = Cli::new(env!("CARGO_BIN_EXE_warden-agent")).with_timeout(LIMIT);

// ---- helpers ------------------------------------------------------------------------------

fn both(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Applies the example spec to the lab's `test` environment and enrolls `billing` under
/// `root`, as `warden apply` and `warden identity enroll --root-dir` do; the identity's dir.
async fn apply_and_enroll(lab: &LabEnv, root: &Path) -> PathBuf {
    apply_and_enroll_with(lab, &lab.client("test"), root).await
}

/// [`apply_and_enroll`] through the client `operator`.
async fn apply_and_enroll_with(
    lab: &LabEnv,
    operator: &warden_bao::Client,
    root: &Path,
) -> PathBuf {
    // The harness lab runs no PostgreSQL: the example without its lab database.
    let spec = warden_testkit::example_spec();
    let env = spec
        .environment("test")
        .expect("a test environment")
        .clone();
    let inputs = warden_plan::EnvInputs {
        identity_ca_pem: operator
            .pki_ca_cert(&env.mounts.pki)
            .await
            .expect("the lab's intermediate"),
        ..warden_plan::EnvInputs::default()
    };
    // A KV mount the apply has just enabled answers "upgrading from non-versioned to
    // versioned data" for a moment; on a loaded machine the ownership record can land in that
    // moment. Planning again and applying what is left is what an operator would do.
    let mut attempt = 0;
    loop {
        let desired = warden_plan::desired_state(&spec, &env, &inputs);
        let plan = warden_plan::plan_env(operator, "test", desired, false, 4)
            .await
            .expect("plan");
        match warden_plan::apply_env(operator, &plan, 4, Arc::new(|_, _| {})).await {
            Ok(_) => break,
            Err(e) if attempt < 10 && format!("{e:?}").contains("Upgrading from non-versioned") => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("apply: {e:?}"),
        }
    }
    let anchor = read(&lab.lab().layout().env("test").ca_bundle());
    let layout = IdentityLayout::under_root(root, "test", "billing");
    warden_enroll::enroll(
        operator,
        &EnrollRequest {
            spec: &spec,
            env: &env,
            identity: "billing",
            trust_anchor_pem: &anchor,
            layout: &layout,
        },
        &EnrollOptions {
            force: false,
            owner: Owner::CurrentUser,
        },
    )
    .await
    .expect("enroll billing");
    layout.dir().to_path_buf()
}

/// Writes `secret` as billing's `config` in the lab's `test` environment: the KV secret the
/// agent's `config` output delivers.
async fn write_billing_config(lab: &LabEnv, secret: &Value) {
    lab.client("test")
        .write(
            "kvv2/data/billing/config",
            &json!({ "data": secret }),
            Idempotent::Yes,
        )
        .await
        .expect("write the KV secret");
}

/// The three things of the agent benchmark: a leaf, a KV secret as JSON, the CA chain. Only
/// the certificate reloads (a shell appending a line: test only), so reloads are countable.
fn write_config(dir: &Path, address: &str, reloads: &Path) -> PathBuf {
    let path = dir.join("agent-bin-test.toml");
    std::fs::write(
        &path,
        format!(
            r#"version = 1

[identity]
name        = "billing"
kind        = "app"
env         = "test"
common_name = "billing.identity.test.warden.internal"

[openbao]
address = "{address}"
ca_file = "trust/ca.pem"

[auth]
method        = "cert"
mount         = "cert"
role          = "billing"
policy        = "billing"
cert_file     = "identity/client.crt"
key_file      = "identity/client.key"
pki_mount     = "pki_int"
identity_role = "billing-identity"

[[output]]
name        = "tls"
type        = "certificate"
pki_mount   = "pki_int"
role        = "billing"
common_name = "billing.test.warden.internal"
sans        = ["billing-api.test.warden.internal"]
ttl         = "72h"
key_type    = "ec-p256"
dir         = "out/tls"
reload      = ["/bin/sh", "-c", "echo reload >> '{reloads}'"]

[[output]]
name     = "config"
type     = "template"
contents = '{{{{ kv("kvv2", "billing/config") | tojson }}}}'
path     = "out/config.json"
mode     = "0600"

[[output]]
name       = "ca"
type       = "ca_chain"
pki_mount  = "pki_int"
path       = "out/chain.pem"
full_chain = true

[health]
listen = "127.0.0.1:0"

[control]
socket = "state/control.sock"
"#,
            reloads = path_str(reloads),
        ),
    )
    .expect("write agent config");
    path
}

/// The certificate set verifies completely: key fits the certificate, fullchain = cert +
/// chain, the chain verifies to `root_pem`, the names are the configured ones. Its serial.
fn check_certificate(dir: &Path, root_pem: &str) -> String {
    let (cert, key, chain, full) = (
        read(&dir.join("cert.pem")),
        read(&dir.join("key.pem")),
        read(&dir.join("chain.pem")),
        read(&dir.join("fullchain.pem")),
    );
    warden_bao::ClientIdentity::from_pem(
        cert.clone().into_bytes(),
        zeroize::Zeroizing::new(key.into_bytes()),
    )
    .unwrap_or_else(|e| panic!("key and certificate do not match: {e}"));
    assert_eq!(full, format!("{cert}{chain}"), "fullchain is cert + chain");
    let report = warden_pki::verify_chain(&full, Some(root_pem), OffsetDateTime::now_utc())
        .expect("parse the chain");
    assert!(
        report.valid,
        "the chain does not verify: {:?}",
        report.problems
    );
    let leaf = &report.certs[0];
    assert!(
        leaf.subject.contains("billing.test.warden.internal"),
        "{}",
        leaf.subject
    );
    assert!(
        leaf.subject_alt_names
            .iter()
            .any(|n| n == "DNS:billing-api.test.warden.internal"),
        "{:?}",
        leaf.subject_alt_names
    );
    assert_eq!(mode(&dir.join("key.pem")), 0o600, "the key is owner-only");
    leaf.serial.clone()
}

// ---- tests --------------------------------------------------------------------------------

/// Test 3: a cluster's dead first node (its own file: this one holds the shared helpers).
#[path = "warden_agent_bin/failover.rs"]
mod failover;

/// Test 5: a failed reload is run again (its own file).
#[path = "warden_agent_bin/reload.rs"]
mod reload;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_then_serve_deliver_the_identitys_outputs() {
    let lab = LabEnv::start(&["test"]).await;
    let root = tempfile::tempdir().expect("tempdir");
    let dir = apply_and_enroll(&lab, root.path()).await;
    let anchor = read(&dir.join("trust/ca.pem"));
    let secret = json!({ "user": "agent-bin-test", "mode": "once" });
    write_billing_config(&lab, &secret).await;
    let reloads = dir.join("reloads.log");
    let address = lab.lab().env("test").expect("test env").address();
    let config = write_config(&dir, &address, &reloads);
    let out_dir = dir.join("out");

    // (1) --once delivers all three and reloads once, for the one output that has a reload.
    let out = AGENT.run(&["--config", path_str(&config), "--once"]);
    assert!(out.status.success(), "--once failed:\n{}", both(&out));
    let report = text(&out.stdout);
    for line in [
        "billing/tls (certificate): ok",
        "billing/config (template): ok",
        "billing/ca (ca_chain): ok",
    ] {
        assert!(report.contains(line), "missing `{line}` in:\n{report}");
    }
    assert!(report.contains("delivered, reload ok"), "{report}");
    let serial = check_certificate(&out_dir.join("tls"), &anchor);
    let rendered: Value =
        serde_json::from_str(&read(&out_dir.join("config.json"))).expect("the secret as JSON");
    assert_eq!(rendered, secret, "the rendered secret is the KV data");
    assert_eq!(mode(&out_dir.join("config.json")), 0o600);
    let chain = warden_pki::verify_chain(
        &read(&out_dir.join("chain.pem")),
        Some(&anchor),
        OffsetDateTime::now_utc(),
    )
    .expect("parse the CA chain");
    assert!(chain.valid, "{:?}", chain.problems);
    assert_eq!(chain.certs.len(), 2, "intermediate + root");
    assert_eq!(line_count(&reloads), 1, "one reload for one real change");

    // (2) Again, as JSON: the certificate on disk is still good, nothing changes or reloads.
    let out = AGENT.run(&["--config", path_str(&config), "--once", "--output", "json"]);
    assert!(
        out.status.success(),
        "second --once failed:\n{}",
        both(&out)
    );
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("--output json is one document ({e}):\n{}", both(&out)));
    assert_eq!(doc["auth_error"], Value::Null, "{doc}");
    let outputs = doc["outputs"].as_array().expect("outputs");
    assert_eq!(outputs.len(), 3, "{doc}");
    assert!(outputs.iter().all(|o| o["health"] == "fresh"), "{doc}");
    assert_eq!(
        check_certificate(&out_dir.join("tls"), &anchor),
        serial,
        "a valid certificate is kept, not re-issued"
    );
    assert_eq!(
        line_count(&reloads),
        1,
        "an unchanged render does not reload"
    );

    // (2b) A FIFO planted at a delivered file's name (the output's service user may own its
    // directory): the agent looks at what it delivered before, at start, and must neither
    // block on opening it nor read through it; it delivers over it.
    let config_json = out_dir.join("config.json");
    std::fs::remove_file(&config_json).expect("rm");
    nix::unistd::mkfifo(
        &config_json,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("mkfifo");
    let started = Instant::now();
    let out = AGENT.run(&["--config", path_str(&config), "--once"]);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "a FIFO at an output's name hung the agent at start"
    );
    assert!(out.status.success(), "--once over a FIFO:\n{}", both(&out));
    let rendered: Value =
        serde_json::from_str(&read(&config_json)).expect("delivered over the FIFO");
    assert_eq!(rendered, secret);

    // (3) The long-running mode: endpoints up, then SIGTERM stops it with exit 0 and the
    // control socket removed.
    let socket = dir.join("state/control.sock");
    let addr_file = dir.join("state/health.addr");
    let _ = std::fs::remove_file(&addr_file);
    let mut child = AGENT
        .command(&["--config", path_str(&config)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the agent");
    Poll::new(LIMIT)
        .every(Duration::from_millis(50))
        .until_true("the control socket and health address", || {
            socket.exists() && addr_file.exists()
        });
    let health_addr = read(&addr_file);
    assert!(
        health_addr.trim().starts_with("127.0.0.1:"),
        "loopback only: {health_addr}"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("send SIGTERM");
    assert!(status.success());
    let start = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            panic!("the agent did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = child
        .stderr
        .take()
        .map(|mut e| {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
            s
        })
        .unwrap_or_default();
    assert!(exit.success(), "exit {exit:?} after SIGTERM:\n{stderr}");
    assert!(
        stderr.contains("billing: agent running"),
        "the progress line:\n{stderr}"
    );
    assert!(!socket.exists(), "the control socket is removed on stop");
    assert_eq!(line_count(&reloads), 1, "nothing changed while it ran");
}

/// How soon a request must be answered while idle connections hold the listeners: below the
/// 2 s read timeouts (health header, control request) that would free a slot if the agent
/// served connections in turn, with room for a debug agent on a loaded CI machine (it was 1 s).
const ANSWER_WITHIN: Duration = Duration::from_millis(1500);

/// `GET path` on a new connection; (how long the whole exchange took, the raw response). The
/// exchange is abandoned after `limit`.
fn get_within(addr: SocketAddr, path: &str, limit: Duration) -> (Duration, String) {
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, limit).expect("connect to the health port");
    s.set_read_timeout(Some(limit)).unwrap();
    s.set_write_timeout(Some(limit)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    (start.elapsed(), text(&raw))
}

/// Open file descriptors of process `pid`.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// Every string in a JSON document.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        Value::Object(o) => o.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// Holds 200 idle connections and a slowloris on the health port and 20 idle connections on
/// the control socket while asking `/health`, `/metrics` and `status` four times, each within
/// [`ANSWER_WITHIN`]; then lets them go and waits until the agent `pid` is back to its
/// descriptors.
async fn under_attack(addr: SocketAddr, socket: &Path, pid: u32) {
    let baseline = fds(pid);

    // 200 connections that send nothing, and one that sends its head a byte every 300 ms.
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(addr).expect("an idle connection"))
        .collect();
    let slowloris = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).expect("the slow connection");
        let start = Instant::now();
        for b in b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
            .iter()
            .cycle()
        {
            if s.write_all(&[*b]).is_err() || start.elapsed() > Duration::from_secs(20) {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        start.elapsed()
    });
    let control_idle: Vec<UnixStream> = (0..20)
        .map(|_| UnixStream::connect(socket).expect("an idle control connection"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut peak = 0;
    for round in 0..4 {
        for path in ["/health", "/metrics"] {
            let (took, response) = get_within(addr, path, ANSWER_WITHIN);
            assert!(
                response.starts_with("HTTP/1.1 "),
                "round {round}: {path} did not answer within {ANSWER_WITHIN:?} under load ({took:?}): {response:?}"
            );
            assert!(took < ANSWER_WITHIN, "{path} took {took:?}");
        }
        let start = Instant::now();
        let snapshot = warden_agent::control::status(socket)
            .await
            .expect("status with idle control connections");
        assert!(
            start.elapsed() < ANSWER_WITHIN,
            "status took {:?}",
            start.elapsed()
        );
        assert_eq!(snapshot.identity, "billing");
        peak = peak.max(fds(pid));
        std::thread::sleep(Duration::from_millis(700));
    }
    // The connections are capped (64 on the health port, 32 on the control socket).
    assert!(
        peak <= baseline + 64 + 32 + 4,
        "{peak} descriptors under load, {baseline} before"
    );
    let slow_for = slowloris.join().unwrap();
    assert!(
        slow_for < Duration::from_secs(5),
        "the slowloris was cut off only after {slow_for:?}"
    );

    // The attackers go: every descriptor comes back.
    drop(idle);
    drop(control_idle);
    Poll::new(Duration::from_secs(30)).until_true("the agent's descriptors to be freed", || {
        fds(pid) <= baseline + 2
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_clients_cannot_starve_the_endpoints() {
    let lab = LabEnv::start(&["test"]).await;
    let root = tempfile::tempdir().expect("tempdir");
    let dir = apply_and_enroll(&lab, root.path()).await;
    write_billing_config(&lab, &json!({ "user": "agent-bin-test" })).await;
    let address = lab.lab().env("test").expect("test env").address();
    let config = write_config(&dir, &address, &dir.join("reloads.log"));
    // The template output cannot be delivered (its directory is a file), so its error names
    // an absolute path under the identity's directory.
    std::fs::create_dir_all(dir.join("out")).unwrap();
    std::fs::write(dir.join("out/blocked"), b"a file, not a directory").unwrap();
    let toml = read(&config).replace(
        "path     = \"out/config.json\"",
        "path     = \"out/blocked/config.json\"",
    );
    std::fs::write(&config, toml).unwrap();

    // As a supervisor runs it: -v, both streams into a file, NO_COLOR not set.
    let log_path = dir.join("agent.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = AGENT
        .command(&["--config", path_str(&config), "-v"])
        .env_remove("NO_COLOR")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start the agent");
    let pid = child.id();
    let socket = dir.join("state/control.sock");
    let addr_file = dir.join("state/health.addr");
    Poll::new(LIMIT).until_true("the control socket and health address", || {
        socket.exists() && addr_file.exists()
    });
    let addr: SocketAddr = read(&addr_file).trim().parse().expect("an address");
    let mut detail = None;
    let start = Instant::now();
    while detail.is_none() {
        assert!(start.elapsed() < LIMIT, "the template output never failed");
        let snapshot = warden_agent::control::status(&socket)
            .await
            .expect("status");
        let tls_done = snapshot
            .outputs
            .iter()
            .any(|o| o.name == "tls" && o.renders > 0);
        detail = snapshot
            .outputs
            .into_iter()
            .find(|o| o.name == "config")
            .and_then(|o| o.last_error)
            .filter(|_| tls_done);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let detail = detail.unwrap();
    let id_dir = dir.display().to_string();
    assert!(
        detail.contains(&id_dir),
        "the owner gets the whole message, path included: {detail}"
    );
    let (_, response) = get_within(addr, "/health", LIMIT);
    under_attack(addr, &socket, pid).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the agent is still running"
    );

    // What every uid reads on the port: kinds, never a path.
    let (_, body) = response.split_once("\r\n\r\n").expect("a response");
    let health: Value = serde_json::from_str(body).expect("the /health JSON");
    let config_out = health["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "config")
        .expect("the config output");
    assert_eq!(config_out["error_kind"], "filesystem", "{config_out}");
    assert!(!body.contains(&id_dir), "{body}");
    let mut all = Vec::new();
    strings(&health, &mut all);
    assert!(
        all.iter().all(|s| !s.starts_with('/') && !s.contains(" /")),
        "an absolute path in /health: {all:?}"
    );

    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < LIMIT, "the agent did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read(&log_path).unwrap();
    assert!(
        text(&log).contains("health endpoint listening"),
        "the log has the agent's lines:\n{}",
        text(&log)
    );
    assert!(
        !log.contains(&0x1b),
        "escape codes in a log that is a file:\n{}",
        text(&log)
    );
}

#[test]
fn bad_invocations_fail_with_the_documented_codes() {
    let dir = tempfile::tempdir().expect("tempdir");

    // An invalid config: exit 1, the file named at the line of the mistake, a hint.
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "version = 1\n\n[identity]\nname = \"billing\"\nkind = \"app\"\nenv = \"test\"\ncommon_name = \"billing.identity.test.warden.internal\"\ncolour = \"blue\"\n",
    )
    .expect("write");
    let out = AGENT.run(&["--config", path_str(&config), "--once"]);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "error: {} is not a valid agent configuration",
            config.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{}:8:", config.display())),
        "the unknown key on line 8 is named: {err}"
    );
    assert!(err.contains("colour"), "{err}");
    assert!(err.contains("hint: fix the lines above"), "{err}");
    assert!(out.stdout.is_empty(), "nothing on stdout: {}", both(&out));

    // A missing config: exit 1, who writes it.
    let missing = dir.path().join("nope.toml");
    let out = AGENT.run(&["--config", path_str(&missing)]);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("could not read {}", missing.display())),
        "{err}"
    );
    assert!(err.contains("warden identity enroll"), "{err}");

    // `doctor` on the invalid config: exit 1, the `config` check fails with the diagnostics and
    // a fix, every later check is skipped, and the JSON report says so.
    let out = AGENT.run(&["doctor", "--config", path_str(&config), "-o", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("doctor JSON");
    assert_eq!(report["ok"], false);
    let checks = report["checks"].as_array().expect("checks");
    assert_eq!(checks[0]["name"], "config");
    assert_eq!(checks[0]["status"], "fail");
    assert!(
        checks[0]["detail"].as_str().unwrap().contains("colour"),
        "{report:#}"
    );
    assert!(checks[0]["fix"].as_str().is_some(), "{report:#}");
    assert_eq!(checks.len(), 10, "{report:#}");
    assert!(
        checks[1..].iter().all(|c| c["status"] == "skipped"),
        "{report:#}"
    );

    // Command-line mistakes: exit 2 with the usage.
    for (args, says) in [
        (&[][..], "--config FILE is required"),
        (&["--config"][..], "--config needs a value"),
        (
            &["--config", "a", "--bogus"][..],
            "unknown option `--bogus`",
        ),
        (
            &["--config", "a", "-o", "yaml"][..],
            "--output must be `text` or `json`",
        ),
        (
            &["exec", "--config", "a"][..],
            "exec needs the command after `--`",
        ),
        (&["--config", "a", "--", "true"][..], "needs `exec`"),
        (
            &["doctor", "--config", "a", "--once"][..],
            "doctor takes only --config and --output",
        ),
    ] {
        let out = AGENT.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", both(&out));
        let err = text(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(err.contains("Usage: warden-agent --config FILE"), "{err}");
    }

    // Help and version: exit 0 on stdout.
    let out = AGENT.run(&["--help"]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    assert!(text(&out.stdout).contains("--once"), "{}", both(&out));
    let out = AGENT.run(&["--version"]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("warden-agent {}", env!("CARGO_PKG_VERSION"))
    );
}

/// `agent.toml` names the commands the agent runs and where it writes secrets: a file another
/// user can write (world-writable, or owned by them) is refused before anything runs, and a
/// FIFO at its name is refused at once instead of hanging the agent on the open.
#[test]
fn an_agent_toml_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    // Would run as the agent's user at the first reload, had the file been accepted.
    std::fs::write(
        &config,
        "version = 1\n\n[identity]\nname = \"billing\"\nkind = \"app\"\nenv = \"test\"\ncommon_name = \"billing.identity.test.warden.internal\"\n",
    )
    .expect("write");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let out = AGENT.run(&["--config", path_str(&config), "--once"]);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("refusing {}: its mode 0666", config.display())),
        "{err}"
    );
    assert!(
        err.contains("hint: the agent runs what agent.toml says"),
        "{err}"
    );

    if nix::unistd::geteuid().is_root() {
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::os::unix::fs::chown(&config, Some(65534), None).expect("chown");
        let out = AGENT.run(&["--config", path_str(&config), "--once"]);
        assert_eq!(out.status.code(), Some(1), "{}", both(&out));
        let err = text(&out.stderr);
        assert!(err.contains("is owned by uid 65534"), "{err}");
    }

    let fifo = dir.path().join("fifo.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let started = Instant::now();
    let out = AGENT.run(&["--config", path_str(&fifo), "--once"]);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the FIFO hung the agent"
    );
    assert!(
        text(&out.stderr).contains("is not a regular file"),
        "{}",
        both(&out)
    );

    // The trust anchor decides which server gets the token and the secrets: one others can
    // rewrite is refused the same way, before anything is contacted.
    let anchor = dir.path().join("ca.pem");
    std::fs::write(&anchor, "whoever wrote this picks the server\n").expect("write");
    std::fs::set_permissions(&anchor, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let config = dir.path().join("anchored.toml");
    std::fs::write(
        &config,
        "version = 1\n\n[identity]\nname = \"billing\"\nkind = \"app\"\nenv = \"test\"\ncommon_name = \"billing.identity.test.warden.internal\"\n\n[openbao]\naddress = \"https://127.0.0.1:1\"\nca_file = \"ca.pem\"\n\n[auth]\nmethod = \"cert\"\nrole = \"billing\"\npolicy = \"billing\"\ncert_file = \"client.crt\"\nkey_file = \"client.key\"\n\n[[output]]\nname = \"config\"\ntype = \"template\"\ncontents = \"x\"\npath = \"out/config\"\n",
    )
    .expect("write");
    let out = AGENT.run(&["--config", path_str(&config), "--once"]);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains(&anchor.display().to_string()) && err.contains("its mode 0666"),
        "{err}"
    );
}
