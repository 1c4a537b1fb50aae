//! The agent's operations surface, end to end through the `warden` binary: `warden lab up`
//! enrolls the example identities under `<lab>/hosts/` and starts their agents; the agents
//! answer `/health` and `/metrics`; the control socket shows each output and re-issues exactly
//! the one it is asked to; a peer of another uid is refused; `lab status` lists the agents and
//! `lab down` stops them. The lab's own PostgreSQL (issue 17): billing's agent delivered
//! dynamic credentials (owner-only) with which the real `psql` reads what `billing_role` is
//! granted and is refused the rest; `lab down` leaves no PostgreSQL process.
//!
//! One lab (environment `test` only, to keep the run short) in a temporary directory, on ports
//! chosen at run time; the guard runs `lab down --purge` however the test ends.
//!
//! `warden_agent_logs_plain_text_into_a_file` needs no server: `warden agent` with its log
//! redirected to a file, as a supervisor runs it, writes no escape codes.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use warden_testkit::cli::{Cli, path_str, text};
use warden_testkit::{LabGuard, Poll, RunningAgent};

/// The binary under test.
const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("JSON: {e}: {}", text(&out.stdout)))
}

fn health_addr(id_dir: &Path) -> SocketAddr {
    let text = std::fs::read_to_string(id_dir.join("state/health.addr")).expect("health.addr");
    text.trim().parse().expect("an address")
}

/// A serial in one spelling: no colons, lower case, no leading zeros.
fn norm(serial: &str) -> String {
    serial
        .replace(':', "")
        .to_lowercase()
        .trim_start_matches('0')
        .to_owned()
}

fn leaf_serial(cert: &Path) -> String {
    let pem = std::fs::read_to_string(cert).expect("read cert.pem");
    warden_pki::parse_pem_bundle(&pem).expect("parse cert.pem")[0]
        .serial
        .clone()
}

/// The sample value of `name{output="<output>"}` in a Prometheus exposition.
fn sample(metrics: &str, name: &str, output: Option<&str>) -> Option<f64> {
    let prefix = match output {
        Some(o) => format!("{name}{{output=\"{o}\"}} "),
        None => format!("{name} "),
    };
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

fn agent<'a>(status: &'a Value, env: &str, identity: &str) -> &'a Value {
    let env = status
        .as_array()
        .expect("status is an array")
        .iter()
        .find(|e| e["name"] == env)
        .unwrap_or_else(|| panic!("no env {env} in {status}"));
    env["agents"]
        .as_array()
        .expect("agents array")
        .iter()
        .find(|a| a["identity"] == identity)
        .unwrap_or_else(|| panic!("no agent {identity} in {env}"))
}

#[test]
fn lab_agents_serve_health_metrics_and_rotate_on_request() {
    let guard = LabGuard::new(WARDEN);
    let lab = guard.dir_str();

    // `lab up` applies the example spec, enrolls billing, ledger and edge under hosts/test/ and
    // starts their agents; it waits until each agent delivered everything.
    let up = json(&WARDEN.ok(&[
        "lab", "up", "--env", "test", "--output", "json", "--dir", &lab,
    ]));
    let agents = up["agents"]["agents"].as_array().expect("agents in up");
    let mut names: Vec<&str> = agents
        .iter()
        .map(|a| a["identity"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["billing", "edge", "ledger", "worker"], "{up}");
    for a in agents {
        assert_eq!(a["started"], true, "{a}");
        // The container is not enrolled: it logs in with AppRole (issue 18).
        let enrolled = if a["identity"] == "worker" {
            Value::Null
        } else {
            Value::from("issued")
        };
        assert_eq!(a["enrolled"], enrolled, "{a}");
        assert_eq!(a["health"], "ok", "every output delivered: {a}");
    }
    let seeded = up["agents"]["seeded_secrets"].to_string();
    assert!(seeded.contains("kvv2/billing/config"), "{seeded}");

    let hosts = guard.dir().join("hosts/test");
    let billing = hosts.join("billing");
    let edge = hosts.join("edge");

    // Files delivered: billing's certificate set and secrets, edge's CA chain.
    for f in ["cert.pem", "key.pem", "chain.pem", "fullchain.pem"] {
        assert!(billing.join("out/tls").join(f).is_file(), "out/tls/{f}");
    }
    let key_mode = std::fs::metadata(billing.join("out/tls/key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o077, 0, "key.pem is private: {key_mode:o}");
    let config = std::fs::read_to_string(billing.join("out/secrets/config.json")).unwrap();
    assert!(config.contains("lab_placeholder"), "{config}");
    let chain = std::fs::read_to_string(edge.join("out/ca/chain.pem")).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2, "{chain}");
    // Issue 18: the worker container's agent delivered its secret with a wrapped secret-id
    // (consumed and removed) and its host's own transport certificate, not the operator's.
    let worker = hosts.join("worker");
    let delivered = std::fs::read_to_string(worker.join("out/secrets/config.json")).unwrap();
    assert!(delivered.contains("lab_placeholder"), "{delivered}");
    assert!(
        !worker.join("approle/secret-id").exists(),
        "the wrapped secret-id is consumed and removed"
    );
    let worker_toml = std::fs::read_to_string(worker.join("agent.toml")).unwrap();
    let transport = hosts.join("worker-host/transport");
    for want in [
        "method = \"approle\"".to_owned(),
        "secret_id_wrapped = true".to_owned(),
        format!("cert_file = \"{}\"", path_str(&transport.join("cert.pem"))),
        "identity_role = \"transport-worker-host\"".to_owned(),
    ] {
        assert!(worker_toml.contains(&want), "{want} in:\n{worker_toml}");
    }
    assert!(!worker_toml.contains("operator"), "{worker_toml}");
    // The pipeline's runner got its own transport certificate too, for `ci login --transport`.
    let runner = hosts.join("ci-runner/transport");
    let listed = up["agents"]["runner_transports"].to_string();
    assert!(listed.contains(path_str(&runner)), "{listed}");
    let runner_pem = std::fs::read_to_string(runner.join("cert.pem")).unwrap();
    assert_eq!(
        warden_pki::common_name(&runner_pem).as_deref(),
        Some("ci-runner.transport.test.warden.internal")
    );
    let transport_pem = std::fs::read_to_string(transport.join("cert.pem")).unwrap();
    assert_eq!(
        warden_pki::common_name(&transport_pem).as_deref(),
        Some("worker-host.transport.test.warden.internal")
    );

    // Issue 17: the lab's own PostgreSQL, and billing's dynamic database credentials from it.
    let pg = &up["postgres"];
    assert_eq!(pg["admins"][0], "warden_admin", "{pg}");
    let pg_address = pg["address"].as_str().expect("postgres address").to_owned();
    let pg_pid = pg["pid"].as_u64().expect("postgres pid") as u32;
    let pg_port: u16 = pg_address
        .strip_prefix("127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .expect("loopback address");
    let creds_file = billing.join("out/database/main.json");
    assert_eq!(
        mode_of(&creds_file) & 0o077,
        0,
        "credentials are owner-only"
    );
    assert_eq!(mode_of(&billing.join("out/database")) & 0o077, 0);
    let admin_file = guard.dir().join("postgres/warden_admin.password");
    assert_eq!(
        mode_of(&admin_file) & 0o077,
        0,
        "the admin's first password"
    );
    assert_eq!(
        mode_of(&guard.dir().join("postgres/server/data")) & 0o077,
        0
    );
    let creds: Value = serde_json::from_slice(&std::fs::read(&creds_file).unwrap()).unwrap();
    let (user, password) = (
        creds["username"].as_str().expect("username"),
        creds["password"].as_str().expect("password"),
    );
    assert!(creds["expires"].is_string(), "{}", creds["expires"]);
    let granted = psql_as(
        guard.temp_dir(),
        pg_port,
        user,
        password,
        "SELECT note FROM billing.records;",
    );
    assert!(
        granted.status.success(),
        "billing_role grants billing.records: {}",
        text(&granted.stderr)
    );
    assert_eq!(text(&granted.stdout).trim(), "readable by billing_role");
    let refused = psql_as(
        guard.temp_dir(),
        pg_port,
        user,
        password,
        "SELECT * FROM internal.payroll;",
    );
    assert!(
        !refused.status.success(),
        "internal.payroll is not granted: {}",
        text(&refused.stdout)
    );
    assert!(
        text(&refused.stderr).contains("permission denied for schema internal"),
        "{}",
        text(&refused.stderr)
    );
    // The superuser has no password: over TCP it is refused whatever it says.
    let su = psql_as(guard.temp_dir(), pg_port, "postgres", password, "SELECT 1;");
    assert!(!su.status.success(), "the superuser over TCP");

    // The lab never reloads the host's real services.
    let toml = std::fs::read_to_string(billing.join("agent.toml")).unwrap();
    assert!(!toml.contains("systemctl"), "{toml}");

    // `lab status` lists each agent with its outputs and their expiry.
    let status = json(&WARDEN.ok(&["lab", "status", "--output", "json", "--dir", &lab]));
    let b = agent(&status, "test", "billing");
    assert_eq!(b["running"], true, "{b}");
    let pid = b["pid"].as_u64().expect("pid") as u32;
    assert_eq!(b["health"], "ok", "{b}");
    let addr = health_addr(&billing);
    assert_eq!(b["health_url"], format!("http://{addr}/health"));
    let tls = b["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "tls")
        .expect("tls output");
    assert_eq!(tls["kind"], "certificate");
    assert!(
        tls["expires_in_seconds"].as_i64().unwrap() > 71 * 3600,
        "{tls}"
    );
    let serial_before = tls["serial"].as_str().expect("serial").to_owned();
    let text_status = text(&WARDEN.ok(&["lab", "status", "--dir", &lab]).stdout);
    for word in [
        "billing (app)",
        "edge (proxy)",
        "ledger (app)",
        "tls fresh, expires",
    ] {
        assert!(text_status.contains(word), "{word:?} in:\n{text_status}");
    }

    // /health and /metrics.
    let (code, body) = warden_testkit::http::get_plain(addr, "/health");
    assert_eq!(code, 200, "{body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["identity"], "billing");
    assert!(health["outputs"][0]["expires_in_seconds"].as_i64().unwrap() > 0);
    let (code, metrics) = warden_testkit::http::get_plain(addr, "/metrics");
    assert_eq!(code, 200);
    for name in [
        "warden_agent_output_expiry_seconds",
        "warden_agent_output_last_render_timestamp_seconds",
        "warden_agent_render_errors_total",
        "warden_agent_auth_errors_total",
        "warden_agent_requests_total",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {name} ")),
            "{name} missing:\n{metrics}"
        );
    }
    let expiry = sample(&metrics, "warden_agent_output_expiry_seconds", Some("tls")).unwrap();
    assert!(expiry > 0.0, "{expiry}");
    assert_eq!(
        sample(&metrics, "warden_agent_render_errors_total", Some("tls")),
        Some(0.0)
    );
    assert!(sample(&metrics, "warden_agent_requests_total", None).unwrap() >= 3.0);
    // Neither endpoint serves anything secret.
    let key = std::fs::read_to_string(billing.join("out/tls/key.pem")).unwrap();
    let secret = std::fs::read_to_string(billing.join("out/secrets/config.json")).unwrap();
    for served in [&body, &metrics] {
        assert!(!served.contains("PRIVATE KEY"), "a key was served");
        assert!(
            !served.contains(key.lines().nth(1).unwrap()),
            "key material"
        );
        assert!(
            !served.contains("lab_placeholder"),
            "a secret value was served"
        );
    }
    assert!(secret.contains("lab_placeholder"));

    // The control socket: rotate re-issues exactly `tls`.
    let socket = billing.join("state/control.sock");
    let sock_mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(sock_mode & 0o777, 0o600, "{sock_mode:o}");
    let secret_file = billing.join("out/secrets/config.json");
    let secret_mtime = std::fs::metadata(&secret_file).unwrap().modified().unwrap();
    let ledger_serial = leaf_serial(&hosts.join("ledger/out/tls/cert.pem"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let snapshot = rt
        .block_on(warden_agent::control::status(&socket))
        .expect("status over the socket");
    let before = snapshot.outputs.iter().find(|o| o.name == "tls").unwrap();
    let renders_of = |s: &warden_agent::health::Snapshot, name: &str| {
        s.outputs.iter().find(|o| o.name == name).unwrap().renders
    };
    let secret_renders = renders_of(&snapshot, "secret-config");
    assert_eq!(before.serial.as_deref(), Some(serial_before.as_str()));
    // Through the CLI, as an operator would.
    let sock = socket.display().to_string();
    let rotated: warden_agent::health::OutputView = serde_json::from_value(json(
        &WARDEN.ok(&["-o", "json", "agent", "rotate", "tls", "--socket", &sock]),
    ))
    .expect("rotate prints the output's view");
    let serial_after = rotated.serial.clone().expect("new serial");
    assert_ne!(serial_after, serial_before, "rotate must re-issue");
    assert_eq!(rotated.state, warden_agent::health::Freshness::Fresh);
    assert_eq!(
        norm(&leaf_serial(&billing.join("out/tls/cert.pem"))),
        norm(&serial_after),
        "the new certificate is on disk"
    );
    let snapshot = rt.block_on(warden_agent::control::status(&socket)).unwrap();
    assert_eq!(
        snapshot
            .outputs
            .iter()
            .find(|o| o.name == "tls")
            .unwrap()
            .serial
            .as_deref(),
        Some(serial_after.as_str()),
        "status shows the rotation"
    );
    assert_eq!(
        renders_of(&snapshot, "secret-config"),
        secret_renders,
        "only the named output was rendered"
    );
    assert_eq!(
        std::fs::metadata(&secret_file).unwrap().modified().unwrap(),
        secret_mtime,
        "the secret was not rewritten"
    );
    assert_eq!(
        leaf_serial(&hosts.join("ledger/out/tls/cert.pem")),
        ledger_serial,
        "another agent's certificate is untouched"
    );
    let err = rt
        .block_on(warden_agent::control::rotate(&socket, "nope"))
        .unwrap_err();
    assert!(err.to_string().contains("tls"), "names the outputs: {err}");
    let shown = text(&WARDEN.ok(&["agent", "status", "--socket", &sock]).stdout);
    assert!(
        shown.contains(&format!("tls (certificate): fresh, serial {serial_after}")),
        "{shown}"
    );
    let refused = WARDEN.run(&["agent", "rotate", "nope", "--socket", &sock]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("no output named `nope`"),
        "{}",
        text(&refused.stderr)
    );
    // lab status reads the new serial from the state file.
    let status = json(&WARDEN.ok(&["lab", "status", "--output", "json", "--dir", &lab]));
    let tls = agent(&status, "test", "billing")["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "tls")
        .unwrap()
        .clone();
    assert_eq!(
        norm(tls["serial"].as_str().unwrap()),
        norm(&serial_after),
        "{tls}"
    );

    // Another uid is refused by the peer-credential check, even with the file modes opened.
    refuse_another_uid(&guard, &socket, &serial_after, &rt);

    // A second `up` leaves the running agents alone.
    let again = json(&WARDEN.ok(&[
        "lab", "up", "--env", "test", "--output", "json", "--dir", &lab,
    ]));
    let b = again["agents"]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["identity"] == "billing")
        .unwrap()
        .clone();
    assert_eq!(b["started"], false, "{b}");
    assert_eq!(b["pid"].as_u64(), Some(u64::from(pid)));
    assert_eq!(again["postgres"]["started"], false, "{}", again["postgres"]);
    assert_eq!(again["postgres"]["pid"].as_u64(), Some(u64::from(pg_pid)));
    let shown = text(&WARDEN.ok(&["lab", "status", "--dir", &lab]).stdout);
    assert!(
        shown.contains(&format!("postgres: {pg_address} running")),
        "{shown}"
    );

    // `lab down` stops the agents before the servers.
    let down = json(&WARDEN.ok(&["lab", "down", "--output", "json", "--dir", &lab]));
    let stopped = down["agents_stopped"].as_array().unwrap();
    assert_eq!(stopped.len(), 4, "{down}");
    assert_eq!(
        down["stopped"],
        serde_json::json!(["test", "postgres"]),
        "{down}"
    );
    // No PostgreSQL process is left: not the postmaster, nothing on its port, nothing running
    // from the lab's data directory.
    Poll::new(Duration::from_secs(30))
        .every(Duration::from_millis(200))
        .until_true("the postmaster to exit", || gone(pg_pid));
    assert!(
        warden_lab::process::port_owners(pg_port)
            .unwrap_or_default()
            .is_empty(),
        "something still listens on {pg_address}"
    );
    let data_dir = guard.dir().join("postgres/server/data");
    let left: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| !gone(p))
        .filter(|&p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(path_str(&data_dir)))
        })
        .collect();
    assert!(left.is_empty(), "postgres processes left: {left:?}");
    Poll::new(Duration::from_secs(30))
        .every(Duration::from_millis(200))
        .until_true("the agent to exit", || {
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z "))
        });
    let status = WARDEN.run(&["lab", "status", "--output", "json", "--dir", &lab]);
    assert_eq!(status.status.code(), Some(3));
    assert_eq!(agent(&json(&status), "test", "billing")["running"], false);
}

/// The permission bits of `path`.
fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Whether process `pid` is gone (or a zombie, which runs nothing).
fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
    })
}

/// Runs `sql` through the real `psql` as `user` over 127.0.0.1:`port`. The password goes
/// through a 0600 `PGPASSFILE` in `dir`, removed right after, never argv or the environment;
/// the SQL through stdin.
fn psql_as(dir: &Path, port: u16, user: &str, password: &str, sql: &str) -> Output {
    use std::io::Write as _;
    let esc = |v: &str| v.replace('\\', "\\\\").replace(':', "\\:");
    let pgpass = dir.join("psql.pgpass");
    warden_files::write_atomic(
        &pgpass,
        format!("127.0.0.1:{port}:*:{}:{}\n", esc(user), esc(password)).as_bytes(),
        warden_files::Mode::OwnerOnly,
    )
    .expect("pgpass");
    let mut child = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            user,
            "-d",
            "postgres",
        ])
        .args(["-X", "-q", "-t", "-A", "-w", "-v", "ON_ERROR_STOP=1"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PGPASSFILE", &pgpass)
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("psql (the PostgreSQL client) on PATH");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(sql.as_bytes())
        .expect("write SQL");
    let out = child.wait_with_output().expect("psql");
    let _ = std::fs::remove_file(&pgpass);
    out
}

/// `warden -v agent` with both streams in a file and `NO_COLOR` unset, as a supervisor runs
/// it: the log is plain text. Nothing answers at the configured address, so the agent logs its
/// endpoints and its failing login and keeps running until SIGTERM.
#[test]
fn warden_agent_logs_plain_text_into_a_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    std::fs::write(dir.join("role-id"), "role\n").unwrap();
    std::fs::write(dir.join("secret-id"), "secret\n").unwrap();
    // Port 9 (discard) is not served on a test host: every login fails at once.
    std::fs::write(
        dir.join("agent.toml"),
        r#"version = 1

[identity]
name        = "billing"
kind        = "app"
env         = "test"
common_name = "billing.identity.test.warden.internal"

[openbao]
address = "https://127.0.0.1:9"

[auth]
method         = "approle"
policy         = "billing"
role_id_file   = "role-id"
secret_id_file = "secret-id"

[[output]]
name     = "config"
type     = "template"
contents = "x"
path     = "out/config.txt"

[health]
listen = "127.0.0.1:0"
"#,
    )
    .unwrap();
    let log_path = dir.join("agent.log");
    let config = dir.join("agent.toml");
    let mut cmd = WARDEN.command(&["-v", "agent", "--config", path_str(&config)]);
    cmd.env_remove("NO_COLOR");
    let mut agent = RunningAgent::spawn(cmd, &log_path);
    let logged = |what: &str| std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains(what));
    Poll::new(Duration::from_secs(60))
        .every(Duration::from_millis(100))
        .showing_log(&log_path)
        .until_true("the agent's start and login in its log", || {
            agent.assert_alive();
            logged("health endpoint listening") && logged("approle")
        });
    let exit = agent.terminate(Duration::from_secs(30));
    let log = std::fs::read(&log_path).unwrap();
    assert!(exit.success(), "exit {exit:?}:\n{}", text(&log));
    assert!(
        !log.contains(&0x1b),
        "escape codes in a log that is a file:\n{}",
        text(&log)
    );
}

/// Runs a client (`warden agent rotate | status`) as `nobody` against the socket. Without root
/// there is no second user to be: the case is skipped with a note (the unit tests of `control`
/// prove the check with a reduced allow-list instead).
#[allow(clippy::print_stderr)] // the skip note is for whoever reads the test output
fn refuse_another_uid(guard: &LabGuard, socket: &Path, serial: &str, rt: &tokio::runtime::Runtime) {
    if !nix_is_root() {
        eprintln!("note: not running as root; skipping the other-uid refusal case");
        return;
    }
    let (uid, gid) = nobody();
    // The client is the warden binary itself, copied to a directory `nobody` can traverse: the
    // checkout may sit under a 0700 directory (a `mktemp -d` clone), where `nobody` could not
    // execute the build output in place.
    let bin_dir = tempfile::tempdir().expect("tempdir for the client binary");
    std::fs::set_permissions(bin_dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod tempdir");
    let bin = bin_dir.path().join("warden");
    std::fs::copy(WARDEN.bin(), &bin).expect("copy warden");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod warden");
    let client = |op: &str| {
        let mut cmd = std::process::Command::new(&bin);
        cmd.args(["agent", op]);
        if op == "rotate" {
            cmd.arg("tls");
        }
        let out = cmd
            .arg("--socket")
            .arg(socket)
            .uid(uid)
            .gid(gid)
            .env_clear()
            .env("NO_COLOR", "1")
            .output()
            .expect("run warden as nobody");
        assert_eq!(out.status.code(), Some(1), "refused: {}", text(&out.stderr));
        text(&out.stderr)
    };
    // As laid out: the state directory (0700) keeps nobody from even reaching the socket.
    let refused = client("rotate");
    assert!(refused.contains("Permission denied"), "{refused}");
    assert!(
        refused.contains("only the agent's own user and root"),
        "the hint: {refused}"
    );

    // Open every directory on the way and the socket itself: now only SO_PEERCRED stands.
    let mut dir = socket.parent().unwrap().to_path_buf();
    while dir.starts_with(guard.temp_dir()) {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode | 0o011)).unwrap();
        if !dir.pop() {
            break;
        }
    }
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    for op in ["rotate", "status"] {
        let refused = client(op);
        assert!(
            refused.contains(&format!("permission denied: uid {uid} may not use")),
            "{op}: {refused}"
        );
    }
    // Nothing was rotated by the refused request.
    let snapshot = rt.block_on(warden_agent::control::status(socket)).unwrap();
    let tls = snapshot.outputs.iter().find(|o| o.name == "tls").unwrap();
    assert_eq!(tls.serial.as_deref(), Some(serial));
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn nix_is_root() -> bool {
    // Read from /proc rather than adding a dependency for one call.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// `nobody`'s uid and gid from /etc/passwd (65534 when absent).
fn nobody() -> (u32, u32) {
    let file = std::fs::File::open("/etc/passwd").expect("/etc/passwd");
    BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"nobody"))
                .then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))
                .flatten()
        })
        .unwrap_or((65534, 65534))
}
