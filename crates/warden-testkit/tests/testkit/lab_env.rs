//! The full TLS + mTLS mode: a lab per test, reachable with the operator credentials, gone
//! after drop.

use warden_testkit::{LabEnv, process};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_env_is_reachable_over_mtls_and_cleans_up() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let lab = LabEnv::start(&["test"]).await;
    let client = lab.client("test");
    let health = client.health().await.expect("health over mTLS");
    assert!(health.initialized && !health.sealed, "{health:?}");
    let chain = client.pki_ca_chain("pki_int").await.expect("ca_chain");
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    // No root token: the operator certificate logged in as the lab operator, operator policy only.
    let me = client.token_lookup_self().await.expect("lookup-self");
    assert_eq!(me.policies, ["warden-operator"], "{me:?}");
    assert!(!lab.lab().layout().env("test").root_token().exists());

    let pid_file = lab.lab().layout().env("test").pid_file();
    let pid = process::read_pid_file(&pid_file).expect("pid file");
    let dir = lab.dir().to_path_buf();
    assert!(process::is_alive(pid));
    drop(lab);
    assert!(!process::is_alive(pid), "server {pid} survived the drop");
    assert!(!dir.exists(), "lab directory survived the drop");
}
