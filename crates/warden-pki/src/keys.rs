//! Key pairs and CSRs: generating the key for a root, an intermediate or a leaf, and asking for a
//! certificate with it.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use rcgen::{CertificateParams, DnType, KeyPair};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};

/// Key algorithms Warden generates. ECDSA P-256 is the default: small, fast, accepted
/// everywhere OpenBao and rustls run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 with SHA-256.
    #[default]
    EcdsaP256,
    /// ECDSA on NIST P-384 with SHA-384.
    EcdsaP384,
    /// RSA 3072 bits, PKCS#1 v1.5 with SHA-256 (for relying parties that only speak RSA).
    Rsa3072,
}

impl KeyAlgorithm {
    /// Every algorithm, in the order the CLI lists them.
    pub const ALL: [Self; 3] = [Self::EcdsaP256, Self::EcdsaP384, Self::Rsa3072];

    /// The name used on the command line and in `ca.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EcdsaP256 => "ecdsa-p256",
            Self::EcdsaP384 => "ecdsa-p384",
            Self::Rsa3072 => "rsa-3072",
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| Error::BadKeyAlgorithm {
                input: s.to_owned(),
            })
    }
}

/// A private key held in memory. Its `Debug` prints `"..."` and its DER is wiped on drop.
pub struct GeneratedKey {
    pub(crate) inner: KeyPair,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("...")
    }
}

impl Drop for GeneratedKey {
    fn drop(&mut self) {
        self.inner.zeroize();
    }
}

impl GeneratedKey {
    /// The private key as unencrypted PKCS#8 PEM, wiped from memory when dropped. Write it only
    /// through `warden_files::write_atomic` with `Mode::OwnerOnly`.
    pub fn private_key_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(self.inner.serialize_pem())
    }

    /// The private key as unencrypted PKCS#8 DER, wiped from memory when dropped.
    pub fn private_key_der(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.inner.serialize_der())
    }

    /// The public key as a DER `SubjectPublicKeyInfo`: what a [`crate::LocalIssuer`] certifies.
    pub fn public_key_der(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(&self.inner)
    }

    /// Parses an unencrypted private key (PKCS#8, SEC1 or PKCS#1 PEM).
    pub fn from_pem(pem: &str) -> Result<Self> {
        KeyPair::from_pem(pem)
            .map(|inner| Self { inner })
            .map_err(|e| Error::BadKey {
                reason: e.to_string(),
            })
    }

    /// Parses an unencrypted PKCS#8 DER private key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        KeyPair::try_from(der)
            .map(|inner| Self { inner })
            .map_err(|e| Error::BadKey {
                reason: e.to_string(),
            })
    }

    /// The algorithm of this key, when it is one Warden generates.
    pub fn algorithm(&self) -> Option<KeyAlgorithm> {
        let alg = self.inner.algorithm();
        if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
            Some(KeyAlgorithm::EcdsaP256)
        } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
            Some(KeyAlgorithm::EcdsaP384)
        } else if alg == &rcgen::PKCS_RSA_SHA256 {
            Some(KeyAlgorithm::Rsa3072)
        } else {
            None
        }
    }
}

/// Generates a fresh key pair with the system's CSPRNG (aws-lc-rs).
pub fn generate_key(alg: KeyAlgorithm) -> Result<GeneratedKey> {
    let step = "generate a key pair";
    let inner = match alg {
        KeyAlgorithm::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyAlgorithm::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyAlgorithm::Rsa3072 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_3072)
        }
    }
    .map_err(Error::rcgen(step))?;
    Ok(GeneratedKey { inner })
}

/// Builds a PEM PKCS#10 CSR for `key` with subject `CN=common_name` and the given SANs.
///
/// The offline root ignores everything but the subject and the key; the SANs matter only to
/// issuers (such as OpenBao's `pki/sign`) that copy them.
pub fn make_csr(
    key: &GeneratedKey,
    common_name: &str,
    dns_sans: &[String],
    ip_sans: &[IpAddr],
) -> Result<String> {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.subject_alt_names = crate::params::san_list(dns_sans, ip_sans)?;
    params
        .serialize_request(&key.inner)
        .and_then(|csr| csr.pem())
        .map_err(Error::rcgen("build the CSR"))
}

pub(crate) fn is_rsa_spki(spki_der: &[u8]) -> bool {
    use x509_parser::prelude::FromDer;
    x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der)
        .map(|(_, spki)| {
            spki.algorithm.algorithm == x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_round_trip() {
        for alg in KeyAlgorithm::ALL {
            assert_eq!(alg.as_str().parse::<KeyAlgorithm>().unwrap(), alg);
            assert_eq!(alg.to_string(), alg.as_str());
        }
        assert_eq!(KeyAlgorithm::default(), KeyAlgorithm::EcdsaP256);
        assert!(matches!(
            "ed448".parse::<KeyAlgorithm>(),
            Err(Error::BadKeyAlgorithm { .. })
        ));
    }

    #[test]
    fn debug_never_shows_key_material() {
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let pem = key.private_key_pem();
        assert_eq!(format!("{key:?}"), "...");
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(!format!("{key:?}").contains(&body[..16]));
    }

    #[test]
    fn keys_round_trip_through_pem_and_make_valid_csrs() {
        for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384] {
            let key = generate_key(alg).unwrap();
            assert_eq!(key.algorithm(), Some(alg));
            let again = GeneratedKey::from_pem(&key.private_key_pem()).unwrap();
            assert_eq!(again.public_key_der(), key.public_key_der());
            let csr = make_csr(
                &key,
                "svc",
                &["svc.internal".to_owned()],
                &["127.0.0.1".parse().unwrap()],
            )
            .unwrap();
            let parsed = rcgen::CertificateSigningRequestParams::from_pem(&csr).unwrap();
            assert_eq!(parsed.params.subject_alt_names.len(), 2);
            assert!(!is_rsa_spki(&key.public_key_der()));
        }
    }

    #[test]
    fn rsa_keys_are_3072_bits() {
        let key = generate_key(KeyAlgorithm::Rsa3072).unwrap();
        assert_eq!(key.algorithm(), Some(KeyAlgorithm::Rsa3072));
        assert!(is_rsa_spki(&key.public_key_der()));
        use x509_parser::prelude::FromDer;
        let der = key.public_key_der();
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&der).unwrap();
        assert_eq!(spki.parsed().unwrap().key_size(), 3072);
    }
}
