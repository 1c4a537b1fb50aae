//! Certificate outputs: a key generated on this host, a CSR, and `<pki_mount>/sign/<role>`.
//!
//! Only the CSR crosses the network; the private key exists in this process (zeroized buffers)
//! and, after delivery, in `key.pem`. The rendered set is four files, delivered together:
//!
//! | file            | contents                                                         |
//! |-----------------|------------------------------------------------------------------|
//! | `cert.pem`      | the leaf                                                         |
//! | `key.pem`       | its PKCS#8 private key (`key_mode`, 0600 by default)              |
//! | `chain.pem`     | the issuing CA chain, without the self-signed root               |
//! | `fullchain.pem` | leaf + chain: what a TLS server presents                         |
//!
//! The root is left out of `chain.pem` because a peer never trusts a root because it was
//! presented; it trusts its own copy. Proxies that need the root get a `ca_chain` output.
//!
//! Nothing is checked here beyond "OpenBao returned a certificate": whether it fits the key,
//! chains to the trust anchor and names what the profile says is `deliver`'s job, so the same
//! checks guard every way a certificate set can reach the disk.

use std::time::Duration;

use serde_json::json;
use warden_bao::Idempotent;
use warden_pki::{GeneratedKey, KeyAlgorithm};
use zeroize::Zeroizing;

use super::{RenderContext, RenderError, Rendered, RenderedFile};
use crate::config::{CertificateOutput, KeyType};

/// File names of a certificate set.
pub const CERT: &str = "cert.pem";
/// The private key.
pub const KEY: &str = "key.pem";
/// The issuing CA chain (no root).
pub const CHAIN: &str = "chain.pem";
/// Leaf + chain.
pub const FULLCHAIN: &str = "fullchain.pem";

/// Renders a new certificate set for `spec`. Not idempotent: every call mints a certificate.
pub async fn render(
    name: &str,
    spec: &CertificateOutput,
    ctx: &RenderContext<'_>,
) -> Result<Rendered, RenderError> {
    let local = |what: &str| {
        let output = name.to_owned();
        let what = what.to_owned();
        move |e: warden_pki::Error| RenderError::Local {
            output,
            what,
            reason: e.to_string(),
        }
    };
    let key = generate_key(spec.key_type).map_err(local("generate the key"))?;
    let signed = sign(
        ctx.client,
        name,
        &spec.pki_mount,
        &spec.role,
        &spec.common_name,
        &spec.sans,
        spec.ttl,
        &key,
    )
    .await?;
    let key_pem = key.private_key_pem();
    let leaf = warden_pki::parse_pem_bundle(&signed.leaf_pem)
        .map_err(|e| RenderError::Invalid {
            output: name.to_owned(),
            reason: format!("the certificate does not parse: {e}"),
        })?
        .swap_remove(0);
    let fullchain = format!("{}{}", signed.leaf_pem, signed.chain_pem);
    let file = |n: &str, bytes: Vec<u8>, mode: u32| RenderedFile {
        name: n.to_owned(),
        contents: Zeroizing::new(bytes),
        mode,
    };
    Ok(Rendered {
        files: vec![
            file(CERT, signed.leaf_pem.into_bytes(), spec.mode),
            RenderedFile {
                name: KEY.to_owned(),
                contents: Zeroizing::new(key_pem.as_bytes().to_vec()),
                mode: spec.key_mode,
            },
            file(CHAIN, signed.chain_pem.into_bytes(), spec.mode),
            file(FULLCHAIN, fullchain.into_bytes(), spec.mode),
        ],
        not_after: Some(leaf.not_after),
        not_before: Some(leaf.not_before),
        serial: Some(leaf.serial),
        refresh_within: None,
        ..Rendered::default()
    })
}

/// A key of `key_type`, generated here with the system CSPRNG. warden-pki covers the EC types
/// and RSA-3072; RSA-2048 (what older relying parties and the example `ledger` profile use) and
/// Ed25519 are generated with rcgen directly and handed over as PKCS#8.
pub(crate) fn generate_key(key_type: KeyType) -> Result<GeneratedKey, warden_pki::Error> {
    let via_rcgen = |kp: Result<rcgen::KeyPair, rcgen::Error>| {
        let kp = kp.map_err(|e| warden_pki::Error::BadKey {
            reason: e.to_string(),
        })?;
        let pem = Zeroizing::new(kp.serialize_pem());
        GeneratedKey::from_pem(&pem)
    };
    match key_type {
        KeyType::EcP256 => warden_pki::generate_key(KeyAlgorithm::EcdsaP256),
        KeyType::EcP384 => warden_pki::generate_key(KeyAlgorithm::EcdsaP384),
        KeyType::Rsa3072 => warden_pki::generate_key(KeyAlgorithm::Rsa3072),
        KeyType::Rsa2048 => via_rcgen(rcgen::KeyPair::generate_rsa_for(
            &rcgen::PKCS_RSA_SHA256,
            rcgen::RsaKeySize::_2048,
        )),
        KeyType::Ed25519 => via_rcgen(rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)),
    }
}

/// What `sign` returned, as PEM text ending in a newline.
pub(crate) struct Signed {
    /// The leaf.
    pub(crate) leaf_pem: String,
    /// The issuing CAs (no self-signed root), leaf's issuer first.
    pub(crate) chain_pem: String,
}

/// CSR for `key` → `POST <mount>/sign/<role>`.
#[allow(clippy::too_many_arguments)] // one call per flavour (output, identity); a struct would only rename them
pub(crate) async fn sign(
    client: &warden_bao::Client,
    output: &str,
    mount: &str,
    role: &str,
    common_name: &str,
    sans: &[String],
    ttl: Option<Duration>,
    key: &GeneratedKey,
) -> Result<Signed, RenderError> {
    let csr =
        warden_pki::make_csr(key, common_name, sans, &[]).map_err(|e| RenderError::Local {
            output: output.to_owned(),
            what: "build the CSR".to_owned(),
            reason: e.to_string(),
        })?;
    let mut body = json!({ "csr": csr, "common_name": common_name });
    if !sans.is_empty() {
        body["alt_names"] = json!(sans.join(","));
    }
    if let Some(ttl) = ttl {
        body["ttl"] = json!(format!("{}s", ttl.as_secs()));
    }
    let path = format!("{}/sign/{role}", mount.trim_matches('/'));
    // Not idempotent: a retried sign would mint a second certificate.
    let secret = client
        .write(&path, &body, Idempotent::No)
        .await
        .map_err(|source| RenderError::Bao {
            output: output.to_owned(),
            what: format!("sign at {path}"),
            source: Box::new(source),
        })?
        .ok_or_else(|| RenderError::Invalid {
            output: output.to_owned(),
            reason: format!("{path} returned an empty response"),
        })?;
    #[derive(serde::Deserialize)]
    struct Answer {
        certificate: String,
        #[serde(default)]
        issuing_ca: String,
        #[serde(default)]
        ca_chain: Vec<String>,
    }
    let answer: Answer = secret.data_as(&path).map_err(|e| RenderError::Invalid {
        output: output.to_owned(),
        reason: format!("{path}: {e}"),
    })?;
    let chain = if answer.ca_chain.is_empty() {
        vec![answer.issuing_ca]
    } else {
        answer.ca_chain
    };
    Ok(Signed {
        leaf_pem: format!("{}\n", answer.certificate.trim()),
        chain_pem: issuing_chain(&answer.certificate, &chain),
    })
}

/// The CA certificates of `chain` other than the leaf itself and self-signed roots, one PEM
/// block per certificate, in order.
pub(crate) fn issuing_chain(leaf: &str, chain: &[String]) -> String {
    let mut out = String::new();
    for pem in chain {
        for block in pem_blocks(pem) {
            if block == leaf.trim() {
                continue;
            }
            let self_signed = warden_pki::parse_pem_bundle(block)
                .map(|c| c.iter().all(|i| i.self_signed))
                .unwrap_or(false);
            if !self_signed {
                out.push_str(block);
                out.push('\n');
            }
        }
    }
    out
}

pub(crate) use warden_pki::pem_blocks;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_type_is_generated_on_the_host_and_makes_a_csr() {
        for (kt, alg) in [
            (KeyType::EcP256, Some(KeyAlgorithm::EcdsaP256)),
            (KeyType::EcP384, Some(KeyAlgorithm::EcdsaP384)),
            (KeyType::Rsa2048, Some(KeyAlgorithm::Rsa3072)), // warden-pki names RSA-SHA256 by its own size
            (KeyType::Ed25519, None),
        ] {
            let key = generate_key(kt).unwrap();
            assert_eq!(key.algorithm(), alg, "{kt:?}");
            let csr = warden_pki::make_csr(&key, "a.test", &["b.test".into()], &[]).unwrap();
            assert!(csr.contains("CERTIFICATE REQUEST"), "{kt:?}");
            assert_eq!(format!("{key:?}"), "...");
        }
        // RSA-2048 really is 2048 bits.
        let key = generate_key(KeyType::Rsa2048).unwrap();
        let der = key.public_key_der();
        assert!(
            (290..=300).contains(&der.len()),
            "SPKI of {} bytes",
            der.len()
        );
    }

    #[test]
    fn the_issuing_chain_drops_the_leaf_and_self_signed_roots() {
        let root_key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let root = p.self_signed(&root_key).unwrap();
        let int_key = rcgen::KeyPair::generate().unwrap();
        let mut ip = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ip.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::Issuer::from_params(&p, &root_key);
        let int = ip.signed_by(&int_key, &issuer).unwrap();
        let both = format!("{}{}", int.pem(), root.pem());
        let chain = issuing_chain("LEAF", std::slice::from_ref(&both));
        assert_eq!(chain.trim(), int.pem().trim());
        let chain = issuing_chain("LEAF", &[int.pem(), root.pem()]);
        assert_eq!(pem_blocks(&chain).len(), 1);
        assert_eq!(pem_blocks(&both).len(), 2);
        assert!(pem_blocks("no pem").is_empty());
    }
}
