//! Dynamic PostgreSQL credentials end to end, through the `warden` binary against a real
//! PostgreSQL (`Postgres::start`) and a real HTTPS + mTLS lab (`LabEnv::start`):
//!
//! 1. The database owner's part, done here with the superuser over `psql` (password through a
//!    0600 `PGPASSFILE`, never argv or environment): the group role `billing_role` and an admin
//!    role `warden_admin` the engine connects as.
//! 2. `warden apply` of a spec with `[databases.main]` (default_ttl 20 s, max_ttl 40 s) and an
//!    app `billing` using it: engine connection (root password rotated at once), role
//!    `postgres/roles/billing`, policy.
//! 3. `warden identity enroll billing`, then `warden agent` (long-running) with the `agent.toml`
//!    enroll wrote: it delivers `out/database/main.json`.
//! 4. The app logs in with those credentials. The lease is renewed at 2/3 of each grant until
//!    the role's max_ttl caps it; new credentials are delivered before it ends; once the first
//!    lease's max_ttl has passed its login is refused (OpenBao dropped the role) while the file
//!    already holds new credentials that log in. The reload ran once per change, and the
//!    credentials changed once per issue (polls render the same lease: no change).
//! 5. The server sealed: the credentials file stays, the source goes stale with a bounded
//!    number of retries, and after unseal the agent recovers by itself.
//! 6. A restart delivers new credentials (the password is never stored) and revokes the
//!    previous run's lease, so the old user is refused without waiting for its end.
//!
//! Throughout: no password appears in the agent's log (run at debug level) or under `state/`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Output, Stdio};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use warden_bao::Client;
use warden_files::Mode;
use warden_testkit::cli::{Cli, path_str, text};
use warden_testkit::files::line_count;
use warden_testkit::{LabEnv, Poll, Postgres, RunningAgent};

/// The binary under test.
const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

/// Lease lifetimes of the test role: short enough to see a whole lifecycle in a minute.
const DEFAULT_TTL_S: u64 = 20;
const MAX_TTL_S: u64 = 40;
/// How often a wait looks: some checks log in to PostgreSQL.
const POLL: Duration = Duration::from_millis(200);

/// `warden agent` with the `agent.toml` enroll wrote, logging everything the agent and its
/// client log, so the secret check covers it all.
fn agent_command(config: &Path) -> std::process::Command {
    let mut cmd = WARDEN.command(&["agent", "--config", path_str(config)]);
    cmd.env("WARDEN_LOG", "debug");
    cmd
}

/// `hostname:port:database:user:password` with `:` and `\` escaped, as libpq reads it.
fn pgpass_line(port: u16, user: &str, password: &str) -> String {
    let esc = |v: &str| v.replace('\\', "\\\\").replace(':', "\\:");
    format!("127.0.0.1:{port}:*:{}:{}\n", esc(user), esc(password))
}

/// Runs `sql` through `psql` as `user`, the password coming from `pgpass` (0600). Cleared
/// environment: nothing but PATH, the password file's path and a connect timeout.
fn psql(port: u16, pgpass: &Path, user: &str, sql: &str) -> Output {
    let mut child = StdCommand::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            user,
            "-d",
            "postgres",
            "-X",
            "-q",
            "-t",
            "-A",
            "-w",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PGPASSFILE", pgpass)
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql (the PostgreSQL client) on PATH");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(sql.as_bytes())
        .expect("write SQL");
    child.wait_with_output().expect("psql")
}

/// Credentials as the delivered file holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Creds {
    username: String,
    password: String,
}

fn read_creds(path: &Path) -> Option<Creds> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    Some(Creds {
        username: v["username"].as_str()?.to_owned(),
        password: v["password"].as_str()?.to_owned(),
    })
}

/// Logs in as `c` (through its own 0600 password file) and returns the session user and
/// whether it is a member of `billing_role`; the error output when the login is refused.
fn login(port: u16, dir: &Path, c: &Creds) -> Result<String, String> {
    let pgpass = dir.join(format!("{}.pgpass", c.username));
    warden_files::write_atomic(
        &pgpass,
        pgpass_line(port, &c.username, &c.password).as_bytes(),
        Mode::OwnerOnly,
    )
    .expect("pgpass");
    let out = psql(
        port,
        &pgpass,
        &c.username,
        "SELECT current_user || ' ' || pg_has_role(current_user, 'billing_role', 'member');",
    );
    let _ = std::fs::remove_file(&pgpass);
    if out.status.success() {
        Ok(text(&out.stdout).trim().to_owned())
    } else {
        Err(text(&out.stderr))
    }
}

/// A fresh random password (hex), for the admin role the engine connects as.
fn random_hex() -> String {
    use aws_lc_rs::rand::SecureRandom;
    let mut b = [0u8; 24];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("random");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `GET /health` of the running agent (address from `state/health.addr`).
fn health(state_dir: &Path) -> Option<serde_json::Value> {
    use std::io::Read as _;
    let addr = std::fs::read_to_string(state_dir.join("health.addr")).ok()?;
    let mut stream = std::net::TcpStream::connect(addr.trim()).ok()?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    stream.read_to_string(&mut out).ok()?;
    serde_json::from_str(out.split_once("\r\n\r\n")?.1).ok()
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Figures from `/health` — (changes of the database output, changes of all outputs, issues
/// of the source, renewals) — and the reload count, read between two identical snapshots so
/// they belong to the same moment.
fn settled_counts(state_dir: &Path, reloads: &Path) -> (u64, u64, u64, u64, u64) {
    let pick = |h: &serde_json::Value| {
        let outputs = h["outputs"].as_array().cloned().unwrap_or_default();
        let changes = |o: &serde_json::Value| o["changes"].as_u64().unwrap_or(0);
        let db_changes = outputs
            .iter()
            .find(|o| o["name"] == "database-main")
            .map_or(0, changes);
        let all_changes = outputs.iter().map(changes).sum::<u64>();
        let db = &h["databases"][0];
        (
            db_changes,
            all_changes,
            db["issues"].as_u64().unwrap_or(0),
            db["renewals"].as_u64().unwrap_or(0),
        )
    };
    for _ in 0..50 {
        let a = health(state_dir);
        let n = line_count(reloads) as u64;
        let b = health(state_dir);
        if let (Some(a), Some(b)) = (a, b)
            && pick(&a) == pick(&b)
            && n == line_count(reloads) as u64
        {
            let (db_changes, all_changes, issues, renewals) = pick(&a);
            return (db_changes, all_changes, issues, renewals, n);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("/health did not settle");
}

/// The database source's entry of `/health`.
fn source_state(state_dir: &Path) -> Option<(String, u64, u64)> {
    let h = health(state_dir)?;
    let db = &h["databases"][0];
    Some((
        db["state"].as_str()?.to_owned(),
        db["generation"].as_u64()?,
        h["requests_total"].as_u64()?,
    ))
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

fn spec_text(pg_port: u16, password_file: &Path, reloads: &Path) -> String {
    format!(
        r#"version = 1

[environments.test]
domain        = "test.warden.internal"
runtime_owner = "warden-test"
app_root      = "/srv/warden/test"

[apps.billing]
environments = ["test"]
databases    = ["main"]
reload       = ["/bin/sh", "-c", "echo reload >> {reloads}"]

[databases.main]
environments   = ["test"]
connection_url = "postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{pg_port}/postgres?sslmode=disable"
username       = "warden_admin"
password_file  = "{password_file}"
default_ttl    = "{DEFAULT_TTL_S}s"
max_ttl        = "{MAX_TTL_S}s"

[purposes.workload-identity]
description = "Each identity's own mTLS client certificate"
owner       = "platform"
tier        = "ephemeral"
delivery    = "agent_file"
rotation    = {{ interval = "20d", grace = "5d", max_age = "30d" }}
evidence    = "EV-IDENTITY"
covers      = ["*/identity-cert"]

[purposes.service-tls]
description = "Server certificates of the apps"
owner       = "platform"
tier        = "ephemeral"
delivery    = "agent_file"
rotation    = {{ interval = "48h", grace = "24h", max_age = "72h" }}
evidence    = "EV-PKI"
covers      = ["*/certificate"]

[purposes.app-database]
description = "Apps' dynamic PostgreSQL logins"
owner       = "platform"
tier        = "ephemeral"
delivery    = "agent_file"
rotation    = {{ interval = "1h", grace = "20m" }}
evidence    = "EV-DATABASE"
covers      = ["*/database/*"]
"#,
        reloads = path_str(reloads),
        password_file = path_str(password_file),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_logs_in_with_agent_delivered_credentials_that_are_replaced_before_the_lease_ends() {
    let pg = Postgres::start().await;
    let lab = LabEnv::start(&["test"]).await;
    let work = tempfile::tempdir().expect("tempdir");
    let work = work.path();
    let port = pg.port();

    // 1. The database owner's part.
    let su_pgpass = work.join("superuser.pgpass");
    warden_files::write_atomic(
        &su_pgpass,
        pgpass_line(port, pg.superuser(), pg.password().expose_secret()).as_bytes(),
        Mode::OwnerOnly,
    )
    .expect("superuser pgpass");
    let admin_password = random_hex();
    let setup = psql(
        port,
        &su_pgpass,
        pg.superuser(),
        &format!(
            "CREATE ROLE billing_role NOLOGIN;\n\
             CREATE ROLE warden_admin WITH LOGIN CREATEROLE PASSWORD '{admin_password}';\n\
             GRANT billing_role TO warden_admin WITH ADMIN OPTION;\n"
        ),
    );
    // The superuser's password file has done its job.
    std::fs::remove_file(&su_pgpass).expect("remove the superuser's pgpass");
    assert!(setup.status.success(), "setup: {}", text(&setup.stderr));
    let password_file = work.join("db-main.password");
    warden_files::write_atomic(
        &password_file,
        format!("{admin_password}\n").as_bytes(),
        Mode::OwnerOnly,
    )
    .expect("password file");

    // 2. Apply.
    let reloads = work.join("reloads.log");
    let spec = work.join("warden.toml");
    std::fs::write(&spec, spec_text(port, &password_file, &reloads)).expect("spec");
    let lab_dir = path_str(lab.dir());
    WARDEN.ok(&[
        "apply",
        "--spec",
        path_str(&spec),
        "--lab",
        lab_dir,
        "--env",
        "test",
    ]);
    // rotate-root: the admin password in the file no longer logs in; only the engine knows it.
    let admin = Creds {
        username: "warden_admin".into(),
        password: admin_password.clone(),
    };
    assert!(
        login(port, work, &admin).is_err(),
        "apply must rotate the engine's root password"
    );
    std::fs::remove_file(&password_file).expect("remove the stale admin password file");

    // 3. Enroll and run the agent with the config enroll wrote.
    let root = work.join("hosts");
    WARDEN.ok(&[
        "identity",
        "enroll",
        "billing",
        "--spec",
        path_str(&spec),
        "--lab",
        lab_dir,
        "--env",
        "test",
        "--root-dir",
        path_str(&root),
    ]);
    let id_dir = root.join("test").join("billing");
    let config = id_dir.join("agent.toml");
    let toml = std::fs::read_to_string(&config).expect("agent.toml");
    assert!(toml.contains("[[database]]"), "{toml}");
    assert!(toml.contains("path = \"postgres/creds/billing\""), "{toml}");
    let creds_file = id_dir.join("out/database/main.json");
    let state_dir = id_dir.join("state");
    let log = work.join("agent.log");
    let mut agent = RunningAgent::spawn(agent_command(&config), &log);

    // 4. The first credentials log in and carry the app's group role.
    let first = Poll::new(Duration::from_secs(60))
        .every(POLL)
        .showing_log(&log)
        .until("the first credentials", || read_creds(&creds_file));
    let t_first = Instant::now();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&creds_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the credentials file is owner-only");
    }
    assert_eq!(
        login(port, work, &first).expect("the delivered credentials log in"),
        format!("{} true", first.username)
    );
    let mut seen = vec![first.clone()];

    // New credentials arrive before the first lease's max_ttl ...
    let second = Poll::new(Duration::from_secs(MAX_TTL_S + 30))
        .every(POLL)
        .showing_log(&log)
        .until("new credentials before the lease's max_ttl", || {
            read_creds(&creds_file).filter(|c| c.username != first.username)
        });
    agent.assert_alive();
    seen.push(second.clone());
    assert_ne!(second.password, first.password);
    assert_eq!(
        login(port, work, &second).expect("the new credentials log in"),
        format!("{} true", second.username)
    );

    // ... and once it has passed, the first user is refused while the file holds a working one.
    let refused = Poll::new(Duration::from_secs(MAX_TTL_S + 60)).every(POLL).showing_log(&log).until("the first lease to end and its user to be refused", || {
            let elapsed = t_first.elapsed();
            if elapsed < Duration::from_secs(MAX_TTL_S) {
                // Past default_ttl, they still work: the agent renewed the lease. (The last
                // seconds before max_ttl are left out: the file was read a moment after issue.)
                if elapsed < Duration::from_secs(MAX_TTL_S - 10) {
                    assert!(
                        login(port, work, &first).is_ok(),
                        "the first credentials stopped working {elapsed:?} after issue, before the lease's max_ttl"
                    );
                }
                return None;
            }
            login(port, work, &first).err()
        },
    );
    assert!(
        refused.contains("password authentication failed") || refused.contains("does not exist"),
        "{refused}"
    );
    let current = read_creds(&creds_file).expect("credentials on disk");
    assert_ne!(current.username, first.username);
    if !seen.contains(&current) {
        seen.push(current.clone());
    }
    assert_eq!(
        login(port, work, &current).expect("the file holds working credentials"),
        format!("{} true", current.username)
    );
    agent.assert_alive();

    // One reload per change of the file, and one change per issued credential; the lease was
    // renewed before it was replaced.
    // (The identity's reload is also attached to its certificate output, hence all changes.)
    let (changes, all_changes, issues, renewals, reload_count) =
        settled_counts(&state_dir, &reloads);
    assert!(changes >= 2, "changes {changes}");
    assert_eq!(changes, issues, "every issue changed the file once");
    assert_eq!(reload_count, all_changes, "one reload per change");
    assert!(renewals >= 1, "renewals {renewals}");

    // The lease id is recorded (0600), the credentials are not.
    let lease_state = state_dir.join("database/main.json");
    let recorded: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&lease_state).expect("lease state")).unwrap();
    assert!(
        recorded["lease_id"]
            .as_str()
            .is_some_and(|l| l.starts_with("postgres/creds/billing/")),
        "{recorded}"
    );

    // 5. Sealed: the file stays, the source goes stale, retries stay bounded; then recovery.
    let op = lab.client("test");
    let on_disk = read_creds(&creds_file).expect("credentials");
    let (_, _, requests_at_seal) = source_state(&state_dir).expect("health");
    // Sealing is root-only: the harness token, not the operator.
    lab.harness_client("test").seal().await.expect("seal");
    let sealed_at = Instant::now();
    Poll::new(Duration::from_secs(DEFAULT_TTL_S + 30))
        .every(POLL)
        .showing_log(&log)
        .until("the database source to go stale while sealed", || {
            source_state(&state_dir).filter(|(state, _, _)| state == "stale" || state == "failed")
        });
    // Let the backoff run a while, then count what the agent sent while sealed.
    std::thread::sleep(Duration::from_secs(10));
    let (_, _, requests_sealed) = source_state(&state_dir).expect("health");
    let sent = requests_sealed - requests_at_seal;
    let sealed_for = sealed_at.elapsed();
    assert!(
        sent <= 4 + sealed_for.as_secs() / 2,
        "{sent} requests in {sealed_for:?} while sealed: the backoff must bound them"
    );
    assert_eq!(
        read_creds(&creds_file).as_ref(),
        Some(&on_disk),
        "the delivered credentials stay while sealed"
    );
    agent.assert_alive();
    unseal(&lab, &op).await;
    op.wait_ready().await.expect("active after unseal");
    // Recovered: the source is fresh and the file holds credentials that log in (renewed, or
    // new ones if the lease ended while sealed — OpenBao then drops its user at unseal).
    let recovered = Poll::new(Duration::from_secs(90))
        .every(POLL)
        .showing_log(&log)
        .until("working credentials after unseal", || {
            source_state(&state_dir).filter(|(state, _, _)| state == "fresh")?;
            let c = read_creds(&creds_file)?;
            login(port, work, &c).ok().map(|who| (c, who))
        });
    let (recovered, who) = recovered;
    assert_eq!(who, format!("{} true", recovered.username));
    if !seen.contains(&recovered) {
        seen.push(recovered);
    }

    // 6. Restart: new credentials (nothing secret was stored), and the previous lease revoked.
    agent.terminate(Duration::from_secs(30));
    // What the stopped agent left on disk: the credentials of the lease in its state file.
    let before = read_creds(&creds_file).expect("credentials");
    let agent = RunningAgent::spawn(agent_command(&config), &log);
    let after = Poll::new(Duration::from_secs(60))
        .every(POLL)
        .showing_log(&log)
        .until("new credentials after the restart", || {
            read_creds(&creds_file).filter(|c| c.username != before.username)
        });
    seen.push(after.clone());
    assert_eq!(
        login(port, work, &after).expect("the restarted agent's credentials log in"),
        format!("{} true", after.username)
    );
    Poll::new(Duration::from_secs(60))
        .every(POLL)
        .showing_log(&log)
        .until("the previous run's lease to be revoked", || {
            health(&state_dir)
                .filter(|h| h["databases"][0]["issues"].as_u64() == Some(1))
                .and_then(|_| {
                    std::fs::read_to_string(&log)
                        .ok()
                        .filter(|l| l.contains("revoked the previous run's lease"))
                })
        });
    assert!(
        login(port, work, &before).is_err(),
        "the previous run's user is dropped"
    );
    drop(agent);

    // No password in the agent's log nor anywhere under state/.
    let log_text = std::fs::read_to_string(&log).expect("log");
    let state_files = files_under(&state_dir);
    assert!(!state_files.is_empty());
    for c in &seen {
        assert!(
            !log_text.contains(&c.password),
            "a password reached the agent's log"
        );
        for f in &state_files {
            let bytes = std::fs::read(f).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(&c.password),
                "a password reached {}",
                f.display()
            );
        }
    }
    assert!(!log_text.contains(&admin_password));
}
