//! Signing an intermediate CA from a CSR, policy first.
//!
//! Only two things are taken from the CSR: the subject name and the public key (after the CSR's
//! self-signature proves the requester holds the key). Every extension comes from
//! [`IntermediateRequest`]: whatever the requester asked for (SANs, key usages, a larger path
//! length, no name constraints) is ignored. That is the posture of a root: OpenBao, or whoever
//! wrote the CSR, does not get to choose what the root vouches for.

use rcgen::{
    BasicConstraints, CertificateParams, GeneralSubtree, IsCa, KeyUsagePurpose, NameConstraints,
};
use rustls_pki_types::pem::PemObject;
use secrecy::SecretString;
use time::{Duration, OffsetDateTime};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use crate::error::{Error, Result};
use crate::inspect::parse_der;
use crate::ledger::{self, LedgerEntry};
use crate::params;
use crate::root::{CaDir, LEDGER};

/// What the root is asked to sign, beyond the CSR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntermediateRequest {
    /// The environment the intermediate serves (`test`, `prod`); recorded in the ledger.
    pub environment: String,
    /// What the intermediate is for (`vault-pki`, `listener-ca`); recorded in the ledger.
    pub profile: String,
    /// Lifetime from `now`; must end before the root does.
    pub validity: Duration,
    /// pathLenConstraint; 0 means it issues leaves only.
    pub path_len: u8,
    /// Permitted DNS subtrees (name constraints); empty means unconstrained. A relying party
    /// that enforces constraints (rustls/webpki does) then refuses leaves for any other domain,
    /// which limits the damage a compromised environment can do.
    pub permitted_dns: Vec<String>,
    /// Why an intermediate without `permitted_dns` is acceptable although the root signs for
    /// more than one environment (ADR 0013). Without it such a request is refused; with it the
    /// reason is recorded in the ledger, where `warden ca verify` and `ca show` report it.
    pub unconstrained_because: Option<String>,
}

impl IntermediateRequest {
    /// A request with the defaults: profile `vault-pki`, 5 years, path length 0, no constraints.
    pub fn new(environment: impl Into<String>) -> Self {
        Self {
            environment: environment.into(),
            profile: "vault-pki".to_owned(),
            validity: Duration::days(5 * 365),
            path_len: 0,
            permitted_dns: Vec::new(),
            unconstrained_because: None,
        }
    }
}

/// A signed intermediate and the ledger line that records it.
#[derive(Debug, Clone)]
pub struct SignedIntermediate {
    /// The intermediate certificate, PEM (without the root).
    pub cert_pem: String,
    /// What was appended to the ledger.
    pub entry: LedgerEntry,
}

impl CaDir {
    /// Signs `csr_pem` as an intermediate CA under the policy in `req`.
    ///
    /// Every check happens before the single write (one ledger line): a bad CSR, a wrong
    /// passphrase, a root outside its validity at `now`, or a lifetime the root cannot cover
    /// all return an error with the directory byte-for-byte unchanged.
    pub fn sign_intermediate(
        &self,
        csr_pem: &str,
        req: &IntermediateRequest,
        passphrase: &SecretString,
        now: OffsetDateTime,
    ) -> Result<SignedIntermediate> {
        let _lock = self.lock()?;
        self.sign_with(&self.root, crate::ROOT_KEY, csr_pem, req, passphrase, now)
    }

    /// [`CaDir::sign_intermediate`] with `signer` (the root, or the next root of a rollover,
    /// whose key is `key_file`), the directory already locked by the caller.
    pub(crate) fn sign_with(
        &self,
        signer: &crate::inspect::Parsed,
        key_file: &'static str,
        csr_pem: &str,
        req: &IntermediateRequest,
        passphrase: &SecretString,
        now: OffsetDateTime,
    ) -> Result<SignedIntermediate> {
        check_label("environment", &req.environment)?;
        check_label("profile", &req.profile)?;
        for d in &req.permitted_dns {
            params::check_permitted_subtree(d)?;
        }
        let unconstrained_because = match req.unconstrained_because.as_deref().map(str::trim) {
            Some("") => {
                return Err(Error::InvalidField {
                    field: "unconstrained because",
                    value: String::new(),
                    reason: "it is empty; say why this intermediate may go unconstrained",
                });
            }
            Some(r) if !req.permitted_dns.is_empty() => {
                return Err(Error::InvalidField {
                    field: "unconstrained because",
                    value: r.to_owned(),
                    reason: "the intermediate is constrained; a reason is only for one that is not",
                });
            }
            other => other.map(str::to_owned),
        };
        if req.permitted_dns.is_empty() && unconstrained_because.is_none() {
            let environments = self.environments_with(&req.environment)?;
            if environments.len() > 1 {
                return Err(Error::UnconstrainedIntermediate {
                    environment: req.environment.clone(),
                    environments,
                });
            }
        }
        if !req.permitted_dns.is_empty()
            && req.profile == crate::isolation::PKI_PROFILE
            && let Some((other, names)) = self.overreach(&req.environment, &req.permitted_dns)?
        {
            return Err(Error::OverreachingIntermediate {
                environment: req.environment.clone(),
                other,
                names,
            });
        }

        let root = &signer.info;
        if now < root.not_before {
            return Err(Error::RootNotYetValid {
                not_before: root.not_before,
            });
        }
        if now > root.not_after {
            return Err(Error::RootExpired {
                not_after: root.not_after,
            });
        }
        // The certificate, not ca.json, is what relying parties enforce.
        if let Some(root_path_len) = root.path_len
            && u32::from(req.path_len) >= root_path_len
        {
            return Err(Error::PathLenTooLarge {
                requested: req.path_len,
                root_path_len,
            });
        }
        let (not_before, not_after) = params::window(now, req.validity)?;
        if not_after > root.not_after {
            return Err(Error::IntermediateOutlivesRoot {
                root_not_after: root.not_after,
                requested_not_after: not_after,
            });
        }
        let (subject, spki) = read_csr(csr_pem)?;

        // The expensive check (scrypt) last among the refusals, the write after all of them.
        let key = self.unlock_as(key_file, signer, passphrase)?;

        let mut p = CertificateParams::default();
        p.distinguished_name = subject;
        p.serial_number = Some(params::random_serial()?);
        p.not_before = not_before;
        p.not_after = not_after;
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(req.path_len));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.use_authority_key_identifier_extension = true;
        if !req.permitted_dns.is_empty() {
            p.name_constraints = Some(NameConstraints {
                permitted_subtrees: req
                    .permitted_dns
                    .iter()
                    .map(|d| GeneralSubtree::DnsName(d.clone()))
                    .collect(),
                excluded_subtrees: Vec::new(),
            });
        }
        let issuer = rcgen::Issuer::from_ca_cert_der(&signer.der.as_slice().into(), &key.inner)
            .map_err(Error::rcgen("load the root as issuer"))?;
        let cert = p
            .signed_by(&spki, &issuer)
            .map_err(Error::rcgen("sign the intermediate"))?;

        // Check the new certificate before it leaves: it parses, the root's key verifies it, and
        // it carries what the policy put in.
        let signed = parse_der(cert.der())?;
        if !signed.is_signed_by(signer) || !signed.can_sign_certs {
            return Err(Error::BadCertificate {
                index: None,
                reason: "the freshly signed intermediate failed its own check".to_owned(),
            });
        }

        let entry = LedgerEntry {
            serial: signed.info.serial.clone(),
            subject: signed.info.subject.clone(),
            environment: req.environment.clone(),
            profile: req.profile.clone(),
            not_before,
            not_after,
            sha256: signed.info.sha256,
            signed_at: now,
            path_len: Some(req.path_len),
            permitted_dns: req.permitted_dns.clone(),
            unconstrained_because,
            signed_by: (signer.info.sha256 != self.root.info.sha256)
                .then(|| signer.info.sha256.clone()),
        };
        ledger::append(&self.dir.join(LEDGER), &entry)?;
        Ok(SignedIntermediate {
            cert_pem: cert.pem(),
            entry,
        })
    }
}

impl CaDir {
    /// Every environment this root has signed for (its own `offline` self-signature aside),
    /// plus `also`, sorted: "does the root sign for more than one environment?" (ADR 0013).
    pub fn environments_with(&self, also: &str) -> Result<Vec<String>> {
        let mut envs: Vec<String> = self
            .ledger()?
            .into_iter()
            .filter(|e| e.profile != "root" && e.environment != ledger::OFFLINE)
            .map(|e| e.environment)
            .collect();
        envs.push(also.to_owned());
        envs.sort();
        envs.dedup();
        Ok(envs)
    }
}

/// The DER SubjectPublicKeyInfo of a PEM CSR whose self-signature verifies.
pub(crate) fn csr_public_key(csr_pem: &str) -> Result<Vec<u8>> {
    let bad = |reason: String| Error::BadCsr { reason };
    let der = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|e| bad(format!("no PEM CERTIFICATE REQUEST block: {e}")))?;
    let (_, csr) = X509CertificationRequest::from_der(der.as_ref())
        .map_err(|e| bad(format!("not a PKCS#10 request: {e}")))?;
    csr.verify_signature()
        .map_err(|e| bad(format!("its signature does not verify ({e})")))?;
    Ok(csr.certification_request_info.subject_pki.raw.to_vec())
}

/// Parses a PEM CSR, verifies its self-signature and returns only the subject and the key.
fn read_csr(csr_pem: &str) -> Result<(rcgen::DistinguishedName, rcgen::SubjectPublicKeyInfo)> {
    let bad = |reason: String| Error::BadCsr { reason };
    let der = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|e| bad(format!("no PEM CERTIFICATE REQUEST block: {e}")))?;
    let (rest, csr) = X509CertificationRequest::from_der(der.as_ref())
        .map_err(|e| bad(format!("not a PKCS#10 request: {e}")))?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes after the request".to_owned()));
    }
    csr.verify_signature().map_err(|e| {
        bad(format!(
            "its signature does not verify ({e}); it was altered or is not self-signed"
        ))
    })?;
    let info = &csr.certification_request_info;
    if info.subject.iter().next().is_none() {
        return Err(bad(
            "the subject is empty; an intermediate CA needs a name".to_owned()
        ));
    }
    let subject = params::dn_from_x509(&info.subject).map_err(bad)?;
    let spki = rcgen::SubjectPublicKeyInfo::from_der(info.subject_pki.raw)
        .map_err(|e| bad(format!("unsupported public key: {e}")))?;
    Ok((subject, spki))
}

fn check_label(field: &'static str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidField {
            field,
            value: value.to_owned(),
            reason: "use 1-64 letters, digits, '-', '_' or '.'",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyAlgorithm, generate_key, make_csr};
    use crate::root::RootOptions;
    use crate::root::tests::{NOW, new_ca, pass};
    use std::collections::BTreeMap;
    use std::path::Path;

    /// Every file of the directory with its mode and SHA-256, to prove "unchanged".
    fn snapshot(dir: &Path) -> BTreeMap<String, (u32, String)> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let meta = e.metadata().unwrap();
                let bytes = std::fs::read(e.path()).unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    (meta.permissions().mode(), params::sha256_hex(&bytes)),
                )
            })
            .collect()
    }

    fn csr(cn: &str) -> String {
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        make_csr(&key, cn, &["ignored.example".to_owned()], &[]).unwrap()
    }

    /// Regression for issue 14: a root that signs for test and prod refuses an unconstrained
    /// intermediate unless told why, and records the reason.
    #[test]
    fn issue_14_unconstrained_intermediates_for_a_second_environment_need_a_reason() {
        let (_tmp, ca) = new_ca(&RootOptions::default());
        // Alone under its root, the first environment's intermediate may go unconstrained.
        ca.sign_intermediate(
            &csr("test PKI"),
            &IntermediateRequest::new("test"),
            &pass(),
            NOW,
        )
        .unwrap();
        let before = snapshot(ca.dir());
        let e = ca
            .sign_intermediate(
                &csr("prod PKI"),
                &IntermediateRequest::new("prod"),
                &pass(),
                NOW,
            )
            .unwrap_err();
        match &e {
            Error::UnconstrainedIntermediate {
                environment,
                environments,
            } => {
                assert_eq!(environment, "prod");
                assert_eq!(environments, &["prod", "test"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().contains("name constraints"), "{e}");
        assert_eq!(snapshot(ca.dir()), before, "a refusal writes nothing");

        // An empty reason is no reason; a reason with constraints is a contradiction.
        let blank = IntermediateRequest {
            unconstrained_because: Some("  ".into()),
            ..IntermediateRequest::new("prod")
        };
        assert!(matches!(
            ca.sign_intermediate(&csr("prod PKI"), &blank, &pass(), NOW),
            Err(Error::InvalidField { .. })
        ));
        let both = IntermediateRequest {
            permitted_dns: vec!["prod.internal".into()],
            unconstrained_because: Some("why".into()),
            ..IntermediateRequest::new("prod")
        };
        assert!(matches!(
            ca.sign_intermediate(&csr("prod PKI"), &both, &pass(), NOW),
            Err(Error::InvalidField { .. })
        ));
        assert_eq!(snapshot(ca.dir()), before);

        let constrained = IntermediateRequest {
            permitted_dns: vec!["prod.internal".into()],
            ..IntermediateRequest::new("prod")
        };
        let signed = ca
            .sign_intermediate(&csr("prod PKI"), &constrained, &pass(), NOW)
            .unwrap();
        assert_eq!(signed.entry.unconstrained_because, None);
        let reasoned = IntermediateRequest {
            unconstrained_because: Some("one tenant, migration window".into()),
            ..IntermediateRequest::new("prod")
        };
        let signed = ca
            .sign_intermediate(&csr("prod PKI"), &reasoned, &pass(), NOW)
            .unwrap();
        let last = ca.ledger().unwrap().pop().unwrap();
        assert_eq!(last, signed.entry);
        assert_eq!(
            last.unconstrained_because.as_deref(),
            Some("one tenant, migration window")
        );
    }

    #[test]
    fn signs_policy_built_intermediates_and_records_each_once() {
        let (_tmp, ca) = new_ca(&RootOptions::default());
        let mut req = IntermediateRequest::new("test");
        req.permitted_dns = vec!["svc.internal".to_owned()];
        let signed = ca
            .sign_intermediate(&csr("OpenBao test PKI"), &req, &pass(), NOW)
            .unwrap();

        let info = crate::parse_pem_bundle(&signed.cert_pem).unwrap().remove(0);
        assert_eq!(info.subject, "CN=OpenBao test PKI");
        assert_eq!(info.issuer, ca.root_info().subject);
        assert!(info.is_ca && !info.self_signed);
        assert_eq!(info.path_len, Some(0));
        assert_eq!(info.not_after, NOW + Duration::days(5 * 365));
        assert_eq!(info.permitted_dns, vec!["svc.internal".to_owned()]);
        assert!(
            info.subject_alt_names.is_empty(),
            "SANs from the CSR must be dropped"
        );
        assert_eq!(signed.entry.sha256, info.sha256);
        assert_eq!(signed.entry.serial, info.serial);

        let parsed = crate::inspect::parse_one(&signed.cert_pem).unwrap();
        let x = parsed.x509();
        let ku = x.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        let aki = x
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                    a.key_identifier.clone()
                }
                _ => None,
            });
        let root_ski = ca
            .root
            .x509()
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => {
                    Some(k.0.to_vec())
                }
                _ => None,
            });
        assert_eq!(aki.map(|k| k.0.to_vec()), root_ski);

        let ledger = ca.ledger().unwrap();
        assert_eq!(ledger.len(), 2);
        assert_eq!(ledger[1], signed.entry);
        assert_eq!(ledger[1].environment, "test");
        assert_eq!(ledger[1].profile, "vault-pki");

        let second = ca
            .sign_intermediate(
                &csr("OpenBao prod PKI"),
                &IntermediateRequest {
                    permitted_dns: vec!["prod.internal".to_owned()],
                    ..IntermediateRequest::new("prod")
                },
                &pass(),
                NOW,
            )
            .unwrap();
        assert_ne!(second.entry.serial, signed.entry.serial);
        assert_eq!(ca.ledger().unwrap().len(), 3);
        assert_eq!(
            std::fs::read_to_string(ca.dir().join(LEDGER))
                .unwrap()
                .lines()
                .count(),
            3
        );
    }

    #[test]
    fn signs_rsa_csrs_under_an_ecdsa_root() {
        let (_tmp, ca) = new_ca(&RootOptions::default());
        let key = generate_key(KeyAlgorithm::Rsa3072).unwrap();
        let csr = make_csr(&key, "rsa int", &[], &[]).unwrap();
        let signed = ca
            .sign_intermediate(&csr, &IntermediateRequest::new("test"), &pass(), NOW)
            .unwrap();
        let info = crate::parse_pem_bundle(&signed.cert_pem).unwrap().remove(0);
        assert_eq!(info.key_algorithm, "RSA 3072");
    }

    #[test]
    fn every_refusal_leaves_the_directory_unchanged() {
        let (_tmp, ca) = new_ca(&RootOptions {
            validity: Duration::days(365),
            ..RootOptions::default()
        });
        let before = snapshot(ca.dir());
        let good = csr("int");
        let req = IntermediateRequest {
            validity: Duration::days(30),
            ..IntermediateRequest::new("test")
        };

        // A byte flipped inside the signature (the end of the DER).
        let der = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(good.as_bytes())
            .unwrap();
        let mut bytes = der.as_ref().to_vec();
        let n = bytes.len();
        bytes[n - 5] ^= 0x01;
        let tampered = pem_wrap("CERTIFICATE REQUEST", &bytes);

        let refuse = |name: &str, csr: &str, req: &IntermediateRequest, pass: &str, now| {
            let err = ca
                .sign_intermediate(csr, req, &SecretString::from(pass), now)
                .unwrap_err();
            assert_eq!(
                snapshot(ca.dir()),
                before,
                "{name}: the CA directory changed"
            );
            err
        };
        let p = "root passphrase";
        let e = refuse("wrong passphrase", &good, &req, "nope", NOW);
        assert!(matches!(e, Error::WrongPassphrase { .. }), "{e:?}");
        let e = refuse("tampered CSR", &tampered, &req, p, NOW);
        assert!(matches!(e, Error::BadCsr { .. }), "{e:?}");
        assert!(e.to_string().contains("signature does not verify"), "{e}");
        let e = refuse("not a CSR", "hello", &req, p, NOW);
        assert!(matches!(e, Error::BadCsr { .. }), "{e:?}");
        let long = IntermediateRequest {
            validity: Duration::days(400),
            ..req.clone()
        };
        let e = refuse("outlives root", &good, &long, p, NOW);
        assert!(matches!(e, Error::IntermediateOutlivesRoot { .. }), "{e:?}");
        let e = refuse("root expired", &good, &req, p, NOW + Duration::days(366));
        assert!(matches!(e, Error::RootExpired { .. }), "{e:?}");
        let e = refuse(
            "root not yet valid",
            &good,
            &req,
            p,
            NOW - Duration::days(1),
        );
        assert!(matches!(e, Error::RootNotYetValid { .. }), "{e:?}");
        let deep = IntermediateRequest {
            path_len: 1,
            ..req.clone()
        };
        let e = refuse("path len", &good, &deep, p, NOW);
        assert!(
            matches!(
                e,
                Error::PathLenTooLarge {
                    requested: 1,
                    root_path_len: 1
                }
            ),
            "{e:?}"
        );
        let bad_env = IntermediateRequest {
            environment: "a b".into(),
            ..req.clone()
        };
        let e = refuse("bad environment", &good, &bad_env, p, NOW);
        assert!(
            matches!(
                e,
                Error::InvalidField {
                    field: "environment",
                    ..
                }
            ),
            "{e:?}"
        );
        let bad_dns = IntermediateRequest {
            permitted_dns: vec!["a b".into()],
            ..req.clone()
        };
        let e = refuse("bad constraint", &good, &bad_dns, p, NOW);
        assert!(matches!(e, Error::InvalidField { .. }), "{e:?}");
        let zero = IntermediateRequest {
            validity: Duration::ZERO,
            ..req
        };
        let e = refuse("zero validity", &good, &zero, p, NOW);
        assert!(
            matches!(
                e,
                Error::InvalidField {
                    field: "validity",
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(ca.ledger().unwrap().len(), 1);
    }

    #[test]
    fn outlives_root_message_names_both_dates() {
        let (_tmp, ca) = new_ca(&RootOptions {
            validity: Duration::days(365),
            ..RootOptions::default()
        });
        let err = ca
            .sign_intermediate(&csr("int"), &IntermediateRequest::new("test"), &pass(), NOW)
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg == ("the root expires at 2031-01-01T12:00:00Z, before the intermediate would (2034-12-31T12:00:00Z)"),
            "{msg}"
        );
    }

    #[test]
    fn csr_subject_and_key_are_all_that_is_kept() {
        // A CSR asking to be a CA with a big path length and some key usages.
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let mut p = CertificateParams::new(vec!["evil.example".to_owned()]).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "asks a lot");
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "Org");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let csr = p.serialize_request(&key.inner).unwrap().pem().unwrap();
        let (_tmp, ca) = new_ca(&RootOptions::default());
        let signed = ca
            .sign_intermediate(&csr, &IntermediateRequest::new("test"), &pass(), NOW)
            .unwrap();
        let parsed = crate::inspect::parse_one(&signed.cert_pem).unwrap();
        assert_eq!(parsed.info.subject, "CN=asks a lot, O=Org");
        assert_eq!(parsed.info.path_len, Some(0));
        assert!(parsed.info.subject_alt_names.is_empty());
        assert_eq!(
            parsed.x509().public_key().raw,
            key.public_key_der().as_slice()
        );
        let x = parsed.x509();
        let ku = x.key_usage().unwrap().unwrap().value;
        assert!(!ku.digital_signature() && ku.key_cert_sign());
    }

    pub(crate) fn pem_wrap(label: &str, der: &[u8]) -> String {
        use pkcs8::der::pem;
        pem::encode_string(label, pem::LineEnding::LF, der).unwrap()
    }
}
