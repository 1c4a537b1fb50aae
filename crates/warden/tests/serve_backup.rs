//! Scheduled backups and DR drills in `warden serve` (issue 15, ADR 0028), end to end on a real
//! lab (`test`, one raft node, HTTPS + mTLS): serve logs in with its **own** certificate (its
//! generated policy is what is tested), backs up every 3 s into the spec's `backup.dir`,
//! retention keeps 2, drills the newest backup in a scratch cluster once, and `/metrics` shows
//! the backup's age, the drill's RTO and verdict and raft health per node, read back from the
//! job records. The drill's signed report verifies offline.

#![allow(clippy::print_stderr)] // measured figures go to the test log on purpose

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use warden_testkit::cli::{Cli, on_lab, path_str, refs};
use warden_testkit::{LabEnv, spec_with_backup};

const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

/// A child process killed (and reaped) when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn identity(dir: &Path, name: &str) -> (PathBuf, String) {
    let g = warden_custody::generate_identity();
    let p = dir.join(format!("{name}.key"));
    std::fs::write(&p, g.file_text.as_bytes()).expect("write identity");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    (p, g.recipient)
}

fn snapshots(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".snap.age"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The value of `name{…}` whose labels contain every `k="v"` of `want`.
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

#[tokio::test(flavor = "multi_thread")]
async fn serve_backs_up_on_schedule_prunes_drills_and_serves_backup_age_and_drill_rto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let lab = LabEnv::start(&["test"]).await;
    let lab_dir = lab.dir().to_path_buf();
    let dir = tempfile::tempdir().expect("temp dir");
    let (alice, alice_r) = identity(dir.path(), "alice");
    let spec = spec_with_backup(dir.path(), &[&alice_r], 2);
    // Every 3 s, and one drill per hour (so exactly one in this test).
    let mut text = std::fs::read_to_string(&spec).expect("spec");
    text.push_str("every = \"3s\"\ndrill_every = \"1h\"\n");
    std::fs::write(&spec, text).expect("spec");
    WARDEN.ok(&refs(&on_lab(&["apply"], &spec, &lab_dir)));
    let key = WARDEN.ok(&refs(&on_lab(&["evidence", "key"], &spec, &lab_dir)));
    let key_file = dir.path().join("evidence.pem");
    std::fs::write(&key_file, &key.stdout).expect("key file");
    let ident = dir.path().join("serve-identity");
    WARDEN.ok(&refs(&on_lab(
        &["serve", "enroll", "--dir", path_str(&ident)],
        &spec,
        &lab_dir,
    )));

    let log = dir.path().join("serve.jsonl");
    let mut cmd = Command::new(WARDEN.bin());
    cmd.args(refs(&on_lab(
        &[
            "serve",
            "--identity-dir",
            path_str(&ident),
            "--id",
            "b",
            "--lease-ttl",
            "3s",
            "--tick",
            "1s",
            "--posture-every",
            "2s",
            "--metrics-listen",
            "127.0.0.1:0",
            "--drill-identity",
            path_str(&alice),
            "--drill-key",
            path_str(&key_file),
            "-o",
            "json",
        ],
        &spec,
        &lab_dir,
    )))
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(&log).expect("log"))
    .stderr(std::fs::File::create(dir.path().join("serve.err")).expect("err"));
    let started = Instant::now();
    let serve = Proc(cmd.spawn().expect("start warden serve"));
    let events = || -> Vec<Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let runs = |job: &str| -> Vec<Value> {
        events()
            .into_iter()
            .filter(|e| e["event"] == "run" && e["job"] == job)
            .map(|e| e["run"].clone())
            .collect()
    };
    let backups = dir.path().join("backups");

    // Backups on schedule, with retention: at least four good runs, never more than two kept.
    let made = wait_for("four scheduled backups", Duration::from_secs(120), || {
        let ok: Vec<Value> = runs("backup")
            .into_iter()
            .filter(|r| r["outcome"] == "ok")
            .collect();
        assert!(
            !runs("backup").iter().any(|r| r["outcome"] == "failed"),
            "a backup failed: {:?}\n{}",
            runs("backup"),
            std::fs::read_to_string(dir.path().join("serve.err")).unwrap_or_default()
        );
        (ok.len() >= 4).then_some(ok)
    })
    .await;
    eprintln!(
        "4 backups {} ms after serve started",
        started.elapsed().as_millis()
    );
    // One per 3 s period: the slots differ.
    let mut slots: Vec<&str> = made.iter().filter_map(|r| r["slot"].as_str()).collect();
    slots.dedup();
    assert_eq!(slots.len(), made.len(), "one backup per period: {made:?}");
    assert!(
        made.iter()
            .any(|r| r["figures"]["pruned"].as_f64() >= Some(1.0)),
        "retention removed older backups: {made:?}"
    );
    let kept = snapshots(&backups);
    assert!(
        (1..=2).contains(&kept.len()),
        "keep = 2 holds: {kept:?} ({:?})",
        made
    );

    // The drill ran once (after the first backup), green, its RTO recorded and signed.
    let drill = wait_for("the drill", Duration::from_secs(120), || {
        let errors: Vec<Value> = events()
            .into_iter()
            .filter(|e| e["event"] == "error")
            .collect();
        assert!(errors.is_empty(), "serve reported errors: {errors:?}");
        if started.elapsed() > Duration::from_secs(100) {
            panic!(
                "no drill; events: {:?}\nstderr: {}",
                events().iter().rev().take(12).collect::<Vec<_>>(),
                std::fs::read_to_string(dir.path().join("serve.err")).unwrap_or_default()
            );
        }
        runs("dr-drill").into_iter().next()
    })
    .await;
    assert_eq!(drill["outcome"], "ok", "{drill}");
    let rto = drill["figures"]["rto_seconds"].as_f64().expect("rto");
    assert!(rto > 0.0 && rto < 120.0, "{drill}");
    assert_eq!(drill["figures"]["passed"].as_f64(), Some(1.0), "{drill}");
    eprintln!("scheduled drill RTO {rto:.1} s");
    let detail = drill["detail"].as_str().expect("detail");
    let report = detail
        .rsplit_once("signed report ")
        .map(|(_, p)| PathBuf::from(p))
        .expect("report path in the detail");
    WARDEN.ok(&[
        "evidence",
        "verify",
        path_str(&report),
        "--key",
        path_str(&key_file),
    ]);

    // /metrics: backup age (seconds since the newest good backup, read from the job record),
    // the schedule, the drill's verdict and RTO, raft health of the one node.
    let addr: std::net::SocketAddr = events()
        .iter()
        .find(|e| e["event"] == "metrics_listening")
        .and_then(|e| e["addr"].as_str()?.parse().ok())
        .expect("metrics address");
    let text = wait_for("drill figures in /metrics", Duration::from_secs(30), || {
        let (code, t) = warden_testkit::http::get_plain(addr, "/metrics");
        (code == 200 && sample(&t, "warden_serve_drill_last_rto_seconds", &[]).is_some())
            .then_some(t)
    })
    .await;
    let age =
        sample(&text, "warden_serve_backup_age_seconds", &[("env", "test")]).expect("backup age");
    assert!((0.0..30.0).contains(&age), "backup age {age} s\n{text}");
    assert_eq!(
        sample(
            &text,
            "warden_serve_backup_interval_seconds",
            &[("env", "test")]
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(&text, "warden_serve_drill_last_success", &[("env", "test")]),
        Some(1.0),
        "{text}"
    );
    let served_rto = sample(
        &text,
        "warden_serve_drill_last_rto_seconds",
        &[("env", "test")],
    )
    .expect("rto");
    assert!((served_rto - rto).abs() < 1e-6, "{served_rto} vs {rto}");
    assert_eq!(
        sample(&text, "warden_serve_raft_node_healthy", &[("env", "test")]),
        Some(1.0),
        "autopilot's view of the node, read with serve's own policy\n{text}"
    );

    // Retention still holds at the end, and nothing but backups, manifests and the drill's
    // report was written there (no temp file left).
    drop(serve);
    let kept = snapshots(&backups);
    assert!((1..=2).contains(&kept.len()), "{kept:?}");
    for f in std::fs::read_dir(&backups).expect("ls").flatten() {
        let n = f.file_name().to_string_lossy().into_owned();
        assert!(
            n.ends_with(".snap.age") || n.ends_with(".manifest.json") || n.contains("-drill-"),
            "unexpected file {n}"
        );
    }
}

/// A schedule of zero, or one that is not a duration, is refused where it is written, before
/// anything is contacted.
#[test]
fn a_zero_or_malformed_backup_schedule_is_refused_where_it_is_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, r) = identity(dir.path(), "alice");
    for (line, want) in [
        ("every = \"0s\"", "environments.test.backup.every"),
        (
            "drill_every = \"soon\"",
            "environments.test.backup.drill_every",
        ),
    ] {
        let spec = spec_with_backup(dir.path(), &[&r], 2);
        let mut text = std::fs::read_to_string(&spec).expect("spec");
        text.push_str(line);
        text.push('\n');
        std::fs::write(&spec, text).expect("spec");
        let out = WARDEN.run(&["lint", "--spec", path_str(&spec)]);
        assert!(!out.status.success(), "{line}");
        let err = warden_testkit::cli::text(&out.stderr);
        assert!(err.contains(want), "{line}: {err}");
        assert!(err.contains("warden.toml:"), "file:line:col: {err}");
    }
}
