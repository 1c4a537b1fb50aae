//! Shared helpers: clients for a dev server, fast retry policies, certificates made in code.

use std::collections::BTreeSet;
use std::time::Duration;

use warden_bao::{Client, ClientConfig, ClientIdentity, RetryPolicy};
use warden_testkit::BaoDev;
use zeroize::Zeroizing;

/// Retries tuned for tests: quick backoff, short budgets, so failures show in seconds.
pub(crate) fn quick_retry(budget: Duration) -> RetryPolicy {
    RetryPolicy::default()
        .with_backoff(Duration::from_millis(50), Duration::from_millis(400))
        .with_call_budget(budget)
        .with_startup_timeout(budget)
        .with_min_spacing(Duration::from_millis(50))
}

/// Config for `dev` (trusting its CA when it is a TLS server), no token.
pub(crate) fn config(dev: &BaoDev) -> ClientConfig {
    let cfg = ClientConfig::from_address(dev.addr()).expect("dev address parses");
    match dev.ca_cert_path() {
        Some(ca) => cfg.with_ca_file(ca).expect("dev CA readable"),
        None => cfg,
    }
}

/// A client holding the dev server's root token, with no retries of ordinary calls.
pub(crate) fn root_client(dev: &BaoDev) -> Client {
    Client::new(
        config(dev)
            .with_token(dev.root_token().clone())
            .with_retry(RetryPolicy::no_retries()),
    )
    .expect("client builds")
}

/// A CA and a way to issue client certificates from it, for cert auth.
pub(crate) struct TestCa {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pub(crate) pem: String,
}

impl TestCa {
    pub(crate) fn new(name: &str) -> Self {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let pem = params.self_signed(&key).expect("CA self-signs").pem();
        Self { params, key, pem }
    }

    /// A client certificate for `common_name` (clientAuth), as a Warden identity.
    pub(crate) fn client_identity(&self, common_name: &str) -> ClientIdentity {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let mut params =
            rcgen::CertificateParams::new(vec![common_name.to_owned()]).expect("leaf params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("leaf signed");
        ClientIdentity::from_pem(
            cert.pem().into_bytes(),
            Zeroizing::new(key.serialize_pem().into_bytes()),
        )
        .expect("identity parses")
    }
}

/// Local ports of the established TCP connections from this machine to `port`, read from
/// `/proc/net/tcp`: proves keep-alive reuse without trusting the client's own word.
pub(crate) fn client_ports_to(port: u16) -> BTreeSet<u16> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let port_of = |addr: &str| {
        addr.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (local, remote, state) = (cols.get(1)?, cols.get(2)?, cols.get(3)?);
            (port_of(remote) == Some(port) && *state == "01").then(|| port_of(local))?
        })
        .collect()
}
