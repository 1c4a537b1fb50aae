//! Rekey: a custodian replaced through OpenBao's share rotation; old shares stop working.

use std::path::PathBuf;

use secrecy::ExposeSecret;
use serde_json::Value;
use warden_testkit::BareBao;
use warden_testkit::cli::{path_str, text};

use crate::support::*;

fn write_spec(w: &World, server: &BareBao, custodians: &[(&str, String)]) {
    let spec = format!(
        "version = 1\n\n{}",
        env_block("prod", server.addr(), &server.ca_path(), 2, custodians)
    );
    std::fs::write(w.path("warden.toml"), spec).expect("spec");
}

fn share(dir: &std::path::Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.prod.share.age"))
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekey_replaces_a_custodian_and_old_shares_stop_working() {
    install_crypto_provider();
    let server = BareBao::start().await;
    let mut w = World::new();
    let three: Vec<(&str, String)> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| (*n, w.identity(n)))
        .collect();
    write_spec(&w, &server, &three);
    let gen1 = w.path("out/gen1");
    w.ok(&["custody", "init", "--env", "prod", "--out", path_str(&gen1)]);
    for n in ["alice", "bob"] {
        let args = w.unseal_args("prod", &share(&gen1, n), n);
        w.ok(&as_strs(&args));
    }
    let root = warden_custody::root::open_bootstrap_token(
        &gen1.join("root-token.prod.age"),
        "prod",
        &w.open_id("carol"),
    )
    .expect("root token");

    // carol leaves, dave joins (with an identity made by `warden custody keygen`): the spec
    // changes, two current custodians rekey.
    let made = WARDEN.run(&[
        "custody",
        "keygen",
        "--identity",
        path_str(&w.id_path("dave")),
        "-o",
        "json",
    ]);
    assert!(made.status.success(), "keygen: {}", text(&made.stderr));
    let made: Value = serde_json::from_slice(&made.stdout).expect("keygen JSON");
    let dave = made["recipient"].as_str().expect("recipient").to_owned();
    assert_eq!(
        warden_testkit::files::mode(&w.id_path("dave")) & 0o777,
        0o600
    );
    let new_set = [three[0].clone(), three[1].clone(), ("dave", dave)];
    write_spec(&w, &server, &new_set);
    let gen2 = w.path("out/gen2");
    let mut args: Vec<String> = [
        "custody",
        "rekey",
        "--env",
        "prod",
        "--out",
        path_str(&gen2),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for n in ["alice", "bob"] {
        let id = w.id_path(n);
        args.extend([
            "--share".into(),
            path_str(&share(&gen1, n)).into(),
            "--identity".into(),
            path_str(&id).into(),
        ]);
    }
    // The rotation endpoints need a token: the bootstrap root token, before bootstrap ends.
    let r = w.ok_with_token(&as_strs(&args), root.expose_secret());
    assert_eq!(r["rekey"]["generation"], 2);
    assert!(
        r["published"].get("Ok").is_some(),
        "the new ledger's digest is published: {r}"
    );
    let names: Vec<&str> = r["rekey"]["custodians"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["custodian"].as_str())
        .collect();
    assert_eq!(names, ["alice", "bob", "dave"]);
    let st = w.ok_with_token(
        &["custody", "status", "--env", "prod"],
        root.expose_secret(),
    );
    assert_eq!(
        st["registry"], "match",
        "the registry holds the new ledger's digest: {st}"
    );

    // An edit of the ledger on disk shows: its digest no longer matches the registry's (exit 3).
    let ledger_path = w.path("state/custody/prod/ledger.json");
    let original = std::fs::read(&ledger_path).expect("ledger");
    let mut edited = original.clone();
    edited.extend_from_slice(b" ");
    std::fs::write(&ledger_path, &edited).expect("edit ledger");
    let v = w.full_args(&["custody", "status", "--env", "prod"]);
    let out = WARDEN
        .invoke(&v)
        .env("VAULT_TOKEN", root.expose_secret())
        .output();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("MISMATCH"),
        "{}",
        text(&out.stdout)
    );
    std::fs::write(&ledger_path, &original).expect("restore ledger");

    // Seal, then: carol's old share is refused (no custodian any more), alice's old share is
    // stale; the new shares of alice and dave unseal.
    let c = client(&server);
    c.set_token(root.clone());
    c.seal().await.expect("seal");
    let carol_old = w.unseal_args("prod", &share(&gen1, "carol"), "carol");
    w.refused(&as_strs(&carol_old), "who is not a custodian of `prod`");
    let alice_old = w.unseal_args("prod", &share(&gen1, "alice"), "alice");
    w.refused(&as_strs(&alice_old), "is not the share the custody ledger");
    assert_eq!(progress(&c).await, (true, 0));

    // The environment as a cluster whose second node is down: each share goes to every node,
    // and the progress is shown per node; the new shares of alice and dave unseal.
    let dead = warden_testkit::dead_address("https");
    let spec = format!(
        "version = 1\n\n{}",
        cluster_block(
            "prod",
            &[server.addr(), &dead],
            &server.ca_path(),
            2,
            &new_set
        )
    );
    std::fs::write(w.path("warden.toml"), spec).expect("spec");
    let args = w.unseal_args("prod", &share(&gen2, "alice"), "alice");
    let r = w.ok(&as_strs(&args));
    let nodes = r["nodes"].as_array().expect("per node").clone();
    assert_eq!(nodes.len(), 2, "{r}");
    assert_eq!(
        (nodes[0]["address"].as_str(), nodes[0]["progress"].as_u64()),
        (Some(server.addr()), Some(1))
    );
    assert_eq!(nodes[1]["address"].as_str(), Some(dead.as_str()));
    assert!(
        nodes[1]["outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("not reached")),
        "{r}"
    );
    let args = w.unseal_args("prod", &share(&gen2, "dave"), "dave");
    let r = w.ok(&as_strs(&args));
    assert_eq!(r["nodes"][0]["sealed"], false, "{r}");
    assert!(!progress(&c).await.0, "the new shares unseal");
}
