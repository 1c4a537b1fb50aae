//! The API's TLS: a server certificate and mutual TLS against the environment's client CAs,
//! for the environment's operators only. A client that presents no certificate, one that does
//! not chain to these CAs (another environment's operator, signed by another listener CA), or
//! one that chains but is not an operator's (a node's, a workload identity's) is refused
//! during the handshake: no request of it is ever read.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use super::ApiError;

/// Whose certificates are operators' in one environment, by the leaf's common name:
/// `<name>.operator.<domain>` (signed by the environment's PKI intermediate through the
/// `warden-operator` role, which issues nothing else under `operator.<domain>`,
/// docs/identity.md#operators) or the lab's `operator@<env>` (from the listener CA).
#[derive(Debug, Clone)]
pub struct Operators {
    /// The environment's name.
    pub env: String,
    /// The environment's domain.
    pub domain: String,
}

impl Operators {
    fn accepts(&self, common_name: &str) -> bool {
        common_name == format!("operator@{}", self.env)
            || common_name
                .strip_suffix(&format!(".operator.{}", self.domain))
                .is_some_and(|name| !name.is_empty() && !name.contains('.'))
    }
}

/// Builds the server configuration: `cert_pem` (leaf first, then its chain), its key, and
/// `client_ca_pem` (every CA whose client certificates are accepted, of which only
/// `operators`' leaves). HTTP/1.1 only.
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: &str,
    operators: Operators,
) -> Result<Arc<rustls::ServerConfig>, ApiError> {
    let tls = |what: &str, e: &dyn std::fmt::Display| ApiError::Tls(format!("{what}: {e}"));
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| tls("the server certificate", &e))?;
    if chain.is_empty() {
        return Err(ApiError::Tls(
            "the server certificate file holds no certificate".into(),
        ));
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| tls("the server key", &e))?;
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
        let ca = ca.map_err(|e| tls("the client CA bundle", &e))?;
        roots
            .add(ca)
            .map_err(|e| tls("a certificate of the client CA bundle", &e))?;
    }
    if roots.is_empty() {
        return Err(ApiError::Tls(
            "the client CA bundle holds no certificate".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    // No `allow_unauthenticated`: a client certificate is required.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| tls("the client verifier", &e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls("the TLS versions", &e))?
        .with_client_cert_verifier(Arc::new(OperatorsOnly {
            inner: verifier,
            operators,
        }))
        .with_single_cert(chain, key)
        .map_err(|e| tls("the server certificate and key", &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The WebPKI chain check, then the operator check on the leaf's common name.
#[derive(Debug)]
struct OperatorsOnly {
    inner: Arc<dyn ClientCertVerifier>,
    operators: Operators,
}

fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    Some(cn.to_owned())
}

impl ClientCertVerifier for OperatorsOnly {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        match common_name(end_entity) {
            Some(cn) if self.operators.accepts(&cn) => Ok(verified),
            _ => Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_operators_names_are_accepted() {
        let ops = Operators {
            env: "test".into(),
            domain: "test.warden.internal".into(),
        };
        assert!(ops.accepts("operator@test"));
        assert!(ops.accepts("alice.operator.test.warden.internal"));
        for cn in [
            "operator@prod",
            "node@test",
            "issuer.identity.test.warden.internal",
            ".operator.test.warden.internal",
            "a.b.operator.test.warden.internal",
            "alice.operator.prod.warden.internal",
        ] {
            assert!(!ops.accepts(cn), "{cn}");
        }
    }
}
