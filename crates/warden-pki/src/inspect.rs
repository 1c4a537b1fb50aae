//! Reading certificates: a PEM bundle in, one [`CertInfo`] per certificate out. The facts here
//! are what `ca show` and `ca verify` print and what the chain checks reason about.

use std::net::IpAddr;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Serialize;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::error::{Error, Result};
use crate::params::sha256_hex;

/// What a certificate says about itself, in the form operators read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    /// Subject DN, RFC 4514 style (`CN=...`).
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial number, lower-case hex.
    pub serial: String,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// BasicConstraints CA:true.
    pub is_ca: bool,
    /// BasicConstraints pathLenConstraint, when present.
    pub path_len: Option<u32>,
    /// SHA-256 of the DER encoding, lower-case hex.
    pub sha256: String,
    /// Subject equals issuer and the certificate's own key verifies its signature.
    pub self_signed: bool,
    /// `ECDSA P-256`, `RSA 3072`, ...
    pub key_algorithm: String,
    /// Subject alternative names (`DNS:...`, `IP:...`).
    pub subject_alt_names: Vec<String>,
    /// Permitted DNS subtrees from the NameConstraints extension.
    pub permitted_dns: Vec<String>,
    /// SubjectKeyIdentifier, lower-case hex: names this certificate's key as an issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_key_id: Option<String>,
    /// AuthorityKeyIdentifier's key id, lower-case hex: the issuer key that signed this
    /// certificate (matches the issuer's `subject_key_id`). Posture counts leaves per issuer
    /// by it, since old and new intermediates share their subject name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority_key_id: Option<String>,
}

/// A certificate kept as DER alongside its facts, so chain checks can re-parse it to verify
/// signatures without lifetimes leaking into the public API.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub(crate) der: Vec<u8>,
    pub(crate) info: CertInfo,
    /// CA:true and, when KeyUsage is present, keyCertSign.
    pub(crate) can_sign_certs: bool,
}

impl Parsed {
    pub(crate) fn x509(&self) -> X509Certificate<'_> {
        // Infallible: `parse_der` succeeded on these very bytes.
        X509Certificate::from_der(&self.der)
            .map(|(_, c)| c)
            .unwrap_or_else(|_| unreachable!("DER was parsed before"))
    }

    /// True when `issuer` names this certificate's issuer and its key verifies the signature.
    pub(crate) fn is_signed_by(&self, issuer: &Self) -> bool {
        let child = self.x509();
        let parent = issuer.x509();
        child.issuer() == parent.subject()
            && child.verify_signature(Some(parent.public_key())).is_ok()
    }
}

/// Parses every `CERTIFICATE` block of a PEM text, in order. Other blocks (keys) are ignored; a
/// text without any certificate is an error.
pub fn parse_pem_bundle(pem: &str) -> Result<Vec<CertInfo>> {
    Ok(parse_bundle(pem)?.into_iter().map(|p| p.info).collect())
}

pub(crate) fn parse_bundle(pem: &str) -> Result<Vec<Parsed>> {
    let mut out = Vec::new();
    for (i, item) in CertificateDer::pem_slice_iter(pem.as_bytes()).enumerate() {
        let der = item.map_err(|e| Error::BadCertificate {
            index: Some(i),
            reason: format!("invalid PEM: {e}"),
        })?;
        out.push(parse_der(der.as_ref()).map_err(|e| match e {
            Error::BadCertificate { reason, .. } => Error::BadCertificate {
                index: Some(i),
                reason,
            },
            other => other,
        })?);
    }
    if out.is_empty() {
        return Err(Error::BadCertificate {
            index: None,
            reason: "no PEM CERTIFICATE block found".to_owned(),
        });
    }
    Ok(out)
}

/// Parses one PEM certificate (the first `CERTIFICATE` block).
pub(crate) fn parse_one(pem: &str) -> Result<Parsed> {
    let mut all = parse_bundle(pem)?;
    Ok(all.swap_remove(0))
}

pub(crate) fn parse_der(der: &[u8]) -> Result<Parsed> {
    let bad = |reason: String| Error::BadCertificate {
        index: None,
        reason,
    };
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| bad(e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes after the certificate".to_owned()));
    }
    let bc = cert
        .basic_constraints()
        .map_err(|e| bad(format!("BasicConstraints: {e}")))?
        .map(|ext| ext.value.clone());
    let ku_allows_sign = cert
        .key_usage()
        .map_err(|e| bad(format!("KeyUsage: {e}")))?
        .is_none_or(|ku| ku.value.key_cert_sign());
    let is_ca = bc.as_ref().is_some_and(|b| b.ca);
    let validity = cert.validity();
    let self_signed = cert.subject() == cert.issuer() && cert.verify_signature(None).is_ok();
    let info = CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: hex::encode(cert.raw_serial()),
        not_before: validity.not_before.to_datetime(),
        not_after: validity.not_after.to_datetime(),
        is_ca,
        path_len: bc.and_then(|b| b.path_len_constraint),
        sha256: sha256_hex(der),
        self_signed,
        key_algorithm: describe_key(cert.public_key()),
        subject_alt_names: sans(&cert),
        permitted_dns: permitted_dns(&cert),
        subject_key_id: key_ids(&cert).0,
        authority_key_id: key_ids(&cert).1,
    };
    Ok(Parsed {
        der: der.to_vec(),
        info,
        can_sign_certs: is_ca && ku_allows_sign,
    })
}

/// (SubjectKeyIdentifier, AuthorityKeyIdentifier key id), each lower-case hex when present.
fn key_ids(cert: &X509Certificate<'_>) -> (Option<String>, Option<String>) {
    use x509_parser::extensions::ParsedExtension;
    let mut ski = None;
    let mut aki = None;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => ski = Some(hex::encode(k.0)),
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                aki = a.key_identifier.as_ref().map(|k| hex::encode(k.0));
            }
            _ => {}
        }
    }
    (ski, aki)
}

/// Names the key type the way people say it: `ECDSA P-256`, `RSA 3072`, `Ed25519`.
pub(crate) fn describe_key(spki: &SubjectPublicKeyInfo<'_>) -> String {
    let alg = &spki.algorithm;
    if alg.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = alg.parameters.as_ref().and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == OID_EC_P256 => "ECDSA P-256".to_owned(),
            Some(c) if c == OID_NIST_EC_P384 => "ECDSA P-384".to_owned(),
            Some(c) if c == OID_NIST_EC_P521 => "ECDSA P-521".to_owned(),
            Some(c) => format!("ECDSA {c}"),
            None => "ECDSA".to_owned(),
        };
    }
    match spki.parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        _ if alg.algorithm.to_id_string() == "1.3.101.112" => "Ed25519".to_owned(),
        _ => alg.algorithm.to_id_string(),
    }
}

fn sans(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(format!("DNS:{d}")),
            GeneralName::IPAddress(raw) => ip_from_bytes(raw).map(|ip| format!("IP:{ip}")),
            GeneralName::URI(u) => Some(format!("URI:{u}")),
            GeneralName::RFC822Name(e) => Some(format!("email:{e}")),
            _ => None,
        })
        .collect()
}

fn permitted_dns(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(ext)) = cert.name_constraints() else {
        return Vec::new();
    };
    ext.value
        .permitted_subtrees
        .iter()
        .flatten()
        .filter_map(|s| match s.base {
            GeneralName::DNSName(d) => Some(d.to_owned()),
            _ => None,
        })
        .collect()
}

fn ip_from_bytes(raw: &[u8]) -> Option<IpAddr> {
    match raw.len() {
        4 => <[u8; 4]>::try_from(raw).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(raw).ok().map(IpAddr::from),
        _ => None,
    }
}

/// A certificate serial as one key whatever its spelling: lower-case hex, no `:` or `-`, no
/// leading zero bytes. A serial read from a certificate's DER carries a `00` pad when its first
/// byte is 0x80 or above (`00:91:e3:…`), while OpenBao and CRLs name it by its integer
/// (`91:e3:…`): compared raw, about one certificate in 256 would not match itself.
pub fn serial_key(serial: &str) -> String {
    let hex: String = serial
        .chars()
        .filter(|c| *c != ':' && *c != '-' && !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    let mut key = hex.as_str();
    while key.len() > 2 && key.starts_with("00") {
        key = &key[2..];
    }
    key.to_owned()
}

/// The serials ([`serial_key`]) every `X509 CRL` block of `pem` revokes; `None` when a block
/// does not parse or there is none (a caller then treats nothing as revoked, and says so).
pub fn crl_serials(pem: &str) -> Option<std::collections::BTreeSet<String>> {
    use rustls_pki_types::CertificateRevocationListDer;
    use x509_parser::revocation_list::CertificateRevocationList;
    let mut out = std::collections::BTreeSet::new();
    let mut any = false;
    for der in CertificateRevocationListDer::pem_slice_iter(pem.as_bytes()) {
        let der = der.ok()?;
        let (_, crl) = CertificateRevocationList::from_der(der.as_ref()).ok()?;
        out.extend(
            crl.iter_revoked_certificates()
                .map(|r| serial_key(&hex::encode(r.raw_serial()))),
        );
        any = true;
    }
    any.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_garbage_bundles_are_errors() {
        assert!(matches!(
            parse_pem_bundle("hello"),
            Err(Error::BadCertificate { index: None, .. })
        ));
        let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = parse_pem_bundle(broken).unwrap_err();
        assert!(
            matches!(err, Error::BadCertificate { index: Some(0), .. }),
            "{err}"
        );
        assert!(err.to_string().contains("#1"), "{err}");
    }

    #[test]
    fn ip_bytes() {
        assert_eq!(
            ip_from_bytes(&[127, 0, 0, 1]),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(ip_from_bytes(&[1, 2, 3]), None);
    }
}

#[cfg(test)]
mod serial_tests {
    use super::*;

    #[test]
    fn serials_compare_by_their_integer_whatever_the_spelling() {
        assert_eq!(serial_key("00:91:E3:01"), "91e301");
        assert_eq!(serial_key("91-e3-01"), "91e301");
        assert_eq!(serial_key("0091e301"), "91e301");
        assert_eq!(serial_key("00"), "00");
        assert_eq!(serial_key("01:02"), "0102");
    }

    #[test]
    fn a_crl_lists_its_revoked_serials_and_garbage_lists_none() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::Issuer::new(p, key);
        let now = OffsetDateTime::now_utc();
        let revoked = |serial: &[u8]| rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from_slice(serial),
            revocation_time: now,
            reason_code: None,
            invalidity_date: None,
        };
        let pem = rcgen::CertificateRevocationListParams {
            this_update: now,
            next_update: now + time::Duration::hours(1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![revoked(&[0x91, 0xe3, 0x01]), revoked(&[0x01, 0x02])],
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .unwrap()
        .pem()
        .unwrap();
        let serials = crl_serials(&pem).expect("a CRL");
        assert!(serials.contains(&serial_key("00:91:e3:01")), "{serials:?}");
        assert!(serials.contains("0102"), "{serials:?}");
        assert_eq!(serials.len(), 2);
        assert!(crl_serials("not a CRL").is_none());
        assert!(crl_serials("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n").is_none());
    }
}
