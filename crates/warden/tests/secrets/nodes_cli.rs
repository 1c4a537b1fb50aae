//! A spec whose environment lists its raft nodes: the CLI builds its client with every node's
//! address and fails over from a dead first node to the live one (the lab's server), without
//! `--lab` and without `VAULT_ADDR`; when no node answers, the error names each of them.

use serde_json::json;
use warden_testkit::cli::path_str;
use warden_testkit::dead_address;
use warden_testkit::identity::CiSigner;

use super::support::{Platform, spec_text};
use crate::WARDEN;

/// The platform spec with `test` served by `nodes` (API addresses in order) and trusting the
/// lab's CA, instead of taking both from `--lab`.
fn spec_with_nodes(ca_bundle: &str, nodes: &[&str]) -> String {
    let mut tables = String::new();
    for (i, address) in nodes.iter().enumerate() {
        tables.push_str(&format!(
            "\n[[environments.test.nodes]]\nname = \"test-{i}\"\naddress = \"{address}\"\ncluster_address = \"https://127.0.0.9:{}\"\n",
            9000 + i
        ));
    }
    spec_text("ci-signing.pem").replacen(
        "app_root      = \"/srv/warden/test\"\n",
        &format!("app_root      = \"/srv/warden/test\"\nca_cert       = \"{ca_bundle}\"\n{tables}"),
        1,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_nodes_fail_over_from_a_dead_node_to_the_live_one() {
    let p = Platform::start(&CiSigner::generate().public_pem()).await;
    let layout = p.lab.lab().layout().env("test");
    let live = p.lab.lab().env("test").expect("test env").address();
    let (dead, dead2) = (dead_address("https"), dead_address("https"));
    let ca = layout.ca_bundle();
    let spec = p.path("nodes.toml");
    std::fs::write(&spec, spec_with_nodes(path_str(&ca), &[&dead, &live])).expect("spec");

    // No token at all: the CLI presents the lab operator's own certificate and logs in with it
    // as that operator (cert auth) — the lab's root token is gone.
    let (cert, key) = (layout.operator_cert(), layout.operator_key());
    let warden = |spec: &std::path::Path, args: &[&str], stdin: Option<&[u8]>| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--spec", path_str(spec), "--env", "test", "-o", "json"]);
        let mut cmd = WARDEN
            .invoke(&all)
            .env("VAULT_CLIENT_CERT", &cert)
            .env("VAULT_CLIENT_KEY", &key);
        if let Some(input) = stdin {
            cmd = cmd.stdin(input);
        }
        cmd.run()
    };

    let value = json!({ "mode": "through-failover-6b1d" }).to_string();
    let put = warden(
        &spec,
        &["secret", "put", "billing", "config"],
        Some(value.as_bytes()),
    );
    let r = put.ok().json();
    assert_eq!(r["version"], 1, "{r}");
    let got = warden(
        &spec,
        &["secret", "get", "billing", "config", "--reveal"],
        None,
    );
    assert_eq!(got.ok().json()["values"]["mode"], "through-failover-6b1d");

    // No node answers: the error lists every address it tried.
    let down = p.path("down.toml");
    std::fs::write(&down, spec_with_nodes(path_str(&ca), &[&dead, &dead2])).expect("spec");
    let run = warden(&down, &["secret", "get", "billing", "config"], None);
    run.expect_code(1)
        .says("all 2 OpenBao nodes unreachable")
        .says(&dead)
        .says(&dead2);
}
