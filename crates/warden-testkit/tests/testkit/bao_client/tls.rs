//! HTTPS against `bao server -dev -dev-tls`: trusting only the configured CA, and saying
//! which certificate failed and why when we do not trust it.

use warden_bao::{CertProblem, Client, ClientConfig, Error, RetryPolicy, TlsFailure};
use warden_testkit::BaoDev;

use super::support::{TestCa, root_client};

fn assert_unknown_issuer(err: &Error, dev: &BaoDev) {
    match err {
        Error::Tls {
            address,
            failure:
                TlsFailure::ServerCertificate {
                    subject,
                    issuer,
                    reason,
                },
        } => {
            assert!(address.contains(&dev.port().to_string()), "{address}");
            assert_eq!(reason, &CertProblem::UnknownIssuer);
            let subject = subject.as_deref().expect("leaf subject parsed");
            let issuer = issuer.as_deref().expect("leaf issuer parsed");
            assert!(subject.starts_with("CN="), "{subject}");
            assert!(issuer.contains("CN="), "{issuer}");
            let text = err.to_string();
            assert!(
                text.contains(subject) && text.contains("unknown issuer"),
                "{text}"
            );
        }
        other => panic!("expected a server-certificate TLS error, got {other:?}"),
    }
    assert!(!err.is_retryable(), "a trust problem does not fix itself");
}

#[tokio::test]
async fn tls_without_the_dev_ca_names_the_certificate() {
    let dev = BaoDev::start_tls().await;
    let bare = ClientConfig::from_address(dev.addr())
        .expect("cfg")
        .with_retry(RetryPolicy::no_retries());

    // No CA configured: platform roots do not know OpenBao's dev CA.
    let err = Client::new(bare.clone())
        .expect("client")
        .health()
        .await
        .unwrap_err();
    assert_unknown_issuer(&err, &dev);

    // Some other CA configured: it is the only anchor, so still unknown issuer.
    let other_ca = TestCa::new("Not The Dev CA");
    let wrong = bare.clone().with_ca_pem(other_ca.pem.into_bytes());
    let err = Client::new(wrong)
        .expect("client")
        .health()
        .await
        .unwrap_err();
    assert_unknown_issuer(&err, &dev);

    // The dev CA: works, and the root token reads through TLS.
    let client = root_client(&dev);
    let health = client.health().await.expect("health over TLS");
    assert!(health.is_ready());
    client
        .token_lookup_self()
        .await
        .expect("authenticated call over TLS");
}

#[tokio::test]
async fn plain_http_client_to_tls_server_is_refused_clearly() {
    let dev = BaoDev::start_tls().await;
    let http_addr = dev.addr().replacen("https://", "http://", 1);
    let client = Client::new(
        ClientConfig::from_address(&http_addr)
            .expect("cfg")
            .with_retry(RetryPolicy::no_retries()),
    )
    .expect("client");
    let err = client.health().await.unwrap_err();
    // Go's TLS listener answers plain HTTP with a 400 that says exactly this.
    assert!(
        matches!(&err, Error::BadRequest { errors, .. } if errors.iter().any(|e| e.contains("HTTPS server"))),
        "{err:?}"
    );
}
