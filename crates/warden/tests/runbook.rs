//! The operator's runbook for a new production environment (docs/production.md), walked end to
//! end with `warden` commands against three, then four, real OpenBao nodes on loopback: no lab,
//! no LAB ONLY file. The `bao` binary is only the server process; files are "installed" on the
//! nodes' hosts by copying them into per-node directories. Every phase prints its time
//! (`cargo test --test runbook -- --nocapture`).

#![allow(clippy::print_stderr)] // phase timings go to the test log on purpose

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use warden_testkit::RunningAgent;
use warden_testkit::cli::{Cli, path_str, text};

const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));
const ENV: &str = "prod";
const CUSTODIANS: [&str; 3] = ["alice", "bob", "carol"];

/// The operator's workstation (`dir`), the nodes' hosts (`dir/hosts/<node>`), and the running
/// servers (killed on drop, so a panic leaves no process behind).
struct Runbook {
    dir: tempfile::TempDir,
    bao: PathBuf,
    ports: Vec<u16>,
    servers: Vec<(String, RunningAgent)>,
    started: Instant,
}

impl Runbook {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn p(&self, rel: &str) -> String {
        path_str(&self.path(rel)).to_owned()
    }

    fn phase(&mut self, what: &str) {
        eprintln!("figure: {what}: {} ms", self.started.elapsed().as_millis());
        self.started = Instant::now();
    }

    /// `warden ARGS -o json`, with the operator's certificate when `operator` is set.
    fn warden(&self, args: &[&str], operator: bool) -> Value {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["-o", "json"]);
        // Before bootstrap the ceremony's listener-CA client certificate opens the mTLS
        // listener (it grants nothing inside OpenBao); after it, operator alice's.
        let (crt, key) = if operator {
            ("ops/alice.prod.crt", "ops/alice.prod.key")
        } else {
            ("tls/clients/ceremony.crt", "tls/clients/ceremony.key")
        };
        let inv = WARDEN
            .invoke(&a)
            .current_dir(self.dir.path())
            .env("VAULT_CLIENT_CERT", self.path(crt))
            .env("VAULT_CLIENT_KEY", self.path(key));
        let out = inv
            .env_remove("VAULT_TOKEN")
            .env_remove("VAULT_ADDR")
            .output();
        assert!(
            out.status.success(),
            "warden {args:?} failed:\nstdout:\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// `warden ARGS` must fail, saying `message` and what to do next.
    fn refused(&self, args: &[&str], message: &str) {
        let out = WARDEN
            .invoke(args)
            .current_dir(self.dir.path())
            .env("VAULT_CLIENT_CERT", self.path("tls/clients/ceremony.crt"))
            .env("VAULT_CLIENT_KEY", self.path("tls/clients/ceremony.key"))
            .output();
        let err = text(&out.stderr);
        assert!(!out.status.success(), "warden {args:?} was not refused");
        assert!(
            err.contains(message),
            "warden {args:?}: {message:?} not in:\n{err}"
        );
        assert!(
            err.contains("hint:"),
            "a refusal says what to do next:\n{err}"
        );
    }

    fn spec(&self, nodes: usize, custodians: &[(&str, String)]) {
        let mut s = format!(
            "version = 1\n[environments.{ENV}]\ndomain = \"prod.example.internal\"\nruntime_owner = \"warden-test\"\nca_cert = \"{}\"\n",
            self.p("ca/root.crt")
        );
        for i in 0..nodes {
            s.push_str(&format!(
                "\n[[environments.{ENV}.nodes]]\nname = \"prod-{}\"\naddress = \"https://127.0.0.1:{}\"\ncluster_address = \"https://127.0.0.1:{}\"\n",
                i + 1,
                self.ports[2 * i],
                self.ports[2 * i + 1]
            ));
        }
        s.push_str(&format!("\n[environments.{ENV}.custody]\nthreshold = 2\n"));
        for (name, recipient) in custodians {
            s.push_str(&format!(
                "\n[[environments.{ENV}.custody.custodians]]\nname = \"{name}\"\nrecipient = \"{recipient}\"\n"
            ));
        }
        std::fs::write(self.path("warden.toml"), s).expect("spec");
    }

    /// Installs node `n`'s TLS files on its host (what an operator copies to
    /// /etc/warden/prod/tls/).
    fn install_tls(&self, n: &str) {
        let to = self.path(&format!("hosts/{n}/etc/tls"));
        warden_files::ensure_private_dir(&to).expect("tls dir");
        for f in [
            "server.crt",
            "server.key",
            "node.crt",
            "node.key",
            "client-ca.pem",
            "ca.pem",
        ] {
            std::fs::copy(self.path(&format!("tls/{n}/{f}")), to.join(f)).expect("install");
        }
    }

    /// `warden server config` for node `n`, with the host's directories.
    fn server_config(&self, n: &str) {
        let host = format!("hosts/{n}");
        for d in ["raft", "log"] {
            warden_files::ensure_private_dir(&self.path(&format!("{host}/{d}"))).expect("dir");
        }
        self.warden(
            &[
                "server",
                "config",
                "--spec",
                "warden.toml",
                "--env",
                ENV,
                "--node",
                n,
                "--out",
                &self.p(&format!("{host}/etc/openbao")),
                "--config-dir",
                &self.p(&format!("{host}/etc")),
                "--data-dir",
                &self.p(&format!("{host}/raft")),
                "--audit-dir",
                &self.p(&format!("{host}/log")),
                "--bao",
                path_str(&self.bao),
            ],
            false,
        );
    }

    /// Starts node `n` from its generated configuration (systemd's part, not tested).
    fn start(&mut self, n: &str) {
        let mut command = Command::new(&self.bao);
        command
            .arg("server")
            .arg(format!(
                "-config={}",
                self.p(&format!("hosts/{n}/etc/openbao/{n}.hcl"))
            ))
            .current_dir(self.path(&format!("hosts/{n}")));
        let log = self.path(&format!("hosts/{n}/server.log"));
        self.servers
            .push((n.to_owned(), RunningAgent::spawn(command, &log)));
    }

    fn stop_all(&mut self) {
        for (_, s) in self.servers.drain(..) {
            s.terminate(Duration::from_secs(20));
        }
    }

    async fn wait_reachable(&self, port: u16) {
        let cfg = warden_bao::ClientConfig::from_address(&format!("https://127.0.0.1:{port}"))
            .and_then(|c| c.with_ca_file(self.path("ca/root.crt")))
            .and_then(|c| {
                c.with_client_cert_files(
                    self.path("tls/clients/ceremony.crt"),
                    self.path("tls/clients/ceremony.key"),
                )
            })
            .expect("client config")
            .with_retry(
                warden_bao::RetryPolicy::default().with_startup_timeout(Duration::from_secs(30)),
            );
        let logs: Vec<String> = self.servers.iter().map(|(_, s)| s.log()).collect();
        warden_bao::Client::new(cfg)
            .expect("client")
            .wait_reachable()
            .await
            .unwrap_or_else(|e| panic!("{e}; logs:\n{}", logs.join("\n---\n")));
    }

    /// `warden unseal` by `who` (each custodian, one after the other).
    fn unseal(&self, who: &[&str], share_dir: &str) -> Value {
        let mut last = Value::Null;
        for c in who {
            last = self.warden(
                &[
                    "unseal",
                    "--spec",
                    "warden.toml",
                    "--state-dir",
                    "state",
                    "--env",
                    ENV,
                    "--share",
                    &format!("{share_dir}/{c}.{ENV}.share.age"),
                    "--identity",
                    &format!("ids/{c}.key"),
                ],
                false,
            );
        }
        last
    }

    /// An operator's client (certificate login) on node `port`.
    async fn operator_client(&self, port: u16) -> warden_bao::Client {
        let cfg = warden_bao::ClientConfig::from_address(&format!("https://127.0.0.1:{port}"))
            .and_then(|c| c.with_ca_file(self.path("ca/root.crt")))
            .and_then(|c| {
                c.with_client_cert_files(
                    self.path("ops/alice.prod.crt"),
                    self.path("ops/alice.prod.key"),
                )
            })
            .expect("client config");
        let client = warden_bao::Client::new(cfg).expect("client");
        client.login_with_cert_on_demand(warden_spec::naming::operator::OPERATOR_AUTH_MOUNT, None);
        client
    }
}

/// Waits until the sealed nodes on `ports` have joined (their `retry_join` fetched the leader's
/// challenge: they report initialised with the cluster's threshold), which takes a few seconds
/// after the leader is unsealed. Shares offered before are refused, so custodians unseal a
/// joining node once it shows `initialized` in `warden unseal`'s report.
async fn joined(rb: &Runbook, ports: &[u16]) {
    wait_seal(rb, ports, |st| {
        (st.initialized && st.threshold > 0) || !st.sealed
    })
    .await;
}

/// Waits until the nodes on `ports` are unsealed: a joining node takes its shares, then
/// joins and unseals in the background, so `unseal` reports it still sealed at first.
async fn unsealed(rb: &Runbook, ports: &[u16]) {
    wait_seal(rb, ports, |st| !st.sealed).await;
}

/// Polls each node's seal status until `done` holds (30 s at most).
async fn wait_seal(rb: &Runbook, ports: &[u16], done: impl Fn(&warden_bao::SealStatus) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for port in ports {
        let cfg = warden_bao::ClientConfig::from_address(&format!("https://127.0.0.1:{port}"))
            .and_then(|c| c.with_ca_file(rb.path("ca/root.crt")))
            .and_then(|c| {
                c.with_client_cert_files(
                    rb.path("tls/clients/ceremony.crt"),
                    rb.path("tls/clients/ceremony.key"),
                )
            })
            .expect("client config");
        let client = warden_bao::Client::new(cfg).expect("client");
        loop {
            let st = client.seal_status().await.expect("seal status");
            if done(&st) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node on {port} did not join: {st:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// A TLS handshake (and `sys/seal-status`) on `port` with the probe certificate from the PKI
/// intermediate.
async fn probe(rb: &Runbook, port: u16) -> Result<(), warden_bao::Error> {
    let cfg = warden_bao::ClientConfig::from_address(&format!("https://127.0.0.1:{port}"))
        .and_then(|c| c.with_ca_file(rb.path("ca/root.crt")))
        .and_then(|c| c.with_client_cert_files(rb.path("probe.crt"), rb.path("probe.key")))?;
    warden_bao::Client::new(cfg)?
        .seal_status()
        .await
        .map(|_| ())
}

/// Waits until the raft peer set has `want` voters.
async fn voters(client: &warden_bao::Client, want: usize) -> Vec<warden_bao::RaftServer> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let servers = client
            .raft_configuration()
            .await
            .expect("raft configuration");
        if servers.iter().filter(|s| s.voter).count() == want || Instant::now() > deadline {
            return servers;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

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
    intermediate(&mut rb).await;
    trust_operators(&mut rb, &nodes).await;
    bootstrap_and_apply(&mut rb);
    add_node(&mut rb, &custodians).await;
    replace_custodian(&mut rb, &custodians);
    rb.stop_all();
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
        &[
            "custody",
            "init",
            "--spec",
            "warden.toml",
            "--state-dir",
            "state",
            "--env",
            ENV,
            "--out",
            "ceremony",
        ],
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
async fn intermediate(rb: &mut Runbook) {
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
    admin.set_token(root);
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
            &serde_json::json!({ "common_name": "sighup-probe", "ttl": "1h" }),
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
        &[
            "break-glass",
            "open",
            "--spec",
            "warden.toml",
            "--state-dir",
            "state",
            "--env",
            ENV,
            "--reason",
            "runbook: replace custodian carol",
            "--ttl",
            "10m",
            "--share",
            "ceremony/alice.prod.share.age",
            "--identity",
            "ids/alice.key",
            "--share",
            "ceremony/bob.prod.share.age",
            "--identity",
            "ids/bob.key",
            "--token-file",
            "bg.token",
        ],
        false,
    );
    let rekey = rb.warden(
        &[
            "custody",
            "rekey",
            "--spec",
            "warden.toml",
            "--state-dir",
            "state",
            "--env",
            ENV,
            "--out",
            "rekey-2",
            "--share",
            "ceremony/alice.prod.share.age",
            "--identity",
            "ids/alice.key",
            "--share",
            "ceremony/bob.prod.share.age",
            "--identity",
            "ids/bob.key",
            "--token-file",
            "bg.token",
        ],
        false,
    );
    assert!(
        rb.path(&format!("rekey-2/dave.{ENV}.share.age")).exists(),
        "{rekey}"
    );
    rb.warden(
        &[
            "break-glass",
            "close",
            "--spec",
            "warden.toml",
            "--state-dir",
            "state",
            "--env",
            ENV,
        ],
        true,
    );
    // Carol's old share is no longer a share of this environment.
    rb.refused(
        &[
            "unseal",
            "--spec",
            "warden.toml",
            "--state-dir",
            "state",
            "--env",
            ENV,
            "--share",
            "ceremony/carol.prod.share.age",
            "--identity",
            "ids/carol.key",
        ],
        "carol",
    );
    rb.phase("custodian carol replaced by dave (break-glass, rekey, close)");
}
