//! CRL outputs: the certificate revocation list of a PKI mount, for a proxy to check its
//! peers' certificates against, delivered like any single file (reload when it changed).
//!
//! It reads `<pki_mount>/cert/crl` (the proxy policy grants exactly that) and delivers the PEM
//! only if it parses as a CRL, so a proxy keeps its previous list rather than a broken one.
//! `warden revoke` rebuilds the CRL; the agent picks it up at its next poll (`[renewal] poll`).

use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;
use zeroize::Zeroizing;

use super::{RenderContext, RenderError, Rendered, RenderedFile};

/// A CRL written to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlOutput {
    /// Output name (as in `agent.toml`), used in every error.
    pub name: String,
    /// The PKI mount whose CRL is delivered (`pki_int`).
    pub pki_mount: String,
    /// Name of the file written (the output path's file name).
    pub file_name: String,
    /// Permission bits.
    pub mode: u32,
}

impl CrlOutput {
    /// Reads the CRL and checks that it is one.
    ///
    /// Errors: [`RenderError::Bao`] when the read fails; [`RenderError::Invalid`] when the
    /// answer holds no CRL or one that does not parse.
    pub async fn render(&self, ctx: &RenderContext<'_>) -> Result<Rendered, RenderError> {
        let path = format!("{}/cert/crl", self.pki_mount);
        let secret = ctx
            .client
            .read(&path)
            .await
            .map_err(|source| RenderError::Bao {
                output: self.name.clone(),
                what: format!("read {path}"),
                source: Box::new(source),
            })?;
        let pem = secret
            .data
            .as_ref()
            .and_then(|d| d.get("certificate"))
            .and_then(|c| c.as_str())
            .unwrap_or_default()
            .trim()
            .to_owned();
        self.check(&pem)?;
        Ok(Rendered {
            files: vec![RenderedFile {
                name: self.file_name.clone(),
                contents: Zeroizing::new(format!("{pem}\n").into_bytes()),
                mode: self.mode,
            }],
            ..Rendered::default()
        })
    }

    /// Refuses anything that is not one PEM-encoded CRL.
    fn check(&self, pem: &str) -> Result<(), RenderError> {
        let invalid = |reason: String| RenderError::Invalid {
            output: self.name.clone(),
            reason,
        };
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map_err(|e| invalid(format!("{}/cert/crl is not PEM: {e}", self.pki_mount)))?;
        if block.label != "X509 CRL" {
            return Err(invalid(format!(
                "{}/cert/crl holds a `{}`, not a CRL",
                self.pki_mount, block.label
            )));
        }
        CertificateRevocationList::from_der(&block.contents)
            .map_err(|e| invalid(format!("{}/cert/crl does not parse: {e}", self.pki_mount)))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out() -> CrlOutput {
        CrlOutput {
            name: "crl".into(),
            pki_mount: "pki_int".into(),
            file_name: "crl.pem".into(),
            mode: 0o644,
        }
    }

    #[test]
    fn anything_but_a_crl_is_refused() {
        assert!(out().check("").is_err());
        assert!(out().check("not pem").is_err());
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(out().check(cert).is_err());
        let junk = "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n";
        assert!(out().check(junk).is_err());
    }
}
