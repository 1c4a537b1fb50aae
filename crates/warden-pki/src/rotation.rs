//! An environment's PKI mount during an intermediate rotation (ADR 0029): which of its issuers
//! are trusted, in which order, and which issuer a leaf chains to.
//!
//! OpenBao keeps every issuer imported into a mount until one is deleted. During the overlap
//! the mount holds two intermediates (the old, still signing nothing new, and the new default),
//! plus the root imported with each bundle. The trust set is every *intermediate* in the mount
//! that is valid now — never the self-signed root, which would let any environment's
//! certificates through a listener — default first. Retiring the old issuer is deleting it from
//! the mount, so every consumer of this set (cert-auth roles, the listener's client-CA bundle,
//! proxies' CA-chain outputs, agents' trust checks) drops it on its next read.

use serde::Serialize;
use time::OffsetDateTime;

use crate::inspect::{CertInfo, parse_pem_bundle};

/// One intermediate of a PKI mount, with its facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountIntermediate {
    /// OpenBao's issuer id.
    pub issuer_id: String,
    /// Whether it is the mount's default issuer (the one new leaves come from).
    pub is_default: bool,
    /// The certificate, PEM (its first certificate only).
    #[serde(skip)]
    pub pem: String,
    /// What it says about itself.
    pub info: CertInfo,
}

/// The trusted intermediates of a mount from its issuers `(id, is_default, certificate PEM)`:
/// CA certificates that are not self-signed and valid at `now`, default first, then newest
/// first. An issuer whose certificate does not parse is left out (nothing is trusted that
/// cannot be read).
pub fn mount_intermediates<I>(issuers: I, now: OffsetDateTime) -> Vec<MountIntermediate>
where
    I: IntoIterator<Item = (String, bool, String)>,
{
    let mut out: Vec<MountIntermediate> = issuers
        .into_iter()
        .filter_map(|(issuer_id, is_default, pem)| {
            let first = crate::pem::first_certificate(&pem)?;
            let info = parse_pem_bundle(first).ok()?.into_iter().next()?;
            (info.is_ca && !info.self_signed && info.not_before <= now && now < info.not_after)
                .then_some(MountIntermediate {
                    issuer_id,
                    is_default,
                    pem: first.to_owned(),
                    info,
                })
        })
        .collect();
    out.sort_by(|a, b| {
        b.is_default
            .cmp(&a.is_default)
            .then(b.info.not_before.cmp(&a.info.not_before))
            .then(a.issuer_id.cmp(&b.issuer_id))
    });
    out
}

/// The PEM bundle of `intermediates`, in order, one certificate each: what cert-auth roles
/// pin and the listener's client-CA bundle appends.
pub fn intermediate_bundle(intermediates: &[MountIntermediate]) -> String {
    let mut s = String::new();
    for i in intermediates {
        s.push_str(i.pem.trim_end());
        s.push('\n');
    }
    s
}

/// The intermediate among `intermediates` that issued a certificate whose AuthorityKeyIdentifier
/// is `authority_key_id`, if any.
pub fn issuer_of<'a>(
    intermediates: &'a [MountIntermediate],
    authority_key_id: &str,
) -> Option<&'a MountIntermediate> {
    intermediates
        .iter()
        .find(|i| i.info.subject_key_id.as_deref() == Some(authority_key_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyAlgorithm, generate_key, make_csr};
    use crate::root::RootOptions;
    use crate::root::tests::{NOW, new_ca, pass};
    use crate::sign::IntermediateRequest;
    use time::Duration;

    fn intermediate(ca: &crate::CaDir, days: i64, at: OffsetDateTime) -> String {
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let csr = make_csr(&key, "Warden test PKI intermediate", &[], &[]).unwrap();
        let mut req = IntermediateRequest::new("test");
        req.validity = Duration::days(days);
        ca.sign_intermediate(&csr, &req, &pass(), at)
            .unwrap()
            .cert_pem
    }

    #[test]
    fn intermediates_default_first_roots_and_expired_left_out() {
        let (_tmp, ca) = new_ca(&RootOptions::default());
        let later = NOW + Duration::days(30);
        let old = intermediate(&ca, 365, NOW);
        let new = intermediate(&ca, 365, later);
        let gone = intermediate(&ca, 10, NOW);
        let root = std::fs::read_to_string(ca.dir().join(crate::ROOT_CERT)).unwrap();
        let list = mount_intermediates(
            [
                ("r".to_owned(), false, root),
                ("o".to_owned(), false, old),
                ("n".to_owned(), true, new),
                ("g".to_owned(), false, gone),
                ("x".to_owned(), false, "not pem".to_owned()),
            ],
            later + Duration::hours(1),
        );
        let ids: Vec<&str> = list.iter().map(|i| i.issuer_id.as_str()).collect();
        assert_eq!(ids, ["n", "o"]);
        let bundle = intermediate_bundle(&list);
        assert_eq!(parse_pem_bundle(&bundle).unwrap().len(), 2);
        let ski = list[1]
            .info
            .subject_key_id
            .clone()
            .expect("an intermediate names its key");
        assert_ne!(list[0].info.subject_key_id.as_deref(), Some(ski.as_str()));
        assert_eq!(issuer_of(&list, &ski).unwrap().issuer_id, "o");
        assert!(issuer_of(&list, "00").is_none());
    }
}
