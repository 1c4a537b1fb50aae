//! Policies, narrow tokens, and cert-auth login (with identity rotation).

use warden_bao::{Client, Error, ExposeSecret, Idempotent, RetryPolicy};
use warden_testkit::BaoDev;

use super::support::{TestCa, config, root_client};

const READER: &str = r#"path "secret/data/allowed/*" { capabilities = ["read"] }
"#;

#[tokio::test]
async fn narrow_token_is_denied_elsewhere() {
    let dev = BaoDev::start().await;
    let root = root_client(&dev);

    root.put_policy("reader", READER).await.expect("put policy");
    root.put_policy("reader", READER)
        .await
        .expect("put is idempotent");
    assert_eq!(
        root.read_policy("reader").await.expect("read policy"),
        READER
    );
    assert!(
        root.list_policies()
            .await
            .expect("list")
            .contains(&"reader".to_owned())
    );
    let err = root.read_policy("no-such-policy").await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");

    for path in ["secret/data/allowed/a", "secret/data/private/b"] {
        root.write(
            path,
            &serde_json::json!({"data": {"v": path}}),
            Idempotent::Yes,
        )
        .await
        .expect("seed");
    }
    let created = root
        .write(
            "auth/token/create",
            &serde_json::json!({"policies": ["reader"], "ttl": "10m"}),
            Idempotent::No,
        )
        .await
        .expect("create token")
        .expect("body");
    let auth = created.auth.expect("auth block");
    assert!(auth.policies.contains(&"reader".to_owned()), "{auth:?}");
    assert!(!format!("{auth:?}").contains(auth.client_token.expose_secret()));

    let narrow = Client::new(
        config(&dev)
            .with_token(auth.client_token.clone())
            .with_retry(RetryPolicy::no_retries()),
    )
    .expect("client");
    let ok = narrow
        .read("secret/data/allowed/a")
        .await
        .expect("allowed read");
    assert_eq!(ok.data.expect("data")["data"]["v"], "secret/data/allowed/a");

    let err = narrow.read("secret/data/private/b").await.unwrap_err();
    match &err {
        Error::PermissionDenied { path, errors } => {
            assert_eq!(path, "secret/data/private/b");
            assert!(
                errors.iter().any(|e| e.contains("permission denied")),
                "{errors:?}"
            );
        }
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
    assert!(!err.is_retryable());

    let info = narrow
        .token_lookup_self()
        .await
        .expect("lookup-self (default policy)");
    assert_eq!(info.accessor, auth.accessor);
    assert!(info.ttl > 0 && info.ttl <= 600, "{info:?}");

    narrow.token_revoke_self().await.expect("revoke");
    let err = narrow.read("secret/data/allowed/a").await.unwrap_err();
    assert!(
        err.is_permission_denied(),
        "revoked token is refused: {err:?}"
    );
}

#[tokio::test]
async fn cert_login_and_identity_rotation() {
    let dev = BaoDev::start_tls().await;
    let root = root_client(&dev);
    let ca = TestCa::new("Warden Test Client CA");

    root.enable_auth("cert", "cert")
        .await
        .expect("enable cert auth");
    assert!(
        root.list_auth()
            .await
            .expect("list auth")
            .contains_key("cert/")
    );
    root.put_policy("reader", READER).await.expect("policy");
    for (role, cn) in [("agent", "agent.test"), ("other", "other.test")] {
        root.write(
            &format!("auth/cert/certs/{role}"),
            &serde_json::json!({
                "certificate": ca.pem,
                "allowed_common_names": [cn],
                "token_policies": ["reader"],
                "token_ttl": "5m",
            }),
            Idempotent::Yes,
        )
        .await
        .expect("cert role");
    }

    let client = Client::new(
        config(&dev)
            .with_client_identity(ca.client_identity("agent.test"))
            .with_retry(RetryPolicy::no_retries()),
    )
    .expect("client with identity");
    let auth = client
        .login_cert("cert", Some("agent"))
        .await
        .expect("cert login");
    assert!(auth.policies.contains(&"reader".to_owned()), "{auth:?}");
    assert!(auth.lease_duration > 0 && auth.lease_duration <= 300);
    assert!(
        !client.has_token(),
        "login does not silently replace the token"
    );

    // The role for another name refuses this certificate, with a 400 (not 403) in OpenBao.
    let err = client.login_cert("cert", Some("other")).await.unwrap_err();
    assert!(matches!(err, Error::BadRequest { .. }), "{err:?}");

    // Rotate to a certificate for the other name: the next login uses it.
    client
        .set_identity(Some(ca.client_identity("other.test")))
        .expect("swap identity");
    let other = client
        .login_cert("cert", Some("other"))
        .await
        .expect("login after rotation");
    assert_ne!(other.accessor, auth.accessor);
    let err = client.login_cert("cert", Some("agent")).await.unwrap_err();
    assert!(
        matches!(err, Error::BadRequest { .. }),
        "old role no longer matches: {err:?}"
    );

    client.set_token(other.client_token.clone());
    let info = client
        .token_lookup_self()
        .await
        .expect("lookup with the cert token");
    assert_eq!(info.path, "auth/cert/login");
}
