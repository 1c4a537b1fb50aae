//! Seal migration on a live environment: nothing lost, refusals change nothing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use warden_bao::{Client, ClientConfig, KvData, MountOptions, SecretValue};
use warden_testkit::LabGuard;

use crate::support::*;

async fn write_secrets(client: &Client) -> BTreeMap<(usize, u64), String> {
    client
        .enable_secrets_engine("kv", "kv", &MountOptions::kv_v2())
        .await
        .expect("mount kv");
    let kv = client.kv2("kv");
    // A new KV v2 mount answers "upgrading" for a moment (longer on a cluster): wait for it
    // outside the counted folder.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut probe = KvData::new();
    probe.insert("ready", SecretValue::text("yes".to_owned()));
    while let Err(e) = kv.write("probe/ready", &probe, None).await {
        assert!(Instant::now() < deadline, "kv never became writable: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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

    // Shares missing (no custody ledger): refused with what and what next, nothing changed.
    let ledger = dir.join("state/custody/test/ledger.json");
    let aside = dir.join("state/custody/test/ledger.aside");
    let shares_before = custody_keys(&dir);
    assert_eq!(ledger_kind(&dir), "unseal");
    std::fs::rename(&ledger, &aside).unwrap();
    let refused = migrate(&[]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(err.contains("unseal shares missing: 0 in custody"), "{err}");
    assert!(
        err.contains(&ledger.display().to_string()),
        "names the ledger: {err}"
    );
    assert!(
        err.contains("nothing was changed") && err.contains("hint:"),
        "{err}"
    );
    assert_eq!(read(dir.join("lab.json")), lab_json);
    assert!(!dir.join("seal-keeper").exists());
    std::fs::rename(&aside, &ledger).unwrap();

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
    // The same shares, in the same custody, are the recovery keys now: the ledger says so, and
    // nothing was written in clear.
    assert_eq!(ledger_kind(&dir), "recovery");
    assert_eq!(custody_keys(&dir), shares_before);
    assert_eq!(
        report["report"]["recovery_keys"],
        ledger.display().to_string().as_str()
    );
    assert_no_clear_custody(&dir, &shares_before);
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

    // Auto to auto: transit -> static. The old seal stays in the configuration, disabled,
    // while the recovery keys authorise the move; they stay the recovery keys.
    let recovery = read(ledger.clone());
    let report = json(&ok(
        warden(&[
            "seal", "migrate", "--env", "test", "--to", "static", "-o", "json", "--lab",
        ])
        .arg(&dir)
        .output(),
        "seal migrate to static",
    ));
    assert_eq!(report["report"]["plan"]["from"], "transit");
    assert_eq!(report["report"]["seal_type"], "static");
    assert_eq!(read(ledger.clone()), recovery, "the ledger is untouched");
    assert_eq!(custody_keys(&dir), shares_before);
    assert!(!dir.join("envs/test/seal/previous.json").exists());
    let config = read(dir.join("envs/test/bao/server.hcl"));
    assert!(
        config.contains("seal \"transit\"") && config.contains("disabled        = \"true\""),
        "the migration ran with the old seal disabled:\n{config}"
    );
    compare_secrets(&client, &written).await;
    ok(
        warden(&["lab", "down", "--dir"]).arg(&dir).output(),
        "lab down",
    );
    lab_up(&dir, &[]);
    let config = read(dir.join("envs/test/bao/server.hcl"));
    assert!(!config.contains("seal \"transit\""), "{config}");
    let client = warden_lab::Lab::open(&dir)
        .unwrap()
        .operator_client("test")
        .unwrap();
    assert_eq!(client.seal_status().await.unwrap().seal_type, "static");
    compare_secrets(&client, &written).await;
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
    assert_eq!(
        ledger_kind(&dir),
        "recovery",
        "the shares are recovery keys now"
    );
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
