//! Issuing one domain certificate through the environment's PKI: the key is generated here,
//! only a CSR goes to `<pki>/sign/<role>`, and what comes back is checked (our key, our name,
//! still valid) before anyone may store it.

use aws_lc_rs::encoding::AsDer as _;
use serde_json::{Value, json};
use time::OffsetDateTime;
use warden_bao::{Client, Idempotent};
use warden_pki::{GeneratedKey, KeyAlgorithm};
use warden_spec::{DomainCert, KeyType};
use x509_parser::extensions::GeneralName;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Signs CSRs with the PKI role that issues a domain's certificates (`domain-<slug>`, see
/// [`DomainCert::pki_role`]).
#[derive(Debug, Clone)]
pub struct PkiIssuer {
    client: Client,
    mount: String,
}

/// A certificate just issued, checked, not yet stored. `Debug` hides the key.
pub(crate) struct Issued {
    /// Leaf followed by the intermediates (never the self-signed root).
    pub(crate) chain_pem: String,
    pub(crate) private_key_pem: Zeroizing<String>,
    pub(crate) serial: String,
    pub(crate) not_after: OffsetDateTime,
}

impl PkiIssuer {
    /// An issuer on the PKI mount `mount` (`pki_int`).
    pub fn new(client: Client, mount: impl Into<String>) -> Self {
        Self {
            client,
            mount: mount.into().trim_matches('/').to_owned(),
        }
    }

    /// Generates a key for `domain`, has the PKI role sign a CSR for it, and checks the result.
    pub(crate) async fn issue(&self, domain: &DomainCert, now: OffsetDateTime) -> Result<Issued> {
        let name = domain.domain.as_str();
        let pki = |source| Error::Pki {
            domain: name.to_owned(),
            source,
        };
        let key = generate(domain.key_type, name)?;
        let csr = warden_pki::make_csr(&key, name, &[name.to_owned()], &[]).map_err(pki)?;
        let path = format!("{}/sign/{}", self.mount, domain.pki_role());
        let body = json!({
            "csr": csr,
            "common_name": name,
            "ttl": domain.ttl.to_vault(),
        });
        // A retried sign after a lost answer only costs an unused certificate.
        let reply = self
            .client
            .write(&path, &body, Idempotent::Yes)
            .await
            .map_err(|e| Error::bao("sign a certificate with", &path, e))?;
        let data = reply.and_then(|s| s.data).unwrap_or(Value::Null);
        let issue_err = |reason: String| Error::Issue {
            domain: name.to_owned(),
            reason,
        };
        let leaf = data
            .get("certificate")
            .and_then(Value::as_str)
            .ok_or_else(|| issue_err(format!("{path} returned no certificate")))?;
        let serial = data
            .get("serial_number")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let not_after = check_leaf(leaf, name, &key.public_key_der(), now).map_err(issue_err)?;
        let mut chain_pem = leaf.trim_end().to_owned();
        chain_pem.push('\n');
        for ca in intermediates(&data) {
            chain_pem.push_str(ca.trim_end());
            chain_pem.push('\n');
        }
        Ok(Issued {
            chain_pem,
            private_key_pem: key.private_key_pem(),
            serial,
            not_after,
        })
    }
}

/// The certificates after the first in a PEM chain (what an ACME CA returns), without
/// self-signed roots, as [`intermediates`] does for a PKI reply.
pub(crate) fn intermediates_of_pem(chain: &str) -> Vec<String> {
    warden_pki::pem_blocks(chain)
        .into_iter()
        .skip(1)
        .filter(|pem| {
            warden_pki::parse_pem_bundle(pem)
                .map(|certs| certs.iter().all(|c| !c.self_signed))
                .unwrap_or(false)
        })
        .map(str::to_owned)
        .collect()
}

/// The leaf's serial as OpenBao prints it (`xx:xx:…`, lower-case hex), empty when it does
/// not parse (it has been checked by then).
pub(crate) fn leaf_serial(pem: &str) -> String {
    x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .ok()
        .and_then(|(_, block)| {
            block.parse_x509().ok().map(|c| {
                c.raw_serial()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            })
        })
        .unwrap_or_default()
}

/// The CA certificates to serve after the leaf: `ca_chain` (or `issuing_ca`) without
/// self-signed roots, which clients must already trust and servers should not send.
fn intermediates(data: &Value) -> Vec<String> {
    let listed: Vec<String> = match data.get("ca_chain").and_then(Value::as_array) {
        Some(chain) => chain
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        None => data
            .get("issuing_ca")
            .and_then(Value::as_str)
            .map(|s| vec![s.to_owned()])
            .unwrap_or_default(),
    };
    listed
        .into_iter()
        .filter(|pem| {
            warden_pki::parse_pem_bundle(pem)
                .map(|certs| certs.iter().all(|c| !c.self_signed))
                .unwrap_or(false)
        })
        .collect()
}

/// The leaf certifies our key and our name and is valid now; returns its `notAfter`.
pub(crate) fn check_leaf(
    pem: &str,
    domain: &str,
    our_spki: &[u8],
    now: OffsetDateTime,
) -> std::result::Result<OffsetDateTime, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| format!("the returned certificate is not PEM: {e}"))?;
    let cert = block
        .parse_x509()
        .map_err(|e| format!("the returned certificate does not parse: {e}"))?;
    if cert.public_key().raw != our_spki {
        return Err("the returned certificate is for another key than the one we sent".into());
    }
    let names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if !names.iter().any(|n| n == domain) {
        return Err(format!(
            "the returned certificate does not name {domain} (DNS names: {})",
            names.join(", ")
        ));
    }
    let validity = cert.validity();
    let not_after = validity.not_after.to_datetime();
    if now < validity.not_before.to_datetime() || now >= not_after {
        return Err(format!(
            "the returned certificate is not valid now (valid {} to {})",
            validity.not_before, validity.not_after
        ));
    }
    Ok(not_after)
}

/// A fresh key of the spec's type. ECDSA and RSA-3072 come from `warden-pki`; RSA-2048 and
/// Ed25519, which the offline root never uses, from aws-lc-rs directly.
pub(crate) fn generate(key_type: KeyType, domain: &str) -> Result<GeneratedKey> {
    let pki = |source| Error::Pki {
        domain: domain.to_owned(),
        source,
    };
    let crypto = || Error::Crypto {
        what: format!("generate a {} key for {domain}", key_type.as_str()),
    };
    let der = match key_type {
        KeyType::EcP256 => return warden_pki::generate_key(KeyAlgorithm::EcdsaP256).map_err(pki),
        KeyType::EcP384 => return warden_pki::generate_key(KeyAlgorithm::EcdsaP384).map_err(pki),
        KeyType::Rsa3072 => return warden_pki::generate_key(KeyAlgorithm::Rsa3072).map_err(pki),
        KeyType::Rsa2048 => aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .and_then(|k| k.as_der())
            .map(|d| Zeroizing::new(d.as_ref().to_vec()))
            .map_err(|_| crypto())?,
        KeyType::Ed25519 => aws_lc_rs::signature::Ed25519KeyPair::generate()
            .and_then(|k| k.to_pkcs8v1())
            .map(|d| Zeroizing::new(d.as_ref().to_vec()))
            .map_err(|_| crypto())?,
    };
    GeneratedKey::from_pkcs8_der(&der).map_err(pki)
}

impl Issued {
    /// The KV data of a version holding this certificate.
    pub(crate) fn record(&self, issued_at: OffsetDateTime) -> Value {
        use time::format_description::well_known::Rfc3339;
        json!({
            "certificate": self.chain_pem,
            "private_key": self.private_key_pem.as_str(),
            "not_after": self.not_after.format(&Rfc3339).unwrap_or_default(),
            "serial": self.serial,
            "issued_at": issued_at.format(&Rfc3339).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spec_key_type_generates_a_key_that_makes_a_csr() {
        for kt in [
            KeyType::EcP256,
            KeyType::EcP384,
            KeyType::Rsa2048,
            KeyType::Ed25519,
        ] {
            let key = generate(kt, "shop.example.com").expect("key");
            let csr =
                warden_pki::make_csr(&key, "shop.example.com", &["shop.example.com".into()], &[])
                    .expect("csr");
            assert!(csr.contains("CERTIFICATE REQUEST"), "{}", kt.as_str());
        }
    }

    #[test]
    fn intermediates_drop_self_signed_roots_and_garbage() {
        let data = json!({ "ca_chain": ["not a certificate"] });
        assert!(intermediates(&data).is_empty());
    }
}
