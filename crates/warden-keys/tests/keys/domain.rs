//! Domain certificates: issued through a real PKI mount (`<pki>/sign/domain-<slug>`), stored
//! with their expiry, renewed only when due (idempotent), kept as versions, and written with
//! check-and-set.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use warden_bao::{Client, Idempotent};
use warden_keys::{Clock, DomainState, DomainStore, Issuer, ManualClock, PkiIssuer};
use warden_spec::{DomainCert, KeyType, Slug, Ttl};
use warden_testkit::BaoDev;

use crate::support::{KV, root_client};

const HOUR: u64 = 3600;

pub(crate) fn shop() -> DomainCert {
    DomainCert {
        domain: "shop.example.com".into(),
        slug: Slug::parse("shop-example-com").unwrap(),
        environments: vec![Slug::parse("test").unwrap()],
        app: Slug::parse("shop").unwrap(),
        ttl: Ttl(Duration::from_secs(48 * HOUR)),
        renew_before: Ttl(Duration::from_secs(24 * HOUR)),
        key_type: KeyType::EcP256,
        issuer: warden_spec::DomainIssuer::Pki,
    }
}

/// A PKI mount with a root, and the domain's role as `warden apply` provisions it:
/// this domain only, bare, server certificates, the spec's lifetime.
pub(crate) async fn pki_with_role(client: &Client, domain: &DomainCert) {
    pki_with_role_storing(client, domain, false).await;
}

/// The same, with `no_store = !store` (`warden apply` stores an ACME domain's certificates).
pub(crate) async fn pki_with_role_storing(client: &Client, domain: &DomainCert, store: bool) {
    let w = |path: &str, body: serde_json::Value| {
        let path = path.to_owned();
        async move {
            client
                .write(&path, &body, Idempotent::No)
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"));
        }
    };
    w(
        "sys/mounts/pki",
        json!({ "type": "pki", "config": { "max_lease_ttl": "8760h" } }),
    )
    .await;
    w(
        "pki/root/generate/internal",
        json!({ "common_name": "Warden Test Root", "ttl": "8760h", "key_type": "ec" }),
    )
    .await;
    w(
        &format!("pki/roles/{}", domain.pki_role()),
        json!({
            "allowed_domains": [domain.domain],
            "allow_bare_domains": true,
            "allow_subdomains": false,
            "server_flag": true,
            "client_flag": false,
            "key_type": "ec",
            "key_bits": 256,
            "max_ttl": domain.ttl.to_vault(),
            "no_store": !store,
        }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_is_due_driven_idempotent_versioned_and_check_and_set() {
    let dev = BaoDev::start().await;
    let client = root_client(&dev);
    let domain = shop();
    pki_with_role(&client, &domain).await;
    // A minute ahead: the server stamps `not_after` in whole seconds from when it issues, which on
    // a loaded machine can be a second or more after a clock started "now" — then 48 h would
    // still be left by this clock, not "48 h minus a moment".
    let clock = ManualClock::starting_now();
    clock.advance(Duration::from_secs(60));
    let store = DomainStore::new(client.clone(), KV, Arc::new(clock.clone()));
    let issuer = Issuer::from(PkiIssuer::new(client.clone(), "pki"));

    let before = store.status(&domain).await.expect("status");
    assert_eq!((before.state, before.version), (DomainState::Missing, None));
    assert_eq!(before.location, "secret/domains/shop.example.com/cert");

    // Missing → issued as version 1.
    let first = store
        .renew_if_due(&domain, &issuer, false)
        .await
        .expect("first issue");
    assert!(first.renewed);
    let after = &first.after;
    assert_eq!((after.version, after.state), (Some(1), DomainState::Valid));
    assert_eq!(
        after.days_left,
        Some(1),
        "48 h minus a moment is one whole day"
    );
    let not_after = after.not_after.expect("not_after");
    let lifetime = not_after - clock.now();
    assert!(
        lifetime <= Duration::from_secs(48 * HOUR) && lifetime > Duration::from_secs(47 * HOUR),
        "{lifetime}"
    );
    // What is stored is what status reports, and the key belongs to the certificate.
    let stored = store.current(&domain).await.expect("read").expect("stored");
    let certs = warden_pki::parse_pem_bundle(&stored.chain_pem).expect("chain parses");
    assert_eq!(
        certs.len(),
        1,
        "issued by the root directly: no intermediate to send"
    );
    assert!(
        certs[0]
            .subject_alt_names
            .contains(&"DNS:shop.example.com".to_owned())
    );
    assert_eq!(certs[0].not_after, not_after);
    assert_eq!(
        stored.serial.replace(':', ""),
        certs[0].serial,
        "serial as OpenBao reports it"
    );
    let key = warden_pki::GeneratedKey::from_pem(&stored.private_key_pem).expect("key");
    let (_, leaf) = x509_parser::pem::parse_x509_pem(stored.chain_pem.as_bytes()).expect("pem");
    assert_eq!(
        leaf.parse_x509().expect("leaf").public_key().raw,
        key.public_key_der().as_slice()
    );
    assert!(!format!("{stored:?}").contains("PRIVATE KEY"));

    // Not due: a second run does nothing.
    let again = store
        .renew_if_due(&domain, &issuer, false)
        .await
        .expect("second run");
    assert!(!again.renewed);
    assert_eq!(again.after.version, Some(1));
    assert_eq!(again.after.serial, first.after.serial);

    // 25 h later less than renew_before (24 h) remains: due, renewed as version 2.
    clock.advance(Duration::from_secs(25 * HOUR));
    let due = store.status(&domain).await.expect("status");
    assert_eq!((due.state, due.days_left), (DomainState::Due, Some(0)));
    let renewed = store
        .renew_if_due(&domain, &issuer, false)
        .await
        .expect("renew");
    assert!(renewed.renewed);
    assert_eq!(renewed.after.version, Some(2));
    assert_ne!(renewed.after.serial, first.after.serial);
    // The old version is still there.
    let v1 = client
        .kv2(KV)
        .read("domains/shop.example.com/cert", Some(1))
        .await
        .expect("version 1 kept");
    let v1_serial = v1
        .data
        .get("serial")
        .unwrap()
        .expose()
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(Some(v1_serial), first.after.serial);

    // Two renewals from the same status: one writes version 3, the other writes nothing.
    let seen = store.status(&domain).await.expect("status");
    let (a, b) = tokio::join!(
        store.renew(&domain, &issuer, &seen),
        store.renew(&domain, &issuer, &seen)
    );
    let (won, lost) = match (a, b) {
        (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
        other => panic!("expected exactly one winner, got {other:?}"),
    };
    assert_eq!(won.after.version, Some(3));
    assert!(lost.is_conflict(), "{lost}");
    let now = store.status(&domain).await.expect("status");
    assert_eq!((now.version, now.serial), (Some(3), won.after.serial));

    // Expired certificates are reported as such (and are due).
    clock.advance(Duration::from_secs(72 * HOUR));
    let expired = store.status(&domain).await.expect("status");
    assert_eq!(expired.state, DomainState::Expired);
    assert!(expired.days_left.unwrap() < 0);
}

/// A domain whose role does not exist yet: the error names the path and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_role_fails_cleanly() {
    let dev = BaoDev::start().await;
    let client = root_client(&dev);
    let mut domain = shop();
    pki_with_role(&client, &domain).await;
    domain.domain = "other.example.com".into();
    domain.slug = Slug::parse("other-example-com").unwrap();
    let store = DomainStore::new(client.clone(), KV, Arc::new(ManualClock::starting_now()));
    let err = store
        .renew_if_due(&domain, &PkiIssuer::new(client, "pki").into(), false)
        .await
        .expect_err("no role");
    let msg = err.to_string();
    assert!(msg.contains("pki/sign/domain-other-example-com"), "{msg}");
    assert_eq!(
        store.status(&domain).await.expect("status").state,
        DomainState::Missing
    );
}
