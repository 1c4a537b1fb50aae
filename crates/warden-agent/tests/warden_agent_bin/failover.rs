//! Test 3 of `warden_agent_bin`: `billing` enrolled through an operator client that knows two
//! node addresses, the first one dead; the agent lists both, logs in and delivers through the
//! live one, and names it in its status, `/health` and `/metrics`.

use std::net::SocketAddr;

use serde_json::{Value, json};
use warden_bao::Idempotent;
use warden_testkit::cli::path_str;
use warden_testkit::{LabEnv, Poll};

use super::{
    AGENT, LIMIT, apply_and_enroll_with, check_certificate, get_within, read, write_config,
};

/// An `https://` address on loopback that nobody listens on: a port the kernel handed out and
/// that was closed again.
fn dead_address() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("https://127.0.0.1:{port}")
}

/// An operator client for the lab's `test` environment that knows `addresses`, in order: the
/// lab's operator certificate and CA; it logs in with that certificate as the lab operator on
/// first use (the lab's root token is revoked at the end of bootstrap).
async fn cluster_operator(lab: &LabEnv, addresses: &[&str]) -> warden_bao::Client {
    let layout = lab.lab().layout().env("test");
    let cfg = warden_bao::ClientConfig::with_addresses(addresses)
        .and_then(|c| c.with_ca_file(layout.ca_bundle()))
        .and_then(|c| c.with_client_cert_files(layout.operator_cert(), layout.operator_key()))
        .expect("the operator's credentials");
    let client = warden_bao::Client::new(cfg).expect("the operator client");
    client.login_with_cert_on_demand(
        warden_spec::naming::operator::OPERATOR_AUTH_MOUNT,
        warden_spec::naming::operator::LAB_OPERATOR,
    );
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_first_node_is_passed_over_without_a_restart() {
    let lab = LabEnv::start(&["test"]).await;
    let root = tempfile::tempdir().expect("tempdir");
    let live = lab.lab().env("test").expect("test env").address();
    let dead = dead_address();

    // Enrollment through a client that knows both nodes writes both, in order.
    let operator = cluster_operator(&lab, &[&dead, &live]).await;
    let dir = apply_and_enroll_with(&lab, &operator, root.path()).await;
    assert_eq!(
        operator.address().as_str().trim_end_matches('/'),
        live,
        "the operator's client failed over to the live node"
    );
    let enrolled = warden_agent::Config::load(&dir.join("agent.toml")).expect("agent.toml");
    let trimmed: Vec<&str> = enrolled
        .openbao
        .addresses
        .iter()
        .map(|a| a.trim_end_matches('/'))
        .collect();
    assert_eq!(
        trimmed,
        [dead.as_str(), live.as_str()],
        "every node, in order"
    );

    // The agent itself, dead node first, long-running with its endpoints.
    let secret = json!({ "user": "failover-test" });
    lab.client("test")
        .write(
            "kvv2/data/billing/config",
            &json!({ "data": secret }),
            Idempotent::Yes,
        )
        .await
        .expect("write the KV secret");
    let reloads = dir.join("reloads.log");
    let config = write_config(&dir, &live, &reloads);
    let text = read(&config).replacen(
        &format!("address = \"{live}\""),
        &format!("addresses = [\"{dead}\", \"{live}\"]"),
        1,
    );
    assert!(text.contains("addresses = ["), "{text}");
    std::fs::write(&config, text).expect("rewrite the agent config");
    let log = dir.join("agent.log");
    let agent =
        warden_testkit::RunningAgent::spawn(AGENT.command(&["--config", path_str(&config)]), &log);
    let out_dir = dir.join("out");
    Poll::new(LIMIT)
        .showing_log(&log)
        .until_true("every output delivered", || {
            ["tls/fullchain.pem", "config.json", "chain.pem"]
                .iter()
                .all(|f| out_dir.join(f).exists())
        });
    check_certificate(&out_dir.join("tls"), &read(&dir.join("trust/ca.pem")));
    let rendered: Value = serde_json::from_str(&read(&out_dir.join("config.json"))).expect("JSON");
    assert_eq!(rendered, secret);

    // Where it talks to, as its owner, every local user and Prometheus see it.
    let socket = dir.join("state/control.sock");
    let status = warden_agent::control::status(&socket)
        .await
        .expect("status");
    assert_eq!(status.server.as_deref(), Some(live.as_str()), "{status:?}");
    assert!(status.auth.logged_in, "{status:?}");
    assert!(
        warden_agent::control::describe(&status).contains(&format!("server: {live}")),
        "{}",
        warden_agent::control::describe(&status)
    );
    let addr: SocketAddr = read(&dir.join("state/health.addr"))
        .trim()
        .parse()
        .expect("health address");
    let (_, health) = get_within(addr, "/health", LIMIT);
    assert!(
        health.contains(&format!("\"server\": \"{live}\"")),
        "{health}"
    );
    let (_, metrics) = get_within(addr, "/metrics", LIMIT);
    assert!(
        metrics.contains(&format!(
            "warden_agent_openbao_server_info{{server=\"{live}\"}} 1"
        )),
        "{metrics}"
    );
    let status = agent.terminate(LIMIT);
    assert!(status.success(), "{status:?}");
}
