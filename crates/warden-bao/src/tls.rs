//! rustls configuration, and turning handshake failures into [`TlsFailure`]s that say
//! *which* certificate failed and *why*.
//!
//! We build the rustls `ClientConfig` ourselves (instead of letting reqwest do it) for two
//! reasons: a configured CA bundle must be the only trust anchor, and the verifier is wrapped
//! in [`RecordingVerifier`], which remembers the subject and issuer of a server certificate it
//! refused. rustls errors only carry the reason; without the recording an operator would see
//! "unknown issuer" but not which certificate the server presented.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{
    AlertDescription, CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use zeroize::Zeroizing;

use crate::error::{CertProblem, Error, Result, TlsFailure};

/// A TLS client identity (certificate chain + private key) for mTLS and cert-auth login.
///
/// The key is held in a zeroize-on-drop buffer and never printed.
#[derive(Clone)]
pub struct ClientIdentity {
    cert_chain_pem: Vec<u8>,
    key_pem: Zeroizing<Vec<u8>>,
}

impl ClientIdentity {
    /// Takes a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or
    /// SEC1). Both are parsed, and the key checked against the leaf, now: a bad file or a key
    /// from another rotation fails at configuration time, not at the first handshake.
    pub fn from_pem(cert_chain_pem: Vec<u8>, key_pem: Zeroizing<Vec<u8>>) -> Result<Self> {
        let identity = Self {
            cert_chain_pem,
            key_pem,
        };
        let chain = identity.cert_chain()?;
        if chain.is_empty() {
            return Err(Error::config(
                "client certificate PEM contains no certificate",
            ));
        }
        rustls::sign::CertifiedKey::from_der(chain, identity.private_key()?, &provider()).map_err(
            |e| {
                Error::config(format!(
                    "client certificate and key do not go together: {e}"
                ))
            },
        )?;
        Ok(identity)
    }

    /// Reads the certificate chain and key from files (e.g. `VAULT_CLIENT_CERT`/`_KEY`), each a
    /// regular file of at most [`PEM_FILE_LIMIT`] bytes ([`Error::ReadFile`] otherwise). The
    /// key's PEM is read straight into a zeroize-on-drop buffer, which the identity keeps.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self> {
        let cert_pem = public(read_file("client certificate", cert)?);
        let key_pem = read_file("client key", key)?;
        Self::from_pem(cert_pem, key_pem)
    }

    /// The chain as DER, leaf first.
    pub(crate) fn cert_chain(&self) -> Result<Vec<CertificateDer<'static>>> {
        CertificateDer::pem_slice_iter(&self.cert_chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::config(format!("client certificate PEM: {e}")))
    }

    pub(crate) fn private_key(&self) -> Result<PrivateKeyDer<'static>> {
        // The pem error never contains key bytes, only the kind of failure.
        PrivateKeyDer::from_pem_slice(&self.key_pem)
            .map_err(|e| Error::config(format!("client key PEM: {e}")))
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_chain_pem_len", &self.cert_chain_pem.len())
            .field("key", &"...")
            .finish()
    }
}

/// The largest CA bundle, certificate chain or key file read, in bytes. These are kilobytes of
/// PEM (a whole public trust store concatenated into one bundle is about 200 KiB); the limit
/// only keeps a wrong path from filling memory.
pub const PEM_FILE_LIMIT: u64 = 4 * 1024 * 1024;

/// Reads a CA bundle, certificate or key file (`what` says which, for the error) through
/// [`warden_files::read_regular`]: opened without blocking and refused unless it is a regular
/// file of at most [`PEM_FILE_LIMIT`] bytes. A FIFO at a spec's `ca_cert` used to hang `warden
/// plan` forever on `open`, and `/dev/zero` filled its memory; both are refused at once now.
/// The buffer is zeroize-on-drop, as a key needs; [`public`] unwraps it for certificates.
pub(crate) fn read_file(what: &'static str, path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    warden_files::read_regular(path, PEM_FILE_LIMIT).map_err(|source| Error::ReadFile {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Moves public bytes (certificates) out of their zeroizing buffer, without a copy.
pub(crate) fn public(mut bytes: Zeroizing<Vec<u8>>) -> Vec<u8> {
    std::mem::take(&mut *bytes)
}

/// The one crypto provider of the project.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Builds the rustls config: trust only `ca_pem` when given (platform roots otherwise),
/// present `identity` when given, speak HTTP/1.1.
pub(crate) fn client_config(
    verifier: Arc<RecordingVerifier>,
    identity: Option<&ClientIdentity>,
) -> Result<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(|e| Error::config(format!("TLS protocol versions: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.cert_chain()?, id.private_key()?)
            .map_err(|e| {
                Error::config(format!(
                    "client certificate and key cannot be used together: {e}"
                ))
            })?,
        None => builder.with_no_client_auth(),
    };
    // HTTP/1.1 only, on purpose. Over HTTP/2 the h2 crate re-creates I/O errors from their
    // kind and message, which erases the typed `rustls::Error`: a server rejecting our client
    // certificate would then surface as "connection closed" instead of the TLS alert it sent.
    // Keep-alive HTTP/1.1 still reuses one connection per concurrent request stream.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// One diagnostic handshake to `address` with `config`, followed by a minimal request, to read
/// the TLS error the server answers with (for example `certificate_required`). `None` when the
/// exchange shows no TLS error or does not finish within 5 seconds. Bounded: one connection.
pub(crate) async fn probe(
    address: &url::Url,
    config: Arc<rustls::ClientConfig>,
) -> Option<rustls::Error> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let port = address.port_or_known_default()?;
    let (connect_host, server_name) = match address.host()? {
        url::Host::Domain(d) => (d.to_owned(), ServerName::try_from(d.to_owned()).ok()?),
        url::Host::Ipv4(ip) => (
            ip.to_string(),
            ServerName::IpAddress(std::net::IpAddr::V4(ip).into()),
        ),
        url::Host::Ipv6(ip) => (
            ip.to_string(),
            ServerName::IpAddress(std::net::IpAddr::V6(ip).into()),
        ),
    };
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect((connect_host.as_str(), port))
            .await
            .ok()?;
        let mut tls = match tokio_rustls::TlsConnector::from(config)
            .connect(server_name, tcp)
            .await
        {
            Ok(s) => s,
            Err(e) => return rustls_in_io(&e),
        };
        let request =
            b"GET /v1/sys/health HTTP/1.1\r\nHost: warden-probe\r\nConnection: close\r\n\r\n";
        if let Err(e) = tls.write_all(request).await {
            return rustls_in_io(&e);
        }
        let mut buf = [0u8; 64];
        match tls.read(&mut buf).await {
            Err(e) => rustls_in_io(&e),
            Ok(_) => None,
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

fn rustls_in_io(e: &std::io::Error) -> Option<rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>().cloned()
}

/// Builds the inner verifier for a CA bundle (or the platform's roots).
pub(crate) fn verifier(ca_pem: Option<&[u8]>) -> Result<Arc<RecordingVerifier>> {
    let inner: Arc<dyn ServerCertVerifier> = match ca_pem {
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| Error::config(format!("CA bundle PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| Error::config(format!("CA bundle: unusable certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(Error::config("CA bundle contains no certificate"));
            }
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| Error::config(format!("CA bundle: {e}")))?
        }
        None => Arc::new(
            rustls_platform_verifier::Verifier::new(provider())
                .map_err(|e| Error::config(format!("platform trust store: {e}")))?,
        ),
    };
    Ok(Arc::new(RecordingVerifier {
        inner,
        last_rejected: Mutex::new(None),
    }))
}

/// Subject and issuer of a server leaf certificate we refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RejectedCert {
    pub(crate) subject: Option<String>,
    pub(crate) issuer: Option<String>,
}

/// Delegates every decision to the real verifier; only remembers the last refused leaf.
///
/// A `Client` talks to one server, so "the last refusal" is the one the failing request saw;
/// the record is taken (cleared) when the error is mapped, and cleared on success.
#[derive(Debug)]
pub(crate) struct RecordingVerifier {
    inner: Arc<dyn ServerCertVerifier>,
    last_rejected: Mutex<Option<RejectedCert>>,
}

impl RecordingVerifier {
    pub(crate) fn take_rejected(&self) -> Option<RejectedCert> {
        self.last_rejected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    fn record(&self, value: Option<RejectedCert>) {
        *self
            .last_rejected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = value;
    }
}

pub(crate) fn describe_cert(der: &[u8]) -> RejectedCert {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => RejectedCert {
            subject: Some(cert.subject().to_string()),
            issuer: Some(cert.issuer().to_string()),
        },
        Err(_) => RejectedCert {
            subject: None,
            issuer: None,
        },
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let outcome = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match &outcome {
            Ok(_) => self.record(None),
            Err(_) => self.record(Some(describe_cert(end_entity))),
        }
        outcome
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

/// Finds a `rustls::Error` anywhere in an error's source chain.
///
/// `std::io::Error::source()` skips the error it wraps (it returns the *inner error's*
/// source), and tokio-rustls reports handshake failures as an `io::Error` wrapping the
/// `rustls::Error`, so each `io::Error` is opened with `get_ref()` explicitly.
pub(crate) fn find_rustls_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            let inner: &(dyn std::error::Error + 'static) = inner;
            if let Some(found) = find_rustls_error(inner) {
                return Some(found);
            }
        }
        current = e.source();
    }
    None
}

/// Classifies a rustls error. `rejected` is what the verifier recorded (if anything);
/// `presented` says whether we had a client certificate configured.
pub(crate) fn classify(
    err: &rustls::Error,
    rejected: Option<RejectedCert>,
    presented: bool,
) -> TlsFailure {
    match err {
        rustls::Error::InvalidCertificate(ce) => {
            let rejected = rejected.unwrap_or(RejectedCert {
                subject: None,
                issuer: None,
            });
            TlsFailure::ServerCertificate {
                subject: rejected.subject,
                issuer: rejected.issuer,
                reason: cert_problem(ce),
            }
        }
        rustls::Error::AlertReceived(alert) if is_client_cert_alert(*alert) => {
            TlsFailure::ClientCertificateRejected {
                alert: format!("{alert:?}"),
                presented,
            }
        }
        other => TlsFailure::Handshake {
            detail: other.to_string(),
        },
    }
}

/// Alerts a server sends about the *client's* certificate. (We never send a certificate-less
/// handshake to a server that would send these for its own reasons.)
fn is_client_cert_alert(alert: AlertDescription) -> bool {
    matches!(
        alert,
        AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::AccessDenied
    )
}

fn cert_problem(ce: &CertificateError) -> CertProblem {
    match ce {
        CertificateError::UnknownIssuer => CertProblem::UnknownIssuer,
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => CertProblem::Expired,
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            CertProblem::NotYetValid
        }
        CertificateError::NotValidForName => CertProblem::NameMismatch {
            expected: String::new(),
            presented: Vec::new(),
        },
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => CertProblem::NameMismatch {
            expected: server_name_text(expected),
            presented: presented.clone(),
        },
        CertificateError::Revoked => CertProblem::Revoked,
        CertificateError::BadSignature => CertProblem::BadSignature,
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            CertProblem::WrongPurpose
        }
        other => CertProblem::Other(format!("{other:?}")),
    }
}

fn server_name_text(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(d) => d.as_ref().to_owned(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_error_is_found_inside_io_error() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        // Nest it once more, as hyper/reqwest do.
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("outer")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let outer = Outer(io);
        let found = find_rustls_error(&outer).expect("found");
        assert!(matches!(
            found,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        ));
    }

    #[test]
    fn classification() {
        let rejected = RejectedCert {
            subject: Some("CN=vm".into()),
            issuer: Some("CN=Vault Dev CA".into()),
        };
        let f = classify(
            &rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            Some(rejected),
            false,
        );
        assert_eq!(
            f,
            TlsFailure::ServerCertificate {
                subject: Some("CN=vm".into()),
                issuer: Some("CN=Vault Dev CA".into()),
                reason: CertProblem::UnknownIssuer
            }
        );
        let f = classify(
            &rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("bao.test").expect("name").to_owned(),
                presented: vec!["DnsName(\"localhost\")".into()],
            }),
            None,
            false,
        );
        assert!(
            matches!(f, TlsFailure::ServerCertificate { reason: CertProblem::NameMismatch { ref expected, .. }, .. } if expected == "bao.test")
        );
        let f = classify(
            &rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
            None,
            false,
        );
        assert_eq!(
            f,
            TlsFailure::ClientCertificateRejected {
                alert: "CertificateRequired".into(),
                presented: false
            }
        );
        let f = classify(
            &rustls::Error::AlertReceived(AlertDescription::UnknownCA),
            None,
            true,
        );
        assert!(matches!(
            f,
            TlsFailure::ClientCertificateRejected {
                presented: true,
                ..
            }
        ));
        let f = classify(
            &rustls::Error::AlertReceived(AlertDescription::ProtocolVersion),
            None,
            true,
        );
        assert!(matches!(f, TlsFailure::Handshake { .. }));
    }

    #[test]
    fn describe_parses_subject_and_issuer() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["bao.test".to_owned()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "bao.test");
        let cert = params.self_signed(&key).expect("cert");
        let d = describe_cert(cert.der());
        assert_eq!(d.subject.as_deref(), Some("CN=bao.test"));
        assert_eq!(d.issuer.as_deref(), Some("CN=bao.test"));
        assert_eq!(describe_cert(b"junk").subject, None);
    }

    #[test]
    fn ca_bundle_must_hold_a_certificate() {
        assert!(matches!(
            verifier(Some(b"nothing here")),
            Err(Error::Config { .. })
        ));
    }
}
