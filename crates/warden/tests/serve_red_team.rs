//! Red team of `warden serve` (issue 15): a real lab (`test`, HTTPS + mTLS) and real `warden
//! serve` processes, attacked as a careless operator and a flaky network would:
//!
//! * records under `warden/serve/` edited into values serve never writes: a lease term of
//!   u64::MAX (OpenBao keeps JSON numbers as float64, so it comes back as 2^64: refused as a
//!   record serve does not read, with the fix, and the fix works), a job record whose retry time
//!   is in the year 2100 (the job was parked silently until then; now it runs).
//! * a second process started with the same `--id`: it used to renew the first one's lease as
//!   its own, so two leaders ran jobs in one term. Now it follows and says why.
//! * OpenBao frozen (SIGSTOP) under a leader: the lease is reported `lost` (and the leader
//!   gauge drops) at the lease's local deadline, not when the client's 60 s timeout ends, and
//!   the API answers `504` in bounded time instead of closing the connection unanswered at
//!   30 s. After SIGCONT the replica leads again.

#![allow(clippy::print_stderr)] // the measured times go to the test log on purpose

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warden_bao::Idempotent;
use warden_serve::JobRecord;
use warden_testkit::LabEnv;
use warden_testkit::cli::{Cli, path_str};

const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

const SPEC: &str = r#"
version = 1

[environments.test]
domain        = "test.warden.internal"
runtime_owner = "warden-test"
app_root      = "/srv/warden/test"

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
description = "Signs issuer's session tokens <script>alert(1)</script>"
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
    err: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn start(spec: &str, lab: &str, id: &str, dir: &Path, name: &str, extra: &[&str]) -> Self {
        let log = dir.join(format!("serve-{name}.jsonl"));
        let err = dir.join(format!("serve-{name}.err"));
        let child = Command::new(WARDEN.bin())
            .args([
                "serve",
                "--spec",
                spec,
                "--lab",
                lab,
                "--env",
                "test",
                "--id",
                id,
                "--lease-ttl",
                "3s",
                "--tick",
                "1s",
                "-o",
                "json",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log file"))
            .stderr(std::fs::File::create(&err).expect("stderr file"))
            .spawn()
            .expect("start warden serve");
        Self { child, log, err }
    }

    fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn find(&self, what: &str, limit: Duration, f: impl Fn(&Value) -> bool) -> (usize, Value) {
        wait_for(what, limit, || {
            self.events().into_iter().enumerate().find(|(_, e)| f(e))
        })
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

/// Resumes a SIGSTOPped OpenBao node when dropped, so a failing assertion never leaves the
/// lab frozen.
struct Frozen(nix::unistd::Pid);

impl Frozen {
    fn freeze(pid: u32) -> Self {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP the node");
        Self(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
    }
}

fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `curl` of the API with the operator's certificate: status and body (`None`: no answer).
fn api_get(lab: &LabEnv, url: &str) -> (Option<u16>, String) {
    let l = lab.lab().layout().env("test");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "40", "--cacert"])
        .arg(l.ca_bundle())
        .arg("--cert")
        .arg(l.operator_cert())
        .arg("--key")
        .arg(l.operator_key())
        .args(["-w", "\n%{http_code}", url])
        .output()
        .expect("curl (install it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "000"));
    let code = code.parse().ok().filter(|c: &u16| *c != 0);
    (code, body.to_owned())
}

fn metrics(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", url])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_survives_edited_records_a_duplicate_id_and_a_frozen_openbao() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let lab = LabEnv::start(&["test"]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let spec_path = dir.path().join("warden.toml");
    std::fs::write(&spec_path, SPEC).expect("write spec");
    let (spec, lab_dir) = (path_str(&spec_path), path_str(lab.dir()));
    WARDEN.ok(&["apply", "--spec", spec, "--lab", lab_dir, "--env", "test"]);
    let op = lab.client("test");

    // ---- records edited into values serve never writes ---------------------------------
    op.write(
        "warden/data/serve/lease",
        &json!({ "data": {
            "holder": "ghost", "term": u64::MAX, "expires_at_ms": 0, "ttl_ms": 3000, "since_ms": 0,
        }}),
        Idempotent::Yes,
    )
    .await
    .expect("edit the lease");
    op.write(
        "warden/data/serve/jobs/posture",
        &json!({ "data": {
            "job": "posture", "failures": 7, "next_attempt_ms": 4_102_444_800_000_u64,
            "total_runs": 3, "runs": "",
        }}),
        Idempotent::Yes,
    )
    .await
    .expect("edit the posture job");

    let mut a = Serve::start(
        spec,
        lab_dir,
        "red-a",
        dir.path(),
        "a",
        &["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"],
    );
    let (_, err) = a.find("the edited lease reported", Duration::from_secs(60), |e| {
        e["event"] == "error"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("is not a record `warden serve` reads"))
    });
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("bao kv metadata delete"),
        "{err}"
    );
    assert!(a.alive(), "serve died: {}", a.stderr());
    assert!(!a.stderr().contains("panicked"), "{}", a.stderr());
    assert!(!a.events().iter().any(|e| e["event"] == "leader"));

    // The named fix works: delete the record, and serve takes term 1.
    op.delete("warden/metadata/serve/lease")
        .await
        .expect("delete the lease");
    a.find("red-a to lead", Duration::from_secs(60), |e| {
        e["event"] == "leader" && e["term"] == 1
    });
    // The edited retry time does not park the posture job until 2100.
    let rec = wait_for("the posture run", Duration::from_secs(60), || {
        let s = block_on(op.read("warden/data/serve/jobs/posture")).ok()?;
        let data = s.data?.get("data")?.clone();
        let rec: JobRecord = serde_json::from_value(data).expect("a job record");
        (!rec.runs().is_empty()).then_some(rec)
    });
    assert_eq!(rec.total_runs, 4, "{rec:?}");
    assert_eq!((rec.failures, rec.next_attempt_ms), (0, 0), "{rec:?}");
    assert!(a.alive(), "serve died: {}", a.stderr());
    assert!(!a.stderr().contains("panicked"), "{}", a.stderr());

    // ---- a second process with the same --id follows ---------------------------------
    let twin = Serve::start(spec, lab_dir, "red-a", dir.path(), "twin", &[]);
    let (_, e) = twin.find("the twin to see the clash", Duration::from_secs(30), |e| {
        e["event"] == "error"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("another process holds the lease as `red-a`"))
    });
    assert!(
        e["message"].as_str().unwrap().contains("its own --id"),
        "{e}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !twin.events().iter().any(|e| e["event"] == "leader"),
        "the twin led: {:?}",
        twin.events()
    );
    assert!(
        !a.events().iter().any(|e| e["event"] == "lost"),
        "the first lost its lease to the twin: {:?}",
        a.events()
    );
    drop(twin);

    // ---- OpenBao frozen under the leader --------------------------------------------------
    let listen = a.events().iter().find_map(|e| {
        (e["event"] == "api").then(|| e["listen"].as_str().expect("listen").to_owned())
    });
    let base = format!("https://{}", listen.expect("the API address"));
    let metrics_url = a
        .events()
        .iter()
        .find_map(|e| {
            (e["event"] == "metrics_listening")
                .then(|| format!("http://{}/metrics", e["addr"].as_str().expect("addr")))
        })
        .expect("the metrics address");
    assert!(metrics(&metrics_url).contains("warden_serve_leader{env=\"test\"} 1"));
    let (code, body) = api_get(&lab, &format!("{base}/v1/leader"));
    assert_eq!(code, Some(200), "{body}");

    let seen = a.events().len();
    let pid = lab
        .lab()
        .node_pid("test", 1)
        .expect("find the node")
        .expect("the node runs");
    let frozen = Frozen::freeze(pid);
    let t0 = Instant::now();
    let l = lab.lab().layout().env("test");
    let (ca, cert, key) = (l.ca_bundle(), l.operator_cert(), l.operator_key());
    let asks: Vec<_> = ["/v1/leader", "/dashboard"]
        .into_iter()
        .map(|route| {
            let url = format!("{base}{route}");
            let (ca, cert, key) = (ca.clone(), cert.clone(), key.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                let out = Command::new("curl")
                    .args(["-sS", "--max-time", "40", "--cacert"])
                    .arg(ca)
                    .arg("--cert")
                    .arg(cert)
                    .arg("--key")
                    .arg(key)
                    .args(["-w", "\n%{http_code}", &url])
                    .output()
                    .expect("curl");
                (route, started.elapsed(), out)
            })
        })
        .collect();
    let (i, lost) = a.find("the lease lost", Duration::from_secs(20), |e| {
        e["event"] == "lost"
    });
    let lost_after = t0.elapsed();
    assert!(i >= seen, "lost before the freeze: {lost}");
    eprintln!(
        "OpenBao frozen: `lost` reported {:.1} s later ({lost})",
        lost_after.as_secs_f64()
    );
    // The lease's local deadline is at most TTL - 1 s - TTL/10 (1.7 s) after the last
    // renewal began, and renewals come every second: `lost` comes at that deadline, not at
    // the 60 s request timeout (the slack is for a loaded CI machine).
    assert!(
        lost_after < Duration::from_secs(15),
        "lost only after {lost_after:?}"
    );
    assert!(
        metrics(&metrics_url).contains("warden_serve_leader{env=\"test\"} 0"),
        "{}",
        metrics(&metrics_url)
    );
    for ask in asks {
        let (route, took, out) = ask.join().expect("curl thread");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "000"));
        eprintln!(
            "{route} with OpenBao frozen: {code} after {:.1} s",
            took.as_secs_f64()
        );
        assert_eq!(code, "504", "{route}: {out:?}");
        let v: Value = serde_json::from_str(body).expect("a JSON error");
        assert!(
            v["error"].as_str().unwrap().contains("did not answer"),
            "{v}"
        );
        assert!(v["hint"].is_string(), "{v}");
        // The 10 s answer timeout plus a handshake on a loaded machine; far from curl's 40 s
        // and the 60 s request timeout.
        assert!(took < Duration::from_secs(25), "{route} took {took:?}");
    }

    // Thawed: the replica leads again (the same or the next term).
    let thawed = a.events().len();
    drop(frozen);
    let t1 = Instant::now();
    a.find("red-a to lead again", Duration::from_secs(30), |e| {
        e["event"] == "leader"
    });
    wait_for(
        "a leader event after the thaw",
        Duration::from_secs(30),
        || {
            a.events()[thawed..]
                .iter()
                .any(|e| e["event"] == "leader")
                .then_some(())
        },
    );
    eprintln!(
        "leading again {:.1} s after SIGCONT",
        t1.elapsed().as_secs_f64()
    );
    let (code, body) = api_get(&lab, &format!("{base}/v1/leader"));
    assert_eq!(code, Some(200), "{body}");
    assert!(a.alive(), "serve died: {}", a.stderr());

    // SIGTERM while OpenBao is frozen: serve stops in bounded time (it used to wait for each
    // pending request's 60 s timeout, past systemd's 30 s stop timeout).
    let frozen = Frozen::freeze(pid);
    std::thread::sleep(Duration::from_secs(2));
    let serve_pid = nix::unistd::Pid::from_raw(i32::try_from(a.child.id()).expect("pid"));
    nix::sys::signal::kill(serve_pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let t2 = Instant::now();
    let status = wait_for("serve to stop", Duration::from_secs(40), || {
        a.child.try_wait().expect("try_wait")
    });
    let stopped = t2.elapsed();
    drop(frozen);
    eprintln!(
        "SIGTERM with OpenBao frozen: stopped after {:.1} s ({status})",
        stopped.as_secs_f64()
    );
    assert!(status.success(), "{status}: {}", a.stderr());
    assert!(
        stopped < Duration::from_secs(25),
        "stopped after {stopped:?}"
    );
}

/// Runs one future to completion from the synchronous polling loop above.
fn block_on<F: Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}
