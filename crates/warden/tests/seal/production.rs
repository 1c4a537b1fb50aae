//! Production: `warden server config --seal` and a real node running its output; the custody
//! ceremony against that auto-sealed node records recovery keys.

use std::path::Path;
use std::time::{Duration, Instant};

use warden_bao::{Client, ClientConfig};

use crate::support::*;

/// Production: `warden server config --seal` names the seal's files (never their contents),
/// refuses what OpenBao would reject, and a real server runs the result and unseals itself.
#[tokio::test(flavor = "multi_thread")]
async fn server_config_names_the_seal_and_a_real_node_unseals_itself_with_it() {
    let lab = warden_testkit::LabEnv::start(&["prod"]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dirs = warden_testkit::NodeDirs::from_lab(&lab, "prod", tmp.path());
    let (etc, out) = (&dirs.etc, &dirs.out);
    warden_files::ensure_private_dir(&etc.join("seal")).expect("directory");
    let ports = warden_lab::process::free_ports(2).expect("free ports");
    let spec = tmp.path().join("warden.toml");
    std::fs::write(&spec, warden_testkit::prod_nodes_spec(&ports)).expect("write the spec");
    let bao = warden_lab::process::bao_binary().expect("bao");
    let p = |p: &Path| p.display().to_string();
    let base: Vec<String> = [
        "server",
        "config",
        "--spec",
        &p(&spec),
        "--env",
        "prod",
        "--node",
        "prod-1",
        "--bao",
        &p(&bao),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain(dirs.args())
    .collect();
    let run = |extra: &[&str]| {
        let mut inv = WARDEN.invoke(&base);
        for a in extra {
            inv = inv.arg(a);
        }
        inv.output()
    };

    for (extra, want) in [
        (
            &["--seal", "transit"][..],
            "--seal transit needs the seal-keeper's address",
        ),
        (
            &["--seal", "transit", "--seal-keeper", "http://127.0.0.1:1"][..],
            "must start with https://",
        ),
        (
            &["--seal", "static", "--seal-keeper", "https://127.0.0.1:1"][..],
            "--seal-keeper only applies to --seal transit",
        ),
    ] {
        let refused = run(extra);
        let err = String::from_utf8_lossy(&refused.stderr);
        assert_ne!(refused.status.code(), Some(0), "{extra:?}");
        assert!(
            err.contains(want) && err.contains("hint:"),
            "{extra:?}: {err}"
        );
        assert!(
            !out.join("prod-1.hcl").exists(),
            "nothing written for {extra:?}"
        );
    }

    let transit = ok(
        run(&["--seal", "transit", "--seal-keeper", "https://127.0.0.1:1"]),
        "server config --seal transit",
    );
    drop(transit);
    let config = read(out.join("prod-1.hcl"));
    let seal_dir = etc.join("seal");
    for want in [
        "seal \"transit\" {".to_owned(),
        format!(
            "token           = \"file://{}\"",
            seal_dir.join("keeper-token").display()
        ),
        format!(
            "tls_client_key  = \"{}\"",
            seal_dir.join("keeper-client.key").display()
        ),
        "key_name        = \"seal-prod\"".to_owned(),
    ] {
        assert!(config.contains(&want), "missing {want}:\n{config}");
    }

    ok(run(&["--seal", "static"]), "server config --seal static");
    let config = read(out.join("prod-1.hcl"));
    let key_file = seal_dir.join("static.key");
    assert!(
        config.contains(&format!(
            "current_key     = \"file://{}\"",
            key_file.display()
        )),
        "{config}"
    );
    warden_node::seal::write_static_key(&key_file).expect("static key");
    let key = read(key_file);
    assert!(!config.contains(&key));

    // The ceremony runs against the node the configuration describes.
    add_custody(&spec, etc, &tmp.path().join("ids"));
    let node = Node {
        bao: &bao,
        config: &out.join("prod-1.hcl"),
        work: tmp.path(),
        etc,
        port: ports[0],
        spec: &spec,
    };
    runs_and_unseals_itself(&node).await;
}

/// The spec now names the node's trust anchor and three custodians (identities in `ids`).
fn add_custody(spec: &Path, etc: &Path, ids: &Path) {
    let text = read(spec.to_path_buf()).replacen(
        "runtime_owner = \"warden-test\"\n",
        &format!(
            "runtime_owner = \"warden-test\"\nca_cert = \"{}\"\n",
            etc.join("tls/ca.pem").display()
        ),
        1,
    );
    let mut custody = "\n[environments.prod.custody]\nthreshold = 2\n".to_owned();
    warden_files::ensure_private_dir(ids).expect("ids");
    for name in ["alice", "bob", "carol"] {
        let g = warden_custody::generate_identity();
        warden_files::write_atomic(
            &ids.join(name),
            g.file_text.as_bytes(),
            warden_files::Mode::OwnerOnly,
        )
        .expect("identity");
        custody.push_str(&format!(
            "\n[[environments.prod.custody.custodians]]\nname = \"{name}\"\nrecipient = \"{}\"\n",
            g.recipient
        ));
    }
    std::fs::write(spec, text + &custody).expect("spec with custody");
}

/// A generated node and what the ceremony needs to reach it.
struct Node<'a> {
    bao: &'a Path,
    config: &'a Path,
    work: &'a Path,
    etc: &'a Path,
    port: u16,
    spec: &'a Path,
}

impl Node<'_> {
    /// `warden ARGS --spec SPEC --env prod --state-dir STATE` with the node's client
    /// certificate in `VAULT_CLIENT_CERT`/`_KEY` (file paths, never the key itself).
    fn warden(&self, args: &[&str]) -> std::process::Output {
        WARDEN
            .invoke(args)
            .arg("--spec")
            .arg(self.spec)
            .arg("--env")
            .arg("prod")
            .arg("--state-dir")
            .arg(self.work.join("state"))
            .env("VAULT_CLIENT_CERT", self.etc.join("tls/node.crt"))
            .env("VAULT_CLIENT_KEY", self.etc.join("tls/node.key"))
            .output()
    }
}

/// The generated configuration, run by the real server: `warden custody init` sees its static
/// seal and initialises it with recovery keys, one per custodian (ledger kind `recovery`); it
/// unseals itself from the key file, and `warden unseal` refuses the recovery keys.
async fn runs_and_unseals_itself(node: &Node<'_>) {
    let (bao, config, work, etc, port) = (node.bao, node.config, node.work, node.etc, node.port);
    let mut command = std::process::Command::new(bao);
    command
        .arg("server")
        .arg(format!("-config={}", config.display()))
        .current_dir(work);
    let server = warden_testkit::RunningAgent::spawn(command, &work.join("server.log"));
    let cfg = ClientConfig::from_address(&format!("https://127.0.0.1:{port}"))
        .and_then(|c| c.with_ca_file(etc.join("tls/ca.pem")))
        .and_then(|c| c.with_client_cert_files(etc.join("tls/node.crt"), etc.join("tls/node.key")))
        .expect("client config");
    let client = Client::new(cfg).expect("client");
    client
        .wait_reachable()
        .await
        .unwrap_or_else(|e| panic!("{e}; server log:\n{}", server.log()));
    let st = client.seal_status().await.unwrap();
    assert_eq!((st.seal_type.as_str(), st.initialized), ("static", false));
    let shares = work.join("ceremony");
    let init = json(&ok(
        node.warden(&[
            "custody",
            "init",
            "-o",
            "json",
            "--out",
            shares.to_str().expect("utf-8 path"),
        ]),
        "custody init",
    ));
    assert_eq!(
        (
            init["kind"].clone(),
            init["shares"].clone(),
            init["threshold"].clone()
        ),
        ("recovery".into(), 3.into(), 2.into()),
        "{init}"
    );
    let st = client.seal_status().await.unwrap();
    assert_eq!((st.recovery_seal, st.shares, st.threshold), (true, 3, 2));
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.seal_status().await.unwrap().sealed {
        assert!(
            Instant::now() < deadline,
            "never unsealed itself: {}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A custodian's recovery key is no unseal share: refused, nothing submitted.
    let refused = node.warden(&[
        "unseal",
        "--share",
        shares.join("alice.prod.share.age").to_str().expect("utf-8"),
        "--identity",
        work.join("ids/alice").to_str().expect("utf-8"),
    ]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{err}");
    assert!(
        err.contains("prod is auto-unsealed (seal static): its shares are recovery keys"),
        "{err}"
    );
}
