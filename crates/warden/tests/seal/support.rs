//! Helpers the seal tests share: the CLI, lab up/status, stopping our own servers by PID file.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;
use warden_bao::{Client, ClientConfig};
use warden_testkit::cli::{Cli, Invocation};

pub(crate) const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

/// How many KV secrets the migration test writes (two versions each).
pub(crate) const SECRETS: usize = 300;

pub(crate) fn warden(args: &[&str]) -> Invocation {
    WARDEN.invoke(args)
}

pub(crate) fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub(crate) fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "JSON: {e}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

pub(crate) fn lab_up(dir: &Path, extra: &[&str]) -> Value {
    let mut inv = warden(&["lab", "up", "--env", "test", "--no-spec", "--no-agents"]);
    for a in extra {
        inv = inv.arg(a);
    }
    json(&ok(
        inv.arg("--output")
            .arg("json")
            .arg("--dir")
            .arg(dir)
            .output(),
        "lab up",
    ))
}

pub(crate) fn status(dir: &Path) -> Value {
    let out = warden(&["lab", "status", "--output", "json", "--dir"])
        .arg(dir)
        .output();
    json(&out)[0].clone()
}

pub(crate) fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(crate) fn pid(file: PathBuf) -> i32 {
    read(file).trim().parse().expect("pid")
}

/// SIGTERM and wait until the process is gone (our own servers, by their PID files).
pub(crate) fn stop(pid_file: PathBuf) {
    use nix::sys::signal::{Signal, kill};
    let pid = nix::unistd::Pid::from_raw(pid(pid_file));
    kill(pid, Signal::SIGTERM).expect("signal");
    let deadline = Instant::now() + Duration::from_secs(60);
    while kill(pid, None).is_ok() && Instant::now() < deadline {
        let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(kill(pid, None).is_err(), "pid {pid} still running");
}

/// A client for the seal-keeper presenting `test`'s seal certificate, with `token`.
pub(crate) fn keeper_client(dir: &Path, address: &str, token: &str) -> Client {
    let seal = dir.join("envs/test/seal");
    let cfg = ClientConfig::new(address.parse().unwrap())
        .with_ca_file(seal.join("keeper-ca.pem"))
        .unwrap()
        .with_client_cert_files(
            seal.join("keeper-client.crt"),
            seal.join("keeper-client.key"),
        )
        .unwrap()
        .with_token(SecretString::from(token.to_owned()));
    Client::new(cfg).unwrap()
}

/// Every node's PID file of `test` in a lab of `n` nodes (node 1 keeps `bao/`).
pub(crate) fn node_pid_files(dir: &Path, n: u8) -> Vec<PathBuf> {
    (1..=n)
        .map(|i| {
            let sub = if i == 1 {
                "bao".to_owned()
            } else {
                format!("bao-{i}")
            };
            dir.join("envs/test").join(sub).join("server.pid")
        })
        .collect()
}

pub(crate) fn roles(st: &Value) -> Vec<String> {
    st["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["role"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// Every share of `test`'s custody ledger (recovery keys under an auto-seal), opened in memory
/// by the lab custodians through the ceremony, hex as OpenBao hands them out. Nothing of it is
/// written anywhere.
pub(crate) fn custody_keys(dir: &Path) -> Vec<String> {
    let layout = warden_lab::LabLayout::new(dir).env("test");
    let ledger = warden_custody::Ledger::load(&warden_lab::custody_state_dir(&layout), "test")
        .expect("the custody ledger");
    ledger
        .entries
        .iter()
        .map(|e| {
            let id = warden_custody::IdentityFile::read(
                &warden_lab::custodians_dir(&layout).join(format!("{}.age-identity", e.custodian)),
            )
            .expect("lab custodian identity");
            let share = warden_custody::unseal::open_checked(
                &ledger,
                &warden_lab::shares_dir(&layout).join(&e.file),
                &id,
            )
            .expect("the share opens for its custodian");
            share.secret().expose_secret().to_owned()
        })
        .collect()
}

/// What `test`'s custody ledger says its shares are (`unseal`, `recovery`).
pub(crate) fn ledger_kind(dir: &Path) -> String {
    let layout = warden_lab::LabLayout::new(dir).env("test");
    warden_lab::custody_kind(&layout)
        .expect("ledger readable")
        .expect("a ledger")
        .to_string()
}

/// No clear custody file for `test`: no recovery keys, no unseal shares, no root token (the
/// ceremony's encrypted root token is gone too once bootstrap revoked it); and none of `keys`
/// (hex or base64) in any file of the lab.
pub(crate) fn assert_no_clear_custody(dir: &Path, keys: &[String]) {
    use base64::Engine as _;
    let custody = dir.join("envs/test/custody");
    for f in ["recovery-keys.json", "unseal-keys.json", "root-token"] {
        assert!(!custody.join(f).exists(), "clear custody file {f} exists");
    }
    assert!(
        !custody.join("shares/root-token.test.age").exists(),
        "bootstrap revoked the root token and deleted its file"
    );
    let mut files = Vec::new();
    files_under(dir, &mut files);
    for key in keys {
        let bytes = hex::decode(key).expect("hex key");
        let forms = [
            key.clone(),
            base64::engine::general_purpose::STANDARD.encode(&bytes),
        ];
        for f in &files {
            let Ok(content) = std::fs::read(f) else {
                continue;
            };
            for form in &forms {
                assert!(
                    !content.windows(form.len()).any(|w| w == form.as_bytes()),
                    "a recovery key is in clear in {}",
                    f.display()
                );
            }
        }
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => files_under(&e.path(), out),
            Ok(t) if t.is_file() => out.push(e.path()),
            _ => {}
        }
    }
}
