//! CA chain outputs: the trust material a proxy validates peers with, kept current as the
//! environment's intermediate rotates.
//!
//! It reads `<pki_mount>/cert/ca_chain` — all a proxy policy grants — and delivers either the
//! intermediate(s) alone or, with `full_chain`, intermediate(s) plus the self-signed root,
//! which is what validation needs when the consumer has no root of its own.
//!
//! OpenBao returns the root in that chain only when the root was part of the `set-signed`
//! bundle (docs/openbao.md, difference 5), so the output is built the same way either way: the
//! intermediates from OpenBao, then — for a full chain — the agent's own trust anchor, *after*
//! checking that the anchor really signed the last intermediate. Both shapes of OpenBao's
//! answer therefore render to the same bytes, and a rotation that only changes whether the
//! root is included is not a change worth a reload.
//!
//! Nothing is delivered that does not verify: the result goes through
//! [`warden_pki::verify_chain`] against the trust anchor at the context's time, and any problem
//! (wrong order, foreign or missing root, expired CA, path length) refuses the render with
//! [`RenderError::Invalid`], so a proxy keeps its previous, working chain.

use warden_pki::CertInfo;
use zeroize::Zeroizing;

use super::{RenderContext, RenderError, Rendered, RenderedFile};

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// A CA chain bundle written to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaChainOutput {
    /// Output name (as in `agent.toml`), used in every error.
    pub name: String,
    /// The PKI mount whose default issuer's chain is delivered (`pki_int`).
    pub pki_mount: String,
    /// Deliver intermediate(s) + root instead of the intermediate(s) alone.
    pub full_chain: bool,
    /// Name of the file written (the output path's file name).
    pub file_name: String,
    /// Permission bits.
    pub mode: u32,
}

impl CaChainOutput {
    /// Reads the chain and builds the bundle. `not_after`, `not_before` and `serial` of the
    /// result are those of the issuing intermediate (the first certificate), which expires
    /// first in a chain that verifies.
    ///
    /// Errors: [`RenderError::Bao`] when the read fails (sealed, unreachable, denied, no such
    /// mount); [`RenderError::Invalid`] when the mount has no issuer, the answer is not a
    /// certificate bundle, a full chain cannot be built, or the chain does not verify;
    /// [`RenderError::Local`] when the trust anchor itself cannot be read as a certificate.
    pub async fn render(&self, ctx: &RenderContext<'_>) -> Result<Rendered, RenderError> {
        if let Some(rendered) = self.render_overlap(ctx).await? {
            return Ok(rendered);
        }
        let pem = ctx
            .client
            .pki_ca_chain(&self.pki_mount)
            .await
            .map_err(|source| RenderError::Bao {
                output: self.name.clone(),
                what: format!("read {}/cert/ca_chain", self.pki_mount),
                source: Box::new(source),
            })?;
        let bundle = self.build(&pem, ctx.trust_anchor_pem, ctx.now)?;
        Ok(Rendered {
            files: vec![RenderedFile {
                name: self.file_name.clone(),
                contents: Zeroizing::new(bundle.text.into_bytes()),
                mode: self.mode,
            }],
            not_after: Some(bundle.issuing.not_after),
            not_before: Some(bundle.issuing.not_before),
            serial: Some(bundle.issuing.serial),
            refresh_within: None,
            ..Rendered::default()
        })
    }

    /// During an intermediate rotation's overlap (the mount holds more than one valid
    /// intermediate, ADR 0029) or a root rollover's (ADR 0030): every one of them that verifies
    /// against a root of the trust file, default first, then — for a full chain — each root
    /// they verified against, once. A peer presenting a leaf
    /// from either issuer then verifies. `None` outside an overlap (or when the policy may not
    /// list the issuers), and the default issuer's chain is delivered as before; any other
    /// failure to read the issuers is an error (the last good file stays).
    async fn render_overlap(
        &self,
        ctx: &RenderContext<'_>,
    ) -> Result<Option<Rendered>, RenderError> {
        let issuers = match ctx.client.pki_issuer_certificates(&self.pki_mount).await {
            Ok(issuers) => issuers,
            // A policy that may not list the issuers (or a server without the endpoint):
            // the default issuer's chain, as before rotations existed.
            Err(e) if e.is_permission_denied() || matches!(e.status(), Some(404 | 405)) => {
                return Ok(None);
            }
            // Anything else (unreachable, sealed, a 5xx on one issuer's read) is a failed
            // render, which keeps the last good file: falling back to the default's chain
            // mid-overlap would drop the other intermediate and fail its leaves' handshakes.
            Err(source) => {
                return Err(RenderError::Bao {
                    output: self.name.clone(),
                    what: format!("list the issuers of {}", self.pki_mount),
                    source: Box::new(source),
                });
            }
        };
        let ints = warden_pki::mount_intermediates(
            issuers
                .into_iter()
                .map(|i| (i.id, i.is_default, i.certificate)),
            ctx.now,
        );
        if ints.len() < 2 {
            return Ok(None);
        }
        let full = Self {
            full_chain: true,
            ..self.clone()
        };
        let mut text = String::new();
        let mut roots: Vec<String> = Vec::new();
        let mut issuing = None;
        let mut first_err = None;
        for i in &ints {
            // Built as a full chain to learn which root of the trust file it verifies against.
            // During a root rollover (ADR 0030) an intermediate signed by a root this host does
            // not trust yet is left out rather than failing the whole chain: the others still
            // verify every leaf of their key.
            match full.build(&i.pem, ctx.trust_anchor_pem, ctx.now) {
                Ok(b) => {
                    let blocks = pem_blocks(&b.text);
                    if let Some((root, ints)) = blocks.split_last() {
                        text.push_str(&ints.concat());
                        if !roots.contains(root) {
                            roots.push(root.clone());
                        }
                    }
                    issuing.get_or_insert(b.issuing);
                }
                Err(e) => {
                    tracing::warn!(output = %self.name, issuer = %i.issuer_id, error = %e, "intermediate left out of the chain: it does not verify against a root of the trust file (its leaves will not verify through this chain)");
                    first_err.get_or_insert(e);
                }
            }
        }
        let Some(issuing) = issuing else {
            return match first_err {
                Some(e) => Err(e),
                None => Ok(None),
            };
        };
        if self.full_chain {
            for root in &roots {
                text.push_str(root);
            }
        }
        Ok(Some(Rendered {
            files: vec![RenderedFile {
                name: self.file_name.clone(),
                contents: Zeroizing::new(text.into_bytes()),
                mode: self.mode,
            }],
            not_after: Some(issuing.not_after),
            not_before: Some(issuing.not_before),
            serial: Some(issuing.serial),
            refresh_within: None,
            ..Rendered::default()
        }))
    }

    /// The bundle from OpenBao's chain text, checked against the trust anchor at `now`. Pure,
    /// so every shape of chain is testable without a server.
    fn build(
        &self,
        chain_pem: &str,
        trust_anchor_pem: &str,
        now: time::OffsetDateTime,
    ) -> Result<Bundle, RenderError> {
        let invalid = |reason: String| RenderError::Invalid {
            output: self.name.clone(),
            reason,
        };
        if chain_pem.trim().is_empty() {
            return Err(invalid(format!(
                "{} has no default issuer, so there is no CA chain to deliver",
                self.pki_mount
            )));
        }
        let blocks = pem_blocks(chain_pem);
        let infos = warden_pki::parse_pem_bundle(&blocks.concat()).map_err(|e| {
            invalid(format!(
                "{}/cert/ca_chain is not a certificate bundle: {e}",
                self.pki_mount
            ))
        })?;
        if blocks.len() != infos.len() {
            return Err(invalid(format!(
                "{}/cert/ca_chain has malformed PEM ({} certificate blocks, {} certificates)",
                self.pki_mount,
                blocks.len(),
                infos.len()
            )));
        }
        let anchors: Vec<String> = pem_blocks(trust_anchor_pem)
            .into_iter()
            .filter(|a| warden_pki::parse_pem_bundle(a).is_ok())
            .collect();
        if anchors.is_empty() {
            return Err(RenderError::Local {
                output: self.name.clone(),
                what: "read the trust anchor".to_owned(),
                reason: "it holds no PEM certificate".to_owned(),
            });
        }
        // The trust file may hold more than one anchor (a root rollover): the chain must verify
        // against one of them. The first anchor's refusal is the one reported.
        let ends_in_root = infos.last().is_some_and(|i| i.self_signed);
        let mut first_err = None;
        for anchor in &anchors {
            match self.build_with(blocks.clone(), ends_in_root, anchor, now) {
                Ok(bundle) => return Ok(bundle),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| invalid("no trust anchor".to_owned())))
    }

    /// [`build`](Self::build) against one anchor.
    fn build_with(
        &self,
        mut certs: Vec<String>,
        ends_in_root: bool,
        anchor: &str,
        now: time::OffsetDateTime,
    ) -> Result<Bundle, RenderError> {
        let invalid = |reason: String| RenderError::Invalid {
            output: self.name.clone(),
            reason,
        };
        // OpenBao's root, when it sent one, is dropped here and re-added from the anchor below:
        // one shape of output whatever OpenBao included, and the root delivered is always the
        // one this host trusts (a different root is refused).
        let sent_root = if ends_in_root { certs.pop() } else { None };
        if certs.is_empty() {
            return Err(invalid(format!(
                "the issuer of {} is a root CA itself: there is no intermediate to deliver",
                self.pki_mount
            )));
        }
        if let Some(root) = &sent_root
            && !same_certificate(root, anchor)
        {
            let report = verify(&format!("{}{root}", certs.concat()), anchor, now, &invalid)?;
            return Err(invalid(format!(
                "the chain of {} does not verify against the trust anchor: {}",
                self.pki_mount,
                report.problems_text()
            )));
        }
        if self.full_chain {
            let report = verify(&certs.concat(), anchor, now, &invalid)?;
            if let Some(missing) = report
                .problems
                .iter()
                .find(|p| matches!(p, warden_pki::ChainProblem::MissingRoot { .. }))
            {
                return Err(invalid(format!(
                    "intermediate only — cannot build the full chain for validation: {missing}"
                )));
            }
            certs.push(anchor.to_owned());
        }
        let text = certs.concat();
        let report = verify(&text, anchor, now, &invalid)?;
        if !report.valid {
            return Err(invalid(format!(
                "the chain of {} does not verify against the trust anchor: {}",
                self.pki_mount,
                report.problems_text()
            )));
        }
        let issuing = report
            .certs
            .into_iter()
            .next()
            .ok_or_else(|| invalid("the chain is empty".to_owned()))?;
        Ok(Bundle { text, issuing })
    }
}

/// A verified bundle and its issuing (first) certificate. Public material only.
#[derive(Debug)]
struct Bundle {
    text: String,
    issuing: CertInfo,
}

fn verify(
    bundle: &str,
    anchor: &str,
    now: time::OffsetDateTime,
    invalid: &dyn Fn(String) -> RenderError,
) -> Result<warden_pki::ChainReport, RenderError> {
    warden_pki::verify_chain(bundle, Some(anchor), now)
        .map_err(|e| invalid(format!("the chain cannot be checked: {e}")))
}

/// The `CERTIFICATE` blocks of a PEM text, each normalised (trimmed lines, `\n` endings,
/// trailing newline), so the delivered bytes — and so the "did it change" digest — do not
/// depend on how the server happened to format its answer.
fn pem_blocks(pem: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in pem.lines().map(str::trim) {
        match (&mut current, line) {
            (None, BEGIN) => current = Some(format!("{BEGIN}\n")),
            (Some(block), END) => {
                block.push_str(END);
                block.push('\n');
                blocks.extend(current.take());
            }
            (Some(block), body) if !body.is_empty() => {
                block.push_str(body);
                block.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

fn same_certificate(a: &str, b: &str) -> bool {
    match (
        warden_pki::parse_pem_bundle(a),
        warden_pki::parse_pem_bundle(b),
    ) {
        (Ok(a), Ok(b)) => a.first().map(|c| &c.sha256) == b.first().map(|c| &c.sha256),
        _ => false,
    }
}

#[cfg(test)]
#[path = "ca_chain_tests.rs"]
mod tests;
