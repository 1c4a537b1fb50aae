//! Auto-unseal: transit (one and three nodes) and static; the seal-keeper down.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Instant;

use serde_json::Value;
use warden_testkit::LabGuard;

use crate::support::*;

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

    // No unseal share exists; the recovery keys went through the ceremony (one per lab
    // custodian, encrypted), and neither they nor the root token sit anywhere in clear.
    let env_dir = dir.join("envs/test");
    assert!(!env_dir.join("custody/unseal-keys.json").exists());
    assert_eq!(ledger_kind(&dir), "recovery");
    let recovery = custody_keys(&dir);
    assert_eq!(recovery.len(), 3);
    assert_no_clear_custody(&dir, &recovery);
    assert_eq!(up["up"]["environments"][0]["root_revoked"], true);

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

    secrets_stay_in_their_files(&dir, &token, recovery);
    seal_token_reaches_its_key_only(&dir, &keeper, &token).await;
    seal_grant_issues_a_token_for_one_more_environment(&guard, &dir, &keeper).await;

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
    assert!(
        stdout.contains(&format!(
            "seal-keeper {keeper}: NOT RUNNING: transit-sealed nodes cannot start"
        )),
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
    assert_eq!(ledger_kind(&dir), "recovery");
    assert_no_clear_custody(&dir, &custody_keys(&dir));
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
    assert_eq!(ledger_kind(&dir), "recovery");
    assert_no_clear_custody(&dir, &custody_keys(&dir));

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

/// The seal token encrypts and decrypts with its own key; another key, the key's settings,
/// the mounts, its own lookup and listing are all refused.
async fn seal_token_reaches_its_key_only(dir: &Path, keeper: &str, token: &str) {
    // The seal token can use its own key, and nothing else.
    let k = keeper_client(dir, keeper, token);
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
    let keeper_root = keeper_client(dir, keeper, root.trim());
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
}

/// `warden seal grant`, production's way to the same grant, against the lab's seal-keeper.
async fn seal_grant_issues_a_token_for_one_more_environment(
    guard: &LabGuard,
    dir: &Path,
    keeper: &str,
) {
    // Production's way to the same grant: `warden seal grant` against a seal-keeper.
    let out_dir = guard.temp_dir().join("other-seal");
    let kdir = dir.join("seal-keeper");
    let grant = |out_dir: &Path| {
        warden(&[
            "seal",
            "grant",
            "--env",
            "other",
            "-o",
            "json",
            "--seal-keeper",
            keeper,
        ])
        .arg("--ca")
        .arg(kdir.join("tls/ca.pem"))
        .arg("--client-cert")
        .arg(kdir.join("operator/operator.crt"))
        .arg("--client-key")
        .arg(kdir.join("operator/operator.key"))
        .arg("--token-file")
        .arg(kdir.join("custody/root-token"))
        .arg("--out")
        .arg(out_dir)
        .output()
    };
    let first = json(&ok(grant(&out_dir), "seal grant"));
    assert_eq!(
        (first["key_name"].clone(), first["new_token"].clone()),
        ("seal-other".into(), true.into())
    );
    let again = json(&ok(grant(&out_dir), "seal grant again"));
    assert_eq!(again["new_token"], false, "a live token is kept");
    let other_token = read(out_dir.join("keeper-token"));
    let mode = std::fs::metadata(out_dir.join("keeper-token"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!((mode, other_token.contains('\n')), (0o600, false));
    let other = keeper_client(dir, keeper, &other_token);
    other
        .transit("transit")
        .encrypt("seal-other", b"probe")
        .await
        .expect("its own key");
    let denied = other
        .transit("transit")
        .encrypt("seal-test", b"probe")
        .await
        .unwrap_err();
    assert!(denied.is_permission_denied(), "{denied}");
}

/// The seal token is in its owner-only file and the recovery keys in the custodians' encrypted
/// shares, and nowhere else the lab writes or shows: not in the node's argv or environment,
/// not in its configuration or logs (the audit device HMACs what it records), not in `lab
/// status`.
fn secrets_stay_in_their_files(dir: &Path, token: &str, recovery: Vec<String>) {
    let mut secrets = recovery;
    secrets.push(token.to_owned());
    let pid = pid(dir.join("envs/test/bao/server.pid"));
    let mut places = vec![
        (
            "argv".to_owned(),
            std::fs::read(format!("/proc/{pid}/cmdline")).unwrap(),
        ),
        (
            "environment".to_owned(),
            std::fs::read(format!("/proc/{pid}/environ")).unwrap(),
        ),
    ];
    for f in ["bao/server.hcl", "bao/server.log", "bao/audit.log"] {
        places.push((
            f.to_owned(),
            std::fs::read(dir.join("envs/test").join(f)).unwrap(),
        ));
    }
    for f in ["bao/server.log", "bao/audit.log"] {
        places.push((
            format!("seal-keeper/{f}"),
            std::fs::read(dir.join("seal-keeper").join(f)).unwrap(),
        ));
    }
    let status = warden(&["lab", "status", "--dir"]).arg(dir).output();
    places.push((
        "lab status".to_owned(),
        [status.stdout, status.stderr].concat(),
    ));
    for (place, bytes) in &places {
        let text = String::from_utf8_lossy(bytes);
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "a seal secret leaked into {place}"
            );
        }
    }
}
