//! Production: `warden server config --seal` and a real node running its output.

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

    runs_and_unseals_itself(&bao, &out.join("prod-1.hcl"), tmp.path(), etc, ports[0]).await;
}

/// The generated configuration, run by the real server: initialised with recovery keys, it
/// unseals itself from the key file.
async fn runs_and_unseals_itself(bao: &Path, config: &Path, work: &Path, etc: &Path, port: u16) {
    // The generated configuration, run by the real server: initialised with recovery keys, it
    // unseals itself from the key file.
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
    let init = client.init_with_recovery(3, 2).await.expect("init");
    assert_eq!(init.recovery_keys.len(), 3);
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.seal_status().await.unwrap().sealed {
        assert!(
            Instant::now() < deadline,
            "never unsealed itself: {}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
