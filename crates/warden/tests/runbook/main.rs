//! The operator's runbook for a new production environment (docs/production.md), walked end to
//! end with `warden` commands against three, then four, real OpenBao nodes on loopback: no lab,
//! no LAB ONLY file. The `bao` binary is only the server process; files are "installed" on the
//! nodes' hosts by copying them into per-node directories. Every phase prints its time
//! (`cargo test --test runbook -- --nocapture`).

#![allow(clippy::print_stderr)] // phase timings go to the test log on purpose

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{CUSTODIANS, ENV, Runbook, joined, probe, prod_step, unsealed, voters};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_production_environment_from_the_runbook() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::Builder::new()
        .prefix("warden-runbook-")
        .tempdir()
        .expect("tempdir");
    let mut rb = Runbook {
        dir,
        bao: warden_lab::process::bao_binary().expect("bao"),
        ports: warden_lab::process::free_ports(8).expect("free ports"),
        servers: Vec::new(),
        started: Instant::now(),
    };
    for d in ["ids", "state", "ops"] {
        warden_files::ensure_private_dir(&rb.path(d)).expect("dir");
    }
    warden_testkit::files::write_private(&rb.path("ca.pass"), b"a long offline passphrase\n");

    let custodians = found(&mut rb);
    let nodes = ["prod-1", "prod-2", "prod-3"];
    first_start(&mut rb, &nodes).await;
    ceremony(&mut rb).await;
    let root = intermediate(&mut rb).await;
    trust_operators(&mut rb, &nodes).await;
    bootstrap_and_apply(&mut rb);
    add_node(&mut rb, &custodians).await;
    replace_custodian(&mut rb, &custodians);
    rb.stop_all();
    // The root token was only ever in memory: no file the walk left behind holds it.
    assert_nowhere(
        rb.dir.path(),
        secrecy::ExposeSecret::expose_secret(&root).as_bytes(),
    );
}

/// Fails if any file under `dir` contains `secret`.
fn assert_nowhere(dir: &std::path::Path, secret: &[u8]) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            assert_nowhere(&path, secret);
        } else if let Ok(bytes) = std::fs::read(&path) {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret),
                "{} holds the root token",
                path.display()
            );
        }
    }
}

/// Steps 1–2: the offline root, the custodians' identities, the spec.
fn found(rb: &mut Runbook) -> Vec<(&'static str, String)> {
    // 1. The offline root, and the custodians' identities (each on their own machine).
    rb.warden(
        &["ca", "init", "--dir", "ca", "--passphrase-file", "ca.pass"],
        false,
    );
    let custodians: Vec<(&str, String)> = CUSTODIANS
        .iter()
        .map(|c| {
            let id = format!("ids/{c}.key");
            let v = rb.warden(&["custody", "keygen", "--identity", &id], false);
            (*c, v["recipient"].as_str().expect("recipient").to_owned())
        })
        .collect();
    rb.spec(3, &custodians);
    rb.phase("offline root, 3 custodian identities, spec");

    custodians
}

/// Steps 3–5: node TLS, configurations, first start.
async fn first_start(rb: &mut Runbook, nodes: &[&str]) {
    // 2. Node TLS from the listener CA, each node's configuration, first start.
    let tls = rb.warden(
        &[
            "server",
            "tls",
            "--spec",
            "warden.toml",
            "--env",
            ENV,
            "--ca-dir",
            "ca",
            "--passphrase-file",
            "ca.pass",
            "--client",
            "ceremony",
            "--out",
            "tls",
        ],
        false,
    );
    assert_eq!(tls["listener_ca"]["created"], true, "{tls}");
    assert_eq!(tls["nodes"].as_array().map(Vec::len), Some(3), "{tls}");
    for n in nodes {
        rb.install_tls(n);
        rb.server_config(n);
        rb.start(n);
    }
    for i in 0..3 {
        rb.wait_reachable(rb.ports[2 * i]).await;
    }
    rb.phase("node TLS, 3 node configs, 3 servers started");
}

/// Steps 6–7: the ceremony and the two unseal rounds.
async fn ceremony(rb: &mut Runbook) {
    // 3. The custody ceremony, then two of three custodians unseal every node.
    let init = rb.warden(
        &prod_step(&["custody", "init"], &["--out", "ceremony"], "", &[]),
        false,
    );
    assert!(
        rb.path(&format!("ceremony/root-token.{ENV}.age")).exists(),
        "{init}"
    );
    rb.phase("custody init");
    let first = rb.unseal(&["alice", "bob"], "ceremony");
    // Only the initialised node opens; the others have not joined yet and say so.
    let open = |report: &Value| {
        report["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .filter(|n| n["sealed"] == false)
            .count()
    };
    assert_eq!(open(&first), 1, "{first}");
    assert!(first.to_string().contains("not initialized"), "{first}");
    rb.phase("unseal by 2 custodians (the initialised node)");
    joined(rb, &[rb.ports[2], rb.ports[4]]).await;
    let second = rb.unseal(&["alice", "bob"], "ceremony");
    assert_eq!(open(&second), 1, "{second}");
    unsealed(rb, &[rb.ports[2], rb.ports[4]]).await;
    rb.phase("followers joined, unsealed by the same 2 custodians");
}

/// Step 8, first half: the PKI intermediate.
async fn intermediate(rb: &mut Runbook) -> secrecy::SecretString {
    // 4. The PKI intermediate: key and CSR inside OpenBao, signed offline. No `warden` command
    // does the OpenBao side before bootstrap yet (docs/production.md says so): the test does it
    // with the root token opened in memory, as `bao write` would.
    let root = {
        let id = warden_custody::IdentityFile::read(&rb.path("ids/alice.key")).expect("identity");
        warden_custody::root::open_bootstrap_token(
            &rb.path(&format!("ceremony/root-token.{ENV}.age")),
            ENV,
            &id,
        )
        .expect("root token")
    };
    let spec = warden_spec::load(&rb.path("warden.toml")).expect("spec");
    let pki = spec.environment(ENV).expect("env").mounts.pki.clone();
    let admin = {
        let addrs: Vec<String> = (0..3)
            .map(|i| format!("https://127.0.0.1:{}", rb.ports[2 * i]))
            .collect();
        let cfg = warden_bao::ClientConfig::with_addresses(&addrs)
            .and_then(|c| c.with_ca_file(rb.path("ca/root.crt")))
            .and_then(|c| {
                c.with_client_cert_files(
                    rb.path("tls/prod-1/node.crt"),
                    rb.path("tls/prod-1/node.key"),
                )
            })
            .expect("client config")
            .with_retry(
                warden_bao::RetryPolicy::default().with_startup_timeout(Duration::from_secs(30)),
            );
        warden_bao::Client::new(cfg).expect("client")
    };
    admin.set_token(root.clone());
    admin
        .enable_secrets_engine(
            &pki,
            "pki",
            &warden_bao::MountOptions::default()
                .with_max_lease_ttl(Duration::from_secs(2 * 365 * 86400)),
        )
        .await
        .expect("mount pki");
    let csr = admin
        .pki_generate_intermediate_csr(
            &pki,
            "Warden prod PKI intermediate",
            warden_bao::KeyType::EcP256,
        )
        .await
        .expect("CSR");
    std::fs::write(rb.path("prod.csr"), &csr.csr_pem).expect("csr");
    rb.warden(
        &[
            "ca",
            "sign-intermediate",
            "--dir",
            "ca",
            "--csr",
            "prod.csr",
            "--env",
            ENV,
            // The environment's names only (ADR 0013): the spec's domain.
            "--permitted-dns",
            "prod.example.internal",
            "--validity",
            "1y",
            "--bundle",
            "--out",
            "prod-intermediate.pem",
            "--passphrase-file",
            "ca.pass",
        ],
        false,
    );
    let bundle = std::fs::read_to_string(rb.path("prod-intermediate.pem")).expect("bundle");
    admin
        .pki_set_signed(&pki, &bundle)
        .await
        .expect("set-signed");
    // A client certificate from the intermediate, only for the SIGHUP check in
    // `trust_operators` (its role is deleted at once; bootstrap's revocation ends the token).
    let role = format!("{pki}/roles/sighup-probe");
    let body = serde_json::json!({ "allow_any_name": true, "client_flag": true, "server_flag": false, "max_ttl": "1h" });
    admin
        .write(&role, &body, warden_bao::Idempotent::Yes)
        .await
        .expect("probe role");
    let issued = admin
        .write(
            &format!("{pki}/issue/sighup-probe"),
            // Inside the intermediate's name constraints: the listener (Go) enforces them on
            // client certificates too, and refuses a bare `sighup-probe` (BadCertificate).
            &serde_json::json!({ "common_name": "sighup-probe.prod.example.internal", "ttl": "1h" }),
            warden_bao::Idempotent::No,
        )
        .await
        .expect("probe certificate")
        .and_then(|s| s.data)
        .expect("issued data");
    for (field, file) in [("certificate", "probe.crt"), ("private_key", "probe.key")] {
        let pem = issued[field].as_str().expect("PEM");
        warden_testkit::files::write_private(&rb.path(file), pem.as_bytes());
    }
    admin.delete(&role).await.expect("delete probe role");
    drop(admin);
    rb.phase("PKI intermediate (CSR in OpenBao, signed offline, set-signed)");
    root
}

/// Step 8, second half: client-ca.pem trusts the intermediate; restart and unseal.
async fn trust_operators(rb: &mut Runbook, nodes: &[&str]) {
    // 5. The listeners learn to trust operators' certificates: client-ca.pem gains the PKI
    // intermediate; OpenBao reads it at start only, so every node restarts and is unsealed.
    rb.warden(
        &[
            "server",
            "tls",
            "--spec",
            "warden.toml",
            "--env",
            ENV,
            "--ca-dir",
            "ca",
            "--identity-ca",
            "prod-intermediate.pem",
            "--out",
            "tls",
        ],
        false,
    );
    // Does SIGHUP make a running node trust the new client-ca.pem? Verified, not assumed: the
    // answer decides whether the runbook restarts (and re-unseals) every node.
    rb.install_tls("prod-1");
    let pid = rb.servers[0].1.pid().to_string();
    let hup = Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill -HUP");
    assert!(hup.success());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_hup = probe(rb, rb.ports[0]).await;
    eprintln!(
        "figure: after SIGHUP, a certificate from the new client CA: {}",
        after_hup
            .as_ref()
            .map_or_else(|e| format!("refused ({e})"), |()| "accepted".to_owned())
    );
    assert!(
        after_hup.is_err(),
        "OpenBao now reloads tls_client_ca_file on SIGHUP: docs/production.md step 8 can drop the restart"
    );
    rb.stop_all();
    for n in nodes {
        rb.install_tls(n);
        rb.start(n);
    }
    for i in 0..3 {
        rb.wait_reachable(rb.ports[2 * i]).await;
    }
    rb.unseal(&["bob", "carol"], "ceremony");
    probe(rb, rb.ports[0])
        .await
        .expect("after a restart the listener accepts the intermediate's certificates");
    rb.phase("client-ca.pem with the PKI intermediate, restart, unseal");
}

/// Steps 9–10: bootstrap, first apply and posture.
fn bootstrap_and_apply(rb: &mut Runbook) {
    // 6. Bootstrap: the first operator, the root token opened in memory and revoked.
    rb.warden(
        &[
            "operator",
            "enroll",
            "alice",
            "--spec",
            "warden.toml",
            "--env",
            ENV,
            "--out",
            "ops",
        ],
        false,
    );
    let boot = rb.warden(
        &[
            "bootstrap",
            "--spec",
            "warden.toml",
            "--env",
            ENV,
            "--root-token-share",
            &format!("ceremony/root-token.{ENV}.age"),
            "--identity",
            "ids/alice.key",
            "--operator",
            "alice",
            "--csr",
            "ops/alice.prod.csr",
        ],
        false,
    );
    assert_eq!(boot["bootstrap"]["root_revoked"], true, "{boot}");
    rb.phase("bootstrap (root token revoked)");

    // 7. First apply and posture, as the operator (client certificate, no token).
    rb.warden(&["apply", "--spec", "warden.toml", "--env", ENV], true);
    rb.warden(&["posture", "--spec", "warden.toml", "--env", ENV], true);
    rb.phase("first apply and posture as operator alice");
}

/// Adding a node.
async fn add_node(rb: &mut Runbook, custodians: &[(&'static str, String)]) {
    // 8. Adding a node: a 4th spec node, its TLS and configuration, start, unseal, it joins.
    rb.refused(
        &[
            "server",
            "tls",
            "--spec",
            "warden.toml",
            "--env",
            ENV,
            "--node",
            "prod-4",
            "--ca-dir",
            "ca",
            "--out",
            "tls",
        ],
        "has no node \"prod-4\"",
    );
    rb.spec(4, custodians);
    rb.warden(
        &[
            "server",
            "tls",
            "--spec",
            "warden.toml",
            "--env",
            ENV,
            "--node",
            "prod-4",
            "--ca-dir",
            "ca",
            "--identity-ca",
            "prod-intermediate.pem",
            "--out",
            "tls",
        ],
        false,
    );
    rb.install_tls("prod-4");
    rb.server_config("prod-4");
    rb.start("prod-4");
    rb.wait_reachable(rb.ports[6]).await;
    joined(rb, &[rb.ports[6]]).await;
    rb.unseal(&["alice", "carol"], "ceremony");
    let op = rb.operator_client(rb.ports[0]).await;
    let peers = voters(&op, 4).await;
    assert_eq!(peers.iter().filter(|s| s.voter).count(), 4, "{peers:?}");
    assert!(peers.iter().any(|s| s.node_id == "prod-4"), "{peers:?}");
    rb.phase("node prod-4 added (unsealed, joined as a voter)");
}

/// Replacing a custodian.
fn replace_custodian(rb: &mut Runbook, custodians: &[(&'static str, String)]) {
    // 9. Replacing a custodian: carol leaves, dave joins. Two custodians open break-glass for a
    // token allowed to rekey, rekey, and close it.
    let dave = rb.warden(&["custody", "keygen", "--identity", "ids/dave.key"], false);
    let mut next = custodians.to_vec();
    next.retain(|(n, _)| *n != "carol");
    next.push((
        "dave",
        dave["recipient"].as_str().expect("recipient").to_owned(),
    ));
    rb.spec(4, &next);
    rb.warden(
        &prod_step(
            &["break-glass", "open"],
            &[
                "--reason",
                "runbook: replace custodian carol",
                "--ttl",
                "10m",
                "--token-file",
                "bg.token",
            ],
            "ceremony",
            &["alice", "bob"],
        ),
        false,
    );
    let rekey = rb.warden(
        &prod_step(
            &["custody", "rekey"],
            &["--out", "rekey-2", "--token-file", "bg.token"],
            "ceremony",
            &["alice", "bob"],
        ),
        false,
    );
    assert!(
        rb.path(&format!("rekey-2/dave.{ENV}.share.age")).exists(),
        "{rekey}"
    );
    rb.warden(&prod_step(&["break-glass", "close"], &[], "", &[]), true);
    // Carol's old share is no longer a share of this environment.
    rb.refused(
        &prod_step(&["unseal"], &[], "ceremony", &["carol"]),
        "carol",
    );
    rb.phase("custodian carol replaced by dave (break-glass, rekey, close)");
}
