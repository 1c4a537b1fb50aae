//! End-to-end: workloads log in with a service-account token (ADR 0005). `warden apply` mounts
//! a JWT backend at `kubernetes` holding the cluster's token-signing public key and one role per
//! bound identity (`bound_subject = system:serviceaccount:<ns>:<sa>`); the test plays the
//! cluster's token issuer with its own key. The right service account gets exactly its
//! identity's policy; another service account, another audience, another role or another
//! signer is refused.

use serde_json::{Value, json};
use warden_testkit::LabEnv;
use warden_testkit::cli::Cli;
use warden_testkit::identity::{CiSigner, EnvAccess, login_with};

/// The binary under test.
const WARDEN: Cli = Cli::new(env!("CARGO_BIN_EXE_warden"));

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

fn spec_text() -> String {
    format!(
        r#"version = 1

[environments.test]
domain = "test.warden.internal"

[environments.test.kubernetes]
issuer             = "{ISSUER}"
audience           = "openbao"
validation_pubkeys = ["sa-issuer.pem"]

[apps.billing]
environments = ["test"]
secrets      = ["config"]
kubernetes   = {{ namespace = "billing", service_account = "billing" }}

[apps.ledger]
environments = ["test"]
secrets      = ["config"]
kubernetes   = {{ namespace = "ledger", service_account = "ledger-api" }}

# The Kubernetes nodes' transport certificate: the pods' service-account logins ride on it
# (ADR 0010), never on the operator's.
[transport.k8s-nodes]
environments = ["test"]
carries      = ["billing", "ledger"]

[purposes.everything]
description = "the test's credentials"
owner       = "test"
tier        = "vault_kv"
delivery    = "agent_file"
rotation    = {{ interval = "30d", grace = "7d" }}
evidence    = "EV-TEST"
covers      = ["*/identity-cert", "*/certificate", "billing/secret/config"]

[purposes.ledger-cache]
description = "ledger's config, mirrored into a Kubernetes Secret by an operator"
owner       = "ledger"
tier        = "kubernetes_secret"
delivery    = "kubernetes_secret"
rotation    = {{ interval = "30d", grace = "7d" }}
evidence    = "EV-TEST"
covers      = ["ledger/secret/config"]
"#
    )
}

fn sa_claims(namespace: &str, account: &str, audience: &str) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    json!({
        "iss": ISSUER,
        "aud": [audience],
        "sub": format!("system:serviceaccount:{namespace}:{account}"),
        "kubernetes.io": {
            "namespace": namespace,
            "serviceaccount": { "name": account, "uid": "6b0f6e4c-0000-4000-8000-000000000001" }
        },
        "iat": now,
        "nbf": now - 5,
        "exp": now + 600,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_tokens_map_to_exactly_their_identity() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let lab = LabEnv::start(&["test"]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = CiSigner::generate();
    std::fs::write(dir.path().join("sa-issuer.pem"), cluster.public_pem()).expect("key");
    let spec = dir.path().join("warden.toml");
    std::fs::write(&spec, spec_text()).expect("spec");
    let out = WARDEN
        .invoke(&["apply", "--spec"])
        .arg(&spec)
        .arg("--lab")
        .arg(lab.dir())
        .output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "apply: {stderr}");
    // Accepted, but never silently: a Kubernetes Secret is a cache, not the source of truth.
    assert!(
        stderr.contains("purpose `ledger-cache` is stored as a kubernetes_secret")
            && stderr.contains("transitional cache"),
        "{stderr}"
    );

    let op = lab.client("test");
    for app in ["billing", "ledger"] {
        op.write(
            &format!("kvv2/data/{app}/config"),
            &json!({ "data": { "owner": app } }),
            warden_bao::Idempotent::No,
        )
        .await
        .expect("seed config");
    }
    let role = op
        .read("auth/kubernetes/role/billing")
        .await
        .expect("role")
        .data
        .expect("data");
    assert_eq!(
        role["bound_subject"],
        "system:serviceaccount:billing:billing"
    );

    let access = EnvAccess::of(&lab, "test");
    let op = &op;
    let access = &access;
    let login = |role: &'static str, jwt| async move {
        let client = access
            .transport_client(op, "k8s-nodes", "test.warden.internal")
            .await;
        let body = json!({ "role": role, "jwt": secrecy::ExposeSecret::expose_secret(&jwt) });
        let r = login_with(&client, "kubernetes", &body).await;
        (client, r)
    };

    // The right service account: billing's policy and nothing else.
    let (client, auth) = login(
        "billing",
        cluster.sign(&sa_claims("billing", "billing", "openbao")),
    )
    .await;
    let auth = auth.expect("billing's service account logs in");
    assert_eq!(auth.token_policies, vec!["billing".to_owned()], "{auth:?}");
    let own = client
        .read("kvv2/data/billing/config")
        .await
        .expect("own config");
    assert_eq!(own.data.expect("data")["data"]["owner"], "billing");
    let other = client.read("kvv2/data/ledger/config").await;
    assert!(
        other
            .as_ref()
            .is_err_and(warden_bao::Error::is_permission_denied),
        "billing's workload must not read ledger's config: {other:?}"
    );

    // Refused: another service account in the same namespace, the right token at another
    // identity's role, another audience, and a token signed by a key the backend does not hold.
    let refused: [(&str, &'static str, secrecy::SecretString); 4] = [
        (
            "default service account",
            "billing",
            cluster.sign(&sa_claims("billing", "default", "openbao")),
        ),
        (
            "billing's token at ledger's role",
            "ledger",
            cluster.sign(&sa_claims("billing", "billing", "openbao")),
        ),
        (
            "another audience",
            "billing",
            cluster.sign(&sa_claims("billing", "billing", "someone-else")),
        ),
        (
            "another signer",
            "billing",
            CiSigner::generate().sign(&sa_claims("billing", "billing", "openbao")),
        ),
    ];
    for (what, role, jwt) in refused {
        let (_, r) = login(role, jwt).await;
        let e = r.expect_err(what);
        assert!(
            matches!(e.status(), Some(400 | 403)),
            "{what}: expected a refusal, got {e}"
        );
    }

    // ledger's own service account reaches ledger's config.
    let (client, auth) = login(
        "ledger",
        cluster.sign(&sa_claims("ledger", "ledger-api", "openbao")),
    )
    .await;
    assert_eq!(
        auth.expect("ledger logs in").token_policies,
        vec!["ledger".to_owned()]
    );
    assert!(client.read("kvv2/data/ledger/config").await.is_ok());
}
