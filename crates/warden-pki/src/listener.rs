//! An environment's *listener CA* and the certificates it issues for the OpenBao listener
//! (docs/adr/0003-lab-trust-layout.md): one home for the lab (`warden-lab`'s TLS material) and
//! production (`warden server tls`).
//!
//! An OpenBao server needs its TLS certificate before it runs, so it cannot come from the
//! server's own PKI engine. The listener CA is an intermediate whose key is made here and whose
//! CSR the offline root signs (profile `listener-ca`, path length 0, recorded in the ledger). It
//! issues the nodes' server certificates and the client certificates nodes join with, and it is
//! the CA the listener accepts client certificates from (with the environment's PKI
//! intermediate, for operators and identities), never the root.

use std::fmt;
use std::net::IpAddr;

use secrecy::SecretString;
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::error::Result;
use crate::issuer::LocalIssuer;
use crate::keys::{GeneratedKey, KeyAlgorithm, generate_key, make_csr};
use crate::root::CaDir;
use crate::sign::IntermediateRequest;

/// The signing profile recorded in the root's ledger for a listener CA.
pub const LISTENER_CA_PROFILE: &str = "listener-ca";

/// Why a listener CA is signed without name constraints, recorded in the ledger (ADR 0013):
/// its server certificates name loopback and node addresses, which every lab environment
/// shares and DNS constraints cannot separate. Only the PKI intermediates (profile `vault-pki`),
/// which issue the names services and identities are verified by, must be constrained.
pub const LISTENER_CA_UNCONSTRAINED: &str = "listener CA: its server names are node addresses that DNS name constraints cannot separate between environments (ADR 0013)";

/// A listener CA in memory: its certificate and its key. `Debug` does not print the key.
pub struct ListenerCa {
    issuer: LocalIssuer,
    key_pem: Zeroizing<String>,
}

impl fmt::Debug for ListenerCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerCa")
            .field("subject", &self.issuer.info().subject)
            .field("key", &"...")
            .finish()
    }
}

/// A leaf certificate and its key. `Debug` does not print the key.
pub struct IssuedLeaf {
    /// The certificate, PEM; for a server, leaf then listener CA (what a TLS server presents).
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM (zeroized on drop).
    pub key_pem: Zeroizing<String>,
}

impl fmt::Debug for IssuedLeaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedLeaf")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"...")
            .finish()
    }
}

fn p256() -> Result<GeneratedKey> {
    generate_key(KeyAlgorithm::EcdsaP256)
}

impl ListenerCa {
    /// Creates `env`'s listener CA: an EC P-256 key made here, its CSR signed by the offline
    /// root `ca` (which records the signature in its ledger).
    pub fn create(
        ca: &CaDir,
        env: &str,
        passphrase: &SecretString,
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<Self> {
        let key = p256()?;
        let csr = make_csr(&key, &format!("Warden {env} listener CA"), &[], &[])?;
        let request = IntermediateRequest {
            environment: env.to_owned(),
            profile: LISTENER_CA_PROFILE.to_owned(),
            validity,
            path_len: 0,
            permitted_dns: Vec::new(),
            unconstrained_because: Some(LISTENER_CA_UNCONSTRAINED.to_owned()),
        };
        let signed = ca.sign_intermediate(&csr, &request, passphrase, now)?;
        let key_pem = key.private_key_pem();
        Ok(Self {
            issuer: LocalIssuer::new(&signed.cert_pem, key)?,
            key_pem,
        })
    }

    /// Loads a listener CA kept on disk (certificate and key PEM); refuses a key that does not
    /// belong to the certificate, or a certificate that is not a CA.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self> {
        Ok(Self {
            issuer: LocalIssuer::from_pem(cert_pem, key_pem)?,
            key_pem: Zeroizing::new(key_pem.to_owned()),
        })
    }

    /// The listener CA's certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        self.issuer.cert_pem()
    }

    /// The listener CA's private key, PEM: write it owner-only, or better keep it offline.
    pub fn key_pem(&self) -> &Zeroizing<String> {
        &self.key_pem
    }

    /// A server certificate for `common_name` with these SANs, on a fresh key; the PEM is the
    /// leaf followed by the listener CA.
    pub fn issue_server(
        &self,
        common_name: &str,
        dns: &[String],
        ips: &[IpAddr],
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<IssuedLeaf> {
        let key = p256()?;
        let leaf = self.issuer.issue_server(
            &key.public_key_der(),
            common_name,
            dns,
            ips,
            validity,
            now,
        )?;
        Ok(IssuedLeaf {
            cert_pem: format!(
                "{}\n{}\n",
                leaf.trim_end(),
                self.issuer.cert_pem().trim_end()
            ),
            key_pem: key.private_key_pem(),
        })
    }

    /// A client certificate for `common_name` on a fresh key (the leaf alone).
    pub fn issue_client(
        &self,
        common_name: &str,
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<IssuedLeaf> {
        let key = p256()?;
        let leaf = self
            .issuer
            .issue_client(&key.public_key_der(), common_name, validity, now)?;
        Ok(IssuedLeaf {
            cert_pem: leaf,
            key_pem: key.private_key_pem(),
        })
    }
}

/// The listener's client-CA bundle: the listener CA, then `identity_ca_pem` (the environment's
/// PKI intermediate, which signs operators' and identities' certificates) when there is one.
pub fn client_ca_bundle(listener_ca_pem: &str, identity_ca_pem: Option<&str>) -> String {
    let mut want = listener_ca_pem.trim_end().to_owned();
    want.push('\n');
    if let Some(extra) = identity_ca_pem.filter(|p| !p.trim().is_empty()) {
        want.push_str(extra.trim_end());
        want.push('\n');
    }
    want
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::root::RootOptions;

    #[test]
    fn a_listener_ca_issues_a_server_chain_and_hides_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let pass = SecretString::from("correct horse".to_owned());
        let now = OffsetDateTime::now_utc();
        let ca = CaDir::init(&dir.path().join("ca"), &RootOptions::default(), &pass, now).unwrap();
        let lca = ListenerCa::create(&ca, "prod", &pass, Duration::days(30), now).unwrap();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let server = lca
            .issue_server("prod-1", &[], &[ip], Duration::days(1), now)
            .unwrap();
        let certs = crate::parse_pem_bundle(&server.cert_pem).unwrap();
        assert_eq!(certs.len(), 2, "leaf + listener CA");
        assert!(!format!("{lca:?}{server:?}").contains("PRIVATE KEY"));
        let again = ListenerCa::load(lca.cert_pem(), lca.key_pem()).unwrap();
        assert_eq!(again.cert_pem(), lca.cert_pem());
        let bundle = client_ca_bundle(lca.cert_pem(), Some("X\n"));
        assert!(bundle.ends_with("\nX\n"));
    }
}
