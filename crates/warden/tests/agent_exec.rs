//! `exec_env` delivery end to end (issue 17, part 5): `warden agent exec --config agent.toml --
//! CMD…` against a real lab (HTTPS + mTLS OpenBao, `warden apply` of the example spec with
//! billing's Stripe key under a purpose whose delivery is `exec_env`, `warden identity enroll`):
//!
//! * enrollment writes an `[[exec_env]]` entry for the secret, and no file for it;
//! * the child sees the secret in its environment;
//! * a new KV version restarts it exactly once, a burst of two writes too (debounce);
//! * the agent's own `/proc/<pid>/environ` and `cmdline`, its log, its state directory,
//!   everything else in the identity directory and its delivery report hold no value;
//! * a revoked purpose lets no new value through: the child keeps running with what it has;
//! * SIGTERM to the agent reaches the child, and the child's exit code is the agent's (a
//!   trapping child's `exit 7` → 7; a child killed by SIGTERM → 143);
//! * `restart = "signal:USR1"`: a change sends the signal once and restarts nothing;
//! * a secret that cannot be read at start: the child is never started, the agent exits 1
//!   after `[exec] start_timeout` with a clear message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use warden_bao::{Client, Idempotent};
use warden_enroll::{AgentConfig, ExecSection};
use warden_testkit::cli::{Cli, path_str, text};
use warden_testkit::{EXAMPLE_SPEC_TEXT, LabEnv, Poll, RunningAgent};

const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

/// The example spec's `billing-stripe` purpose, delivered into a process environment.
fn exec_spec() -> String {
    let from = "delivery    = \"agent_file\"\nrotation    = { interval = \"30d\", grace = \"7d\" }\ncustody     = \"issued by the provider's dashboard";
    let to = from.replace("agent_file", "exec_env");
    let text = EXAMPLE_SPEC_TEXT.replace(from, &to);
    assert_ne!(text, EXAMPLE_SPEC_TEXT, "the example spec changed shape");
    text
}

async fn write_stripe(op: &Client, key: &str) {
    op.write(
        "kvv2/data/billing/stripe",
        &json!({ "data": { "api_key": key } }),
        Idempotent::Yes,
    )
    .await
    .expect("write KV");
}

/// The child: records each start (its pid) and the variable it was given, in `dir`; on
/// SIGTERM it exits 7 (a service with its own shutdown code). The script and `dir` are the
/// operator's argv; the secret only ever comes from the environment.
const CHILD: &str = r#"trap 'echo term >> "$1/terms"; exit 7' TERM; echo $$ >> "$1/starts"; printf %s "$STRIPE_API_KEY" > "$1/value.tmp"; mv "$1/value.tmp" "$1/value"; while :; do sleep 0.1; done"#;

/// A child that wants a signal, not a restart, on change: it records each SIGUSR1; SIGTERM
/// kills it (no trap), so the agent reports 143.
const SIGNAL_CHILD: &str = r#"trap 'echo usr1 >> "$1/usr1"' USR1; echo $$ >> "$1/starts"; printf %s "$STRIPE_API_KEY" > "$1/value.tmp"; mv "$1/value.tmp" "$1/value"; while :; do sleep 0.1; done"#;

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// Every file under `dir` (recursively, symlinks not followed), with its bytes.
fn files_under(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            files_under(&p, out);
        } else if meta.is_file()
            && let Ok(bytes) = std::fs::read(&p)
        {
            out.push((p, bytes));
        }
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// No value anywhere the agent keeps or shows things: its environment and argv as the kernel
/// sees them, and every file in the identity directory (log, state, report, outputs).
fn assert_no_value_leaks(agent_pid: u32, id_dir: &Path, log: &Path, values: &[&str]) {
    let environ = std::fs::read(format!("/proc/{agent_pid}/environ")).expect("agent environ");
    let cmdline = std::fs::read(format!("/proc/{agent_pid}/cmdline")).expect("agent cmdline");
    assert!(!environ.is_empty(), "/proc/<agent>/environ read as empty");
    let mut files = Vec::new();
    files_under(id_dir, &mut files);
    assert!(
        files
            .iter()
            .any(|(p, _)| p.starts_with(id_dir.join("state"))),
        "the state directory was not written: the check would prove nothing"
    );
    files.push((log.to_path_buf(), std::fs::read(log).expect("log")));
    for v in values {
        assert!(
            !contains(&environ, v),
            "a value is in /proc/<agent>/environ"
        );
        assert!(
            !contains(&cmdline, v),
            "a value is in /proc/<agent>/cmdline"
        );
        for (path, bytes) in &files {
            assert!(!contains(bytes, v), "a value is in {}", path.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_env_delivers_restarts_once_passes_signals_and_exit_codes_and_leaks_nothing() {
    let lab = LabEnv::start(&["test"]).await;
    let op = lab.client("test");
    let tmp = tempfile::Builder::new()
        .prefix("warden-h6-exec-")
        .tempdir()
        .expect("tempdir");
    let spec = tmp.path().join("warden.toml");
    std::fs::write(&spec, exec_spec()).expect("write spec");
    let lab_dir = path_str(lab.dir()).to_owned();
    let base = [
        "--spec",
        path_str(&spec),
        "--lab",
        lab_dir.as_str(),
        "--env",
        "test",
    ];
    let cli = |extra: &[&str]| {
        let a: Vec<&str> = extra.iter().chain(base.iter()).copied().collect();
        WARDEN.ok(&a)
    };
    cli(&["apply"]);
    // Values unique to this run, so finding one anywhere is a real leak.
    let tag = std::process::id();
    let v1 = format!("sk_exec_first_{tag}_a1b2c3");
    let v2 = format!("sk_exec_second_{tag}_d4e5f6");
    let v3 = format!("sk_exec_burst1_{tag}_g7h8");
    let v4 = format!("sk_exec_burst2_{tag}_i9j0");
    let v5 = format!("sk_exec_refused_{tag}_k1l2");
    let v6 = format!("sk_exec_signalled_{tag}_m3n4");
    op.write(
        "kvv2/data/billing/config",
        &json!({ "data": { "db_url": "postgres://db/billing" } }),
        Idempotent::Yes,
    )
    .await
    .expect("write config");
    write_stripe(&op, &v1).await;

    let root = tmp.path().join("identities");
    cli(&[
        "identity",
        "enroll",
        "billing",
        "--root-dir",
        path_str(&root),
    ]);
    let id = root.join("test/billing");
    let config = id.join("agent.toml");
    let mut cfg = AgentConfig::load(&config).expect("enrolled agent.toml");
    // Enrollment: the exec_env secret is an [[exec_env]] entry, never a file.
    assert_eq!(cfg.exec_env.len(), 1, "{cfg:?}");
    assert_eq!(cfg.exec_env[0].name, "STRIPE");
    assert_eq!(cfg.exec_env[0].path, "billing/stripe");
    assert_eq!(cfg.exec_env[0].purpose.as_deref(), Some("billing-stripe"));
    assert!(
        cfg.outputs.iter().all(|o| o.name != "secret-stripe"),
        "no file output for an exec_env secret"
    );
    cfg.renewal.poll = "1s".to_owned();
    cfg.health = None;
    cfg.control = None;
    for o in &mut cfg.outputs {
        o.reload = None; // `systemctl reload billing` is the spec's, not this host's
    }
    // A 3 s debounce: the burst below is two KV writes in a row, and the second must land
    // before the agent's settled re-read; with 1 s a write slowed by a loaded CI machine (raft
    // commit, mTLS) let the agent restart twice.
    cfg.exec = Some(ExecSection {
        debounce: Some("3s".to_owned()),
        kill_timeout: Some("5s".to_owned()),
        start_timeout: Some("60s".to_owned()),
        ..ExecSection::default()
    });
    std::fs::write(&config, cfg.to_toml(&config).expect("toml")).expect("write agent.toml");

    // ---- the child sees the secret --------------------------------------------------------
    let child_dir = tmp.path().join("child");
    std::fs::create_dir(&child_dir).expect("child dir");
    let log = tmp.path().join("agent.log");
    let exec_args = |cfg: &Path, dir: &Path| -> Vec<String> {
        [
            "-vv",
            "agent",
            "exec",
            "--config",
            path_str(cfg),
            "--",
            "sh",
            "-c",
            CHILD,
            "sh",
            path_str(dir),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    };
    let mut agent = RunningAgent::spawn(WARDEN.command(&exec_args(&config, &child_dir)), &log);
    let value = child_dir.join("value");
    let starts = child_dir.join("starts");
    let poll = || Poll::new(Duration::from_secs(60)).showing_log(&log);
    poll().until_true("the child's first value", || {
        std::fs::read_to_string(&value).ok().as_deref() == Some(v1.as_str())
    });
    assert_eq!(lines(&starts), 1);
    agent.assert_alive();
    // The file outputs run beside the child: the agent is the whole agent.
    poll().until_true("the config file output", || {
        id.join("out/secrets/config.json").exists()
    });
    assert!(!id.join("out/secrets/stripe.json").exists());

    // ---- a new version restarts it exactly once --------------------------------------------
    write_stripe(&op, &v2).await;
    poll().until_true("the child restarted with the new value", || {
        std::fs::read_to_string(&value).ok().as_deref() == Some(v2.as_str())
    });
    // Several polls and debounce periods later, still exactly one restart.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(lines(&starts), 2, "one change, one restart");
    assert_eq!(
        lines(&child_dir.join("terms")),
        1,
        "the old child got SIGTERM"
    );

    // ---- a burst of writes: one restart, with the last value -------------------------------
    write_stripe(&op, &v3).await;
    write_stripe(&op, &v4).await;
    poll().until_true("the child restarted after the burst", || {
        std::fs::read_to_string(&value).ok().as_deref() == Some(v4.as_str())
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(lines(&starts), 3, "two quick writes, one restart");
    agent.assert_alive();

    // ---- nothing leaks into the agent -------------------------------------------------------
    assert_no_value_leaks(agent.pid(), &id, &log, &[&v1, &v2, &v3, &v4]);

    // ---- fail closed: a revoked purpose lets no new value through ---------------------------
    let revoked = exec_spec().replace(
        "covers      = [\"billing/secret/stripe\"]",
        "covers      = [\"billing/secret/stripe\"]\nrevoked     = true",
    );
    assert_ne!(revoked, exec_spec(), "the example spec changed shape");
    std::fs::write(&spec, revoked).expect("write spec");
    cli(&["apply"]);
    write_stripe(&op, &v5).await;
    Poll::new(Duration::from_secs(30))
        .showing_log(&log)
        .until_true("the agent refusing the new value", || {
            agent
                .log()
                .lines()
                .any(|l| l.contains("no new value for the command") && l.contains("is revoked"))
        });
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(lines(&starts), 3, "no restart under a revoked purpose");
    assert_eq!(
        std::fs::read_to_string(&value).expect("value"),
        v4,
        "the child keeps what it has"
    );
    agent.assert_alive();
    assert_no_value_leaks(agent.pid(), &id, &log, &[&v1, &v2, &v3, &v4, &v5]);

    // ---- SIGTERM: forwarded, the child's exit code is the agent's ---------------------------
    let status = agent.terminate(Duration::from_secs(20));
    assert_eq!(
        status.code(),
        Some(7),
        "the child's `exit 7`; log:\n{}",
        text(&std::fs::read(&log).unwrap_or_default())
    );
    assert_eq!(
        lines(&child_dir.join("terms")),
        3,
        "the last child got the forwarded SIGTERM"
    );
    assert_no_value_leaks_in_files(&id, &log, &[&v1, &v2, &v3, &v4, &v5]);
    // The delivery report the agent sent to OpenBao (what posture reads) holds none either.
    let report = warden_testkit::delivery_report(&op, "billing").await;
    let report = serde_json::to_string(&report).expect("json");
    assert!(
        report.contains("billing/certificate"),
        "the report was written: {report}"
    );
    for v in [&v1, &v2, &v3, &v4, &v5] {
        assert!(
            !report.contains(v.as_str()),
            "a value is in the delivery report"
        );
    }

    // Restore the purpose for the next runs.
    std::fs::write(&spec, exec_spec()).expect("write spec");
    cli(&["apply"]);

    // ---- restart = "signal:USR1": signalled once per change, never restarted; a child
    //      killed by SIGTERM: 143 -------------------------------------------------------------
    let mut signalled = AgentConfig::load(&config).expect("agent.toml");
    signalled.exec = Some(ExecSection {
        restart: Some("signal:USR1".to_owned()),
        debounce: Some("1s".to_owned()),
        ..ExecSection::default()
    });
    let signalled_path = id.join("agent-signal.toml");
    std::fs::write(
        &signalled_path,
        signalled.to_toml(&signalled_path).expect("toml"),
    )
    .expect("write");
    let sig_dir = tmp.path().join("signal-child");
    std::fs::create_dir(&sig_dir).expect("dir");
    let log2 = tmp.path().join("agent-signal.log");
    let sig_agent = RunningAgent::spawn(
        WARDEN.command(&[
            "agent",
            "exec",
            "--config",
            path_str(&signalled_path),
            "--",
            "sh",
            "-c",
            SIGNAL_CHILD,
            "sh",
            path_str(&sig_dir),
        ]),
        &log2,
    );
    let sig_value = sig_dir.join("value");
    Poll::new(Duration::from_secs(60))
        .showing_log(&log2)
        .until_true("the signalled child's value", || {
            std::fs::read_to_string(&sig_value).ok().as_deref() == Some(v5.as_str())
        });
    // (The trap is set before the value is written.)
    write_stripe(&op, &v6).await;
    Poll::new(Duration::from_secs(30))
        .showing_log(&log2)
        .until_true("SIGUSR1 at the child", || lines(&sig_dir.join("usr1")) >= 1);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(lines(&sig_dir.join("usr1")), 1, "one change, one signal");
    assert_eq!(
        lines(&sig_dir.join("starts")),
        1,
        "signalled, not restarted"
    );
    assert_eq!(
        std::fs::read_to_string(&sig_value).expect("value"),
        v5,
        "a signal cannot change the child's environment"
    );
    let status = sig_agent.terminate(Duration::from_secs(20));
    assert_eq!(status.code(), Some(143), "128 + SIGTERM");
    assert_no_value_leaks_in_files(&id, &log2, &[&v5, &v6]);

    // ---- a secret that cannot be read: the child never starts ------------------------------
    let mut broken = AgentConfig::load(&config).expect("agent.toml");
    broken.exec_env[0].path = "billing/no-such-secret".to_owned();
    broken.exec = Some(ExecSection {
        start_timeout: Some("3s".to_owned()),
        ..ExecSection::default()
    });
    let broken_path = id.join("agent-broken.toml");
    std::fs::write(&broken_path, broken.to_toml(&broken_path).expect("toml")).expect("write");
    let never = tmp.path().join("never-started");
    let t = std::time::Instant::now();
    let out = WARDEN.run(&[
        "agent",
        "exec",
        "--config",
        path_str(&broken_path),
        "--",
        "sh",
        "-c",
        "touch \"$1\"",
        "sh",
        path_str(&never),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        !never.exists(),
        "the child must not start without its secret"
    );
    assert!(
        stderr.contains("the command was not started") && stderr.contains("billing/no-such-secret"),
        "{stderr}"
    );
    assert!(
        stderr.contains("start_timeout"),
        "the hint names the setting: {stderr}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "gave up after the timeout"
    );
}

/// After the agent exited: its files (log, state, report) still hold no value.
fn assert_no_value_leaks_in_files(id_dir: &Path, log: &Path, values: &[&str]) {
    let mut files = Vec::new();
    files_under(id_dir, &mut files);
    files.push((log.to_path_buf(), std::fs::read(log).expect("log")));
    for v in values {
        for (path, bytes) in &files {
            assert!(!contains(bytes, v), "a value is in {}", path.display());
        }
    }
}

/// Resumes a SIGSTOPped OpenBao node when dropped, so a failing assertion never leaves the
/// lab frozen.
struct Frozen(i32);

impl Frozen {
    fn freeze(pid: u32) -> Self {
        let pid = i32::try_from(pid).expect("pid");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGSTOP,
        )
        .expect("SIGSTOP the node");
        Self(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGCONT,
        );
    }
}

/// Red team (issue 17), as a hostile KV writer and a flaky server would attack `exec`:
///
/// * a value no environment can carry (a NUL byte) and a key that builds `STRIPE_…` twice:
///   refused at the read, by name, without the value in the log; the running child is not
///   stopped for a restart that could not start it again (it was, and the agent then exited);
/// * a frozen server (SIGSTOP) while a poll is in flight: SIGTERM still reaches the child at
///   once (the agent did not stop within 60 s before), and the exit code passes through;
/// * SIGTERM while a restart waits for the old child to stop: no new child is started (one
///   was, and was stopped again at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_team_exec_bad_values_keep_the_child_and_no_signal_is_held_up() {
    let lab = LabEnv::start(&["test"]).await;
    let op = lab.client("test");
    let tmp = tempfile::Builder::new()
        .prefix("warden-h6-red-exec-")
        .tempdir()
        .expect("tempdir");
    let spec = tmp.path().join("warden.toml");
    std::fs::write(&spec, exec_spec()).expect("write spec");
    let lab_dir = path_str(lab.dir()).to_owned();
    let base = [
        "--spec",
        path_str(&spec),
        "--lab",
        lab_dir.as_str(),
        "--env",
        "test",
    ];
    let cli = |extra: &[&str]| {
        let a: Vec<&str> = extra.iter().chain(base.iter()).copied().collect();
        WARDEN.ok(&a)
    };
    cli(&["apply"]);
    let tag = std::process::id();
    let v1 = format!("sk_red_first_{tag}_q1w2");
    let nul_tail = format!("after_nul_{tag}_e3r4");
    let twin = format!("sk_red_twin_{tag}_t5y6");
    op.write(
        "kvv2/data/billing/config",
        &json!({ "data": { "db_url": "postgres://db/billing" } }),
        Idempotent::Yes,
    )
    .await
    .expect("write config");
    write_stripe(&op, &v1).await;
    let root = tmp.path().join("identities");
    cli(&[
        "identity",
        "enroll",
        "billing",
        "--root-dir",
        path_str(&root),
    ]);
    let id = root.join("test/billing");
    let config = id.join("agent.toml");
    let mut cfg = AgentConfig::load(&config).expect("enrolled agent.toml");
    cfg.renewal.poll = "1s".to_owned();
    cfg.health = None;
    cfg.control = None;
    for o in &mut cfg.outputs {
        o.reload = None;
    }
    cfg.exec = Some(ExecSection {
        debounce: Some("1s".to_owned()),
        kill_timeout: Some("5s".to_owned()),
        start_timeout: Some("60s".to_owned()),
        ..ExecSection::default()
    });
    std::fs::write(&config, cfg.to_toml(&config).expect("toml")).expect("write agent.toml");

    let child_dir = tmp.path().join("child");
    std::fs::create_dir(&child_dir).expect("child dir");
    let log = tmp.path().join("agent.log");
    let mut cmd = WARDEN.command(&[
        "-vv",
        "agent",
        "exec",
        "--config",
        path_str(&config),
        "--",
        "sh",
        "-c",
        CHILD,
        "sh",
        path_str(&child_dir),
    ]);
    cmd.env_remove("WARDEN_LOG");
    let mut agent = RunningAgent::spawn(cmd, &log);
    let value = child_dir.join("value");
    let starts = child_dir.join("starts");
    Poll::new(Duration::from_secs(60))
        .showing_log(&log)
        .until_true("the child's first value", || {
            std::fs::read_to_string(&value).ok().as_deref() == Some(v1.as_str())
        });

    // ---- a NUL byte: refused by name, the child keeps running with what it has -------------
    write_stripe(&op, &format!("sk_red_{tag}\u{0}{nul_tail}")).await;
    Poll::new(Duration::from_secs(30))
        .showing_log(&log)
        .until_true("the NUL value refused", || {
            agent
                .log()
                .lines()
                .any(|l| l.contains("STRIPE_API_KEY") && l.contains("NUL byte"))
        });
    tokio::time::sleep(Duration::from_secs(4)).await;
    agent.assert_alive();
    assert_eq!(lines(&starts), 1, "no restart into a value execve rejects");
    assert_eq!(std::fs::read_to_string(&value).expect("value"), v1);

    // ---- two keys that both become STRIPE_API_KEY: refused, no silent shadowing ------------
    op.write(
        "kvv2/data/billing/stripe",
        &json!({ "data": { "api_key": v1, "api-key": twin } }),
        Idempotent::Yes,
    )
    .await
    .expect("write KV");
    Poll::new(Duration::from_secs(30))
        .showing_log(&log)
        .until_true("the colliding keys refused", || {
            agent
                .log()
                .lines()
                .any(|l| l.contains("STRIPE_API_KEY") && l.contains("would silently replace"))
        });
    agent.assert_alive();
    assert_eq!(lines(&starts), 1, "no restart with a shadowed variable");
    assert_eq!(std::fs::read_to_string(&value).expect("value"), v1);
    let text_log = agent.log();
    assert!(!text_log.contains(&nul_tail), "the NUL value is in the log");
    assert!(!text_log.contains(&twin), "a value is in the log");

    // ---- a frozen server: SIGTERM still reaches the child at once --------------------------
    let pid = lab
        .lab()
        .node_pid("test", 1)
        .expect("find the node")
        .expect("the node runs");
    let frozen = Frozen::freeze(pid);
    // Past the next poll: a re-read is now waiting on the frozen server.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t = std::time::Instant::now();
    let status = agent.terminate(Duration::from_secs(60));
    let took = t.elapsed();
    drop(frozen);
    assert_eq!(status.code(), Some(7), "the child's exit code");
    assert!(
        // At once, not after the re-read's 60 s request timeout; the slack is for a debug
        // agent and shell on a loaded CI machine.
        took < Duration::from_secs(20),
        "SIGTERM took {took:?} to reach the child while OpenBao was frozen; log:\n{}",
        text(&std::fs::read(&log).unwrap_or_default())
    );
    assert_eq!(lines(&child_dir.join("terms")), 1, "the child got SIGTERM");

    // ---- a stop signal while a restart waits for the old child: no new child ---------------
    let slow_dir = tmp.path().join("slow-child");
    std::fs::create_dir(&slow_dir).expect("dir");
    let slow_log = tmp.path().join("agent-slow.log");
    let slow = RunningAgent::spawn(
        WARDEN.command(&[
            "-vv",
            "agent",
            "exec",
            "--config",
            path_str(&config),
            "--",
            "sh",
            "-c",
            SLOW_CHILD,
            "sh",
            path_str(&slow_dir),
        ]),
        &slow_log,
    );
    let v2 = format!("sk_red_second_{tag}_u7i8");
    write_stripe(&op, &v1).await;
    Poll::new(Duration::from_secs(60))
        .showing_log(&slow_log)
        .until_true("the slow child's value", || {
            std::fs::read_to_string(slow_dir.join("value"))
                .ok()
                .as_deref()
                == Some(v1.as_str())
        });
    write_stripe(&op, &v2).await;
    Poll::new(Duration::from_secs(30))
        .showing_log(&slow_log)
        .until_true("the restart's SIGTERM at the slow child", || {
            lines(&slow_dir.join("terms")) >= 1
        });
    let status = slow.terminate(Duration::from_secs(30));
    assert_eq!(status.code(), Some(7), "the old child's own exit code");
    assert_eq!(
        lines(&slow_dir.join("starts")),
        1,
        "a stop signal during the restart must not start a new child; log:\n{}",
        text(&std::fs::read(&slow_log).unwrap_or_default())
    );
}

/// A child that takes 3 s to stop after SIGTERM (a service draining its connections; a
/// second SIGTERM does not restart its drain).
const SLOW_CHILD: &str = r#"trap 'trap "" TERM; echo term >> "$1/terms"; sleep 3; exit 7' TERM; echo $$ >> "$1/starts"; printf %s "$STRIPE_API_KEY" > "$1/value.tmp"; mv "$1/value.tmp" "$1/value"; while :; do sleep 0.1; done"#;
