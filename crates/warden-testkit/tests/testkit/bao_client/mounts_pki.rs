//! Mounts, tuning, and the intermediate-CA ceremony on the PKI engine.

use std::time::Duration;

use warden_bao::{Idempotent, KeyType, MountOptions};
use warden_testkit::BaoDev;

use super::support::root_client;

#[tokio::test]
async fn mounts_can_be_enabled_listed_and_tuned() {
    let dev = BaoDev::start().await;
    let client = root_client(&dev);

    client
        .enable_secrets_engine(
            "apps",
            "kv",
            &MountOptions::kv_v2().with_description("app secrets"),
        )
        .await
        .expect("enable kv v2");
    let err = client
        .enable_secrets_engine("apps", "kv", &MountOptions::kv_v2())
        .await
        .unwrap_err();
    assert_eq!(
        err.status(),
        Some(400),
        "enabling twice is refused: {err:?}"
    );

    let mounts = client.list_mounts().await.expect("list mounts");
    let apps = mounts.get("apps/").expect("apps/ listed");
    assert_eq!(apps.mount_type, "kv");
    assert_eq!(apps.description, "app secrets");
    assert_eq!(apps.options.get("version").map(String::as_str), Some("2"));
    assert!(mounts.contains_key("secret/"));

    client
        .tune_mount("apps", Duration::from_secs(7200))
        .await
        .expect("tune");
    client
        .tune_mount("apps", Duration::from_secs(7200))
        .await
        .expect("tune is idempotent");
    let tune = client.read_mount_tune("apps").await.expect("read tune");
    assert_eq!(tune.max_lease_ttl, 7200);

    client
        .enable_auth("cert", "cert")
        .await
        .expect("enable auth");
    let auths = client.list_auth().await.expect("list auth");
    assert_eq!(auths.get("cert/").expect("cert/").mount_type, "cert");
    client
        .tune_mount("auth/cert", Duration::from_secs(3600))
        .await
        .expect("tune an auth mount");
    assert_eq!(
        client
            .read_mount_tune("auth/cert")
            .await
            .expect("tune")
            .max_lease_ttl,
        3600
    );

    client
        .disable_secrets_engine("apps")
        .await
        .expect("disable");
    assert!(
        !client
            .list_mounts()
            .await
            .expect("list")
            .contains_key("apps/")
    );
}

#[tokio::test]
async fn intermediate_ceremony() {
    let dev = BaoDev::start().await;
    let client = root_client(&dev);
    let year = Duration::from_secs(365 * 24 * 3600);

    // A root CA inside OpenBao stands in for the offline root here.
    client
        .enable_secrets_engine(
            "pki_root",
            "pki",
            &MountOptions::default().with_max_lease_ttl(year * 10),
        )
        .await
        .expect("enable root pki");
    client
        .write(
            "pki_root/root/generate/internal",
            &serde_json::json!({"common_name": "Test Root", "ttl": "87600h", "key_type": "ec"}),
            Idempotent::No,
        )
        .await
        .expect("generate root");

    client
        .enable_secrets_engine("pki_int", "pki", &MountOptions::default())
        .await
        .expect("enable int pki");
    client.tune_mount("pki_int", year * 5).await.expect("tune");
    assert!(
        client
            .pki_read_issuers("pki_int")
            .await
            .expect("issuers")
            .is_empty()
    );
    assert_eq!(
        client.pki_ca_chain("pki_int").await.expect("empty chain"),
        ""
    );
    let err = client.pki_ca_chain("no_such_mount").await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");

    let csr = client
        .pki_generate_intermediate_csr("pki_int", "Test Intermediate", KeyType::EcP256)
        .await
        .expect("CSR");
    assert!(
        csr.csr_pem
            .starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
        "{}",
        csr.csr_pem
    );
    assert!(!csr.key_id.is_empty());

    let signed = client
        .write(
            "pki_root/root/sign-intermediate",
            &serde_json::json!({"csr": csr.csr_pem, "format": "pem_bundle", "ttl": "43800h"}),
            Idempotent::No,
        )
        .await
        .expect("sign")
        .expect("body");
    let bundle = signed.data.expect("data")["certificate"]
        .as_str()
        .expect("PEM bundle")
        .to_owned();

    let imported = client
        .pki_set_signed("pki_int", &bundle)
        .await
        .expect("set-signed");
    assert_eq!(
        imported.imported_issuers.len(),
        2,
        "intermediate + key-less root: {imported:?}"
    );
    assert_eq!(
        imported
            .mapping
            .values()
            .filter(|k| k.as_str() == csr.key_id)
            .count(),
        1
    );
    let again = client
        .pki_set_signed("pki_int", &bundle)
        .await
        .expect("set-signed again");
    assert!(
        again.imported_issuers.is_empty(),
        "re-import is a no-op: {again:?}"
    );

    let chain = client.pki_ca_chain("pki_int").await.expect("chain");
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2, "{chain}");

    let issuers = client.pki_read_issuers("pki_int").await.expect("issuers");
    assert_eq!(issuers.len(), 2);
    let default = issuers
        .iter()
        .find(|i| i.is_default)
        .expect("a default issuer");
    let issuer = client
        .pki_read_issuer("pki_int", "default")
        .await
        .expect("read default issuer");
    assert_eq!(issuer.issuer_id, default.id);
    assert_eq!(
        issuer.key_id, csr.key_id,
        "the default issuer is the intermediate"
    );
    assert_eq!(issuer.ca_chain.len(), 2);
    let err = client
        .pki_read_issuer("pki_int", "no-such-issuer")
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}
