//! Small views of PEM text and the one digest Warden prints: the certificate blocks of a bundle,
//! the first of them, its subject common name, and lower-case hex SHA-256. One home for these so
//! that the agent, enrollment and the CLI split bundles and fingerprint files the same way (a
//! block is kept byte for byte, so comparing blocks compares certificates).

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// Every `CERTIFICATE` PEM block of `text`, from `-----BEGIN` to `-----END CERTIFICATE-----`
/// inclusive, in order. Text between blocks (comments, other PEM types) is skipped; an
/// unterminated last block is ignored.
pub fn pem_blocks(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let Some(end) = rest[start..].find(END) else {
            break;
        };
        let stop = start + end + END.len();
        out.push(&rest[start..stop]);
        rest = &rest[stop..];
    }
    out
}

/// The first `CERTIFICATE` block of a PEM text (the leaf of a chain file), if any.
pub fn first_certificate(text: &str) -> Option<&str> {
    pem_blocks(text).into_iter().next()
}

/// The subject common name of the first certificate of `pem`, if it parses and has one.
pub fn common_name(pem: &str) -> Option<String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    if block.label != "CERTIFICATE" {
        return None;
    }
    let (_, cert) = x509_parser::parse_x509_certificate(&block.contents).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    Some(cn.to_owned())
}

/// SHA-256 (hex) of the SubjectPublicKeyInfo of the first certificate of `pem`: whether two
/// certificates certify the same key, whatever key identifier each issuer computed (a root
/// rollover re-signs the same key, ADR 0030).
pub fn public_key_sha256(pem: &str) -> Option<String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    if block.label != "CERTIFICATE" {
        return None;
    }
    let (_, cert) = x509_parser::parse_x509_certificate(&block.contents).ok()?;
    Some(sha256_hex(cert.public_key().raw))
}

/// Lower-case hex SHA-256 of `bytes`: the fingerprint of a DER certificate the ledger and
/// `ca show` print, and the digest of a delivered file the agent records.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----";
    const B: &str = "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----";

    #[test]
    fn blocks_are_split_in_order_and_kept_byte_for_byte() {
        let text = format!("# comment\n{A}\njunk\n{B}\n");
        assert_eq!(pem_blocks(&text), vec![A, B]);
        assert_eq!(first_certificate(&text), Some(A));
    }

    #[test]
    fn no_block_or_an_unterminated_one_gives_nothing() {
        assert!(pem_blocks("nothing").is_empty());
        assert_eq!(first_certificate("nothing"), None);
        assert!(pem_blocks("-----BEGIN CERTIFICATE-----\nAAAA").is_empty());
    }

    #[test]
    fn sha256_of_nothing_is_the_known_digest() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn common_name_of_garbage_is_none() {
        assert_eq!(common_name(A), None);
        assert_eq!(common_name("no pem"), None);
    }
}
