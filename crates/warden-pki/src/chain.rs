//! Checking a PEM bundle as a chain: leaf (or intermediate) first, root last, as OpenBao's
//! `set-signed`, TLS servers and `ca_chain` all expect.
//!
//! rustls-webpki cannot do this job: it refuses a CA certificate as the end of a path, and the
//! bundles operators check most are "intermediate + root". So the links are checked with
//! x509-parser signature verification and the rest (validity, CA flags, path lengths, lifetimes)
//! here, reporting *every* problem rather than the first, each saying exactly what is wrong.

use std::fmt;

use serde::Serialize;
use time::OffsetDateTime;

use crate::error::{Result, ts};
use crate::inspect::{CertInfo, Parsed, parse_bundle, parse_one};

/// One thing wrong with a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChainProblem {
    /// The bundle has no certificate.
    Empty,
    /// The chain does not reach a root: the bundle does not end in a self-signed certificate and
    /// no root was given, or the given root did not sign the last certificate.
    MissingRoot {
        /// Subject of the last certificate of the bundle.
        last: String,
        /// Subject of the given root, when one was given but did not sign `last`.
        given_root: Option<String>,
    },
    /// The bundle ends in a self-signed certificate that is not the given (trusted) root.
    UntrustedRoot {
        /// Subject of the bundle's self-signed certificate.
        subject: String,
        /// Subject of the trusted root.
        trusted: String,
    },
    /// Certificate `index` is not signed by the next one, but another certificate of the bundle
    /// did sign it (or it is a self-signed root before the end, then `signer_index == index`):
    /// the bundle is out of order.
    WrongOrder {
        /// 0-based position of the certificate.
        index: usize,
        /// Its subject.
        subject: String,
        /// 0-based position of the certificate that signed it.
        signer_index: usize,
    },
    /// `child` is not signed by `parent` (the next certificate), and no certificate of the bundle
    /// signed it.
    SignatureMismatch {
        /// Subject of the certificate whose signature does not verify.
        child: String,
        /// Subject of the certificate that should have signed it.
        parent: String,
    },
    /// A certificate of the chain has expired.
    Expired {
        /// Its subject.
        subject: String,
        /// Its notAfter.
        #[serde(with = "time::serde::rfc3339")]
        not_after: OffsetDateTime,
    },
    /// A certificate of the chain is not valid yet.
    NotYetValid {
        /// Its subject.
        subject: String,
        /// Its notBefore.
        #[serde(with = "time::serde::rfc3339")]
        not_before: OffsetDateTime,
    },
    /// A CA's pathLenConstraint is smaller than the number of CA certificates below it.
    PathLenViolation {
        /// The constrained CA's subject.
        ca: String,
        /// Its pathLenConstraint.
        path_len: u32,
        /// CA certificates below it in the chain.
        cas_below: u32,
    },
    /// A certificate that issued another lacks CA:true or the keyCertSign key usage.
    NotACa {
        /// Its subject.
        subject: String,
    },
    /// A certificate expires after the certificate that issued it.
    LeafOutlivesIssuer {
        /// The issued certificate's subject.
        subject: String,
        /// Its notAfter.
        #[serde(with = "time::serde::rfc3339")]
        not_after: OffsetDateTime,
        /// The issuer's subject.
        issuer: String,
        /// The issuer's notAfter.
        #[serde(with = "time::serde::rfc3339")]
        issuer_not_after: OffsetDateTime,
    },
    /// The bundle holds more certificates than a chain ever has ([`MAX_CHAIN_CERTS`]); it is
    /// not checked link by link, which takes time quadratic in its length (a 4 MiB bundle of
    /// one certificate repeated kept `ca verify` busy for minutes).
    TooLong {
        /// How many certificates the bundle holds.
        count: usize,
        /// The most a checked chain may hold.
        max: usize,
    },
}

/// The most certificates [`verify_chain`] checks as one chain: leaf, intermediates, cross
/// certificates and root of any real chain fit many times over.
pub const MAX_CHAIN_CERTS: usize = 64;

impl fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the bundle contains no certificate"),
            Self::MissingRoot {
                last,
                given_root: None,
            } => write!(
                f,
                "intermediate only — the root is missing for validation ({last} is not self-signed and no root was given)"
            ),
            Self::MissingRoot {
                last,
                given_root: Some(root),
            } => write!(
                f,
                "intermediate only — the root is missing for validation (the given root {root} did not sign {last})"
            ),
            Self::UntrustedRoot { subject, trusted } => write!(
                f,
                "the bundle ends in the self-signed {subject}, which is not the trusted root {trusted}"
            ),
            Self::WrongOrder {
                index,
                subject,
                signer_index,
            } if index == signer_index => write!(
                f,
                "wrong order: certificate #{} ({subject}) is a self-signed root but not the last — put each certificate before its issuer (leaf first, root last)",
                index + 1
            ),
            Self::WrongOrder {
                index,
                subject,
                signer_index,
            } => write!(
                f,
                "wrong order: certificate #{} ({subject}) is not signed by the next certificate but by #{} — put each certificate before its issuer (leaf first, root last)",
                index + 1,
                signer_index + 1
            ),
            Self::SignatureMismatch { child, parent } => write!(
                f,
                "the signature of {child} does not verify with the key of {parent}"
            ),
            Self::Expired { subject, not_after } => {
                write!(f, "{subject} expired at {}", ts(not_after))
            }
            Self::NotYetValid {
                subject,
                not_before,
            } => {
                write!(f, "{subject} is not valid before {}", ts(not_before))
            }
            Self::PathLenViolation {
                ca,
                path_len,
                cas_below,
            } => write!(
                f,
                "{ca} has path length {path_len} but {cas_below} CA certificate(s) below it"
            ),
            Self::NotACa { subject } => write!(
                f,
                "{subject} issues a certificate but is not a CA (needs CA:true and keyCertSign)"
            ),
            Self::LeafOutlivesIssuer {
                subject,
                not_after,
                issuer,
                issuer_not_after,
            } => write!(
                f,
                "{subject} expires at {}, after its issuer {issuer} ({})",
                ts(not_after),
                ts(issuer_not_after)
            ),
            Self::TooLong { count, max } => write!(
                f,
                "the bundle holds {count} certificates; a chain of more than {max} is not checked (give the leaf or intermediate, its issuers and the root, not a whole trust store)"
            ),
        }
    }
}

/// The outcome of [`verify_chain`].
#[derive(Debug, Clone, Serialize)]
pub struct ChainReport {
    /// The bundle's certificates, in the order given.
    pub certs: Vec<CertInfo>,
    /// The root given to validate against, when there was one.
    pub trust_anchor: Option<CertInfo>,
    /// Everything wrong, in chain order.
    pub problems: Vec<ChainProblem>,
    /// No problems.
    pub valid: bool,
}

impl ChainReport {
    /// Every problem, in chain order, joined with `; ` (for an error message).
    pub fn problems_text(&self) -> String {
        self.problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Checks `bundle_pem` (child first, root last) at `now`, optionally against a trusted root.
///
/// Unparsable input is an error; everything about a parsable chain is a [`ChainProblem`].
pub fn verify_chain(
    bundle_pem: &str,
    root_pem: Option<&str>,
    now: OffsetDateTime,
) -> Result<ChainReport> {
    let anchor = root_pem.map(parse_one).transpose()?;
    let certs = if bundle_pem.trim().is_empty() {
        Vec::new()
    } else {
        parse_bundle(bundle_pem)?
    };
    let problems = check(&certs, anchor.as_ref(), now);
    Ok(ChainReport {
        certs: certs.iter().map(|c| c.info.clone()).collect(),
        trust_anchor: anchor.map(|a| a.info),
        valid: problems.is_empty(),
        problems,
    })
}

/// [`verify_chain`] against each of `roots` (PEM, one certificate each) in turn: the first
/// report that is valid, else the report against the first root. During a root rollover a chain
/// may end in either root (ADR 0030). With no roots, the bundle is checked on its own.
pub fn verify_chain_any(
    bundle_pem: &str,
    roots: &[String],
    now: OffsetDateTime,
) -> Result<ChainReport> {
    let mut first = None;
    for root in roots {
        let report = verify_chain(bundle_pem, Some(root), now)?;
        if report.valid {
            return Ok(report);
        }
        first.get_or_insert(report);
    }
    match first {
        Some(r) => Ok(r),
        None => verify_chain(bundle_pem, None, now),
    }
}

fn check(certs: &[Parsed], anchor: Option<&Parsed>, now: OffsetDateTime) -> Vec<ChainProblem> {
    let Some(last) = certs.last() else {
        return vec![ChainProblem::Empty];
    };
    let n = certs.len();
    if n > MAX_CHAIN_CERTS {
        return vec![ChainProblem::TooLong {
            count: n,
            max: MAX_CHAIN_CERTS,
        }];
    }
    let mut problems = Vec::new();

    // Order: each certificate must be followed by its issuer, and only the last may be a root.
    for (i, cert) in certs.iter().enumerate() {
        if cert.info.self_signed {
            if i + 1 != n {
                problems.push(ChainProblem::WrongOrder {
                    index: i,
                    subject: cert.info.subject.clone(),
                    signer_index: i,
                });
            }
            continue;
        }
        if certs.get(i + 1).is_some_and(|next| cert.is_signed_by(next)) {
            continue;
        }
        let elsewhere = (0..n).find(|&j| j != i && j != i + 1 && cert.is_signed_by(&certs[j]));
        match (elsewhere, certs.get(i + 1)) {
            (Some(j), _) => problems.push(ChainProblem::WrongOrder {
                index: i,
                subject: cert.info.subject.clone(),
                signer_index: j,
            }),
            (None, Some(next)) => problems.push(ChainProblem::SignatureMismatch {
                child: cert.info.subject.clone(),
                parent: next.info.subject.clone(),
            }),
            // The last certificate's issuer is the root question below.
            (None, None) => {}
        }
    }

    // The top: the last certificate must be the trusted root, be signed by it, or (with no root
    // given) be self-signed.
    let last_signer_in_bundle = certs[..n - 1].iter().any(|c| last.is_signed_by(c));
    let mut anchor_used = None;
    match anchor {
        Some(root) if last.der == root.der => {}
        Some(root) if last.info.self_signed => problems.push(ChainProblem::UntrustedRoot {
            subject: last.info.subject.clone(),
            trusted: root.info.subject.clone(),
        }),
        Some(root) if last.is_signed_by(root) => anchor_used = Some(root),
        _ if last.info.self_signed || last_signer_in_bundle => {}
        root => problems.push(ChainProblem::MissingRoot {
            last: last.info.subject.clone(),
            given_root: root.map(|r| r.info.subject.clone()),
        }),
    }

    // Validity of everything that was handed in or used.
    for cert in certs.iter().chain(anchor_used) {
        let info = &cert.info;
        if now > info.not_after {
            problems.push(ChainProblem::Expired {
                subject: info.subject.clone(),
                not_after: info.not_after,
            });
        } else if now < info.not_before {
            problems.push(ChainProblem::NotYetValid {
                subject: info.subject.clone(),
                not_before: info.not_before,
            });
        }
    }

    // Issuer rules along the path the signatures actually form from the first certificate, so
    // an ordering mistake is reported once (above) and not again as a flag or date problem.
    let path = signature_path(certs, anchor_used);
    for (i, cert) in path.iter().enumerate() {
        let Some(parent) = path.get(i + 1) else {
            break;
        };
        if !parent.can_sign_certs {
            problems.push(ChainProblem::NotACa {
                subject: parent.info.subject.clone(),
            });
        }
        if cert.info.not_after > parent.info.not_after {
            problems.push(ChainProblem::LeafOutlivesIssuer {
                subject: cert.info.subject.clone(),
                not_after: cert.info.not_after,
                issuer: parent.info.subject.clone(),
                issuer_not_after: parent.info.not_after,
            });
        }
    }
    // Path lengths. The bottom certificate counts when it is a CA: a CA is in a bundle to issue,
    // and one its issuer's constraint leaves no room under is useless even though RFC 5280 would
    // accept it as the end of a path.
    for (k, cert) in path.iter().enumerate() {
        let Some(path_len) = cert.info.path_len else {
            continue;
        };
        let cas_below = path[..k]
            .iter()
            .filter(|c| c.info.is_ca && !c.info.self_signed)
            .count();
        let cas_below = u32::try_from(cas_below).unwrap_or(u32::MAX);
        if cas_below > path_len {
            problems.push(ChainProblem::PathLenViolation {
                ca: cert.info.subject.clone(),
                path_len,
                cas_below,
            });
        }
    }
    problems
}

/// From the first certificate, follow "who signed this" (the next certificate first, then any
/// other of the bundle, then the trusted root) until a self-signed certificate or a dead end.
fn signature_path<'a>(certs: &'a [Parsed], anchor: Option<&'a Parsed>) -> Vec<&'a Parsed> {
    let mut path = vec![&certs[0]];
    let mut at = 0;
    let mut seen = vec![false; certs.len()];
    seen[0] = true;
    loop {
        let cert = &certs[at];
        if cert.info.self_signed {
            return path;
        }
        let next = std::iter::once(at + 1)
            .chain(0..certs.len())
            .find(|&j| j < certs.len() && !seen[j] && cert.is_signed_by(&certs[j]));
        match next {
            Some(j) => {
                seen[j] = true;
                path.push(&certs[j]);
                at = j;
            }
            None => {
                if let Some(root) = anchor.filter(|r| cert.is_signed_by(r)) {
                    path.push(root);
                }
                return path;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalIssuer;
    use crate::keys::{KeyAlgorithm, generate_key, make_csr};
    use crate::root::RootOptions;
    use crate::root::tests::{NOW, new_ca, pass};
    use crate::sign::IntermediateRequest;
    use time::Duration;

    struct Fixture {
        _tmp: tempfile::TempDir,
        root: String,
        inter: String,
        leaf: String,
        leaf_key: crate::GeneratedKey,
    }

    fn fixture(root_opts: RootOptions, inter_validity: Duration) -> Fixture {
        let (tmp, ca) = new_ca(&root_opts);
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let csr = make_csr(&key, "Intermediate", &[], &[]).unwrap();
        let req = IntermediateRequest {
            validity: inter_validity,
            ..IntermediateRequest::new("test")
        };
        let inter = ca
            .sign_intermediate(&csr, &req, &pass(), NOW)
            .unwrap()
            .cert_pem;
        let issuer = LocalIssuer::new(&inter, key).unwrap();
        let leaf_key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let leaf = issuer
            .issue_server(
                &leaf_key.public_key_der(),
                "leaf",
                &["leaf.local".into()],
                &[],
                Duration::days(10),
                NOW,
            )
            .unwrap();
        Fixture {
            _tmp: tmp,
            root: ca.root_pem().to_owned(),
            inter,
            leaf,
            leaf_key,
        }
    }

    fn default_fixture() -> Fixture {
        fixture(RootOptions::default(), Duration::days(365))
    }

    fn kinds(r: &ChainReport) -> Vec<String> {
        r.problems
            .iter()
            .map(|p| {
                serde_json::to_value(p).unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn a_full_chain_is_valid() {
        let f = default_fixture();
        let bundle = format!("{}{}{}", f.leaf, f.inter, f.root);
        let r = verify_chain(&bundle, None, NOW).unwrap();
        assert!(r.valid, "{:?}", r.problems);
        assert_eq!(r.certs.len(), 3);
        let r = verify_chain(&bundle, Some(&f.root), NOW).unwrap();
        assert!(r.valid, "{:?}", r.problems);
        // The root alone is a valid (one-element) chain.
        assert!(verify_chain(&f.root, None, NOW).unwrap().valid);
    }

    /// `ca verify` of a 4 MiB bundle (one intermediate repeated 6,096 times) took 227 s: every
    /// certificate was tried against every other. A bundle longer than any chain is one
    /// problem, found at once.
    #[test]
    fn a_bundle_longer_than_any_chain_is_one_problem() {
        let f = default_fixture();
        let long = f.inter.repeat(MAX_CHAIN_CERTS + 1);
        let r = verify_chain(&long, Some(&f.root), NOW).unwrap();
        assert!(!r.valid);
        assert_eq!(kinds(&r), ["too_long"]);
        assert!(
            r.problems[0].to_string().contains("65 certificates"),
            "{}",
            r.problems[0]
        );
        let r = verify_chain_any(&long, &[f.root.clone(), f.root.clone()], NOW).unwrap();
        assert_eq!(kinds(&r), ["too_long"]);
        // At the limit, still checked.
        let at_limit = f.inter.repeat(MAX_CHAIN_CERTS);
        let r = verify_chain(&at_limit, Some(&f.root), NOW).unwrap();
        assert!(!kinds(&r).contains(&"too_long".to_owned()));
    }

    #[test]
    fn intermediate_only_reports_the_missing_root_until_one_is_given() {
        let f = default_fixture();
        let r = verify_chain(&f.inter, None, NOW).unwrap();
        assert!(!r.valid);
        assert_eq!(kinds(&r), ["missing_root"]);
        assert!(
            r.problems[0]
                .to_string()
                .starts_with("intermediate only — the root is missing for validation")
        );
        let r = verify_chain(&f.inter, Some(&f.root), NOW).unwrap();
        assert!(r.valid, "{:?}", r.problems);
        assert!(r.trust_anchor.is_some());
        let r = verify_chain(&format!("{}{}", f.leaf, f.inter), Some(&f.root), NOW).unwrap();
        assert!(r.valid, "{:?}", r.problems);
    }

    #[test]
    fn a_foreign_root_is_reported() {
        let f = default_fixture();
        let other = default_fixture();
        let r = verify_chain(&f.inter, Some(&other.root), NOW).unwrap();
        assert_eq!(kinds(&r), ["missing_root"]);
        assert!(
            r.problems[0].to_string().contains("did not sign"),
            "{}",
            r.problems[0]
        );
        let r = verify_chain(&format!("{}{}", f.inter, f.root), Some(&other.root), NOW).unwrap();
        assert_eq!(kinds(&r), ["untrusted_root"]);
    }

    #[test]
    fn wrong_order_and_signature_mismatch_are_told_apart() {
        let f = default_fixture();
        let r = verify_chain(&format!("{}{}{}", f.leaf, f.root, f.inter), None, NOW).unwrap();
        assert!(
            kinds(&r).contains(&"wrong_order".to_owned()),
            "{:?}",
            r.problems
        );
        assert!(
            r.problems.iter().any(|p| p.to_string().contains(
                "certificate #1 (CN=leaf) is not signed by the next certificate but by #3"
            )),
            "{:?}",
            r.problems
        );
        let other = default_fixture();
        let r = verify_chain(&format!("{}{}", f.inter, other.root), None, NOW).unwrap();
        assert_eq!(kinds(&r), ["signature_mismatch"]);
        assert_eq!(
            r.problems[0].to_string(),
            "the signature of CN=Intermediate does not verify with the key of CN=Warden Offline Root CA"
        );
    }

    #[test]
    fn expiry_and_not_yet_valid() {
        let f = default_fixture();
        let bundle = format!("{}{}{}", f.leaf, f.inter, f.root);
        let r = verify_chain(&bundle, None, NOW + Duration::days(11)).unwrap();
        assert_eq!(kinds(&r), ["expired"]);
        assert!(
            r.problems[0].to_string().starts_with("CN=leaf expired at "),
            "{}",
            r.problems[0]
        );
        let r = verify_chain(&bundle, None, NOW - Duration::days(1)).unwrap();
        assert_eq!(
            kinds(&r),
            ["not_yet_valid", "not_yet_valid", "not_yet_valid"]
        );
    }

    #[test]
    fn a_leaf_that_signed_something_is_not_a_ca() {
        let f = default_fixture();
        // Misuse the leaf's key to sign another certificate, as a careless tool could.
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = crate::params::common_name_dn("grandchild").unwrap();
        p.not_before = NOW - Duration::hours(1);
        p.not_after = NOW + Duration::days(1);
        let k = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let issuer = rcgen::Issuer::from_ca_cert_pem(&f.leaf, &f.leaf_key.inner).unwrap();
        let grandchild = p.signed_by(&k.inner, &issuer).unwrap().pem();
        let bundle = format!("{grandchild}{}{}{}", f.leaf, f.inter, f.root);
        let r = verify_chain(&bundle, None, NOW).unwrap();
        assert_eq!(kinds(&r), ["not_a_ca"], "{:?}", r.problems);
        assert_eq!(
            r.problems[0].to_string(),
            "CN=leaf issues a certificate but is not a CA (needs CA:true and keyCertSign)"
        );
    }

    #[test]
    fn a_root_before_its_intermediate_is_wrong_order_not_missing_root() {
        let f = default_fixture();
        let r = verify_chain(&format!("{}{}", f.root, f.inter), None, NOW).unwrap();
        assert_eq!(
            kinds(&r),
            ["wrong_order", "wrong_order"],
            "{:?}",
            r.problems
        );
        assert!(
            r.problems[0]
                .to_string()
                .contains("is a self-signed root but not the last"),
            "{}",
            r.problems[0]
        );
    }

    #[test]
    fn path_length_violations_are_counted() {
        // Root pathlen 1 → intermediate (pathlen 0, allowed) → a second-level CA signed by the
        // intermediate: the intermediate's 0 is exceeded, and so is the root's 1.
        let (_tmp, ca) = new_ca(&RootOptions::default());
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let csr = make_csr(&key, "Intermediate", &[], &[]).unwrap();
        let inter = ca
            .sign_intermediate(&csr, &IntermediateRequest::new("test"), &pass(), NOW)
            .unwrap()
            .cert_pem;
        let sub = sub_ca(&inter, &key);
        let r = verify_chain(&format!("{sub}{inter}"), Some(ca.root_pem()), NOW).unwrap();
        let pl: Vec<_> = r
            .problems
            .iter()
            .filter_map(|p| match p {
                ChainProblem::PathLenViolation {
                    ca,
                    path_len,
                    cas_below,
                } => Some((ca.clone(), *path_len, *cas_below)),
                _ => None,
            })
            .collect();
        assert_eq!(
            pl,
            vec![
                ("CN=Intermediate".to_owned(), 0, 1),
                ("CN=Warden Offline Root CA".to_owned(), 1, 2)
            ]
        );
        assert!(
            r.problems[0]
                .to_string()
                .contains("has path length 0 but 1 CA certificate(s) below it")
        );
    }

    /// A CA certificate signed by `issuer_pem`'s key, built directly with rcgen: `LocalIssuer`
    /// only issues leaves, and the root would refuse it by policy.
    fn sub_ca(issuer_pem: &str, issuer_key: &crate::GeneratedKey) -> String {
        let sub_key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = crate::params::common_name_dn("Sub CA").unwrap();
        p.serial_number = Some(crate::params::random_serial().unwrap());
        p.not_before = NOW - Duration::hours(1);
        p.not_after = NOW + Duration::days(30);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        let issuer = rcgen::Issuer::from_ca_cert_pem(issuer_pem, &issuer_key.inner).unwrap();
        p.signed_by(&sub_key.inner, &issuer).unwrap().pem()
    }

    #[test]
    fn a_child_outliving_its_issuer_is_reported() {
        // Issue a long-lived CA with rcgen under the root key to simulate a careless signer.
        let (_tmp, ca) = new_ca(&RootOptions {
            validity: Duration::days(100),
            ..RootOptions::default()
        });
        let root_key = ca.unlock(&pass()).unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = crate::params::common_name_dn("Long").unwrap();
        p.not_before = NOW;
        p.not_after = NOW + Duration::days(1000);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        let k = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let issuer = rcgen::Issuer::from_ca_cert_pem(ca.root_pem(), &root_key.inner).unwrap();
        let long = p.signed_by(&k.inner, &issuer).unwrap().pem();
        let r = verify_chain(&long, Some(ca.root_pem()), NOW).unwrap();
        assert_eq!(kinds(&r), ["leaf_outlives_issuer"]);
        assert!(
            r.problems[0].to_string().contains("after its issuer"),
            "{}",
            r.problems[0]
        );
    }

    #[test]
    fn empty_and_unparsable_bundles() {
        let r = verify_chain("", None, NOW).unwrap();
        assert_eq!(kinds(&r), ["empty"]);
        assert!(!r.valid);
        assert!(verify_chain("garbage", None, NOW).is_err());
    }
}
