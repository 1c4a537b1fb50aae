//! Rekey: a custodian replaced through OpenBao's share rotation.

use secrecy::ExposeSecret;
use serde_json::Value;
use warden_testkit::BareBao;
use warden_testkit::cli::{path_str, text};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekey_replaces_a_custodian_and_old_shares_stop_working() {
    install_crypto_provider();
    let server = BareBao::start().await;
    let mut w = World::new();
    let three: Vec<(&str, String)> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| (*n, w.identity(n)))
        .collect();
    let write_spec = |w: &World, custodians: &[(&str, String)]| {
        let spec = format!(
            "version = 1\n\n{}",
            env_block("prod", server.addr(), &server.ca_path(), 2, custodians)
        );
        std::fs::write(w.path("warden.toml"), spec).expect("spec");
    };
    write_spec(&w, &three);
    let gen1 = w.path("out/gen1");
    w.ok(&["custody", "init", "--env", "prod", "--out", path_str(&gen1)]);
    let s1 = |n: &str| gen1.join(format!("{n}.prod.share.age"));
    for n in ["alice", "bob"] {
        w.ok(&[
            "unseal",
            "--env",
            "prod",
            "--share",
            path_str(&s1(n)),
            "--identity",
            path_str(&w.id_path(n)),
        ]);
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
    let new_set = vec![three[0].clone(), three[1].clone(), ("dave", dave)];
    write_spec(&w, &new_set);
    let gen2 = w.path("out/gen2");
    let mut args: Vec<String> = [
        "custody",
        "rekey",
        "--env",
        "prod",
        "--out",
        path_str(&gen2),
        "-o",
        "json",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for n in ["alice", "bob"] {
        args.extend([
            "--share".into(),
            path_str(&s1(n)).into(),
            "--identity".into(),
            path_str(&w.id_path(n)).into(),
        ]);
    }
    let mut v = args.clone();
    v.extend([
        "--spec".into(),
        path_str(&w.path("warden.toml")).into(),
        "--state-dir".into(),
        path_str(&w.path("state")).into(),
    ]);
    // The rotation endpoints need a token: the bootstrap root token, before bootstrap ends.
    let out = WARDEN
        .invoke(&v)
        .env("VAULT_TOKEN", root.expose_secret())
        .output();
    assert!(
        out.status.success(),
        "rekey failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("JSON");
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

    // Status: the registry holds the new ledger's digest.
    let st = WARDEN
        .invoke(&[
            "custody",
            "status",
            "--env",
            "prod",
            "-o",
            "json",
            "--spec",
            path_str(&w.path("warden.toml")),
            "--state-dir",
            path_str(&w.path("state")),
        ])
        .env("VAULT_TOKEN", root.expose_secret())
        .output();
    let st: Value = serde_json::from_slice(&st.stdout).expect("status JSON");
    assert_eq!(st["registry"], "match", "{st}");

    // Seal, then: carol's old share is refused (no custodian any more), alice's old share is
    // stale; the new shares of alice and dave unseal.
    let c = client(&server);
    c.set_token(root.clone());
    c.seal().await.expect("seal");
    w.refused(
        &[
            "unseal",
            "--env",
            "prod",
            "--share",
            path_str(&s1("carol")),
            "--identity",
            path_str(&w.id_path("carol")),
        ],
        "who is not a custodian of `prod`",
    );
    w.refused(
        &[
            "unseal",
            "--env",
            "prod",
            "--share",
            path_str(&s1("alice")),
            "--identity",
            path_str(&w.id_path("alice")),
        ],
        "is not the share the custody ledger",
    );
    assert_eq!(progress(&c).await, (true, 0));
    for n in ["alice", "dave"] {
        w.ok(&[
            "unseal",
            "--env",
            "prod",
            "--share",
            path_str(&gen2.join(format!("{n}.prod.share.age"))),
            "--identity",
            path_str(&w.id_path(n)),
        ]);
    }
    assert!(!progress(&c).await.0, "the new shares unseal");
}
