//! End-to-end: `warden lab up | status | down` against real OpenBao servers over HTTPS + mTLS.
//!
//! One lab per test, in its own temporary directory and on ports chosen at run time; the guard
//! stops its servers even when an assertion fails.

use std::path::{Path, PathBuf};
use std::process::Output;

use secrecy::ExposeSecret;
use serde_json::Value;
use warden_bao::{Client, ClientConfig};
use warden_testkit::LabGuard;
use warden_testkit::cli::{Cli, Invocation};

/// The binary under test.
const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

/// `warden ARGS DIR`.
fn warden(args: &[&str], dir: &Path) -> Invocation {
    WARDEN.invoke(args).arg(dir)
}

fn run_ok(args: &[&str], dir: &Path) -> Output {
    let out = warden(args, dir).output();
    assert!(
        out.status.success(),
        "warden {args:?} failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn status_json(dir: &Path) -> Vec<Value> {
    let out = warden(&["lab", "status", "--output", "json", "--dir"], dir).output();
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap_or_else(|e| panic!("status JSON: {e}: {}", String::from_utf8_lossy(&out.stdout)))
        .as_array()
        .expect("status is a JSON array")
        .clone()
}

fn env<'a>(statuses: &'a [Value], name: &str) -> &'a Value {
    statuses
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no env {name}"))
}

fn path_of(v: &Value, key: &str) -> PathBuf {
    PathBuf::from(
        v[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} missing in {v}")),
    )
}

/// A client for environment `target` presenting the operator certificate of `cert_from`.
fn client_with_cert(target: &Value, cert_from: &Value, token: bool) -> Client {
    let mut cfg = ClientConfig::new(target["address"].as_str().unwrap().parse().unwrap())
        .with_ca_file(path_of(target, "ca_bundle"))
        .unwrap()
        .with_client_cert_files(
            path_of(cert_from, "operator_cert"),
            path_of(cert_from, "operator_key"),
        )
        .unwrap();
    cfg.retry.startup_timeout = std::time::Duration::from_secs(2);
    let client = Client::new(cfg).unwrap();
    if token {
        // After bootstrap there is no root token: the operator certificate logs in.
        assert!(target["root_token_file"].is_null(), "{target}");
        client.login_with_cert_on_demand(
            target["operator_auth_mount"].as_str().unwrap(),
            target["operator_role"].as_str().unwrap(),
        );
    }
    client
}

fn client_without_cert(target: &Value) -> Client {
    let mut cfg = ClientConfig::new(target["address"].as_str().unwrap().parse().unwrap())
        .with_ca_file(path_of(target, "ca_bundle"))
        .unwrap();
    cfg.retry.startup_timeout = std::time::Duration::from_secs(2);
    Client::new(cfg).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_lifecycle_mtls_isolation_chain_and_restart() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let guard = LabGuard::new(WARDEN);
    let dir = guard.dir();

    // From an empty directory, `up` brings both environments up.
    let up = run_ok(&["lab", "up", "--output", "json", "--dir"], &dir);
    let up: Value = serde_json::from_slice(&up.stdout).expect("up JSON");
    assert_eq!(up["up"]["created"], true);
    assert_eq!(up["up"]["environments"].as_array().unwrap().len(), 2);
    for e in up["up"]["environments"].as_array().unwrap() {
        assert_eq!(
            e["root_revoked"], true,
            "bootstrap ends with the root token revoked: {e}"
        );
    }
    let stderr =
        String::from_utf8_lossy(&warden(&["lab", "status", "--dir"], &dir).output().stderr)
            .to_string();
    assert!(!stderr.contains("error"), "status complained: {stderr}");

    let statuses = status_json(&dir);
    for name in ["test", "prod"] {
        let s = env(&statuses, name);
        assert_eq!(s["running"], true, "{s}");
        assert_eq!(s["initialized"], true, "{s}");
        assert_eq!(s["sealed"], false, "{s}");
        assert_eq!(s["chain_valid"], true, "{s}");
        assert!(s["version"].as_str().unwrap().contains("2.7.2"), "{s}");
    }
    let test = env(&statuses, "test").clone();
    let prod = env(&statuses, "prod").clone();
    assert_ne!(test["address"], prod["address"]);

    // Health with the operator certificate: initialised and unsealed.
    for e in [&test, &prod] {
        let h = client_with_cert(e, e, false)
            .health()
            .await
            .expect("health with operator cert");
        assert!(h.initialized && !h.sealed, "{h:?}");
    }

    // No client certificate: refused at the TLS layer, by both servers.
    for e in [&test, &prod] {
        let err = client_without_cert(e)
            .health()
            .await
            .expect_err("no client cert must be refused");
        assert!(
            matches!(err, warden_bao::Error::Tls { .. }),
            "expected a TLS refusal, got {err:?}"
        );
    }

    // Each environment refuses the other's operator certificate.
    let err = client_with_cert(&prod, &test, false)
        .health()
        .await
        .expect_err("test cert on prod");
    assert!(
        matches!(err, warden_bao::Error::Tls { .. }),
        "test cert on prod: {err:?}"
    );
    let err = client_with_cert(&test, &prod, false)
        .health()
        .await
        .expect_err("prod cert on test");
    assert!(
        matches!(err, warden_bao::Error::Tls { .. }),
        "prod cert on test: {err:?}"
    );

    // The file audit device declared in the server config is recording requests.
    let audit = dir.join("envs/test/bao/audit.log");
    assert!(
        std::fs::metadata(&audit)
            .map(|m| m.len() > 0)
            .unwrap_or(false),
        "audit log is empty"
    );

    // Each environment's intermediate verifies against the offline root; the intermediate alone
    // is reported as missing its root.
    let root = dir.join("ca/root.crt");
    for e in [&test, &prod] {
        let client = client_with_cert(e, e, true);
        let chain = client.pki_ca_chain("pki_int").await.expect("ca_chain");
        assert_eq!(
            chain.matches("BEGIN CERTIFICATE").count(),
            2,
            "full chain expected:\n{chain}"
        );
        let work = guard.temp_dir();
        let full = work.join(format!("{}-chain.pem", e["name"].as_str().unwrap()));
        std::fs::write(&full, &chain).unwrap();
        let ok = warden(&["ca", "verify"], &full)
            .arg("--root")
            .arg(&root)
            .output();
        assert!(
            ok.status.success(),
            "verify full chain: {}",
            String::from_utf8_lossy(&ok.stdout)
        );

        let end =
            chain.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----".len();
        let only = work.join(format!("{}-intermediate.pem", e["name"].as_str().unwrap()));
        std::fs::write(&only, format!("{}\n", &chain[..end])).unwrap();
        let bad = warden(&["ca", "verify"], &only).output();
        assert_eq!(
            bad.status.code(),
            Some(3),
            "intermediate-only must fail verification"
        );
        let text = String::from_utf8_lossy(&bad.stdout).to_string()
            + &String::from_utf8_lossy(&bad.stderr);
        assert!(
            text.contains("root is missing"),
            "expected the missing root to be named:\n{text}"
        );
    }

    // Write something, take the lab down, bring it back: same data, unsealed. (Into the KV v1
    // mount the applied example spec has: the operator may not mount engines of its own.)
    let client = client_with_cert(&test, &test, true);
    client
        .write(
            "kv/lab-check/marker",
            &serde_json::json!({ "value": "survives-restart" }),
            warden_bao::Idempotent::Yes,
        )
        .await
        .expect("write marker");

    let down: Value =
        serde_json::from_slice(&run_ok(&["lab", "down", "--output", "json", "--dir"], &dir).stdout)
            .unwrap();
    // Both environments, and the lab's PostgreSQL the example's database runs on.
    assert_eq!(
        down["stopped"],
        serde_json::json!(["test", "prod", "postgres"]),
        "{down}"
    );
    let st = status_json(&dir);
    assert!(
        st.iter().all(|s| s["running"] == false),
        "after down: {st:?}"
    );
    assert!(
        dir.join("envs/test/bao/data").exists(),
        "down must keep data"
    );

    let again: Value =
        serde_json::from_slice(&run_ok(&["lab", "up", "--output", "json", "--dir"], &dir).stdout)
            .unwrap();
    assert_eq!(again["up"]["created"], false);
    for e in again["up"]["environments"].as_array().unwrap() {
        assert_eq!(e["started"], true, "{e}");
        assert_eq!(e["initialized"], false, "must not re-initialise: {e}");
        assert_eq!(e["unsealed"], true, "{e}");
        assert_eq!(e["intermediate_created"], false, "{e}");
    }
    let st = status_json(&dir);
    let test = env(&st, "test").clone();
    assert_eq!(test["sealed"], false);
    assert_eq!(
        test["address"],
        env(&statuses, "test")["address"],
        "same address after restart"
    );
    let marker = client_with_cert(&test, &test, true)
        .read("kv/lab-check/marker")
        .await
        .expect("read marker");
    assert_eq!(
        marker.data.expect("marker data")["value"],
        "survives-restart"
    );

    // A second `up` on a healthy lab changes nothing.
    let noop: Value =
        serde_json::from_slice(&run_ok(&["lab", "up", "--output", "json", "--dir"], &dir).stdout)
            .unwrap();
    for e in noop["up"]["environments"].as_array().unwrap() {
        for k in [
            "tls_created",
            "started",
            "initialized",
            "unsealed",
            "intermediate_created",
            "restarted",
            "root_revoked",
        ] {
            assert_eq!(e[k], false, "{k} on a healthy lab: {e}");
        }
    }

    // Purge removes everything.
    run_ok(&["lab", "down", "--purge", "--dir"], &dir);
    assert!(!dir.exists(), "purge must remove the lab directory");
}

#[test]
fn custody_files_are_owner_only_and_secrets_stay_out_of_output() {
    use std::os::unix::fs::PermissionsExt;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let guard = LabGuard::new(WARDEN);
    let dir = guard.dir();
    // Regression: with a relative --dir (the default `warden-lab` is relative) the servers, which
    // run in their own working directories, could not find their config. The lab must hand
    // them absolute paths.
    let up = warden(
        &[
            "lab",
            "up",
            "--env",
            "test",
            "--shares",
            "5",
            "--threshold",
            "3",
            "--dir",
        ],
        Path::new("lab"),
    )
    .current_dir(guard.temp_dir())
    .output();
    assert!(
        up.status.success(),
        "lab up with a relative --dir failed:\n{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let printed =
        String::from_utf8_lossy(&up.stdout).to_string() + &String::from_utf8_lossy(&up.stderr);
    assert!(
        printed.contains("LAB ONLY"),
        "the custody notice must be loud:\n{printed}"
    );

    // Bootstrap ended with the root token revoked and its file (clear or sealed) gone.
    for f in [
        "envs/test/custody/root-token",
        "envs/test/custody/shares/root-token.test.age",
    ] {
        assert!(
            !dir.join(f).exists(),
            "the root token must not outlive bootstrap: {f}"
        );
    }
    assert!(
        printed.contains("test: custody: ceremony with lab-generated custodians"),
        "lab up says which custody mode is in use:\n{printed}"
    );
    // The real ceremony ran: 5 lab custodians, threshold 3, a ledger; every share opens with its
    // custodian's identity only, in memory here, so the scan below knows the bytes.
    let layout = warden_lab::LabLayout::new(&dir).env("test");
    let ledger: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("state/custody/test/ledger.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(ledger["entries"].as_array().unwrap().len(), 5);
    assert_eq!(ledger["threshold"], 3);
    assert!(
        warden_lab::bootstrap_root_token(&layout).unwrap().is_none(),
        "no root token to open after bootstrap"
    );
    let mut shares = Vec::new();
    for e in ledger["entries"].as_array().unwrap() {
        let c = e["custodian"].as_str().unwrap();
        let id = warden_custody::IdentityFile::read(
            &warden_lab::custodians_dir(&layout).join(format!("{c}.age-identity")),
        )
        .unwrap();
        let share = warden_custody::envelope::open_share(
            &warden_lab::shares_dir(&layout).join(e["file"].as_str().unwrap()),
            &id,
        )
        .unwrap();
        shares.push(share.secret().expose_secret().to_owned());
    }
    let status = warden(&["lab", "status", "--output", "json", "--dir"], &dir).output();
    let everything = [printed, String::from_utf8_lossy(&status.stdout).to_string()].concat();
    for k in &shares {
        assert!(
            !everything.contains(k.as_str()),
            "unseal share leaked into output"
        );
    }
    // Nor on disk in clear: not in any file of the lab.
    let mut files = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path())
            } else {
                files.push(e.path())
            }
        }
    }
    for f in &files {
        let bytes = std::fs::read(f).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        for k in &shares {
            assert!(
                !text.contains(k.as_str()),
                "a share is in clear in {}",
                f.display()
            );
        }
    }
    for f in [
        "envs/test/custody/custodians/lab-custodian-1.age-identity",
        "envs/test/custody/shares/lab-custodian-1.test.share.age",
        "state/custody/test/ledger.json",
        "custody/ca-passphrase",
        "ca/root.key.p8",
        "envs/test/tls/server.key",
        "envs/test/tls/listener-ca.key",
        "envs/test/operator/operator.key",
    ] {
        let mode = std::fs::metadata(dir.join(f))
            .unwrap_or_else(|e| panic!("{f}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{f} is readable by others: {mode:o}");
    }
    // Nothing secret sits in the servers' command lines.
    let pid: u32 = std::fs::read_to_string(dir.join("envs/test/bao/server.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline);
    for k in &shares {
        assert!(!cmdline.contains(k.as_str()));
    }
}

#[test]
fn bad_options_are_refused_before_anything_is_created() {
    let guard = LabGuard::new(WARDEN);
    let dir = guard.dir();
    let out = warden(
        &["lab", "up", "--shares", "2", "--threshold", "3", "--dir"],
        &dir,
    )
    .output();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("threshold 3"), "{err}");
    assert!(!dir.exists(), "nothing may be created for a refused lab");

    let out = warden(&["lab", "status", "--dir"], &dir).output();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("warden lab up"),
        "status on no lab gives a hint"
    );

    // A lab directory another user can write to (made beforehand in a shared place): its
    // servers' configuration and custody would be theirs to swap. Refused, left as it was.
    {
        use std::os::unix::fs::PermissionsExt as _;
        let open = guard.temp_dir().join("open-lab");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let out = warden(&["lab", "up", "--env", "test", "--dir"], &open).output();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("writable by other users"), "{err}");
        assert_eq!(std::fs::read_dir(&open).unwrap().count(), 0);
        let mode = std::fs::metadata(&open).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o777, "the refused lab's directory keeps its mode");
    }

    // Issue 17: as root, the lab's PostgreSQL runs as `nobody`; a lab under a directory
    // nobody may search is refused by name before any server starts.
    if nix::unistd::Uid::effective().is_root() {
        use std::os::unix::fs::PermissionsExt as _;
        let closed = guard.temp_dir().join("closed");
        std::fs::create_dir(&closed).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        let dir = closed.join("lab");
        let out = warden(&["lab", "up", "--env", "test", "--dir"], &dir).output();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("cannot traverse") && err.contains(&closed.display().to_string()),
            "{err}"
        );
        assert!(!dir.exists(), "nothing may be created for a refused lab");
    }
}
