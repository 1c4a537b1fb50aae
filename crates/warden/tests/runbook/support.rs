//! The runbook test's workstation, hosts and servers, and its waits.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use warden_testkit::RunningAgent;
use warden_testkit::cli::{Cli, path_str, text};

pub(crate) const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));
pub(crate) const ENV: &str = "prod";
pub(crate) const CUSTODIANS: [&str; 3] = ["alice", "bob", "carol"];

/// The operator's workstation (`dir`), the nodes' hosts (`dir/hosts/<node>`), and the running
/// servers (killed on drop, so a panic leaves no process behind).
pub(crate) struct Runbook {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) bao: PathBuf,
    pub(crate) ports: Vec<u16>,
    pub(crate) servers: Vec<(String, RunningAgent)>,
    pub(crate) started: Instant,
}

impl Runbook {
    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub(crate) fn p(&self, rel: &str) -> String {
        path_str(&self.path(rel)).to_owned()
    }

    pub(crate) fn phase(&mut self, what: &str) {
        eprintln!("figure: {what}: {} ms", self.started.elapsed().as_millis());
        self.started = Instant::now();
    }

    /// `warden ARGS -o json`, with the operator's certificate when `operator` is set.
    pub(crate) fn warden<S: AsRef<str> + std::fmt::Debug>(
        &self,
        args: &[S],
        operator: bool,
    ) -> Value {
        let mut a: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
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
    pub(crate) fn refused<S: AsRef<str>>(&self, args: &[S], message: &str) {
        let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        let out = WARDEN
            .invoke(&args)
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

    pub(crate) fn spec(&self, nodes: usize, custodians: &[(&str, String)]) {
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
    pub(crate) fn install_tls(&self, n: &str) {
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
    pub(crate) fn server_config(&self, n: &str) {
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
    pub(crate) fn start(&mut self, n: &str) {
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

    pub(crate) fn stop_all(&mut self) {
        for (_, s) in self.servers.drain(..) {
            s.terminate(Duration::from_secs(20));
        }
    }

    pub(crate) async fn wait_reachable(&self, port: u16) {
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
    pub(crate) fn unseal(&self, who: &[&str], share_dir: &str) -> Value {
        let mut last = Value::Null;
        for c in who {
            last = self.warden(&prod_step(&["unseal"], &[], share_dir, &[c]), false);
        }
        last
    }

    /// An operator's client (certificate login) on node `port`.
    pub(crate) async fn operator_client(&self, port: u16) -> warden_bao::Client {
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
/// `CMD --spec warden.toml --state-dir state --env prod ARGS`, then `--share` and
/// `--identity` of each custodian in `with` (their shares in `share_dir`): the shape of every
/// step run from the workstation on the production environment's custody state.
pub(crate) fn prod_step(
    cmd: &[&str],
    args: &[&str],
    share_dir: &str,
    with: &[&str],
) -> Vec<String> {
    let target = [
        "--spec",
        "warden.toml",
        "--state-dir",
        "state",
        "--env",
        ENV,
    ];
    let mut v: Vec<String> = [cmd, &target[..], args]
        .concat()
        .into_iter()
        .map(str::to_owned)
        .collect();
    for c in with {
        v.extend([
            "--share".to_owned(),
            format!("{share_dir}/{c}.{ENV}.share.age"),
            "--identity".to_owned(),
            format!("ids/{c}.key"),
        ]);
    }
    v
}

pub(crate) async fn joined(rb: &Runbook, ports: &[u16]) {
    wait_seal(rb, ports, |st| {
        (st.initialized && st.threshold > 0) || !st.sealed
    })
    .await;
}

/// Waits until the nodes on `ports` are unsealed: a joining node takes its shares, then
/// joins and unseals in the background, so `unseal` reports it still sealed at first.
pub(crate) async fn unsealed(rb: &Runbook, ports: &[u16]) {
    wait_seal(rb, ports, |st| !st.sealed).await;
}

/// Polls each node's seal status until `done` holds (30 s at most).
pub(crate) async fn wait_seal(
    rb: &Runbook,
    ports: &[u16],
    done: impl Fn(&warden_bao::SealStatus) -> bool,
) {
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
pub(crate) async fn probe(rb: &Runbook, port: u16) -> Result<(), warden_bao::Error> {
    let cfg = warden_bao::ClientConfig::from_address(&format!("https://127.0.0.1:{port}"))
        .and_then(|c| c.with_ca_file(rb.path("ca/root.crt")))
        .and_then(|c| c.with_client_cert_files(rb.path("probe.crt"), rb.path("probe.key")))?;
    warden_bao::Client::new(cfg)?
        .seal_status()
        .await
        .map(|_| ())
}

/// Waits until the raft peer set has `want` voters.
pub(crate) async fn voters(
    client: &warden_bao::Client,
    want: usize,
) -> Vec<warden_bao::RaftServer> {
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
