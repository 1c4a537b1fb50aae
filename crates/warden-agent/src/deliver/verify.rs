//! Checks a certificate set must pass before it is written, or kept when read back: the key
//! belongs to the certificate, the chain verifies to the trust anchor, the leaf does not
//! outlive its issuer, the names are exactly the profile's.

use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::DeliverError;
use crate::output::RenderedFile;
use crate::output::certificate::{CERT, CHAIN, FULLCHAIN, KEY, pem_blocks};

/// What a certificate set must name.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The subject CN (OpenBao also puts it in the DNS SANs).
    pub common_name: &'a str,
    /// The other DNS SANs.
    pub sans: &'a [String],
}

/// Checks a certificate set (as rendered, or as read back from disk) before it is trusted:
/// the key belongs to the certificate; `fullchain.pem` is `cert.pem` + `chain.pem`; the chain
/// verifies to one of the trust anchors at `now`; the leaf does not outlive its issuer; the
/// subject CN and the DNS SANs are exactly the profile's.
pub fn verify_certificate_set(
    output: &str,
    files: &[RenderedFile],
    trust_anchors_pem: &str,
    expected: Expected<'_>,
    now: OffsetDateTime,
) -> Result<(), DeliverError> {
    let refuse = |reason: String| DeliverError::Refused {
        output: output.to_owned(),
        reason,
    };
    let get = |name: &str| {
        files
            .iter()
            .find(|f| f.name == name)
            .map(|f| &f.contents)
            .ok_or_else(|| refuse(format!("the set has no {name}")))
    };
    let text = |name: &str| -> Result<String, DeliverError> {
        String::from_utf8(get(name)?.to_vec()).map_err(|_| refuse(format!("{name} is not text")))
    };
    let cert = text(CERT)?;
    let chain = text(CHAIN)?;
    let fullchain = text(FULLCHAIN)?;
    let key = get(KEY)?;

    warden_bao::ClientIdentity::from_pem(cert.as_bytes().to_vec(), Zeroizing::new(key.to_vec()))
        .map_err(|e| refuse(format!("the key does not belong to the certificate: {e}")))?;
    let blocks = |t: &str| {
        pem_blocks(t)
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let mut expected_full = blocks(&cert);
    expected_full.extend(blocks(&chain));
    if blocks(&fullchain) != expected_full {
        return Err(refuse(format!(
            "{FULLCHAIN} is not {CERT} followed by {CHAIN}"
        )));
    }
    if blocks(&cert).len() != 1 {
        return Err(refuse(format!("{CERT} must hold exactly one certificate")));
    }

    let anchors = pem_blocks(trust_anchors_pem);
    if anchors.is_empty() {
        return Err(refuse(
            "the trust anchor file holds no certificate".to_owned(),
        ));
    }
    let mut last_problem = String::new();
    let mut report = None;
    for anchor in anchors {
        match warden_pki::verify_chain(&fullchain, Some(anchor), now) {
            Ok(r) if r.valid => {
                report = Some(r);
                break;
            }
            Ok(r) => {
                last_problem = r
                    .problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
            }
            Err(e) => last_problem = e.to_string(),
        }
    }
    let Some(report) = report else {
        return Err(refuse(format!(
            "the chain does not verify to the trust anchor: {last_problem}"
        )));
    };
    let leaf = &report.certs[0];
    let issuer_not_after = report
        .certs
        .get(1)
        .or(report.trust_anchor.as_ref())
        .map(|c| c.not_after);
    if let Some(ina) = issuer_not_after
        && leaf.not_after > ina
    {
        return Err(refuse(format!(
            "the certificate ({}) outlives its issuer ({})",
            leaf.not_after, ina
        )));
    }

    let cn = warden_pki::common_name(&cert).unwrap_or_default();
    if cn != expected.common_name {
        return Err(refuse(format!(
            "the certificate names CN `{cn}`, the profile says `{}`",
            expected.common_name
        )));
    }
    let mut want: Vec<String> = std::iter::once(expected.common_name)
        .chain(expected.sans.iter().map(String::as_str))
        .map(|n| format!("dns:{}", n.to_ascii_lowercase()))
        .collect();
    want.sort();
    want.dedup();
    let mut got: Vec<String> = leaf
        .subject_alt_names
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    got.sort();
    got.dedup();
    if got != want {
        return Err(refuse(format!(
            "the certificate's names [{}] are not the profile's [{}]",
            got.join(", "),
            want.join(", ")
        )));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use warden_pki::{KeyAlgorithm, LocalIssuer, generate_key};

    fn file(name: &str, bytes: &[u8], mode: u32) -> RenderedFile {
        RenderedFile {
            name: name.to_owned(),
            contents: Zeroizing::new(bytes.to_vec()),
            mode,
        }
    }

    /// A root and an intermediate in memory: the certificate tests of this crate share them.
    pub(crate) struct Pki {
        pub(crate) root: LocalIssuer,
        pub(crate) int: LocalIssuer,
    }

    pub(crate) fn pki() -> Pki {
        let now = OffsetDateTime::now_utc();
        let root_key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, "root");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.not_before = now - time::Duration::days(1);
        p.not_after = now + time::Duration::days(3650);
        let root_cert = p.self_signed(&root_key).unwrap();
        let int_key = rcgen::KeyPair::generate().unwrap();
        let mut ip = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ip.distinguished_name.push(rcgen::DnType::CommonName, "int");
        ip.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ip.not_before = now - time::Duration::days(1);
        ip.not_after = now + time::Duration::days(365);
        let issuer = rcgen::Issuer::from_params(&p, &root_key);
        let int_cert = ip.signed_by(&int_key, &issuer).unwrap();
        Pki {
            root: LocalIssuer::from_pem(&root_cert.pem(), &root_key.serialize_pem()).unwrap(),
            int: LocalIssuer::from_pem(&int_cert.pem(), &int_key.serialize_pem()).unwrap(),
        }
    }

    /// A complete certificate set (cert, key, chain, fullchain) for `names`, valid `days`.
    pub(crate) fn leaf_set(pki: &Pki, names: &[&str], days: i64) -> Vec<RenderedFile> {
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let leaf = pki
            .int
            .issue_server(
                &key.public_key_der(),
                &names[0],
                &names,
                &[],
                time::Duration::days(days),
                OffsetDateTime::now_utc(),
            )
            .unwrap();
        let chain = format!("{}\n", pki.int.cert_pem().trim());
        let cert = format!("{}\n", leaf.trim());
        vec![
            file(CERT, cert.as_bytes(), 0o644),
            file(KEY, key.private_key_pem().as_bytes(), 0o600),
            file(CHAIN, chain.as_bytes(), 0o644),
            file(FULLCHAIN, format!("{cert}{chain}").as_bytes(), 0o644),
        ]
    }

    #[test]
    fn a_good_set_verifies_and_each_defect_is_named() {
        let pki = pki();
        let now = OffsetDateTime::now_utc();
        let sans = vec!["b.test".to_owned()];
        let exp = Expected {
            common_name: "a.test",
            sans: &sans,
        };
        let anchor = pki.root.cert_pem();
        let good = leaf_set(&pki, &["a.test", "b.test"], 30);
        verify_certificate_set("tls", &good, anchor, exp, now).unwrap();

        // Another key.
        let other = leaf_set(&pki, &["a.test", "b.test"], 30);
        let mut swapped = leaf_set(&pki, &["a.test", "b.test"], 30);
        swapped[1] = file(KEY, &other[1].contents, 0o600);
        let e = verify_certificate_set("tls", &swapped, anchor, exp, now).unwrap_err();
        assert!(e.to_string().contains("key does not belong"), "{e}");

        // Wrong names.
        let wrong = leaf_set(&pki, &["a.test", "c.test"], 30);
        let e = verify_certificate_set("tls", &wrong, anchor, exp, now).unwrap_err();
        assert!(e.to_string().contains("not the profile's"), "{e}");

        // Another trust anchor.
        let stranger = self::pki();
        let e =
            verify_certificate_set("tls", &good, stranger.root.cert_pem(), exp, now).unwrap_err();
        assert!(
            e.to_string()
                .contains("does not verify to the trust anchor"),
            "{e}"
        );
        // ...but a bundle with the right anchor in it is fine.
        let bundle = format!("{}{}", stranger.root.cert_pem(), anchor);
        verify_certificate_set("tls", &good, &bundle, exp, now).unwrap();

        // fullchain that is not cert + chain.
        let mut bad_full = leaf_set(&pki, &["a.test", "b.test"], 30);
        bad_full[3] = file(FULLCHAIN, &good[0].contents, 0o644);
        let e = verify_certificate_set("tls", &bad_full, anchor, exp, now).unwrap_err();
        assert!(e.to_string().contains("fullchain.pem"), "{e}");

        // Expired by the time it is checked.
        let e = verify_certificate_set("tls", &good, anchor, exp, now + time::Duration::days(31))
            .unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
    }

    #[test]
    fn debug_of_a_rendered_file_shows_no_bytes() {
        let f = file(KEY, b"-----BEGIN PRIVATE KEY-----SECRETBYTES", 0o600);
        let d = format!("{f:?}");
        assert!(!d.contains("SECRETBYTES"), "{d}");
    }
}
