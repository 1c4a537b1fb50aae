//! Raft HA through a leader crash, against a real three-node OpenBao cluster per environment
//! (`warden lab up --nodes 3`: the same generator, `retry_join` and unseal as production).
//!
//! Sequential KV writes, each one counted only once OpenBao acknowledged it; `kill -9` of the
//! leader; a new leader is elected; writes resume through the same client, which moves to a
//! live node by itself; every acknowledged write is read back; the killed node restarts,
//! rejoins and catches up (its applied raft index reaches the leader's committed index). The
//! failover time is printed next to the raft election settings in force, never asserted
//! beyond a generous bound.
//!
//! A running agent, enrolled with every node address, keeps renewing its certificate through a
//! leader kill: same process, same enrolment. And `warden server config` turns a spec node into
//! files a real `bao server` runs.

#![allow(clippy::print_stderr)] // the figures go to the test log on purpose

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use warden_bao::{Client, KvData, MountOptions, SecretValue};
use warden_testkit::LabEnv;

const ENV: &str = "test";
const NODES: u8 = 3;
/// Warden's KV v2 mount (the spec's default): one an operator identity may mount and write.
const KV: &str = "kvv2";
/// Acknowledged writes before the kill, and again after the first one that follows it.
const WRITES_PER_PHASE: usize = 20;
/// Far beyond any election at the settings in force: only a cluster that never recovers fails.
const RECOVERY_BOUND: Duration = Duration::from_secs(60);

/// Sequential writes of `kvv2/ha/w/<n>` = n through one client, counting the acknowledged ones.
struct Writer<'a> {
    client: &'a Client,
    next: u64,
    acked: Vec<u64>,
    failed: usize,
    last_error: Option<String>,
}

impl<'a> Writer<'a> {
    fn new(client: &'a Client) -> Self {
        Self {
            client,
            next: 0,
            acked: Vec::new(),
            failed: 0,
            last_error: None,
        }
    }

    /// One write; `true` when OpenBao acknowledged it. A write without an answer may or may
    /// not have landed, so it is not counted (and never checked for).
    async fn write_one(&mut self) -> bool {
        let n = self.next;
        self.next += 1;
        let mut data = KvData::new();
        data.insert("n", SecretValue::text(n.to_string()));
        let kv = self.client.kv2(KV);
        match kv.write(&format!("ha/w/{n}"), &data, None).await {
            Ok(_) => {
                self.acked.push(n);
                true
            }
            Err(e) => {
                self.last_error = Some(e.to_string());
                self.failed += 1;
                false
            }
        }
    }

    /// Writes until `count` more are acknowledged; returns when the first of them was.
    async fn until_acked(&mut self, count: usize) -> Instant {
        let deadline = Instant::now() + RECOVERY_BOUND;
        let target = self.acked.len() + count;
        let mut first = None;
        while self.acked.len() < target {
            assert!(
                Instant::now() < deadline,
                "no write acknowledged for {RECOVERY_BOUND:?} ({} failed so far, the last: {:?})",
                self.failed,
                self.last_error
            );
            if self.write_one().await {
                first.get_or_insert_with(Instant::now);
            } else {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        first.expect("at least one write")
    }
}

/// The raft `performance_multiplier` the node's generated configuration runs with.
fn multiplier_in_force(lab: &LabEnv, node: u8) -> u8 {
    let file = lab.lab().layout().env(ENV).node(node).server_config();
    let text = std::fs::read_to_string(&file).expect("read the server configuration");
    text.lines()
        .find_map(|l| l.trim().strip_prefix("performance_multiplier"))
        .and_then(|v| v.trim_start_matches([' ', '=']).trim().parse().ok())
        .unwrap_or(0)
}

async fn wait_caught_up(lab: &LabEnv, node: u8, leader: u8) -> (u64, u64) {
    let deadline = Instant::now() + RECOVERY_BOUND;
    let target = lab
        .node_client(ENV, leader)
        .leader()
        .await
        .expect("sys/leader on the leader")
        .raft_committed_index;
    loop {
        if let Ok(l) = lab.node_client(ENV, node).leader().await
            && l.raft_applied_index >= target
        {
            return (target, l.raft_applied_index);
        }
        assert!(
            Instant::now() < deadline,
            "node {node} did not reach applied index {target} within {RECOVERY_BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_under_write_load_keeps_every_acknowledged_write() {
    let lab = LabEnv::start_with_nodes(&[ENV], NODES).await;
    let old_leader = lab.leader(ENV).await.expect("a leader once `up` returns");
    let status = lab.lab().status().await;
    let env = &status[0];
    assert!(env.healthy(), "{env:#?}");
    assert_eq!(env.nodes.len(), usize::from(NODES));
    assert_eq!(
        env.nodes.iter().filter(|n| n.role == "leader").count(),
        1,
        "{:#?}",
        env.nodes
    );
    assert_eq!(env.peers.len(), usize::from(NODES), "{:#?}", env.peers);
    assert!(env.peers.iter().all(|p| p.voter), "{:#?}", env.peers);

    let admin = lab.node_client(ENV, old_leader);
    admin
        .enable_secrets_engine(KV, "kv", &MountOptions::kv_v2())
        .await
        .expect("mount the KV v2 engine");

    // Warden's client with every node address, as the CLI and agents build it: it fails over
    // by itself; nothing here restarts or rebuilds it.
    let client = lab.client(ENV);
    assert_eq!(client.addresses().len(), usize::from(NODES));
    let mut writer = Writer::new(&client);
    writer.until_acked(WRITES_PER_PHASE).await;

    lab.kill_node(ENV, old_leader);
    let killed_at = Instant::now();
    let first_after = writer.until_acked(WRITES_PER_PHASE).await;
    let failover = first_after - killed_at;

    let new_leader = lab.leader(ENV).await.expect("a new leader");
    assert_ne!(new_leader, old_leader, "the killed node cannot lead");
    let status = lab.lab().status().await;
    let killed = &status[0].nodes[usize::from(old_leader - 1)];
    assert_eq!(killed.role, "down", "{killed:#?}");
    assert!(!status[0].healthy());

    // Every acknowledged write is there, read on the new leader.
    let reader = lab.node_client(ENV, new_leader);
    let kv = reader.kv2(KV);
    let mut missing = BTreeMap::new();
    for n in &writer.acked {
        match kv.read(&format!("ha/w/{n}"), None).await {
            Ok(v) if v.data.get("n").map(|s| s.expose().clone()) == Some(n.to_string().into()) => {}
            other => {
                missing.insert(*n, format!("{other:?}"));
            }
        }
    }
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");

    lab.restart_node(ENV, old_leader).await;
    let rejoin_started = Instant::now();
    let (target, applied) = wait_caught_up(&lab, old_leader, new_leader).await;
    let caught_up = rejoin_started.elapsed();
    let status = lab.lab().status().await;
    assert!(status[0].healthy(), "{:#?}", status[0]);
    assert_eq!(status[0].nodes[usize::from(old_leader - 1)].role, "standby");

    let settings = warden_node::RaftTuning {
        performance_multiplier: multiplier_in_force(&lab, new_leader),
    }
    .timeouts();
    eprintln!(
        "ha figures: failover (kill -9 of the leader -> first acknowledged write) {:.2}s, \
         now on {}; \
         writes acknowledged {}, unacknowledged {}; restarted node caught up to index {target} \
         (applied {applied}) in {:.2}s; raft in force: performance_multiplier {}, heartbeat \
         {:?}, election {:?}, leader lease {:?}",
        failover.as_secs_f64(),
        client.address(),
        writer.acked.len(),
        writer.failed,
        caught_up.as_secs_f64(),
        settings.multiplier,
        settings.heartbeat,
        settings.election,
        settings.leader_lease,
    );
}

/// The binary under test.
const WARDEN: warden_testkit::cli::Cli =
    warden_testkit::cli::Cli::new(env!("CARGO_BIN_EXE_warden"));

/// `warden server config` turns a spec node into files a real `bao server` runs: it starts,
/// listens with mTLS on the spec's address and answers `sys/health` (uninitialised). A node the
/// spec does not declare is refused with the ones it does, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_config_from_the_spec_runs_a_real_node() {
    // A lab only for its TLS material: an environment's listener certificate for 127.0.0.1,
    // its client CA, the root, and a client certificate the listener accepts.
    let lab = LabEnv::start(&[ENV]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dirs = warden_testkit::NodeDirs::from_lab(&lab, ENV, tmp.path());
    let (etc, data, out) = (&dirs.etc, &dirs.data, &dirs.out);
    let ports = warden_lab::process::free_ports(4).expect("free ports");
    let spec = tmp.path().join("warden.toml");
    std::fs::write(&spec, warden_testkit::prod_nodes_spec(&ports)).expect("write the spec");
    let bao = warden_lab::process::bao_binary().expect("bao");
    let path = |p: &std::path::Path| p.display().to_string();
    let base = [
        "server",
        "config",
        "--spec",
        &path(&spec),
        "--env",
        "prod",
        "--bao",
        &path(&bao),
        "-o",
        "json",
    ];
    let dir_args = dirs.args();
    let base = [
        &base[..],
        &dir_args.iter().map(String::as_str).collect::<Vec<_>>(),
    ]
    .concat();

    let refused = WARDEN
        .invoke(&[&base[..], &["--node", "prod-9"]].concat())
        .run();
    assert_ne!(refused.code, Some(0));
    assert!(
        refused.stderr.contains("no node \"prod-9\""),
        "{}",
        refused.stderr
    );
    assert!(
        refused
            .stderr
            .contains("hint: --node is one of: prod-1, prod-2"),
        "{}",
        refused.stderr
    );
    assert!(!out.exists(), "nothing is written for a refused node");

    let run = WARDEN
        .invoke(&[&base[..], &["--node", "prod-1"]].concat())
        .run();
    let written = run.ok().json();
    assert_eq!(written["runs_as"], "warden-test");
    assert_eq!(written["raft"]["multiplier"], 1);
    assert_eq!(
        written["peers"],
        serde_json::json!([format!("https://127.0.0.1:{}", ports[2])])
    );
    let config = out.join("prod-1.hcl");
    let unit = std::fs::read_to_string(out.join("warden-openbao-prod-1.service")).expect("unit");
    assert!(unit.contains("\nUser=warden-test\n"), "{unit}");
    assert!(
        unit.contains(&format!(
            "ExecStart={} server -config={}",
            bao.display(),
            etc.join("openbao/prod-1.hcl").display()
        )),
        "{unit}"
    );

    // The generated configuration, run by the real server.
    let mut command = std::process::Command::new(&bao);
    command
        .arg("server")
        .arg(format!("-config={}", config.display()))
        .current_dir(tmp.path());
    let server = warden_testkit::RunningAgent::spawn(command, &tmp.path().join("server.log"));
    let cfg = warden_bao::ClientConfig::from_address(&format!("https://127.0.0.1:{}", ports[0]))
        .and_then(|c| c.with_ca_file(etc.join("tls/ca.pem")))
        .and_then(|c| c.with_client_cert_files(etc.join("tls/node.crt"), etc.join("tls/node.key")))
        .expect("client config")
        .with_retry(
            warden_bao::RetryPolicy::default().with_startup_timeout(Duration::from_secs(30)),
        );
    let health = Client::new(cfg).expect("client").wait_reachable().await;
    let health = health.unwrap_or_else(|e| panic!("{e}; server log:\n{}", server.log()));
    assert!(!health.initialized && health.sealed, "{health:?}");
    let stored = data.read_dir().expect("data directory").count();
    assert!(stored > 0, "raft storage lives in --data-dir");
}

/// The serial of the certificate the agent delivered, if any.
fn serial_of(dir: &std::path::Path) -> Option<String> {
    let pem = std::fs::read_to_string(dir.join("cert.pem")).ok()?;
    Some(warden_pki::parse_pem_bundle(&pem).ok()?[0].serial.clone())
}

/// Waits until the agent has delivered `count` certificates not in `seen`, adding them.
async fn renewals(
    tls: &std::path::Path,
    seen: &mut Vec<String>,
    count: usize,
    agent: &mut warden_testkit::RunningAgent,
) {
    let deadline = Instant::now() + RECOVERY_BOUND;
    let mut new = 0;
    while new < count {
        agent.assert_alive();
        if let Some(serial) = serial_of(tls)
            && !seen.contains(&serial)
        {
            seen.push(serial);
            new += 1;
        }
        assert!(
            Instant::now() < deadline,
            "{new} of {count} renewals within {RECOVERY_BOUND:?}; agent log:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A running agent keeps renewing through a leader kill, without a restart or a new enrolment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_keep_renewing_through_a_leader_kill() {
    let lab = LabEnv::start_with_nodes(&[ENV], NODES).await;
    let dir = warden_testkit::cli::path_str(lab.dir()).to_owned();
    let spec = warden_testkit::EXAMPLE_SPEC;
    WARDEN.ok(&["apply", "--spec", spec, "--lab", &dir, "--env", ENV]);
    let root = tempfile::tempdir().expect("tempdir");
    let root_dir = warden_testkit::cli::path_str(root.path()).to_owned();
    WARDEN.ok(&[
        "identity",
        "enroll",
        "billing",
        "--spec",
        spec,
        "--lab",
        &dir,
        "--env",
        ENV,
        "--root-dir",
        &root_dir,
    ]);
    let id = root.path().join(ENV).join("billing");
    let path = id.join("agent.toml");
    let mut cfg = warden_enroll::AgentConfig::load(&path).expect("enrolled agent.toml");
    assert_eq!(
        cfg.openbao
            .addresses
            .iter()
            .map(|a| a.trim_end_matches('/'))
            .collect::<Vec<_>>(),
        lab.addresses(ENV),
        "enrolment lists every node"
    );
    // A one-minute certificate renewed at 10 % of its life: renewals follow each other, so
    // a pause in them is the leader kill's doing.
    let op = lab.client(ENV);
    let role = "pki_int/roles/billing";
    let mut body = op.read(role).await.expect("role").data.expect("role data");
    body["ttl"] = serde_json::json!(60);
    body["max_ttl"] = serde_json::json!(60);
    op.write(role, &body, warden_bao::Idempotent::Yes)
        .await
        .expect("tune the role");
    cfg.renewal.fraction = 0.1;
    cfg.renewal.jitter = 0.0;
    cfg.renewal.margin = "1s".to_owned();
    cfg.health = None;
    cfg.control = None;
    cfg.outputs.truncate(1);
    cfg.outputs[0].ttl = Some("1m".to_owned());
    std::fs::write(&path, cfg.to_toml(&path).expect("toml")).expect("write agent.toml");

    let log = id.join("agent.log");
    let mut agent = warden_testkit::RunningAgent::spawn(
        WARDEN.command(&[
            "-v",
            "agent",
            "--config",
            warden_testkit::cli::path_str(&path),
        ]),
        &log,
    );
    let pid = agent.pid();
    let tls = id.join("out/tls");
    let mut seen = Vec::new();
    renewals(&tls, &mut seen, 3, &mut agent).await;

    let leader = lab.leader(ENV).await.expect("a leader");
    lab.kill_node(ENV, leader);
    let killed_at = Instant::now();
    let before = seen.len();
    renewals(&tls, &mut seen, 3, &mut agent).await;
    let gap = killed_at.elapsed();

    agent.assert_alive();
    assert_eq!(agent.pid(), pid, "the same agent process");
    eprintln!(
        "ha agent figures: {} renewals before the kill of node {leader}, 3 more within {:.2}s after it, \
         same process, never re-enrolled",
        before,
        gap.as_secs_f64(),
    );
}

/// `lab up --nodes` outside 1..=7 is refused before anything is created.
#[test]
fn lab_up_refuses_a_node_count_it_cannot_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("lab");
    for n in ["0", "8"] {
        let run = WARDEN
            .invoke(&[
                "lab",
                "up",
                "--no-spec",
                "--no-agents",
                "--nodes",
                n,
                "--dir",
            ])
            .arg(&dir)
            .run();
        assert_ne!(run.code, Some(0), "{}", run.all());
        assert!(
            run.stderr.contains(&format!(
                "--nodes {n}: an environment runs 1 to 7 OpenBao nodes"
            )),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("hint: "), "{}", run.stderr);
        assert!(!dir.exists(), "nothing is created for --nodes {n}");
    }
}
