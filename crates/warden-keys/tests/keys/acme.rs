//! Domain certificates over ACME against OpenBao's own ACME directory (the role-qualified
//! `pki/roles/domain-<slug>/acme/directory` of a real dev server): Warden answers the http-01
//! challenge on a loopback address of this test's own (`127.a.b.c:80`; the test runs as root),
//! and OpenBao's validator finds it through `config/acme`'s `dns_resolver`, a loopback DNS
//! responder of the testkit. A challenge OpenBao cannot validate leaves the stored certificate
//! as it was and says why.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use warden_bao::{Client, Idempotent};
use warden_keys::{DomainState, DomainStore, Issuer, ManualClock};
use warden_spec::{AcmeSettings, DomainCert, DomainIssuer, Ttl};
use warden_testkit::BaoDev;
use warden_testkit::dns::{LoopbackDns, random_loopback};

use crate::domain::{pki_with_role_storing, shop};
use crate::support::{KV, root_client};

/// Turns ACME on for the dev server's `pki` mount the way the lab does for an environment
/// (cluster path, the response headers ACME needs, `config/acme`), resolving names through
/// `dns`.
async fn enable_acme(client: &Client, dev: &BaoDev, dns: SocketAddr) {
    let w = |path: &'static str, body: serde_json::Value| async move {
        client
            .write(path, &body, Idempotent::Yes)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
    };
    w(
        "sys/mounts/pki/tune",
        json!({
            "allowed_response_headers": ["Last-Modified", "Replay-Nonce", "Link", "Location"],
            "passthrough_request_headers": ["If-Modified-Since"],
        }),
    )
    .await;
    let base = format!("{}/v1/pki", dev.addr());
    w(
        "pki/config/cluster",
        json!({ "path": base, "aia_path": base }),
    )
    .await;
    w(
        "pki/config/acme",
        json!({ "enabled": true, "dns_resolver": dns.to_string() }),
    )
    .await;
}

fn acme_domain(listen: SocketAddr) -> DomainCert {
    DomainCert {
        issuer: DomainIssuer::Acme(AcmeSettings {
            directory: None,
            contact: vec!["mailto:ops@example.com".into()],
            listen,
            challenge_timeout: Ttl(Duration::from_secs(20)),
        }),
        ..shop()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obtained_and_renewed_over_openbaos_acme_and_a_failed_challenge_changes_nothing() {
    let dev = BaoDev::start().await;
    let client = root_client(&dev);
    let ip: Ipv4Addr = random_loopback();
    let dns = LoopbackDns::start(&[("shop.example.com", ip)]).await;
    let good = acme_domain(SocketAddr::from((ip, 80)));
    // As `warden apply` provisions an ACME domain's role: OpenBao's ACME refuses a role that
    // does not store what it issues.
    pki_with_role_storing(&client, &good, true).await;
    enable_acme(&client, &dev, dns.addr()).await;
    let clock = ManualClock::starting_now();
    clock.advance(Duration::from_secs(60));
    let store = DomainStore::new(client.clone(), KV, Arc::new(clock.clone()));
    let issuer = Issuer::for_domain(&client, KV, "pki", &good).expect("issuer");
    let Issuer::Acme(acme) = &issuer else {
        panic!("{issuer:?}")
    };
    assert_eq!(
        acme.directory(),
        format!(
            "{}/v1/pki/roles/domain-shop-example-com/acme/directory",
            dev.addr()
        )
    );

    // Obtained: missing → stored, with its expiry.
    let first = store
        .renew_if_due(&good, &issuer, false)
        .await
        .unwrap_or_else(|e| panic!("first ACME order: {e}"));
    assert!(first.renewed);
    assert_eq!(first.before.state, DomainState::Missing);
    assert_eq!(
        (first.after.version, first.after.state),
        (Some(1), DomainState::Valid)
    );
    let stored = store.current(&good).await.unwrap().expect("stored");
    let leaf = x509_leaf_names(&stored.chain_pem);
    assert_eq!(leaf, ["DNS:shop.example.com"]);
    assert_eq!(Some(stored.not_after), first.after.not_after);
    assert!(stored.private_key_pem.contains("PRIVATE KEY"));
    let account = client
        .kv2(KV)
        .read("domains/shop.example.com/acme-account", None)
        .await
        .expect("account recorded in KV");
    let account_id = account
        .data
        .get("account_id")
        .unwrap()
        .expose()
        .as_str()
        .unwrap()
        .to_owned();

    // Not due: nothing happens. Due (the clock past renew_before): renewed over ACME with the
    // same account, as a new version.
    let again = store.renew_if_due(&good, &issuer, false).await.unwrap();
    assert!(!again.renewed);
    clock.advance(Duration::from_secs(25 * 3600));
    assert_eq!(store.status(&good).await.unwrap().state, DomainState::Due);
    let renewed = store.renew_if_due(&good, &issuer, false).await.unwrap();
    assert!(renewed.renewed);
    assert_eq!(renewed.after.version, Some(2));
    assert_ne!(renewed.after.serial, first.after.serial);
    let account = client
        .kv2(KV)
        .read("domains/shop.example.com/acme-account", None)
        .await
        .unwrap();
    assert_eq!(
        account.meta.version, 1,
        "the account is reused, not re-created"
    );
    assert_eq!(
        account
            .data
            .get("account_id")
            .unwrap()
            .expose()
            .as_str()
            .unwrap(),
        account_id
    );

    // A challenge OpenBao cannot validate: Warden answers on another loopback address than
    // the name resolves to, so OpenBao's connection is refused.
    let mut elsewhere = ip.octets();
    elsewhere[3] = if elsewhere[3] == 254 {
        1
    } else {
        elsewhere[3] + 1
    };
    let bad = acme_domain(SocketAddr::from((Ipv4Addr::from(elsewhere), 80)));
    let before = store.status(&bad).await.unwrap();
    let err = store
        .renew_if_due(
            &bad,
            &Issuer::for_domain(&client, KV, "pki", &bad).unwrap(),
            true,
        )
        .await
        .expect_err("the challenge cannot be validated");
    let text = err.to_string();
    assert!(
        text.contains("domain shop.example.com: the http-01 challenge failed")
            && text.contains(&format!("{ip}:80")),
        "the error names the challenge and OpenBao's reason: {text}"
    );
    assert!(
        matches!(err, warden_keys::Error::Challenge { .. }),
        "{err:?}"
    );
    let after = store.status(&bad).await.unwrap();
    assert_eq!(after, before, "the stored certificate is unchanged");
    assert_eq!(after.version, Some(2));
}

/// The DNS names of the first certificate of a chain.
fn x509_leaf_names(chain: &str) -> Vec<String> {
    let leaf = warden_pki::first_certificate(chain).expect("a certificate");
    let info = warden_pki::parse_pem_bundle(leaf).expect("parses");
    info[0].subject_alt_names.clone()
}
