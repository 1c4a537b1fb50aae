//! An intermediate CA whose key is in memory, for issuing leaves locally.
//!
//! The lab gives each environment one: it issues the OpenBao listener's server certificate and
//! the operators' client certificates, so TLS and mTLS work before OpenBao's own PKI exists. The
//! intermediate itself must come from the offline root ([`crate::CaDir::sign_intermediate`], from
//! a CSR made with [`crate::make_csr`]), so everything it issues chains to the one root.

use std::fmt;
use std::net::IpAddr;

use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};

use crate::error::{Error, Result};
use crate::inspect::{CertInfo, Parsed, parse_der, parse_one};
use crate::keys::{GeneratedKey, is_rsa_spki};
use crate::params;

/// An issuing CA certificate plus its private key. `Debug` shows the certificate's subject only.
pub struct LocalIssuer {
    cert: Parsed,
    cert_pem: String,
    key: GeneratedKey,
}

impl fmt::Debug for LocalIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalIssuer")
            .field("subject", &self.cert.info.subject)
            .field("key", &"...")
            .finish()
    }
}

impl LocalIssuer {
    /// Pairs a CA certificate (PEM) with its key. Refuses a certificate that is not a CA or a
    /// key that does not belong to it.
    pub fn new(cert_pem: &str, key: GeneratedKey) -> Result<Self> {
        let cert = parse_one(cert_pem)?;
        if !cert.can_sign_certs {
            return Err(Error::NotACa {
                subject: cert.info.subject,
            });
        }
        if key.public_key_der() != cert.x509().public_key().raw {
            return Err(Error::BadKey {
                reason: format!("the key does not belong to {}", cert.info.subject),
            });
        }
        Ok(Self {
            cert,
            cert_pem: cert_pem.trim_end().to_owned() + "\n",
            key,
        })
    }

    /// Like [`LocalIssuer::new`] with the key as unencrypted PEM.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self> {
        Self::new(cert_pem, GeneratedKey::from_pem(key_pem)?)
    }

    /// The issuing certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The issuing certificate's facts.
    pub fn info(&self) -> &CertInfo {
        &self.cert.info
    }

    /// Issues a TLS server certificate for `subject_public_key_der` (a DER SubjectPublicKeyInfo,
    /// e.g. [`GeneratedKey::public_key_der`]): EKU serverAuth, KU digitalSignature (plus
    /// keyEncipherment for RSA keys, which RSA key exchange needs), SANs as given.
    pub fn issue_server(
        &self,
        subject_public_key_der: &[u8],
        common_name: &str,
        dns: &[String],
        ips: &[IpAddr],
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<String> {
        if dns.is_empty() && ips.is_empty() {
            return Err(Error::InvalidField {
                field: "subject alternative names",
                value: String::new(),
                reason: "a server certificate needs at least one DNS name or IP address",
            });
        }
        let mut p = self.leaf_params(common_name, validity, now)?;
        p.subject_alt_names = params::san_list(dns, ips)?;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if is_rsa_spki(subject_public_key_der) {
            p.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        self.sign(&p, subject_public_key_der)
    }

    /// Issues a TLS client certificate (EKU clientAuth, KU digitalSignature) named
    /// `CN=common_name`: what OpenBao's cert auth matches against `allowed_common_names`.
    pub fn issue_client(
        &self,
        subject_public_key_der: &[u8],
        common_name: &str,
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<String> {
        let mut p = self.leaf_params(common_name, validity, now)?;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(&p, subject_public_key_der)
    }

    fn leaf_params(
        &self,
        common_name: &str,
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<CertificateParams> {
        let me = &self.cert.info;
        if now < me.not_before || now > me.not_after {
            return Err(Error::IssuerNotValid {
                subject: me.subject.clone(),
                not_before: me.not_before,
                not_after: me.not_after,
                now,
            });
        }
        let (not_before, not_after) = params::window(now, validity)?;
        if not_after > me.not_after {
            return Err(Error::LeafOutlivesIssuer {
                issuer: me.subject.clone(),
                issuer_not_after: me.not_after,
                requested_not_after: not_after,
            });
        }
        let mut p = CertificateParams::default();
        p.distinguished_name = params::common_name_dn(common_name)?;
        p.serial_number = Some(params::random_serial()?);
        p.not_before = not_before;
        p.not_after = not_after;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.use_authority_key_identifier_extension = true;
        Ok(p)
    }

    fn sign(&self, p: &CertificateParams, spki_der: &[u8]) -> Result<String> {
        let spki = rcgen::SubjectPublicKeyInfo::from_der(spki_der).map_err(|e| Error::BadKey {
            reason: format!("unsupported subject public key: {e}"),
        })?;
        let issuer =
            rcgen::Issuer::from_ca_cert_der(&self.cert.der.as_slice().into(), &self.key.inner)
                .map_err(Error::rcgen("load the issuing certificate"))?;
        let cert = p
            .signed_by(&spki, &issuer)
            .map_err(Error::rcgen("sign the certificate"))?;
        let leaf = parse_der(cert.der())?;
        if !leaf.is_signed_by(&self.cert) {
            return Err(Error::BadCertificate {
                index: None,
                reason: "the freshly issued certificate failed its own check".to_owned(),
            });
        }
        Ok(cert.pem())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyAlgorithm, generate_key, make_csr};
    use crate::root::RootOptions;
    use crate::root::tests::{NOW, new_ca, pass};
    use crate::sign::IntermediateRequest;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

    struct Lab {
        _tmp: tempfile::TempDir,
        root_pem: String,
        issuer: LocalIssuer,
    }

    fn lab(permitted_dns: Vec<String>) -> Lab {
        let (tmp, ca) = new_ca(&RootOptions::default());
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let csr = make_csr(&key, "lab listener CA", &[], &[]).unwrap();
        let req = IntermediateRequest {
            profile: "listener-ca".to_owned(),
            validity: Duration::days(365),
            permitted_dns,
            ..IntermediateRequest::new("test")
        };
        let signed = ca.sign_intermediate(&csr, &req, &pass(), NOW).unwrap();
        let issuer = LocalIssuer::new(&signed.cert_pem, key).unwrap();
        Lab {
            _tmp: tmp,
            root_pem: ca.root_pem().to_owned(),
            issuer,
        }
    }

    fn der(pem: &str) -> CertificateDer<'static> {
        use rustls_pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    /// Full path validation with rustls-webpki, as a TLS peer would do it.
    fn webpki_verify(
        lab: &Lab,
        leaf_pem: &str,
        usage: webpki::KeyUsage,
        at: OffsetDateTime,
    ) -> Result<(), webpki::Error> {
        let root = der(&lab.root_pem);
        let anchors = [webpki::anchor_from_trusted_cert(&root).unwrap()];
        let inter = [der(lab.issuer.cert_pem())];
        let leaf = der(leaf_pem);
        let ee = webpki::EndEntityCert::try_from(&leaf).unwrap();
        let t =
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(at.unix_timestamp() as u64));
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &inter,
            t,
            usage,
            None,
            None,
        )
        .map(|_| ())
    }

    #[test]
    fn server_certificates_validate_with_webpki_and_respect_name_constraints() {
        let lab = lab(vec!["svc.internal".to_owned()]);
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let pem = lab
            .issuer
            .issue_server(
                &key.public_key_der(),
                "bao.svc.internal",
                &["bao.svc.internal".to_owned()],
                &["127.0.0.1".parse().unwrap()],
                Duration::days(30),
                NOW,
            )
            .unwrap();
        webpki_verify(
            &lab,
            &pem,
            webpki::KeyUsage::server_auth(),
            NOW + Duration::hours(1),
        )
        .unwrap();
        let leaf = der(&pem);
        let ee = webpki::EndEntityCert::try_from(&leaf).unwrap();
        ee.verify_is_valid_for_subject_name(&ServerName::try_from("bao.svc.internal").unwrap())
            .unwrap();
        ee.verify_is_valid_for_subject_name(&ServerName::try_from("127.0.0.1").unwrap())
            .unwrap();
        // Wrong usage and after expiry fail.
        assert!(webpki_verify(&lab, &pem, webpki::KeyUsage::client_auth(), NOW).is_err());
        assert!(
            webpki_verify(
                &lab,
                &pem,
                webpki::KeyUsage::server_auth(),
                NOW + Duration::days(31)
            )
            .is_err()
        );

        let info = crate::parse_pem_bundle(&pem).unwrap().remove(0);
        assert!(!info.is_ca);
        assert_eq!(
            info.subject_alt_names,
            vec!["DNS:bao.svc.internal", "IP:127.0.0.1"]
        );

        // A name outside the constraint is issued (the local issuer does not police names) but
        // no relying party accepts it.
        let evil = lab
            .issuer
            .issue_server(
                &key.public_key_der(),
                "evil",
                &["evil.example.com".to_owned()],
                &[],
                Duration::days(1),
                NOW,
            )
            .unwrap();
        assert!(matches!(
            webpki_verify(&lab, &evil, webpki::KeyUsage::server_auth(), NOW),
            Err(webpki::Error::NameConstraintViolation)
        ));
    }

    #[test]
    fn client_certificates_validate_for_client_auth_only() {
        let lab = lab(vec![]);
        let key = generate_key(KeyAlgorithm::EcdsaP384).unwrap();
        let pem = lab
            .issuer
            .issue_client(
                &key.public_key_der(),
                "operator-alice",
                Duration::days(7),
                NOW,
            )
            .unwrap();
        webpki_verify(&lab, &pem, webpki::KeyUsage::client_auth(), NOW).unwrap();
        assert!(webpki_verify(&lab, &pem, webpki::KeyUsage::server_auth(), NOW).is_err());
        let info = crate::parse_pem_bundle(&pem).unwrap().remove(0);
        assert_eq!(info.subject, "CN=operator-alice");
        assert_eq!(info.key_algorithm, "ECDSA P-384");
    }

    #[test]
    fn rsa_server_keys_get_key_encipherment() {
        let lab = lab(vec![]);
        let key = generate_key(KeyAlgorithm::Rsa3072).unwrap();
        let pem = lab
            .issuer
            .issue_server(
                &key.public_key_der(),
                "rsa",
                &["rsa.local".to_owned()],
                &[],
                Duration::days(1),
                NOW,
            )
            .unwrap();
        let p = parse_one(&pem).unwrap();
        let x = p.x509();
        let ku = x.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && ku.key_encipherment());
        webpki_verify(&lab, &pem, webpki::KeyUsage::server_auth(), NOW).unwrap();
    }

    #[test]
    fn refuses_leaves_that_outlive_the_issuer_or_an_invalid_issuer() {
        let lab = lab(vec![]);
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let spki = key.public_key_der();
        let err = lab
            .issuer
            .issue_client(&spki, "x", Duration::days(400), NOW)
            .unwrap_err();
        assert!(matches!(err, Error::LeafOutlivesIssuer { .. }), "{err}");
        let err = lab
            .issuer
            .issue_client(&spki, "x", Duration::days(1), NOW + Duration::days(366))
            .unwrap_err();
        assert!(matches!(err, Error::IssuerNotValid { .. }), "{err}");
        let err = lab
            .issuer
            .issue_server(&spki, "x", &[], &[], Duration::days(1), NOW)
            .unwrap_err();
        assert!(matches!(err, Error::InvalidField { .. }), "{err}");
    }

    #[test]
    fn refuses_non_ca_certificates_and_foreign_keys() {
        let lab = lab(vec![]);
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let leaf = lab
            .issuer
            .issue_client(&key.public_key_der(), "x", Duration::days(1), NOW)
            .unwrap();
        let err =
            LocalIssuer::new(&leaf, generate_key(KeyAlgorithm::EcdsaP256).unwrap()).unwrap_err();
        assert!(matches!(err, Error::NotACa { .. }), "{err}");
        let err = LocalIssuer::new(lab.issuer.cert_pem(), key).unwrap_err();
        assert!(matches!(err, Error::BadKey { .. }), "{err}");
    }

    #[test]
    fn debug_hides_the_key() {
        let lab = lab(vec![]);
        let dbg = format!("{:?}", lab.issuer);
        assert!(
            dbg.contains("lab listener CA") && dbg.contains("\"...\""),
            "{dbg}"
        );
        assert!(!dbg.contains("PRIVATE"), "{dbg}");
    }
}
