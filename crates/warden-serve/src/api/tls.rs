//! The API's TLS: a server certificate and mutual TLS against the environment's client CAs.
//! A client that presents no certificate, or one that does not chain to these CAs (another
//! environment's operator, signed by another listener CA), is refused during the handshake:
//! no request of it is ever read.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::ApiError;

/// Builds the server configuration: `cert_pem` (leaf first, then its chain), its key, and
/// `client_ca_pem` (every CA whose client certificates are accepted). HTTP/1.1 only.
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: &str,
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
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls("the server certificate and key", &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
