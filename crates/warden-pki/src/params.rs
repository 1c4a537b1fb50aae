//! Pieces every certificate Warden signs shares: random serials, explicit validity windows, names
//! carried over from a CSR, SAN lists. rcgen's defaults (validity 1975–4096, serial derived from
//! the public key) are unsafe for a CA, so every certificate goes through these helpers.

use std::net::IpAddr;

use rcgen::{DistinguishedName, DnType, DnValue, SanType, SerialNumber};
use time::{Duration, OffsetDateTime};
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::x509::X509Name;

use crate::error::{Error, Result};

/// How far notBefore is set before `now`. Machines that will check the certificate may run a
/// little behind the one that signed it; without this a freshly signed certificate can be "not
/// yet valid" for them for a few seconds. OpenBao backdates by 30 s for the same reason.
pub const BACKDATE: Duration = Duration::seconds(60);

/// A 16-byte random serial with the top bit clear (a positive DER INTEGER of fixed length) and
/// the next bit set (no leading zero byte to strip): 126 bits of randomness, so two signatures
/// never share an issuer+serial pair even when the same key is certified twice.
pub(crate) fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| Error::Rcgen {
        step: "draw a random serial",
        source: rcgen::Error::RingUnspecified,
    })?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// `N` random bytes from the one crypto provider (names of temporary directories, split ids).
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| Error::Rcgen {
        step: "draw random bytes",
        source: rcgen::Error::RingUnspecified,
    })?;
    Ok(bytes)
}

/// The validity window of a new certificate: from `now - BACKDATE` to `now + validity`, in whole
/// seconds (X.509 times have no fractions).
pub(crate) fn window(
    now: OffsetDateTime,
    validity: Duration,
) -> Result<(OffsetDateTime, OffsetDateTime)> {
    if validity <= Duration::ZERO {
        return Err(Error::InvalidField {
            field: "validity",
            value: format!(
                "{}{}",
                if validity.is_negative() { "-" } else { "" },
                warden_spec::format_duration(validity.unsigned_abs())
            ),
            reason: "it must be longer than zero",
        });
    }
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let overflow = || Error::DateOverflow { validity };
    let not_after = now.checked_add(validity).ok_or_else(overflow)?;
    let not_before = now.checked_sub(BACKDATE).ok_or_else(overflow)?;
    // X.509 GeneralizedTime stops at year 9999.
    if not_after.year() > 9999 {
        return Err(overflow());
    }
    Ok((not_before, not_after))
}

/// `CN=<common_name>`; refuses an empty name, which would make an unnamed CA or leaf.
pub(crate) fn common_name_dn(common_name: &str) -> Result<DistinguishedName> {
    if common_name.trim().is_empty() {
        return Err(Error::InvalidField {
            field: "common name",
            value: common_name.to_owned(),
            reason: "it must not be empty",
        });
    }
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    Ok(dn)
}

/// Copies a subject name from a parsed CSR or certificate, keeping each attribute's string type
/// so the issued certificate names the subject exactly as it asked to be named.
pub(crate) fn dn_from_x509(name: &X509Name<'_>) -> std::result::Result<DistinguishedName, String> {
    let mut dn = DistinguishedName::new();
    for rdn in name.iter() {
        let mut attrs = rdn.iter();
        let (Some(attr), None) = (attrs.next(), attrs.next()) else {
            return Err(
                "multi-valued or empty relative distinguished names are not supported".into(),
            );
        };
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or("an attribute type OID is too large")?
            .collect();
        let data = attr.attr_value().data;
        let text =
            || std::str::from_utf8(data).map_err(|_| "an attribute is not valid UTF-8".to_owned());
        let value = match attr.attr_value().header.tag() {
            Tag::Utf8String => DnValue::Utf8String(text()?.to_owned()),
            Tag::PrintableString => DnValue::PrintableString(
                text()?
                    .try_into()
                    .map_err(|e: rcgen::Error| e.to_string())?,
            ),
            Tag::Ia5String => DnValue::Ia5String(
                text()?
                    .try_into()
                    .map_err(|e: rcgen::Error| e.to_string())?,
            ),
            Tag::T61String => DnValue::TeletexString(
                text()?
                    .try_into()
                    .map_err(|e: rcgen::Error| e.to_string())?,
            ),
            Tag::BmpString => DnValue::BmpString(
                rcgen::string::BmpString::from_utf16be(data.to_vec()).map_err(|e| e.to_string())?,
            ),
            Tag::UniversalString => DnValue::UniversalString(
                rcgen::string::UniversalString::from_utf32be(data.to_vec())
                    .map_err(|e| e.to_string())?,
            ),
            other => return Err(format!("unsupported string type {other} in the subject")),
        };
        dn.push(DnType::from_oid(&oid), value);
    }
    Ok(dn)
}

/// SAN entries for DNS names and IP addresses; refuses names rcgen cannot encode as IA5 or that
/// no resolver would accept.
pub(crate) fn san_list(dns: &[String], ips: &[IpAddr]) -> Result<Vec<SanType>> {
    let mut out = Vec::with_capacity(dns.len() + ips.len());
    for name in dns {
        check_dns_name("DNS name", name)?;
        let ia5 = name.as_str().try_into().map_err(|_| Error::InvalidField {
            field: "DNS name",
            value: name.clone(),
            reason: "it is not ASCII",
        })?;
        out.push(SanType::DnsName(ia5));
    }
    out.extend(ips.iter().copied().map(SanType::IpAddress));
    Ok(out)
}

/// A DNS name or name-constraint domain: non-empty ASCII without spaces; a leading `*.` or `.`
/// is allowed (wildcards in SANs, "subdomains only" in constraints).
pub(crate) fn check_dns_name(field: &'static str, name: &str) -> Result<()> {
    let bad = |reason| Error::InvalidField {
        field,
        value: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if !name.is_ascii() {
        return Err(bad("it is not ASCII (use the punycode form)"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '*' | '_'))
    {
        return Err(bad(
            "only letters, digits, '-', '_', '.' and a leading '*' are allowed",
        ));
    }
    Ok(())
}

/// A permitted DNS subtree of a name constraint: a domain (optionally with one leading `.`,
/// "subdomains only"), at least one non-empty label, no wildcard, no trailing dot. Stricter than
/// [`check_dns_name`] because relying parties read odd subtrees permissively: Go (OpenBao's
/// cert auth, Go clients) and NSS take an empty subtree, and `.` (an empty one once its
/// leading dot goes), as matching *every* name, so `--permitted-dns .` would sign an
/// unconstrained intermediate that looks constrained. A `*` in a subtree is matched literally
/// (it permits nothing useful) and a trailing dot makes Go refuse every chain.
pub(crate) fn check_permitted_subtree(name: &str) -> Result<()> {
    const FIELD: &str = "permitted DNS domain";
    check_dns_name(FIELD, name)?;
    let bad = |reason| Error::InvalidField {
        field: FIELD,
        value: name.to_owned(),
        reason,
    };
    let domain = name.strip_prefix('.').unwrap_or(name);
    if domain.contains('*') {
        return Err(bad(
            "a name constraint takes a domain, not a wildcard: `prod.example` already covers every name below it",
        ));
    }
    if domain.is_empty() || domain.split('.').any(str::is_empty) {
        return Err(bad(
            "it has an empty label (a lone or trailing `.`, or `..`); verifiers read such a subtree as permitting every name or none",
        ));
    }
    if domain.split('.').any(|l| l.len() > 63) {
        return Err(bad("a label is longer than 63 characters"));
    }
    Ok(())
}

pub(crate) use crate::pem::sha256_hex;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_random_positive_16_bytes() {
        let a = random_serial().unwrap().to_bytes();
        let b = random_serial().unwrap().to_bytes();
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
        assert_eq!(a[0] & 0xc0, 0x40);
    }

    #[test]
    fn window_is_explicit_backdated_and_whole_seconds() {
        let now = time::macros::datetime!(2030-01-01 12:00:00.5 UTC);
        let (nb, na) = window(now, Duration::days(1)).unwrap();
        assert_eq!(nb, time::macros::datetime!(2030-01-01 11:59:00 UTC));
        assert_eq!(na, time::macros::datetime!(2030-01-02 12:00:00 UTC));
        assert!(matches!(
            window(now, Duration::ZERO),
            Err(Error::InvalidField { .. })
        ));
        assert!(matches!(
            window(now, Duration::days(365 * 9000)),
            Err(Error::DateOverflow { .. })
        ));
    }

    #[test]
    fn dns_names_are_checked() {
        assert!(check_dns_name("d", "svc.internal").is_ok());
        assert!(check_dns_name("d", "*.svc.internal").is_ok());
        assert!(check_dns_name("d", ".svc.internal").is_ok());
        for bad in ["", "a b", "exämple.com", "a/b"] {
            assert!(check_dns_name("d", bad).is_err(), "{bad}");
        }
        for good in ["prod.warden.internal", ".prod.warden.internal", "internal"] {
            assert!(check_permitted_subtree(good).is_ok(), "{good}");
        }
        for bad in [
            ".",
            "..",
            "",
            "*",
            "*.prod.internal",
            "prod.internal.",
            "a..b",
            "..",
        ] {
            assert!(check_permitted_subtree(bad).is_err(), "{bad}");
        }
        assert!(common_name_dn("  ").is_err());
    }
}
