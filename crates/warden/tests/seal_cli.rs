//! End-to-end: auto-unseal (issue 12, item 3) against real OpenBao servers.
//!
//! - A transit-sealed environment unseals itself after all its nodes stop and start, with no
//!   unseal share anywhere in the lab.
//! - With the seal-keeper down, its nodes stay sealed (OpenBao refuses to start without its
//!   seal) and `lab status` says why.
//! - The seal token can use its own key and nothing else.
//! - Shamir → transit migration on a live environment keeps every secret (a few hundred KV
//!   entries with two versions each, counted and compared), and refusals change nothing.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::Value;
use warden_bao::{Client, ClientConfig, KvData, MountOptions, SecretValue};
use warden_testkit::LabGuard;
use warden_testkit::cli::{Cli, Invocation};

const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

/// How many KV secrets the migration test writes (two versions each).
const SECRETS: usize = 300;

fn warden(args: &[&str]) -> Invocation {
    WARDEN.invoke(args)
}

fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "JSON: {e}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn lab_up(dir: &Path, extra: &[&str]) -> Value {
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

fn status(dir: &Path) -> Value {
    let out = warden(&["lab", "status", "--output", "json", "--dir"])
        .arg(dir)
        .output();
    json(&out)[0].clone()
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn pid(file: PathBuf) -> i32 {
    read(file).trim().parse().expect("pid")
}

/// SIGTERM and wait until the process is gone (our own servers, by their PID files).
fn stop(pid_file: PathBuf) {
    use nix::sys::signal::{Signal, kill};
    let pid = nix::unistd::Pid::from_raw(pid(pid_file));
    kill(pid, Signal::SIGTERM).expect("signal");
    let deadline = Instant::now() + Duration::from_secs(20);
    while kill(pid, None).is_ok() && Instant::now() < deadline {
        let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(kill(pid, None).is_err(), "pid {pid} still running");
}

/// A client for the seal-keeper presenting `test`'s seal certificate, with `token`.
fn keeper_client(dir: &Path, address: &str, token: &str) -> Client {
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

#[tokio::test(flavor = "multi_thread")]
async fn transit_seal_unseals_itself_and_stays_sealed_without_its_keeper() {
    let guard = LabGuard::new(WARDEN);
    let dir = guard.dir();
    let up = lab_up(&dir, &["--seal", "transit"]);
    let keeper = up["up"]["seal_keeper"]
        .as_str()
        .expect("seal-keeper address")
        .to_owned();
    assert!(
        up["up"]["environments"][0]["seal"]
            .as_str()
            .unwrap()
            .starts_with(&format!("transit (seal-keeper {keeper}"))
    );
    let st = status(&dir);
    assert_eq!(
        (st["sealed"].clone(), st["seal_problem"].clone()),
        (false.into(), Value::Null)
    );

    // No unseal share exists; recovery keys do (LAB ONLY custody).
    let env_dir = dir.join("envs/test");
    assert!(!env_dir.join("custody/unseal-keys.json").exists());
    assert!(env_dir.join("custody/recovery-keys.json").exists());

    // The seal token: owner-only, nothing but the token, and named (not written) in the config.
    let token_file = env_dir.join("seal/keeper-token");
    let token = read(token_file.clone());
    assert!(
        token.starts_with("s.") && !token.contains('\n'),
        "token file holds the token only"
    );
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let config = read(env_dir.join("bao/server.hcl"));
    assert!(
        config.contains(&format!("file://{}", token_file.display())),
        "{config}"
    );
    for f in ["bao/server.hcl", "bao/server.log"] {
        assert!(
            !read(env_dir.join(f)).contains(&token),
            "token leaked into {f}"
        );
    }

    // The seal token can use its own key, and nothing else.
    let k = keeper_client(&dir, &keeper, &token);
    let ct = k
        .transit("transit")
        .encrypt("seal-test", b"probe")
        .await
        .expect("encrypt");
    k.transit("transit")
        .decrypt("seal-test", &ct.ciphertext)
        .await
        .expect("decrypt");
    let root = read(dir.join("seal-keeper/custody/root-token"));
    let keeper_root = keeper_client(&dir, &keeper, root.trim());
    keeper_root
        .transit("transit")
        .create_key("other", "aes256-gcm96")
        .await
        .unwrap();
    let denied = k
        .transit("transit")
        .encrypt("other", b"probe")
        .await
        .unwrap_err();
    assert!(denied.is_permission_denied(), "{denied}");
    for path in [
        "transit/keys/seal-test",
        "sys/mounts",
        "auth/token/lookup-self",
    ] {
        let e = k.read(path).await.unwrap_err();
        assert!(e.is_permission_denied(), "{path}: {e}");
    }
    assert!(
        k.list("transit/keys")
            .await
            .unwrap_err()
            .is_permission_denied()
    );

    // Every node (and the seal-keeper) stops, then starts: unsealed with no person involved.
    ok(
        warden(&["lab", "down", "--dir"]).arg(&dir).output(),
        "lab down",
    );
    let up = lab_up(&dir, &[]);
    assert_eq!(
        up["up"]["environments"][0]["unsealed"], false,
        "nobody unsealed it"
    );
    assert_eq!(up["up"]["environments"][0]["started"], true);
    assert_eq!(status(&dir)["sealed"], false);
    assert!(!env_dir.join("custody/unseal-keys.json").exists());

    // The seal-keeper goes down; the node restarts: it cannot unseal, and status says why.
    stop(dir.join("seal-keeper/bao/server.pid"));
    assert_eq!(
        status(&dir)["sealed"],
        false,
        "a running node keeps its key in memory"
    );
    stop(env_dir.join("bao/server.pid"));
    let started =
        std::process::Command::new(warden_lab::process::bao_binary().expect("bao on PATH"))
            .arg("server")
            .arg(format!(
                "-config={}",
                env_dir.join("bao/server.hcl").display()
            ))
            .current_dir(env_dir.join("bao"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .output()
            .expect("run bao");
    let log = String::from_utf8_lossy(&started.stdout).to_string()
        + &String::from_utf8_lossy(&started.stderr);
    assert!(
        !started.status.success(),
        "bao must not start without its seal: {log}"
    );
    assert!(log.contains("Error configuring seal \"transit\""), "{log}");
    let st = status(&dir);
    assert_eq!(st["running"], false);
    assert_eq!(
        st["seal_problem"],
        format!("sealed: seal-keeper {keeper} unreachable").as_str(),
        "{st}"
    );
    let text = warden(&["lab", "status", "--dir"]).arg(&dir).output();
    assert_eq!(text.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains(&format!("test: seal transit (seal-keeper {keeper}, key seal-test) — sealed: seal-keeper {keeper} unreachable")),
        "{stdout}"
    );

    // The seal-keeper comes back: so does the environment, still unattended.
    lab_up(&dir, &[]);
    let st = status(&dir);
    assert_eq!(
        (st["sealed"].clone(), st["seal_problem"].clone()),
        (false.into(), Value::Null)
    );
}

async fn write_secrets(client: &Client) -> BTreeMap<(usize, u64), String> {
    client
        .enable_secrets_engine("kv", "kv", &MountOptions::kv_v2())
        .await
        .expect("mount kv");
    let kv = client.kv2("kv");
    let mut written = BTreeMap::new();
    for version in 1..=2u64 {
        for i in 0..SECRETS {
            let value = format!("value-{i}-v{version}-{}", i * 7919 % 1000);
            let mut data = KvData::new();
            data.insert("v", SecretValue::text(value.clone()));
            kv.write(&format!("app/s{i:04}"), &data, None)
                .await
                .expect("write");
            written.insert((i, version), value);
        }
    }
    written
}

async fn compare_secrets(client: &Client, written: &BTreeMap<(usize, u64), String>) {
    let kv = client.kv2("kv");
    let keys = client.list("kv/metadata/app").await.expect("list");
    assert_eq!(keys.len(), SECRETS, "every secret is still listed");
    for ((i, version), value) in written {
        let got = kv
            .read(&format!("app/s{i:04}"), Some(*version))
            .await
            .unwrap_or_else(|e| panic!("s{i:04} v{version}: {e}"));
        assert_eq!(
            got.data.get("v").map(|v| v.expose().clone()),
            Some(Value::from(value.as_str()))
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn shamir_to_transit_migration_keeps_every_secret() {
    let guard = LabGuard::new(WARDEN);
    let dir = guard.dir();
    lab_up(&dir, &[]);
    assert_eq!(status(&dir)["seal"], "shamir");
    let lab = warden_lab::Lab::open(&dir).unwrap();
    let client = lab.operator_client("test").unwrap();
    let written = write_secrets(&client).await;
    assert_eq!(written.len(), SECRETS * 2);

    let migrate = |extra: &[&str]| {
        let mut inv = warden(&[
            "seal", "migrate", "--env", "test", "--to", "transit", "--lab",
        ])
        .arg(&dir);
        for a in extra {
            inv = inv.arg(a);
        }
        inv.output()
    };
    let lab_json = read(dir.join("lab.json"));

    // Plan first: a dry run says what will happen and changes nothing.
    let plan = json(&ok(migrate(&["--dry-run", "--output", "json"]), "dry run"));
    assert_eq!(plan["applied"], false);
    assert_eq!(plan["plan"]["create_seal_keeper"], true);
    assert_eq!(
        plan["plan"]["nodes_to_restart"].as_array().unwrap().len(),
        1
    );
    assert_eq!(read(dir.join("lab.json")), lab_json);

    // Shares missing: refused with what and what next, nothing changed.
    let shares = dir.join("envs/test/custody/unseal-keys.json");
    let aside = dir.join("envs/test/custody/unseal-keys.aside");
    std::fs::rename(&shares, &aside).unwrap();
    let refused = migrate(&[]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(err.contains("unseal shares missing: 0 in custody"), "{err}");
    assert!(
        err.contains("nothing was changed") && err.contains("hint:"),
        "{err}"
    );
    assert_eq!(read(dir.join("lab.json")), lab_json);
    assert!(!dir.join("seal-keeper").exists());
    std::fs::rename(&aside, &shares).unwrap();

    // The migration itself.
    let started = Instant::now();
    let report = json(&ok(migrate(&["--output", "json"]), "seal migrate"));
    let took = started.elapsed();
    assert_eq!(report["report"]["seal_type"], "transit");
    assert_eq!(report["report"]["recovery_threshold"], 2);
    eprintln!(
        "figure: Shamir -> transit migration of one node holding {} KV versions: {:.1}s (server-side restart and migration {:.1}s)",
        SECRETS * 2,
        took.as_secs_f64(),
        report["report"]["seconds"].as_f64().unwrap_or_default()
    );
    let st = status(&dir);
    assert_eq!(st["sealed"], false);
    assert!(st["seal"].as_str().unwrap().starts_with("transit"), "{st}");
    assert!(!shares.exists(), "the Shamir shares are recovery keys now");
    assert!(dir.join("envs/test/custody/recovery-keys.json").exists());
    let client = lab.operator_client("test").unwrap();
    let health = client.seal_status().await.unwrap();
    assert_eq!(
        (
            health.seal_type.as_str(),
            health.recovery_seal,
            health.migration
        ),
        ("transit", true, false)
    );
    compare_secrets(&client, &written).await;

    // A second run refuses: there is nothing left to migrate.
    let again = migrate(&[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already sealed by transit"));

    // And it now unseals itself after a full stop.
    ok(
        warden(&["lab", "down", "--dir"]).arg(&dir).output(),
        "lab down",
    );
    let up = lab_up(&dir, &[]);
    assert_eq!(up["up"]["environments"][0]["unsealed"], false);
    let client = warden_lab::Lab::open(&dir)
        .unwrap()
        .operator_client("test")
        .unwrap();
    compare_secrets(&client, &written).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn static_seal_unseals_itself_from_its_key_file() {
    let guard = LabGuard::new(WARDEN);
    let dir = guard.dir();
    let up = lab_up(&dir, &["--seal", "static"]);
    assert_eq!(
        up["up"]["environments"][0]["seal"],
        "static (key warden-test-1)"
    );
    assert_eq!(
        up["up"]["seal_keeper"],
        Value::Null,
        "no seal-keeper for a static lab"
    );
    let key_file = dir.join("envs/test/seal/static.key");
    let key = read(key_file.clone());
    assert!(key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()));
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!read(dir.join("envs/test/bao/server.hcl")).contains(&key));
    let client = warden_lab::Lab::open(&dir)
        .unwrap()
        .operator_client("test")
        .unwrap();
    let st = client.seal_status().await.unwrap();
    assert_eq!((st.seal_type.as_str(), st.recovery_seal), ("static", true));

    ok(
        warden(&["lab", "down", "--dir"]).arg(&dir).output(),
        "lab down",
    );
    let up = lab_up(&dir, &[]);
    assert_eq!(up["up"]["environments"][0]["unsealed"], false);
    assert_eq!(status(&dir)["sealed"], false);
}

/// Every node's PID file of `test` in a lab of `n` nodes (node 1 keeps `bao/`).
fn node_pid_files(dir: &Path, n: u8) -> Vec<PathBuf> {
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

fn roles(st: &Value) -> Vec<String> {
    st["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["role"].as_str().unwrap_or("?").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_transit_sealed_nodes_come_back_unsealed_with_nobody_involved() {
    let guard = LabGuard::new(WARDEN);
    let dir = guard.dir();
    let up = lab_up(&dir, &["--seal", "transit", "--nodes", "3"]);
    let keeper = up["up"]["seal_keeper"].as_str().unwrap().to_owned();
    let st = status(&dir);
    let mut r = roles(&st);
    r.sort();
    assert_eq!(r, ["leader", "standby", "standby"], "{st}");
    assert!(!dir.join("envs/test/custody/unseal-keys.json").exists());

    // All three stop (the seal-keeper keeps running), then start: nobody submits anything.
    for pid_file in node_pid_files(&dir, 3) {
        stop(pid_file);
    }
    assert_eq!(status(&dir)["running"], false);
    let started = Instant::now();
    let up = lab_up(&dir, &[]);
    let took = started.elapsed();
    assert_eq!(up["up"]["environments"][0]["started"], true);
    assert_eq!(
        up["up"]["environments"][0]["unsealed"], false,
        "nobody unsealed it"
    );
    let st = status(&dir);
    let mut r = roles(&st);
    r.sort();
    assert_eq!(r, ["leader", "standby", "standby"], "{st}");
    assert_eq!(st["sealed"], false);
    eprintln!(
        "figure: 3 transit-sealed nodes from all stopped to leader + 2 standbys, unattended: {:.1}s (lab up, TLS and PKI checks included)",
        took.as_secs_f64()
    );

    // Seal-keeper down, nodes down: they cannot come back, and status says why.
    stop(dir.join("seal-keeper/bao/server.pid"));
    for pid_file in node_pid_files(&dir, 3) {
        stop(pid_file);
    }
    let st = status(&dir);
    assert_eq!(
        st["seal_problem"],
        format!("sealed: seal-keeper {keeper} unreachable").as_str(),
        "{st}"
    );
    assert!(roles(&st).iter().all(|r| r == "down"), "{st}");
}

/// Production: `warden server config --seal` names the seal's files (never their contents),
/// refuses what OpenBao would reject, and a real server runs the result and unseals itself.
#[tokio::test(flavor = "multi_thread")]
async fn server_config_names_the_seal_and_a_real_node_unseals_itself_with_it() {
    let lab = warden_testkit::LabEnv::start(&["prod"]).await;
    let tls = lab.lab().layout().env("prod");
    let tmp = tempfile::tempdir().expect("tempdir");
    let etc = tmp.path().join("etc");
    let (data, audit, out) = (
        tmp.path().join("raft"),
        tmp.path().join("log"),
        tmp.path().join("out"),
    );
    for dir in [
        etc.join("tls"),
        etc.join("seal"),
        data.clone(),
        audit.clone(),
    ] {
        warden_files::ensure_private_dir(&dir).expect("directory");
    }
    for (from, to) in [
        (tls.server_cert(), "server.crt"),
        (tls.server_key(), "server.key"),
        (tls.client_ca(), "client-ca.pem"),
        (tls.ca_bundle(), "ca.pem"),
        (tls.operator_cert(), "node.crt"),
        (tls.operator_key(), "node.key"),
    ] {
        std::fs::copy(&from, etc.join("tls").join(to)).expect("copy TLS material");
    }
    let ports = warden_lab::process::free_ports(2).expect("free ports");
    let spec = tmp.path().join("warden.toml");
    std::fs::write(
        &spec,
        format!(
            "version = 1\n[environments.prod]\ndomain = \"p.internal\"\nruntime_owner = \"warden-test\"\n\
             [[environments.prod.nodes]]\nname = \"prod-1\"\naddress = \"https://127.0.0.1:{}\"\ncluster_address = \"https://127.0.0.1:{}\"\n",
            ports[0], ports[1]
        ),
    )
    .expect("write the spec");
    let bao = warden_lab::process::bao_binary().expect("bao");
    let p = |p: &Path| p.display().to_string();
    let base: Vec<String> = [
        "server",
        "config",
        "--spec",
        &p(&spec),
        "--env",
        "prod",
        "--node",
        "prod-1",
        "--out",
        &p(&out),
        "--config-dir",
        &p(&etc),
        "--data-dir",
        &p(&data),
        "--audit-dir",
        &p(&audit),
        "--bao",
        &p(&bao),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let run = |extra: &[&str]| {
        let mut inv = WARDEN.invoke(&base);
        for a in extra {
            inv = inv.arg(a);
        }
        inv.output()
    };

    for (extra, want) in [
        (
            &["--seal", "transit"][..],
            "--seal transit needs the seal-keeper's address",
        ),
        (
            &["--seal", "transit", "--seal-keeper", "http://127.0.0.1:1"][..],
            "must start with https://",
        ),
        (
            &["--seal", "static", "--seal-keeper", "https://127.0.0.1:1"][..],
            "--seal-keeper only applies to --seal transit",
        ),
    ] {
        let refused = run(extra);
        let err = String::from_utf8_lossy(&refused.stderr);
        assert_ne!(refused.status.code(), Some(0), "{extra:?}");
        assert!(
            err.contains(want) && err.contains("hint:"),
            "{extra:?}: {err}"
        );
        assert!(
            !out.join("prod-1.hcl").exists(),
            "nothing written for {extra:?}"
        );
    }

    let transit = ok(
        run(&["--seal", "transit", "--seal-keeper", "https://127.0.0.1:1"]),
        "server config --seal transit",
    );
    drop(transit);
    let config = read(out.join("prod-1.hcl"));
    let seal_dir = etc.join("seal");
    for want in [
        "seal \"transit\" {".to_owned(),
        format!(
            "token           = \"file://{}\"",
            seal_dir.join("keeper-token").display()
        ),
        format!(
            "tls_client_key  = \"{}\"",
            seal_dir.join("keeper-client.key").display()
        ),
        "key_name        = \"seal-prod\"".to_owned(),
    ] {
        assert!(config.contains(&want), "missing {want}:\n{config}");
    }

    ok(run(&["--seal", "static"]), "server config --seal static");
    let config = read(out.join("prod-1.hcl"));
    let key_file = seal_dir.join("static.key");
    assert!(
        config.contains(&format!(
            "current_key     = \"file://{}\"",
            key_file.display()
        )),
        "{config}"
    );
    warden_node::seal::write_static_key(&key_file).expect("static key");
    let key = read(key_file);
    assert!(!config.contains(&key));

    // The generated configuration, run by the real server: initialised with recovery keys, it
    // unseals itself from the key file.
    let mut command = std::process::Command::new(&bao);
    command
        .arg("server")
        .arg(format!("-config={}", out.join("prod-1.hcl").display()))
        .current_dir(tmp.path());
    let server = warden_testkit::RunningAgent::spawn(command, &tmp.path().join("server.log"));
    let cfg = ClientConfig::from_address(&format!("https://127.0.0.1:{}", ports[0]))
        .and_then(|c| c.with_ca_file(etc.join("tls/ca.pem")))
        .and_then(|c| c.with_client_cert_files(etc.join("tls/node.crt"), etc.join("tls/node.key")))
        .expect("client config");
    let client = Client::new(cfg).expect("client");
    client
        .wait_reachable()
        .await
        .unwrap_or_else(|e| panic!("{e}; server log:\n{}", server.log()));
    let st = client.seal_status().await.unwrap();
    assert_eq!((st.seal_type.as_str(), st.initialized), ("static", false));
    let init = client.init_with_recovery(3, 2).await.expect("init");
    assert_eq!(init.recovery_keys.len(), 3);
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.seal_status().await.unwrap().sealed {
        assert!(
            Instant::now() < deadline,
            "never unsealed itself: {}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Three nodes: standbys restart first with the new seal and the shares (migrate=true), the
/// active node last; a migrated standby takes over and migrates. Every secret survives.
#[tokio::test(flavor = "multi_thread")]
async fn three_node_shamir_to_static_migration_keeps_every_secret() {
    let guard = LabGuard::new(WARDEN);
    let dir = guard.dir();
    lab_up(&dir, &["--nodes", "3"]);
    let lab = warden_lab::Lab::open(&dir).unwrap();
    let client = lab.operator_client("test").unwrap();
    let written = write_secrets(&client).await;

    let plan = json(&ok(
        warden(&[
            "seal",
            "migrate",
            "--env",
            "test",
            "--to",
            "static",
            "--dry-run",
            "-o",
            "json",
            "--lab",
        ])
        .arg(&dir)
        .output(),
        "dry run",
    ));
    let order = plan["plan"]["nodes_to_restart"].as_array().unwrap().clone();
    assert_eq!(order.len(), 3, "{plan}");
    let st = status(&dir);
    let leader = st["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["role"] == "leader")
        .map(|n| n["address"].clone())
        .expect("a leader");
    assert_eq!(order[2], leader, "the active node restarts last");

    let started = Instant::now();
    let report = json(&ok(
        warden(&[
            "seal", "migrate", "--env", "test", "--to", "static", "-o", "json", "--lab",
        ])
        .arg(&dir)
        .output(),
        "seal migrate",
    ));
    eprintln!(
        "figure: Shamir -> static migration of 3 nodes holding {} KV versions: {:.1}s",
        SECRETS * 2,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(report["report"]["seal_type"], "static");
    let st = status(&dir);
    let mut r = roles(&st);
    r.sort();
    assert_eq!(r, ["leader", "standby", "standby"], "{st}");
    for node in st["nodes"].as_array().unwrap() {
        let c = Client::new(
            ClientConfig::new(node["address"].as_str().unwrap().parse().unwrap())
                .with_ca_file(dir.join("envs/test/tls/ca.pem"))
                .unwrap()
                .with_client_cert_files(
                    dir.join("envs/test/operator/operator.crt"),
                    dir.join("envs/test/operator/operator.key"),
                )
                .unwrap(),
        )
        .unwrap();
        let s = c.seal_status().await.unwrap();
        assert_eq!(
            (s.seal_type.as_str(), s.migration, s.sealed),
            ("static", false, false)
        );
    }
    let client = warden_lab::Lab::open(&dir)
        .unwrap()
        .operator_client("test")
        .unwrap();
    compare_secrets(&client, &written).await;
}
