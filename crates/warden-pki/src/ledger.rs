//! The issuance ledger: `ledger.jsonl` in the CA directory, one JSON object per line, one line
//! per signature the root key ever made (its own self-signature first).
//!
//! Append-only and line-oriented so that it can be audited with `jq`, compared with a paper log
//! and never needs rewriting; a line is written with a single fsynced `write`, after the
//! certificate has been built and checked, so a refused request never leaves a trace.

use std::path::Path;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{Error, Result};

/// One signature made by the root key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Serial number of the signed certificate, lower-case hex.
    pub serial: String,
    /// Subject DN of the signed certificate.
    pub subject: String,
    /// The environment the certificate is for (`test`, `prod`, ...; `offline` for the root).
    pub environment: String,
    /// What it is for (`vault-pki`, `listener-ca`, ...; `root` for the self-signature).
    pub profile: String,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// SHA-256 of the certificate's DER, lower-case hex.
    pub sha256: String,
    /// When the signature was made (the injected `now`).
    #[serde(with = "time::serde::rfc3339")]
    pub signed_at: OffsetDateTime,
    /// pathLenConstraint put in the certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_len: Option<u8>,
    /// Permitted DNS name constraints put in the certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permitted_dns: Vec<String>,
    /// Why an intermediate was signed without name constraints for a root that signs for more
    /// than one environment (`--unconstrained-because`, ADR 0013).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unconstrained_because: Option<String>,
    /// SHA-256 of the root that signed it, when that is not the directory's root at the time:
    /// the next root of a rollover (its re-signed intermediates, its cross certificates;
    /// ADR 0030). Absent means the directory's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
}

/// The environment recorded for the root's own signatures (self-signed roots, cross
/// certificates): not an environment the root signs for.
pub const OFFLINE: &str = "offline";

pub(crate) fn append(path: &Path, entry: &LedgerEntry) -> Result<()> {
    // Serialising a struct of strings and dates cannot fail; keep the error typed anyway.
    let line = serde_json::to_string(entry).map_err(|source| Error::Ledger {
        path: path.to_path_buf(),
        line: 0,
        source,
    })?;
    warden_files::append_line(path, &line)?;
    Ok(())
}

pub(crate) fn read(path: &Path) -> Result<Vec<LedgerEntry>> {
    let text = crate::root::read_ca_file(path).map_err(Error::io("read", path))?;
    parse(path, &text)
}

/// Parses ledger text already in memory (from a backup); `path` names it in errors.
pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<LedgerEntry>> {
    let text = std::str::from_utf8(bytes).map_err(|e| Error::CorruptCaFile {
        path: path.to_path_buf(),
        reason: format!("not UTF-8 text: {e}"),
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| Error::Ledger {
                path: path.to_path_buf(),
                line: i + 1,
                source,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn entry(serial: &str) -> LedgerEntry {
        LedgerEntry {
            serial: serial.to_owned(),
            subject: "CN=x".to_owned(),
            environment: "test".to_owned(),
            profile: "vault-pki".to_owned(),
            not_before: datetime!(2030-01-01 0:00 UTC),
            not_after: datetime!(2035-01-01 0:00 UTC),
            sha256: "00".repeat(32),
            signed_at: datetime!(2030-01-01 0:01 UTC),
            path_len: Some(0),
            permitted_dns: vec![],
            unconstrained_because: None,
            signed_by: None,
        }
    }

    #[test]
    fn appends_and_reads_back_rfc3339() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ledger.jsonl");
        std::fs::write(&p, "").unwrap();
        append(&p, &entry("01")).unwrap();
        append(&p, &entry("02")).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(
            text.contains("\"not_after\":\"2035-01-01T00:00:00Z\""),
            "{text}"
        );
        assert!(!text.contains("permitted_dns"), "{text}");
        assert_eq!(read(&p).unwrap(), vec![entry("01"), entry("02")]);
    }

    #[test]
    fn a_damaged_line_is_reported_with_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ledger.jsonl");
        append(&p, &entry("01")).unwrap();
        std::fs::write(
            &p,
            format!("{}\n{{oops\n", std::fs::read_to_string(&p).unwrap().trim()),
        )
        .unwrap();
        let err = read(&p).unwrap_err();
        assert!(matches!(err, Error::Ledger { line: 2, .. }), "{err}");
    }
}
