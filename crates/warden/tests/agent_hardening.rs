//! A host user cannot redirect or delete through the agent: the reproductions of symlinked
//! output directories and of a service user swapping a directory under a root agent, end to
//! end through the `warden` binary against a real lab (HTTPS + mTLS OpenBao, `warden apply` of
//! the example spec, `warden identity enroll billing`).
//!
//! * `out/secrets -> victim`: a forced render of `secret-stripe` writes nothing into the victim.
//! * `out/tls.d -> victim`: four forced renewals write no key into the victim and delete none
//!   of its directories; foreign directories inside a real `tls.d` survive pruning.
//! * A root agent whose `out/` belongs to the service user (uid 65534, `nobody`): the service
//!   user's `mv tls.d tls.d.old && ln -s <root-only dir> tls.d` makes two forced renewals fail
//!   and the root-only directory keeps every subdirectory; an output without that `owner` is
//!   refused outright because `out/` is someone else's.
//!
//! Every foreign directory is compared byte for byte before and after. The "attacker" is the
//! test itself, acting directly on the filesystem (the tests run as root).

use std::collections::BTreeMap;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use warden_agent::Config;
use warden_bao::{Client, Idempotent};
use warden_enroll::AgentConfig;
use warden_testkit::cli::{Cli, path_str, text};
use warden_testkit::{EXAMPLE_SPEC, LabEnv, Poll, RunningAgent};

/// The binary under test.
const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

/// A long-running `warden agent --config FILE`, its output in `log`.
fn start_agent(config: &Path, log: PathBuf) -> RunningAgent {
    RunningAgent::spawn(
        WARDEN.command(&["agent", "--config", path_str(config)]),
        &log,
    )
}

/// Waits up to a minute for `check`, showing the agent's log if it never holds.
async fn wait_for<T>(what: &str, agent: &RunningAgent, check: impl FnMut() -> Option<T>) -> T {
    Poll::new(Duration::from_secs(60))
        .every(Duration::from_millis(100))
        .showing_log(agent.log_path())
        .until_async(what, check)
        .await
}

/// The service user the root-agent scenario hands `out/` to.
const NOBODY: u32 = 65534;

/// Every file and directory below `dir` (not following symlinks) with its type, mode and the
/// SHA-256 of its bytes: what "survives byte for byte" is compared against (digests keep a
/// failure message readable).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (String, String)> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (String, String)>) {
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let e = e.expect("entry");
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p).expect("lstat");
            let rel = p.strip_prefix(base).expect("below base").to_path_buf();
            let what = format!(
                "{:?} {:o}",
                meta.file_type(),
                meta.permissions().mode() & 0o7777
            );
            if meta.is_dir() {
                out.insert(rel, (what, String::new()));
                walk(base, &p, out);
            } else {
                out.insert(rel, (what, sha256(&std::fs::read(&p).expect("read"))));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn sha256(bytes: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A directory outside every identity directory, with subdirectories and files.
fn victim(at: &Path) -> PathBuf {
    for sub in ["app-data/db", "keep-me", "0a1b2c"] {
        std::fs::create_dir_all(at.join(sub)).expect("victim dirs");
    }
    std::fs::write(at.join("app-data/db/rows"), b"rows that must survive").unwrap();
    std::fs::write(at.join("keep-me/notes.txt"), b"notes").unwrap();
    std::fs::write(at.join("0a1b2c/cert.pem"), b"not the agent's").unwrap();
    std::fs::write(at.join("top.txt"), b"top").unwrap();
    at.to_path_buf()
}

async fn write_kv(op: &Client, name: &str, data: serde_json::Value) {
    op.write(
        &format!("kvv2/data/billing/{name}"),
        &json!({ "data": data }),
        Idempotent::Yes,
    )
    .await
    .expect("write KV");
}

/// `warden identity enroll billing` into `root`, then its `agent.toml` trimmed for the test
/// (control socket on, health off, no reloads) and edited by `edit` as text.
fn enroll(lab: &LabEnv, root: &Path, edit: impl FnOnce(String) -> String) -> (PathBuf, PathBuf) {
    WARDEN.ok(&[
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
    ]);
    let id = root.join("test").join("billing");
    let path = id.join("agent.toml");
    let mut cfg = AgentConfig::load(&path).expect("enrolled agent.toml");
    cfg.renewal.poll = "60s".to_owned();
    cfg.health = None;
    assert!(
        cfg.control.is_some(),
        "enroll configures the control socket"
    );
    for o in &mut cfg.outputs {
        o.reload = None;
    }
    let text = edit(cfg.to_toml(&path).expect("toml"));
    std::fs::write(&path, text).expect("write agent.toml");
    Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    (id, path)
}

/// `warden apply` of the example spec. OpenBao upgrades a fresh KV mount to version 2 in the
/// background and refuses writes meanwhile; apply says to run it again, and so does this.
async fn apply(lab: &LabEnv) {
    let args = [
        "apply",
        "--spec",
        EXAMPLE_SPEC,
        "--lab",
        path_str(lab.dir()),
        "--env",
        "test",
    ];
    for _ in 0..5 {
        let out = WARDEN.run(&args);
        if out.status.success() {
            return;
        }
        if !text(&out.stderr).contains("Upgrading from non-versioned to versioned data") {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    WARDEN.ok(&args);
}

/// Forces a render of `output` through the control socket; `Err` carries why it failed.
async fn rotate(id: &Path, output: &str) -> Result<String, String> {
    let socket = id.join("state/control.sock");
    match warden_agent::control::rotate(&socket, output).await {
        Ok(v) => match v.last_error {
            Some(e) if v.state != warden_agent::health::Freshness::Fresh => Err(e),
            _ => Ok(v.serial.unwrap_or_default()),
        },
        Err(e) => Err(e.to_string()),
    }
}

fn live_serial(id: &Path) -> Option<String> {
    std::fs::read_link(id.join("out/tls"))
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinked_or_foreign_directories_never_redirect_or_delete() {
    let lab = LabEnv::start(&["test"]).await;
    apply(&lab).await;
    let op = lab.client("test");
    write_kv(&op, "config", json!({"db_url": "postgres://db/billing"})).await;
    write_kv(&op, "stripe", json!({"api_key": "sk_test_not_a_real_key"})).await;
    let tmp = tempfile::tempdir().expect("tempdir");

    same_user_symlinks(&lab, tmp.path()).await;
    root_agent_in_a_service_users_directory(&lab, tmp.path()).await;
}

/// The agent and the one who plants the symlinks are the same user.
async fn same_user_symlinks(lab: &LabEnv, tmp: &Path) {
    let (id, config) = enroll(lab, &tmp.join("a"), |t| t);
    let agent = start_agent(&config, id.join("agent.log"));
    let stripe = id.join("out/secrets/stripe.json");
    wait_for("the first delivery", &agent, || {
        (stripe.is_file() && live_serial(&id).is_some() && id.join("state/control.sock").exists())
            .then_some(())
    })
    .await;

    // (1) out/secrets -> victim: the forced render refuses, naming the symlink.
    let victim_a = victim(&tmp.join("victim-a"));
    let before = snapshot(&victim_a);
    std::fs::rename(id.join("out/secrets"), id.join("out/secrets.real")).unwrap();
    symlink(&victim_a, id.join("out/secrets")).unwrap();
    let err = rotate(&id, "secret-stripe")
        .await
        .expect_err("a render through a symlinked directory must fail");
    assert!(err.contains("is a symbolic link"), "{err}");
    assert!(err.contains("out/secrets"), "names the component: {err}");
    assert_eq!(snapshot(&victim_a), before, "the victim changed");
    std::fs::remove_file(id.join("out/secrets")).unwrap();
    std::fs::rename(id.join("out/secrets.real"), id.join("out/secrets")).unwrap();
    rotate(&id, "secret-stripe")
        .await
        .expect("fixed: delivered again");

    // (2) out/tls.d -> victim: four forced renewals, none writes or deletes in the victim.
    let victim_b = victim(&tmp.join("victim-b"));
    let before = snapshot(&victim_b);
    std::fs::rename(id.join("out/tls.d"), id.join("out/tls.d.real")).unwrap();
    symlink(&victim_b, id.join("out/tls.d")).unwrap();
    for _ in 0..4 {
        let err = rotate(&id, "tls")
            .await
            .expect_err("renewal into a symlink");
        assert!(err.contains("tls.d is a symbolic link"), "{err}");
    }
    assert_eq!(snapshot(&victim_b), before, "the victim changed");
    std::fs::remove_file(id.join("out/tls.d")).unwrap();
    std::fs::rename(id.join("out/tls.d.real"), id.join("out/tls.d")).unwrap();

    // (3) Foreign directories inside the real tls.d survive pruning: a directory of notes,
    //     one named like a version, and a symlink named like a version.
    let versions = id.join("out/tls.d");
    std::fs::create_dir_all(versions.join("notes/deep")).unwrap();
    std::fs::write(versions.join("notes/deep/n.txt"), b"mine").unwrap();
    std::fs::create_dir(versions.join("deadbeef")).unwrap();
    std::fs::write(versions.join("deadbeef/key.pem"), b"mine too").unwrap();
    symlink(&victim_b, versions.join("0abc")).unwrap();
    let foreign = |v: &Path| {
        let mut m = snapshot(&v.join("notes"));
        m.extend(snapshot(&v.join("deadbeef")));
        m
    };
    let kept = foreign(&versions);
    let mut serials = Vec::new();
    for _ in 0..3 {
        serials.push(rotate(&id, "tls").await.expect("renewal in the real tls.d"));
    }
    assert_eq!(foreign(&versions), kept, "a foreign directory was touched");
    assert!(versions.join("0abc").is_symlink());
    assert_eq!(snapshot(&victim_b), before, "the victim changed");
    let mut left: Vec<String> = std::fs::read_dir(&versions)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let live = live_serial(&id).expect("live version");
    assert_eq!(
        left.len(),
        5,
        "live, previous and the three foreign: {left:?}"
    );
    assert!(left.contains(&live), "{left:?}");
    drop(agent);
}

/// The agent runs as root; `out/` belongs to the service user, who swaps `tls.d`.
async fn root_agent_in_a_service_users_directory(lab: &LabEnv, tmp: &Path) {
    assert!(
        is_root(),
        "these tests run as root (the lab's CI does); a root agent is the scenario"
    );
    let (id, config) = enroll(lab, &tmp.join("b"), |t| {
        // tls is the service user's; the secrets output has no owner.
        let at = t.find("name = \"tls\"\n").expect("the tls output");
        let end = at + "name = \"tls\"\n".len();
        format!("{}owner = \"nobody\"\n{}", &t[..end], &t[end..])
    });
    let out = id.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::chown(&out, Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
    let agent = start_agent(&config, id.join("agent.log"));
    wait_for("the certificate", &agent, || {
        (live_serial(&id).is_some() && id.join("state/control.sock").exists()).then_some(())
    })
    .await;
    let cert = std::fs::symlink_metadata(id.join("out/tls/cert.pem")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&cert), NOBODY);

    // An output without that owner may not write into the service user's directory.
    let err = rotate(&id, "secret-stripe")
        .await
        .expect_err("out/ belongs to someone else");
    assert!(err.contains("owned by uid 65534"), "{err}");
    assert!(!id.join("out/secrets").exists());

    // The service user's swap: `mv tls.d tls.d.old && ln -s <root-only dir> tls.d`.
    let root_only = victim(&tmp.join("root-only"));
    std::fs::set_permissions(&root_only, std::fs::Permissions::from_mode(0o700)).unwrap();
    let before = snapshot(&root_only);
    std::fs::rename(out.join("tls.d"), out.join("tls.d.old")).unwrap();
    symlink(&root_only, out.join("tls.d")).unwrap();
    std::os::unix::fs::lchown(out.join("tls.d"), Some(NOBODY), Some(NOBODY)).unwrap();
    for _ in 0..2 {
        let err = rotate(&id, "tls").await.expect_err("renewal into the swap");
        assert!(err.contains("tls.d is a symbolic link"), "{err}");
    }
    assert_eq!(
        snapshot(&root_only),
        before,
        "the root-only directory changed"
    );
    drop(agent);
}

/// Whether the test runs as root (`/proc/self` belongs to the process's effective uid).
fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}
