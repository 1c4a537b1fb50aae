//! Is the certificate already on disk still the right one? Pure: files' contents and `now` in,
//! a decision out, so every branch is tested without a server or a clock.
//!
//! A certificate is kept only when all of these hold: the key belongs to it, it names the
//! identity's pinned common name, it was signed by the environment's *current* issuing CA and is
//! within its validity, and more than a third of its lifetime is left. The last rule is the
//! agent's renewal point (the same one `renewal_due` will drive later): re-running enroll on a
//! host whose certificate is about to expire renews it instead of leaving it to fail.

use serde::Serialize;
use time::OffsetDateTime;

/// Why a new certificate is issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueReason {
    /// No certificate (or no key) on disk.
    New,
    /// `--force`.
    Forced,
    /// The files could not be parsed, or the key does not belong to the certificate.
    Unusable,
    /// The certificate names another common name than the identity's.
    NameMismatch,
    /// The certificate was not signed by the environment's current issuing CA (the CA rolled
    /// over, or the environment was rebuilt), or is outside its validity period.
    NotValidNow,
    /// Less than a third of its lifetime is left.
    RenewalDue,
}

impl IssueReason {
    /// A short phrase for humans.
    pub fn describe(self) -> &'static str {
        match self {
            Self::New => "no certificate yet",
            Self::Forced => "re-issue forced",
            Self::Unusable => "the existing certificate or key is unusable",
            Self::NameMismatch => "the existing certificate names another identity",
            Self::NotValidNow => {
                "the existing certificate is expired or not from the current issuing CA"
            }
            Self::RenewalDue => "less than a third of the existing certificate's lifetime is left",
        }
    }
}

/// The decision about what is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Keep it.
    Keep,
    /// Issue a new one.
    Issue(IssueReason),
}

impl std::fmt::Display for Decision {
    /// What an operator reads in the log: `keep` or `issue (<reason>)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Keep => f.write_str("keep"),
            Self::Issue(reason) => write!(f, "issue ({})", reason.describe()),
        }
    }
}

/// Whether a certificate valid from `not_before` to `not_after` should be renewed at `now`:
/// when less than a third of its lifetime is left (or it is already past its end).
pub fn renewal_due(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    now: OffsetDateTime,
) -> bool {
    let lifetime = not_after - not_before;
    let left = not_after - now;
    left * 3 < lifetime
}

/// Judges the files on disk. `issuer_pem` is the environment's current issuing CA.
pub(crate) fn assess(
    cert_pem: &str,
    key_pem: &[u8],
    expected_cn: &str,
    issuer_pem: &str,
    now: OffsetDateTime,
) -> Decision {
    let chain_and_key_fit = warden_bao::ClientIdentity::from_pem(
        cert_pem.as_bytes().to_vec(),
        zeroize::Zeroizing::new(key_pem.to_vec()),
    )
    .is_ok();
    let Some(leaf_pem) = warden_pki::first_certificate(cert_pem) else {
        return Decision::Issue(IssueReason::Unusable);
    };
    if !chain_and_key_fit {
        return Decision::Issue(IssueReason::Unusable);
    }
    match warden_pki::common_name(leaf_pem) {
        Some(cn) if cn == expected_cn => {}
        Some(_) => return Decision::Issue(IssueReason::NameMismatch),
        None => return Decision::Issue(IssueReason::Unusable),
    }
    match warden_pki::verify_chain(leaf_pem, Some(issuer_pem), now) {
        Ok(r) if r.valid => {
            let leaf = &r.certs[0];
            if renewal_due(leaf.not_before, leaf.not_after, now) {
                Decision::Issue(IssueReason::RenewalDue)
            } else {
                Decision::Keep
            }
        }
        Ok(_) => Decision::Issue(IssueReason::NotValidNow),
        Err(_) => Decision::Issue(IssueReason::Unusable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;
    use warden_pki::{KeyAlgorithm, LocalIssuer, generate_key};

    fn ca(name: &str) -> LocalIssuer {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.not_before = OffsetDateTime::now_utc() - Duration::days(1);
        p.not_after = OffsetDateTime::now_utc() + Duration::days(3650);
        let cert = p.self_signed(&key).unwrap();
        LocalIssuer::from_pem(&cert.pem(), &key.serialize_pem()).unwrap()
    }

    struct Issued {
        chain: String,
        key: Vec<u8>,
    }

    fn issue(ca: &LocalIssuer, cn: &str, days: i64, at: OffsetDateTime) -> Issued {
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let leaf = ca
            .issue_client(&key.public_key_der(), cn, Duration::days(days), at)
            .unwrap();
        Issued {
            chain: format!("{}\n{}", leaf.trim_end(), ca.cert_pem()),
            key: key.private_key_pem().as_bytes().to_vec(),
        }
    }

    const CN: &str = "billing.identity.test.warden.internal";

    #[test]
    fn a_fresh_certificate_from_the_current_ca_is_kept() {
        let ca = ca("int");
        let now = OffsetDateTime::now_utc();
        let c = issue(&ca, CN, 30, now);
        assert_eq!(
            assess(&c.chain, &c.key, CN, ca.cert_pem(), now),
            Decision::Keep
        );
        assert_eq!(warden_pki::common_name(&c.chain).as_deref(), Some(CN));
    }

    #[test]
    fn each_reason_to_reissue_is_detected() {
        let ca1 = ca("int");
        let now = OffsetDateTime::now_utc();
        let c = issue(&ca1, CN, 30, now);

        // Another identity's name.
        let other = issue(&ca1, "ledger.identity.test.warden.internal", 30, now);
        assert_eq!(
            assess(&other.chain, &other.key, CN, ca1.cert_pem(), now),
            Decision::Issue(IssueReason::NameMismatch)
        );
        // A key from another rotation.
        assert_eq!(
            assess(&c.chain, &other.key, CN, ca1.cert_pem(), now),
            Decision::Issue(IssueReason::Unusable)
        );
        // Garbage.
        assert_eq!(
            assess("not pem", &c.key, CN, ca1.cert_pem(), now),
            Decision::Issue(IssueReason::Unusable)
        );
        // The environment's CA changed.
        let ca2 = ca("int2");
        assert_eq!(
            assess(&c.chain, &c.key, CN, ca2.cert_pem(), now),
            Decision::Issue(IssueReason::NotValidNow)
        );
        // Expired.
        assert_eq!(
            assess(
                &c.chain,
                &c.key,
                CN,
                ca1.cert_pem(),
                now + Duration::days(31)
            ),
            Decision::Issue(IssueReason::NotValidNow)
        );
        // Two thirds of the lifetime gone.
        assert_eq!(
            assess(
                &c.chain,
                &c.key,
                CN,
                ca1.cert_pem(),
                now + Duration::days(21)
            ),
            Decision::Issue(IssueReason::RenewalDue)
        );
        assert_eq!(
            assess(
                &c.chain,
                &c.key,
                CN,
                ca1.cert_pem(),
                now + Duration::days(19)
            ),
            Decision::Keep
        );
    }

    #[test]
    fn renewal_is_due_in_the_last_third() {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let end = t0 + Duration::days(30);
        assert!(!renewal_due(t0, end, t0));
        assert!(!renewal_due(t0, end, t0 + Duration::days(19)));
        assert!(renewal_due(t0, end, t0 + Duration::days(21)));
        assert!(renewal_due(t0, end, end + Duration::days(1)));
    }

    #[test]
    fn first_block_is_the_leaf() {
        let text = "junk\n-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----\n";
        assert_eq!(
            warden_pki::first_certificate(text),
            Some("-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----")
        );
        assert_eq!(warden_pki::first_certificate("nothing"), None);
    }
}
