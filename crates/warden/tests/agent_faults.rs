//! Certificate outputs under faults, through the real agent against a real lab (HTTPS + mTLS
//! OpenBao, `warden apply` of the example spec, `warden identity enroll billing`). The agent
//! runs in process so its clock can be injected and its status read directly; `/health` is
//! served by the real health server over TCP.
//!
//! One lab, in phases:
//!
//! 1. drift: the live `out/tls` symlink removed, and `key.pem` widened to 0644, while running —
//!    both repaired at the next poll from the delivered version (same serial, nothing issued);
//!    `key.pem` widened while stopped — repaired at the next start;
//! 2. disk full (a 1 MiB tmpfs mounted over `out/`, then filled): status `stale` naming the
//!    cause, `/health` 200, and exactly one certificate issued for every delivery retry; once
//!    space is back, that certificate is the one delivered;
//! 3. a wrong trust anchor (`trust/ca.pem` holding the API's listener CA only, so the API
//!    works but issued chains do not verify): `stale`, the cause named, one certificate issued;
//! 4. this host's clock 100 days ahead, then 1 day behind: the skew is named in the status and
//!    measured, and nothing is issued — neither leaves nor identity certificates.
//!
//! Issuances are counted from OpenBao's audit log (responses to `pki_int/sign/<role>`), not
//! from anything the agent says about itself.

#![allow(clippy::print_stderr)] // phase notes go to the test log on purpose

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use warden_agent::control::ControlServer;
use warden_agent::health::HealthServer;
use warden_agent::schedule::Clock;
use warden_agent::{Agent, AgentHandle, Config, Health, OutputStatus};
use warden_enroll::AgentConfig;
use warden_testkit::cli::{Cli, path_str};
use warden_testkit::files::mode;
use warden_testkit::{EXAMPLE_SPEC as SPEC, LabEnv};

/// The binary under test.
const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

// ---- helpers ------------------------------------------------------------------------------

fn serial_of(dir: &Path) -> Option<String> {
    let pem = std::fs::read_to_string(dir.join("cert.pem")).ok()?;
    Some(warden_pki::parse_pem_bundle(&pem).ok()?[0].serial.clone())
}

/// This host's clock, shifted: what a skewed host looks like to the agent.
#[derive(Debug)]
struct Shifted(time::Duration);

impl Clock for Shifted {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + self.0
    }
}

/// An in-process agent with its `/health` served on loopback; stopped when dropped.
struct Running {
    handle: AgentHandle,
    task: Option<tokio::task::JoinHandle<()>>,
    health: HealthServer,
    /// The control socket `warden agent status` asks (in a directory of the test's own).
    socket: PathBuf,
    _control: ControlServer,
    _control_dir: tempfile::TempDir,
}

impl Running {
    async fn start(config: &Path, shift: time::Duration) -> Self {
        let cfg = Config::load(config).unwrap_or_else(|e| panic!("{e}"));
        let agent = Agent::with_clock(cfg, Arc::new(Shifted(shift))).expect("agent");
        let handle = agent.handle();
        let health = HealthServer::start("127.0.0.1:0".parse().unwrap(), None, handle.clone())
            .await
            .expect("health server");
        let control_dir = tempfile::tempdir().expect("tempdir");
        let socket = control_dir.path().join("control.sock");
        let control = ControlServer::start(&socket, handle.clone())
            .await
            .expect("control socket");
        let task = tokio::spawn(async move {
            agent.run().await.expect("agent run");
        });
        Self {
            handle,
            task: Some(task),
            health,
            socket,
            _control: control,
            _control_dir: control_dir,
        }
    }

    fn tls(&self) -> OutputStatus {
        self.handle.outputs().remove(0)
    }

    /// `warden agent status --socket …`: its exit code.
    fn status_code(&self) -> Option<i32> {
        WARDEN
            .run(&["agent", "status", "--socket", path_str(&self.socket)])
            .status
            .code()
    }

    fn health_status(&self) -> (u16, String) {
        warden_testkit::http::get_plain(self.health.addr(), "/health")
    }

    async fn stop(mut self) {
        self.handle.shutdown();
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .expect("the agent stops")
                .expect("agent task");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `limit`.
async fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Certificates OpenBao signed for `role`, from its audit log.
fn issued(audit: &Path, role: &str) -> usize {
    let needle = format!("\"path\":\"pki_int/sign/{role}\"");
    std::fs::read_to_string(audit)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.contains("\"type\":\"response\"")
                && l.contains(&needle)
                && l.contains("\"serial_number\"")
        })
        .count()
}

/// A small tmpfs, unmounted when dropped (also on panic).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).expect("mount point");
        let st = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(
            st.success(),
            "mount tmpfs on {} (the test needs root)",
            at.display()
        );
        Self(at.to_path_buf())
    }

    /// Writes a filler file until the filesystem is full.
    fn fill(&self) -> PathBuf {
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

// ---- the test -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_outputs_survive_drift_full_disks_wrong_anchors_and_skewed_clocks() {
    let t0 = Instant::now();
    let lab = LabEnv::start(&["test"]).await;
    let lab_dir = path_str(lab.dir());
    WARDEN.ok(&["apply", "--spec", SPEC, "--lab", lab_dir, "--env", "test"]);
    let root = tempfile::tempdir().expect("tempdir");
    WARDEN.ok(&[
        "identity",
        "enroll",
        "billing",
        "--spec",
        SPEC,
        "--lab",
        lab_dir,
        "--env",
        "test",
        "--root-dir",
        path_str(root.path()),
    ]);
    let id = root.path().join("test").join("billing");
    // The lab's own file audit device (OpenBao enables audit devices from its config only).
    let audit = lab.lab().layout().env("test").audit_log();
    let path = id.join("agent.toml");
    let mut cfg = AgentConfig::load(&path).expect("enrolled agent.toml");
    cfg.renewal.poll = "1s".to_owned();
    cfg.health = None;
    cfg.control = None;
    cfg.outputs.truncate(1);
    assert_eq!(cfg.outputs[0].name, "tls");
    cfg.outputs[0].reload = None;
    std::fs::write(&path, cfg.to_toml(&path).expect("toml")).expect("agent.toml");
    let config = path;
    let tls = id.join("out/tls");
    let key = tls.join("key.pem");
    let leaves = || issued(&audit, "billing");
    let identities = || issued(&audit, "billing-identity");
    eprintln!("[0] lab + apply + enroll: {:?}", t0.elapsed());

    // 1. Drift, while running and across a restart.
    let agent = Running::start(&config, time::Duration::ZERO).await;
    let first = wait_for(Duration::from_secs(60), "the first certificate", || {
        (agent.tls().health == Health::Fresh)
            .then(|| serial_of(&tls))
            .flatten()
    })
    .await;
    let n = leaves();
    assert_eq!(n, 1, "one certificate for the first delivery");
    assert_eq!(agent.status_code(), Some(0), "agent status: all fresh");
    std::fs::remove_file(&tls).expect("remove the out/tls symlink");
    wait_for(Duration::from_secs(30), "out/tls put back", || {
        serial_of(&tls).filter(|s| *s == first)
    })
    .await;
    assert!(
        std::fs::symlink_metadata(&tls)
            .unwrap()
            .file_type()
            .is_symlink(),
        "out/tls is the agent's symlink again"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    // The mode is seen on disk a moment before the agent counts the repair: wait for both.
    wait_for(Duration::from_secs(30), "key.pem back to 0600", || {
        (mode(&key) == 0o600 && agent.tls().repairs >= 2).then_some(())
    })
    .await;
    let st = agent.tls();
    assert_eq!(st.health, Health::Fresh, "{st:?}");
    assert!(st.repairs >= 2, "{st:?}");
    assert_eq!(serial_of(&tls).as_deref(), Some(first.as_str()));
    let (code, body) = agent.health_status();
    assert_eq!(code, 200, "{body}");
    agent.stop().await;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let agent = Running::start(&config, time::Duration::ZERO).await;
    wait_for(Duration::from_secs(30), "key.pem repaired at start", || {
        (mode(&key) == 0o600).then_some(())
    })
    .await;
    assert_eq!(serial_of(&tls).as_deref(), Some(first.as_str()));
    assert_eq!(leaves(), n, "repairs issue nothing");
    agent.stop().await;
    eprintln!("[1] drift repaired: {:?}", t0.elapsed());

    // 2. Disk full: a tmpfs over out/, filled once the agent delivered into it.
    let out = Tmpfs::mount(&id.join("out"), "1m");
    let agent = Running::start(&config, time::Duration::ZERO).await;
    wait_for(
        Duration::from_secs(30),
        "a certificate on the tmpfs",
        || {
            (agent.tls().health == Health::Fresh)
                .then(|| serial_of(&tls))
                .flatten()
        },
    )
    .await;
    let filler = out.fill();
    let before = leaves();
    agent.handle.rotate_now("tls").expect("rotate");
    let st = wait_for(Duration::from_secs(40), "four failed deliveries", || {
        Some(agent.tls()).filter(|o| o.failures >= 4)
    })
    .await;
    assert_eq!(st.health, Health::Stale, "{st:?}");
    let why = st.last_error.clone().unwrap_or_default();
    assert!(why.contains("No space left"), "{why}");
    let (code, body) = agent.health_status();
    assert_eq!(code, 200, "degraded, not unavailable: {body}");
    assert!(body.contains("\"degraded\""), "{body}");
    assert_eq!(
        agent.status_code(),
        Some(5),
        "agent status: degraded, not failed"
    );
    assert_eq!(
        leaves(),
        before + 1,
        "one certificate for {} delivery attempts",
        st.failures
    );
    std::fs::remove_file(filler).expect("free the space");
    let st = wait_for(
        Duration::from_secs(40),
        "delivered once space is back",
        || Some(agent.tls()).filter(|o| o.health == Health::Fresh && o.failures == 0),
    )
    .await;
    assert_eq!(
        leaves(),
        before + 1,
        "the held certificate is the one delivered"
    );
    assert_eq!(serial_of(&tls), st.serial);
    agent.stop().await;
    drop(out);
    eprintln!("[2] disk full: {:?}", t0.elapsed());

    // 3. A wrong trust anchor: the API's listener CA only.
    let anchor = id.join("trust/ca.pem");
    let good_anchor = std::fs::read(&anchor).expect("trust anchor");
    let listener_ca = lab.lab().layout().env("test").listener_ca_cert();
    std::fs::copy(&listener_ca, &anchor).expect("wrong anchor");
    let before = leaves();
    let agent = Running::start(&config, time::Duration::ZERO).await;
    let st = wait_for(Duration::from_secs(40), "four refused deliveries", || {
        Some(agent.tls()).filter(|o| o.failures >= 4)
    })
    .await;
    assert_eq!(st.health, Health::Stale, "{st:?}");
    let why = st.last_error.clone().unwrap_or_default();
    assert!(why.contains("trust anchor"), "{why}");
    let (code, body) = agent.health_status();
    assert_eq!(code, 200, "{body}");
    assert_eq!(leaves(), before + 1, "one certificate for every refusal");
    agent.stop().await;
    std::fs::write(&anchor, &good_anchor).expect("restore the anchor");
    eprintln!("[3] wrong anchor: {:?}", t0.elapsed());

    // 4. Skewed clocks: named, measured, and nothing issued.
    for (shift, words) in [
        (time::Duration::days(100), "100 days ahead of the server"),
        (-time::Duration::days(1), "24 h behind the server"),
    ] {
        let (l, i) = (leaves(), identities());
        let agent = Running::start(&config, shift).await;
        let st = wait_for(Duration::from_secs(40), "the skew named", || {
            Some(agent.tls()).filter(|o| {
                o.failures >= 2
                    && o.last_error
                        .as_deref()
                        .is_some_and(|e| e.contains("clock skew"))
            })
        })
        .await;
        let why = st.last_error.clone().unwrap_or_default();
        assert!(why.contains(words), "{why}");
        assert_eq!(st.health, Health::Stale, "{st:?}");
        let skew = agent.handle.status().clock_skew_seconds.expect("measured");
        assert!(
            (skew - shift.whole_seconds()).abs() <= 5,
            "{skew} s measured for {shift}"
        );
        if shift.is_positive() {
            // The identity looks past due on this clock: its renewal is refused by name too.
            wait_for(Duration::from_secs(20), "the identity's skew named", || {
                agent
                    .handle
                    .status()
                    .auth
                    .identity_error
                    .filter(|e| e.contains("clock skew"))
            })
            .await;
        }
        let (code, body) = agent.health_status();
        assert_eq!(code, 200, "{body}");
        assert_eq!(
            (leaves(), identities()),
            (l, i),
            "nothing issued while skewed"
        );
        agent.stop().await;
    }
    eprintln!("[4] skewed clocks: {:?}", t0.elapsed());
}
